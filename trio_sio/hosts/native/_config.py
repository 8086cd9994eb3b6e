"""Settings of the native host."""

from __future__ import annotations

from dataclasses import dataclass

from ._parse import ParserName, httptools_available

__all__ = ["NativeConfig"]


@dataclass(frozen=True)
class NativeConfig:
    """Limits and timeouts of :func:`~trio_sio.serve_native`. Times in seconds, sizes in bytes.

    Attributes:
        request_timeout: longest a client may take to send a request's head (from its first
            byte), and a TLS handshake; then ``408`` and the connection is closed. (A polling
            POST's body has the Engine.IO server's own ``http_read_timeout``.)
        keep_alive_timeout: how long an idle keep-alive connection is kept open.
        send_timeout: longest writing one HTTP response may take (a client that stops reading
            is dropped then).
        max_header_bytes: largest request head (request line and headers); beyond it ``431``.
        websocket_close_timeout: how long the closing handshake may take (our close frame out,
            the peer's back); then the TCP connection is closed anyway.
        websocket_max_message_size: largest WebSocket message; ``None`` means the endpoint's
            ``max_payload``. Checked from frame headers before anything is buffered (close
            code 1009).
        websocket_compression: accept ``permessage-deflate`` when a client offers it. Off by
            default: it costs a compressor per connection (hundreds of KiB) and CPU per
            recipient. Decompressed messages are bounded by the same message limit.
        compression_threshold: with compression on, smaller messages are sent uncompressed.
        websocket_control_frame_rate: WebSocket frames per second that carry nothing for the
            application (pings, pongs, and empty fragments of a message), averaged over a
            second; a client that sends more is closed with 1008 (policy violation). ``None``:
            no limit. They need no limit for memory, but they never reach the application, so
            no backpressure slows them down: without one, a client could keep the server busy
            with them for as long as it is connected. Browsers send none, and other clients
            one ping every few seconds at most.
        receive_size: bytes asked of the socket per read.
        access_log: log one line per HTTP response, and per WebSocket when it ends, on
            ``trio_sio.hosts.native.access`` at INFO: the peer, the request line (the query
            included, so the ``sid`` of a long-poll), the status, the bytes of the body and
            the time taken. Off by default: a line per long-poll is a lot of lines.
        http_parser: which HTTP/1.1 request parser reads the requests: ``"httptools"`` (llhttp,
            Node's parser, compiled; installed by the ``fast`` extra, ``pip install
            'trio-sio[fast]'``), ``"h11"`` (pure Python, always installed), or ``"auto"``:
            httptools when it is installed, else h11. Both apply the same limits and refuse
            the same malformed requests; httptools costs less CPU per request.
    """

    request_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    send_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    websocket_close_timeout: float = 2.0
    websocket_max_message_size: int | None = None
    websocket_compression: bool = False
    compression_threshold: int = 1024
    websocket_control_frame_rate: float | None = 100.0
    receive_size: int = 64 * 1024
    access_log: bool = False
    http_parser: ParserName = "auto"

    def __post_init__(self) -> None:
        for name in (
            "request_timeout",
            "keep_alive_timeout",
            "send_timeout",
            "websocket_close_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_header_bytes <= 0 or self.receive_size <= 0:
            raise ValueError("max_header_bytes and receive_size must be positive")
        if self.http_parser not in ("auto", "h11", "httptools"):
            raise ValueError('http_parser must be "auto", "h11" or "httptools"')
        if self.http_parser == "httptools" and not httptools_available():
            raise ValueError(
                "http_parser=\"httptools\" needs httptools: pip install 'trio-sio[fast]'"
            )
        rate = self.websocket_control_frame_rate
        if rate is not None and not rate > 0:
            raise ValueError("websocket_control_frame_rate must be positive (or None)")
