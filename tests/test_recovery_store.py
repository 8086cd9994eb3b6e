"""The connection state recovery store (trio_sio/_recovery.py) against a simple model, driven
by Hypothesis' stateful testing: packets kept and evicted within both bounds, sessions
persisted, expired and evicted, and restores that return the whole history after an offset or
say why they cannot, never part of it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trio_sio import ConnectionStateRecovery, RecoveryFailure
from trio_sio._recovery import PersistedSession, RecoveryStore, RestoredSession

OPTIONS = ConnectionStateRecovery(
    max_disconnection_duration=10.0, max_packets=5, max_bytes=60, max_sessions=3
)
NAMESPACES = st.sampled_from(["/", "/chat"])
ROOMS = st.frozensets(st.sampled_from(["r1", "r2", "r3"]), max_size=2)


@dataclass(frozen=True)
class Sent:
    seq: int
    namespace: str
    rooms: frozenset[str]
    except_rooms: frozenset[str]
    nbytes: int


class StoreModel(RuleBasedStateMachine):
    """The model keeps every packet ever sent; what the store may still hold is the longest
    run of newest packets within both bounds."""

    def __init__(self) -> None:
        super().__init__()
        self.store: RecoveryStore[int] = RecoveryStore(OPTIONS)
        self.now = 0.0
        self.sent: list[Sent] = []
        self.first_kept = 0  # packets before it have been evicted
        self.sessions: dict[str, tuple[PersistedSession, float]] = {}
        self.dropped: dict[str, RecoveryFailure] = {}
        self.pids: list[str] = []

    # --- the model's own rules ------------------------------------------------------------

    def _evict(self) -> None:
        while True:
            kept = self.sent[self.first_kept :]
            if (
                len(kept) <= OPTIONS.max_packets
                and sum(p.nbytes for p in kept) <= OPTIONS.max_bytes
            ):
                return
            self.first_kept += 1

    def _drop(self, pid: str, why: RecoveryFailure) -> None:
        del self.sessions[pid]
        self.dropped[pid] = why
        # The reasons are remembered for as many pids as there may be sessions.
        while len(self.dropped) > OPTIONS.max_sessions:
            del self.dropped[next(iter(self.dropped))]

    def _expire(self) -> None:
        for pid, (_, at) in list(self.sessions.items()):
            if at < self.now - OPTIONS.max_disconnection_duration:
                self._drop(pid, RecoveryFailure.EXPIRED)

    # --- rules ----------------------------------------------------------------------------

    @rule(namespace=NAMESPACES, rooms=ROOMS, except_rooms=ROOMS, nbytes=st.integers(1, 70))
    def keep(
        self, namespace: str, rooms: frozenset[str], except_rooms: frozenset[str], nbytes: int
    ) -> None:
        seq = len(self.sent)
        assert self.store.next_offset == str(seq)
        self.store.keep(namespace, rooms, except_rooms, seq, nbytes)
        self.sent.append(Sent(seq, namespace, rooms, except_rooms, nbytes))
        self._evict()

    @rule(namespace=NAMESPACES, rooms=ROOMS)
    def persist(self, namespace: str, rooms: frozenset[str]) -> None:
        pid = f"pid{len(self.pids)}"
        self.pids.append(pid)
        session = PersistedSession(namespace, f"sid{pid}", pid, rooms | {f"sid{pid}"}, {})
        self.store.persist(session, self.now)
        self._expire()
        while len(self.sessions) >= OPTIONS.max_sessions:
            self._drop(
                min(self.sessions, key=lambda p: self.sessions[p][1]), RecoveryFailure.EVICTED
            )
        self.sessions[pid] = (session, self.now)

    @rule(seconds=st.sampled_from([0.0, 1.0, 4.0, 9.5, 10.0, 10.5]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule(data=st.data(), namespace=NAMESPACES)
    def restore(self, data: st.DataObject, namespace: str) -> None:
        # Mostly sessions still kept and offsets near the newest, where restores succeed.
        pid = data.draw(st.sampled_from([*self.sessions, *self.pids, "never-issued"]))
        newest = len(self.sent) - 1
        offset = data.draw(
            st.one_of(
                st.integers(-4, 1).map(lambda back: str(newest + back)),
                st.none(),
                st.sampled_from(["", "x1", "-1", "1e3", "\u0663", "9" * 30]),
            )
        )
        result = self.store.restore(namespace, pid, offset, self.now)
        event(f"restore: {result if isinstance(result, RecoveryFailure) else 'restored'}")
        self._expire()
        kept = self.sessions.get(pid)
        if kept is None or kept[0].namespace != namespace:
            assert result == self.dropped.pop(pid, RecoveryFailure.UNKNOWN_PID)
            return
        session = self.sessions.pop(pid)[0]
        if offset is None or not offset.isascii() or not offset.isdigit():
            assert result is RecoveryFailure.UNKNOWN_OFFSET
            return
        seq = int(offset)
        if seq >= len(self.sent):
            assert result is RecoveryFailure.UNKNOWN_OFFSET
        elif seq + 1 < self.first_kept:
            assert result is RecoveryFailure.EVICTED
        else:
            assert isinstance(result, RestoredSession)
            assert result.session == session
            rooms = session.rooms
            assert result.missed == [
                p.seq
                for p in self.sent[seq + 1 :]
                if p.namespace == namespace
                and (not p.rooms or p.rooms & rooms)
                and not p.except_rooms & rooms
            ]

    @invariant()
    def bounds_hold(self) -> None:
        stats = self.store.statistics()
        kept = self.sent[self.first_kept :]
        assert stats.packets == len(kept) <= OPTIONS.max_packets
        assert stats.bytes == sum(p.nbytes for p in kept) <= OPTIONS.max_bytes
        assert stats.evicted_packets == self.first_kept
        assert stats.sessions <= OPTIONS.max_sessions


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize(
    "setting",
    ["max_disconnection_duration", "max_packets", "max_bytes", "max_sessions"],
)
def test_bounds_must_be_positive(setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        ConnectionStateRecovery(**{setting: 0})  # type: ignore[arg-type]


def test_a_packet_larger_than_the_byte_bound_is_not_kept() -> None:
    store: RecoveryStore[str] = RecoveryStore(ConnectionStateRecovery(max_bytes=10))
    store.keep("/", frozenset(), frozenset(), "small", 5)
    store.persist(PersistedSession("/", "s", "p", frozenset({"s"}), {}), 0.0)
    store.keep("/", frozenset(), frozenset(), "huge", 11)
    stats = store.statistics()
    assert (stats.packets, stats.bytes, stats.evicted_packets) == (0, 0, 2)
    # The client got "small" (offset 0) and missed "huge": no half history.
    assert store.restore("/", "p", "0", 1.0) is RecoveryFailure.EVICTED
