"""Sans-I/O parsing of HTTP/1.1 requests for the native host, with two interchangeable parsers.

:class:`RequestParser` is the seam: bytes in, events out (a :class:`RequestHead`, body chunks
as ``bytes``, :data:`END_OF_MESSAGE`, :data:`NEED_DATA`), and :class:`HttpParseError`, the one
error, for bytes no request may hold. Two parsers implement it: :class:`H11Parser` (h11, always
installed) and :class:`HttptoolsParser` (llhttp through ``httptools``, the ``fast`` extra).

Both share the framing, done here: where a head ends and how long it may be, and the body that
follows it (``Content-Length`` bytes, or a chunked body). The parser proper only turns a
complete head into its parts and decodes chunked bodies. Keeping the framing in one place gives
both the same limits and the same view of pipelined requests: one request at a time, the bytes
after it kept (for the next request, or for a WebSocket after an upgrade). Both then apply the
same rules to what they parsed, so that where h11 and llhttp disagree (obsolete line folding,
bare line feeds, control characters in values, unknown methods, duplicate framing headers) the
stricter reading wins on either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import h11

from ..._engine import decode_headers

__all__ = [
    "END_OF_MESSAGE",
    "NEED_DATA",
    "EndOfMessage",
    "H11Parser",
    "HttpParseError",
    "HttptoolsParser",
    "NeedData",
    "ParserName",
    "RequestHead",
    "RequestParser",
    "httptools_available",
    "make_parser",
]

#: The values of :attr:`NativeConfig.http_parser <trio_sio.NativeConfig.http_parser>`.
ParserName = Literal["auto", "h11", "httptools"]

try:
    import httptools
except ImportError:  # pragma: no cover - the "fast" extra is installed for the tests
    httptools = None  # type: ignore[assignment]


def httptools_available() -> bool:
    """Whether the ``httptools`` parser can be used (the ``fast`` extra is installed)."""
    return httptools is not None


class HttpParseError(Exception):
    """Bytes that are not a request we accept; ``status`` is the answer to send (400, 431...)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request's line and headers, checked.

    ``headers`` has names in lower case, the first occurrence of a repeated name, Latin-1
    decoded. The body's framing is settled: ``content_length`` (``None`` without one) or
    ``chunked``, never both.
    """

    method: str
    target: bytes
    http_version: str
    headers: dict[str, str]
    content_length: int | None
    chunked: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length is not None


class NeedData:
    """More bytes must arrive before the next event."""

    __slots__ = ()


class EndOfMessage:
    """The request's body is complete."""

    __slots__ = ()


NEED_DATA: Final = NeedData()
END_OF_MESSAGE: Final = EndOfMessage()

Event = RequestHead | bytes | EndOfMessage | NeedData


class RequestParser(Protocol):
    """Requests out of one connection's bytes, one at a time."""

    def feed(self, data: bytes) -> None:
        """Add received bytes; nothing is parsed until :meth:`next_event`."""

    def next_event(self) -> Event:
        """The next event: a head, then its body's chunks, then :data:`END_OF_MESSAGE`, then
        the next request's head; :data:`NEED_DATA` until the bytes for it have arrived.

        Raises:
            HttpParseError: the bytes are no request we accept; the parser is of no more use.
        """

    @property
    def in_body(self) -> bool:
        """A head was returned and its :data:`END_OF_MESSAGE` not yet."""

    @property
    def buffered(self) -> bytes:
        """Received bytes not parsed yet: after a message, what follows it."""


#: Where a head ends (a bare line feed is found, to be refused, rather than waited past).
_HEAD_END = re.compile(rb"\n\r?\n")
#: Control characters other than tab: h11 lets them through in header values; RFC 9110 does
#: not (security.md H7).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: The methods served; anything else is refused (llhttp knows a fixed list, h11 any token).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: Longer ``Content-Length`` values overflow llhttp; no body we read comes near.
_MAX_LENGTH_DIGITS = 15


class _ChunkedDecoder(Protocol):
    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """Decode ``data``; returns the body's bytes in it and how many bytes of ``data``
        belong to the body, less than ``len(data)`` only once the body ended (``-1``: not
        ended yet).

        Raises:
            HttpParseError: the chunked framing is broken.
        """


class _FramedParser:
    """The framing both parsers share; subclasses parse a complete head and chunked bodies."""

    __slots__ = ("_buffer", "_chunked", "_max_head", "_remaining", "_state")

    _HEAD: Final = 0
    _LENGTH: Final = 1
    _CHUNKED: Final = 2
    _END: Final = 3

    def __init__(self, max_head_bytes: int) -> None:
        self._max_head = max_head_bytes
        self._buffer = b""
        self._state = self._HEAD
        self._remaining = 0  # of a Content-Length body
        self._chunked: _ChunkedDecoder | None = None

    def feed(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data

    @property
    def in_body(self) -> bool:
        return self._state != self._HEAD

    @property
    def buffered(self) -> bytes:
        return self._buffer

    def next_event(self) -> Event:
        state = self._state
        if state == self._HEAD:
            return self._next_head()
        if state == self._END:
            self._state = self._HEAD
            return END_OF_MESSAGE
        buffer = self._buffer
        if not buffer:
            return NEED_DATA
        if state == self._LENGTH:
            remaining = self._remaining
            if len(buffer) <= remaining:
                self._buffer = b""
                chunk = buffer
            else:
                self._buffer = buffer[remaining:]
                chunk = buffer[:remaining]
            self._remaining = remaining = remaining - len(chunk)
            if not remaining:
                self._state = self._END
            return chunk
        decoder = self._chunked
        assert decoder is not None
        self._buffer = b""
        pieces, used = decoder.feed(buffer)
        if used >= 0:
            self._buffer = buffer[used:]
            self._state = self._END
            self._chunked = None
        if len(pieces) > 1:
            return b"".join(pieces)
        if pieces:
            return pieces[0]
        return self.next_event() if used >= 0 else NEED_DATA

    def _next_head(self) -> RequestHead | NeedData:
        buffer = self._buffer
        limit = self._max_head
        end = buffer.find(b"\r\n\r\n", 0, limit + 4) + 4
        if end < 4:
            # Not ended yet, or ended by a bare line feed (found to be refused, not waited past).
            match = _HEAD_END.search(buffer, 0, limit + 4)
            if match is None:
                if len(buffer) > limit:
                    raise HttpParseError(431, "request head too large")
                if buffer[:1] in (b"\r", b"\n"):
                    raise HttpParseError(400, "no request line")
                return NEED_DATA
            end = match.end()
        if end > limit:
            raise HttpParseError(431, "request head too large")
        if buffer[:1] in (b"\r", b"\n"):
            raise HttpParseError(400, "no request line")
        head = self._parse_head(buffer[:end])
        self._buffer = buffer[end:]
        if head.chunked:
            self._chunked = self._chunked_decoder()
            self._state = self._CHUNKED
        elif head.content_length:
            self._remaining = head.content_length
            self._state = self._LENGTH
        else:
            self._state = self._END
        return head

    def _parse_head(self, raw: bytes) -> RequestHead:
        """The complete head ``raw`` (it ends with a blank line), parsed and checked."""
        raise NotImplementedError

    def _chunked_decoder(self) -> _ChunkedDecoder:
        raise NotImplementedError


def _checked_head(
    method: str, target: bytes, version: str, pairs: list[tuple[bytes, bytes]]
) -> RequestHead:
    """The rules both parsers apply to a head they parsed (the stricter reading wins)."""
    if method not in _METHODS:
        raise HttpParseError(501, f"method {method!r} not implemented")
    if version != "1.1" and version != "1.0":
        raise HttpParseError(505, "HTTP version not supported")
    if not target.isascii() or (
        target[:1] != b"/" and not target.startswith((b"http://", b"https://"))
    ):
        raise HttpParseError(400, "request target neither a path nor an absolute URL")
    headers = decode_headers(pairs)
    if len(headers) != len(pairs):
        _refuse_repeated_framing(pairs)
    if version == "1.1" and "host" not in headers:
        raise HttpParseError(400, "missing Host header")
    length_value = headers.get("content-length")
    encoding = headers.get("transfer-encoding")
    content_length = None
    if length_value is not None:
        if encoding is not None:
            # Allowed by RFC 9112 but the stuff of request smuggling: refused.
            raise HttpParseError(400, "both Content-Length and Transfer-Encoding")
        if not (length_value.isdigit() and length_value.isascii()) or (
            len(length_value) > _MAX_LENGTH_DIGITS
        ):
            raise HttpParseError(400, "invalid Content-Length")
        content_length = int(length_value)
    if encoding is not None and encoding.lower() != "chunked":
        raise HttpParseError(501, "only Transfer-Encoding: chunked is supported")
    return RequestHead(method, target, version, headers, content_length, encoding is not None)


def _refuse_repeated_framing(pairs: list[tuple[bytes, bytes]]) -> None:
    seen: set[bytes] = set()
    for name, _ in pairs:
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding", b"host") and lowered in seen:
            raise HttpParseError(400, f"repeated {lowered.decode()} header")
        seen.add(lowered)


# --- h11 --------------------------------------------------------------------------------------

#: A head that makes h11 read a chunked body, for decoding one.
_CHUNKED_HEAD = b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"


_LENGTH_LINE = re.compile(rb"\ncontent-length:([^\r\n]*)", re.IGNORECASE)


def _bare_line_feed_or_fold(raw: bytes) -> bool:
    """What h11 accepts in header and trailer lines and llhttp does not (llhttp refuses all
    of it as it parses): a line feed without its carriage return, a line that starts with
    white space (a folded value). RFC 9112 allows refusing both."""
    return raw.count(b"\n") != raw.count(b"\r\n") or b"\n " in raw or b"\n\t" in raw


class H11Parser(_FramedParser):
    """The parser of the pure-Python ``h11``."""

    __slots__ = ()

    def _parse_head(self, raw: bytes) -> RequestHead:
        if _bare_line_feed_or_fold(raw):
            raise HttpParseError(400, "bare line feed or folded header line")
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head + 4)
        conn.receive_data(raw)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpParseError(exc.error_status_hint, str(exc)) from None
        if not isinstance(event, h11.Request):  # pragma: no cover - a complete head is here
            raise HttpParseError(400, "incomplete request head")
        # raw_items(): iterating h11's Headers goes through Sequence.__iter__, one by one.
        pairs = event.headers.raw_items()
        if _CONTROL.search(b"".join([value for _, value in pairs])):
            raise HttpParseError(400, "control character in a header value")
        head = _checked_head(
            event.method.decode("ascii"), event.target, event.http_version.decode("ascii"), pairs
        )
        # h11 reduces "Content-Length: 5, 5", or the header twice, to one; llhttp refuses
        # both, and so do we.
        if head.content_length is not None:
            lengths = _LENGTH_LINE.findall(raw)
            if len(lengths) != 1 or b"," in lengths[0]:
                raise HttpParseError(400, "repeated Content-Length")
        return head

    def _chunked_decoder(self) -> _ChunkedDecoder:
        return _H11Chunked(self._max_head)


class _H11Chunked:
    __slots__ = ("_conn", "_fed", "_recent", "_recent_size")

    def __init__(self, max_line: int) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_line)
        self._conn.receive_data(_CHUNKED_HEAD)
        self._conn.next_event()
        self._fed = 0  # bytes of the body fed so far
        # The body's last bytes, enough for its end: the last-chunk line and the trailers.
        self._recent = b""
        self._recent_size = max_line + 8

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        conn = self._conn
        conn.receive_data(data)
        self._fed += len(data)
        self._recent = (self._recent + data[-self._recent_size :])[-self._recent_size :]
        pieces: list[bytes] = []
        try:
            while True:
                # (h11's buffer: what it has not parsed yet. Its public view copies it.)
                start = self._fed - len(conn._receive_buffer)
                event = conn.next_event()
                if isinstance(event, h11.Data):
                    pieces.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self._check_end(start, event)
                    # All of this message's earlier bytes were consumed by earlier feeds.
                    return pieces, len(data) - len(conn.trailing_data[0])
                else:
                    return pieces, -1
        except h11.RemoteProtocolError as exc:
            raise HttpParseError(400, str(exc)) from None

    def _check_end(self, start: int, event: h11.EndOfMessage) -> None:
        """The body's end, which h11 parsed in one step from ``start`` (the last chunk's
        CRLF, the last-chunk line, the trailers and the blank line; no chunk data), checked
        as llhttp checks it: trailers are dropped, but what llhttp refuses is refused."""
        if _CONTROL.search(b"".join([v for _, v in event.headers.raw_items()])):
            raise HttpParseError(400, "control character in a trailer")
        end = self._fed - len(self._conn._receive_buffer)
        recent_start = self._fed - len(self._recent)
        if start < recent_start:  # pragma: no cover - h11 bounds the trailers to the window
            raise HttpParseError(400, "trailers too long")
        raw = self._recent[start - recent_start : end - recent_start].removeprefix(b"\r\n")
        if _bare_line_feed_or_fold(raw):
            raise HttpParseError(400, "bare line feed or folded trailer line")


# --- httptools (llhttp) -----------------------------------------------------------------------

_CRLF2 = b"\r\n\r\n"


def _after_blank_line(data: bytes, start: int) -> int:
    """Where the first ``CRLF CRLF`` at or after ``start`` ends; ``-1`` if there is none."""
    found = data.find(_CRLF2, start)
    return found + 4 if found >= 0 else -1


_OWS = b" \t"


class HttptoolsParser(_FramedParser):
    """The parser of ``httptools``, llhttp (Node's parser) compiled: several times faster."""

    __slots__ = ("_complete", "_pairs", "_target")

    def __init__(self, max_head_bytes: int) -> None:
        if httptools is None:
            raise RuntimeError("httptools is not installed (pip install 'trio-sio[fast]')")
        super().__init__(max_head_bytes)
        self._pairs: list[tuple[bytes, bytes]] = []
        self._target = b""
        self._complete = False

    # llhttp's callbacks
    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp leaves the white space after a value in it; h11 (and RFC 9110) do not.
        self._pairs.append((name, value.rstrip(_OWS)))

    def on_headers_complete(self) -> None:
        self._complete = True

    def _parse_head(self, raw: bytes) -> RequestHead:
        assert httptools is not None
        pairs: list[tuple[bytes, bytes]] = []
        self._pairs = pairs
        self._target = b""
        self._complete = False
        parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(raw)
        except httptools.HttpParserUpgrade:
            pass  # the head of an upgrade request without a body: complete
        except httptools.HttpParserError as exc:
            raise HttpParseError(400, str(exc)) from None
        if not self._complete:
            raise HttpParseError(400, "incomplete request head")
        method, target, version = parser.get_method(), self._target, parser.get_http_version()
        # Not kept after the request (a WebSocket's lifetime): the headers are in its head.
        self._pairs = []
        self._target = b""
        # llhttp lets more white space through in the request line than RFC 9112 (and h11).
        if raw[: raw.find(b"\r\n")] != b"%s %s HTTP/%s" % (method, target, version.encode()):
            raise HttpParseError(400, "malformed request line")
        return _checked_head(method.decode("ascii"), target, version, pairs)

    def _chunked_decoder(self) -> _ChunkedDecoder:
        return _HttptoolsChunked()


class _HttptoolsChunked:
    """A chunked body through llhttp, which tells when a message ends but not where: the end
    of a chunked body follows a blank line (after the last chunk, or after its trailers), so
    llhttp gets the bytes one blank line at a time, and the first whose message completes is
    where the body ended."""

    __slots__ = ("_done", "_parser", "_pieces", "_tail")

    def __init__(self) -> None:
        assert httptools is not None
        self._pieces: list[bytes] = []
        self._done = False
        self._tail = b""  # the last bytes fed, for a blank line split between two reads
        self._parser = httptools.HttpRequestParser(self)
        self._parser.feed_data(_CHUNKED_HEAD)

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)

    def on_message_complete(self) -> None:
        self._done = True

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        pieces: list[bytes] = []
        self._pieces = pieces
        tail = self._tail
        # A blank line begun in the previous read, ending in this one (at 1 to 3).
        split = (tail + data[:3]).find(_CRLF2) if tail else -1
        end = split + 4 - len(tail) if split >= 0 else _after_blank_line(data, 0)
        start = 0
        while end >= 0:
            self._feed(data[start:end])
            start = end
            if self._done:
                return pieces, end
            end = _after_blank_line(data, start)
        if start < len(data):
            self._feed(data[start:])
        self._tail = (tail + data[-3:])[-3:]
        return pieces, -1

    def _feed(self, data: bytes) -> None:
        assert httptools is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise HttpParseError(400, str(exc)) from None


def make_parser(name: ParserName, max_head_bytes: int) -> RequestParser:
    """The parser ``name`` chooses: ``"auto"`` is httptools when installed, else h11."""
    if name == "httptools" or (name == "auto" and httptools is not None):
        return HttptoolsParser(max_head_bytes)
    return H11Parser(max_head_bytes)
