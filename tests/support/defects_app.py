"""A server with the behaviours issue 14's official-client tests need, beyond CONTRACT.md:
refusals from ``on_connect``, acknowledgements JSON cannot encode, and every shape of
acknowledgement. Served on both hosts by ``tests/test_refusals_and_acks.py``."""

from __future__ import annotations

import datetime
from typing import Any

import trio_sio


def defects_server() -> trio_sio.Server:
    sio = trio_sio.Server(ping_interval=0.3, ping_timeout=0.2, cors_allowed_origins="*")

    @sio.of("/refuse-raise").on_connect
    async def refuse_raise(sock: trio_sio.Socket, auth: Any) -> None:
        sock.join("never")  # undone by the refusal
        await sock.emit("never")  # never sent: the client is refused
        raise trio_sio.ConnectionRefused("no", {"why": 1})

    @sio.of("/refuse-false").on_connect
    async def refuse_false(sock: trio_sio.Socket, auth: Any) -> bool:
        return False

    @sio.of("/welcome").on_connect
    async def welcome(sock: trio_sio.Socket, auth: Any) -> None:
        sock.join("welcomed")
        await sock.emit("hello", "from on_connect")  # follows the CONNECT packet

    @sio.on("ping")
    async def ping(sock: trio_sio.Socket) -> str:
        return "pong"

    @sio.on("set-ack")
    async def set_ack(sock: trio_sio.Socket) -> Any:
        return {1, 2}  # JSON cannot encode a set: the handler's error, the session goes on

    @sio.on("date-ack")
    async def date_ack(sock: trio_sio.Socket) -> Any:
        return datetime.datetime(2026, 12, 2)

    @sio.on("null-ack")
    async def null_ack(sock: trio_sio.Socket) -> trio_sio.Ack:
        return trio_sio.Ack(None)  # Node's cb(null)

    @sio.on("no-args-ack")
    async def no_args_ack(sock: trio_sio.Socket) -> None:
        return None

    @sio.on("several-ack")
    async def several_ack(sock: trio_sio.Socket) -> tuple[int, str]:
        return 1, "two"

    @sio.on("array-ack")
    async def array_ack(sock: trio_sio.Socket) -> trio_sio.Ack:
        return trio_sio.Ack((1, 2))  # one argument: an array

    @sio.on("no-ack")
    async def no_ack(sock: trio_sio.Socket) -> object:
        return trio_sio.NO_ACK

    return sio
