"""Socket.IO v5 packets: the specification's examples, the hostile-input catalogue (sections S
and B of ``security.md``), encode/decode round-trip properties and decoder fuzzing.

The Socket.IO decoder sees Engine.IO message *payloads*: the catalogue's ``42{}`` (Engine.IO
message ``4`` carrying ``2{}``) is ``2{}`` here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import event, given
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
    Decoder,
    EnginePacketType,
    JsonParser,
    Outgoing,
    PacketType,
    ProtocolError,
    SocketPacket,
    StdlibJson,
    decode_packet,
    decode_payload,
)

JSON = StdlibJson()
encode_packet = JsonParser(JSON).encode
#: For round trips of arbitrary shapes, where depth is not what is being tested.
ROOMY_JSON = StdlibJson(max_depth=200)
PLACEHOLDER = '{"_placeholder":true,"num":%d}'
ONE_TO_FOUR = b"\x01\x02\x03\x04"


# --------------------------------------------------------------------------------------------
# helpers


def decode(parts: Sequence[str | bytes], decoder: Decoder | None = None) -> SocketPacket:
    """Feed one encoded packet (text, then attachments) to a decoder and return the packet.

    Checks on the way that nothing comes out before the last attachment.
    """
    if decoder is None:
        decoder = Decoder(JSON)
    text, *attachments = parts
    assert isinstance(text, str)
    packet = decoder.receive_text(text)
    for attachment in attachments:
        assert packet is None
        assert decoder.pending is not None
        assert isinstance(attachment, bytes)
        packet = decoder.receive_binary(attachment)
    assert packet is not None
    assert decoder.pending is None
    return packet


def normalized(value: Any) -> Any:
    """``value`` as it looks after a trip through the wire.

    Tuples become lists, bytes-likes ``bytes``, and strings are read as UTF-16 the way
    JavaScript reads them (two surrogate halves side by side are one character).
    """
    if isinstance(value, list | tuple):
        return [normalized(item) for item in value]
    if isinstance(value, dict):
        return {normalized(key): normalized(item) for key, item in value.items()}
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return value


def expected_after_decoding(packet: SocketPacket) -> SocketPacket:
    """The packet a decoder gives back for ``packet``: BINARY_* become EVENT/ACK."""
    data = normalized(packet.data)
    return SocketPacket(decoded_type(packet.type), packet.namespace, data, packet.id)


def binary_leaves(value: Any) -> Iterator[bytes]:
    """Every bytes-like value in ``value``, depth first, in the order the encoder numbers them."""
    if isinstance(value, bytes | bytearray | memoryview):
        yield bytes(value)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from binary_leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from binary_leaves(item)


def nesting_depth(value: Any) -> int:
    if isinstance(value, list | tuple):
        return 1 + max((nesting_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((nesting_depth(item) for item in value.values()), default=0)
    return 0


def check_decoder_result(decoder: Decoder, result: SocketPacket | None) -> None:
    """What any value a decoder returns must look like."""
    if result is None:
        # A binary packet waits for its attachments.
        assert decoder.pending is not None
        assert decoder.pending.type in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)
        return
    check_packet_shape(result)
    assert decoder.pending is None
    assert len(result.namespace) <= decoder.max_namespace_length
    # Whatever the decoder accepts, the encoder can send back, and it decodes the same.
    reencoded = encode_packet(result)
    text = reencoded[0]
    assert isinstance(text, str)
    text.encode("utf-8")
    again = Decoder(
        ROOMY_JSON,
        max_attachments=len(reencoded) - 1,
        max_namespace_length=decoder.max_namespace_length,
    )
    assert_same_packet(decode(reencoded, again), result)


# --------------------------------------------------------------------------------------------
# strategies

#: Any code point, lone surrogates included: JSON text can carry them as ``\\ud800`` escapes.
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.text(ANY_CHAR, max_size=8)
KEYS = TEXT.filter(lambda key: key != "_placeholder")
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
BINARY = st.binary(max_size=12) | st.binary(max_size=4).map(bytearray)


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.lists(children, max_size=3).map(tuple)
            | st.dictionaries(KEYS, children, max_size=4)
        ),
        max_leaves=10,
    )


PLAIN_VALUES = json_values(SCALARS)
VALUES_WITH_BYTES = json_values(SCALARS | BINARY)

#: Wrappers around a buffer that still fit the default depth limit, once the event's own
#: list and the placeholder object are counted.
MAX_WRAPPERS = DEFAULT_MAX_JSON_DEPTH - 2


@st.composite
def deeply_nested_bytes(draw: st.DrawFn, max_wrappers: int = MAX_WRAPPERS) -> Any:
    """A buffer wrapped in up to ``max_wrappers`` lists and objects, at any index or key."""
    value: Any = draw(BINARY)
    for _ in range(draw(st.integers(0, max_wrappers))):
        if draw(st.booleans()):
            siblings: list[Any] = draw(st.lists(SCALARS, max_size=2))
            siblings.insert(draw(st.integers(0, len(siblings))), value)
            value = siblings
        else:
            obj: dict[str, Any] = draw(st.dictionaries(KEYS, SCALARS, max_size=2))
            obj[draw(KEYS)] = value
            value = obj
    return value


EVENT_NAMES = (
    TEXT | st.sampled_from(["Connect", "connect ", "disconnect_", "message", "error"])
).filter(lambda name: name not in RESERVED_EVENTS)
ARGUMENTS = st.lists(VALUES_WITH_BYTES | deeply_nested_bytes(max_wrappers=6), max_size=4)
EVENT_DATA = st.builds(lambda name, args: [name, *args], EVENT_NAMES, ARGUMENTS)
NAMESPACES = st.just("/") | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=","), max_size=20
).map(lambda name: "/" + name)
ACK_IDS = st.integers(0, MAX_ACK_ID) | st.sampled_from([0, 1, MAX_ACK_ID])
PACKETS = packets(
    NAMESPACES,
    connect_data=st.dictionaries(KEYS, PLAIN_VALUES, max_size=4),
    event_data=EVENT_DATA,
    ack_data=st.lists(VALUES_WITH_BYTES | deeply_nested_bytes(max_wrappers=6), max_size=4),
    ack_ids=ACK_IDS,
    error_data=st.dictionaries(KEYS, PLAIN_VALUES, max_size=4) | TEXT,
)

#: Pieces that make random text look like Socket.IO packets, so fuzzing gets past the type digit.
TOKENS = st.sampled_from(
    [
        *"0123456789",
        "-", "/", ",", "[", "]", "{", "}", '"', ":", " ", ".", "e", "\\", "\\u", "\x1e",
        "true", "false", "null", "1e400", "NaN", '"num"', '"_placeholder"', "/admin,",
        '"connect"', '"x"', '["x"]', PLACEHOLDER % 0, PLACEHOLDER % 1, "9007199254740992",
    ]
)  # fmt: skip
PACKET_LIKE_TEXT = st.lists(TOKENS | st.text(max_size=3), max_size=24).map("".join)
#: Placeholders, good and bad.
PLACEHOLDERS = st.fixed_dictionaries(
    {"_placeholder": st.just(True) | SCALARS, "num": st.integers(-1, 4) | SCALARS}
)


def usually(draw: st.DrawFn, good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> str:
    """Nine times in ten ``good``, else ``bad``."""
    return draw(good if draw(st.integers(0, 9)) else bad)


@st.composite
def structured_text(draw: st.DrawFn) -> str:
    """Text that is mostly a well-formed packet, each field now and then wrong, so that fuzzing
    reaches the payload checks and the attachment bookkeeping, not only the first character."""
    packet_type = usually(draw, st.sampled_from("0123456"), st.sampled_from(["7", "x", "", " "]))
    binary = packet_type in ("5", "6")
    count = usually(
        draw,
        st.integers(0, 4).map(lambda n: f"{n}-") if binary else st.just(""),
        st.text("0123456789-.a", max_size=4),
    )
    namespace = draw(st.just("") | NAMESPACES.map(lambda name: name + ","))
    needs_id = packet_type in ("3", "6")
    ack_id = usually(
        draw,
        ACK_IDS.map(str) if needs_id else st.just("") | ACK_IDS.map(str),
        st.just("") | st.text("0123456789", min_size=16, max_size=20),
    )
    args = st.lists(PLAIN_VALUES | PLACEHOLDERS | st.lists(PLACEHOLDERS, max_size=2), max_size=3)
    good_payloads = {
        "0": st.just("") | st.dictionaries(KEYS, PLAIN_VALUES, max_size=3).map(JSON.dumps),
        "1": st.just(""),
        "2": st.builds(lambda name, rest: JSON.dumps([name, *rest]), EVENT_NAMES, args),
        "3": args.map(JSON.dumps),
        "4": (st.dictionaries(KEYS, PLAIN_VALUES, max_size=3) | TEXT).map(JSON.dumps),
    }
    good_payloads["5"] = good_payloads["2"]
    good_payloads["6"] = good_payloads["3"]
    bad_payloads = st.one_of(
        PLAIN_VALUES.map(JSON.dumps),
        st.sampled_from(sorted(RESERVED_EVENTS)).map(lambda name: JSON.dumps([name])),
        PACKET_LIKE_TEXT,
    )
    payload = usually(draw, good_payloads.get(packet_type, bad_payloads), bad_payloads)
    return packet_type + count + namespace + ack_id + payload


TEXTS = st.one_of(st.text(), PACKET_LIKE_TEXT, structured_text(), structured_text())
MESSAGES = st.lists(TEXTS | st.binary(max_size=8), max_size=16)


def feed(decoder: Decoder, message: str | bytes) -> SocketPacket | None:
    if isinstance(message, str):
        return decoder.receive_text(message)
    return decoder.receive_binary(message)


# --------------------------------------------------------------------------------------------
# the examples of the Socket.IO v5 specification (socket.io-protocol Readme)

SPEC_EXAMPLES: list[tuple[str, SocketPacket, tuple[str | bytes, ...]]] = [
    ("connect-main", SocketPacket(PacketType.CONNECT), ("0",)),
    (
        "connect-admin-sid",
        SocketPacket(PacketType.CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}),
        ('0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}',),
    ),
    (
        "connect-admin-auth",
        SocketPacket(PacketType.CONNECT, "/admin", {"token": "123"}),
        ('0/admin,{"token":"123"}',),
    ),
    (
        "connect-main-sid",
        SocketPacket(PacketType.CONNECT, "/", {"sid": "wZX3oN0bSVIhsaknAAAI"}),
        ('0{"sid":"wZX3oN0bSVIhsaknAAAI"}',),
    ),
    (
        "connect-error",
        SocketPacket(PacketType.CONNECT_ERROR, "/", {"message": "Not authorized"}),
        ('4{"message":"Not authorized"}',),
    ),
    ("event-main", SocketPacket(PacketType.EVENT, "/", ["foo"]), ('2["foo"]',)),
    ("event-admin", SocketPacket(PacketType.EVENT, "/admin", ["bar"]), ('2/admin,["bar"]',)),
    ("event-args", SocketPacket(PacketType.EVENT, "/", ["hey", "Jude"]), ('2["hey","Jude"]',)),
    (
        "binary-event",
        SocketPacket(PacketType.BINARY_EVENT, "/", ["baz", ONE_TO_FOUR]),
        ('51-["baz",{"_placeholder":true,"num":0}]', ONE_TO_FOUR),
    ),
    (
        "binary-event-two-attachments",
        SocketPacket(PacketType.BINARY_EVENT, "/admin", ["baz", b"\x01\x02", b"\x03\x04"]),
        (
            '52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
            b"\x01\x02",
            b"\x03\x04",
        ),
    ),
    ("event-ack-id", SocketPacket(PacketType.EVENT, "/", ["foo"], 12), ('212["foo"]',)),
    ("ack-empty", SocketPacket(PacketType.ACK, "/", [], 12), ("312[]",)),
    ("ack-admin", SocketPacket(PacketType.ACK, "/admin", ["bar"], 13), ('3/admin,13["bar"]',)),
    (
        "event-admin-ack-id",
        SocketPacket(PacketType.EVENT, "/admin", ["tellme"], 1),
        ('2/admin,1["tellme"]',),
    ),
    (
        "binary-ack",
        SocketPacket(PacketType.BINARY_ACK, "/", ["bar", ONE_TO_FOUR], 15),
        ('61-15["bar",{"_placeholder":true,"num":0}]', ONE_TO_FOUR),
    ),
    (
        "binary-ack-admin",
        SocketPacket(PacketType.BINARY_ACK, "/admin", [b"\xff"], 1),
        ('61-/admin,1[{"_placeholder":true,"num":0}]', b"\xff"),
    ),
    ("disconnect-main", SocketPacket(PacketType.DISCONNECT), ("1",)),
    ("disconnect-admin", SocketPacket(PacketType.DISCONNECT, "/admin"), ("1/admin,",)),
]


@pytest.mark.parametrize(
    ("packet", "wire"),
    [example[1:] for example in SPEC_EXAMPLES],
    ids=[e[0] for e in SPEC_EXAMPLES],
)
def test_spec_example_encodes(packet: SocketPacket, wire: tuple[str | bytes, ...]) -> None:
    assert encode_packet(packet) == wire


@pytest.mark.parametrize(
    ("packet", "wire"),
    [example[1:] for example in SPEC_EXAMPLES],
    ids=[e[0] for e in SPEC_EXAMPLES],
)
def test_spec_example_decodes(packet: SocketPacket, wire: tuple[str | bytes, ...]) -> None:
    assert_same_packet(decode(wire), expected_after_decoding(packet))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A namespace without the trailing comma runs to the end of the packet.
        ("0/admin", SocketPacket(PacketType.CONNECT, "/admin")),
        ("1/admin", SocketPacket(PacketType.DISCONNECT, "/admin")),
        ("0/admin,", SocketPacket(PacketType.CONNECT, "/admin")),
        # A binary packet declaring no attachment is complete at once, as its plain type.
        ('50-["x"]', SocketPacket(PacketType.EVENT, "/", ["x"])),
        ("60-7[]", SocketPacket(PacketType.ACK, "/", [], 7)),
        # CONNECT_ERROR may carry a plain string (v4 clients), ACK anything in its list.
        ('4"Not authorized"', SocketPacket(PacketType.CONNECT_ERROR, "/", "Not authorized")),
        ('31["connect",null]', SocketPacket(PacketType.ACK, "/", ["connect", None], 1)),
        # Only the event name is checked against the reserved names.
        ('2["x","connect"]', SocketPacket(PacketType.EVENT, "/", ["x", "connect"])),
        # Leading zeros in the ack id and JSON whitespace are tolerated, as by JSON.parse.
        ('2007["x"]', SocketPacket(PacketType.EVENT, "/", ["x"], 7)),
        ('2 ["x"]\n', SocketPacket(PacketType.EVENT, "/", ["x"])),
        (f'2{MAX_ACK_ID}["x"]', SocketPacket(PacketType.EVENT, "/", ["x"], MAX_ACK_ID)),
    ],
)
def test_decodes_edge_cases(text: str, expected: SocketPacket) -> None:
    assert_same_packet(decode((text,)), expected)


def test_sample_session_over_polling() -> None:
    """Request 5 of the specification's sample session, through both layers."""
    packets = decode_payload('42["hello"]\x1e42["world"]', max_packets=16)
    decoder = Decoder(JSON)
    events = []
    for packet in packets:
        assert packet.type is EnginePacketType.MESSAGE
        assert isinstance(packet.data, str)
        events.append(decoder.receive_text(packet.data))
    assert events == [
        SocketPacket(PacketType.EVENT, "/", ["hello"]),
        SocketPacket(PacketType.EVENT, "/", ["world"]),
    ]


def test_sample_session_over_websocket() -> None:
    """The WebSocket part of the sample session: what the server sends and receives."""
    decoder = Decoder(JSON)
    received = []
    for frame in ["40/admin,", '42/admin,1["tellme"]']:
        packet = decode_packet(frame)
        assert packet.type is EnginePacketType.MESSAGE
        assert isinstance(packet.data, str)
        received.append(decoder.receive_text(packet.data))
    assert received == [
        SocketPacket(PacketType.CONNECT, "/admin"),
        SocketPacket(PacketType.EVENT, "/admin", ["tellme"], 1),
    ]
    connect = Outgoing.message(
        *encode_packet(SocketPacket(PacketType.CONNECT, "/admin", {"sid": "abc"}))
    )
    assert connect.frames == ('40/admin,{"sid":"abc"}',)
    ack = Outgoing.message(*encode_packet(SocketPacket(PacketType.ACK, "/admin", [b"!"], 1)))
    assert ack.frames == ('461-/admin,1[{"_placeholder":true,"num":0}]', b"!")


# --------------------------------------------------------------------------------------------
# the hostile-input catalogue: sections S and B of security.md

HOSTILE_TEXT = [
    # S1: unknown packet types and invalid payload shapes
    pytest.param("abc", id="S1-4abc"),
    pytest.param("99", id="S1-999"),
    pytest.param("9", id="S1-type-9"),
    pytest.param("7[]", id="S1-type-7"),
    pytest.param("", id="S1-empty"),
    pytest.param("2{}", id="S1-42{}"),
    pytest.param("2[]", id="S1-42[]"),
    pytest.param('2[true,"foo"]', id="S1-42[true]"),
    pytest.param('2[null,"bar"]', id="S1-42[null]"),
    pytest.param('2[{"toString":"foo"}]', id="S1-42[toString]"),
    pytest.param('2[1,"foo"]', id="S1-42[number-name]"),
    pytest.param("2", id="S1-event-without-payload"),
    pytest.param('2"x"', id="S1-event-string"),
    pytest.param('2/admin,"invalid', id="S1-event-unterminated"),
    pytest.param("2/admin,{}", id="S1-event-object"),
    pytest.param('442["some","data"', id="S1-truncated-json"),
    pytest.param("0[]", id="S1-40[]"),
    pytest.param('0/admin,"invalid"', id="S1-connect-string"),
    pytest.param("0null", id="S1-connect-null"),
    pytest.param("0/admin,null", id="S1-connect-admin-null"),
    pytest.param("1null", id="S1-disconnect-null"),
    pytest.param("1/admin,{}", id="S1-41/admin,{}"),
    pytest.param("1[]", id="S1-disconnect-with-payload"),
    pytest.param("4", id="S1-44-missing"),
    pytest.param("4[]", id="S1-44-array"),
    pytest.param("4 1", id="S1-44-number"),
    pytest.param("4true", id="S1-44-true"),
    pytest.param("4null", id="S1-44-null"),
    pytest.param("3[]", id="S1-ack-without-id"),
    pytest.param("3/admin,{}", id="S1-ack-object"),
    pytest.param("31{}", id="S1-ack-object-with-id"),
    pytest.param('2["x",NaN]', id="S1-nan"),
    pytest.param('2["x",Infinity]', id="S1-infinity"),
    pytest.param('2["x",-Infinity]', id="S1-minus-infinity"),
    pytest.param('2["x"]\x1e2["y"]', id="S1-two-packets"),
    # S3: bad and oversized ack ids
    pytest.param('2abc["x"]', id="S3-42abc"),
    pytest.param(f'2{MAX_ACK_ID + 1}["x"]', id="S3-ack-id-2**53"),
    pytest.param(f'3{2**64}["x"]', id="S3-ack-id-2**64"),
    pytest.param("2" + "9" * 101 + '["x"]', id="S3-101-digits"),
    pytest.param("2" + "0" * 101 + '["x"]', id="S3-101-zeros"),
    pytest.param("2-1[]", id="S3-negative"),
    pytest.param('21.5["x"]', id="S3-fraction"),
    # S4: nesting that would exhaust a recursive parser
    pytest.param("2" + "[" * 50_000, id="S4-deep-open"),
    pytest.param("2" + "[" * 50_000 + "]" * 50_000, id="S4-deep-closed"),
    pytest.param('2["x",' + '{"a":' * 50_000, id="S4-deep-objects"),
    pytest.param(
        '2["x",' + "[" * DEFAULT_MAX_JSON_DEPTH + "]" * DEFAULT_MAX_JSON_DEPTH + "]",
        id="S4-one-over-limit",
    ),
    # S5: namespace longer than the limit, with and without the comma
    pytest.param("0/" + "a" * 10_000 + ",", id="S5-10kB-namespace"),
    pytest.param("0/" + "a" * 10_000, id="S5-10kB-namespace-no-comma"),
    pytest.param("2/" + "a" * 512 + ',["x"]', id="S5-513-characters"),
    # B1: malformed attachment counts
    pytest.param("5", id="B1-5"),
    pytest.param("51", id="B1-51"),
    pytest.param('51["x"]', id="B1-51-without-dash"),
    pytest.param("5a-", id="B1-5a-"),
    pytest.param('5a-["x"]', id="B1-5a-payload"),
    pytest.param('51.23-["x"]', id="B1-51.23-"),
    pytest.param('5-1-["x"]', id="B1--1-"),
    pytest.param('5-["x"]', id="B1-empty-count"),
    pytest.param('5 1-["x"]', id="B1-space"),
    pytest.param('5\u0661-["x"]', id="B1-arabic-indic-digit"),
    pytest.param("6", id="B1-6"),
    pytest.param('61-["x"]', id="B1-binary-ack-without-id"),
    pytest.param("5" + "1" * 11 + '-["x"]', id="B1-11-digit-count"),
    # B2: more attachments than allowed, refused on the header alone
    pytest.param('59999999999-["x"]', id="B2-59999999999-"),
    pytest.param('511-["x"]', id="B2-11"),
    pytest.param('6100-1["x"]', id="B2-binary-ack-100"),
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_text_raises_protocol_error(text: str) -> None:
    decoder = Decoder(JSON)
    with pytest.raises(ProtocolError):
        decoder.receive_text(text)
    assert decoder.pending is None


@pytest.mark.parametrize("name", sorted(RESERVED_EVENTS))
@pytest.mark.parametrize(
    "template",
    ['2["NAME"]', '2["NAME",{"x":1}]', '2/admin,7["NAME"]', '51-["NAME",' + PLACEHOLDER % 0 + "]"],
)
def test_reserved_event_names_refused(name: str, template: str) -> None:
    """S2: a client must not be able to fire the server's own lifecycle events."""
    with pytest.raises(ProtocolError, match="invalid payload"):
        Decoder(JSON).receive_text(template.replace("NAME", name))


def test_reserved_event_names_are_the_catalogued_ones() -> None:
    assert {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    } == RESERVED_EVENTS


def test_ack_id_bounds() -> None:
    """S3: the largest id JavaScript can hold exactly is the largest one accepted."""
    assert MAX_ACK_ID == 2**53 - 1
    assert decode((f'3{MAX_ACK_ID}["x"]',)).id == MAX_ACK_ID
    for too_large in (MAX_ACK_ID + 1, 10**16, 10**17, 10**100):
        with pytest.raises(ProtocolError, match="invalid ack id"):
            Decoder(JSON).receive_text(f'3{too_large}["x"]')


@pytest.mark.parametrize("limit", [1, 10, 512])
def test_namespace_length_limit(limit: int) -> None:
    """S5: the limit counts the leading slash and is inclusive, comma or no comma."""
    longest = "/" + "n" * (limit - 1)
    assert decode((f'2{longest},["x"]',), Decoder(JSON, max_namespace_length=limit)).namespace == (
        longest
    )
    assert decode((f"1{longest}",), Decoder(JSON, max_namespace_length=limit)).namespace == longest
    for text in (f'2{longest}n,["x"]', f"1{longest}n", f"1{longest}n,"):
        with pytest.raises(ProtocolError, match="namespace too long"):
            Decoder(JSON, max_namespace_length=limit).receive_text(text)


def test_default_namespace_limit() -> None:
    longest = "/" + "n" * 511
    assert decode((f"0{longest},",)).namespace == longest
    with pytest.raises(ProtocolError, match="namespace too long"):
        Decoder(JSON).receive_text(f"0{longest}n,")


def test_deep_json_raises_protocol_error_not_recursion_error() -> None:
    """S4: 50,000 nested arrays end in ProtocolError, whatever the JSON parser does inside."""
    for text in ("2" + "[" * 50_000, '2["x",' + "[" * 50_000 + "]" * 50_001):
        with pytest.raises(ProtocolError) as caught:
            Decoder(JSON).receive_text(text)
        assert caught.value.reason in ("invalid json", "json too deep")
        assert caught.value.__suppress_context__


def test_json_depth_limit_boundary() -> None:
    """The event's own list counts: DEFAULT_MAX_JSON_DEPTH levels pass, one more does not."""
    inner = DEFAULT_MAX_JSON_DEPTH - 1
    packet = decode(('2["x",' + "[" * inner + "]" * inner + "]",))
    assert nesting_depth(packet.data) == DEFAULT_MAX_JSON_DEPTH
    with pytest.raises(ProtocolError, match="json too deep"):
        Decoder(JSON).receive_text('2["x",' + "[" * (inner + 1) + "]" * (inner + 1) + "]")
    shallow = Decoder(StdlibJson(max_depth=2))
    assert shallow.receive_text('2["x",[]]') is not None
    with pytest.raises(ProtocolError, match="json too deep"):
        shallow.receive_text('2["x",[[]]]')


def test_large_but_flat_payloads_decode() -> None:
    """S4: size is the transport's limit; the decoder handles wide data in one pass."""
    wide = decode(('2["x",[' + ",".join(["0"] * 100_000) + "]]",))
    assert len(wide.data[1]) == 100_000
    key = "k" * 1_000_000
    assert decode(('2["x",{"' + key + '":1}]',)).data == ["x", {key: 1}]


# B2: attachment counts


@pytest.mark.parametrize("limit", [0, 1, 2, 10])
def test_attachment_count_limit(limit: int) -> None:
    """At most ``max_attachments`` are accepted; one more is refused on the text alone."""
    placeholders = ",".join(PLACEHOLDER % n for n in range(limit))
    accepted = Decoder(JSON, max_attachments=limit)
    head = f'5{limit}-["x"{"," if limit else ""}{placeholders}]'
    parts: list[str | bytes] = [head, *(bytes([n]) for n in range(limit))]
    assert decode(parts, accepted).data == ["x", *(bytes([n]) for n in range(limit))]

    refused = Decoder(JSON, max_attachments=limit)
    over = f'5{limit + 1}-["x",{",".join(PLACEHOLDER % n for n in range(limit + 1))}]'
    with pytest.raises(ProtocolError, match="too many attachments"):
        refused.receive_text(over)
    # Nothing is pending, so not a single attachment is taken in.
    assert refused.pending is None
    with pytest.raises(ProtocolError, match="unexpected binary"):
        refused.receive_binary(b"\x00")


def test_attachment_count_limit_default_is_ten() -> None:
    eleven = ",".join(PLACEHOLDER % n for n in range(11))
    with pytest.raises(ProtocolError, match="too many attachments"):
        Decoder(JSON).receive_text(f'511-["x",{eleven}]')
    ten = ",".join(PLACEHOLDER % n for n in range(10))
    packet = decode((f'510-["x",{ten}]', *(b"a" for _ in range(10))))
    assert packet.data == ["x", *(b"a" for _ in range(10))]


# B3: placeholders that do not point at a received attachment

BAD_PLACEHOLDERS = [
    pytest.param('{"_placeholder":true,"num":"0"}', id="num-string"),
    pytest.param('{"_placeholder":true,"num":"splice"}', id="num-splice"),
    pytest.param('{"_placeholder":true,"num":0.0}', id="num-float"),
    pytest.param('{"_placeholder":true,"num":0.5}', id="num-fraction"),
    pytest.param('{"_placeholder":true,"num":-1}', id="num-negative"),
    pytest.param('{"_placeholder":true,"num":1}', id="num-equal-count"),
    pytest.param('{"_placeholder":true,"num":99999999999999999999}', id="num-huge"),
    pytest.param('{"_placeholder":true}', id="num-missing"),
    pytest.param('{"_placeholder":true,"num":null}', id="num-null"),
    pytest.param('{"_placeholder":true,"num":true}', id="num-true"),
    pytest.param('{"_placeholder":true,"num":[0]}', id="num-list"),
]


@pytest.mark.parametrize("placeholder", BAD_PLACEHOLDERS)
@pytest.mark.parametrize("wrap", ["{}", "[{}]", '{{"deep":[[{}]]}}'])
def test_bad_placeholder_raises_and_does_not_wedge(placeholder: str, wrap: str) -> None:
    decoder = Decoder(JSON)
    assert decoder.receive_text('51-["x",' + wrap.format(placeholder) + "]") is None
    with pytest.raises(ProtocolError, match="illegal attachments"):
        decoder.receive_binary(b"data")
    # The failed packet is gone, nothing of it is kept, and the decoder works again.
    assert decoder.pending is None
    assert decode(('2["next"]',), decoder).data == ["next"]
    decoder.reset()
    assert decode(('51-["again",' + PLACEHOLDER % 0 + "]", b"!"), decoder).data == ["again", b"!"]


@pytest.mark.parametrize(
    "not_a_placeholder",
    [
        '{"_placeholder":1,"num":0}',
        '{"_placeholder":"true","num":0}',
        '{"_placeholder":false,"num":0}',
        '{"_placeholder":null,"num":0}',
    ],
)
def test_placeholder_flag_must_be_true(not_a_placeholder: str) -> None:
    """Only ``"_placeholder": true`` marks a placeholder, as in the reference parser; anything
    else is ordinary data. Nothing is wedged either way."""
    decoder = Decoder(JSON)
    assert decoder.receive_text('51-["x",' + not_a_placeholder + "]") is None
    packet = decoder.receive_binary(b"unused")
    assert packet is not None
    assert packet.data == ["x", JSON.loads(not_a_placeholder)]
    assert decoder.pending is None


@pytest.mark.parametrize("num", ["true", "false", "1.0", "0.0", '"1"', "[1]", '{"n":1}'])
def test_placeholder_num_must_be_an_integer_even_when_in_range(num: str) -> None:
    """``true`` is 1 and ``1.0`` equals 1 in Python: neither may select the second buffer."""
    decoder = Decoder(JSON)
    text = '52-["x",{"_placeholder":true,"num":' + num + "}," + PLACEHOLDER % 0 + "]"
    assert decoder.receive_text(text) is None
    assert decoder.receive_binary(b"0") is None
    with pytest.raises(ProtocolError, match="illegal attachments"):
        decoder.receive_binary(b"1")
    assert decoder.pending is None


def test_placeholder_may_be_reused_and_attachments_left_unused() -> None:
    packet = decode(('52-["x",' + PLACEHOLDER % 1 + "," + PLACEHOLDER % 1 + "]", b"0", b"1"))
    assert packet.data == ["x", b"1", b"1"]


# B4, B5, B7: attachments out of order or too large


def test_text_while_attachments_pending_raises() -> None:
    """B4: declared two, sent one, then a text packet."""
    decoder = Decoder(JSON)
    assert decoder.receive_text('52-["x",' + PLACEHOLDER % 0 + "," + PLACEHOLDER % 1 + "]") is None
    assert decoder.receive_binary(b"first") is None
    with pytest.raises(ProtocolError, match="unexpected text"):
        decoder.receive_text('2["hello"]')
    # The caller closes the session; a decoder that is reset is usable again.
    decoder.reset()
    assert decoder.pending is None
    assert decode(('2["hello"]',), decoder).data == ["hello"]


def test_binary_without_pending_packet_raises() -> None:
    """B5: an attachment nobody announced."""
    decoder = Decoder(JSON)
    with pytest.raises(ProtocolError, match="unexpected binary"):
        decoder.receive_binary(b"world")
    assert decode(('2["x"]',), decoder).data == ["x"]
    with pytest.raises(ProtocolError, match="unexpected binary"):
        decoder.receive_binary(b"after a complete packet")


def test_binary_after_zero_attachment_binary_packet_raises() -> None:
    decoder = Decoder(JSON)
    assert decoder.receive_text('50-["x"]') == SocketPacket(PacketType.EVENT, "/", ["x"])
    with pytest.raises(ProtocolError, match="unexpected binary"):
        decoder.receive_binary(b"extra")


def test_attachment_bytes_limit() -> None:
    """B7: declared attachments adding up to more than ``max_binary_bytes``."""
    decoder = Decoder(JSON, max_binary_bytes=10)
    decoder.receive_text('53-["x",' + ",".join(PLACEHOLDER % n for n in range(3)) + "]")
    assert decoder.receive_binary(b"12345") is None
    assert decoder.receive_binary(b"") is None
    with pytest.raises(ProtocolError, match="attachments too large"):
        decoder.receive_binary(b"123456")
    assert decoder.pending is None
    with pytest.raises(ProtocolError, match="unexpected binary"):
        decoder.receive_binary(b"1")
    # Exactly at the limit is fine.
    packet = decode(('51-["x",' + PLACEHOLDER % 0 + "]", b"0123456789"), decoder)
    assert packet.data == ["x", b"0123456789"]


def test_pending_describes_the_packet_before_anything_is_buffered() -> None:
    decoder = Decoder(JSON)
    assert decoder.receive_text('61-/chat,4["x",' + PLACEHOLDER % 0 + "]") is None
    assert decoder.pending == SocketPacket(
        PacketType.BINARY_ACK, "/chat", ["x", {"_placeholder": True, "num": 0}], 4
    )
    assert decoder.receive_binary(b"!") == SocketPacket(PacketType.ACK, "/chat", ["x", b"!"], 4)


# --------------------------------------------------------------------------------------------
# encoding


@pytest.mark.parametrize("packet_type", [PacketType.CONNECT, PacketType.CONNECT_ERROR])
def test_binary_refused_where_the_protocol_has_no_place_for_it(packet_type: PacketType) -> None:
    with pytest.raises(TypeError):
        encode_packet(SocketPacket(packet_type, "/", {"x": b"\x00"}))


@pytest.mark.parametrize(
    "data", [["x", {1, 2}], ["x", object()], ["x", float("nan")], ["x", {b"key": 1}]]
)
def test_unencodable_data_raises(data: list[Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_packet(SocketPacket(PacketType.EVENT, "/", data))


def test_encoding_does_not_modify_the_packet() -> None:
    data = ["x", (b"a", {"b": bytearray(b"b")})]
    packet = SocketPacket(PacketType.EVENT, "/", data)
    first = encode_packet(packet)
    assert data == ["x", (b"a", {"b": bytearray(b"b")})]
    assert encode_packet(packet) == first
    assert first == ('52-["x",[' + PLACEHOLDER % 0 + ',{"b":' + PLACEHOLDER % 1 + "}]]", b"a", b"b")
    assert all(type(part) is bytes for part in first[1:])


# --------------------------------------------------------------------------------------------
# round-trip properties


@examples(300)
@given(PACKETS)
def test_round_trip(packet: SocketPacket) -> None:
    """The encoder, then the decoder, gives the packet back, attachments and all."""
    parts = encode_packet(packet)
    text, *attachments = parts
    assert isinstance(text, str)
    text.encode("utf-8")  # the wire is UTF-8: the encoded text must be representable
    leaves = list(binary_leaves(packet.data))
    assert attachments == leaves
    if leaves:
        assert packet.type in (
            PacketType.EVENT,
            PacketType.BINARY_EVENT,
            PacketType.ACK,
            PacketType.BINARY_ACK,
        )
        binary_type = 5 if packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT) else 6
        assert text.startswith(f"{binary_type}{len(leaves)}-")
    else:
        assert text[0] == str(expected_after_decoding(packet).type.value)
    decoder = Decoder(ROOMY_JSON, max_attachments=len(leaves))
    assert_same_packet(decode(parts, decoder), expected_after_decoding(packet))


@examples(100)
@given(
    st.sampled_from([PacketType.EVENT, PacketType.ACK, PacketType.BINARY_EVENT]),
    EVENT_NAMES,
    deeply_nested_bytes(),
    NAMESPACES,
    ACK_IDS,
)
def test_round_trip_bytes_at_any_depth_within_default_limits(
    packet_type: PacketType, name: str, nested: Any, namespace: str, ack_id: int
) -> None:
    data = [name, nested] if packet_type is not PacketType.ACK else [nested]
    assert nesting_depth(normalized(data)) <= DEFAULT_MAX_JSON_DEPTH - 1
    packet = SocketPacket(packet_type, namespace, data, ack_id)
    parts = encode_packet(packet)
    assert len(parts) == 2
    assert_same_packet(decode(parts), expected_after_decoding(packet))


def test_bytes_one_level_too_deep_is_refused_by_the_default_limits() -> None:
    value: Any = b"deep"
    for _ in range(MAX_WRAPPERS + 1):
        value = [value]
    parts = encode_packet(SocketPacket(PacketType.EVENT, "/", ["x", value]))
    with pytest.raises(ProtocolError, match="json too deep"):
        Decoder(JSON).receive_text(parts[0])  # type: ignore[arg-type]


@examples(100)
@given(PACKETS, MESSAGES)
def test_decoder_recovers_after_reset(packet: SocketPacket, noise: list[str | bytes]) -> None:
    """Whatever came before, a reset decoder decodes the next packet correctly."""
    parts = encode_packet(packet)
    decoder = Decoder(ROOMY_JSON, max_attachments=len(parts) - 1)
    for message in noise:
        with contextlib.suppress(ProtocolError):
            feed(decoder, message)
    decoder.reset()
    assert decoder.pending is None
    assert_same_packet(decode(parts, decoder), expected_after_decoding(packet))


@examples(60)
@given(st.lists(PACKETS, min_size=1, max_size=8))
def test_many_packets_through_one_decoder(packets: list[SocketPacket]) -> None:
    decoder = Decoder(ROOMY_JSON, max_attachments=100)
    for packet in packets:
        assert_same_packet(decode(encode_packet(packet), decoder), expected_after_decoding(packet))


# --------------------------------------------------------------------------------------------
# fuzzing: decoders return packets or None, or raise ProtocolError, and nothing else


@examples(400)
@given(TEXTS)
def test_fuzz_text(text: str) -> None:
    decoder = Decoder(JSON, max_attachments=3)
    try:
        result = decoder.receive_text(text)
    except ProtocolError as error:
        # (Shown by --hypothesis-show-statistics: how far the fuzzer gets into the grammar.)
        event(f"ProtocolError: {error.reason}")
        assert decoder.pending is None
        return
    event("pending" if result is None else f"decoded {result.type.name}")
    check_decoder_result(decoder, result)


@examples(100)
@given(st.binary())
def test_fuzz_binary_with_nothing_pending(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="unexpected binary"):
        Decoder(JSON).receive_binary(data)


@examples(200)
@given(MESSAGES, st.booleans())
def test_fuzz_interleaved_text_and_binary(messages: list[str | bytes], reset: bool) -> None:
    """Many messages into one decoder, text and binary mixed, with or without a reset after
    each error (a decoder left alone after an error must still only raise ProtocolError)."""
    decoder = Decoder(JSON, max_attachments=3, max_binary_bytes=32)
    for message in messages:
        try:
            result = feed(decoder, message)
        except ProtocolError:
            if reset:
                decoder.reset()
            continue
        check_decoder_result(decoder, result)


@examples(100)
@given(PACKETS, st.data())
def test_fuzz_mutated_packets(packet: SocketPacket, data: st.DataObject) -> None:
    """Valid packets with a few characters deleted, inserted or replaced."""
    text, *attachments = encode_packet(packet)
    assert isinstance(text, str)
    chars = list(text)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(chars)))
        action = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        if action == "insert" or not chars[position:]:
            chars.insert(position, data.draw(TOKENS | st.characters()))
        elif action == "delete":
            del chars[position]
        else:
            chars[position] = data.draw(TOKENS | st.characters())
    decoder = Decoder(ROOMY_JSON, max_attachments=3)
    try:
        for message in ["".join(chars), *attachments]:
            check_decoder_result(decoder, feed(decoder, message))
    except ProtocolError:
        pass


@examples(100)
@given(PACKETS)
def test_fuzz_every_prefix_and_every_character(packet: SocketPacket) -> None:
    """Each prefix of a valid packet, and each of its characters as a message of its own, fed
    to one decoder: truncated input is either a packet or a ProtocolError."""
    text = encode_packet(packet)[0]
    assert isinstance(text, str)
    decoder = Decoder(ROOMY_JSON, max_attachments=100)
    pieces = [text[:end] for end in range(min(len(text), 200) + 1)] + list(text[:200])
    for piece in pieces:
        try:
            result = decoder.receive_text(piece)
        except ProtocolError:
            continue
        check_decoder_result(decoder, result)
        if result is None:
            decoder.reset()
