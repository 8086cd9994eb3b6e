"""Every way a session's packets leave, owned by one object.

Packets leave in five ways: the WebSocket writer task sends the queue; the sending task writes
straight into an idle connection's socket; the flusher writes what a burst of broadcasts
queued for an idle connection in one write; a long-poll GET takes the queue; the sending task
answers a waiting long-poll GET itself, where the host can write without waiting.
:class:`Delivery` does all five, so one piece of code keeps the promise: **every packet queued
leaves exactly once, in order** (control packets ahead of data), or the session is closed and
nothing more leaves. One explicit state, :class:`Consumer`, says who may take now; each way out
checks and moves it synchronously, so no two can take at once.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .._protocol import Outgoing
from .fanout import FanOut
from .host import WritesWithoutWaiting, direct_writer
from .queue import PacketQueue
from .states import Consumer

__all__ = ["Delivery", "DeliveryClosed"]

# The states the hot paths compare with, as module constants (one lookup instead of two).
_NONE = Consumer.NONE
_IDLE = Consumer.IDLE
_FLUSH_DUE = Consumer.FLUSH_DUE
_POLL = Consumer.POLL


class DeliveryClosed(Exception):
    """The session is gone: nothing more can be queued, or nothing more will leave."""


class Delivery:
    """A session's outbound queue and every way out of it (see the module's docstring).

    Invariants, each kept by the method named:

    * A packet leaves only through :meth:`take`, :meth:`poll_nowait` or a write without
      waiting (:meth:`put_nowait`, :meth:`put_control`, :meth:`flush`), each from the front.
    * A waiting GET is answered by the sending task (:meth:`put_nowait`) only in ``POLL``
      with the answerer :meth:`wait_poll` was given; answered or released, the GET's wait is
      over in the same step (``NONE``), so one GET takes one batch.
    * A write without waiting happens only from ``IDLE`` or ``FLUSH_DUE``, where the writer is
      parked (or not started) holding no batch and the connection has nothing unsent, so
      nothing queued earlier can be overtaken; bytes the kernel did not take stay with the
      connection, ahead of everything, and the writer is woken (or started) to send them.
    * ``FLUSH_DUE`` is entered only from ``IDLE`` with a packet queued and the flusher told;
      :meth:`flush` acts only in ``FLUSH_DUE``, so a flush the writer overtook does nothing.
    * Once :meth:`close` ran, nothing is queued and nothing leaves; :meth:`finish` lets what
      is queued leave, then closes for takers too.

    Data is bounded by the :class:`PacketQueue`'s bounds; control packets are not (the
    session sends at most one ping per heartbeat and one close).
    """

    __slots__ = (
        "_accepting",
        "_answer_poll",
        "_closed",
        "_consumer",
        "_direct",
        "_fanout",
        "_flush_requested",
        "_on_error",
        "_pacing_bytes",
        "_pacing_packets",
        "_poll_max_packets",
        "_producers",
        "_queue",
        "_release_poll",
        "_start_writer",
        "_writer",
        "dropped_volatile",
    )

    def __init__(
        self,
        *,
        max_packets: int,
        max_bytes: int,
        fanout: FanOut,
        on_error: Callable[[Exception], None],
    ) -> None:
        self._queue = PacketQueue(max_packets=max_packets, max_bytes=max_bytes)
        # Past a sixteenth of either bound, this client is behind (see FanOut).
        self._pacing_packets = max_packets // 16
        self._pacing_bytes = max_bytes // 16
        self._fanout = fanout
        self._on_error = on_error  # a write without waiting failed in the flusher's task
        self._consumer = Consumer.NONE
        self._accepting = True  # False once finishing or closed
        self._closed = False
        self._writer: trio.lowlevel.Task | None = None  # the parked writer task
        # Starts the writer task, until it is started (see attach_writer).
        self._start_writer: Callable[[], None] | None = None
        self._direct: WritesWithoutWaiting | None = None  # the writer's connection, if it can
        self._flush_requested = False  # the writer must run even with nothing queued
        self._release_poll: Callable[[], None] | None = None
        self._answer_poll: Callable[[list[Outgoing]], bool] | None = None  # see wait_poll
        self._poll_max_packets: int | None = None
        self._producers: trio.lowlevel.ParkingLot | None = None  # made when one must wait
        #: Volatile packets dropped because the client was behind.
        self.dropped_volatile = 0

    @property
    def consumer(self) -> Consumer:
        """Who takes from the queue now."""
        return self._consumer

    def queued(self) -> tuple[int, int]:
        """``(packets, bytes)`` waiting in the data lane."""
        return self._queue.packets, self._queue.nbytes

    @property
    def peak_bytes(self) -> int:
        """The most bytes the queue ever held."""
        return self._queue.peak_bytes

    # --- producers -----------------------------------------------------------------------

    def put_nowait(self, item: Outgoing) -> None:
        """Queue a data item for this client alone, writing it at once if the connection is
        idle and can be written without waiting.

        Raises:
            trio.WouldBlock: it does not fit.
            DeliveryClosed: the session is finishing or closed.
        """
        if not self._accepting:
            raise DeliveryClosed
        consumer = self._consumer
        if consumer is _IDLE and self._direct is not None and self._write_now([item]):
            return
        if not self._queue.append(item):
            raise trio.WouldBlock
        if consumer is _FLUSH_DUE:
            # A send to this client alone ends the coalescing: everything waiting goes now.
            self._flush_now()
        elif consumer is _POLL and self._answer_poll is not None:
            self._answer_poll_now()
        else:
            self._notify()

    async def put(self, item: Outgoing) -> None:
        """Queue a data item, waiting for room; a checkpoint.

        Raises:
            DeliveryClosed: the session is finishing or closed (also while waiting).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.put_nowait(item)
            except trio.WouldBlock:
                await self._wait_for_takers()
                continue
            # Queued: yield without raising Cancelled (the caller must know it will be sent).
            await trio.lowlevel.cancel_shielded_checkpoint()
            return

    def offer(self, item: Outgoing, *, volatile: bool = False) -> bool:
        """Queue ``item`` for a broadcast, without waiting and without waking a task: an idle
        connection that can be written without waiting is left to the flusher, which writes
        everything queued for it until it runs in one write.

        Returns ``False`` when a volatile item was dropped because the client is behind.

        Raises:
            trio.WouldBlock: it does not fit (the caller decides what a slow consumer costs).
            DeliveryClosed: the session is finishing or closed.
        """
        # The per-recipient cost of every broadcast: keep it to a few attribute loads.
        if not self._accepting:
            raise DeliveryClosed
        queue = self._queue
        consumer = self._consumer
        if volatile and queue.packets and consumer is not _FLUSH_DUE:
            self.dropped_volatile += 1
            return False
        queued = queue.append(item)
        if not queued:
            raise trio.WouldBlock
        if queued > self._pacing_packets or queue.nbytes > self._pacing_bytes:
            self._fanout.backlog(self if consumer is _NONE or consumer is _POLL else None)
        if consumer is _FLUSH_DUE:
            self._fanout.appended += 1
        elif consumer is _IDLE:
            self._consumer = _FLUSH_DUE
            self._fanout.schedule_flush(self)
        else:
            self._notify()
        return True

    def put_control(self, item: Outgoing) -> None:
        """Queue a control packet (a ping) ahead of all data, or write it into an idle
        connection that can be written without waiting (ahead of everything, as nothing is
        queued). Dropped once closed."""
        if self._closed:
            return
        if self._consumer is _IDLE and self._direct is not None and self._write_now([item]):
            return
        self._queue.append_control(item)
        if self._consumer is not _FLUSH_DUE:  # else the flush takes it shortly
            self._notify()

    def finish(self, last: Outgoing | None = None) -> None:
        """Refuse more data; queue ``last`` (a close packet, say) after what is queued. Takers
        drain the queue, then see :class:`DeliveryClosed`."""
        if not self._accepting:
            return
        self._accepting = False
        if last is not None:
            self._queue.append_unbounded(last)
        self._wake_writer()
        self._release()
        self._wake_producers()

    def close(self) -> None:
        """Drop everything queued; every waiter wakes to :class:`DeliveryClosed`."""
        self._accepting = False
        self._closed = True
        self._queue.clear()
        self._wake_writer()
        self._release()
        self._wake_producers()
        self._fanout.polled(self)

    async def wait_drained(self) -> None:
        """Wait until everything queued has been taken (or the delivery closed)."""
        while not self._closed and self._queue:
            await self._wait_for_takers()

    # --- the WebSocket writer ------------------------------------------------------------

    def attach_writer(self, connection: object, start_writer: Callable[[], None]) -> None:
        """A WebSocket writer takes over from now on; ``start_writer`` starts its task (which
        calls :meth:`take`) once first needed. If ``connection`` can write without waiting,
        packets may skip the writer: while the kernel takes them at once, no task is needed."""
        if self._consumer is Consumer.POLL:
            self.stop_poll_wait()
        self._fanout.polled(self)  # paced by its writer from now on, not by its GETs
        self._direct = direct_writer(connection)
        self._start_writer = start_writer
        # The writer's state before its first take: as if parked, holding nothing.
        self._consumer = Consumer.IDLE
        if self._queue or not self._accepting:
            self._wake_writer()

    async def take(self) -> list[Outgoing]:
        """The writer task's next batch: everything queued, control packets first; empty
        when the connection has bytes left unsent to flush. Waits while there is nothing.

        Raises:
            DeliveryClosed: closed, or finished and drained.
        """
        try:
            batch = self._take_for_writer()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return batch
        while True:
            # Parking is the checkpoint: once woken, take without yielding again (a second
            # trip through the scheduler per wake-up is measurable on fan-out).
            if self._writer is not None:
                raise trio.BusyResourceError("another task is writing this session")
            self._writer = trio.lowlevel.current_task()
            self._consumer = Consumer.IDLE
            await trio.lowlevel.wait_task_rescheduled(self._abort_take)
            try:
                return self._take_for_writer()
            except trio.WouldBlock:
                continue

    def _take_for_writer(self) -> list[Outgoing]:
        if self._closed or not (self._queue or self._flush_requested or self._accepting):
            raise DeliveryClosed
        if not (self._queue or self._flush_requested):
            raise trio.WouldBlock
        self._consumer = Consumer.BUSY
        self._flush_requested = False
        batch = self._queue.take_all()
        self._wake_producers()
        return batch

    def _abort_take(self, _: object) -> trio.lowlevel.Abort:
        self._writer = None
        self._consumer = Consumer.NONE
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake_writer(self) -> None:
        task = self._writer
        if task is not None:
            self._writer = None
            self._consumer = Consumer.BUSY
            trio.lowlevel.reschedule(task)
        elif self._start_writer is not None and not self._closed:
            start, self._start_writer = self._start_writer, None
            self._consumer = Consumer.BUSY
            start()

    def _write_now(self, batch: list[Outgoing]) -> bool:
        """Write ``batch`` without waiting (``IDLE`` or ``FLUSH_DUE`` only); whether the
        connection took it."""
        direct = self._direct
        assert direct is not None
        if not direct.write_nowait(batch):
            return False
        self._consumer = Consumer.IDLE
        if direct.unsent:  # the kernel took part of it: the writer sends the rest first
            self._flush_requested = True
            self._wake_writer()
        return True

    # --- the flusher ---------------------------------------------------------------------

    def flush(self) -> None:
        """Write what broadcasts queued for this idle connection (the flusher calls this)."""
        if self._consumer is not _FLUSH_DUE or self._closed:
            return  # the writer took over meanwhile, or the session is gone
        try:
            self._flush_now()
        except Exception as exc:
            self._on_error(exc)

    def _flush_now(self) -> None:
        if self._direct is None:  # the writer task takes it all, in one batch
            self._wake_writer()
            return
        batch = self._queue.take_all()
        self._wake_producers()
        if not self._write_now(batch):  # another write is under way: the writer takes it
            self._queue.put_back(batch)
            self._wake_writer()

    # --- long-polling --------------------------------------------------------------------

    def poll_nowait(self, max_packets: int | None = None) -> list[Outgoing]:
        """A long-poll's response: everything queued, or up to ``max_packets`` packets,
        control packets first.

        Raises:
            trio.WouldBlock: nothing is queued, or a WebSocket writer has taken over.
            DeliveryClosed: closed, or finished and drained.
        """
        queue = self._queue
        if self._closed or not (queue or self._accepting):
            raise DeliveryClosed
        if not queue or self._consumer not in (Consumer.NONE, Consumer.POLL):
            raise trio.WouldBlock
        batch = queue.take_all() if max_packets is None else queue.take(max_packets)
        self._wake_producers()
        self._fanout.polled(self)
        return batch

    def wait_poll(
        self,
        release: Callable[[], None],
        answer: Callable[[list[Outgoing]], bool] | None = None,
        max_packets: int | None = None,
    ) -> None:
        """A GET waits for packets: call ``release`` (once, synchronously) when it should
        take, or when the session closes; at once if a WebSocket writer took over (a GET
        that raced the upgrade). With ``answer``, a packet for this client alone
        (:meth:`put_nowait`) is instead the GET's answer at once: the sending task calls
        ``answer`` with what is queued (up to ``max_packets``), which writes it without
        waiting, or returns ``False`` having written nothing (then the GET is released).
        Broadcasts still release the GET, so that a burst leaves in one response."""
        if self._consumer is not _NONE:
            release()
            return
        self._consumer = Consumer.POLL
        self._release_poll, self._answer_poll, self._poll_max_packets = release, answer, max_packets

    def stop_poll_wait(self) -> None:
        """The waiting GET has been answered, released, or has gone."""
        self._release_poll = self._answer_poll = None
        if self._consumer is Consumer.POLL:
            self._consumer = Consumer.NONE

    def _release(self) -> None:
        release = self._release_poll
        if release is not None:
            self.stop_poll_wait()
            release()

    def _answer_poll_now(self) -> None:
        """Answer the waiting GET from the sending task, or release it if its host cannot."""
        answer = self._answer_poll
        assert answer is not None
        batch = self.poll_nowait(self._poll_max_packets)  # something is queued: no raise
        if answer(batch):
            self.stop_poll_wait()
        else:
            self._queue.put_back(batch)
            self._release()

    def _notify(self) -> None:
        """Something was queued: wake whoever takes."""
        consumer = self._consumer
        if consumer is Consumer.IDLE:
            self._wake_writer()
        elif consumer is Consumer.POLL:
            self._release()

    async def _wait_for_takers(self) -> None:
        if self._producers is None:
            self._producers = trio.lowlevel.ParkingLot()
        await self._producers.park()

    def _wake_producers(self) -> None:
        if self._producers:
            self._producers.unpark_all()
