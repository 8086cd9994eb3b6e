"""Engine.IO on its own: for applications that want sessions and messages without Socket.IO.

:class:`EngineServer` serves any :class:`EngineHandler`; mount it with
``trio_sio.ASGIApp(engine, path="engine.io")``.
"""

from ._engine import (
    Alarm,
    EngineHandler,
    EngineOptions,
    EngineServer,
    EngineSettings,
    EngineStatistics,
    HttpRequest,
    HttpResponse,
    Session,
    SessionState,
    tune_gc,
)
from ._protocol import EnginePacketType, Outgoing, Transport

__all__ = [
    "Alarm",
    "EngineHandler",
    "EngineOptions",
    "EnginePacketType",
    "EngineServer",
    "EngineSettings",
    "EngineStatistics",
    "HttpRequest",
    "HttpResponse",
    "Outgoing",
    "Session",
    "SessionState",
    "Transport",
    "tune_gc",
]
