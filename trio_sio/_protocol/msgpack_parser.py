"""The msgpack format of npm's ``socket.io-msgpack-parser`` 3.x.

Wire format: every packet is one binary Engine.IO message holding one msgpack map, the
packet object itself::

    {"type": 2, "nsp": "/chat", "data": ["message", "hi", <bin 3>], "id": 7}

``type`` is 0 to 4 (there are no BINARY_EVENT or BINARY_ACK packets: binary values are
msgpack ``bin`` wherever they are), ``nsp`` is always there, ``/`` included, and ``data`` and
``id`` only when the packet has them. The peer may add other keys (socket.io-client adds
``options``); they are ignored.

The npm package encodes with notepack.io, which gives msgpack extension type 0 to three
JavaScript values: ``undefined`` (fixext 1), ``Date`` (fixext 8, signed 64-bit big-endian
milliseconds since the epoch) and, in Node, an ``ArrayBuffer`` or typed array that is not a
``Buffer`` (ext 8/16/32, its bytes). They decode as ``None``, an aware :class:`datetime` in
UTC and ``bytes``; an aware :class:`datetime` is sent as a ``Date``.

Bounds match the JSON parser's: the message is at most the Engine.IO ``max_payload``, arrays
and maps nest at most ``max_depth`` deep inside ``data``, map keys are strings, no other
extension type is accepted, and every failure is a :class:`ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from .codec import DEFAULT_MAX_JSON_DEPTH
from .errors import ProtocolError
from .socketio import (
    DEFAULT_MAX_NAMESPACE_LENGTH,
    MAX_ACK_ID,
    PacketType,
    SocketPacket,
    describe_packet,
    validate_payload,
)

__all__ = ["MsgpackDecoder", "MsgpackParser"]

#: The packet types of the format, by their value on the wire.
_TYPES = {
    t.value: t
    for t in (
        PacketType.CONNECT,
        PacketType.DISCONNECT,
        PacketType.EVENT,
        PacketType.ACK,
        PacketType.CONNECT_ERROR,
    )
}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)

# msgpack format bytes of the extension types notepack.io writes with type 0.
_FIXEXT_1 = 0xD4  # undefined
_FIXEXT_8 = 0xD7  # Date
_EXT_FORMATS = frozenset({0xC7, 0xC8, 0xC9})  # ArrayBuffer / typed array


class MsgpackParser:
    """``socket.io-msgpack-parser`` 3.x: one binary message per packet, binary values native.

    Needs the ``msgpack`` package (``pip install 'trio-sio[msgpack]'``).

    Args:
        max_depth: how deeply arrays and maps may nest inside a packet's ``data`` (as the
            JSON codec's ``max_depth``).
        max_namespace_length: the longest namespace name accepted.
    """

    def __init__(
        self,
        *,
        max_depth: int = DEFAULT_MAX_JSON_DEPTH,
        max_namespace_length: int = DEFAULT_MAX_NAMESPACE_LENGTH,
    ) -> None:
        try:
            import msgpack
        except ImportError:
            raise ImportError(
                "MsgpackParser needs the msgpack package: pip install 'trio-sio[msgpack]'"
            ) from None
        self.max_depth = max_depth
        self.max_namespace_length = max_namespace_length
        self._unpackb: Callable[..., Any] = msgpack.unpackb
        self._timestamp: type = msgpack.Timestamp
        # One packer for every packet: packing is synchronous, so no two packets use it at
        # once. datetime=False leaves datetimes to _encode_extension, as JavaScript Dates.
        self._pack: Callable[[Any], bytes] = msgpack.Packer(
            use_bin_type=True, datetime=False, default=partial(_encode_extension, msgpack.ExtType)
        ).pack

    def encode(self, packet: SocketPacket) -> tuple[bytes]:
        """``packet`` as one binary message.

        Raises:
            TypeError: ``data`` holds something msgpack cannot represent (the message names
                the event or acknowledgement).
        """
        packet_type = packet.type
        if packet_type is PacketType.BINARY_EVENT:
            packet_type = PacketType.EVENT
        elif packet_type is PacketType.BINARY_ACK:
            packet_type = PacketType.ACK
        message: dict[str, Any] = {"type": packet_type, "nsp": packet.namespace}
        # Absent, not nil: the npm decoder refuses a DISCONNECT whose data is null.
        if packet.data is not None:
            message["data"] = packet.data
        if packet.id is not None:
            message["id"] = packet.id
        try:
            return (self._pack(message),)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"{describe_packet(packet)} cannot be sent: {exc}") from None

    def decoder(self, *, max_attachments: int, max_binary_bytes: int) -> MsgpackDecoder:
        """A :class:`MsgpackDecoder` for one session. The format has no attachments, and a
        packet is one message, which Engine.IO's ``max_payload`` already bounds."""
        return MsgpackDecoder(
            self._unpackb,
            self._timestamp,
            max_depth=self.max_depth,
            max_namespace_length=self.max_namespace_length,
        )


def _encode_extension(ext_type: Callable[[int, bytes], Any], value: Any) -> Any:
    # msgpack's ``default``: called for the values it has no type for.
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("a naive datetime is no single instant: give it a tzinfo")
        milliseconds = (value - _EPOCH) // _MILLISECOND
        return ext_type(0, milliseconds.to_bytes(8, "big", signed=True))
    raise TypeError(f"cannot serialize {type(value).__name__!r} object")


class MsgpackDecoder:
    """Decodes one session's messages, each a whole packet (see the module's description).

    Never has a packet :attr:`pending`: nothing is buffered between messages.
    """

    #: Always ``None``: a packet is never split over messages.
    pending: SocketPacket | None = None

    def __init__(
        self,
        unpackb: Callable[..., Any],
        timestamp: type,
        *,
        max_depth: int,
        max_namespace_length: int,
    ) -> None:
        self.max_depth = max_depth
        self.max_namespace_length = max_namespace_length
        self._unpackb = partial(
            unpackb, raw=False, strict_map_key=True, ext_hook=self._decode_extension
        )
        # msgpack decodes its own timestamp extension (type -1) without asking ext_hook.
        self._timestamp = timestamp
        # The message being decoded and what _decode_extension learnt about it.
        self._message = b""
        self._extensions_seen = 0
        self._extension_formats: list[int] | None = None

    def reset(self) -> None:
        """Nothing to forget: every message is a whole packet."""

    def receive_text(self, text: str) -> SocketPacket | None:
        """Raises :class:`ProtocolError`: this format has no text messages."""
        raise ProtocolError(
            "unexpected text", "msgpack packets are binary (a client with the JSON parser?)"
        )

    def receive_binary(self, data: bytes) -> SocketPacket:
        """Decode one message into its packet.

        Raises:
            ProtocolError: not msgpack, or not a packet the server accepts from a client.
        """
        self._message = data
        self._extensions_seen = 0
        self._extension_formats = None
        try:
            decoded = self._unpackb(data)
        except ValueError as exc:  # every msgpack decoding error is one
            raise ProtocolError("invalid msgpack", str(exc)[:100]) from None
        finally:
            self._message = b""
        if type(decoded) is not dict:
            raise ProtocolError("invalid packet", "not a map")
        # One level more than the JSON parser's: the packet map holds ``data``.
        _check_tree(decoded, self.max_depth + 1, self._timestamp)
        type_value = decoded.get("type")
        packet_type = _TYPES.get(type_value) if type(type_value) is int else None
        if packet_type is None:
            raise ProtocolError("invalid packet type", _shown(type_value))
        namespace = decoded.get("nsp")
        if type(namespace) is not str or not namespace.startswith("/"):
            raise ProtocolError("invalid namespace", _shown(namespace))
        if len(namespace) > self.max_namespace_length:
            raise ProtocolError("namespace too long")
        payload = decoded.get("data")
        # An absent payload, nil (python-socketio sends one) and undefined are all "none".
        validate_payload(packet_type, payload, payload is not None)
        ack_id = decoded.get("id")
        if ack_id is not None and (type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID):
            raise ProtocolError("invalid ack id", _shown(ack_id))
        if ack_id is None and packet_type is PacketType.ACK:
            raise ProtocolError("invalid ack id", "an ACK needs an id")
        return SocketPacket(packet_type, namespace, payload, ack_id)

    def _decode_extension(self, code: int, data: bytes) -> Any:
        """msgpack's ``ext_hook``, called in the order the extensions are in the message."""
        if code != 0:
            raise ProtocolError("unsupported msgpack extension", f"type {code}")
        ordinal = self._extensions_seen
        self._extensions_seen += 1
        if len(data) not in (1, 2, 4, 8, 16):
            return data  # only ext 8/16/32 come in other sizes: an ArrayBuffer
        # msgpack tells the hook the type and the bytes, not the format: a fixext 8 (a Date)
        # and an ext 8 of 8 bytes (a Float64Array([x])) look the same. Read it off the wire.
        formats = self._extension_formats
        if formats is None:
            formats = self._extension_formats = extension_formats(self._message)
        wire_format = formats[ordinal]
        if wire_format in _EXT_FORMATS:
            return data
        if wire_format == _FIXEXT_1:
            return None
        if wire_format == _FIXEXT_8:
            milliseconds = int.from_bytes(data, "big", signed=True)
            try:
                return _EPOCH + milliseconds * _MILLISECOND
            except OverflowError:
                raise ProtocolError("date out of range", str(milliseconds)) from None
        raise ProtocolError("unsupported msgpack extension", f"format {wire_format:#x}")


def _shown(value: Any) -> str:
    """A short description of a hostile value, for an error message: never the repr of a
    container, which costs as much as the message."""
    if type(value) is int or value is None:
        return repr(value)[:20]
    if type(value) is str:
        return repr(value[:20])
    return type(value).__name__


def _check_tree(root: dict[Any, Any], max_depth: int, timestamp: type) -> None:
    """Raise :class:`ProtocolError` for nesting deeper than ``max_depth``, a map key that is
    not a string, or a msgpack ``timestamp``. Iterative, so hostile depth cannot exhaust the
    Python stack."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            raise ProtocolError("msgpack too deep", f"more than {max_depth} levels")
        if type(container) is dict:
            for key in container:
                if type(key) is not str:
                    raise ProtocolError("invalid map key", type(key).__name__)
            items: Any = container.values()
        else:
            items = container
        for item in items:
            if type(item) is dict or type(item) is list:
                stack.append((item, depth + 1))
            elif type(item) is timestamp:
                raise ProtocolError("unsupported msgpack extension", "timestamp")


# How the bytes after each format byte are laid out, for extension_formats: a fixed number
# to skip, a big-endian length of n bytes then as many bytes, an ext (length of n bytes,
# type byte, data) or a fixext (type byte, n bytes of data).
_SKIP, _SIZED, _EXT, _FIXEXT = range(4)


def _layouts() -> dict[int, tuple[int, int]]:
    # fixint, fixmap, fixarray, negative fixint, nil, false, true: nothing follows the byte
    layouts = {b: (_SKIP, 0) for b in (*range(0xA0), *range(0xE0, 0x100), 0xC0, 0xC2, 0xC3)}
    layouts.update({b: (_SKIP, b & 0x1F) for b in range(0xA0, 0xC0)})  # fixstr
    numbers = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
    numbers |= {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
    headers = {0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}  # array and map 16/32: the items follow
    for kind, sizes in (
        (_SKIP, numbers | headers),
        (_SIZED, {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}),  # bin, str
        (_EXT, {0xC7: 1, 0xC8: 2, 0xC9: 4}),
        (_FIXEXT, {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}),
    ):
        layouts.update({b: (kind, size) for b, size in sizes.items()})
    return layouts


_LAYOUT = _layouts()


def extension_formats(message: bytes) -> list[int]:
    """The format byte of every extension of type 0 in ``message``, in order.

    msgpack is prefix-encoded, so one pass over the items in the order they are written
    visits them all: a container's header is followed by its items. Bounds-safe on any bytes
    (it stops at a byte that is no format); costs one step per item.
    """
    formats: list[int] = []
    position, end = 0, len(message)
    layout = _LAYOUT.get
    while position < end:
        wire_format = message[position]
        position += 1
        kind, size = layout(wire_format, (-1, 0))
        if kind == _SKIP:
            position += size
        elif kind == _SIZED:
            position += size + int.from_bytes(message[position : position + size], "big")
        elif kind == _EXT:
            length = int.from_bytes(message[position : position + size], "big")
            if message[position + size : position + size + 1] == b"\x00":
                formats.append(wire_format)
            position += size + 1 + length
        elif kind == _FIXEXT:
            if message[position : position + 1] == b"\x00":
                formats.append(wire_format)
            position += 1 + size
        else:  # 0xc1, which msgpack never uses
            break
    return formats
