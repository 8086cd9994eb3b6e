"""The Socket.IO Admin UI's server side (issue 15, item 3), spoken to as the UI speaks it.

The clients are python-socketio's ``AsyncClient``: the admin clients connect to ``/admin`` as
``@socket.io/admin-ui`` does, the app's clients to ``/``. They run in an asyncio loop of their
own in a worker thread (``in_asyncio``) while the servers run in the test's Trio loop, over real
sockets on 127.0.0.1, on both hosts; one test speaks the protocol by hand, over bare HTTP and
WebSocket, to upgrade when it chooses. The fixture app is loaded with ``TRIO_SIO_ADMIN=1``
(``conformance_env``) for the test of that switch; the others serve servers of their own, with
default heartbeats. The real UI, in Chromium, is tests/test_admin_ui_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import bcrypt
import pytest
import socketio
import trio
from test_redis_adapter import cluster_size, make_server, redis

import trio_sio
import trio_sio.admin
from support.http import request
from support.redis import REDIS_MISSING, RedisServer
from support.servers import HOSTS, serve_app, serve_server
from support.websocket import WebSocket, open_websocket

__all__ = ["redis"]  # the fixture, used by the cluster test

T = TypeVar("T")

#: A whole scenario's budget: generous for a loaded machine, it only catches a hang.
SCENARIO_BUDGET_S = 60.0
#: One awaited message's budget (server_stats comes every 2 s).
WAIT_S = 15.0
ISO_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ALL_FEATURES = [
    "EMIT",
    "JOIN",
    "LEAVE",
    "DISCONNECT",
    "MJOIN",
    "MLEAVE",
    "MDISCONNECT",
    "AGGREGATED_EVENTS",
    "ALL_EVENTS",
]


@pytest.fixture
def conformance_env() -> dict[str, str]:
    return {"TRIO_SIO_ADMIN": "1"}


async def in_asyncio(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario()`` in a fresh asyncio loop in a worker thread, within its budget."""

    def run() -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(scenario(), SCENARIO_BUDGET_S)

        return asyncio.run(bounded())

    with trio.fail_after(SCENARIO_BUDGET_S + 10):
        return await trio.to_thread.run_sync(run)


class Peer:
    """One python-socketio client on one namespace that records everything it is sent."""

    def __init__(self, namespace: str = "/") -> None:
        self.namespace = namespace
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: list[tuple[str, list[Any]]] = []
        self.errors: list[Any] = []
        self.disconnects: list[Any] = []
        self._changed = asyncio.Event()

        async def record(event: str, *args: Any) -> None:
            self.received.append((event, list(args)))
            self._wake()

        async def connect_error(data: Any) -> None:
            self.errors.append(data)
            self._wake()

        async def disconnect(*reason: Any) -> None:
            self.disconnects.append(reason)
            self._wake()

        self.client.on("*", record, namespace=namespace)
        self.client.on("connect_error", connect_error, namespace=namespace)
        self.client.on("disconnect", disconnect, namespace=namespace)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def sid(self) -> str:
        sid = self.client.get_sid(self.namespace)
        assert sid is not None
        return sid

    async def connect(
        self, url: str, *, transports: list[str] | None = None, auth: Any = None
    ) -> None:
        await self.client.connect(
            url,
            namespaces=[self.namespace],
            transports=transports or ["websocket"],
            auth=auth,
            wait_timeout=WAIT_S,
        )

    async def until(self, condition: Callable[[], T]) -> T:
        """Wait until ``condition()`` is truthy, and return it."""

        async def wait() -> T:
            while not (result := condition()):
                await self._changed.wait()
            return result

        return await asyncio.wait_for(wait(), WAIT_S)

    async def wait_for(
        self, event: str, matches: Callable[[list[Any]], bool] = lambda args: True
    ) -> list[Any]:
        """The arguments of the first ``event`` that ``matches``, waiting for it."""

        def found() -> list[Any] | None:
            return next((a for e, a in self.received if e == event and matches(a)), None)

        return await self.until(found)

    def events(self, event: str) -> list[list[Any]]:
        return [args for name, args in self.received if name == event]

    async def close(self) -> None:
        await self.client.disconnect()


@asynccontextmanager
async def peers(*made: Peer) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for peer in made:
            await peer.close()


def check_socket(shown: dict[str, Any], sid: str, transport: str, rooms: list[str]) -> None:
    """A socket as the UI reads it (``SerializedSocket``)."""
    assert shown["id"] == sid
    assert shown["nsp"] == "/"
    assert shown["transport"] == transport
    assert isinstance(shown["clientId"], str)
    assert len(shown["clientId"]) == 12
    assert shown["rooms"] == sorted(rooms)
    assert shown["data"] == {}
    handshake = shown["handshake"]
    assert handshake["address"] == "127.0.0.1"
    assert isinstance(handshake["issued"], int)
    assert handshake["url"].startswith("/socket.io/?")
    assert handshake["query"]["EIO"] == "4"
    assert "auth" not in handshake


def check_stats(stats: dict[str, Any]) -> None:
    assert set(stats) == {
        "serverId",
        "hostname",
        "pid",
        "uptime",
        "clientsCount",
        "pollingClientsCount",
        "aggregatedEvents",
        "namespaces",
    }
    assert isinstance(stats["pid"], int)
    assert stats["uptime"] >= 0


def app_server(auth: trio_sio.admin.BasicAuth | None = None) -> trio_sio.Server:
    """A server whose clients join rooms with ``join(room)``, instrumented with ``auth``.
    Default heartbeats: the clients run in a thread that shares the GIL with the server."""
    sio = trio_sio.Server()

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> str:
        sock.join(room)
        return room

    trio_sio.admin.instrument(sio, auth=auth)
    return sio


# --- the protocol, on both hosts -----------------------------------------------------------


async def test_the_fixture_serves_admin_with_the_env_var(conformance_url: str) -> None:
    async def scenario() -> None:
        admin = Peer("/admin")
        async with peers(admin):
            await admin.connect(conformance_url)
            assert await admin.wait_for("config") == [{"supportedFeatures": ALL_FEATURES}]
            await admin.wait_for("all_sockets")
            (stats,) = await admin.wait_for("server_stats")
            check_stats(stats)
            names = {n["name"] for n in stats["namespaces"]}
            assert names == {"/", "/admin", "/custom", "/forbidden"}

    await in_asyncio(scenario)


@pytest.mark.parametrize("host", HOSTS)
async def test_admin_protocol_and_every_operation(host: str) -> None:
    async def scenario(url: str) -> None:
        admin, upgraded, plain = Peer("/admin"), Peer(), Peer()
        async with peers(admin, upgraded, plain):
            await admin.connect(url)
            config = await admin.wait_for("config")
            assert config == [{"supportedFeatures": ALL_FEATURES}]
            (everyone,) = await admin.wait_for("all_sockets")
            assert [s["nsp"] for s in everyone] == []  # the UI's own socket was connecting
            (stats,) = await admin.wait_for("server_stats")
            check_stats(stats)
            # The UI's own socket is shown too, as in Node.
            me, _ = await admin.wait_for("socket_connected", lambda a: a[0]["nsp"] == "/admin")
            assert me["id"] == admin.sid

            # A client that starts on long-polling and upgrades.
            await upgraded.connect(url, transports=["polling", "websocket"])
            a = upgraded.sid
            shown, when = await admin.wait_for("socket_connected", lambda x: x[0]["id"] == a)
            # python-socketio may upgrade before it connects the namespace.
            first = shown["transport"]
            check_socket(shown, a, first, [a])
            assert ISO_DATE.fullmatch(when)
            if first == "polling":
                await admin.wait_for(
                    "socket_updated",
                    lambda x: x[0] == {"id": a, "nsp": "/", "transport": "websocket"},
                )
            assert await upgraded.client.call("join", "room-a") == "room-a"
            await admin.wait_for("room_joined", lambda x: x[:3] == ["/", "room-a", a])
            received = await admin.wait_for("event_received", lambda x: x[1] == a)
            assert received[:3] == ["/", a, ["join", "room-a"]]
            assert ISO_DATE.fullmatch(received[3])

            await plain.connect(url)
            b = plain.sid
            await plain.client.call("join", "room-b")
            await admin.wait_for("room_joined", lambda x: x[:3] == ["/", "room-b", b])

            # A UI connecting now is sent every socket, rooms included.
            late = Peer("/admin")
            async with peers(late):
                await late.connect(url, transports=["polling"])
                (everyone,) = await late.wait_for("all_sockets")
                by_id = {s["id"]: s for s in everyone}
                check_socket(by_id[a], a, "websocket", [a, "room-a"])
                check_socket(by_id[b], b, "websocket", [b, "room-b"])
                assert by_id[admin.sid]["nsp"] == "/admin"

            # emit: by id, by filter (a room), and to everyone.
            await admin.client.emit("emit", ("/", a, "hello", "to-a"), namespace="/admin")
            await admin.client.emit("emit", ("/", "room-b", "hello", "to-b"), namespace="/admin")
            await admin.client.emit("emit", ("/", None, "hello", "to-all"), namespace="/admin")
            for peer, expected in ((upgraded, ["to-a", "to-all"]), (plain, ["to-b", "to-all"])):
                await peer.until(lambda peer=peer: len(peer.events("hello")) == 2)
                assert [args[0] for args in peer.events("hello")] == expected
            sent = await admin.wait_for("event_sent", lambda x: x[2] == ["hello", "to-a"])
            assert sent[:2] == ["/", a]

            # join and leave: by id, and by filter.
            await admin.client.emit("join", ("/", "x", b), namespace="/admin")
            await admin.wait_for("room_joined", lambda x: x[:3] == ["/", "x", b])
            await admin.client.emit("join", ("/", "y", "room-a"), namespace="/admin")
            await admin.wait_for("room_joined", lambda x: x[:3] == ["/", "y", a])
            await admin.client.emit("leave", ("/", "x", b), namespace="/admin")
            await admin.wait_for("room_left", lambda x: x[:3] == ["/", "x", b])
            await admin.client.emit("leave", ("/", "y", "room-a"), namespace="/admin")
            await admin.wait_for("room_left", lambda x: x[:3] == ["/", "y", a])
            # The rooms really changed: a broadcast to "x" or "y" reaches nobody now.
            assert await upgraded.client.call("join", "probe") == "probe"

            # _disconnect: one socket by id, then a room's with their whole connections.
            await admin.client.emit("_disconnect", ("/", False, a), namespace="/admin")
            await upgraded.until(lambda: upgraded.disconnects)
            gone = await admin.wait_for("socket_disconnected", lambda x: x[1] == a)
            assert gone[:3] == ["/", a, "io server disconnect"]
            for room in (a, "room-a", "probe"):
                await admin.wait_for("room_left", lambda x, room=room: x[:3] == ["/", room, a])
            await admin.client.emit("_disconnect", ("/", True, "room-b"), namespace="/admin")
            await plain.until(lambda: plain.disconnects)
            await admin.wait_for("socket_disconnected", lambda x: x[1] == b)

            # The counters since the last server_stats: the connections of the clients.
            def connections() -> int:
                return sum(
                    event["count"]
                    for (stats,) in admin.events("server_stats")
                    for event in stats["aggregatedEvents"]
                    if event["type"] == "rawConnection"
                )

            # Those after the UI connected (its own may fall in a period it did not see).
            await admin.until(lambda: connections() >= 3)

    async with serve_server(host, app_server()) as url:
        await in_asyncio(lambda: scenario(url))


async def admin_update(
    ws: WebSocket, event: str, matches: Callable[[list[Any]], bool] = lambda args: True
) -> list[Any]:
    """The arguments of the next ``event`` of the admin namespace that ``matches``, read from a
    bare WebSocket (answering its pings meanwhile)."""
    while True:
        message = await ws.receive()
        assert isinstance(message, str)
        if message == "2":
            await ws.send("3")
        elif message.startswith("42/admin,"):
            name, *args = json.loads(message[len("42/admin,") :])
            if name == event and matches(args):
                return args


class Opaque:
    """A value JSON cannot hold, with a ``repr`` longer than the UI is shown."""

    def __repr__(self) -> str:
        return "<opaque " + "x" * 300 + ">"


async def test_socket_data_json_cannot_hold_is_shown_as_its_repr() -> None:
    """``sock.data`` as the UI is shown it: each value JSON can hold as it is, any other as
    its ``repr`` (200 characters at most), and keys JSON cannot hold as their ``str``; never
    the admin's own key."""
    sio = app_server()

    @sio.on("remember")
    async def remember(sock: trio_sio.Socket, kind: str) -> None:
        if kind == "values":
            sock.data.update(name="ada", tags=["a", 1], blob=b"\x00\x01", opaque=Opaque())
        else:
            data: dict[Any, Any] = sock.data  # keys of any type, as an app may set them
            data.update({(1, 2): "pair", 3: "three"})

    async def scenario(url: str) -> None:
        values, keys, admin = Peer(), Peer(), Peer("/admin")
        async with peers(values, keys, admin):
            await values.connect(url)
            await values.client.call("remember", "values")
            await keys.connect(url)
            await keys.client.call("remember", "keys")
            await admin.connect(url)
            (everyone,) = await admin.wait_for("all_sockets")
            data = {shown["id"]: shown["data"] for shown in everyone}
            assert data[values.sid] == {
                "name": "ada",
                "tags": ["a", 1],
                "blob": "b'\\x00\\x01'",
                "opaque": repr(Opaque())[:200],
            }
            assert data[keys.sid] == {"(1, 2)": "pair", "3": "three"}

    async with serve_server("hypercorn", sio) as url:
        await in_asyncio(lambda: scenario(url))


@pytest.mark.parametrize("host", HOSTS)
async def test_an_upgrade_is_told_as_socket_updated(host: str) -> None:
    """By hand, over real sockets, so that the client connects its namespace while it is
    still long-polling (python-socketio may upgrade first)."""
    sio = trio_sio.Server()
    trio_sio.admin.instrument(sio, auth=None)
    async with serve_server(host, sio) as url:
        ws_base = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with open_websocket(ws_base) as admin:
            assert str(await admin.receive()).startswith("0")
            await admin.send("40/admin,")
            with trio.fail_after(WAIT_S):
                await admin_update(admin, "all_sockets")
                handshake = "/socket.io/?EIO=4&transport=polling"
                sid = json.loads((await request(url, "GET", handshake)).text[1:])["sid"]
                target = f"{handshake}&sid={sid}"
                assert (await request(url, "POST", target, b"40")).text == "ok"
                socket_id = json.loads((await request(url, "GET", target)).text[2:])["sid"]
                shown, _ = await admin_update(
                    admin, "socket_connected", lambda x: x[0]["id"] == socket_id
                )
                assert shown["transport"] == "polling"
                async with open_websocket(f"{ws_base}&sid={sid}") as ws:
                    await ws.send("2probe")
                    assert await ws.receive() == "3probe"
                    await ws.send("5")
                    update = await admin_update(admin, "socket_updated")
                    assert update == [{"id": socket_id, "nsp": "/", "transport": "websocket"}]


@pytest.mark.parametrize("host", HOSTS)
async def test_basic_auth_refuses_a_wrong_password(host: str) -> None:
    sio = trio_sio.Server()
    password_hash = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    trio_sio.admin.instrument(sio, auth=trio_sio.admin.BasicAuth("admin", password_hash))

    async def scenario(url: str) -> None:
        wrong, right, again = Peer("/admin"), Peer("/admin"), Peer("/admin")
        async with peers(wrong, right, again):
            for auth in (
                {"username": "admin", "password": "wrong"},
                {"username": "root", "password": "s3cret"},
                {"sessionId": "made-up"},
                None,
            ):
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await wrong.connect(url, auth=auth)
            assert wrong.errors == [{"message": "invalid credentials"}] * 4
            assert wrong.received == []
            await right.connect(url, auth={"username": "admin", "password": "s3cret"})
            (session,) = await right.wait_for("session")
            await right.wait_for("config")
            # The UI presents its session id when it reloads, instead of the password.
            await again.connect(url, auth={"sessionId": session})
            await again.wait_for("all_sockets")
            assert again.events("session") == []

    async with serve_server(host, sio) as url:
        await in_asyncio(lambda: scenario(url))


@pytest.mark.parametrize("host", HOSTS)
async def test_readonly_production_mode_sends_only_stats(host: str) -> None:
    sio = trio_sio.Server()
    admin_ui = trio_sio.admin.instrument(
        sio, auth=None, readonly=True, mode="production", server_id="node-1"
    )
    assert admin_ui.features == ["AGGREGATED_EVENTS"]
    # Nothing per event: no listener, and broadcasts keep the fan-out without a call.
    assert sio.lifecycle.listeners == sio.lifecycle.event_listeners == []
    assert sio.main._outgoing_hook() is None

    async def scenario(url: str) -> None:
        admin, app = Peer("/admin"), Peer()
        async with peers(admin, app):
            await admin.connect(url)
            assert await admin.wait_for("config") == [{"supportedFeatures": ["AGGREGATED_EVENTS"]}]
            await app.connect(url)
            await admin.client.emit("_disconnect", ("/", False, app.sid), namespace="/admin")
            (stats,) = await admin.wait_for(
                "server_stats", lambda x: {"name": "/", "socketsCount": 1} in x[0]["namespaces"]
            )
            assert stats["serverId"] == "node-1"
            assert stats["clientsCount"] == 2
            assert app.client.connected  # readonly: the operation was not even heard
            assert {event for event, _ in admin.received} == {"config", "server_stats"}

    async with serve_server(host, sio) as url:
        await in_asyncio(lambda: scenario(url))


@pytest.mark.parametrize("host", HOSTS)
async def test_a_flood_of_updates_is_dropped_and_counted_never_waited_for(host: str) -> None:
    """Updates past the queue's bound are dropped, not waited for: the app's client gets
    every event; a dropped change of the rooms makes the UI get every socket again."""
    sio = trio_sio.Server()
    admin_ui = trio_sio.admin.instrument(sio, auth=None)
    assert sio.lifecycle.event_listeners == [admin_ui]
    flood = trio_sio.admin.MAX_PENDING_UPDATES + 500

    @sio.on("flood")
    async def flood_handler(sock: trio_sio.Socket) -> int:
        # All in one step (no checkpoint): the admin's task cannot send any of it meanwhile.
        for i in range(flood):
            sock.emit_nowait("tick", i)
        return flood

    @sio.on("rooms")
    async def rooms(sock: trio_sio.Socket) -> int:
        sock.join(*(f"room-{i}" for i in range(flood)))
        return flood

    async def scenario(url: str) -> None:
        admin, app = Peer("/admin"), Peer()
        async with peers(admin, app):
            await admin.connect(url)
            await admin.wait_for("all_sockets")
            await app.connect(url)
            assert await app.client.call("flood") == flood
            await app.until(lambda: len(app.events("tick")) == flood)
            # What was queued before the flood takes a place or two of the bound.
            await admin.until(lambda: admin_ui.dropped_updates >= 500)
            dropped = admin_ui.dropped_updates
            assert dropped <= 503

            def ticks() -> int:
                return sum(1 for x in admin.events("event_sent") if x[2][0] == "tick")

            await admin.until(lambda: ticks() == flood - dropped)
            assert len(admin.events("all_sockets")) == 1  # events only: nothing to resend
            assert await app.client.call("rooms") == flood
            await admin.until(lambda: len(admin.events("all_sockets")) == 2)
            (again,) = admin.events("all_sockets")[1]
            (mine,) = [s for s in again if s["id"] == app.sid]
            assert len(mine["rooms"]) == flood + 1
            assert admin_ui.dropped_updates > dropped

    async with serve_server(host, sio) as url:
        await in_asyncio(lambda: scenario(url))


@pytest.mark.parametrize("host", HOSTS)
async def test_operations_with_wrong_arguments_do_nothing(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Operations as no UI sends them are ignored (logged at INFO, no handler failing); the
    bystander and the UI's own connection carry on."""
    caplog.set_level(logging.INFO, logger="trio_sio.admin")
    sio = trio_sio.Server()
    trio_sio.admin.instrument(sio, auth=None)

    async def scenario(url: str) -> None:
        admin, bystander = Peer("/admin"), Peer()
        async with peers(admin, bystander):
            await admin.connect(url)
            await admin.wait_for("all_sockets")
            await bystander.connect(url)
            me = bystander.sid
            for event, args in (
                ("emit", ("/", None, {"not": "a name"})),
                ("emit", ("/", None, "connect")),  # reserved
                ("emit", ("/nowhere", None, "hello")),
                ("emit", ()),
                ("join", ("/", {"room": 1}, me)),
                ("join", ("/", "r", ["a", "list"])),
                ("leave", (None, "r")),
                ("_disconnect", ("/", True, 42)),
                ("_disconnect", ("/nowhere", False)),
            ):
                await admin.client.emit(event, args, namespace="/admin")
            await admin.client.emit("emit", ("/", me, "hello", "still here"), namespace="/admin")
            await bystander.wait_for("hello", lambda x: x == ["still here"])
            assert [e for e, _ in bystander.received] == ["hello"]
            assert bystander.client.connected
            assert sio.namespaces.keys() == {"/", "/admin"}

    async with serve_server(host, sio) as url:
        await in_asyncio(lambda: scenario(url))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    ignored = [r for r in caplog.records if r.name == "trio_sio.admin"]
    assert len(ignored) == 9


async def test_instrument_refuses_mistakes_at_once() -> None:
    sio = trio_sio.Server()
    with pytest.raises(ValueError, match="bcrypt hash"):
        trio_sio.admin.BasicAuth("admin", "s3cret")
    with pytest.raises(TypeError, match="BasicAuth or None"):
        trio_sio.admin.instrument(sio, auth={"username": "admin"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        trio_sio.admin.instrument(sio, auth=None, mode="debug")  # type: ignore[arg-type]

    @sio.of("/admin").on("x")
    async def taken(sock: trio_sio.Socket) -> None: ...

    with pytest.raises(ValueError, match="has handlers already"):
        trio_sio.admin.instrument(sio, auth=None)
    trio_sio.admin.instrument(sio, auth=None, namespace="/ops")
    with pytest.raises(RuntimeError, match="instrumented already"):
        trio_sio.admin.instrument(sio, auth=None, namespace="/ops2")


# --- a cluster: two trio_sio nodes on a real Redis -------------------------------------------


@pytest.mark.skipif(REDIS_MISSING is not None, reason=REDIS_MISSING or "")
async def test_operations_act_on_every_node(redis: RedisServer) -> None:
    """Served as tests/test_redis_adapter.py serves its in-process nodes (the ASGI app under
    hypercorn: there the Redis adapter's shutdown is clean)."""
    one, two = make_server(redis.url), make_server(redis.url)
    trio_sio.admin.instrument(one, auth=None, server_id="one")
    trio_sio.admin.instrument(two, auth=None, server_id="two")

    async def scenario(url1: str, url2: str) -> None:
        admin, remote = Peer("/admin"), Peer()
        async with peers(admin, remote):
            await admin.connect(url1)
            await remote.connect(url2)  # on the other node
            r = remote.sid
            # What node two sends its admin namespace reaches the UI on node one.
            shown, _ = await admin.wait_for("socket_connected", lambda x: x[0]["id"] == r)
            check_socket(shown, r, "websocket", [r])
            await remote.client.call("join", "r")
            await admin.wait_for("room_joined", lambda x: x[:3] == ["/", "r", r])
            await admin.until(
                lambda: {s["serverId"] for (s,) in admin.events("server_stats")} == {"one", "two"}
            )
            late = Peer("/admin")
            async with peers(late):
                await late.connect(url1)
                (everyone,) = await late.wait_for("all_sockets")
                (fetched,) = [s for s in everyone if s["id"] == r]
                # Node two's socket, described by node two, with its client id and transport.
                check_socket(fetched, r, "websocket", [r, "r"])

            await admin.client.emit("emit", ("/", "r", "hello", "by-room"), namespace="/admin")
            await remote.wait_for("hello", lambda x: x == ["by-room"])
            await admin.client.emit("join", ("/", "z", r), namespace="/admin")
            await admin.wait_for("room_joined", lambda x: x[:3] == ["/", "z", r])
            await admin.client.emit("leave", ("/", "z", "r"), namespace="/admin")
            await admin.wait_for("room_left", lambda x: x[:3] == ["/", "z", r])
            await admin.client.emit("_disconnect", ("/", False, r), namespace="/admin")
            await remote.until(lambda: remote.disconnects)
            await admin.wait_for("socket_disconnected", lambda x: x[1] == r)

    async with serve_app(trio_sio.ASGIApp(one)) as url1, serve_app(trio_sio.ASGIApp(two)) as url2:
        await cluster_size(one, 2)
        with trio.fail_after(5):  # the admin namespaces' subscriptions too
            while await one.of("/admin").adapter.server_count() != 2:
                await trio.sleep(0.02)
        await in_asyncio(lambda: scenario(url1, url2))
