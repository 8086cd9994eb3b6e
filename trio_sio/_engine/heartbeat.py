"""A session's heartbeat: actions on the server's shared timer, with no task of its own.

A session is always waiting for its next ping or for the answer to the last one; as a task
that would cost a task and its coroutines for every idle session, all the time. Here it is one
pending action on the server's :class:`~trio_sio._engine.alarms.Alarms`.

Each ping is due ``ping_interval`` after the last pong (as in engine.io), and its answer is
due ``ping_timeout`` after the ping was queued, as engine.io's timer counts it: a timer that
ran late (a busy machine) must not take the client's time to answer. A pong needs no action of
its own: the reader notes when it came (:meth:`Heartbeat.pong`), and the check at the end of
the timeout looks, then schedules the next ping. Any other packet that comes while the pong
is awaited gives the client ``ping_timeout`` from then, once per ping, as engine.io 6.6 does:
a client busy sending may answer late, and what it sends shows that it is there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import trio

from .._errors import DisconnectReason
from .._protocol import EnginePacketType, Outgoing
from .alarms import Alarm, Alarms
from .delivery import Delivery
from .options import EngineOptions

__all__ = ["Heartbeat"]

_PING = Outgoing.control(EnginePacketType.PING)


class _Beating(Protocol):
    """What a heartbeat needs from its session."""

    @property
    def options(self) -> EngineOptions: ...

    @property
    def delivery(self) -> Delivery: ...

    def close_on_timer(self, reason: DisconnectReason | None) -> None: ...


class Heartbeat:
    """One session's ping and pong deadlines, then (see :meth:`then`) a graceful close's."""

    __slots__ = ("_alarm", "_alarms", "_ping_queued", "_pong_at", "_session", "refreshable")

    def __init__(self, session: _Beating, alarms: Alarms) -> None:
        self._session = session
        self._alarms = alarms
        self._alarm: Alarm | None = None  # the next action
        self._ping_queued = 0.0  # when the ping being answered was queued
        self._pong_at = -math.inf  # when the last ping was answered
        #: A pong is awaited and no other packet has moved its deadline yet: see refresh.
        self.refreshable = False

    def start(self) -> None:
        """The first ping is due ``ping_interval`` from now."""
        self._set(trio.current_time() + self._session.options.ping_interval, self._ping)

    def pong(self) -> None:
        """The client answered a ping."""
        self._pong_at = trio.current_time()
        self.refreshable = False

    def refresh(self) -> None:
        """A packet other than a pong came while :attr:`refreshable`: the pong is due
        ``ping_timeout`` from now (the readers check the attribute, to spare a call)."""
        self._set(trio.current_time() + self._session.options.ping_timeout, self._check_pong)

    def then(self, deadline: float, reason: DisconnectReason | None) -> None:
        """No more pings: close the session (``reason``, or the reason it has by then) at
        ``deadline`` instead, unless it closes first."""
        session = self._session
        self._set(deadline, lambda: session.close_on_timer(reason))

    def stop(self) -> None:
        """The session closed: nothing more to do."""
        self.refreshable = False
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None

    def _set(self, deadline: float, action: Callable[[], None]) -> None:
        self.stop()
        self._alarm = self._alarms.call_at(deadline, action)

    def _ping(self) -> None:
        self._ping_queued = queued = trio.current_time()
        session = self._session
        session.delivery.put_control(_PING)
        self._set(queued + session.options.ping_timeout, self._check_pong)
        self.refreshable = True

    def _check_pong(self) -> None:
        session = self._session
        if self._pong_at < self._ping_queued:  # no answer to this ping
            session.close_on_timer(DisconnectReason.PING_TIMEOUT)
        else:
            self._set(self._pong_at + session.options.ping_interval, self._ping)
