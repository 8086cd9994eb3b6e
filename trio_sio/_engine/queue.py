"""A session's outbound packets: two lanes, bounded in packets and bytes.

Pure bookkeeping, no waiting and no I/O: :class:`~trio_sio._engine.delivery.Delivery` decides
who takes from it and when.

Trio's memory channels bound the number of items, not bytes, cannot give heartbeats priority
over data, and hand out one item per ``receive``; a session needs all three.
"""

from __future__ import annotations

from .._protocol import Outgoing

__all__ = ["PacketQueue"]


class PacketQueue:
    """Control packets (ping, noop, close) ahead of data; data bounded by ``max_packets``
    items and ``max_bytes`` (an item larger than ``max_bytes`` fits into an empty lane, so
    any single message can be sent)."""

    __slots__ = ("_control", "_data", "max_bytes", "max_packets", "nbytes", "peak_bytes")

    def __init__(self, *, max_packets: int, max_bytes: int) -> None:
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        # Lists rather than deques: an idle session's empty deque costs 760 bytes, a list 56,
        # and takers take whole lanes at once anyway.
        self._control: list[Outgoing] = []
        self._data: list[Outgoing] = []
        #: Bytes queued in the data lane (read only; plain attributes, not properties: they
        #: are read for every recipient of every broadcast).
        self.nbytes = 0
        #: The most bytes the data lane ever held.
        self.peak_bytes = 0

    def __bool__(self) -> bool:
        return bool(self._data) or bool(self._control)

    @property
    def packets(self) -> int:
        """Data items queued."""
        return len(self._data)

    def append(self, item: Outgoing) -> int:
        """Queue a data item if it fits; returns how many data items are queued then, or 0
        if it did not fit."""
        data = self._data
        queued = len(data)
        nbytes = self.nbytes + item.nbytes
        if queued >= self.max_packets or (nbytes > self.max_bytes and queued):
            return 0
        data.append(item)
        self.nbytes = nbytes
        if nbytes > self.peak_bytes:
            self.peak_bytes = nbytes
        return queued + 1

    def append_unbounded(self, item: Outgoing) -> None:
        """Queue a data item whatever the bounds (a session's last packet, say)."""
        self._data.append(item)
        self.nbytes += item.nbytes

    def append_control(self, item: Outgoing) -> None:
        """Queue a control packet, ahead of all data."""
        self._control.append(item)

    def take_all(self) -> list[Outgoing]:
        """Everything queued, control packets first."""
        batch, self._data = self._data, []
        if self._control:
            batch[:0] = self._control
            self._control.clear()
        self.nbytes = 0
        return batch

    def take(self, max_packets: int) -> list[Outgoing]:
        """As many items as fit in ``max_packets`` Engine.IO packets (at least one item if
        anything is queued), control packets first."""
        batch: list[Outgoing] = []
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
                    self.nbytes -= item.nbytes
            del lane[:taken]
        return batch

    def put_back(self, batch: list[Outgoing]) -> None:
        """Return a batch just taken with :meth:`take_all` to the front of the data lane."""
        self._data[:0] = batch
        self.nbytes += sum(item.nbytes for item in batch)

    def clear(self) -> None:
        """Drop everything."""
        self._control.clear()
        self._data.clear()
        self.nbytes = 0
