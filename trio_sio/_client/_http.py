"""The client's network plumbing: where a URL points, TCP and TLS streams, and HTTP/1.1 requests
on h11 over one kept-alive Trio stream (what long-polling needs, and no more)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import h11
import trio

__all__ = ["Endpoint", "HttpConnection", "HttpResponse", "TransportFailure", "open_stream"]

#: Bytes read from the socket at a time.
RECEIVE_SIZE = 65536


class TransportFailure(Exception):
    """The transport could not carry the connection: the network, TLS or HTTP failed, or the
    server answered with an error. The message says which; ``closed`` tells a connection the
    server closed in order (Socket.IO's "transport close") from a failure ("transport
    error")."""

    def __init__(self, message: str, *, closed: bool = False) -> None:
        super().__init__(message)
        self.closed = closed


@dataclass(frozen=True)
class Endpoint:
    """Where a Socket.IO server is: ``http(s)://`` or ``ws(s)://``, host, port and the
    Engine.IO path (``/socket.io/``)."""

    secure: bool
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str, path: str) -> Endpoint:
        """``url`` is the server (``http://127.0.0.1:5000``); ``path`` the Engine.IO path.

        Raises:
            ValueError: a scheme other than http, https, ws and wss, or no host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"{url!r}: the scheme is http, https, ws or wss")
        if not parts.hostname:
            raise ValueError(f"{url!r} names no host")
        secure = parts.scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        return cls(secure, parts.hostname, port, "/" + path.strip("/") + "/")

    @property
    def host_header(self) -> str:
        default = 443 if self.secure else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def target(self, transport: str, sid: str | None = None) -> str:
        """The request target of an Engine.IO v4 request."""
        query = {"EIO": "4", "transport": transport}
        if sid is not None:
            query["sid"] = sid
        return f"{self.path}?{urlencode(query)}"


async def open_stream(
    endpoint: Endpoint, ssl_context: ssl.SSLContext | None
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """A TCP connection to ``endpoint``, wrapped in TLS (handshake done) when it is secure.

    Raises:
        TransportFailure: the connection or the TLS handshake failed.
    """
    try:
        stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
    except OSError as exc:
        raise TransportFailure(f"cannot connect to {endpoint.host_header}: {exc}") from exc
    if not endpoint.secure:
        return stream
    context = ssl_context or ssl.create_default_context()
    tls = trio.SSLStream(stream, context, server_hostname=endpoint.host, https_compatible=True)
    try:
        await tls.do_handshake()
    except BaseException as exc:
        await trio.aclose_forcefully(tls)
        if isinstance(exc, trio.BrokenResourceError):
            raise TransportFailure(f"TLS handshake with {endpoint.host_header}: {exc}") from exc
        raise
    return tls


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


class HttpConnection:
    """Requests one at a time on one kept-alive connection, opened on first use and again
    whenever the server (or an interrupted request) closed it.

    ``max_body`` bounds a response body: a longer one fails the request rather than being
    buffered.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        ssl_context: ssl.SSLContext | None,
        headers: Sequence[tuple[str, str]],
        *,
        max_body: int,
    ) -> None:
        self._endpoint = endpoint
        self._ssl_context = ssl_context
        self._headers = [("Host", endpoint.host_header), *headers]
        self._max_body = max_body
        self._stream: trio.abc.Stream | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: Mapping[str, str] = {}
    ) -> HttpResponse:
        """Send one request and read its whole response.

        Raises:
            TransportFailure: the connection broke, the server broke HTTP, or the body is
                longer than ``max_body``.
        """
        if self._stream is None:
            self._stream = await open_stream(self._endpoint, self._ssl_context)
            self._h11 = h11.Connection(h11.CLIENT)
        stream = self._stream
        try:
            response = await self._exchange(stream, method, target, body, headers)
        except BaseException as exc:
            # Half a request or response on the wire: the connection cannot be reused.
            self._stream = None
            await trio.aclose_forcefully(stream)
            if isinstance(exc, h11.ProtocolError):
                raise TransportFailure(f"HTTP: {exc}") from exc
            if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
                raise TransportFailure(f"connection lost: {exc}") from exc
            raise
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        else:  # the server said Connection: close
            self._stream = None
            await trio.aclose_forcefully(stream)
        return response

    async def _exchange(
        self,
        stream: trio.abc.Stream,
        method: str,
        target: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> HttpResponse:
        conn = self._h11
        request_headers = [*self._headers, *headers.items()]
        if method == "POST":
            request_headers.append(("Content-Length", str(len(body))))
        data = conn.send(h11.Request(method=method, target=target, headers=request_headers))
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data or b"")
        status = 0
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(RECEIVE_SIZE)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body:
                    raise TransportFailure(f"response body over {self._max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return HttpResponse(status, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportFailure("the server closed the connection", closed=True)

    async def aclose(self) -> None:
        """Close the connection, if one is open."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await trio.aclose_forcefully(stream)
        else:
            await trio.lowlevel.checkpoint()
