"""The msgpack parser (npm's ``socket.io-msgpack-parser`` 3.x format): examples of the wire,
the bounds on hostile input, round-trip properties and decoder fuzzing.

What the npm package itself makes of these bytes is checked in tests/test_parsers.py, with
the package in Node.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.properties import (
    assert_same_packet,
    check_packet_shape,
    decoded_type,
    examples,
    packets,
)
from trio_sio._protocol import (
    DEFAULT_MAX_JSON_DEPTH,
    MAX_ACK_ID,
    RESERVED_EVENTS,
    MsgpackDecoder,
    MsgpackParser,
    PacketType,
    ProtocolError,
    SocketPacket,
)
from trio_sio._protocol.msgpack_parser import extension_formats

PARSER = MsgpackParser()
#: For round trips of arbitrary shapes, where depth is not what is being tested.
ROOMY = MsgpackParser(max_depth=200)
UTC = timezone.utc


def new_decoder(parser: MsgpackParser = PARSER) -> MsgpackDecoder:
    return parser.decoder(max_attachments=10, max_binary_bytes=1_000_000)


def decode(message: bytes, parser: MsgpackParser = PARSER) -> SocketPacket:
    return new_decoder(parser).receive_binary(message)


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def encode(packet: SocketPacket) -> bytes:
    (message,) = PARSER.encode(packet)
    assert isinstance(message, bytes)
    return message


# --------------------------------------------------------------------------------------------
# the wire


def test_a_packet_is_the_packet_object_as_one_map() -> None:
    packet = SocketPacket(PacketType.EVENT, "/chat", ["message", "hi", b"\x00\xff"], 7)
    assert msgpack.unpackb(encode(packet)) == {
        "type": 2,
        "nsp": "/chat",
        "data": ["message", "hi", b"\x00\xff"],
        "id": 7,
    }


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (
            SocketPacket(PacketType.CONNECT, "/", {"sid": "x"}),
            {"type": 0, "nsp": "/", "data": {"sid": "x"}},
        ),
        # No data key at all: the npm decoder refuses a DISCONNECT whose data is nil.
        (SocketPacket(PacketType.DISCONNECT, "/admin"), {"type": 1, "nsp": "/admin"}),
        (SocketPacket(PacketType.ACK, "/", [], 0), {"type": 3, "nsp": "/", "data": [], "id": 0}),
        (
            SocketPacket(PacketType.CONNECT_ERROR, "/", {"message": "no"}),
            {"type": 4, "nsp": "/", "data": {"message": "no"}},
        ),
        # There are no binary packet types: binary values are msgpack bin.
        (
            SocketPacket(PacketType.BINARY_EVENT, "/", ["x", b"1"]),
            {"type": 2, "nsp": "/", "data": ["x", b"1"]},
        ),
        (
            SocketPacket(PacketType.BINARY_ACK, "/", [b"1"], 3),
            {"type": 3, "nsp": "/", "data": [b"1"], "id": 3},
        ),
        (SocketPacket(PacketType.EVENT, "/", ["x"]), {"type": 2, "nsp": "/", "data": ["x"]}),
    ],
)
def test_encoding(packet: SocketPacket, expected: dict[str, Any]) -> None:
    raw = msgpack.unpackb(encode(packet))
    assert raw == expected
    assert all(type(value) is not bool for value in raw.values())


def test_bytes_likes_are_sent_as_bin_and_tuples_as_arrays() -> None:
    packet = SocketPacket(PacketType.EVENT, "/", ["x", (bytearray(b"a"), memoryview(b"b"))])
    assert encode(packet) == pack({"type": 2, "nsp": "/", "data": ["x", [b"a", b"b"]]})


def test_datetimes_are_sent_as_javascript_dates() -> None:
    # notepack.io: fixext 8 of type 0, signed big-endian milliseconds since the epoch.
    when = datetime(2026, 12, 6, 19, 0, 0, 123_000, tzinfo=UTC)
    message = encode(SocketPacket(PacketType.EVENT, "/", ["t", when]))
    milliseconds = int(when.timestamp() * 1000)
    assert b"\xd7\x00" + milliseconds.to_bytes(8, "big", signed=True) in message
    assert decode(message).data == ["t", when]
    before_1970 = datetime(1969, 7, 20, 20, 17, tzinfo=UTC)
    assert decode(encode(SocketPacket(PacketType.EVENT, "/", ["t", before_1970]))).data[1] == (
        before_1970
    )


@pytest.mark.parametrize(
    "data",
    [
        ["x", object()],
        ["x", {1, 2}],
        ["x", 2**64],
        ["x", -(2**63) - 1],
        ["x", "\ud800"],
        ["x", datetime(2026, 1, 1)],  # naive: no single instant
    ],
)
def test_unencodable_data_raises_a_type_error_naming_the_event(data: list[Any]) -> None:
    with pytest.raises(TypeError, match="event 'x' cannot be sent"):
        PARSER.encode(SocketPacket(PacketType.EVENT, "/", data))
    # The packer is shared by every packet: a failure leaves nothing behind.
    assert decode(encode(SocketPacket(PacketType.EVENT, "/", ["y"]))).data == ["y"]


def test_what_socket_io_client_sends_decodes() -> None:
    # socket.io-client adds an ``options`` key to events and sends ``data: undefined`` in a
    # CONNECT without auth (notepack.io writes undefined as fixext 1 of type 0).
    event = pack({"type": 2, "data": ["m", 1], "options": {"compress": True}, "nsp": "/"})
    assert decode(event) == SocketPacket(PacketType.EVENT, "/", ["m", 1])
    connect = b"\x83" + pack("type") + b"\x00" + pack("data") + b"\xd4\x00\x00"
    connect += pack("nsp") + pack("/")
    assert decode(connect) == SocketPacket(PacketType.CONNECT, "/", None)


def test_what_python_socketio_sends_decodes() -> None:
    # python-socketio's msgpack serializer writes data as nil when a packet has none.
    for packet_type in (PacketType.CONNECT, PacketType.DISCONNECT):
        message = pack({"type": packet_type.value, "data": None, "nsp": "/"})
        assert decode(message) == SocketPacket(packet_type, "/", None)


def ext8(data: bytes) -> bytes:
    """``data`` as an ext 8 of type 0: how notepack.io writes an ArrayBuffer in Node."""
    return b"\xc7" + bytes([len(data)]) + b"\x00" + data


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"\xd4\x00\x00", None),  # undefined
        (ext8(b"\x00"), b"\x00"),  # new Uint8Array([0]): not undefined
        (b"\xd7\x00" + (86_400_000).to_bytes(8, "big"), datetime(1970, 1, 2, tzinfo=UTC)),
        (ext8(b"\x00" * 7 + b"\x01"), b"\x00" * 7 + b"\x01"),  # Float64Array([x]): not a Date
        (ext8(b"abc"), b"abc"),
        (b"\xc8\x01\x00\x00" + b"z" * 256, b"z" * 256),  # ext 16
        (b"\xc9\x00\x00\x00\x02\x00" + b"hi", b"hi"),  # ext 32
    ],
)
def test_notepack_extensions(wire: bytes, value: Any) -> None:
    # In an array with other extensions, so that each is told apart by its own format.
    message = pack({"type": 2, "nsp": "/", "data": ["x", 0]})[:-1]  # drop the 0
    message = message.replace(b"\x92", b"\x94", 1) + wire + b"\xd4\x00\x00" + ext8(b"\x01")
    assert decode(message).data == ["x", value, None, b"\x01"]


# --------------------------------------------------------------------------------------------
# hostile input: every failure a ProtocolError


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


HOSTILE: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("truncated", pack({"type": 2, "nsp": "/", "data": ["x"]})[:-1]),
    ("trailing bytes", pack({"type": 2, "nsp": "/", "data": ["x"]}) + b"\x00"),
    ("never used format byte", b"\xc1"),
    ("not a map", pack([2, "/", ["x"]])),
    ("no type", pack({"nsp": "/", "data": ["x"]})),
    ("binary event type", pack({"type": 5, "nsp": "/", "data": ["x"]})),
    ("binary ack type", pack({"type": 6, "nsp": "/", "data": [], "id": 1})),
    ("type 7", pack({"type": 7, "nsp": "/"})),
    ("type true", pack({"type": True, "nsp": "/", "data": {}})),
    ("type as text", pack({"type": "2", "nsp": "/", "data": ["x"]})),
    ("type as float", pack({"type": 2.0, "nsp": "/", "data": ["x"]})),
    ("no namespace", pack({"type": 2, "data": ["x"]})),
    ("nil namespace", pack({"type": 0, "nsp": None})),
    ("namespace without slash", pack({"type": 0, "nsp": "chat"})),
    ("namespace as bin", pack({"type": 0, "nsp": b"/"})),
    ("namespace too long", pack({"type": 0, "nsp": "/" + "a" * 600})),
    ("event without data", pack({"type": 2, "nsp": "/"})),
    ("event data a map", pack({"type": 2, "nsp": "/", "data": {"x": 1}})),
    ("event data empty", pack({"type": 2, "nsp": "/", "data": []})),
    ("event name a number", pack({"type": 2, "nsp": "/", "data": [1]})),
    ("event name bin", pack({"type": 2, "nsp": "/", "data": [b"x"]})),
    ("connect data a list", pack({"type": 0, "nsp": "/", "data": []})),
    ("connect data a string", pack({"type": 0, "nsp": "/", "data": "x"})),
    ("disconnect with data", pack({"type": 1, "nsp": "/", "data": {}})),
    ("ack without id", pack({"type": 3, "nsp": "/", "data": []})),
    ("ack data not a list", pack({"type": 3, "nsp": "/", "data": "x", "id": 1})),
    ("negative ack id", pack({"type": 3, "nsp": "/", "data": [], "id": -1})),
    ("ack id too large", pack({"type": 3, "nsp": "/", "data": [], "id": MAX_ACK_ID + 1})),
    ("ack id a float", pack({"type": 3, "nsp": "/", "data": [], "id": 1.0})),
    ("ack id true", pack({"type": 3, "nsp": "/", "data": [], "id": True})),
    ("ack id text", pack({"type": 2, "nsp": "/", "data": ["x"], "id": "1"})),
    ("integer map key", pack({"type": 2, "nsp": "/", "data": ["x", {1: 2}]})),
    ("bin map key", pack({"type": 2, "nsp": "/", "data": ["x", {b"k": 2}]})),
    (
        "bin key in the packet map",
        b"\x83\xc4\x04type\x02" + pack("nsp") + pack("/") + pack("data") + pack(["x"]),
    ),
    ("array map key", b"\x81\x91\x00\x00"),
    ("nil map key", b"\x81\xc0\x00"),
    ("invalid utf-8", pack({"type": 2, "nsp": "/", "data": ["x"]}).replace(b"\xa1x", b"\xa1\xff")),
    ("too deep", pack({"type": 2, "nsp": "/", "data": ["x", deep(DEFAULT_MAX_JSON_DEPTH)]})),
    ("deeper than msgpack's own stack", b"\x91" * 100_000),
    ("array length past the message", b"\xdd\xff\xff\xff\xff"),
    ("string length past the message", b"\xdb\xff\xff\xff\xff"),
    ("extension type 1", pack({"type": 2, "nsp": "/", "data": ["x", msgpack.ExtType(1, b"")]})),
    (
        "timestamp extension",
        pack({"type": 2, "nsp": "/", "data": ["x", msgpack.Timestamp(0)]}),
    ),
    (
        "fixext 2 of type 0",
        pack({"type": 2, "nsp": "/", "data": ["x"]})[:-3] + b"\x92\xa1x\xd5\x00\x00\x00",
    ),
    (
        "date past year 9999",
        pack({"type": 2, "nsp": "/", "data": ["x"]})[:-3]
        + b"\x92\xa1x\xd7\x00"
        + (2**62).to_bytes(8, "big"),
    ),
]


@pytest.mark.parametrize(("case", "message"), HOSTILE, ids=[case for case, _ in HOSTILE])
def test_hostile_message_raises_protocol_error(case: str, message: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(message)


def test_hostile_cases_are_otherwise_valid() -> None:
    """Guards the catalogue: the packets the hostile cases were cut from decode."""
    assert decode(pack({"type": 2, "nsp": "/", "data": ["x"]})).data == ["x"]
    assert decode(pack({"type": 2, "nsp": "/", "data": ["x", deep(DEFAULT_MAX_JSON_DEPTH - 1)]}))
    limit = MsgpackParser(max_namespace_length=601)
    assert decode(pack({"type": 0, "nsp": "/" + "a" * 600}), limit).namespace == "/" + "a" * 600


def test_data_nests_as_deep_as_the_json_parser_allows() -> None:
    # JSON counts ``["x", [[...]]]`` from the data array; msgpack adds the packet map.
    shallow = MsgpackParser(max_depth=2)
    assert decode(pack({"type": 2, "nsp": "/", "data": ["x", []]}), shallow).data == ["x", []]
    with pytest.raises(ProtocolError, match="too deep"):
        decode(pack({"type": 2, "nsp": "/", "data": ["x", [[]]]}), shallow)
    with pytest.raises(ProtocolError, match="too deep"):
        decode(pack({"type": 2, "nsp": "/", "data": ["x"], "options": {"a": [[]]}}), shallow)


def test_text_messages_are_refused() -> None:
    with pytest.raises(ProtocolError, match="unexpected text"):
        new_decoder().receive_text('2["x"]')


@pytest.mark.parametrize("name", sorted(RESERVED_EVENTS))
def test_reserved_event_names_are_refused(name: str) -> None:
    with pytest.raises(ProtocolError):
        decode(pack({"type": 2, "nsp": "/", "data": [name]}))


def test_a_decoder_is_never_pending_and_recovers_after_an_error() -> None:
    decoder = new_decoder()
    with pytest.raises(ProtocolError):
        decoder.receive_binary(b"\xd4\x00")
    assert decoder.pending is None
    decoder.reset()
    assert decoder.receive_binary(
        b"\x83" + pack("type") + b"\x00" + pack("data") + b"\xd4\x00\x00" + pack("nsp") + pack("/")
    ) == SocketPacket(PacketType.CONNECT)


# --------------------------------------------------------------------------------------------
# properties

#: Text msgpack can carry: UTF-8, so no lone surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
EVENT_NAMES = TEXT.filter(lambda name: name not in RESERVED_EVENTS)
NAMESPACES = st.just("/") | TEXT.map(lambda name: "/" + name)
ACK_IDS = st.integers(min_value=0, max_value=MAX_ACK_ID)
DATES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda when: when.replace(microsecond=when.microsecond // 1000 * 1000))
#: What msgpack itself packs.
PLAIN_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | TEXT
    | st.binary(max_size=12)
    | st.binary(max_size=4).map(bytearray)
)


def values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.lists(children, max_size=3).map(tuple)
            | st.dictionaries(TEXT, children, max_size=4)
        ),
        max_leaves=20,
    )


#: What the parser sends: datetimes too, as JavaScript Dates.
VALUES = values(PLAIN_LEAVES | DATES)
ARGS = st.lists(VALUES, max_size=4)
PACKETS = packets(
    NAMESPACES,
    connect_data=st.dictionaries(TEXT, VALUES, max_size=4),
    event_data=st.builds(lambda name, args: [name, *args], EVENT_NAMES, ARGS),
    ack_data=ARGS,
    ack_ids=ACK_IDS,
    error_data=TEXT | st.dictionaries(TEXT, VALUES, max_size=4),
)


def normalized(value: Any) -> Any:
    """``value`` as it comes back: tuples become lists, bytes-likes ``bytes``."""
    if isinstance(value, list | tuple):
        return [normalized(item) for item in value]
    if isinstance(value, dict):
        return {key: normalized(item) for key, item in value.items()}
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def expected_after_decoding(packet: SocketPacket) -> SocketPacket:
    data = normalized(packet.data)
    return SocketPacket(decoded_type(packet.type), packet.namespace, data, packet.id)


@examples(300)
@given(PACKETS)
def test_round_trip(packet: SocketPacket) -> None:
    """Every packet shape comes back as it was sent: one binary message each."""
    messages = ROOMY.encode(packet)
    assert len(messages) == 1
    assert isinstance(messages[0], bytes)
    assert_same_packet(decode(messages[0], ROOMY), expected_after_decoding(packet))


def check_decoder_result(result: SocketPacket) -> None:
    """What any packet a decoder returns must look like (see PacketDecoder)."""
    check_packet_shape(result)
    # Whatever the decoder accepts, the encoder can send back, and it decodes the same.
    assert_same_packet(decode(encode(result), ROOMY), result)


def fuzz_decode(message: bytes) -> None:
    try:
        result = new_decoder().receive_binary(message)
    except ProtocolError:
        return
    check_decoder_result(result)


@examples(1000)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_protocol_error(message: bytes) -> None:
    fuzz_decode(message)


#: Anything msgpack can hold, hostile extensions and keys included.
ANY_MSGPACK = st.recursive(
    PLAIN_LEAVES
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=17))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**34 - 1)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(TEXT | st.binary(max_size=2) | st.integers(-2, 2), children, max_size=4)
    ),
    max_leaves=20,
)
FIELD_VALUES = ANY_MSGPACK | st.integers(-1, 8) | NAMESPACES | ACK_IDS
PACKET_MAPS = st.fixed_dictionaries(
    {},
    optional={"type": FIELD_VALUES, "nsp": FIELD_VALUES, "data": FIELD_VALUES, "id": FIELD_VALUES},
)


@examples(1000)
@given(PACKET_MAPS | ANY_MSGPACK)
def test_structured_garbage_raises_only_protocol_error(value: Any) -> None:
    fuzz_decode(pack(value))


@examples(300)
@given(PACKETS, st.data())
def test_damaged_packets_raise_only_protocol_error(
    packet: SocketPacket, data: st.DataObject
) -> None:
    message = bytearray(encode(packet))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(message) - 1))
        message[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    fuzz_decode(bytes(message[:cut]))


# Extensions of type 0 as notepack.io writes them: fixext where the size allows (undefined is
# a fixext 1, a Date a fixext 8), ext 8/16/32 for an ArrayBuffer of any size.
EXTENSIONS = st.tuples(
    st.sampled_from([0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xC7, 0xC8, 0xC9]), st.binary(max_size=20)
).map(lambda spec: _extension(*spec))


def _extension(wire_format: int, data: bytes) -> tuple[int, bytes]:
    fixed = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
    if wire_format in fixed:
        body = (data + b"\x00" * 16)[: fixed[wire_format]]
        return wire_format, bytes([wire_format, 0]) + body
    size = {0xC7: 1, 0xC8: 2, 0xC9: 4}[wire_format]
    return wire_format, bytes([wire_format]) + len(data).to_bytes(size, "big") + b"\x00" + data


@examples(200)
@given(
    st.lists(st.one_of(EXTENSIONS, values(PLAIN_LEAVES).map(lambda v: (None, pack(v)))), max_size=8)
)
def test_extension_formats_are_read_off_the_wire(items: list[tuple[int | None, bytes]]) -> None:
    message = b"\xdc" + len(items).to_bytes(2, "big") + b"".join(wire for _, wire in items)
    expected = [wire_format for wire_format, _ in items if wire_format is not None]
    assert extension_formats(message) == expected


@examples(300)
@given(st.binary(max_size=64))
def test_extension_formats_is_safe_on_any_bytes(message: bytes) -> None:
    formats = extension_formats(message)
    assert all(
        wire_format in (0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8) for wire_format in formats
    )


def test_milliseconds_are_the_precision_of_a_date() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=1500)
    decoded = decode(encode(SocketPacket(PacketType.EVENT, "/", ["t", when])))
    assert decoded.data[1] == datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
