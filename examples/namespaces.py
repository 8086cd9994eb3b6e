"""Namespaces with authentication middleware.

- ``/chat``: signed-in users; "say" reaches everyone in the namespace.
- ``/admin``: admins only; "kick" disconnects a user's ``/chat`` sockets.

Middleware added with ``use`` runs before a socket joins its namespace, in the order added.
Raising :class:`trio_sio.ConnectionRefused` refuses the connection: the client's
"connect_error" listener gets the message and the data. A browser or Node client::

    const chat = io("http://127.0.0.1:5001/chat", {auth: {token: "bob-token"}});
    chat.on("connect_error", (err) => console.log(err.message, err.data));
    chat.on("said", (user, text) => console.log(`${user}: ${text}`));
    chat.emit("say", "hello");

    python examples/namespaces.py [PORT]     # serves on 127.0.0.1:5001 by default
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import trio

import trio_sio

#: A stand-in for your session store: token -> user name.
TOKENS = {"alice-token": "alice", "bob-token": "bob"}
ADMINS = {"alice"}

sio = trio_sio.Server()
chat = sio.of("/chat")
admin = sio.of("/admin")


async def authenticate(sock: trio_sio.Socket, auth: Any) -> None:
    """Who is this? Refuse unknown tokens; remember the user on the socket."""
    token = auth.get("token") if isinstance(auth, dict) else None
    user = TOKENS.get(token) if isinstance(token, str) else None
    if user is None:
        raise trio_sio.ConnectionRefused("not signed in", {"hint": "connect with auth.token"})
    sock.data["user"] = user


chat.use(authenticate)
admin.use(authenticate)


@admin.use
async def admins_only(sock: trio_sio.Socket, auth: Any) -> None:
    """Runs after ``authenticate``, so the user is known."""
    if sock.data["user"] not in ADMINS:
        raise trio_sio.ConnectionRefused("admins only")


@chat.on_connect
async def joined(sock: trio_sio.Socket, auth: Any) -> None:
    await chat.emit("joined", sock.data["user"])


@chat.on("say")
async def say(sock: trio_sio.Socket, text: str) -> None:
    await chat.emit("said", sock.data["user"], text)


@admin.on("kick")
async def kick(sock: trio_sio.Socket, user: str) -> int:
    """Disconnect ``user`` from /chat; answers how many sockets were disconnected."""
    victims = [s for s in chat.sockets.values() if s.data["user"] == user]
    for victim in victims:
        await victim.disconnect()
    return len(victims)


async def main(port: int) -> None:
    """Serve on 127.0.0.1 until Ctrl+C."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio_sio.serve_hypercorn, sio, "127.0.0.1", port)
            await anext(signals)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 5001)
