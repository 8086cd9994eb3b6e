"""The sessions of one Engine.IO server, and what they share."""

from __future__ import annotations

from collections.abc import Iterator

import trio

from .._errors import DisconnectReason
from .alarms import Alarms
from .fanout import FanOut
from .lifecycle import EngineLifecycle
from .options import EngineOptions
from .session import EngineHandler, Session

__all__ = ["SessionRegistry"]


class SessionRegistry:
    """The open sessions by id, and what they share: the server's options, the layer above,
    one timer task, one flusher task, and the lifecycle's counters and log. Each session sees
    it as its :class:`~trio_sio._engine.session.SessionHost`.

    With ``supervise``, an exception escaping a session closes that session and is logged
    once; without it, it propagates (for tests).
    """

    def __init__(self, handler: EngineHandler, options: EngineOptions, *, supervise: bool) -> None:
        self.handler = handler
        self.options = options
        self.supervise = supervise
        self.alarms = Alarms()
        self.fanout = FanOut()
        self.lifecycle = EngineLifecycle()
        self._sessions: dict[str, Session] = {}
        self._tasks = 0
        self._tasks_ended = trio.Event()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        """The open sessions (a snapshot: closing one while iterating is fine)."""
        return iter(list(self._sessions.values()))

    def get(self, sid: str) -> Session | None:
        """The open session with this id, if any."""
        return self._sessions.get(sid)

    def add(self, session: Session) -> None:
        """Register a new session under its id."""
        self._sessions[session.sid] = session
        self.lifecycle.opened(session)

    @property
    def tasks(self) -> int:
        """Session tasks alive (sessions still finishing their disconnect handlers count)."""
        return self._tasks

    async def wait_tasks_ended(self) -> None:
        """Wait until no session task is left."""
        while self._tasks:
            await self._tasks_ended.wait()

    # --- SessionHost ---------------------------------------------------------------------

    def session_started(self) -> None:
        self._tasks += 1

    def session_closed(self, session: Session) -> None:
        if self._sessions.get(session.sid) is session:
            del self._sessions[session.sid]
            reason = session.close_reason or DisconnectReason.SERVER_SHUTTING_DOWN
            self.lifecycle.closed(session, reason)

    def session_ended(self) -> None:
        self._tasks -= 1
        if not self._tasks:
            self._tasks_ended.set()
            self._tasks_ended = trio.Event()

    def survive_failure(self, session: Session, exc: Exception) -> bool:
        if not self.supervise:
            return False
        self.lifecycle.failed(session.sid, exc)
        return True
