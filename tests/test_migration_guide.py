"""docs/migration.rst's "Behaviour that changes", checked: what it says trio_sio does, trio_sio
does, and it names every disconnect reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

import trio_sio
from trio_sio.testing import open_client, running

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "migration.rst"


def behaviour_section() -> str:
    text = GUIDE.read_text()
    match = re.search(r"\nBehaviour that changes\n-+\n(.*?)\n\S[^\n]*\n-+\n", text, re.DOTALL)
    assert match is not None, "the guide has a section on behaviour that changes"
    return match[1]


def test_the_guide_names_every_disconnect_reason_and_the_refusal_idioms() -> None:
    section = behaviour_section()
    for reason in trio_sio.DisconnectReason:
        assert f'``"{reason.value}"``' in section, reason
    for idiom in ("ConnectionRefused", "return False", "Disconnected", "Acknowledgements"):
        assert idiom in section, idiom


async def test_emit_to_a_socket_that_has_gone_raises_and_a_broadcast_to_it_does_not() -> None:
    sio = trio_sio.Server()
    sockets: list[trio_sio.Socket] = []
    gone = trio.Event()

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: object) -> None:
        sockets.append(sock)

    @sio.on_disconnect
    async def disconnect(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        gone.set()

    async with running(sio):
        async with open_client(sio) as client:
            await client.disconnect()
            await gone.wait()
        [sock] = sockets
        with pytest.raises(trio_sio.Disconnected) as raised:
            await sock.emit("news", 1)
        assert raised.value.reason is trio_sio.DisconnectReason.IO_CLIENT_DISCONNECT
        await sio.to(sock.id).emit("news", 1)  # nobody there: nothing to do


async def test_a_returned_tuple_is_several_acknowledgement_arguments_an_emitted_one_is_one() -> (
    None
):
    sio = trio_sio.Server()

    @sio.on("pair")
    async def pair(sock: trio_sio.Socket) -> tuple[int, int]:
        await sock.emit("pair", (1, 2))
        await sock.emit("two", 1, 2)
        return (1, 2)

    async with running(sio), open_client(sio) as client:
        assert await client.call("pair") == (1, 2)  # two arguments
        assert (await client.receive("pair")).args == ([1, 2],)  # one: a JSON array
        assert (await client.receive("two")).args == (1, 2)
