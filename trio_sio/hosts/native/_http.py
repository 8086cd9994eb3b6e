"""One HTTP/1.1 connection of the native host: a request parser on a Trio stream.

A :class:`~._parse.RequestParser` (httptools or h11, see ``NativeConfig.http_parser``) reads
the requests; the responses, always with a ``Content-Length``, are written by hand. Requests
on a connection are handled one at a time, in order (pipelined requests wait in the parser's
buffer, as HTTP/1.1 requires). A connection is kept alive only when both sides finished the
previous exchange cleanly; anything else (a body we did not read, an error, a WebSocket) ends it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import trio

from ..._engine import BodyTooLarge, HttpRequest, HttpResponse
from ..._engine.alarms import Alarm, Alarms
from ..._protocol.websocket import WebSocketError, accept_key, negotiate_deflate
from .._common import Endpoint, Route, content_type, find_static_file
from ._config import NativeConfig
from ._io import Reader, raw_socket, send_raw
from ._parse import END_OF_MESSAGE, NEED_DATA, HttpParseError, RequestHead, make_parser
from ._websocket import DirectWebSocket, NativeWebSocket

__all__ = ["HttpConnection", "Mount", "Router"]

logger = logging.getLogger("trio_sio.hosts.native")
access_logger = logging.getLogger("trio_sio.hosts.native.access")

_DISCONNECTED = (trio.BrokenResourceError, trio.ClosedResourceError)
_LINE_BREAK = re.compile(r"[\r\n\x00]")
#: Largest body of a request outside the endpoints that is read (and dropped) to keep the
#: connection; beyond it the connection closes after the answer.
_DISCARD_LIMIT = 64 * 1024
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_END = b"\r\n\r\n"
_CLOSE_END = b"\r\nconnection: close\r\n\r\n"


@dataclass(frozen=True)
class Mount:
    """An endpoint at ``/<path>/`` (``prefix`` keeps both slashes)."""

    prefix: str
    endpoint: Endpoint


@dataclass(frozen=True)
class Router:
    """Where requests go: the endpoints, then the routes, then static files, else 404."""

    mounts: tuple[Mount, ...]
    static_files: dict[str, Path]
    routes: dict[str, Route]

    def mount_for(self, path: str) -> Mount | None:
        for mount in self.mounts:
            if path == mount.prefix or path == mount.prefix[:-1]:
                return mount
        return None

    def static_file(self, path: str) -> Path | None:
        return find_static_file(self.static_files, path)


class _ClientGone(Exception):
    """The client closed the connection, or stopped reading or writing for too long."""


class _Close(Exception):
    """End this connection after what was sent."""


class _AnsweredEarly(Exception):
    """A long-poll was answered from another task (``answer_nowait``), and the client's next
    request (or its going away) has woken the poll's task: serve the connection on."""


class HttpConnection:
    """Serves the requests arriving on one stream until it should close."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        router: Router,
        config: NativeConfig,
        *,
        scheme: str,
        client: tuple[str, int] | None,
        track_websocket: Callable[[int], None],
        alarms: Alarms | None = None,
        owned_elsewhere: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.stream = stream
        self.router = router
        self.config = config
        self.scheme = scheme
        self.client = client
        self.parser = make_parser(config.http_parser, config.max_header_bytes)
        self._reusable = False  # the last response left the connection ready for another
        self._responded = False  # the current request has its answer (or became a WebSocket)
        self._keep_alive = True  # the client did not ask to close after this request
        # The next request needs no turn of its own: this task has just waited (for the
        # connection to be accepted, or for a long-poll's client).
        self._skip_turn = True
        self._unsent: bytes | None = None  # what the kernel did not take of that answer
        self._watching = False  # a long-poll's task waits on the socket (_wait_disconnected)
        self._keep_alive_alarm: Alarm | None = None  # for an answered long-poll's connection
        self._track_websocket = track_websocket
        self._raw = raw_socket(stream)
        self._reader = Reader(stream, config.receive_size)
        self._alarms = alarms
        self._timed_out = False
        self._has_body = False
        self._expects_continue = False
        self._content_length: int | None = None
        self._early_body: bytes | None = None  # the body, when it came with the head
        self._method = ""
        # For the access log: the request line, and when the request's head was complete.
        self._request_line = ""
        self._started = 0.0
        # In the workers mode: whether a request line names a session of another worker.
        self._owned_elsewhere = owned_elsewhere
        #: Set when :meth:`serve` returned because the next request belongs to another
        #: worker: the bytes of the connection read and not yet handled, from that request on.
        self.hand_back: bytes | None = None

    async def serve(self) -> None:
        """Handle requests until the connection should end; never raises for the client's
        misbehaviour. Leaves closing the stream to the caller."""
        try:
            while True:
                self._method = ""
                request = await self._next_request()
                if request is None:
                    return
                if self.config.access_log:
                    self._started = trio.current_time()
                    self._request_line = _request_line(request)
                self._reusable = self._responded = False
                self._early_body = None
                http_request = self._http_request(request)
                del request  # not kept for the lifetime of a WebSocket
                if not self._has_body:
                    self._skip_buffered_body()  # the request's end, already here
                upgrade = http_request.headers.get("upgrade")
                if upgrade is not None and "websocket" in upgrade.lower():
                    # Awaited here rather than in _dispatch: a WebSocket keeps the frames of
                    # this task's calls for its lifetime, and this is one fewer of them.
                    await self._websocket(http_request)
                    return
                await self._dispatch(http_request)
                del http_request
                if not self._reusable:
                    if self.parser.in_body:
                        await self._drain_and_close()
                    return
        except (_ClientGone, _Close, *_DISCONNECTED):
            return

    # --- reading requests --------------------------------------------------------------

    async def _next_request(self) -> RequestHead | None:
        """The next request's head; ``None`` when the connection should end.

        An idle connection may wait ``keep_alive_timeout`` for a request to start; from its
        first byte, the whole head must arrive within ``request_timeout``."""
        parser = self.parser
        config = self.config
        started = bool(parser.buffered)
        deadline: float | None = None
        waited = self._skip_turn
        self._skip_turn = False
        owned_elsewhere = self._owned_elsewhere
        limit = config.max_header_bytes
        while True:
            if owned_elsewhere is not None:
                # Before the parser takes the head, while its buffer still holds all of it.
                buffered = parser.buffered
                line_end = buffered.find(b"\n", 0, limit)
                if line_end >= 0 or len(buffered) >= limit:
                    if line_end >= 0 and owned_elsewhere(buffered[: line_end + 1]):
                        self.hand_back = buffered
                        return None
                    owned_elsewhere = None
            try:
                event = parser.next_event()
            except HttpParseError as exc:
                await self._send_error(exc.status)
                return None
            if event is NEED_DATA:
                data = self._reader.receive_nowait()
                if data is None:
                    if deadline is None:
                        timeout = config.request_timeout if started else config.keep_alive_timeout
                        deadline = trio.current_time() + timeout
                    data = await self._receive_until(deadline)
                    waited = True
                    if data is None:  # timed out
                        if started:
                            await self._send_error(408)
                        return None
                if not data:
                    return None
                if not started:
                    started = True
                    deadline = trio.current_time() + config.request_timeout
                parser.feed(data)
                continue
            if isinstance(event, RequestHead):
                if not waited:
                    # The request was here already (pipelined, or the kernel had it): the
                    # other tasks get a turn first, as if this had waited. Otherwise a client
                    # that keeps requests coming would be served without end, the response
                    # writes never blocking while it reads them. One checkpoint (about 3 µs)
                    # per request is small next to the request's parsing and response.
                    await trio.lowlevel.checkpoint()
                return event
            return None  # not after a complete request: cannot happen

    async def _receive_until(self, deadline: float) -> bytes | None:
        """Wait for bytes (``b""`` at EOF); ``None`` if none came by ``deadline``.

        On a plain TCP socket the deadline is an entry in the host's timer rather than a
        cancel scope, which costs several times more, once per request: when it comes due
        the wait is woken as if the socket were closing."""
        raw, alarms = self._raw, self._alarms
        if raw is None or alarms is None:
            with trio.move_on_at(deadline):
                return await self._reader.receive()
            return None
        self._timed_out = False
        alarm = alarms.call_at(deadline, self._time_out)
        try:
            data = await self._reader.receive()
        finally:
            alarm.cancel()
        return None if self._timed_out else data

    def _time_out(self) -> None:
        self._timed_out = True
        assert self._raw is not None
        trio.lowlevel.notify_closing(self._raw)

    async def read_body(self, limit: int) -> bytes:
        """The request's body, refusing (``BodyTooLarge``) to read more than ``limit``."""
        parser = self.parser
        declared = self._content_length
        if declared is not None and declared > limit:
            raise BodyTooLarge
        early = self._early_body
        if early is not None:
            await trio.lowlevel.checkpoint()
            return early
        if self._expects_continue:
            self._expects_continue = False
            await self._send_bytes(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                event = parser.next_event()
            except HttpParseError:
                raise _Close from None
            if event is NEED_DATA:
                data = await self._reader.receive()
                if not data:
                    raise _ClientGone
                parser.feed(data)
            elif isinstance(event, bytes):
                total += len(event)
                if total > limit:
                    raise BodyTooLarge
                chunks.append(event)
            elif event is END_OF_MESSAGE:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            else:
                raise _Close

    def _body_if_here(self) -> bytes | None:
        """The request's whole body if it arrived with the head (as a browser's POST does):
        then reading it needs no waiting, and no deadline."""
        length = self._content_length
        parser = self.parser
        if length is None or len(parser.buffered) < length or not parser.in_body:
            return None
        self._expects_continue = False
        chunks: list[bytes] = []
        while (event := parser.next_event()) is not END_OF_MESSAGE:
            assert isinstance(event, bytes)  # no NEED_DATA: it is all here
            chunks.append(event)
        self._early_body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._early_body

    def _skip_buffered_body(self) -> None:
        """Consume the rest of a request we answered without reading all of it (always the
        end of a bodiless GET), as far as it has arrived already."""
        parser = self.parser
        try:
            while parser.in_body:
                if parser.next_event() is NEED_DATA:
                    return
        except HttpParseError:
            return

    async def _discard_body(self, limit: int) -> None:
        """Read and drop a small request body we have no use for, so that the connection can
        serve the next request; a larger (or slower) one ends the connection instead."""
        parser = self.parser
        total = 0
        with trio.move_on_after(self.config.request_timeout):
            while parser.in_body and total <= limit:
                try:
                    event = parser.next_event()
                except HttpParseError:
                    return
                if event is NEED_DATA:
                    data = await self._reader.receive()
                    if not data:
                        return
                    parser.feed(data)
                elif isinstance(event, bytes):
                    total += len(event)

    # --- dispatching -------------------------------------------------------------------

    def _http_request(self, request: RequestHead) -> HttpRequest:
        target = request.target
        if target[:1] != b"/":  # an absolute URL (the parser refuses other forms)
            parts = urlsplit(target.decode("ascii"))
            raw_path, query = parts.path or "/", parts.query
        else:
            path_bytes, _, query_bytes = target.partition(b"?")
            raw_path, query = path_bytes.decode("ascii"), query_bytes.decode("latin-1")
        headers = request.headers
        self._has_body = request.has_body
        self._content_length = request.content_length
        self._keep_alive = request.http_version == "1.1" and "close" not in (
            headers.get("connection", "").lower()
        )
        self._expects_continue = (
            request.http_version == "1.1" and "100-continue" in headers.get("expect", "").lower()
        )
        self._method = request.method
        return HttpRequest(
            method=self._method,
            path=unquote(raw_path),
            query_string=query,
            headers=headers,
            scheme=self.scheme,
            client=self.client,
        )

    async def _dispatch(self, http_request: HttpRequest) -> None:
        mount = self.router.mount_for(http_request.path)
        if mount is not None:
            await self._endpoint_http(http_request, mount.endpoint.handle_http)
            return
        route = self.router.routes.get(http_request.path)
        if route is not None:
            await self._endpoint_http(http_request, route)
            return
        method = http_request.method
        if self.parser.in_body:
            self._skip_buffered_body()
            if self.parser.in_body:
                await self._discard_body(_DISCARD_LIMIT)
        if method in ("GET", "HEAD"):
            file = self.router.static_file(http_request.path)
            if file is not None:
                await self._send_file(file, head=method == "HEAD")
                return
        await self._send_response(HttpResponse(404, b"Not Found"))

    async def _endpoint_http(self, request: HttpRequest, handle: Route) -> None:
        try:
            if request.method == "GET":
                # A long-poll watches the connection while it waits, and may be answered by
                # the task that has its packets.
                request.wait_disconnected = self._wait_disconnected
                if self._raw is not None:
                    request.answer_nowait = self._answer_nowait
            else:
                request.read_body = self.read_body
                request.body = self._body_if_here()
            response = await handle(request)
        except _AnsweredEarly:
            return
        except (_ClientGone, _Close, *_DISCONNECTED):
            raise
        except Exception:
            logger.exception("error while handling %s %s", request.method, request.path)
            await self._send_response(HttpResponse(500, b"Internal Server Error"), close=True)
            raise _Close from None
        await self._send_response(response)

    async def _wait_disconnected(self) -> NoReturn:
        self._watching = True
        try:
            data = await self._reader.receive()
        finally:
            self._watching = False
        if self._keep_alive_alarm is not None:
            self._keep_alive_alarm.cancel()
            self._keep_alive_alarm = None
            if self._timed_out:
                raise _ClientGone  # idle since it was answered: the connection ends
        if not self._responded:  # a long-poll's answer is the one response it can have had
            if not data:
                raise _ClientGone
            # The client sent its next request already: it is alive. Keep the bytes for later.
            self.parser.feed(data)
            await trio.sleep_forever()
        # Answered meanwhile by answer_nowait: woken by the next request (or the client's going
        # away), or by answer_nowait itself to send what the kernel did not take.
        unsent, self._unsent = self._unsent, None
        if unsent is not None:
            await self._send_bytes(unsent)
        if data:
            self.parser.feed(data)
        elif unsent is None:
            raise _ClientGone
        self._skip_turn = True
        raise _AnsweredEarly

    def _answer_nowait(self, response: HttpResponse) -> bool:
        """Answer the current long-poll GET from whichever task has its packets (see
        ``HttpRequest.answer_nowait``); its own task, waiting in :meth:`_wait_disconnected`,
        stays asleep until the client's next request arrives.

        Only while that task waits on the socket (where the next request, or the wake-up
        below, reaches it), on a connection that stays open after it, and not if the kernel
        would take none of it. Bytes it did not take are this task's to send: it is woken for
        them as trio wakes a task whose socket is closing (the connection stays open). From
        the answer on, the connection is idle: ``keep_alive_timeout`` applies."""
        raw, alarms = self._raw, self._alarms
        if not self._watching or self._responded or not self._keep_alive:
            return False
        if raw is None or alarms is None:
            return False
        data = _serialize(response, head=False, close=False, content_length=None)
        try:
            sent = raw.send(data)
        except OSError:  # BlockingIOError among them: the waiting task writes it, or fails
            return False
        self._responded = self._reusable = True
        if sent < len(data):
            self._unsent = data[sent:]
            trio.lowlevel.notify_closing(raw)
        else:
            self._timed_out = False
            deadline = trio.current_time() + self.config.keep_alive_timeout
            self._keep_alive_alarm = alarms.call_at(deadline, self._time_out)
        if self.config.access_log:
            self._log_access(response.status, len(response.body))
        return True

    # --- WebSocket ---------------------------------------------------------------------

    async def _websocket(self, request: HttpRequest) -> None:
        """Serve an upgrade request, as a WebSocket if it is a valid one; the connection ends
        after it either way."""
        mount = self.router.mount_for(request.path)
        if mount is None:
            await self._send_response(HttpResponse(404, b"Not Found"), close=True)
            return
        headers = request.headers
        # The request must have no body (so it is complete: the WebSocket's bytes follow).
        if self._has_body or self.parser.in_body or request.method != "GET":
            await self._send_response(HttpResponse(400, b"Bad Request"), close=True)
            return
        if headers.get("sec-websocket-version") != "13":
            response = HttpResponse(426, b"Upgrade Required", [("Sec-WebSocket-Version", "13")])
            await self._send_response(response, close=True)
            return
        connection = headers.get("connection", "").lower()
        try:
            if "upgrade" not in connection:
                raise WebSocketError("missing Connection: upgrade")
            accept = accept_key(headers.get("sec-websocket-key", ""))
        except WebSocketError:
            await self._send_response(HttpResponse(400, b"Bad Request"), close=True)
            return
        config = self.config
        deflate = None
        if config.websocket_compression:
            deflate = negotiate_deflate(
                headers.get("sec-websocket-extensions"), threshold=config.compression_threshold
            )
        max_size = config.websocket_max_message_size or mount.endpoint.max_payload

        def accept_response(extra: list[tuple[str, str]]) -> tuple[bytes, bytes]:
            response_headers = [
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-accept", accept),
            ]
            if deflate is not None:
                response_headers.append(("sec-websocket-extensions", deflate.response_header()))
            response_headers += extra
            if self._responded:
                raise _Close
            self._responded = True
            # The WebSocket writes the head with its first frames: one send, not two.
            head = _head_bytes(101, response_headers) + b"\r\n"
            return head, self.parser.buffered  # the parser is not needed any more

        async def reject_response(response: HttpResponse) -> None:
            await self._send_response(response, close=True)

        # Writing without waiting needs the raw socket, and the compressor's state would belong
        # to two writers.
        direct = self._raw is not None and deflate is None
        ws = (DirectWebSocket if direct else NativeWebSocket)(
            self.stream,
            max_message_size=max_size,
            deflate=deflate,
            receive_size=config.receive_size,
            close_timeout=config.websocket_close_timeout,
            control_frame_rate=config.websocket_control_frame_rate,
            accept_response=accept_response,
            reject_response=reject_response,
        )
        del accept_response, reject_response  # the WebSocket's now, and let go once accepted
        self._track_websocket(1)
        try:
            await mount.endpoint.handle_websocket(request, ws)
            if not ws.accepted and not ws.rejected:
                await ws.reject(HttpResponse(403, b"Forbidden"))
        finally:
            try:
                with trio.CancelScope(shield=True):
                    await ws.close(1000)
            finally:
                self._track_websocket(-1)
                if self.config.access_log and ws.accepted:  # a refusal was logged as sent
                    self._log_access(101, 0)

    # --- writing responses -------------------------------------------------------------

    async def _send_bytes(self, data: bytes) -> None:
        raw = self._raw
        if raw is not None:
            try:
                sent = raw.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                raise _ClientGone from None
            if sent == len(data):
                return
            data = data[sent:]
        with trio.move_on_after(self.config.send_timeout) as scope:
            try:
                if raw is not None:
                    await send_raw(raw, data)
                else:
                    await self.stream.send_all(data)
            except OSError:
                raise _ClientGone from None
        if scope.cancelled_caught:
            raise _ClientGone

    async def _send_response(
        self,
        response: HttpResponse,
        *,
        head: bool = False,
        close: bool = False,
        content_length: int | None = None,
    ) -> None:
        """Write ``response``; afterwards the connection is reusable unless it must close."""
        if self._responded:
            raise _Close  # answered already (or switched to WebSocket)
        self._responded = True
        parser = self.parser
        if parser.in_body:
            self._skip_buffered_body()
        # Part of the request still unread, or a client that asked for it: close afterwards.
        close = close or not self._keep_alive or parser.in_body
        data = _serialize(
            response,
            head=head or self._method == "HEAD",
            close=close,
            content_length=content_length,
        )
        await self._send_bytes(data)
        self._reusable = not close
        if self.config.access_log:
            self._log_access(
                response.status, len(response.body) if content_length is None else content_length
            )

    def _log_access(self, status: int, nbytes: int) -> None:
        client = self.client
        access_logger.info(
            '%s "%s" %d %d %.3fs',
            f"{client[0]}:{client[1]}" if client else "-",
            self._request_line or "-",
            status,
            nbytes,
            trio.current_time() - self._started if self._started else 0.0,
        )

    async def _send_error(self, status: int) -> None:
        """An error response to a request we could not read, then the connection ends."""
        if self._responded:
            return
        response = HttpResponse(status, _REASONS.get(status, b"Error"))
        try:
            await self._send_response(response, close=True)
        except (_ClientGone, _Close, *_DISCONNECTED):
            pass

    async def _send_file(self, file: Path, *, head: bool) -> None:
        path = trio.Path(file)
        body = b"" if head else await path.read_bytes()
        size = (await path.stat()).st_size if head else len(body)
        response = HttpResponse(200, body, [("Content-Type", content_type(file))])
        await self._send_response(response, head=head, content_length=size)

    # --- closing -----------------------------------------------------------------------

    async def _drain_and_close(self) -> None:
        """Before closing with part of a request unread: stop sending, read and discard for
        a moment, so the client sees our response rather than a connection reset."""
        stream = self.stream
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            return
        with trio.move_on_after(1.0):
            try:
                await stream.send_eof()
                while await stream.receive_some(self.config.receive_size):
                    pass
            except (*_DISCONNECTED, OSError):
                pass


def _request_line(request: RequestHead) -> str:
    """``METHOD target HTTP/x.y``, with anything unprintable escaped: a log line stays one
    line whatever the client sent."""
    target = request.target.decode("latin-1").encode("unicode_escape").decode("ascii")
    return f"{request.method} {target} HTTP/{request.http_version}"


def _serialize(
    response: HttpResponse, *, head: bool, close: bool, content_length: int | None
) -> bytes:
    """The response's bytes: status line, headers, ``Content-Length``, body."""
    body = response.body
    length = len(body) if content_length is None else content_length
    end = _CLOSE_END if close else _END
    return b"%scontent-length: %d%s%s" % (
        _head_bytes(response.status, response.headers),
        length,
        end,
        b"" if head else body,
    )


def _head_bytes(status: int, headers: list[tuple[str, str]]) -> bytes:
    """The status line and ``headers``, each line ended.

    Header names and values come from the endpoint, some echoing the request (CORS); the
    parser refused control characters in those, but a line break here would split the
    response, so it is checked again: a line break or NUL is one more than one per line.
    """
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers])
    count = len(headers)
    if lines.count("\n") != count or lines.count("\r") != count or "\x00" in lines:
        name = next(n for n, v in headers if _LINE_BREAK.search(n) or _LINE_BREAK.search(v))
        raise ValueError(f"line break in response header {name!r}")
    return b"HTTP/1.1 %d %s\r\n%s" % (status, _REASONS.get(status, b""), lines.encode("latin-1"))
