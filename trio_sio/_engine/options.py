"""Engine.IO settings, and the CORS/Origin decision that depends on them."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict

from .._protocol import Transport
from .host import HttpRequest

__all__ = ["AllowRequest", "CorsOrigins", "EngineOptions", "EngineSettings", "ResponseHeaders"]

#: ``None``: same origin only. ``"*"``: any origin. A list of origins, or a predicate.
CorsOrigins = str | Sequence[str] | Callable[[str], bool] | None

#: An async hook that may refuse a handshake: return ``False`` (or raise) to answer 403.
AllowRequest = Callable[[HttpRequest], Awaitable[bool]]

#: A hook adding headers to responses, such as ``Set-Cookie``: ``(request) -> [(name, value)]``.
ResponseHeaders = Callable[[HttpRequest], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class EngineOptions:
    """Settings of an Engine.IO endpoint. Times are in seconds, sizes in bytes.

    Attributes:
        ping_interval: how often the server pings each client.
        ping_timeout: how long a client has to answer a ping before the session closes. A
            dead client is therefore noticed within ``ping_interval + ping_timeout``; so is a
            client that stops reading, since its pings are never delivered. Another packet
            that comes while the answer is awaited gives the client ``ping_timeout`` from
            then, once per ping, as engine.io does: a client that still sends is noticed
            within ``ping_interval + 2 * ping_timeout``.
        upgrade_timeout: how long a polling client has to finish an upgrade to WebSocket.
        max_payload: largest polling POST body and largest WebSocket message accepted (also
            announced to clients as ``maxPayload``).
        max_packets_per_payload: most packets one polling POST may carry.
        transports: the transports clients may use.
        cors_allowed_origins: which browser origins may connect (see :data:`CorsOrigins`).
            Applies to WebSocket too, against cross-site WebSocket hijacking. Requests without
            an ``Origin`` header (non-browser clients) are always allowed.
        cors_credentials: send ``Access-Control-Allow-Credentials: true``.
        cookie: name of a cookie carrying the session id, or ``None`` for no cookie.
        allow_request: async hook that may refuse a handshake.
        http_compression: compress polling responses of at least ``compression_threshold``
            bytes when the client accepts gzip or deflate.
        outbound_queue_packets, outbound_queue_bytes: bounds of each session's outbound
            queue. A broadcast that finds a session's queue full disconnects that session
            (reason ``"slow consumer"``) instead of growing it.
        max_sessions: most sessions at once; handshakes beyond it are answered 503. The
            default, 50,000, bounds what handshakes alone can make the server hold (about
            5 KB each until ``connect_timeout`` closes them; an idle connected session costs
            20-40 KB, see the benchmarks); ``None`` for no limit.
        http_read_timeout: longest a polling POST may take to deliver its body; a body that
            dribbles in slower is answered 408 and its session closed.
        tune_gc: when the server starts, raise CPython's collection thresholds (700, 10, 10
            -> 50,000, 100, 10), unless the program set thresholds of its own; see
            :func:`trio_sio.engineio.tune_gc`.
        initial_headers: headers for the response that opens a session (the polling
            handshake, or the WebSocket's ``101``), from the request: Node's
            ``initial_headers`` event. A server's own cookies go here.
        headers: headers for every successful response (polling requests and WebSocket
            handshakes): Node's ``headers`` event.
    """

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    max_payload: int = 1_000_000
    max_packets_per_payload: int = 1000
    transports: tuple[Transport, ...] = (Transport.POLLING, Transport.WEBSOCKET)
    cors_allowed_origins: CorsOrigins = None
    cors_credentials: bool = True
    cookie: str | None = None
    allow_request: AllowRequest | None = None
    http_compression: bool = True
    compression_threshold: int = 1024
    outbound_queue_packets: int = 4096
    outbound_queue_bytes: int = 4 * 1024 * 1024
    max_sessions: int | None = 50_000
    http_read_timeout: float = 10.0
    tune_gc: bool = True
    initial_headers: ResponseHeaders | None = None
    headers: ResponseHeaders | None = None

    def __post_init__(self) -> None:
        for name in ("ping_interval", "ping_timeout", "upgrade_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_payload <= 0 or self.outbound_queue_packets <= 0:
            raise ValueError("max_payload and outbound_queue_packets must be positive")
        if not self.transports:
            raise ValueError("at least one transport is needed")

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> EngineOptions:
        """Options from keyword arguments, where transports may be given by name."""
        values = dict(settings)
        if "transports" in settings:
            values["transports"] = tuple(Transport(name) for name in settings["transports"])
        return cls(**values)  # type: ignore[arg-type]

    def extra_headers(self, request: HttpRequest, *, opening: bool) -> list[tuple[str, str]]:
        """What :attr:`initial_headers` (for a response that opens a session) and
        :attr:`headers` add to a response to ``request``."""
        extra: list[tuple[str, str]] = []
        if opening and self.initial_headers is not None:
            extra.extend(self.initial_headers(request))
        if self.headers is not None:
            extra.extend(self.headers(request))
        return extra

    def origin_allowed(self, origin: str, request: HttpRequest) -> bool:
        """Whether a browser at ``origin`` may use this endpoint."""
        allowed = self.cors_allowed_origins
        if allowed is None:
            host = request.headers.get("host")
            return host is not None and origin == f"{request.scheme}://{host}"
        if isinstance(allowed, str):
            return allowed == "*" or origin == allowed
        if callable(allowed):
            return bool(allowed(origin))
        return origin in allowed


class EngineSettings(TypedDict, total=False):
    """:class:`EngineOptions` as keyword arguments (:class:`~trio_sio.Server` takes them);
    ``transports`` may be names (``"polling"``, ``"websocket"``)."""

    ping_interval: float
    ping_timeout: float
    upgrade_timeout: float
    max_payload: int
    max_packets_per_payload: int
    transports: Sequence[str | Transport]
    cors_allowed_origins: CorsOrigins
    cors_credentials: bool
    cookie: str | None
    allow_request: AllowRequest | None
    http_compression: bool
    compression_threshold: int
    outbound_queue_packets: int
    outbound_queue_bytes: int
    max_sessions: int | None
    http_read_timeout: float
    tune_gc: bool
    initial_headers: ResponseHeaders | None
    headers: ResponseHeaders | None


#: Every field of :class:`EngineOptions` has its keyword argument (checked by the tests).
ENGINE_SETTINGS = frozenset(field.name for field in dataclasses.fields(EngineOptions))
