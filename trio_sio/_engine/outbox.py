"""A session's outbound queue: bounded in packets and bytes, with a priority lane for control.

Trio's memory channels bound the number of items, not bytes, cannot give heartbeats priority
over data, and hand out one item per ``receive``; a session needs all three, so this is a small
channel of its own on Trio's low-level parking (one writer slot, and a parking lot for
producers made when one has to wait).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .._protocol import Outgoing

__all__ = ["Outbox", "OutboxClosed"]


class OutboxClosed(Exception):
    """The session is gone: nothing more can be queued, or nothing more will come."""


class Outbox:
    """What a session has to send, until a transport's writer takes it.

    * Data (``put``/``put_nowait``) is bounded by ``max_packets`` items and ``max_bytes``.
    * Control packets (ping, noop, close) go to a separate lane that writers serve first, so a
      backlog of data never delays a heartbeat.
    * :meth:`get_batch` takes everything queued at once, so a writer can coalesce it.
    * :meth:`finish` accepts a last item and then refuses more: writers drain what is left and
      then see :class:`OutboxClosed`. :meth:`close` drops everything at once.
    * :attr:`direct`, when set, may write a data item itself instead of queueing it, but only
      while nothing is queued and the writer is parked (so it holds no batch): order holds,
      and an idle connection costs its writer no wake-up. :meth:`put_quietly` queues without
      waking the writer, for a caller that writes the queue itself a moment later.
    """

    def __init__(self, *, max_packets: int, max_bytes: int) -> None:
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        # Lists rather than deques: an idle session's empty deque costs 760 bytes, a list 56,
        # and a writer takes whole lanes at once anyway.
        self._control: list[Outgoing] = []
        self._data: list[Outgoing] = []
        self._queued_bytes = 0
        self._peak_bytes = 0
        self._finished = False
        self._closed = False
        self._flush_requested = False
        # The transport's writer, parked in get_batch (one at a time: a slot, not a parking
        # lot, whose dictionary would cost every idle session half a kilobyte).
        self._taker: trio.lowlevel.Task | None = None
        self._on_ready: Callable[[], None] | None = None  # see call_when_ready
        # Producers waiting for room, made when the first one has to.
        self._producers: trio.lowlevel.ParkingLot | None = None
        #: Writes an item without waiting and returns True, or returns False to have it queued.
        self.direct: Callable[[Outgoing], bool] | None = None

    @property
    def closed(self) -> bool:
        """True once nothing more can be queued."""
        return self._closed or self._finished

    def has_room(self, item: Outgoing) -> bool:
        """Whether ``item`` fits in the data lane's bounds right now."""
        return len(self._data) < self.max_packets and (
            self._queued_bytes + item.nbytes <= self.max_bytes or not self._data
        )

    @property
    def writer_idle(self) -> bool:
        """Whether the writer is parked with nothing queued (so it holds no batch either)."""
        return self._taker is not None and not self._data and not self._control

    @property
    def writer_parked(self) -> bool:
        """Whether the writer is parked (it has not been woken since it last took a batch)."""
        return self._taker is not None

    def put_nowait(self, item: Outgoing) -> None:
        """Queue a data item without waiting.

        Raises:
            trio.WouldBlock: the item does not fit.
            OutboxClosed: the session is closing or closed.
        """
        direct = self.direct
        if direct is not None and self.writer_idle and not self.closed and direct(item):
            return
        self.put_quietly(item)
        self._wake_taker()

    def put_quietly(self, item: Outgoing) -> None:
        """Queue a data item without waiting and without waking the writer: the caller has
        arranged for someone to write it soon (see ``Session.offer``).

        Raises:
            trio.WouldBlock: the item does not fit.
            OutboxClosed: the session is closing or closed.
        """
        if self._closed or self._finished:
            raise OutboxClosed
        if not self.has_room(item):
            raise trio.WouldBlock
        self._data.append(item)
        self._queued_bytes += item.nbytes
        if self._queued_bytes > self._peak_bytes:
            self._peak_bytes = self._queued_bytes

    def unget(self, batch: list[Outgoing]) -> None:
        """Put a batch taken from the data lane back in front of it (a write that could not
        start after all)."""
        self._data[:0] = batch
        self._queued_bytes += sum(item.nbytes for item in batch)

    async def put(self, item: Outgoing) -> None:
        """Queue a data item, waiting for room (backpressure for a single producer).

        Raises:
            OutboxClosed: the session is closing or closed (also if it closes while waiting).
        """
        try:
            self.put_nowait(item)
        except trio.WouldBlock:
            pass
        else:
            # Queued: yield without raising Cancelled, so the caller never believes an item
            # that will be sent was not.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        while True:
            await self._wait_for_room()  # a full checkpoint already
            try:
                self.put_nowait(item)
            except trio.WouldBlock:
                continue
            return

    def put_control(self, item: Outgoing) -> None:
        """Queue a control packet ahead of all data. Silently dropped once closed."""
        if self._closed:
            return
        self._control.append(item)
        self._wake_taker()

    def wake_writer(self) -> None:
        """Have the writer's next :meth:`get_batch` return, with an empty batch if nothing is
        queued (so it flushes what a :attr:`direct` write left unsent)."""
        self._flush_requested = True
        self._wake_taker()

    def finish(self, last: Outgoing | None = None) -> None:
        """Refuse further items; queue ``last`` (for example a close packet) after the data."""
        if self._closed or self._finished:
            return
        self._finished = True
        if last is not None:
            self._data.append(last)
            self._queued_bytes += last.nbytes
        self._wake_taker()
        self._wake_producers()

    def close(self) -> None:
        """Drop everything queued and wake every waiter with :class:`OutboxClosed`."""
        self._closed = True
        self._control.clear()
        self._data.clear()
        self._queued_bytes = 0
        self._wake_taker()
        self._wake_producers()

    def get_batch_nowait(self, *, max_packets: int | None = None) -> list[Outgoing]:
        """Take everything queued (or, with ``max_packets``, as many items as fit in that
        many packets, at least one), control packets first; empty only after
        :meth:`wake_writer`.

        Raises:
            trio.WouldBlock: nothing is queued.
            OutboxClosed: closed, or finished and drained.
        """
        if self._closed:
            raise OutboxClosed
        if not self._control and not self._data:
            if self._finished:
                raise OutboxClosed
            if self._flush_requested:
                self._flush_requested = False
                return []
            raise trio.WouldBlock
        self._flush_requested = False
        if max_packets is None:
            batch, self._data = self._data, []
            if self._control:
                batch[:0] = self._control
                self._control.clear()
            self._queued_bytes = 0
        else:
            batch = []
            packets = 0
            for lane in (self._control, self._data):
                taken = 0
                for item in lane:
                    if batch and packets + len(item.frames) > max_packets:
                        break
                    packets += len(item.frames)
                    batch.append(item)
                    taken += 1
                    if lane is self._data:
                        self._queued_bytes -= item.nbytes
                del lane[:taken]
        self._wake_producers()
        return batch

    async def get_batch(self, *, max_packets: int | None = None) -> list[Outgoing]:
        """Wait until something is queued and take it (see :meth:`get_batch_nowait`)."""
        try:
            batch = self.get_batch_nowait(max_packets=max_packets)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return batch
        while True:
            # Parking is the checkpoint: once woken, take the batch without yielding again
            # (a second trip through the scheduler per wake-up is measurable on fan-out).
            if self._taker is not None:
                raise trio.BusyResourceError("another task is taking from this outbox")
            self._taker = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_take)
            try:
                return self.get_batch_nowait(max_packets=max_packets)
            except trio.WouldBlock:
                continue

    async def wait_drained(self) -> None:
        """Wait until everything queued has been taken by a writer (or the outbox closed)."""
        while not self._closed and (self._control or self._data):
            await self._wait_for_room()

    def call_when_ready(self, callback: Callable[[], None] | None) -> None:
        """Have ``callback`` called once, when :meth:`get_batch` would return, instead of
        parking in it: for a taker that waits for something else meanwhile (a long-poll
        watching its connection). ``None`` withdraws it."""
        self._on_ready = callback

    def _wake_taker(self) -> None:
        task = self._taker
        if task is not None:
            self._taker = None
            trio.lowlevel.reschedule(task)
        callback = self._on_ready
        if callback is not None:
            self._on_ready = None
            callback()

    def _abort_take(self, _: object) -> trio.lowlevel.Abort:
        self._taker = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def _wait_for_room(self) -> None:
        if self._producers is None:
            self._producers = trio.lowlevel.ParkingLot()
        await self._producers.park()

    def _wake_producers(self) -> None:
        if self._producers:
            self._producers.unpark_all()

    def queued(self) -> tuple[int, int]:
        """``(packets, bytes)`` waiting in the data lane."""
        return len(self._data), self._queued_bytes

    @property
    def peak_bytes(self) -> int:
        """The most bytes the data lane ever held."""
        return self._peak_bytes
