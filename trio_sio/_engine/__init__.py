"""The Engine.IO v4 runtime: sessions, transports and the server that owns them."""

from .alarms import Alarm
from .delivery import Delivery, DeliveryClosed
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
from .ids import random_id
from .options import AllowRequest, CorsOrigins, EngineOptions, EngineSettings
from .server import EngineServer, EngineStatistics
from .session import EngineHandler, Session
from .states import Consumer, SessionState, UpgradeState

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
    "EngineSettings",
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
    "random_id",
    "tune_gc",
]
