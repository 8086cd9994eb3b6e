"""Socket.IO semantics: handlers, acks both ways, rooms, broadcasts, namespaces, middleware,
disconnects and the structured-concurrency guarantees, through ``trio_sio.testing`` (in-process,
on Trio's clock: ``autojump_clock`` makes timeouts instant)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_sio
from trio_sio import Disconnected, DisconnectReason
from trio_sio.testing import open_client, running


def make_server(**options: Any) -> trio_sio.Server:
    sio = trio_sio.Server(**options)

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("join")
    async def join(sock: trio_sio.Socket, *rooms: str) -> list[str]:
        sock.join(*rooms)
        return sorted(sock.rooms - {sock.id})

    @sio.on("leave")
    async def leave(sock: trio_sio.Socket, room: str) -> None:
        sock.leave(room)

    return sio


async def test_handler_return_value_is_the_ack() -> None:
    sio = make_server()

    @sio.on("none")
    async def none(sock: trio_sio.Socket) -> None:
        return None

    @sio.on("one")
    async def one(sock: trio_sio.Socket) -> list[int]:
        return [1, 2]

    async with running(sio), open_client(sio) as client:
        assert await client.call("echo") is None
        assert await client.call("echo", "a") == "a"
        assert await client.call("echo", 1, "2", {"3": [False]}) == (1, "2", {"3": [False]})
        assert await client.call("none") is None
        assert await client.call("one") == [1, 2]


async def test_binary_anywhere_both_directions() -> None:
    sio = make_server()
    async with running(sio), open_client(sio) as client:
        payload = {"file": b"\x00\x01", "parts": [b"a", {"deep": [b"b"]}]}
        assert await client.call("echo", b"top", payload) == (b"top", payload)


async def test_connect_handler_sees_auth_and_runs_before_events() -> None:
    sio = trio_sio.Server()
    order: list[str] = []

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        await trio.sleep(1)  # slow authentication: events must wait for it
        order.append("connect")
        sock.data["user"] = auth["user"]
        await sock.emit("welcome", auth)

    @sio.on("who")
    async def who(sock: trio_sio.Socket) -> str:
        order.append("who")
        return str(sock.data["user"])

    async with running(sio), open_client(sio, auth={"user": "ann"}) as client:
        assert await client.call("who") == "ann"
        assert order == ["connect", "who"]
        welcome = await client.receive("welcome")
        assert welcome.args == ({"user": "ann"},)


async def test_handshake_information() -> None:
    sio = trio_sio.Server()
    seen: list[trio_sio.Handshake] = []

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        seen.append(sock.handshake)

    async with (
        running(sio),
        open_client(sio, auth={"t": 1}, query={"room": "x"}, headers={"X-Test": "y"}),
    ):
        (handshake,) = seen
        assert handshake.auth == {"t": 1}
        assert handshake.query["room"] == "x"
        assert handshake.headers["x-test"] == "y"
        assert handshake.address == "127.0.0.1"
        assert handshake.url.startswith("/socket.io/?")


async def test_events_are_handled_in_order_one_at_a_time() -> None:
    sio = trio_sio.Server()
    seen: list[int] = []
    running_now = 0

    @sio.on("n")
    async def n(sock: trio_sio.Socket, i: int) -> None:
        nonlocal running_now
        running_now += 1
        assert running_now == 1
        await trio.sleep(0.01 * (i % 3))
        seen.append(i)
        running_now -= 1
        await sock.emit("n", i)

    async with running(sio), open_client(sio) as client:
        for i in range(100):
            await client.emit("n", i)
        received = [(await client.receive("n")).args[0] for _ in range(100)]
    assert seen == list(range(100))
    assert received == list(range(100))


async def test_concurrent_handlers_when_allowed(autojump_clock: trio.testing.MockClock) -> None:
    sio = trio_sio.Server(max_concurrent_handlers=4)
    peak = 0
    current = 0

    @sio.on("work")
    async def work(sock: trio_sio.Socket) -> None:
        nonlocal peak, current
        current += 1
        peak = max(peak, current)
        await trio.sleep(1)
        current -= 1

    async with running(sio), open_client(sio) as client:
        start = trio.current_time()
        for _ in range(8):
            await client.emit("work")
        assert await client.call("work") is None
        assert peak == 4
        assert trio.current_time() - start < 4


async def test_server_call_gets_the_client_answer() -> None:
    sio = trio_sio.Server()

    @sio.on("ask")
    async def ask(sock: trio_sio.Socket, question: str) -> Any:
        return await sock.call("question", question)

    async with running(sio), open_client(sio) as client:

        async def answer(question: str) -> tuple[str, int]:
            return question.upper(), 42

        client.on("question", answer)
        assert await client.call("ask", "why") == ("WHY", 42)


async def test_pending_call_fails_at_once_on_disconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A caller outside the socket gets Disconnected at once, not at its deadline; a caller
    inside the socket's own nursery is cancelled with it."""
    sio = trio_sio.Server()
    inside_cancelled = trio.Event()

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        async def ask_inside() -> None:
            try:
                await sock.call("inside")
            finally:
                inside_cancelled.set()

        sock.nursery.start_soon(ask_inside)

    async with running(sio), open_client(sio) as client, trio.open_nursery() as nursery:
        await client.receive("inside")
        (sock,) = await sio.fetch_sockets()

        async def leave_later() -> None:
            await trio.sleep(5)
            await client.disconnect()

        nursery.start_soon(leave_later)
        start = trio.current_time()
        with pytest.raises(Disconnected) as disconnected, trio.fail_after(60):
            await sock.call("outside")
        assert trio.current_time() - start == pytest.approx(5)
        assert disconnected.value.reason is DisconnectReason.IO_CLIENT_DISCONNECT
        with trio.fail_after(1):
            await inside_cancelled.wait()


async def test_socket_tasks_end_with_the_socket(autojump_clock: trio.testing.MockClock) -> None:
    sio = trio_sio.Server()
    cancelled = trio.Event()

    @sio.on("start")
    async def start(sock: trio_sio.Socket) -> None:
        async def background() -> None:
            try:
                await trio.sleep_forever()
            finally:
                cancelled.set()

        sock.nursery.start_soon(background)

    async with running(sio):
        async with open_client(sio) as client:
            await client.call("start")
        with trio.fail_after(1):
            await cancelled.wait()
        await settled(sio)


async def settled(sio: trio_sio.Server) -> None:
    """Wait until no session, socket or session task is left."""
    with trio.fail_after(5):
        while (stats := sio.engine.statistics()).sessions or stats.session_tasks:
            await trio.sleep(0.01)
    assert sio.statistics().sockets == 0
    assert sio.statistics().rooms == 0


async def test_rooms_and_broadcast_targets() -> None:
    sio = make_server()
    async with (
        running(sio),
        open_client(sio) as a,
        open_client(sio) as b,
        open_client(sio) as c,
    ):
        assert await a.call("join", "red") == ["red"]
        assert await b.call("join", "red", "blue") == ["blue", "red"]
        assert await c.call("join", "blue") == ["blue"]
        sockets = {s.id: s for s in await sio.fetch_sockets()}
        sock_a = sockets[a.sid]
        assert sock_a.rooms == {a.sid, "red"}

        await sio.to("red").emit("m", "to red")
        assert (await a.receive("m")).args == ("to red",)
        assert (await b.receive("m")).args == ("to red",)

        await sock_a.to("red").emit("m", "from a")  # not to the sender
        await sio.to("red", "blue").except_("blue").emit("m", "red not blue")
        await sio.to("red", "blue").emit("m", "once each")
        assert (await b.receive("m")).args == ("from a",)
        assert (await a.receive("m")).args == ("red not blue",)
        assert (await a.receive("m")).args == ("once each",)
        assert (await b.receive("m")).args == ("once each",)
        assert (await c.receive("m")).args == ("once each",)

        await sock_a.broadcast.emit("m", "all but a")
        assert (await b.receive("m")).args == ("all but a",)
        assert (await c.receive("m")).args == ("all but a",)
        await sio.to(c.sid).emit("m", "private")
        assert (await c.receive("m")).args == ("private",)

        await a.call("leave", "red")
        await sio.to("red").emit("m", "b only")
        assert (await b.receive("m")).args == ("b only",)
        await sio.emit("m", "everyone")
        for client in (a, b, c):
            assert (await client.receive("m")).args == ("everyone",)


async def test_server_wide_operations() -> None:
    sio = make_server()
    async with running(sio), open_client(sio) as a, open_client(sio) as b:
        await a.call("join", "x")
        await sio.in_("x").sockets_join("y")
        assert {s.id for s in await sio.in_("y").fetch_sockets()} == {a.sid}
        await sio.sockets_join("all")
        assert {s.id for s in await sio.in_("all").fetch_sockets()} == {a.sid, b.sid}
        await sio.main.close_room("all")
        assert "all" not in sio.main.adapter.rooms
        await sio.in_("x").disconnect_sockets()
        assert await a.wait_disconnected() == "io server disconnect"
        assert b.connected
        assert [s.id for s in await sio.fetch_sockets()] == [b.sid]


async def test_broadcast_with_acks_reports_who_did_not_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = trio_sio.Server()
    async with running(sio), open_client(sio) as a, open_client(sio) as b, open_client(sio):

        async def yes() -> str:
            return "yes"

        async def slow() -> str:
            await trio.sleep(100)
            return "late"

        a.on("poll", yes)
        b.on("poll", slow)
        acks = await sio.emit_with_ack("poll")
        assert acks.expected == 3
        with trio.move_on_after(5):
            await acks.wait()
        assert acks.replies == {a.sid: "yes"}
        assert len(acks.missing) == 2
        assert b.sid in acks.missing
        assert not acks.complete


async def test_volatile_is_dropped_for_clients_that_are_behind() -> None:
    sio = trio_sio.Server()
    async with running(sio), open_client(sio) as client:
        (sock,) = await sio.fetch_sockets()
        sock.session.delivery.put_nowait(sio.main.adapter.encode(_event("/", "filler")))
        await sio.volatile.emit("tick", 1)  # the client is behind: dropped
        assert sock.session.dropped_volatile == 1
        assert (await client.receive()).name == "filler"
        await sio.volatile.emit("tick", 2)
        assert (await client.receive()).args == (2,)


def _event(namespace: str, name: str, *args: Any) -> trio_sio._protocol.SocketPacket:
    from trio_sio._protocol import PacketType, SocketPacket

    return SocketPacket(PacketType.EVENT, namespace, [name, *args])


async def test_slow_consumer_is_disconnected_and_others_get_everything() -> None:
    sio = trio_sio.Server(outbound_queue_packets=100)
    reasons: list[DisconnectReason] = []

    @sio.on_disconnect
    async def gone(sock: trio_sio.Socket, reason: DisconnectReason) -> None:
        reasons.append(reason)

    async with running(sio), open_client(sio) as fast, open_client(sio) as slow:
        received: list[int] = []
        for burst in range(100):
            for i in range(burst * 20, burst * 20 + 20):
                await sio.emit("n", i)  # never waits, whoever is slow
            # The fast client reads everything; the slow one never reads at all.
            while len(received) < burst * 20 + 20:
                received.append((await fast.receive("n")).args[0])
        assert received == list(range(2000))
        assert await slow.wait_disconnected() == "transport close"
        assert reasons == [DisconnectReason.SLOW_CONSUMER]
        assert fast.connected


async def test_emit_nowait_raises_would_block_when_full() -> None:
    sio = trio_sio.Server(outbound_queue_packets=3)
    async with running(sio), open_client(sio):
        (sock,) = await sio.fetch_sockets()
        with pytest.raises(trio.WouldBlock):  # noqa: PT012
            for i in range(1000):
                sock.emit_nowait("n", i)


async def test_namespaces_middleware_and_refusals() -> None:
    sio = trio_sio.Server()
    admin = sio.of("/admin")

    @admin.use
    async def check_token(sock: trio_sio.Socket, auth: Any) -> None:
        if auth.get("token") != "secret":
            raise trio_sio.ConnectionRefused("not authorized", {"hint": "token"})

    @admin.on("whoami")
    async def whoami(sock: trio_sio.Socket) -> str:
        return sock.namespace.name

    async with running(sio):
        with pytest.raises(trio_sio.ConnectionRefused) as refused:
            async with open_client(sio, "/admin", auth={"token": "wrong"}):
                pass
        assert refused.value.message == "not authorized"
        assert refused.value.data == {"hint": "token"}
        with pytest.raises(trio_sio.ConnectionRefused) as unknown:
            async with open_client(sio, "/nowhere"):
                pass
        assert unknown.value.message == "Invalid namespace"
        async with open_client(sio, "/admin", auth={"token": "secret"}) as client:
            assert await client.call("whoami") == "/admin"
        await settled(sio)


async def test_dynamic_namespaces_share_handlers() -> None:
    sio = trio_sio.Server()
    rooms = sio.of_dynamic(re.compile(r"/room-\d+"))
    teams = sio.of_dynamic(lambda name, auth: name.startswith("/team-") and bool(auth))

    @rooms.on("where")
    async def where(sock: trio_sio.Socket) -> str:
        return sock.namespace.name

    @teams.use
    async def team_member(sock: trio_sio.Socket, auth: Any) -> None:
        sock.data["member"] = auth["member"]

    @teams.on("member")
    async def member(sock: trio_sio.Socket) -> Any:
        return sock.data["member"]

    async with running(sio):
        async with open_client(sio, "/room-1") as one, open_client(sio, "/room-22") as two:
            assert await one.call("where") == "/room-1"
            assert await two.call("where") == "/room-22"
            await rooms.emit("hello")
            assert (await one.receive("hello")).args == ()
            assert (await two.receive("hello")).args == ()
        async with open_client(sio, "/team-a", auth={"member": "bo"}) as team:
            assert await team.call("member") == "bo"
        with pytest.raises(trio_sio.ConnectionRefused):
            async with open_client(sio, "/room-x"):
                pass
        # Children whose last socket left are forgotten (Node's cleanupEmptyChildNamespaces).
        await trio.testing.wait_all_tasks_blocked()
        assert rooms.children == {}
        assert teams.children == {}


async def test_disconnect_reasons_and_rooms_while_disconnecting() -> None:
    sio = make_server()
    events: list[tuple[str, DisconnectReason, frozenset[str]]] = []

    @sio.on_disconnecting
    async def disconnecting(sock: trio_sio.Socket, reason: DisconnectReason) -> None:
        events.append(("disconnecting", reason, sock.rooms - {sock.id}))

    @sio.on_disconnect
    async def disconnect(sock: trio_sio.Socket, reason: DisconnectReason) -> None:
        events.append(("disconnect", reason, sock.rooms))

    @sio.on("kick")
    async def kick(sock: trio_sio.Socket) -> None:
        await sock.disconnect()

    async with running(sio):
        async with open_client(sio) as client:
            await client.call("join", "r")
            await client.disconnect()
        async with open_client(sio) as client:
            await client.emit("kick")
            assert await client.wait_disconnected() == "io server disconnect"
        await settled(sio)
    assert events == [
        ("disconnecting", DisconnectReason.IO_CLIENT_DISCONNECT, frozenset({"r"})),
        ("disconnect", DisconnectReason.IO_CLIENT_DISCONNECT, frozenset()),
        ("disconnecting", DisconnectReason.IO_SERVER_DISCONNECT, frozenset()),
        ("disconnect", DisconnectReason.IO_SERVER_DISCONNECT, frozenset()),
    ]


async def test_connect_timeout_closes_idle_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_sio._engine import HttpRequest
    from trio_sio.hosts import MemoryWebSocket

    sio = trio_sio.Server(connect_timeout=3)
    async with running(sio), trio.open_nursery() as nursery:
        ws = MemoryWebSocket()  # Engine.IO only: it never connects a namespace
        request = HttpRequest("GET", "/socket.io/", "EIO=4&transport=websocket", {})
        nursery.start_soon(sio.handle_websocket, request, ws)
        start = trio.current_time()
        frames = [frame async for frame in ws.from_server if frame != "2"]
        assert len(frames) == 1  # the open packet, then the connection closed
        assert 2.9 < trio.current_time() - start < 3.2
        await settled(sio)


async def test_each_session_gets_its_own_connect_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One timer for the whole server: deadlines of sessions opened at different times, and a
    # client that joined a namespace in time is left alone.
    from trio_sio._engine import HttpRequest
    from trio_sio.hosts import MemoryWebSocket

    sio = make_server(connect_timeout=3)
    closed_after: list[float] = []
    start = trio.current_time()

    async def engine_only_session(delay: float) -> None:
        await trio.sleep(delay)
        ws = MemoryWebSocket()
        request = HttpRequest("GET", "/socket.io/", "EIO=4&transport=websocket", {})
        await sio.handle_websocket(request, ws)
        closed_after.append(trio.current_time() - start)

    async with running(sio), open_client(sio) as joined:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine_only_session, 0)
            nursery.start_soon(engine_only_session, 1.5)
        assert [round(t, 1) for t in closed_after] == [3.0, 4.5]
        assert await joined.call("echo", "still here") == "still here"


async def test_catch_all_packet_middleware_and_outgoing_hooks() -> None:
    sio = make_server()
    incoming: list[tuple[str, tuple[Any, ...]]] = []
    outgoing: list[str] = []

    @sio.on_any
    async def any_event(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        incoming.append((event, args))

    @sio.on_any_outgoing
    def any_outgoing(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        outgoing.append(event)

    @sio.use_packet
    async def no_secrets(sock: trio_sio.Socket, event: str, args: list[Any]) -> None:
        if event == "secret":
            raise PermissionError(event)
        args[:] = [str(arg).upper() for arg in args]

    async with running(sio), open_client(sio) as client:
        assert await client.call("echo", "a", "b") == ("A", "B")
        await client.emit("secret", 1)
        await sio.emit("news")
        await client.receive("news")
    assert incoming == [("echo", ("A", "B"))]
    assert outgoing == ["news"]


async def test_failing_handler_is_logged_and_others_carry_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sio = make_server()

    @sio.on("boom")
    async def boom(sock: trio_sio.Socket) -> None:
        raise RuntimeError("handler bug")

    async with running(sio, raise_handler_errors=False), open_client(sio) as client:
        await client.emit("boom")
        assert await client.call("echo", 1) == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "handler bug" in str(errors[0].exc_info)


async def test_failing_handler_fails_the_test_in_testing_mode() -> None:
    sio = make_server()

    @sio.on("boom")
    async def boom(sock: trio_sio.Socket) -> None:
        raise RuntimeError("handler bug")

    with pytest.RaisesGroup(RuntimeError, flatten_subgroups=True):
        async with running(sio), open_client(sio) as client:
            await client.emit("boom")
            await trio.sleep_forever()


async def test_pending_acks_are_bounded() -> None:  # R2
    sio = trio_sio.Server(max_pending_acks=10)

    @sio.on("flood")
    async def flood(sock: trio_sio.Socket) -> str:
        for _ in range(10):
            sock.nursery.start_soon(sock.call, "never answered")
        while len(sock._pending_acks) < 10:
            await trio.lowlevel.checkpoint()
        try:
            await sock.call("one too many")
        except RuntimeError as exc:
            return str(exc)
        return "accepted"

    async with running(sio), open_client(sio) as client:
        assert await client.call("flood") == "more than 10 acknowledgements pending"


async def test_event_flood_stops_reading_instead_of_buffering() -> None:  # R3
    sio = trio_sio.Server(handler_queue_size=16)
    gate = trio.Event()
    handled: list[int] = []

    @sio.on("n")
    async def n(sock: trio_sio.Socket, i: int) -> None:
        await gate.wait()
        handled.append(i)

    async with running(sio), open_client(sio) as client, trio.open_nursery() as nursery:
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for i in range(1000):
                await client.emit("n", i)
                sent += 1

        nursery.start_soon(flood)
        await trio.testing.wait_all_tasks_blocked()
        (sock,) = await sio.fetch_sockets()
        # One event in its handler, 16 queued, the transport's small buffer full, and the
        # client's sends blocked: nothing grows with the flood.
        assert sock.statistics().queued_events == 16
        assert sent < 100
        gate.set()
        with trio.fail_after(5):
            while len(handled) < 1000:
                await trio.sleep(0.01)
        assert handled == list(range(1000))
