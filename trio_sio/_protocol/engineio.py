"""Engine.IO v4: packets, long-polling payloads, request validation and the open packet.

Wire format (https://github.com/socketio/engine.io-protocol, v4):

* a packet is one type digit followed by its data: ``4hello`` is a message, ``2`` a ping;
* over WebSocket each packet is one frame, binary messages are binary frames sent as they are;
* over long-polling packets are joined with the record separator ``\\x1e`` and a binary message
  is written as ``b`` followed by its base64.

Nothing here does I/O; the transports in :mod:`trio_sio._engine` move the bytes.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from .codec import JsonCodec
from .errors import EngineErrorCode, HandshakeError, ProtocolError
from .websocket import encode_messages

__all__ = [
    "RECORD_SEPARATOR",
    "EnginePacket",
    "EnginePacketType",
    "EngineRequest",
    "OpenPacket",
    "Outgoing",
    "Transport",
    "decode_open_packet",
    "decode_packet",
    "decode_payload",
    "encode_open_packet",
    "encode_payload",
    "has_invalid_header_char",
    "parse_query",
    "validate_request",
]

RECORD_SEPARATOR = "\x1e"

#: Longest ``sid`` worth looking up; ours are 20 characters. Longer ones are unknown at once.
MAX_SID_LENGTH = 64


class EnginePacketType(enum.Enum):
    """Engine.IO packet types; the value is the digit on the wire."""

    OPEN = "0"
    CLOSE = "1"
    PING = "2"
    PONG = "3"
    MESSAGE = "4"
    UPGRADE = "5"
    NOOP = "6"


_TYPE_BY_DIGIT = {t.value: t for t in EnginePacketType}


@dataclass(frozen=True, slots=True)
class EnginePacket:
    """One Engine.IO packet. ``data`` is ``bytes`` only for binary messages."""

    type: EnginePacketType
    data: str | bytes = ""


def decode_packet(frame: str | bytes) -> EnginePacket:
    """Decode one WebSocket frame or one polling payload piece. Text starting with ``b`` is a
    binary message in base64: always over polling, and over WebSocket from clients with
    engine.io-client's ``forceBase64``.

    Raises:
        ProtocolError: empty frame, unknown packet type or invalid base64.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        return EnginePacket(EnginePacketType.MESSAGE, bytes(frame))
    if not frame:
        raise ProtocolError("empty packet")
    if frame[0] == "b":
        try:
            data = base64.b64decode(frame[1:], validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("invalid base64") from None
        return EnginePacket(EnginePacketType.MESSAGE, data)
    packet_type = _TYPE_BY_DIGIT.get(frame[0])
    if packet_type is None:
        raise ProtocolError("invalid packet type", repr(frame[:1]))
    return EnginePacket(packet_type, frame[1:])


def decode_payload(body: str, *, max_packets: int) -> list[EnginePacket]:
    """Decode a long-polling request body: packets separated by ``\\x1e``.

    Raises:
        ProtocolError: a bad piece, invalid base64, or more than ``max_packets`` packets.
    """
    if body.count(RECORD_SEPARATOR) >= max_packets:
        raise ProtocolError("too many packets", f"more than {max_packets} in one payload")
    return [decode_packet(piece) for piece in body.split(RECORD_SEPARATOR)]


def encode_payload(messages: Sequence[Outgoing]) -> str:
    """Join everything queued for a long-polling GET into one response body."""
    if len(messages) == 1:
        return RECORD_SEPARATOR.join(messages[0].polling_pieces())
    return RECORD_SEPARATOR.join(
        piece for message in messages for piece in message.polling_pieces()
    )


class Outgoing:
    """Engine.IO packets to send, encoded once and shared by every recipient.

    A broadcast builds one ``Outgoing`` and hands the same object to every session: the
    message frames are computed here once; the long-polling text and the WebSocket wire bytes
    lazily on first use and then cached, so the per-recipient cost is a queue append (or one
    ``send`` syscall of bytes shared by every recipient).

    Attributes:
        frames: one WebSocket frame per packet (``str`` for text, ``bytes`` for binary).
        nbytes: approximate size, for the per-session byte budget.
    """

    __slots__ = ("_polling", "_websocket", "frames", "nbytes")

    def __init__(self, frames: tuple[str | bytes, ...]) -> None:
        self.frames = frames
        self.nbytes = len(frames[0]) if len(frames) == 1 else sum(len(f) for f in frames)
        self._polling: tuple[str, ...] | None = None
        self._websocket: bytes | None = None

    @classmethod
    def message(cls, *parts: str | bytes) -> Outgoing:
        """Message packets: one per part (a Socket.IO packet and its binary attachments)."""
        if len(parts) == 1:  # most messages: JSON without attachments, or msgpack
            part = parts[0]
            if isinstance(part, str):
                return cls(("4" + part,))
            return cls(parts)  # one binary message: the frames as they are
        return cls(tuple("4" + part if isinstance(part, str) else part for part in parts))

    @classmethod
    def control(cls, packet_type: EnginePacketType, data: str = "") -> Outgoing:
        """One packet without binary data, such as a ping or a close."""
        return cls((packet_type.value + data,))

    def polling_pieces(self) -> tuple[str, ...]:
        """The packets as long-polling payload pieces (binary as ``b`` + base64)."""
        pieces = self._polling
        if pieces is None:
            pieces = self._polling = tuple(
                frame if isinstance(frame, str) else "b" + base64.b64encode(frame).decode()
                for frame in self.frames
            )
        return pieces

    def websocket_bytes(self) -> bytes:
        """The packets as uncompressed WebSocket messages, ready for the wire."""
        data = self._websocket
        if data is None:
            data = self._websocket = encode_messages(self.frames)
        return data

    def __repr__(self) -> str:
        return f"Outgoing({self.frames!r})"


class Transport(enum.Enum):
    """The transports of Engine.IO v4."""

    POLLING = "polling"
    WEBSOCKET = "websocket"


_TRANSPORT_BY_NAME = {t.value: t for t in Transport}


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """A request to an Engine.IO endpoint that passed :func:`validate_request`.

    ``sid`` is ``None`` for a handshake (a request that opens a new session).
    """

    transport: Transport
    sid: str | None


_MAX_QUERY_FIELDS = 64


def parse_query(raw: bytes | str) -> dict[str, str]:
    """Parse a URL query string; the first occurrence of a repeated name wins.

    Raises:
        HandshakeError: BAD_REQUEST for more than 64 fields.
    """
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    query: dict[str, str] = {}
    if "%" in text or "+" in text:
        try:
            fields = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS)
        except ValueError:  # "Max number of fields exceeded"
            raise HandshakeError(EngineErrorCode.BAD_REQUEST) from None
        for name, value in fields:
            query.setdefault(name, value)
        return query
    # Nothing to unquote, as in every query an Engine.IO client sends (``EIO``, ``transport``,
    # ``sid``, ``t``): the same fields as parse_qsl's, at a fraction of its cost.
    if text.count("&") >= _MAX_QUERY_FIELDS:
        raise HandshakeError(EngineErrorCode.BAD_REQUEST)
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            if name not in query:
                query[name] = value
    return query


def has_invalid_header_char(value: str) -> bool:
    """Whether ``value`` holds characters an HTTP header value may not (RFC 9110)."""
    # RFC 7230 field-value: visible ASCII, space, tab and obs-text; no other control characters.
    return any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value)


def validate_request(
    method: str,
    query: Mapping[str, str],
    *,
    allowed_transports: Collection[Transport],
    is_websocket: bool,
    origin: str | None = None,
) -> EngineRequest:
    """Check the parts of an Engine.IO request that need no session state.

    Order and codes follow engine.io's ``Server.verify``: transport, protocol revision, the
    ``Origin`` header's characters, then for handshakes the method and, for WebSocket, the
    presence of an upgrade. Whether a given ``sid`` exists is the caller's question.

    Raises:
        HandshakeError: with the engine.io error code to answer.
    """
    transport = _TRANSPORT_BY_NAME.get(query.get("transport", ""))
    if transport is None or transport not in allowed_transports:
        raise HandshakeError(EngineErrorCode.UNKNOWN_TRANSPORT)
    if query.get("EIO") != "4":
        raise HandshakeError(EngineErrorCode.UNSUPPORTED_PROTOCOL_VERSION)
    if origin is not None and has_invalid_header_char(origin):
        raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Invalid origin header")
    sid = query.get("sid")
    if sid is not None:
        if not sid or len(sid) > MAX_SID_LENGTH:
            raise HandshakeError(EngineErrorCode.UNKNOWN_SID)
        if (transport is Transport.WEBSOCKET) != is_websocket:
            raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Transport mismatch")
        return EngineRequest(transport, sid)
    if method != "GET":
        raise HandshakeError(EngineErrorCode.BAD_HANDSHAKE_METHOD)
    if transport is Transport.WEBSOCKET and not is_websocket:
        raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Missing WebSocket upgrade")
    if transport is Transport.POLLING and is_websocket:
        raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Transport mismatch")
    return EngineRequest(transport, None)


def encode_open_packet(
    json: JsonCodec,
    *,
    sid: str,
    upgrades: Sequence[str],
    ping_interval: float,
    ping_timeout: float,
    max_payload: int,
) -> str:
    """The handshake's open packet. Times are given in seconds and sent as integer ms."""
    return "0" + json.dumps(
        {
            "sid": sid,
            "upgrades": list(upgrades),
            "pingInterval": round(ping_interval * 1000),
            "pingTimeout": round(ping_timeout * 1000),
            "maxPayload": max_payload,
        }
    )


@dataclass(frozen=True, slots=True)
class OpenPacket:
    """What a server's open packet tells its client; times in seconds."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval: float
    ping_timeout: float
    max_payload: int


#: Longest heartbeat period a client accepts, in ms (JavaScript timers overflow past 2**31-1).
MAX_PING_MS = 2**31 - 1


def decode_open_packet(json: JsonCodec, data: str) -> OpenPacket:
    """The client's side of :func:`encode_open_packet`: the data of an OPEN packet.

    Raises:
        ProtocolError: not a JSON object with a usable ``sid``, ``upgrades``,
            ``pingInterval``, ``pingTimeout`` and ``maxPayload``.
    """
    info = json.loads(data)
    if not isinstance(info, dict):
        raise ProtocolError("invalid open packet", "not an object")
    sid = info.get("sid")
    if not isinstance(sid, str) or not sid or len(sid) > MAX_SID_LENGTH:
        raise ProtocolError("invalid open packet", "sid")
    upgrades = info.get("upgrades", [])
    if not isinstance(upgrades, list) or not all(isinstance(u, str) for u in upgrades):
        raise ProtocolError("invalid open packet", "upgrades")
    ping_interval = _milliseconds(info, "pingInterval")
    ping_timeout = _milliseconds(info, "pingTimeout")
    max_payload = info.get("maxPayload")
    if type(max_payload) is not int or max_payload <= 0:
        raise ProtocolError("invalid open packet", "maxPayload")
    return OpenPacket(sid, tuple(upgrades), ping_interval, ping_timeout, max_payload)


def _milliseconds(info: dict[str, object], name: str) -> float:
    value = info.get(name)
    # bool is an int in Python, not in JSON.
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ProtocolError("invalid open packet", name)
    if not math.isfinite(value) or not 0 <= value <= MAX_PING_MS:
        raise ProtocolError("invalid open packet", f"{name} out of range")
    return value / 1000
