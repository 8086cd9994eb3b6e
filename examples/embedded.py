"""Embedding trio_sio in a Trio program that has work of its own.

The program here counts, once a second, standing in for a sensor reader or a job queue; the
Socket.IO server publishes the count. The server is one more task in the program's nursery:
``nursery.start(trio_sio.serve_hypercorn, ...)`` binds the socket and returns the URLs (port
0 picks a free port), and cancelling the nursery stops everything: the server closes its
sessions first, so their disconnect handlers run (reason "server shutting down").

    python examples/embedded.py          # a free port; the program prints the URL
    python examples/embedded.py 5002

A client that emits "watch" joins the room "ticks" and receives every "tick" from then on::

    const socket = io("http://127.0.0.1:5002");
    socket.emit("watch", (count) => console.log("count so far", count));
    socket.on("tick", (count) => console.log("tick", count));
"""

from __future__ import annotations

import signal
import sys

import trio

import trio_sio

sio = trio_sio.Server()
count = 0


@sio.on("watch")
async def watch(sock: trio_sio.Socket) -> int:
    sock.join("ticks")
    return count


async def counter(interval: float) -> None:
    """The program's own work."""
    global count
    while True:
        await trio.sleep(interval)
        count += 1
        await sio.to("ticks").emit("tick", count)


async def program(
    port: int = 0,
    *,
    interval: float = 1.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The counter and the Socket.IO server, side by side until cancelled."""
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(trio_sio.serve_hypercorn, sio, "127.0.0.1", port)
        nursery.start_soon(counter, interval)
        task_status.started(urls)


async def main(port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(program, port)
            print("Socket.IO at", ", ".join(f"{url}/socket.io/" for url in urls), flush=True)
            print("Ctrl+C stops the program", flush=True)
            await anext(signals)
            nursery.cancel_scope.cancel()  # the server closes its sessions, then everything ends
    print("stopped", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
