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

    __slots__ = ("_control", "_data", "_nbytes", "_peak_bytes", "max_bytes", "max_packets")

    def __init__(self, *, max_packets: int, max_bytes: int) -> None:
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        # Lists rather than deques: an idle session's empty deque costs 760 bytes, a list 56,
        # and takers take whole lanes at once anyway.
        self._control: list[Outgoing] = []
        self._data: list[Outgoing] = []
        self._nbytes = 0
        self._peak_bytes = 0

    def __bool__(self) -> bool:
        return bool(self._data) or bool(self._control)

    @property
    def packets(self) -> int:
        """Data items queued."""
        return len(self._data)

    @property
    def nbytes(self) -> int:
        """Bytes queued in the data lane."""
        return self._nbytes

    @property
    def peak_bytes(self) -> int:
        """The most bytes the data lane ever held."""
        return self._peak_bytes

    def has_room(self, item: Outgoing) -> bool:
        """Whether ``item`` fits in the data lane now."""
        data = self._data
        return len(data) < self.max_packets and (
            self._nbytes + item.nbytes <= self.max_bytes or not data
        )

    def append(self, item: Outgoing) -> bool:
        """Queue a data item if it fits; returns whether it did."""
        if not self.has_room(item):
            return False
        self._data.append(item)
        nbytes = self._nbytes = self._nbytes + item.nbytes
        if nbytes > self._peak_bytes:
            self._peak_bytes = nbytes
        return True

    def append_unbounded(self, item: Outgoing) -> None:
        """Queue a data item whatever the bounds (a session's last packet, say)."""
        self._data.append(item)
        self._nbytes += item.nbytes

    def append_control(self, item: Outgoing) -> None:
        """Queue a control packet, ahead of all data."""
        self._control.append(item)

    def take_all(self) -> list[Outgoing]:
        """Everything queued, control packets first."""
        batch, self._data = self._data, []
        if self._control:
            batch[:0] = self._control
            self._control.clear()
        self._nbytes = 0
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
                    self._nbytes -= item.nbytes
            del lane[:taken]
        return batch

    def put_back(self, batch: list[Outgoing]) -> None:
        """Return a batch just taken with :meth:`take_all` to the front of the data lane."""
        self._data[:0] = batch
        self._nbytes += sum(item.nbytes for item in batch)

    def clear(self) -> None:
        """Drop everything."""
        self._control.clear()
        self._data.clear()
        self._nbytes = 0
