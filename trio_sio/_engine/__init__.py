"""The Engine.IO v4 runtime: sessions, transports and the server that owns them."""

from .alarms import Alarm
from .delivery import Consumer, Delivery, DeliveryClosed
from .gc_tuning import tune_gc
from .host import (
    BodyTooLarge,
    HttpRequest,
    HttpResponse,
    WebSocketClosed,
    WebSocketConnection,
    WritesWithoutWaiting,
    decode_headers,
)
from .options import AllowRequest, CorsOrigins, EngineOptions
from .server import EngineServer, EngineStatistics
from .session import EngineHandler, Session, SessionState, UpgradeState

__all__ = [
    "Alarm",
    "AllowRequest",
    "BodyTooLarge",
    "Consumer",
    "CorsOrigins",
    "Delivery",
    "DeliveryClosed",
    "EngineHandler",
    "EngineOptions",
    "EngineServer",
    "EngineStatistics",
    "HttpRequest",
    "HttpResponse",
    "Session",
    "SessionState",
    "UpgradeState",
    "WebSocketClosed",
    "WebSocketConnection",
    "WritesWithoutWaiting",
    "decode_headers",
    "tune_gc",
]
