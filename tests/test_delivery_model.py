"""A model of one session's outbound delivery, driven by Hypothesis' stateful testing.

The real :class:`~trio_sio._engine.session.Session`, its
:class:`~trio_sio._engine.delivery.Delivery`, the polling and WebSocket transports, the upgrade
and the server's fan-out task run in a Trio loop (in a thread, on a virtual clock). Rules
interleave at random everything that makes packets leave or stop: broadcasts (volatile or
not), sends to this client alone, pings, flushes, a socket that takes only part of a write,
a client that reads slowly, long-polls arriving and leaving (some of them answered by the
sending task, where the host can write without waiting, and their task woken later by the
connection's next request), an upgrade that is probed, committed or abandoned, time passing
(heartbeats, upgrade checks) and closes.

Each rule runs a list of operations inside the Trio loop, with a chosen number of scheduler
passes after each, so that the session's tasks (writer, reader, long-poll, upgrade, flusher,
heartbeat) are caught at every point of their work. After every rule it checks, inside the
loop, that what the client received is a prefix of what was queued, in order and without
duplicates, that a closed session says why, and that nothing raised anything unexpected. At
the end it lets everything drain and checks that every packet queued while the session stayed
open arrived.

The stand-ins are :class:`ModelSocket`, a WebSocket whose "kernel" takes a number of frames
the rules decide, as a socket buffer would, and :class:`ModelGet`, a long-poll's connection as
the host shows it to the session; there is no protocol peer. Each run draws which host it
models: the native host's, whose WebSocket can also be written without waiting
(:class:`DirectModelSocket`, partial writes included) and whose long-polls the sending task
may answer, so the writer task starts only when a write must wait; or hypercorn's, where every
write goes through a task, so the first packet starts the writer.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, NoReturn, TypeVar

import trio
import trio.testing
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from trio_sio import Disconnected, DisconnectReason
from trio_sio._engine import HttpRequest, SessionState, WebSocketClosed
from trio_sio._engine.polling import PollingTransport
from trio_sio._engine.registry import SessionRegistry
from trio_sio._engine.session import Session
from trio_sio._engine.states import Consumer
from trio_sio._engine.websocket import WebSocketTransport, upgrade
from trio_sio._protocol import EnginePacketType, Outgoing
from trio_sio.engineio import EngineOptions

T = TypeVar("T")

QUEUE_PACKETS = 12  # small, so that full queues and slow consumers happen
#: The consumers of a delivery that a WebSocket writer serves.
WRITER_STATES = (Consumer.IDLE, Consumer.BUSY, Consumer.FLUSH_DUE)


class TrioThread:
    """A Trio loop on a virtual clock in a thread of its own; ``call`` runs an async
    function in it and returns its result."""

    def __init__(self) -> None:
        self.clock = trio.testing.MockClock()
        self.failures: list[BaseException] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        ready = threading.Event()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                ready.set()
                await trio.sleep_forever()

        def run() -> None:
            try:
                trio.run(main, clock=self.clock)
            except BaseException as exc:  # the loop's own failure fails the test
                self.failures.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="model-trio", daemon=True)
        self._thread.start()
        ready.wait()

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        assert self._token is not None
        return trio.from_thread.run(fn, trio_token=self._token)

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None
        return self._nursery

    def start_soon(self, fn: Callable[[], Awaitable[Any]], name: str) -> None:
        """From inside the loop: start a task that records any exception it raises (apart
        from cancellation)."""

        async def guarded() -> None:
            try:
                await fn()
            except Exception as exc:
                self.failures.append(exc)

        self.nursery.start_soon(guarded, name=name)

    def stop(self) -> None:
        async def cancel() -> None:
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()

        self.call(cancel)
        self._thread.join(timeout=10)


class ModelSocket:
    """A WebSocket as a host whose writes always go through the scheduler shows it (hypercorn,
    over ASGI): every write is a ``send``, so the session's first packet starts its writer
    task. Its kernel buffer takes up to ``capacity`` frames; what the client has read from it
    leaves ``kernel``."""

    def __init__(self, log: list[str]) -> None:
        self.log = log  # every frame that reached the kernel, for the model
        self.capacity = 2
        self.kernel: list[str] = []
        self.tail: list[str] = []
        self.closed_code: int | None = None
        self.writes_without_waiting = 0
        self.partial_writes = 0
        self._writing = False
        self._drained = trio.Event()
        self._incoming_send, self._incoming = trio.open_memory_channel[str | None](16)

    # --- WebSocketConnection -------------------------------------------------------------

    async def accept(self, headers: list[tuple[str, str]]) -> None:
        pass

    async def reject(self, response: object) -> None:
        raise AssertionError("not used")

    async def receive(self) -> str | bytes:
        frame = await self._incoming.receive()
        if frame is None:
            raise WebSocketClosed(1000)
        return frame

    async def send(self, items: Sequence[Outgoing]) -> None:
        if self.closed_code is not None:
            raise WebSocketClosed
        self._writing = True
        try:
            pending = [*self.tail, *_frames(items)]
            self.tail = []
            while pending:
                while len(self.kernel) >= self.capacity:
                    self._drained = trio.Event()
                    await self._drained.wait()  # a socket the client is not reading
                self._to_kernel(pending.pop(0))
            await trio.lowlevel.checkpoint()
        finally:
            self._writing = False

    async def close(self, code: int = 1000) -> None:
        if self.closed_code is None:
            self.closed_code = code

    async def write_pong(self) -> None:
        """The reader answers a WebSocket ping: the connection is busy writing for a moment,
        so a write without waiting is refused meanwhile."""
        if self._writing:
            return
        self._writing = True
        try:
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
        finally:
            self._writing = False

    # --- the client side -----------------------------------------------------------------

    def _to_kernel(self, frame: str) -> None:
        self.kernel.append(frame)
        self.log.append(frame)

    def client_reads(self, count: int) -> None:
        del self.kernel[:count]
        self._drained.set()

    def client_sends(self, frame: str | None) -> None:
        self._incoming_send.send_nowait(frame)


class DirectModelSocket(ModelSocket):
    """A WebSocket that can also be written without waiting, as the native host's: packets
    skip the writer task while the kernel takes them at once, and a partial write or a write
    under way starts it."""

    def write_nowait(self, items: Sequence[Outgoing]) -> bool:
        if self._writing or self.tail or self.closed_code is not None:
            return False
        frames = _frames(items)
        self.writes_without_waiting += 1
        while frames and len(self.kernel) < self.capacity:
            self._to_kernel(frames.pop(0))
        self.tail = frames  # the part the kernel did not take
        self.partial_writes += bool(frames)
        return True

    @property
    def unsent(self) -> bool:
        return bool(self.tail)


def _frames(items: Sequence[Outgoing]) -> list[str]:
    frames: list[str] = []
    for item in items:
        frames.extend(str(frame) for frame in item.frames)
    return frames


class ModelGet:
    """A long-poll GET's connection, as its host shows it to the session: what
    ``wait_disconnected`` raises, and when (the client leaves; or, once the GET was answered
    without waiting, the client's next request on this connection wakes its task)."""

    def __init__(self) -> None:
        self.answered = False
        self._ended = trio.Event()
        self._reason: type[Exception] = ClientGone

    def end(self, reason: type[Exception]) -> None:
        if not self._ended.is_set():
            self._reason = reason
            self._ended.set()

    async def wait_disconnected(self) -> NoReturn:
        await self._ended.wait()
        raise self._reason


class QuietHandler:
    """The layer above: nothing to do with messages; remembers the close."""

    def __init__(self) -> None:
        self.closed: list[DisconnectReason] = []

    def on_open(self, session: Session) -> None:
        pass

    async def on_message(self, session: Session, data: str | bytes) -> None:
        pass

    def on_close(self, session: Session, reason: DisconnectReason) -> None:
        self.closed.append(reason)


#: Operation names, repeated to weigh them: closes are rare, so most runs go on long enough
#: for the upgrade and the slow paths to happen.
OPERATIONS = [
    *["broadcast"] * 6,
    *["broadcast_volatile"] * 2,
    *["send"] * 6,
    *["ping"] * 2,
    *["client_reads_one"] * 3,
    *["client_reads_all"] * 2,
    *["socket_full", "socket_small", "socket_large"],
    *["websocket_ping"] * 2,
    *["get_arrives"] * 2,
    *["get_arrives_answerable"] * 6,
    "get_client_leaves",
    *["answered_get_wakes"] * 3,
    *["websocket_arrives"] * 3,
    *["probe"] * 3,
    *["commit"] * 3,
    "wrong_frame",
    "candidate_closes",
    *["time_passes"] * 2,
    "heartbeat_passes",
    "close",
    "close_gracefully",
]


class DeliveryMachine(RuleBasedStateMachine):
    """One session, from its handshake to its end."""

    def __init__(self) -> None:
        super().__init__()
        self.trio = TrioThread()
        self.handler = QuietHandler()
        options = EngineOptions(
            ping_interval=3.0,
            ping_timeout=2.0,
            upgrade_timeout=2.0,
            outbound_queue_packets=QUEUE_PACKETS,
        )
        self.registry = SessionRegistry(self.handler, options, supervise=False)
        self.queued: list[str] = []  # data frames, in the order queued
        self.pinged: list[str] = []  # control frames queued by the rules (heartbeats aside)
        self.polled: list[str] = []  # frames long-poll responses carried
        self.ws_log: list[str] = []  # frames the WebSocket's kernel took
        self.next_id = 0
        self.session: Session
        self.ws: ModelSocket | None = None  # the session's WebSocket, once it has one
        self.candidate: ModelSocket | None = None  # a WebSocket trying to upgrade
        self.get: ModelGet | None = None  # the GET waiting for its answer
        self.answered_gets: list[ModelGet] = []  # answered without waiting, task still asleep
        self.get_writable = True  # whether the GET's host can write an answer without waiting
        # Whether the host writes without waiting (native) or only through its tasks (ASGI).
        self.direct = True
        self.closed_before_end = False

    # --- set-up --------------------------------------------------------------------------

    @initialize(websocket=st.booleans(), direct=st.booleans())
    def start(self, websocket: bool, direct: bool = True) -> None:
        registry = self.registry
        self.direct = direct
        request = HttpRequest("GET", "/engine.io/", "EIO=4", {})

        async def open_session() -> Session:
            session = Session(registry, "model", request)
            if websocket:
                self.ws = self._new_socket()
                session.attach(WebSocketTransport(session, self.ws))
            else:
                session.attach(PollingTransport(session))
            nursery = self.trio.nursery
            nursery.start_soon(registry.alarms.run)
            nursery.start_soon(registry.fanout.run)
            await nursery.start(session.run)
            if websocket:
                transport = session.current_transport
                assert isinstance(transport, WebSocketTransport)
                self.trio.start_soon(transport.run, "writer")
            return session

        self.session = self.trio.call(open_session)

    @rule(
        steps=st.lists(
            st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 3)), min_size=1, max_size=8
        )
    )
    def run(self, steps: list[tuple[str, int]]) -> None:
        """Each operation, then that many scheduler passes, all inside the loop."""

        async def drive() -> None:
            for operation, passes in steps:
                getattr(self, operation)()
                for _ in range(passes):
                    await trio.lowlevel.cancel_shielded_checkpoint()

        self.trio.call(drive)

    # --- operations (run inside the loop) ------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.session.state is SessionState.OPEN

    def _new_item(self) -> tuple[str, Outgoing]:
        self.next_id += 1
        frame = f"4{self.next_id}"
        return frame, Outgoing.message(frame[1:])

    def _new_socket(self) -> ModelSocket:
        return DirectModelSocket(self.ws_log) if self.direct else ModelSocket(self.ws_log)

    def _broadcast(self, *, volatile: bool) -> None:
        frame, item = self._new_item()
        was_open = self.is_open
        if self.session.offer(item, volatile=volatile):
            assert was_open
            self.queued.append(frame)
        elif was_open and not volatile:
            # Not queued although open: only a full queue does that, and it closes the session.
            assert self.session.close_reason is DisconnectReason.SLOW_CONSUMER

    def broadcast(self) -> None:
        self._broadcast(volatile=False)

    def broadcast_volatile(self) -> None:
        self._broadcast(volatile=True)

    def send(self) -> None:
        frame, item = self._new_item()
        was_open = self.is_open
        try:
            self.session.send_nowait(item)
        except trio.WouldBlock:
            assert self.session.delivery.queued()[0] == QUEUE_PACKETS
        except Disconnected:
            assert not was_open
        else:
            assert was_open
            self.queued.append(frame)

    def ping(self) -> None:
        self.next_id += 1
        frame = f"2m{self.next_id}"  # a ping with data, told apart from the heartbeat's
        self.session.delivery.put_control(Outgoing.control(EnginePacketType.PING, frame[1:]))
        self.pinged.append(frame)

    def client_reads_one(self) -> None:
        if self.ws is not None:
            self.ws.client_reads(1)

    def client_reads_all(self) -> None:
        if self.ws is not None:
            self.ws.client_reads(len(self.ws.kernel))

    def websocket_ping(self) -> None:
        if self.ws is not None:
            self.trio.start_soon(self.ws.write_pong, "pong")

    def _socket_buffer(self, capacity: int) -> None:
        for ws in (self.ws, self.candidate):
            if ws is not None:
                ws.capacity = capacity
        self.get_writable = capacity > 0

    def socket_full(self) -> None:
        self._socket_buffer(0)

    def socket_small(self) -> None:
        self._socket_buffer(2)

    def socket_large(self) -> None:
        self._socket_buffer(1000)

    def _get_arrives(self, *, answerable: bool) -> None:
        transport = self.session.current_transport
        if self.get is not None or not isinstance(transport, PollingTransport):
            return  # the host answers 400 (overlap, or Transport mismatch) before the session
        connection = self.get = ModelGet()

        def answer_nowait(payload: str) -> bool:
            if not self.get_writable:
                return False
            assert not connection.answered, "answered twice"
            assert self.get is connection, "answered after it ended"
            connection.answered = True
            self.polled.extend(payload.split("\x1e"))
            self.get = None  # over: the client may send the next one
            self.answered_gets.append(connection)
            return True

        async def get() -> None:
            try:
                payload = await transport.get(
                    connection.wait_disconnected,
                    answer_nowait if answerable and self.direct else None,
                )
            except (ClientGone, AnsweredEarly):
                return
            finally:
                if self.get is connection:
                    self.get = None
            # What an answered GET's call returns would never be sent: it must not return.
            assert not connection.answered, "an answered GET took packets again"
            self.polled.extend(payload.split("\x1e"))

        self.trio.start_soon(get, "GET")

    def get_arrives(self) -> None:
        self._get_arrives(answerable=False)

    def get_arrives_answerable(self) -> None:
        self._get_arrives(answerable=True)

    def get_client_leaves(self) -> None:
        if self.get is not None:
            self.get.end(ClientGone)

    def answered_get_wakes(self) -> None:
        if self.answered_gets:
            self.answered_gets.pop(0).end(AnsweredEarly)

    def websocket_arrives(self) -> None:
        if self.candidate is not None or self.ws is not None:
            return
        ws = self.candidate = self._new_socket()

        async def run_upgrade() -> None:
            await upgrade(self.session, ws)
            if self.candidate is ws:
                self.candidate = None  # refused or abandoned: the session stays on polling

        self.trio.start_soon(run_upgrade, "upgrade")

    def _candidate_sends(self, frame: str | None) -> None:
        ws = self.candidate
        if ws is None:
            return
        ws.client_sends(frame)
        if frame == "5":
            self.ws, self.candidate = ws, None  # (if the upgrade refuses, the ws closes)

    def probe(self) -> None:
        self._candidate_sends("2probe")

    def commit(self) -> None:
        self._candidate_sends("5")

    def wrong_frame(self) -> None:
        self._candidate_sends("4nope")

    def candidate_closes(self) -> None:
        self._candidate_sends(None)

    def time_passes(self) -> None:
        self.trio.clock.jump(0.1)  # an upgrade check

    def heartbeat_passes(self) -> None:
        self.trio.clock.jump(1.5)

    def close(self) -> None:
        self.session.close(DisconnectReason.FORCED_CLOSE)

    def close_gracefully(self) -> None:
        self.session.close(DisconnectReason.TRANSPORT_CLOSE, graceful=True)

    # --- what must always hold -----------------------------------------------------------

    def delivered(self) -> list[str]:
        """Data frames that reached the client, in order: polls came before the upgrade."""
        return [f for f in (*self.polled, *self.ws_log) if f.startswith("4")]

    def _check(self) -> list[str]:
        """The invariants, checked inside the loop; returns what to report as events."""
        assert self.trio.failures == []
        delivered = self.delivered()
        assert delivered == self.queued[: len(delivered)], "lost, repeated or out of order"
        # Control packets jump the data queue but keep their own order, each at most once.
        pings = [f for f in (*self.polled, *self.ws_log) if f.startswith("2m")]
        assert len(set(pings)) == len(pings)
        assert pings == sorted(pings, key=self.pinged.index)
        session = self.session
        # Broadcasts wait only for a polling recipient that is open: once closed or written by
        # a WebSocket writer, the fan-out forgets it (white box: nothing else may leak it).
        fanout, delivery = self.registry.fanout, session.delivery
        if session.state is SessionState.CLOSED or delivery.consumer in WRITER_STATES:
            assert delivery not in fanout._polls_behind  # behind, or past its time
        if session.state is SessionState.CLOSED:
            assert session.close_reason is not None
            assert self.handler.closed == [session.close_reason]
            self.closed_before_end = True
        events = [
            f"consumer: {session.delivery.consumer.value}",
            f"transport: {type(session.current_transport).__name__}",
            f"upgrade: {session.upgrade.value}",
        ]
        if session.state is SessionState.CLOSED:
            events.append(f"closed: {session.close_reason}")
        if self.polled and self.ws_log:
            events.append("upgraded with packets on both sides")
        ws = self.ws
        if ws is not None:
            events.append(f"writes without waiting: {min(ws.writes_without_waiting, 3)}+")
            events.append(f"partial writes: {min(ws.partial_writes, 3)}+")
        if self.answered_gets:
            events.append("a GET answered without waiting")
        if isinstance(session.current_transport, WebSocketTransport):
            started = session.delivery._start_writer is None  # white box: the lazy start
            events.append(f"direct: {self.direct}, writer task started: {started}")
        return events

    @invariant()
    def invariants_hold(self) -> None:
        async def check() -> list[str]:
            return self._check()

        for name in self.trio.call(check):
            event(name)

    def teardown(self) -> None:
        try:
            if not self.trio.failures:
                self.trio.call(self._drain_everything)
        finally:
            self.trio.stop()
        assert self.trio.failures == []

    async def _drain_everything(self) -> None:
        """Settle any upgrade, let the client read everything, and check it got it all."""
        self.candidate_closes()
        self._socket_buffer(10_000)
        for _ in range(QUEUE_PACKETS + 4):
            await trio.testing.wait_all_tasks_blocked()
            self.client_reads_all()
            self.get_arrives()
        await trio.testing.wait_all_tasks_blocked()
        self._check()
        if self.session.state is SessionState.OPEN and not self.closed_before_end:
            assert self.delivered() == self.queued, "queued but never delivered"


class ClientGone(Exception):
    """The long-poll's client went away."""


class AnsweredEarly(Exception):
    """The next request on an answered long-poll's connection woke its task."""


DeliveryMachine.TestCase.settings = settings(
    max_examples=1000, stateful_step_count=10, deadline=None
)
test_delivery_model = DeliveryMachine.TestCase


async def _check_in_loop(machine: DeliveryMachine) -> None:
    machine._check()


def test_a_get_whose_upgrade_check_came_due_is_not_answered_by_a_sender() -> None:
    """A race the model rarely reaches: a long-poll's upgrade check comes due (its task is
    woken to answer a noop), and in the same scheduler batch, before that task runs, a packet
    is sent to the client. The sender must leave the answer to the GET's task, which takes
    the packet; answering it too would be a second response on one request. trio runs a
    batch in either order, so the sequence runs many times (the teardown checks that the packet
    arrives with a later GET)."""
    for _ in range(30):
        machine = DeliveryMachine()
        try:
            machine.start(websocket=False)
            machine.run(
                [
                    ("get_arrives_answerable", 1),
                    ("websocket_arrives", 1),
                    ("probe", 3),
                    ("time_passes", 1),
                    ("send", 3),
                ]
            )

            machine.trio.call(partial(_check_in_loop, machine))
        finally:
            machine.teardown()


def test_a_get_that_raced_the_upgrade_leaves_the_writer_in_charge() -> None:
    """Found by the model: a GET that reached the polling transport as the upgrade committed
    waited as if it still took the queue, so the next broadcast released it (a close packet
    on a connection the client had left) instead of waking the WebSocket writer, which never
    wrote again. The hosts route a GET to its transport without a schedule point, so they
    never let one through; the delivery no longer relies on that and answers such a GET at
    once. The order of the upgrade's tasks and the GET's within a batch varies, so the
    sequence runs many times."""
    for _ in range(10):
        machine = DeliveryMachine()
        try:
            machine.start(websocket=False)
            machine.run([("broadcast", 0), ("websocket_arrives", 0)])
            machine.run([("get_arrives", 0), ("probe", 0), ("commit", 3), ("get_arrives", 0)])
            machine.run([("broadcast", 0)])
            machine.trio.call(partial(_check_in_loop, machine))
        finally:
            machine.teardown()
