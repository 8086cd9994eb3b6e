"""Connection state recovery: what a disconnected socket needs to come back as it was.

This module is the store, and it is sans-I/O: no clock (every call that needs the time is
given ``now``), no tasks, no logging. The server owns one per :class:`~trio_sio.Server`, and
the in-memory adapter feeds it:

- every *recoverable* packet (an event without an acknowledgement id, not volatile, sent to
  one socket or broadcast) gets the next *offset*, appended as its last argument on the wire,
  and is kept here, encoded, with the rooms it was sent to;
- a socket that disconnects for a reason worth recovering from is *persisted*: its id, its
  private session id (``pid``), its rooms and its ``data``;
- a client that reconnects sends ``{pid, offset}`` (the offset of the last packet it got) and
  is *restored*: the same id, rooms and data, plus every kept packet after that offset that
  was sent to one of its rooms.

Bounded in three ways, oldest first: packets (``max_packets``), their encoded bytes
(``max_bytes``) and persisted sessions (``max_sessions``). A restore never returns part of a
history: if a packet after the client's offset is gone, the restore fails (``evicted``).
"""

from __future__ import annotations

import enum
import itertools
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "ConnectionStateRecovery",
    "PersistedSession",
    "RecoveryFailure",
    "RecoveryStatistics",
    "RecoveryStore",
    "RestoredSession",
]

P = TypeVar("P")

#: Longest offset string a client may send back (a decimal sequence number; longer is not
#: one of ours, and is not parsed).
MAX_OFFSET_CHARS = 20


@dataclass(frozen=True)
class ConnectionStateRecovery:
    """Connection state recovery settings (Node's ``connectionStateRecovery``), given as
    ``Server(connection_state_recovery=ConnectionStateRecovery(...))``.

    A socket that loses its connection (transport closed or failed, ping timeout, server
    shutting down, slow consumer) and whose client reconnects within
    ``max_disconnection_duration`` gets back its id, its rooms and its ``data``, and the
    packets it missed, replayed once and in order before new ones. See the
    "Connection state recovery" page of the docs for the guarantees and the bounds.

    Attributes:
        max_disconnection_duration: how long (seconds) a disconnected socket stays
            recoverable.
        skip_middlewares: a recovered socket skips the namespace's connect middleware
            (:meth:`~trio_sio.Namespace.use`); ``on_connect`` runs in any case, and can look
            at :attr:`Socket.recovered <trio_sio.Socket.recovered>`.
        max_packets: most recoverable packets kept, all namespaces of the server together.
        max_bytes: most bytes of those packets (as encoded for the wire, binary attachments
            included).
        max_sessions: most disconnected sockets kept, all namespaces together.
    """

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True
    max_packets: int = 10_000
    max_bytes: int = 8 * 1024 * 1024
    max_sessions: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_disconnection_duration", "max_packets", "max_bytes", "max_sessions"):
            if not getattr(self, name) > 0:
                raise ValueError(f"connection state recovery: {name} must be positive")


class RecoveryFailure(str, enum.Enum):
    """Why a reconnecting client got a fresh session instead of its old one (the log line
    and ``RecoveryStatistics.failures`` name these values)."""

    #: The server does not know the ``pid``: never issued (another server, a restart), or
    #: already used by a restore.
    UNKNOWN_PID = "unknown pid"
    #: The client came back after ``max_disconnection_duration``.
    EXPIRED = "expired"
    #: The session, or a packet the client missed, was dropped to keep the store's bounds.
    EVICTED = "evicted"
    #: The client sent a ``pid`` but no offset (it got no recoverable packet before it
    #: left), or an offset this server never issued.
    UNKNOWN_OFFSET = "unknown offset"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class PersistedSession:
    """A disconnected socket, as kept for its client to come back to (Node's
    ``SessionToPersist``).

    Attributes:
        namespace: the namespace it was connected to.
        sid: the socket's id.
        pid: its private session id (sent to its client only).
        rooms: the rooms it was in, its own room included.
        data: its :attr:`Socket.data <trio_sio.Socket.data>` (the same object).
    """

    namespace: str
    sid: str
    pid: str
    rooms: frozenset[str]
    data: Any


@dataclass(frozen=True)
class RestoredSession(Generic[P]):
    """A session given back to its client: what was persisted, and the packets it missed,
    in the order they were sent."""

    session: PersistedSession
    missed: list[P]


@dataclass(frozen=True)
class RecoveryStatistics:
    """A snapshot of the recovery store (in :attr:`ServerStatistics.recovery
    <trio_sio.ServerStatistics.recovery>`).

    Attributes:
        packets, bytes: recoverable packets kept now, and their encoded size.
        sessions: disconnected sockets kept now.
        evicted_packets, evicted_sessions: dropped so far to keep the bounds.
        restored: sockets restored so far.
        replayed: packets replayed to them.
        failures: reconnections that got a fresh session, by :class:`RecoveryFailure`.
    """

    packets: int
    bytes: int
    sessions: int
    evicted_packets: int
    evicted_sessions: int
    restored: int
    replayed: int
    failures: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class _Kept(Generic[P]):
    seq: int
    namespace: str
    rooms: frozenset[str]
    except_rooms: frozenset[str]
    payload: P
    nbytes: int

    def reaches(self, namespace: str, rooms: frozenset[str]) -> bool:
        """Whether a socket of ``namespace`` in ``rooms`` was a recipient (Node's rule)."""
        return (
            self.namespace == namespace
            and (not self.rooms or not self.rooms.isdisjoint(rooms))
            and self.except_rooms.isdisjoint(rooms)
        )


class RecoveryStore(Generic[P]):
    """The recoverable packets (payload ``P``, opaque here) and the persisted sessions of
    one server, within the bounds of ``options``.

    Offsets are the decimal sequence numbers of the packets. Packets are only ever dropped
    from the oldest end, so the kept ones are always consecutive: a client's history after
    offset ``n`` is complete exactly when packet ``n + 1`` (or, if none was sent since, the
    next one to come) is still kept.
    """

    def __init__(self, options: ConnectionStateRecovery) -> None:
        self.options = options
        self._packets: deque[_Kept[P]] = deque()
        self._bytes = 0
        self._next_seq = 0
        # pid -> (session, disconnected at); in the order persisted, which is time order.
        self._sessions: dict[str, tuple[PersistedSession, float]] = {}
        # pid -> why it was dropped, to say so when its client comes back; as bounded as the
        # sessions themselves.
        self._dropped: dict[str, RecoveryFailure] = {}
        self._evicted_packets = 0
        self._evicted_sessions = 0
        self._restored = 0
        self._replayed = 0
        self._failures: Counter[str] = Counter()

    # --- packets -------------------------------------------------------------------------

    @property
    def next_offset(self) -> str:
        """The offset the next packet kept will have (append it to the packet's arguments
        before encoding it, then :meth:`keep` it)."""
        return str(self._next_seq)

    def keep(
        self,
        namespace: str,
        rooms: frozenset[str],
        except_rooms: frozenset[str],
        payload: P,
        nbytes: int,
    ) -> None:
        """Keep the packet whose offset was :attr:`next_offset`, sent in ``namespace`` to
        the sockets in ``rooms`` (all when empty) but those in ``except_rooms``. The oldest
        packets are dropped to stay within the bounds (a packet larger than ``max_bytes``
        on its own is dropped at once)."""
        self._packets.append(_Kept(self._next_seq, namespace, rooms, except_rooms, payload, nbytes))
        self._next_seq += 1
        self._bytes += nbytes
        options = self.options
        while len(self._packets) > options.max_packets or self._bytes > options.max_bytes:
            self._bytes -= self._packets.popleft().nbytes
            self._evicted_packets += 1

    # --- sessions ------------------------------------------------------------------------

    def persist(self, session: PersistedSession, now: float) -> None:
        """Keep a socket that just disconnected; the oldest kept one is dropped if there
        are ``max_sessions`` already."""
        self._expire(now)
        self._sessions.pop(session.pid, None)
        while len(self._sessions) >= self.options.max_sessions:
            self._drop(next(iter(self._sessions)), RecoveryFailure.EVICTED)
            self._evicted_sessions += 1
        self._sessions[session.pid] = (session, now)

    def restore(
        self, namespace: str, pid: str, offset: str | None, now: float
    ) -> RestoredSession[P] | RecoveryFailure:
        """The session ``pid`` of ``namespace`` with the packets it missed after
        ``offset``, or why it cannot be restored. Either way it is used up: a pid restores
        once."""
        self._expire(now)
        kept = self._sessions.get(pid)
        if kept is None or kept[0].namespace != namespace:
            return self._failed(self._dropped.pop(pid, RecoveryFailure.UNKNOWN_PID))
        session, _ = self._sessions.pop(pid)
        seq = _parse_offset(offset)
        if seq is None or seq >= self._next_seq:
            return self._failed(RecoveryFailure.UNKNOWN_OFFSET)
        first = self._packets[0].seq if self._packets else self._next_seq
        if seq + 1 < first:
            return self._failed(RecoveryFailure.EVICTED)
        rooms = session.rooms
        missed = [
            packet.payload
            for packet in itertools.islice(self._packets, seq + 1 - first, None)
            if packet.reaches(namespace, rooms)
        ]
        self._restored += 1
        self._replayed += len(missed)
        return RestoredSession(session, missed)

    def statistics(self) -> RecoveryStatistics:
        """What is kept now, and the counters since the server was made."""
        return RecoveryStatistics(
            packets=len(self._packets),
            bytes=self._bytes,
            sessions=len(self._sessions),
            evicted_packets=self._evicted_packets,
            evicted_sessions=self._evicted_sessions,
            restored=self._restored,
            replayed=self._replayed,
            failures=dict(self._failures),
        )

    def _failed(self, failure: RecoveryFailure) -> RecoveryFailure:
        self._failures[failure.value] += 1
        return failure

    def _expire(self, now: float) -> None:
        """Drop the sessions disconnected longer than ``max_disconnection_duration`` ago
        (the oldest first, so this stops at the first one still valid)."""
        threshold = now - self.options.max_disconnection_duration
        while self._sessions:
            pid = next(iter(self._sessions))
            if self._sessions[pid][1] >= threshold:
                break
            self._drop(pid, RecoveryFailure.EXPIRED)

    def _drop(self, pid: str, why: RecoveryFailure) -> None:
        del self._sessions[pid]
        self._dropped[pid] = why
        while len(self._dropped) > self.options.max_sessions:
            del self._dropped[next(iter(self._dropped))]


def _parse_offset(offset: str | None) -> int | None:
    """The sequence number in an offset a client sent back, if it is one of ours."""
    if offset is None or len(offset) > MAX_OFFSET_CHARS or not offset.isascii():
        return None
    if not offset.isdigit():
        return None
    return int(offset)
