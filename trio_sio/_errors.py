"""Public exceptions and the reasons a connection ends."""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["ConnectionRefused", "DisconnectReason", "Disconnected", "RefusalCause"]


class DisconnectReason(str, enum.Enum):
    """Why a socket or session ended; the values are the strings Socket.IO uses."""

    #: The server disconnected the socket (``socket.disconnect()``).
    IO_SERVER_DISCONNECT = "io server disconnect"
    #: The client disconnected the socket (``socket.disconnect()`` on the client).
    IO_CLIENT_DISCONNECT = "io client disconnect"
    #: The client did not answer a ping within ``ping_timeout``.
    PING_TIMEOUT = "ping timeout"
    #: The client closed the connection, or it was lost.
    TRANSPORT_CLOSE = "transport close"
    #: The transport failed or broke a rule (payload too large, overlapping requests, ...).
    TRANSPORT_ERROR = "transport error"
    #: The client sent bytes the protocol does not allow.
    PARSE_ERROR = "parse error"
    #: The server is shutting down.
    SERVER_SHUTTING_DOWN = "server shutting down"
    #: The client fell too far behind: its outbound queue was full.
    SLOW_CONSUMER = "slow consumer"
    #: The server closed the whole connection (for instance: no namespace joined in time).
    FORCED_CLOSE = "forced close"

    def __str__(self) -> str:
        return self.value


class RefusalCause(str, enum.Enum):
    """Who refused a handshake or a CONNECT, as counted in ``ServerStatistics.refusals`` and
    named in the log line: for a handshake, the setting that refused it."""

    CORS_ALLOWED_ORIGINS = "cors_allowed_origins"
    ALLOW_REQUEST = "allow_request"
    MAX_SESSIONS = "max_sessions"
    MIDDLEWARE = "middleware"
    ON_CONNECT = "on_connect"
    INVALID_NAMESPACE = "invalid_namespace"
    MAX_NAMESPACES_PER_CLIENT = "max_namespaces_per_client"
    SERVER_ERROR = "server_error"

    def __str__(self) -> str:
        return self.value


class Disconnected(Exception):
    """The socket (or session) is disconnected, so the operation cannot complete."""

    def __init__(self, reason: DisconnectReason | None = None) -> None:
        super().__init__(str(reason) if reason else "disconnected")
        self.reason = reason


class ConnectionRefused(Exception):
    """Raise from a connect handler or middleware to refuse a connection.

    The client receives a CONNECT_ERROR packet ``{"message": message, "data": data}``
    (``data`` only when given), as Node's ``next(err)`` with ``err.data`` sends.
    """

    def __init__(self, message: str = "Connection rejected by server", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def payload(self) -> dict[str, Any]:
        """The CONNECT_ERROR payload."""
        payload: dict[str, Any] = {"message": self.message}
        if self.data is not None:
            payload["data"] = self.data
        return payload
