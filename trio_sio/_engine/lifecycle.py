"""What happens to the sessions of one Engine.IO server, as an operator sees it.

Each lifecycle event (a handshake, an upgrade, a close, a refused handshake, a slow consumer
cut, a protocol error) goes through one method of :class:`EngineLifecycle`, which does three
things: it counts it (plain integers, read by ``statistics()`` and the Prometheus collector),
logs one line on ``trio_sio.engine`` and tells the :class:`EngineListener` objects registered
(the Socket.IO Admin UI, say). None of it runs per packet.

Log lines are ``key=value`` pairs (values with spaces quoted) after a fixed first field,
``sid=<session id>`` (``sid=-`` for a handshake refused before it had one), then the event::

    sid=Ab3x handshake transport=polling remote=127.0.0.1:53211
    sid=Ab3x upgrade transport=websocket
    sid=Ab3x close reason="transport close"
    sid=- refused cause=cors_allowed_origins remote=127.0.0.1:53214 origin=https://evil.example
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol

from .._errors import DisconnectReason, RefusalCause
from .._protocol import Transport
from .host import HttpRequest

__all__ = ["EngineLifecycle", "EngineListener", "SessionInfo", "quote", "remote"]

logger = logging.getLogger("trio_sio.engine")


class SessionInfo(Protocol):
    """What the lifecycle reads from a session (a :class:`~trio_sio._engine.Session`)."""

    @property
    def sid(self) -> str: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def request(self) -> HttpRequest: ...


class EngineListener:
    """Told of every session's lifecycle, synchronously, as it happens; every method does
    nothing unless overridden. Register with ``EngineLifecycle.listeners.append``. A
    listener must not raise, nor block: it runs inside the server's own bookkeeping."""

    def session_opened(self, session: SessionInfo) -> None:
        """A handshake opened ``session``."""

    def session_upgraded(self, session: SessionInfo) -> None:
        """``session`` moved from long-polling to WebSocket."""

    def session_closed(self, session: SessionInfo, reason: DisconnectReason) -> None:
        """``session`` closed (once, before the layer above hears of it)."""


def quote(value: object) -> str:
    """A log line's value, quoted when it has spaces (or is empty), so that a line splits
    into its ``key=value`` fields on spaces."""
    text = str(value)
    if not text or " " in text or '"' in text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def remote(request: HttpRequest) -> str:
    """The peer of ``request`` as ``host:port`` (``-`` when the host does not know)."""
    client = request.client
    return f"{client[0]}:{client[1]}" if client else "-"


class EngineLifecycle:
    """The counters, the log lines and the listeners of one Engine.IO server's sessions.

    Attributes:
        handshakes: sessions opened.
        upgrades: sessions upgraded to WebSocket.
        closes: sessions closed, by reason (:class:`DisconnectReason` values).
        refusals: handshakes refused, by cause (the setting that refused them:
            ``cors_allowed_origins``, ``allow_request``, ``max_sessions``).
        slow_consumers: sessions closed because their outbound queue was full.
        protocol_errors: sessions closed because the client broke the protocol.
        listeners: told of every session's lifecycle (see :class:`EngineListener`).
    """

    def __init__(self) -> None:
        self.handshakes = 0
        self.upgrades = 0
        self.closes: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.slow_consumers = 0
        self.protocol_errors = 0
        self.listeners: list[EngineListener] = []

    def opened(self, session: SessionInfo) -> None:
        self.handshakes += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "sid=%s handshake transport=%s remote=%s",
                session.sid,
                session.transport.value,
                remote(session.request),
            )
        for listener in self.listeners:
            listener.session_opened(session)

    def upgraded(self, session: SessionInfo) -> None:
        self.upgrades += 1
        logger.info("sid=%s upgrade transport=%s", session.sid, session.transport.value)
        for listener in self.listeners:
            listener.session_upgraded(session)

    def closed(self, session: SessionInfo, reason: DisconnectReason) -> None:
        self.closes[reason.value] += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info("sid=%s close reason=%s", session.sid, quote(reason.value))
        for listener in self.listeners:
            listener.session_closed(session, reason)

    def refused(self, request: HttpRequest, cause: RefusalCause, detail: str = "") -> None:
        """A handshake was refused by the setting named ``cause``."""
        self.refusals[cause.value] += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "sid=- refused cause=%s remote=%s%s",
                cause.value,
                remote(request),
                detail and " " + detail,
            )

    def slow_consumer(self, sid: str, packets: int, nbytes: int) -> None:
        self.slow_consumers += 1
        logger.warning("sid=%s slow_consumer packets=%d bytes=%d: closing it", sid, packets, nbytes)

    def protocol_error(self, sid: str, exc: Exception) -> None:
        self.protocol_errors += 1
        logger.info("sid=%s protocol_error error=%s", sid, quote(exc))

    def failed(self, sid: str, exc: Exception) -> None:
        """An exception escaped the session's code, which closed it."""
        logger.error("sid=%s failed: closed it", sid, exc_info=exc)
