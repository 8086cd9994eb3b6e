"""WebSocket (RFC 6455), server side: the frame decoder, the frame encoder and the handshake.

Sans-I/O like the rest of :mod:`trio_sio._protocol`: feed received bytes to
:meth:`WebSocketDecoder.receive_data` and take events from :meth:`WebSocketDecoder.next_event`;
encode outgoing messages with :func:`encode_messages` and write the bytes yourself.

The decoder is built for hostile peers:

* every violation raises :class:`WebSocketError` (a :class:`~trio_sio._protocol.ProtocolError`)
  carrying the close code to answer with, and nothing else escapes it;
* a message's size is checked against the limit from each frame's header, *before* its payload
  is buffered (close code 1009), and fragments are collected in one buffer, so a message cut
  into tiny fragments costs no more memory than the message itself;
* text is validated as UTF-8 fragment by fragment (close code 1007);
* client frames must be masked; control frames must be short and unfragmented; reserved bits,
  opcodes and close codes, and non-minimal length encodings are refused;
* frames that never reach the application (pings, pongs, empty fragments) are counted, for
  the caller to bound their rate, and a long run of fragments can be cut into turns
  (``pause_after``).

Only whole messages are delivered (``str`` for text, ``bytes`` for binary); control frames come
out as :class:`Ping`, :class:`Pong` and :class:`Close` events, interleaved where they arrived.

``permessage-deflate`` (RFC 7692) is supported but off unless the host enables it; then the
decompressed size of each message is bounded by the same limit, whatever the compression ratio.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ProtocolError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Close",
    "CloseCode",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "WebSocketDecoder",
    "WebSocketError",
    "WebSocketEvent",
    "accept_key",
    "encode_close",
    "encode_frame",
    "encode_messages",
    "negotiate_deflate",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
_KNOWN_OPCODES = frozenset({*_DATA_OPCODES, OP_CLOSE, OP_PING, OP_PONG})

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Payloads up to this size are unmasked with one big-integer XOR; longer ones with
#: ``bytes.translate`` on each of the four byte lanes (faster from about 500 bytes on).
_SMALL_UNMASK = 512
_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]


class CloseCode:
    """The close codes this module uses (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009


#: Codes a peer may send: the registered ones that are not local-only (1005, 1006, 1015),
#: then the ranges for libraries and applications. (The same set as wsproto's.)
_VALID_REMOTE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1014)})


def _valid_close_code(code: int) -> bool:
    return code in _VALID_REMOTE_CODES or 3000 <= code <= 4999


class WebSocketError(ProtocolError):
    """The peer broke RFC 6455 (or a limit). ``close_code`` is the code to close with."""

    def __init__(
        self, reason: str, detail: str = "", *, close_code: int = CloseCode.PROTOCOL_ERROR
    ) -> None:
        super().__init__(reason, detail)
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping; answer it with a pong carrying the same payload."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong (unsolicited ones are allowed and mean nothing)."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Close:
    """The peer's close frame. ``code`` is 1005 when the frame carried none."""

    code: int = CloseCode.NO_STATUS
    reason: str = ""


#: What :meth:`WebSocketDecoder.next_event` returns: a whole message or a control frame.
WebSocketEvent = str | bytes | Ping | Pong | Close


def _unmask(payload: bytes | bytearray, mask: bytes) -> bytes:
    n = len(payload)
    if n <= _SMALL_UNMASK:
        if not n:
            return b""
        key = mask * ((n + 3) >> 2)
        if n & 3:
            key = key[:n]
        value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
        return value.to_bytes(n, "little")
    data = bytearray(payload)
    a, b, c, d = (_XOR_TABLES[byte] for byte in mask)
    data[0::4] = data[0::4].translate(a)
    data[1::4] = data[1::4].translate(b)
    data[2::4] = data[2::4].translate(c)
    data[3::4] = data[3::4].translate(d)
    return bytes(data)


def _parse_close(payload: bytes) -> Close:
    if not payload:
        return Close()
    if len(payload) == 1:
        raise WebSocketError("invalid close frame", "1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not _valid_close_code(code):
        raise WebSocketError("invalid close code", str(code))
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError(
            "invalid close reason", "not UTF-8", close_code=CloseCode.INVALID_DATA
        ) from None
    return Close(code, reason)


class WebSocketDecoder:
    """Decodes what a client sends: whole messages and control frames.

    Args:
        max_message_size: largest message accepted, in bytes (after decompression); a frame
            whose header announces more is refused before its payload is read.
        deflate: the negotiated ``permessage-deflate`` state, if any (see
            :func:`negotiate_deflate`); without it a set RSV1 bit is a protocol error.
        pause_after: :meth:`next_event` returns ``None`` after this many frames in a row that
            make no event (fragments, of a message that does not end), with :attr:`paused`
            set; ``None``: it goes on while it has bytes. One read can hold thousands of
            frames, and the caller may want to let other work run in between.

    After a :class:`Close` event the decoder ignores whatever follows. After a
    :class:`WebSocketError`, every call raises it again.

    Attributes:
        paused: whether the last :meth:`next_event` returned ``None`` because of
            ``pause_after`` (the rest is still buffered: call it again before feeding more).
        overhead_frames: how many frames carried nothing for the application so far: pings,
            pongs, and empty fragments that do not end their message. The caller can bound
            their rate; nothing else does, since they never reach the application.
    """

    def __init__(
        self,
        *,
        max_message_size: int,
        deflate: PerMessageDeflate | None = None,
        pause_after: int | None = None,
    ) -> None:
        if max_message_size < 0:
            raise ValueError("max_message_size must not be negative")
        if pause_after is not None and pause_after <= 0:
            raise ValueError("pause_after must be positive")
        self.max_message_size = max_message_size
        self.deflate = deflate
        self.pause_after = pause_after
        self.paused = False
        self.overhead_frames = 0
        self.closed = False
        self._error: WebSocketError | None = None
        self._data = b""
        self._pos = 0
        # The frame being read: its header once parsed, and its payload so far.
        self._in_frame = False
        self._opcode = 0
        self._fin = False
        self._rsv1 = False
        self._mask = b""
        self._length = 0
        self._partial: bytearray | None = None
        # The fragmented message being assembled.
        self._message_opcode: int | None = None
        self._message: bytearray | None = None
        self._message_size = 0
        self._compressed = False
        self._utf8: codecs.IncrementalDecoder | None = None

    @property
    def buffered(self) -> int:
        """Bytes held: unparsed input, a partial frame and a partial message."""
        return len(self._data) - self._pos + len(self._partial or b"") + len(self._message or b"")

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes received from the peer."""
        if self.closed or self._error is not None or not data:
            return
        if self._pos < len(self._data):
            # At most an incomplete frame header is ever left here (payloads move out).
            self._data = self._data[self._pos :] + data
        else:
            self._data = bytes(data)
        self._pos = 0

    def next_event(self) -> WebSocketEvent | None:
        """The next message or control frame, or ``None`` until more bytes arrive (or, with
        :attr:`paused` set, until the next call: see ``pause_after``).

        Raises:
            WebSocketError: the bytes break the protocol or the size limit.
        """
        self.paused = False
        if self._error is not None:
            raise self._error
        if self.closed:
            return None
        frames = 0
        try:
            if not self._in_frame and self._message_opcode is None:
                data, pos = self._data, self._pos
                if pos == len(data):
                    return None  # all of it taken: the reader's call after every message
                # The common frame in one step: a whole text or binary message of up to 125
                # bytes, masked, with FIN and no reserved bit, all of it here (6 bytes of
                # header and mask). Every check of _parse_header passes for it, or is the size
                # limit's, tested here (no message is under way: nothing counted yet);
                # _finish does the UTF-8 check.
                if len(data) - pos >= 6:
                    first = data[pos]
                    length = data[pos + 1] ^ 0x80  # a clear mask bit makes it 128 or more
                    end = pos + 6 + length
                    if (
                        (first == 0x81 or first == 0x82)
                        and length <= 125
                        and end <= len(data)
                        and length <= self.max_message_size
                    ):
                        self._pos = end
                        return self._finish(
                            first & 0x0F, _unmask(data[pos + 6 : end], data[pos + 2 : pos + 6])
                        )
            while True:
                if not self._in_frame and not self._parse_header():
                    return None
                payload = self._take_payload()
                if payload is None:
                    return None
                event = self._frame_complete(payload)
                if event is not None:
                    return event
                frames += 1
                if frames == self.pause_after:
                    self.paused = True
                    return None
        except WebSocketError as exc:
            self._error = exc
            self._data = b""
            self._partial = self._message = None
            raise

    def _parse_header(self) -> bool:
        data = self._data
        pos = self._pos
        available = len(data) - pos
        if available < 2:
            return False
        first = data[pos]
        second = data[pos + 1]
        opcode = first & 0x0F
        fin = bool(first & 0x80)
        if opcode not in _KNOWN_OPCODES:
            raise WebSocketError("invalid opcode", hex(opcode))
        control = opcode >= OP_CLOSE
        length = second & 0x7F
        if control:
            if not fin:
                raise WebSocketError("fragmented control frame")
            if length > 125:
                raise WebSocketError("control frame too long")
        header = 6
        if length == 126:
            header = 8
            if available < 4:
                return False
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            if length <= 125:
                raise WebSocketError("non-minimal length", "2 bytes where 1 would do")
        elif length == 127:
            header = 14
            if available < 10:
                return False
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if length <= 0xFFFF:
                raise WebSocketError("non-minimal length", "8 bytes where 2 would do")
            if length >> 63:
                raise WebSocketError("invalid length", "most significant bit set")
        rsv1 = bool(first & 0x40)
        if first & 0x30:
            raise WebSocketError("reserved bit set")
        if rsv1 and (self.deflate is None or opcode not in (OP_TEXT, OP_BINARY)):
            raise WebSocketError("reserved bit set", "RSV1")
        if not second & 0x80:
            raise WebSocketError("unmasked frame")
        if not control:
            if opcode == OP_CONTINUATION:
                if self._message_opcode is None:
                    raise WebSocketError("unexpected continuation frame")
            elif self._message_opcode is not None:
                raise WebSocketError("expected a continuation frame")
            # Refuse oversize messages from the header, before reading the payload.
            if self._message_size + length > self.max_message_size:
                raise WebSocketError(
                    "message too big",
                    f"more than {self.max_message_size} bytes",
                    close_code=CloseCode.MESSAGE_TOO_BIG,
                )
        if available < header:
            return False
        self._mask = data[pos + header - 4 : pos + header]
        self._pos = pos + header
        self._in_frame = True
        self._opcode = opcode
        self._fin = fin
        self._rsv1 = rsv1
        self._length = length
        return True

    def _take_payload(self) -> bytes | bytearray | None:
        length = self._length
        data = self._data
        pos = self._pos
        partial = self._partial
        if partial is None:
            if len(data) - pos >= length:
                self._pos = pos + length
                return data[pos : pos + length]
            partial = self._partial = bytearray()
        end = min(len(data), pos + length - len(partial))
        partial += memoryview(data)[pos:end]
        self._pos = end
        if len(partial) < length:
            return None
        self._partial = None
        return partial

    def _frame_complete(self, masked: bytes | bytearray) -> WebSocketEvent | None:
        self._in_frame = False
        payload = _unmask(masked, self._mask)
        opcode = self._opcode
        if opcode >= OP_CLOSE:
            if opcode == OP_PING:
                self.overhead_frames += 1
                return Ping(payload)
            if opcode == OP_PONG:
                self.overhead_frames += 1
                return Pong(payload)
            self.closed = True
            self._data = b""
            self._pos = 0
            self._message = None
            return _parse_close(payload)
        if opcode != OP_CONTINUATION:
            self._message_opcode = opcode
            self._compressed = self._rsv1
            if self._fin:
                # The common case: a whole message in one frame.
                self._message_opcode = None
                return self._finish(opcode, self._inflate(payload, final=True))
            self._message = bytearray()
            if opcode == OP_TEXT:
                self._utf8 = codecs.getincrementaldecoder("utf-8")()
        if not payload and not self._fin:
            self.overhead_frames += 1
        message = self._message
        assert message is not None
        piece = self._inflate(payload, final=self._fin)
        message += piece
        if not self._compressed:
            # Compressed fragments are inflated at once, within the limit; raw ones count here.
            self._message_size = len(message)
        if self._utf8 is not None:
            try:
                self._utf8.decode(piece, self._fin)
            except UnicodeDecodeError:
                raise WebSocketError("invalid UTF-8", close_code=CloseCode.INVALID_DATA) from None
        if not self._fin:
            return None
        message_opcode = self._message_opcode
        assert message_opcode is not None
        self._message = None
        self._message_opcode = None
        self._message_size = 0
        self._utf8 = None
        if message_opcode == OP_TEXT:
            return message.decode("utf-8")  # validated above, fragment by fragment
        return bytes(message)

    def _finish(self, opcode: int, payload: bytes) -> str | bytes:
        if opcode == OP_TEXT:
            try:
                return payload.decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketError("invalid UTF-8", close_code=CloseCode.INVALID_DATA) from None
        return payload

    def _inflate(self, payload: bytes, *, final: bool) -> bytes:
        if not self._compressed:
            return payload
        assert self.deflate is not None
        already = len(self._message) if self._message is not None else 0
        return self.deflate.decompress(payload, self.max_message_size - already, final=final)


# --- encoding -----------------------------------------------------------------------------

_TEXT_HEADERS = tuple(bytes((0x80 | OP_TEXT, n)) for n in range(126))
_BINARY_HEADERS = tuple(bytes((0x80 | OP_BINARY, n)) for n in range(126))


def _header(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, length))
    if length <= 0xFFFF:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def encode_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False
) -> bytes:
    """One unmasked (server) frame."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    return _header(first, len(payload)) + payload


def encode_close(code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control frame limit."""
    if code is None or code in (CloseCode.NO_STATUS, CloseCode.ABNORMAL, 1015):
        return encode_frame(OP_CLOSE)
    data = reason.encode("utf-8")[:123]
    # Do not cut a character in two.
    data = data.decode("utf-8", errors="ignore").encode("utf-8")
    return encode_frame(OP_CLOSE, code.to_bytes(2, "big") + data)


def encode_messages(
    frames: Sequence[str | bytes], deflate: PerMessageDeflate | None = None
) -> bytes:
    """Each item as one message (``str`` as text, ``bytes`` as binary), in one buffer."""
    if deflate is not None:
        return b"".join(deflate.encode_message(frame) for frame in frames)
    if len(frames) == 1:
        frame = frames[0]
        if isinstance(frame, str):
            data = frame.encode()
            n = len(data)
            return (_TEXT_HEADERS[n] if n < 126 else _header(0x81, n)) + data
        n = len(frame)
        return (_BINARY_HEADERS[n] if n < 126 else _header(0x82, n)) + frame
    parts: list[bytes] = []
    append = parts.append
    for frame in frames:
        if isinstance(frame, str):
            data = frame.encode()
            n = len(data)
            append(_TEXT_HEADERS[n] if n < 126 else _header(0x81, n))
            append(data)
        else:
            n = len(frame)
            append(_BINARY_HEADERS[n] if n < 126 else _header(0x82, n))
            append(frame)
    return b"".join(parts)


# --- the opening handshake ------------------------------------------------------------------


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``.

    Raises:
        WebSocketError: the key is not the base64 of 16 bytes.
    """
    try:
        raw = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebSocketError("invalid Sec-WebSocket-Key") from None
    if len(raw) != 16:
        raise WebSocketError("invalid Sec-WebSocket-Key", "not 16 bytes")
    digest = hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


# --- permessage-deflate (RFC 7692) ----------------------------------------------------------

_DEFLATE_TAIL = b"\x00\x00\xff\xff"


class PerMessageDeflate:
    """The negotiated ``permessage-deflate`` parameters and the (de)compressors.

    Outgoing messages of at least ``threshold`` bytes are compressed; smaller ones are sent
    as they are (RSV1 clear), which the extension allows.
    """

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = 15,
        client_max_window_bits: int = 15,
        threshold: int = 1024,
        level: int = 6,
    ) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.threshold = threshold
        self.level = level
        self._inflater = zlib.decompressobj(-client_max_window_bits)
        self._deflater: zlib._Compress | None = None

    def response_header(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value accepting this configuration."""
        params = ["permessage-deflate"]
        if self.server_no_context_takeover:
            params.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            params.append("client_no_context_takeover")
        if self.server_max_window_bits != 15:
            params.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits != 15:
            params.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(params)

    def decompress(self, payload: bytes, limit: int, *, final: bool) -> bytes:
        """Inflate one frame's payload, producing at most ``limit`` bytes.

        Raises:
            WebSocketError: 1009 when the output would exceed ``limit``; 1007 for bad data.
        """
        data = payload + _DEFLATE_TAIL if final else payload
        try:
            out = self._inflater.decompress(data, max(limit, 0) + 1)
        except zlib.error as exc:
            raise WebSocketError(
                "invalid compressed data", str(exc), close_code=CloseCode.INVALID_DATA
            ) from None
        if len(out) > limit or self._inflater.unconsumed_tail:
            raise WebSocketError(
                "message too big",
                "decompressed size over the limit",
                close_code=CloseCode.MESSAGE_TOO_BIG,
            )
        if final and self.client_no_context_takeover:
            self._inflater = zlib.decompressobj(-self.client_max_window_bits)
        return out

    def encode_message(self, frame: str | bytes) -> bytes:
        """One message as a frame, compressed if it is large enough to be worth it."""
        opcode = OP_TEXT if isinstance(frame, str) else OP_BINARY
        data = frame.encode() if isinstance(frame, str) else frame
        if len(data) < self.threshold:
            return _header(0x80 | opcode, len(data)) + data
        deflater = self._deflater
        if deflater is None:
            deflater = self._deflater = zlib.compressobj(
                self.level, zlib.DEFLATED, -self.server_max_window_bits
            )
        compressed = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        if compressed.endswith(_DEFLATE_TAIL):
            compressed = compressed[:-4]
        if self.server_no_context_takeover:
            self._deflater = None
        return _header(0xC0 | opcode, len(compressed)) + compressed


def _parse_extension_offers(header: str) -> list[tuple[str, dict[str, str | None]]]:
    offers = []
    for offer in header.split(","):
        name, *raw_params = (part.strip() for part in offer.split(";"))
        params: dict[str, str | None] = {}
        for raw in raw_params:
            if not raw:
                continue
            key, sep, value = raw.partition("=")
            params[key.strip().lower()] = value.strip().strip('"') if sep else None
        offers.append((name.lower(), params))
    return offers


def negotiate_deflate(
    header: str | None, *, threshold: int = 1024, level: int = 6
) -> PerMessageDeflate | None:
    """Accept the first acceptable ``permessage-deflate`` offer in a request's
    ``Sec-WebSocket-Extensions`` header, or return ``None``.

    Offers with unknown or malformed parameters are skipped, as RFC 7692 requires.
    """
    if not header or len(header) > 4096:
        return None
    for name, params in _parse_extension_offers(header):
        if name != "permessage-deflate":
            continue
        options: dict[str, bool | int] = {}
        acceptable = True
        for key, value in params.items():
            if key in ("server_no_context_takeover", "client_no_context_takeover"):
                acceptable = value is None
                options[key] = True
            elif key in ("server_max_window_bits", "client_max_window_bits"):
                if value is None:
                    # client_max_window_bits without a value: the client can use any; we keep 15.
                    acceptable = key == "client_max_window_bits"
                    continue
                # zlib cannot deflate with a window of 8 bits (it uses 9), so we cannot promise 8.
                low = 9 if key == "server_max_window_bits" else 8
                if not (value.isdigit() and low <= int(value) <= 15 and value[0] != "0"):
                    acceptable = False
                else:
                    options[key] = int(value)
            else:
                acceptable = False
            if not acceptable:
                break
        if acceptable:
            return PerMessageDeflate(
                server_no_context_takeover=bool(options.get("server_no_context_takeover")),
                client_no_context_takeover=bool(options.get("client_no_context_takeover")),
                server_max_window_bits=int(options.get("server_max_window_bits", 15)),
                client_max_window_bits=int(options.get("client_max_window_bits", 15)),
                threshold=threshold,
                level=level,
            )
    return None
