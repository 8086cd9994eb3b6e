"""Every public ``async`` function is a checkpoint: inside a cancelled scope it raises
``Cancelled`` before doing anything (trio's rule, "Checkpoints" in its documentation).

The list of functions is discovered from the public modules, so a new one fails
:func:`test_every_public_async_function_has_a_recipe` until it is added here. Each recipe
calls its function as a user would, on a running server with one connected client in room
``"r"``; afterwards nothing may have changed: no packet sent, no room joined or left, no
session opened or closed, no server started.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
import trio_sio.adapters
import trio_sio.engineio
import trio_sio.testing
from trio_sio._engine import HttpRequest
from trio_sio._protocol import EnginePacket, EnginePacketType, Outgoing
from trio_sio.adapters import RemoteSocket
from trio_sio.hosts import MemoryWebSocket
from trio_sio.testing import TestClient, open_client, running

#: The client's public async functions (their recipes are in tests/test_client.py).
CLIENT_CHECKPOINTS = (
    "Client.emit",
    "Client.call",
    "Client.run",
    "Client.disconnect",
    "Client.wait_disconnected",
    "ClientNamespace.emit",
    "ClientNamespace.call",
)

PUBLIC_MODULES: tuple[ModuleType, ...] = (
    trio_sio,
    trio_sio.engineio,
    trio_sio.testing,
    trio_sio.adapters,
)

#: Public async functions that are not calls a user makes, with the reason.
EXEMPT = {
    # The adapter interface: the server calls these inside the operations above, which are
    # the checkpoints (a cluster adapter's own methods all await the network anyway).
    **{
        f"Adapter.{name}": "adapter hook"
        for name in (
            "run",
            "broadcast",
            "broadcast_with_ack",
            "fetch_sockets",
            "add_sockets",
            "del_sockets",
            "disconnect_sockets",
            "server_count",
            "server_side_emit",
            "server_side_emit_with_ack",
            "record_emit",
            # Must not checkpoint: see its docstring (no broadcast between restore and rooms).
            "restore_session",
        )
    },
    # Engine.IO hooks: the session calls them for each message it reads.
    "EngineHandler.on_message": "hook of the layer above Engine.IO",
    "Server.on_message": "the Socket.IO layer's Engine.IO hook",
    # The session's own task, which the server starts.
    "Session.run": "task function started by the server",
    "Session.serve": "runs a session in the calling host task, called by handle_websocket",
    # A field holding the host's callable (its default, trio.sleep_forever, is a checkpoint).
    "HttpRequest.wait_disconnected": "the host's callable, not a method",
    # The second half of a broadcast's checkpoint: the schedule point after the effect,
    # shielded like trio's cancel_shielded_checkpoint (the first half is the operation's).
    "EngineServer.pace_broadcast": "schedule point after an effect",
    # The client's, checked over a real connection (the world here has no sockets).
    **{
        name: "tests/test_client.py::test_client_functions_are_checkpoints"
        for name in CLIENT_CHECKPOINTS
    },
}


def is_async(function: object) -> bool:
    """A coroutine function, or a function that hands back another's coroutine (declared to
    return a ``Coroutine``): awaited the same way, so under the same rule."""
    if inspect.iscoroutinefunction(function):
        return True
    if not inspect.isfunction(function):
        return False
    # A string under ``from __future__ import annotations``, else the typing object itself.
    returns = str(inspect.signature(function).return_annotation)
    return returns.startswith(("Coroutine[", "collections.abc.Coroutine[", "typing.Coroutine["))


def public_async_functions() -> set[str]:
    """``Class.method`` (or ``function``) for every public coroutine function."""
    found: set[str] = set()
    for module in PUBLIC_MODULES:
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if is_async(value):
                found.add(name)
            elif inspect.isclass(value):
                for attribute, member in inspect.getmembers(value):
                    if not attribute.startswith("_") and is_async(member):
                        found.add(f"{value.__name__}.{attribute}")
    return found


@dataclass
class World:
    sio: trio_sio.Server
    client: TestClient
    socket: trio_sio.Socket

    def snapshot(self) -> Any:
        return (
            self.sio.statistics(),
            self.socket.rooms,
            self.socket.connected,
            self.socket.session.delivery.queued(),
            self.client.connected,
        )


def world_server() -> trio_sio.Server:
    sio = trio_sio.Server()
    sio.of_dynamic(lambda name, auth: name.startswith("/dyn"))

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        sock.join("r")

    @sio.on("ping")
    async def ping(sock: trio_sio.Socket) -> str:
        return "pong"

    return sio


@pytest.fixture
async def world() -> AsyncIterator[World]:
    sio = world_server()
    async with running(sio), open_client(sio) as client:
        (socket,) = sio.main.sockets.values()
        yield World(sio, client, socket)


def _request(query: str) -> HttpRequest:
    return HttpRequest("GET", "/socket.io/", query, {}, client=("127.0.0.1", 1))


def _remote(w: World) -> RemoteSocket:
    return RemoteSocket(w.sio.main, w.socket.id, frozenset({w.socket.id}), {}, {})


Recipe = Callable[[World], Awaitable[object]]


def _targets(owner: str, get: Callable[[World], Any]) -> dict[str, Recipe]:
    """The broadcast operations, on a server, a namespace or a broadcast operator."""
    return {
        f"{owner}.emit": lambda w: get(w).emit("e", 1),
        f"{owner}.emit_with_ack": lambda w: get(w).emit_with_ack("e", 1),
        f"{owner}.fetch_sockets": lambda w: get(w).fetch_sockets(),
        f"{owner}.sockets_join": lambda w: get(w).sockets_join("x"),
        f"{owner}.sockets_leave": lambda w: get(w).sockets_leave("r"),
        f"{owner}.disconnect_sockets": lambda w: get(w).disconnect_sockets(),
    }


RECIPES: dict[str, Recipe] = {
    **_targets("Server", lambda w: w.sio),
    **_targets("Namespace", lambda w: w.sio.main),
    **_targets("BroadcastOperator", lambda w: w.sio.to("r")),
    "Server.close_room": lambda w: w.sio.close_room("r"),
    "Namespace.close_room": lambda w: w.sio.main.close_room("r"),
    "Server.server_side_emit": lambda w: w.sio.server_side_emit("e"),
    "Namespace.server_side_emit": lambda w: w.sio.main.server_side_emit("e"),
    "Server.server_side_emit_with_ack": lambda w: w.sio.server_side_emit_with_ack("e"),
    "Namespace.server_side_emit_with_ack": lambda w: w.sio.main.server_side_emit_with_ack("e"),
    "Server.run": lambda w: world_server().run(),
    "Server.shutdown": lambda w: w.sio.shutdown(),
    "Server.handle_http": lambda w: w.sio.handle_http(_request("EIO=4&transport=polling")),
    "Server.handle_websocket": lambda w: w.sio.handle_websocket(
        _request("EIO=4&transport=websocket"), MemoryWebSocket()
    ),
    "ParentNamespace.emit": lambda w: w.sio._parents[0].emit("e"),
    "ParentNamespace.matches": lambda w: w.sio._parents[0].matches("/dyn1", {}),
    "AckCollector.wait": lambda w: trio_sio.AckCollector().wait(),
    "Socket.emit": lambda w: w.socket.emit("e", 1),
    "Socket.call": lambda w: w.socket.call("e", 1),
    "Socket.disconnect": lambda w: w.socket.disconnect(),
    "Socket.wait_disconnected": lambda w: w.socket.wait_disconnected(),
    "RemoteSocket.emit": lambda w: _remote(w).emit("e"),
    "RemoteSocket.emit_with_ack": lambda w: _remote(w).emit_with_ack("e"),
    "RemoteSocket.disconnect": lambda w: _remote(w).disconnect(),
    "EngineServer.run": lambda w: trio_sio.engineio.EngineServer(w.sio).run(),
    "EngineServer.shutdown": lambda w: w.sio.engine.shutdown(),
    "EngineServer.start_broadcast": lambda w: w.sio.engine.start_broadcast(),
    "EngineServer.handle_http": lambda w: w.sio.engine.handle_http(
        _request("EIO=4&transport=polling")
    ),
    "EngineServer.handle_websocket": lambda w: w.sio.engine.handle_websocket(
        _request("EIO=4&transport=websocket"), MemoryWebSocket()
    ),
    "Session.send": lambda w: w.socket.session.send(Outgoing.message('2["e"]')),
    "Session.wait_closed": lambda w: w.socket.session.wait_closed(),
    "Session.receive": lambda w: w.socket.session.receive(EnginePacket(EnginePacketType.CLOSE, "")),
    "TestClient.emit": lambda w: w.client.emit("ping"),
    "TestClient.call": lambda w: w.client.call("ping"),
    "TestClient.receive": lambda w: w.client.receive(),
    "TestClient.disconnect": lambda w: w.client.disconnect(),
    "TestClient.wait_disconnected": lambda w: w.client.wait_disconnected(),
    "serve_hypercorn": lambda w: trio_sio.serve_hypercorn(world_server(), "127.0.0.1", 0),
    "serve_native": lambda w: trio_sio.serve_native(world_server(), "127.0.0.1", 0),
}


def test_every_public_async_function_has_a_recipe() -> None:
    discovered = public_async_functions()
    assert len(discovered) > 40  # the walk found the API
    assert discovered - set(EXEMPT) == set(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
async def test_is_a_checkpoint_that_does_nothing_when_cancelled(name: str, world: World) -> None:
    before = world.snapshot()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await RECIPES[name](world)
    await trio.testing.wait_all_tasks_blocked()
    assert world.snapshot() == before
    # Nothing reached the client: the next thing it receives is the answer to this call.
    assert await world.client.call("ping") == "pong"
    with trio.move_on_after(0.05):
        received = await world.client.receive()
        pytest.fail(f"{name} sent {received} although cancelled")
