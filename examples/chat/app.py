"""The chat of the go-socket.io tutorial, on trio_sio.

    npm ci --prefix examples/chat        # the socket.io-client bundle for the page, once
    hypercorn -k trio --bind 127.0.0.1:5001 examples/chat/app.py:app
    python examples/chat/app.py          # the same without the hypercorn command (port: argv[1])

then open http://127.0.0.1:5001/ in two browser windows.
"""

from __future__ import annotations

import logging
import signal
import sys
from functools import partial
from pathlib import Path

import trio

import trio_sio

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

# The server's log lines, on stderr like hypercorn's own (which configures only its loggers).
log = logging.getLogger("chat")
if not log.handlers:
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler())
    log.handlers[0].setFormatter(logging.Formatter("[%(asctime)s] [chat] %(message)s"))

sio = trio_sio.Server()


@sio.on_connect
async def connect(sock: trio_sio.Socket, auth: object) -> None:
    log.info("connected: %s", sock.id)
    sock.join("mychat")


@sio.on("chat message")
async def chat_message(sock: trio_sio.Socket, msg: str) -> None:
    log.info("chat message: %s", msg)
    await sio.to("mychat").emit("chat message", msg)


@sio.on_disconnect
async def disconnect(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
    log.info("disconnected: %s (%s)", sock.id, reason)


# The page at /, the client bundle (404 until `npm ci` installed it), Socket.IO at /socket.io/.
app = trio_sio.ASGIApp(sio, static_files={"/": HERE / "index.html", "/socket.io.min.js": BUNDLE})


async def main(port: int = 5001) -> None:
    """Serve on 127.0.0.1 until Ctrl+C, then shut down gracefully (by cancelling)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trio_sio.serve_hypercorn, sio, "127.0.0.1", port, app=app))
            await anext(signals)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 5001)
