"""The one exception family that hostile bytes can raise, and Engine.IO's HTTP error codes."""

from __future__ import annotations

import enum
import json

__all__ = ["EngineErrorCode", "HandshakeError", "ProtocolError"]


class ProtocolError(Exception):
    """The peer sent something the protocol does not allow.

    Every decoder in :mod:`trio_sio._protocol` raises this, and only this, for bad input:
    any other exception escaping a decoder is a bug in trio_sio. ``reason`` is a short
    machine-readable slug (``"invalid packet type"``, ``"too many attachments"``, ...);
    the message adds human detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class EngineErrorCode(enum.Enum):
    """The error codes engine.io answers failed requests with (``Server.errors``).

    An enum rather than an ``int`` on purpose: engine.io once tested ``if (errorCode)`` and
    code 0 slipped through (CVE-2023-31125). Enum members are always truthy.
    """

    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5

    @property
    def message(self) -> str:
        """The message engine.io sends with the code."""
        return _ERROR_MESSAGES[self]

    @property
    def http_status(self) -> int:
        """The HTTP status engine.io answers with: 403 for FORBIDDEN, else 400."""
        return 403 if self is EngineErrorCode.FORBIDDEN else 400


_ERROR_MESSAGES = {
    EngineErrorCode.UNKNOWN_TRANSPORT: "Transport unknown",
    EngineErrorCode.UNKNOWN_SID: "Session ID unknown",
    EngineErrorCode.BAD_HANDSHAKE_METHOD: "Bad handshake method",
    EngineErrorCode.BAD_REQUEST: "Bad request",
    EngineErrorCode.FORBIDDEN: "Forbidden",
    EngineErrorCode.UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


class HandshakeError(Exception):
    """A request the Engine.IO endpoint refuses; the I/O layer answers it with :meth:`body`."""

    def __init__(self, code: EngineErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message

    @property
    def http_status(self) -> int:
        """The HTTP status to answer with."""
        return self.code.http_status

    def body(self) -> bytes:
        """The JSON body engine.io sends: ``{"code": N, "message": "..."}``."""
        return json.dumps(
            {"code": self.code.value, "message": self.message}, separators=(",", ":")
        ).encode()
