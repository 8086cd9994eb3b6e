"""Socket.IO v5 packets, and their default format: the JSON parser, whose decoder reassembles
binary attachments.

Wire format (https://github.com/socketio/socket.io-protocol, v5)::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]

``2["hello",1]`` is an EVENT on ``/``; ``2/chat,7["m"]`` is an EVENT with ack id 7 on
``/chat``; ``51-["up",{"_placeholder":true,"num":0}]`` is a BINARY_EVENT followed by one binary
Engine.IO message that replaces the placeholder.

Validation follows the reference parser (``socket.io-parser``'s ``isPayloadValid``), with
stricter bounds where the reference trusted the peer: attachment count, ack id size, namespace
length and JSON depth are all limited, and every failure is a :class:`ProtocolError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .codec import JsonCodec, StdlibJson
from .errors import ProtocolError

__all__ = [
    "MAX_ACK_ID",
    "RESERVED_EVENTS",
    "Decoder",
    "JsonParser",
    "PacketType",
    "SocketPacket",
    "describe_packet",
    "validate_payload",
]

#: Event names a peer may not use: they are the server's own lifecycle events.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

#: Largest ack id accepted: JavaScript's largest safe integer.
MAX_ACK_ID = 2**53 - 1
_MAX_ACK_ID_DIGITS = len(str(MAX_ACK_ID))

DEFAULT_MAX_ATTACHMENTS = 10
DEFAULT_MAX_NAMESPACE_LENGTH = 512
DEFAULT_MAX_BINARY_BYTES = 1_000_000


class PacketType(enum.IntEnum):
    """Socket.IO packet types; the value is the digit on the wire."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


_TYPE_BY_DIGIT = {str(t.value): t for t in PacketType}
#: The digit of each type (``packet_type.value`` is a Python-level property, a measurable
#: share of encoding an acknowledgement).
_DIGIT_OF_TYPE = {t: str(t.value) for t in PacketType}
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True, init=False)
class SocketPacket:
    """One decoded (or to-be-encoded) Socket.IO packet.

    ``data`` is ``None`` when the packet carries no payload; for EVENT and ACK it is a list
    (the event name first, for events), for CONNECT a dict, for CONNECT_ERROR a dict or str.
    Binary values appear as ``bytes`` wherever they are in ``data``: BINARY_EVENT and BINARY_ACK
    are decoded into EVENT and ACK with their attachments put back.
    """

    type: PacketType
    namespace: str
    data: Any
    id: int | None

    def __init__(
        self, type: PacketType, namespace: str = "/", data: Any = None, id: int | None = None
    ) -> None:
        # What the generated __init__ of a frozen dataclass does (it sets each field through
        # object.__setattr__), through the slots' own descriptors: 0.32 instead of 0.57 µs,
        # and every event makes two packets. The instance is as frozen as before.
        _set_type(self, type)
        _set_namespace(self, namespace)
        _set_data(self, data)
        _set_id(self, id)


_set_type, _set_namespace, _set_data, _set_id = (
    vars(SocketPacket)[field].__set__ for field in ("type", "namespace", "data", "id")
)


class JsonParser:
    """The Socket.IO protocol's own format (Node's default, ``socket.io-parser``): one text
    message per packet, followed by one binary message per attachment.

    Args:
        json: the JSON codec (see :class:`~trio_sio._protocol.JsonCodec`); the standard
            library's by default.
    """

    def __init__(self, json: JsonCodec | None = None) -> None:
        self.json: JsonCodec = json if json is not None else StdlibJson()

    def encode(self, packet: SocketPacket) -> tuple[str | bytes, ...]:
        """Encode ``packet`` into its text part followed by its binary attachments.

        EVENT and ACK packets whose data holds ``bytes`` (at any depth) are sent as
        BINARY_EVENT / BINARY_ACK with placeholders, and BINARY_EVENT / BINARY_ACK packets
        without any as EVENT / ACK. Encode once per broadcast: the result can be shared.

        Raises:
            TypeError: ``data`` holds something JSON cannot represent (the message names the
                event or acknowledgement).
        """
        json = self.json
        packet_type = packet.type
        # Whether a packet goes out as BINARY_* depends on its data alone, as on decoding.
        if packet_type is PacketType.BINARY_EVENT:
            packet_type = PacketType.EVENT
        elif packet_type is PacketType.BINARY_ACK:
            packet_type = PacketType.ACK
        data = packet.data
        attachments: list[bytes] = []
        payload = ""
        if data is not None:
            try:
                payload = json.dumps(data)
            except (TypeError, ValueError):
                # The fast path failed: either binary data (move it into attachments) or a
                # value JSON cannot hold (the second dumps raises for it).
                data = _deconstruct(data, attachments)
                try:
                    payload = json.dumps(data)
                except (TypeError, ValueError) as exc:
                    # One short error naming what was being sent, not a chain of two.
                    raise TypeError(f"{describe_packet(packet)} cannot be sent: {exc}") from None
            if attachments:
                if packet_type is PacketType.EVENT:
                    packet_type = PacketType.BINARY_EVENT
                elif packet_type is PacketType.ACK:
                    packet_type = PacketType.BINARY_ACK
                else:
                    raise TypeError(f"{packet.type.name} packets cannot carry binary data")
        header = _DIGIT_OF_TYPE[packet_type]
        if attachments:
            header += f"{len(attachments)}-"
        if packet.namespace != "/":
            header += packet.namespace + ","
        if packet.id is not None:
            header += str(packet.id)
        return (header + payload, *attachments)

    def decoder(self, *, max_attachments: int, max_binary_bytes: int) -> Decoder:
        """A :class:`Decoder` for one session."""
        return Decoder(
            self.json, max_attachments=max_attachments, max_binary_bytes=max_binary_bytes
        )


def describe_packet(packet: SocketPacket) -> str:
    """``event 'name'``, ``the acknowledgement 3``, ...: for error messages."""
    if packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT) and packet.data:
        return f"event {packet.data[0]!r}"
    if packet.type in (PacketType.ACK, PacketType.BINARY_ACK):
        return f"acknowledgement {packet.id}"
    return f"{packet.type.name} packet"


def _deconstruct(data: Any, attachments: list[bytes]) -> Any:
    """Copy ``data`` with every bytes-like value replaced by a numbered placeholder."""
    if isinstance(data, bytes | bytearray | memoryview):
        attachments.append(bytes(data))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(data, list | tuple):
        return [_deconstruct(item, attachments) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, attachments) for key, value in data.items()}
    return data


class Decoder:
    """Turns a session's incoming Engine.IO messages into Socket.IO packets.

    Feed every text message to :meth:`receive_text` and every binary one to
    :meth:`receive_binary`. Each returns a complete packet, or ``None`` while a binary packet
    waits for its attachments; :attr:`pending` then describes that packet, so the caller can
    refuse it (for instance, if its namespace is not connected) before anything is buffered.

    At most one packet is ever pending, holding at most ``max_binary_bytes`` of attachments.
    """

    def __init__(
        self,
        json: JsonCodec,
        *,
        max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
        max_namespace_length: int = DEFAULT_MAX_NAMESPACE_LENGTH,
        max_binary_bytes: int = DEFAULT_MAX_BINARY_BYTES,
    ) -> None:
        self._json = json
        self.max_attachments = max_attachments
        self.max_namespace_length = max_namespace_length
        self.max_binary_bytes = max_binary_bytes
        self.pending: SocketPacket | None = None
        self._expected = 0
        self._attachments: list[bytes] = []
        self._buffered = 0

    def reset(self) -> None:
        """Drop any partially received binary packet."""
        self.pending = None
        self._expected = 0
        self._attachments = []
        self._buffered = 0

    def receive_text(self, text: str) -> SocketPacket | None:
        """Decode a text message.

        Raises:
            ProtocolError: malformed packet, or text arriving while attachments are awaited.
        """
        if self.pending is not None:
            raise ProtocolError("unexpected text", "attachments were expected")
        packet, attachment_count = self._decode_text(text)
        if attachment_count == 0:
            return packet
        self.pending = packet
        self._expected = attachment_count
        return None

    def receive_binary(self, data: bytes) -> SocketPacket | None:
        """Add an attachment to the pending binary packet.

        Raises:
            ProtocolError: no packet awaits attachments, or they exceed ``max_binary_bytes``.
        """
        pending = self.pending
        if pending is None:
            # Also what a client with another parser (msgpack) sends first: say so.
            raise ProtocolError(
                "unexpected binary", "no packet awaits attachments (a client with another parser?)"
            )
        self._buffered += len(data)
        if self._buffered > self.max_binary_bytes:
            self.reset()
            raise ProtocolError("attachments too large", f"over {self.max_binary_bytes} bytes")
        self._attachments.append(data)
        if len(self._attachments) < self._expected:
            return None
        attachments = self._attachments
        self.reset()
        return SocketPacket(
            PacketType.EVENT if pending.type is PacketType.BINARY_EVENT else PacketType.ACK,
            pending.namespace,
            _reconstruct(pending.data, attachments),
            pending.id,
        )

    def _decode_text(self, text: str) -> tuple[SocketPacket, int]:
        length = len(text)
        packet_type = _TYPE_BY_DIGIT.get(text[:1])
        if packet_type is None:
            raise ProtocolError("invalid packet type", repr(text[:1]))
        i = 1
        attachment_count = 0
        if packet_type is PacketType.BINARY_EVENT or packet_type is PacketType.BINARY_ACK:
            dash = text.find("-", 1, 12)
            count = text[1:dash]
            if dash < 0 or not count or not _DIGITS.issuperset(count):
                raise ProtocolError("illegal attachments", repr(text[1:12]))
            attachment_count = int(count)
            if attachment_count > self.max_attachments:
                raise ProtocolError("too many attachments", f"{attachment_count}")
            if attachment_count == 0:
                # A binary packet that declared no attachments is an ordinary EVENT or ACK
                # (what validate_payload checks is the same for both).
                is_event = packet_type is PacketType.BINARY_EVENT
                packet_type = PacketType.EVENT if is_event else PacketType.ACK
            i = dash + 1
        namespace = "/"
        if i < length and text[i] == "/":
            comma = text.find(",", i, i + self.max_namespace_length + 1)
            end = length if comma < 0 else comma
            if end - i > self.max_namespace_length:
                raise ProtocolError("namespace too long")
            namespace = text[i:end]
            i = end + 1
        ack_id = None
        start = i
        while i < length and text[i] in _DIGITS:
            i += 1
        if i > start:
            if i - start > _MAX_ACK_ID_DIGITS or int(text[start:i]) > MAX_ACK_ID:
                raise ProtocolError("invalid ack id", "too large")
            ack_id = int(text[start:i])
        data = self._json.loads(text[i:]) if i < length else None
        validate_payload(packet_type, data, i < length)
        if ack_id is None and (
            packet_type is PacketType.ACK or packet_type is PacketType.BINARY_ACK
        ):
            raise ProtocolError("invalid ack id", "an ACK needs an id")
        return SocketPacket(packet_type, namespace, data, ack_id), attachment_count


def validate_payload(packet_type: PacketType, data: Any, present: bool) -> None:
    """Check ``data`` is what a packet of ``packet_type`` from a client may carry (see
    :class:`~trio_sio._protocol.parser.PacketDecoder`); ``present`` tells an absent payload
    from a ``null`` one (``0null`` is invalid).

    Raises:
        ProtocolError: it is not.
    """
    if packet_type is PacketType.CONNECT:
        valid = not present or isinstance(data, dict)
    elif packet_type is PacketType.DISCONNECT:
        valid = not present
    elif packet_type is PacketType.CONNECT_ERROR:
        valid = isinstance(data, dict | str)
    elif packet_type is PacketType.EVENT or packet_type is PacketType.BINARY_EVENT:
        valid = (
            isinstance(data, list)
            and len(data) > 0
            and isinstance(data[0], str)
            and data[0] not in RESERVED_EVENTS
        )
    else:  # ACK, BINARY_ACK
        valid = isinstance(data, list)
    if not valid:
        raise ProtocolError("invalid payload", f"for {packet_type.name}")


def _reconstruct(data: Any, attachments: list[bytes]) -> Any:
    """Replace every placeholder in ``data`` with its attachment, without recursion.

    Raises:
        ProtocolError: a placeholder whose ``num`` is not an int in ``range(len(attachments))``.
    """
    root = [data]
    stack: list[list[Any] | dict[str, Any]] = [root]
    while stack:
        container = stack.pop()
        keys: Any = container.keys() if isinstance(container, dict) else range(len(container))
        for key in keys:
            item = container[key]
            if isinstance(item, dict):
                if item.get("_placeholder") is True:
                    num = item.get("num")
                    if type(num) is not int or not 0 <= num < len(attachments):
                        raise ProtocolError("illegal attachments", f"placeholder num {num!r}")
                    container[key] = attachments[num]
                else:
                    stack.append(item)
            elif isinstance(item, list):
                stack.append(item)
    return root[0]
