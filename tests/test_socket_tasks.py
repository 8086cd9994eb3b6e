"""A socket's task: it runs ``on_connect`` and then the socket's events; a socket that
connects and has nothing to do lets it end (it *parks*), as does one idle for a heartbeat
interval, and its next event starts one again.

An idle connection is the common case (a dashboard that only listens, a chat member who
reads), and the task with its nursery is about 3 KB of it. These tests hold what a user must
not notice: every event is handled, in order, however soon after connecting it comes; the
disconnect handlers run once, with the reason and the rooms, however an idle socket goes; the
nursery handed out in ``on_connect`` stays usable. What they may notice is checked too:
``sock.nursery`` read from outside the socket while it is parked says why it cannot be had.

The in-process tests use :mod:`trio_sio.testing` on Trio's clock; the end of the file runs
the same paths over real sockets on both hosts in the three transport modes, and a
Hypothesis state machine interleaves them at random.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from test_delivery_model import TrioThread

import trio_sio
from support.peers import TRANSPORTS
from support.servers import HOSTS, serve_server
from trio_sio import DisconnectReason
from trio_sio._engine import HttpRequest
from trio_sio._protocol import PacketType, SocketPacket
from trio_sio._socket import InboundBudget, _EventQueue
from trio_sio.hosts import MemoryWebSocket
from trio_sio.testing import TestClient, open_client, running

#: A budget that catches a hang on real sockets (the machine may be busy).
BUDGET = 20


def socket_tasks() -> list[trio.lowlevel.Task]:
    """Every task of a socket now running, anywhere in this Trio run."""
    found: list[trio.lowlevel.Task] = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        assert task is not None
        if task.name == "trio_sio.socket":
            found.append(task)
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


async def wait_for_no_socket_task() -> None:
    """Until no socket of the server (in this process, on this loop) has a task."""
    while socket_tasks():
        await trio.sleep(0.01)


class Journal:
    """What a server's handlers saw, for the tests to compare with what was sent."""

    def __init__(self) -> None:
        self.handled: dict[str, list[int]] = {}
        self.disconnecting: dict[str, list[tuple[str, frozenset[str]]]] = {}
        self.disconnected: dict[str, list[str]] = {}
        self.background_cancelled: set[str] = set()
        self.borrowed: dict[str, trio.Nursery] = {}
        self.gone = trio.Event()  # set at every disconnect handler's end, then made anew

    async def background(self, sid: str) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.background_cancelled.add(sid)


def journal_server(**options: Any) -> tuple[trio_sio.Server, Journal]:
    """A server whose ``on_connect`` does what the client's auth asks (``{"kind": ...}``):
    nothing (``plain``), start a task in ``sock.nursery`` (``task``), or keep the nursery to
    start one later from outside (``borrow``). It joins every socket to room ``r``."""
    sio = trio_sio.Server(**options)
    journal = Journal()

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        sock.join("r")
        kind = auth.get("kind", "plain")
        if kind == "task":
            sock.nursery.start_soon(journal.background, sock.id)
        elif kind == "borrow":
            journal.borrowed[sock.id] = sock.nursery

    @sio.on("ev")
    async def event(sock: trio_sio.Socket, seq: int) -> int:
        journal.handled.setdefault(sock.id, []).append(seq)
        await trio.lowlevel.checkpoint()  # a handler that yields, so that events overlap
        return seq

    @sio.on("spawn")
    async def spawn(sock: trio_sio.Socket) -> None:
        sock.nursery.start_soon(journal.background, sock.id)

    @sio.on_disconnecting
    async def disconnecting(sock: trio_sio.Socket, reason: DisconnectReason) -> None:
        journal.disconnecting.setdefault(sock.id, []).append((reason.value, sock.rooms))

    @sio.on_disconnect
    async def disconnect(sock: trio_sio.Socket, reason: DisconnectReason) -> None:
        journal.disconnected.setdefault(sock.id, []).append(reason.value)
        journal.gone.set()
        journal.gone = trio.Event()

    return sio, journal


async def test_an_idle_socket_holds_no_task_until_its_first_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio, journal = journal_server()
    async with running(sio), AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(open_client(sio)) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        assert socket_tasks() == []
        assert await clients[0].call("ev", 1) == 1
        await trio.testing.wait_all_tasks_blocked()
        # The socket that had an event keeps a task (one start per socket, not per event).
        assert len(socket_tasks()) == 1
        assert await clients[0].call("ev", 2) == 2
        assert len(socket_tasks()) == 1
        assert journal.handled == {clients[0].sid: [1, 2]}


async def test_a_socket_idle_for_a_heartbeat_interval_gives_its_task_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A socket that talked keeps its task while events come at least once an interval
    (checked each ``ping_interval``), and lets it go after a whole interval without one."""
    sio, journal = journal_server()
    interval = sio.engine_options.ping_interval
    async with running(sio), open_client(sio) as client:
        for seq in range(5):  # an event every half interval: the task stays throughout
            assert await client.call("ev", seq) == seq
            await trio.sleep(interval / 2)
            assert len(socket_tasks()) == 1
        await trio.sleep(interval * 2)
        assert socket_tasks() == []
        assert await client.call("ev", 5) == 5
        assert journal.handled == {client.sid: list(range(6))}
        assert len(socket_tasks()) == 1
        alarms = sio.engine._sessions.alarms
        assert len(alarms) == 2  # the session's next ping, the socket's idleness check
        await client.disconnect()
        await trio.testing.wait_all_tasks_blocked()
        assert len(alarms) == 1  # the session's alone: nothing of the socket waits on it


@pytest.mark.parametrize("event_first", [False, True])
async def test_the_event_queue_lets_a_waiting_consumer_go_once(event_first: bool) -> None:
    """``_EventQueue.let_go`` ends one wait with no packet. An event queued before the woken
    consumer runs is what that ``get`` returns instead: not lost, and not followed by a
    spurious ``None``. Either way the next ``get`` waits again."""
    budget = InboundBudget(10)
    queue = _EventQueue(budget)
    packet = SocketPacket(PacketType.EVENT, "/", ["ev", 0])
    got: list[SocketPacket | None] = []

    async def consume() -> None:
        got.append(await queue.get())
        got.append(await queue.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        assert queue.let_go()
        assert not queue.let_go()  # nobody waits now
        if event_first:
            assert budget.acquire_nowait()
            assert queue.put_nowait(packet)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [packet if event_first else None]  # and the second get waits
        queue.close()
    assert got[1] is None


@pytest.mark.parametrize("handlers", [1, 3])
@pytest.mark.parametrize("idle", [0, 1.0])
async def test_events_right_after_connecting_are_all_handled_in_order(
    autojump_clock: trio.testing.MockClock, handlers: int, idle: float
) -> None:
    """Sent at once (some may be queued before on_connect's task decides to end, some
    after), or after the socket has parked: every event is handled, in the order sent
    where handlers run one at a time."""
    sio, journal = journal_server(max_concurrent_handlers=handlers)
    async with running(sio), open_client(sio) as client:
        await trio.sleep(idle)
        for seq in range(12):
            await client.emit("ev", seq)
        assert await client.call("ev", 12) == 12
        handled = journal.handled[client.sid]
        if handlers == 1:
            assert handled == list(range(13))
        else:
            assert sorted(handled) == list(range(13))


@asynccontextmanager
async def idle_client(sio: trio_sio.Server) -> AsyncIterator[tuple[TestClient, trio_sio.Socket]]:
    """A client connected to ``sio`` and idle (its socket parked), with its socket."""
    async with open_client(sio) as client:
        await trio.testing.wait_all_tasks_blocked()
        assert socket_tasks() == []
        yield client, sio.of("/").sockets[client.sid]


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("client disconnects", "io client disconnect"),
        ("connection closes", "transport close"),
        ("server disconnects", "io server disconnect"),
        ("server closes", "io server disconnect"),
    ],
)
async def test_an_idle_socket_that_goes_runs_its_disconnect_handlers_once(
    autojump_clock: trio.testing.MockClock, how: str, reason: str
) -> None:
    sio, journal = journal_server()
    async with running(sio), idle_client(sio) as (client, sock):
        gone = journal.gone
        if how == "client disconnects":
            await client.disconnect()
        elif how == "connection closes":
            await client._ws.to_server.aclose()
        elif how == "server disconnects":
            await sock.disconnect()
        else:
            await sock.disconnect(close=True)
        with trio.fail_after(60):
            await gone.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert journal.disconnecting == {client.sid: [(reason, frozenset({client.sid, "r"}))]}
        assert journal.disconnected == {client.sid: [reason]}
        assert sock.disconnect_reason is not None
        assert sock.disconnect_reason.value == reason
        assert socket_tasks() == []


async def test_an_idle_socket_whose_client_stops_answering_pings_goes_with_ping_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A raw in-memory client, which never answers the server's pings."""
    sio, journal = journal_server()
    ws = MemoryWebSocket()
    request = HttpRequest("GET", "/socket.io/", "EIO=4&transport=websocket", {})
    async with running(sio), trio.open_nursery() as nursery:
        nursery.start_soon(sio.handle_websocket, request, ws)
        opening = await ws.from_server.receive()
        assert isinstance(opening, str)
        assert opening.startswith("0")
        await ws.to_server.send("40")
        connected = await ws.from_server.receive()
        assert isinstance(connected, str)
        assert connected.startswith('40{"sid"')
        sid = json.loads(connected[2:])["sid"]
        await trio.testing.wait_all_tasks_blocked()
        assert socket_tasks() == []
        with trio.fail_after(60):
            await journal.gone.wait()
        assert journal.disconnecting == {sid: [("ping timeout", frozenset({sid, "r"}))]}
        assert journal.disconnected == {sid: ["ping timeout"]}
        await ws.to_server.aclose()


async def test_idle_sockets_run_their_disconnect_handlers_when_the_server_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio, journal = journal_server()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(sio))
        clients = [await stack.enter_async_context(open_client(sio)) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        assert socket_tasks() == []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sio.shutdown)
    assert journal.disconnected == {c.sid: ["server shutting down"] for c in clients}


async def test_a_nursery_kept_from_on_connect_stays_open_for_later_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``on_connect`` read ``sock.nursery`` and kept it: the socket keeps its task, so a
    task started in that nursery later, from anywhere, runs until the socket goes."""
    sio, journal = journal_server()
    async with running(sio), open_client(sio, auth={"kind": "borrow"}) as client:
        await trio.testing.wait_all_tasks_blocked()
        assert len(socket_tasks()) == 1
        journal.borrowed[client.sid].start_soon(journal.background, client.sid)
        await trio.sleep(60)
        assert journal.background_cancelled == set()
        await client.disconnect()
        with trio.fail_after(1):
            while client.sid not in journal.background_cancelled:
                await trio.sleep(0.01)


async def test_the_nursery_of_a_parked_socket_read_from_elsewhere_says_why_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Here trio_sio differs from what it was: ``sock.nursery`` is for the socket's own
    handlers and tasks; a parked socket has none to own it."""
    sio, _ = journal_server()
    async with running(sio), idle_client(sio) as (client, sock):
        with pytest.raises(RuntimeError, match="no task to own a nursery now") as refused:
            sock.nursery  # noqa: B018
        assert "wait_disconnected" in str(refused.value)
        await client.call("spawn")  # the socket has a task again, and a task in its nursery
        assert isinstance(sock.nursery, trio.Nursery)
        await client.disconnect()
        with trio.fail_after(1):
            await sock.wait_disconnected()
        await trio.testing.wait_all_tasks_blocked()  # the socket's task has ended
        with pytest.raises(RuntimeError, match="not running"):
            sock.nursery  # noqa: B018


@pytest.mark.parametrize("kind", ["task", "borrow"])
async def test_an_on_connect_that_uses_the_nursery_keeps_the_socket_s_task(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    sio, journal = journal_server()
    async with running(sio), open_client(sio, auth={"kind": kind}) as client:
        await trio.testing.wait_all_tasks_blocked()
        assert len(socket_tasks()) == 1
        assert await client.call("ev", 1) == 1
        assert len(socket_tasks()) == 1
    with trio.fail_after(1):
        while not journal.disconnected:
            await trio.sleep(0.01)
    assert journal.disconnected == {client.sid: ["transport close"]}


# --- over real sockets, on both hosts, in the three transport modes -------------------------


@pytest.fixture(params=HOSTS)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Journal]]:
    sio, journal = journal_server()
    async with serve_server(request.param, sio) as url:
        yield url, journal


@pytest.mark.parametrize("idle", [False, True])
@pytest.mark.parametrize("mode", list(TRANSPORTS))
async def test_idle_clients_then_a_burst_then_a_disconnect_over_real_sockets(
    served: tuple[str, Journal], mode: str, idle: bool
) -> None:
    """Several clients connect, and at once or once idle (their sockets parked) one sends a
    burst of events without waiting, then asks for an ack; one leaves, then the others.
    Every event arrives in order, and each socket's disconnect handlers run once, with its
    rooms."""
    url, journal = served
    clients = [trio_sio.Client(reconnection=False) for _ in range(3)]
    with trio.fail_after(BUDGET):
        async with AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client.connect(url, transports=TRANSPORTS[mode]))
            sids = [str(client.sid) for client in clients]
            if idle:
                await wait_for_no_socket_task()
            burst, _, leaving = clients
            for seq in range(20):
                await burst.emit("ev", seq)
            assert await burst.call("ev", 20) == 20
            assert journal.handled == {sids[0]: list(range(21))}
            await leaving.disconnect()
            while sids[2] not in journal.disconnected:
                await trio.sleep(0.01)
        # The others leave as the block ends.
        while len(journal.disconnected) < 3:
            await trio.sleep(0.01)
    assert journal.disconnected == {sid: ["io client disconnect"] for sid in sids}
    assert all(
        journal.disconnecting[sid] == [(journal.disconnected[sid][0], frozenset({sid, "r"}))]
        for sid in sids
    )


@pytest.mark.parametrize("mode", list(TRANSPORTS))
@pytest.mark.parametrize("host", HOSTS)
async def test_a_socket_that_talked_gives_its_task_back_when_idle_over_real_sockets(
    host: str, mode: str
) -> None:
    """The hand-back after a heartbeat interval without events (0.2 s here), between bursts
    of events: each burst is handled whole and in order by a task started again, and the
    disconnect handlers run once at the end."""
    sio, journal = journal_server(ping_interval=0.2)
    client = trio_sio.Client(reconnection=False)
    with trio.fail_after(BUDGET):
        async with serve_server(host, sio) as url:
            async with client.connect(url, transports=TRANSPORTS[mode]):
                sid = str(client.sid)
                for burst in range(3):
                    first = burst * 10
                    for seq in range(first, first + 9):
                        await client.emit("ev", seq)
                    assert await client.call("ev", first + 9) == first + 9
                    await wait_for_no_socket_task()  # let go after an idle interval
                assert journal.handled == {sid: list(range(30))}
            while sid not in journal.disconnected:
                await trio.sleep(0.01)
    assert journal.disconnected == {sid: ["io client disconnect"]}
    assert journal.disconnecting == {sid: [("io client disconnect", frozenset({sid, "r"}))]}


@pytest.mark.parametrize("mode", list(TRANSPORTS))
@pytest.mark.parametrize(
    # Under hypercorn the ASGI lifespan runs the server: a caller cannot run it as well.
    ("host", "runs_it"),
    [("hypercorn", "host"), ("native", "host"), ("native", "caller")],
)
async def test_idle_sockets_run_their_disconnect_handlers_when_the_server_is_cancelled(
    host: str, mode: str, runs_it: str
) -> None:
    """The server stopped the Trio way, by cancelling the scope it runs in, while its
    sockets are parked: each one's disconnect handlers still run (in a task of their own, in
    its session's nursery, which must still take one), with "server shutting down". The host
    runs the server, and closes its sessions as it stops; or the caller runs it
    (``nursery.start(sio.run)``, then the host), and the cancellation reaches the sessions
    first."""
    sio, journal = journal_server()
    server_scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[str]) -> None:
        with server_scope:
            async with trio.open_nursery() as nursery:
                if runs_it == "caller":
                    await nursery.start(sio.run)
                async with serve_server(host, sio) as url:
                    task_status.started(url)
                    await trio.sleep_forever()

    with trio.fail_after(BUDGET):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve)
            clients = [trio_sio.Client(reconnection=False) for _ in range(2)]

            async def run(client: trio_sio.Client, task_status: trio.TaskStatus[None]) -> None:
                with suppress(trio_sio.Disconnected):  # the server goes: "transport close"
                    await client.run(url, transports=TRANSPORTS[mode], task_status=task_status)

            for client in clients:
                await nursery.start(run, client)
            sids = [str(client.sid) for client in clients]
            while socket_tasks():
                await trio.sleep(0.01)
            server_scope.cancel()
            while len(journal.disconnected) < len(clients):
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert journal.disconnected == {sid: ["server shutting down"] for sid in sids}


# --- a model: every path of a socket's task, interleaved -----------------------------------


class ModelClient:
    """One client of the model, and what its socket should show."""

    def __init__(self, client: TestClient, leave: trio.Event, kind: str) -> None:
        self.client = client
        self.leave = leave  # set: the client's connection closes (``transport close``)
        self.kind = kind
        self.sent = 0  # "ev" events sent, numbered from 0
        self.evented = False  # whether it sent an event since it was last idle for a while
        self.background = kind == "task"  # a task of the socket's nursery, to be cancelled
        self.lent = kind == "borrow"  # its nursery was handed out: the task stays
        self.reason: str | None = None  # why it went, once gone

    def next_event(self) -> int:
        """The number of the next "ev" event, counted as sent."""
        self.evented = True
        self.sent += 1
        return self.sent - 1

    @property
    def holds_task(self) -> bool:
        """Whether the socket should have a task now: one that had an event since it was last
        idle for a while keeps it, and so does one with a task in its nursery, or whose
        nursery was handed out."""
        return self.reason is None and (self.evented or self.background or self.lent)


class SocketTaskMachine(RuleBasedStateMachine):
    """Clients connect (with an on_connect that does nothing, starts a task, or keeps the
    nursery), send events alone or in bursts, start tasks in their socket's nursery from a
    handler or through the kept nursery from outside, read ``sock.nursery`` from outside, stay
    idle for two heartbeat intervals, and go every way a socket goes. After every step, once
    every task waits: each socket's events were handled exactly once (in order, one handler at
    a time), its task is there exactly when it should be, and a gone socket ran its disconnect
    handlers once, with its reason and rooms, its tasks cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.trio = TrioThread()
        self.clients: list[ModelClient] = []
        self.handlers = 1

    @initialize(handlers=st.sampled_from([1, 3]))
    def start(self, handlers: int) -> None:
        self.handlers = handlers
        self.sio, self.journal = journal_server(max_concurrent_handlers=handlers)
        self.sio.handler_errors = "raise"  # a handler's failure fails the run

        async def start_server() -> None:
            await self.trio.nursery.start(self.sio.run)

        self.trio.call(start_server)

    def _open(self) -> list[ModelClient]:
        return [client for client in self.clients if client.reason is None]

    def _pick(self, index: int) -> ModelClient:
        open_clients = self._open()
        return open_clients[index % len(open_clients)]

    def _run(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` in the loop, then let every task settle."""

        async def step() -> None:
            await fn()
            await trio.testing.wait_all_tasks_blocked()

        self.trio.call(step)

    @rule(kind=st.sampled_from(["plain", "plain", "task", "borrow"]))
    def connect(self, kind: str) -> None:
        async def connect() -> None:
            ready = trio.Event()
            leave = trio.Event()

            async def hold() -> None:
                async with open_client(self.sio, auth={"kind": kind}) as client:
                    self.clients.append(ModelClient(client, leave, kind))
                    ready.set()
                    await leave.wait()

            self.trio.start_soon(hold, name="model-client")
            await ready.wait()

        self._run(connect)

    @precondition(lambda self: self._open())
    @rule(index=st.integers(0, 9), count=st.integers(1, 6))
    def burst(self, index: int, count: int) -> None:
        model = self._pick(index)

        async def burst() -> None:
            for _ in range(count):
                await model.client.emit("ev", model.next_event())

        self._run(burst)

    @precondition(lambda self: self._open())
    @rule(index=st.integers(0, 9))
    def call(self, index: int) -> None:
        model = self._pick(index)

        async def call() -> None:
            seq = model.next_event()
            assert await model.client.call("ev", seq) == seq

        self._run(call)

    @precondition(lambda self: self._open())
    @rule(index=st.integers(0, 9))
    def spawn_from_a_handler(self, index: int) -> None:
        model = self._pick(index)

        async def spawn() -> None:
            model.evented = True
            await model.client.call("spawn")
            model.background = True

        self._run(spawn)

    @precondition(lambda self: any(c.kind == "borrow" for c in self._open()))
    @rule(index=st.integers(0, 9))
    def spawn_through_the_kept_nursery(self, index: int) -> None:
        borrowers = [client for client in self._open() if client.kind == "borrow"]
        model = borrowers[index % len(borrowers)]

        async def spawn() -> None:
            self.journal.borrowed[model.client.sid].start_soon(
                self.journal.background, model.client.sid
            )
            model.background = True

        self._run(spawn)

    @precondition(lambda self: self._open())
    @rule(index=st.integers(0, 9))
    def read_the_nursery_from_outside(self, index: int) -> None:
        model = self._pick(index)

        async def read() -> None:
            sock = self.sio.of("/").sockets[model.client.sid]
            if model.holds_task:
                assert isinstance(sock.nursery, trio.Nursery)
                model.lent = True
            else:
                with pytest.raises(RuntimeError, match="no task to own a nursery now"):
                    sock.nursery  # noqa: B018

        self._run(read)

    @precondition(lambda self: self._open())
    @rule()
    def idle_for_two_intervals(self) -> None:
        """No events for two heartbeat intervals: every socket that may gives its task back
        (the check comes once an interval, so the second one finds it idle)."""

        async def idle() -> None:
            for _ in range(2):
                self.trio.clock.jump(self.sio.engine_options.ping_interval + 0.1)
                await trio.testing.wait_all_tasks_blocked()

        self._run(idle)
        for model in self._open():
            model.evented = False

    @precondition(lambda self: self._open())
    @rule(
        index=st.integers(0, 9),
        how=st.sampled_from(["client", "transport", "server", "server closes"]),
    )
    def leave(self, index: int, how: str) -> None:
        model = self._pick(index)

        async def leave() -> None:
            if how == "client":
                await model.client.disconnect()
                model.reason = "io client disconnect"
            elif how == "transport":
                model.leave.set()
                model.reason = "transport close"
            else:
                sock = self.sio.of("/").sockets[model.client.sid]
                await sock.disconnect(close=how == "server closes")
                model.reason = "io server disconnect"

        self._run(leave)

    @invariant()
    def sockets_are_as_the_model_says(self) -> None:
        if not hasattr(self, "journal"):
            return

        async def check() -> None:
            journal = self.journal
            tasks = socket_tasks()
            assert len(tasks) == sum(model.holds_task for model in self.clients)
            for model in self.clients:
                sid = model.client.sid
                handled = journal.handled.get(sid, [])
                expected = list(range(model.sent))
                assert (handled if self.handlers == 1 else sorted(handled)) == expected
                if model.reason is None:
                    assert sid not in journal.disconnected
                    assert sid not in journal.background_cancelled
                    continue
                assert journal.disconnected[sid] == [model.reason]
                assert journal.disconnecting[sid] == [(model.reason, frozenset({sid, "r"}))]
                assert (sid in journal.background_cancelled) is model.background

        self.trio.call(check)

    def teardown(self) -> None:
        self.trio.stop()
        assert self.trio.failures == []


SocketTaskMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=20, deadline=None
)
test_socket_task_model = SocketTaskMachine.TestCase
