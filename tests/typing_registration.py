"""Type-checking cases for the registration decorators (not a test module: mypy reads it).

``tests/test_registration.py`` runs ``mypy --strict`` on this file. Each mistake is marked
with the error mypy must report; ``--strict`` reports an ignore that nothing needs, so a
decorator that stopped catching a mistake fails the check.
"""

from __future__ import annotations

import functools
from typing import Any

import trio_sio
from trio_sio.parsers import PacketDecoder, Parser, SocketPacket

sio = trio_sio.Server()


# --- what fits ------------------------------------------------------------------------------


@sio.on_connect
async def connect(sock: trio_sio.Socket, auth: Any) -> None:
    pass


@sio.on_disconnect
async def disconnect(sock: trio_sio.Socket, reason: str) -> None:
    pass


@sio.use
async def middleware(sock: trio_sio.Socket, auth: dict[str, str]) -> None:
    pass


@sio.use_packet
async def packet_middleware(sock: trio_sio.Socket, event: str, args: list[Any]) -> None:
    pass


@sio.on("chat")
async def chat(sock: trio_sio.Socket, message: str) -> str:
    return message


@sio.on_any_outgoing
def outgoing(sock: trio_sio.Socket, event: str, *args: Any) -> None:
    pass


async def prefixed(prefix: str, sock: trio_sio.Socket, auth: Any) -> None:
    pass


sio.on_connect(functools.partial(prefixed, "p"))

# The decorators return the function as it was given: still callable with its own types.
_: str = chat.__name__


# --- mistakes -------------------------------------------------------------------------------


@sio.on_connect  # type: ignore[type-var]
async def socketio_connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
    pass


@sio.on_disconnect  # type: ignore[type-var]
async def socketio_disconnect(sid: str) -> None:
    pass


@sio.on_disconnecting  # type: ignore[type-var]
def sync_disconnecting(sock: trio_sio.Socket, reason: str) -> None:
    pass


@sio.use  # type: ignore[type-var]
async def no_auth(sock: trio_sio.Socket) -> None:
    pass


@sio.use_packet  # type: ignore[type-var]
async def node_packet_middleware(packet: list[Any], next: Any) -> None:
    pass


@sio.on("sync")  # type: ignore[type-var]
def sync_event(sock: trio_sio.Socket) -> None:
    pass


@sio.on_any_outgoing  # type: ignore[type-var]
async def async_outgoing(sock: trio_sio.Socket, event: str, *args: Any) -> None:
    pass


@sio.on  # type: ignore[arg-type]
async def bare(sock: trio_sio.Socket) -> None:
    pass


# --- a socket's own registrations, and class-based namespaces --------------------------------


async def per_socket(sock: trio_sio.Socket) -> None:
    sock.on("chat")(chat)
    sock.on_any(seen)
    sock.prepend_any(seen)
    sock.on_any_outgoing(outgoing)
    sock.use(packet_middleware)
    sock.on("sync")(sync_event)  # type: ignore[type-var]
    sock.on_any_outgoing(async_outgoing)  # type: ignore[type-var]
    sock.use(node_packet_middleware)  # type: ignore[type-var]
    reason: trio_sio.DisconnectReason = await sock.wait_disconnected()
    del reason


async def seen(sock: trio_sio.Socket, event: str, *args: Any) -> None:
    pass


class Chat(trio_sio.NamespaceHandlers):
    async def on_message(self, sock: trio_sio.Socket, text: str) -> None:
        pass


chat_handlers: Chat = sio.of("/chat").register(Chat())
sio.register(object())  # type: ignore[type-var]


async def fetched_sockets() -> None:
    # Local and remote sockets mixed: one call shape for both (issue 16, item 5).
    for fetched in await sio.fetch_sockets():
        fetched.join("x")
        fetched.leave("x")
        await fetched.emit("e", 1)
        await fetched.disconnect()
        fetched.emit("e")  # type: ignore[unused-coroutine]


# --- parsers: any object with the Parser protocol's methods -------------------------------


class Reversed:
    """A parser of its own: JSON text, reversed."""

    def __init__(self) -> None:
        self._json = trio_sio.JsonParser()

    def encode(self, packet: SocketPacket) -> tuple[str, ...]:
        (text,) = self._json.encode(packet)
        assert isinstance(text, str)
        return (text[::-1],)

    def decoder(self, *, max_attachments: int, max_binary_bytes: int) -> PacketDecoder:
        return self._json.decoder(max_attachments=0, max_binary_bytes=0)


trio_sio.Server(parser=trio_sio.JsonParser())
trio_sio.Server(parser=trio_sio.MsgpackParser())
trio_sio.Server(parser=Reversed())
parser: Parser = trio_sio.MsgpackParser()
trio_sio.Server(parser=trio_sio.MsgpackParser)  # type: ignore[arg-type]
trio_sio.Server(parser="msgpack")  # type: ignore[arg-type]
trio_sio.Server(parser=trio_sio.JsonParser().json)  # type: ignore[arg-type]


# --- the client's registrations --------------------------------------------------------------

client = trio_sio.Client()


@client.on("chat message")
async def client_chat(text: str) -> str:
    return text


@client.on_any
async def client_any(event: str, *args: Any) -> None:
    pass


@client.of("/chat").on_connect
async def client_connected() -> None:
    pass


@client.on_disconnect
async def client_disconnected(reason: trio_sio.DisconnectReason) -> None:
    pass


@client.on("sync")  # type: ignore[type-var]
def client_sync(text: str) -> None:
    pass


@client.on_connect  # type: ignore[type-var]
async def client_connect_with_sock(sock: trio_sio.Socket) -> None:
    pass


@client.on_disconnect  # type: ignore[type-var]
async def client_disconnect_without_reason() -> None:
    pass


async def client_use() -> None:
    async with client.connect("http://127.0.0.1:5001") as conn:
        answer: Any = await conn.call("chat message", "hi")
        await conn.of("/chat").emit("x", b"\x00", answer)
