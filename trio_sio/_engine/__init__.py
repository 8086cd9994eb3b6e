"""The Engine.IO v4 runtime: sessions, transports and the server that owns them."""

from .alarms import Alarm
from .gc_tuning import tune_gc
from .host import (
    BodyTooLarge,
    HttpRequest,
    HttpResponse,
    WebSocketClosed,
    WebSocketConnection,
    decode_headers,
)
from .options import AllowRequest, CorsOrigins, EngineOptions
from .outbox import Outbox, OutboxClosed
from .server import EngineServer, EngineStatistics
from .session import EngineHandler, Session, SessionState

__all__ = [
    "Alarm",
    "AllowRequest",
    "BodyTooLarge",
    "CorsOrigins",
    "EngineHandler",
    "EngineOptions",
    "EngineServer",
    "EngineStatistics",
    "HttpRequest",
    "HttpResponse",
    "Outbox",
    "OutboxClosed",
    "Session",
    "SessionState",
    "WebSocketClosed",
    "WebSocketConnection",
    "decode_headers",
    "tune_gc",
]
