"""Engine.IO v4 packets and long-polling payloads: the specification's examples, the hostile
inputs of section E of ``security.md``, round trips, fuzzing, and the open packet."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.properties import examples
from trio_sio._protocol import (
    RECORD_SEPARATOR,
    EnginePacket,
    EnginePacketType,
    OpenPacket,
    Outgoing,
    ProtocolError,
    StdlibJson,
    decode_open_packet,
    decode_packet,
    decode_payload,
    encode_open_packet,
    encode_payload,
)

JSON = StdlibJson()
MAX_PACKETS = 64
ONE_TO_FOUR = b"\x01\x02\x03\x04"
MESSAGE = EnginePacketType.MESSAGE


# --------------------------------------------------------------------------------------------
# the examples of the Engine.IO v4 specification (engine.io-protocol README)


def test_packet_types_are_the_specified_digits() -> None:
    assert {t.name: t.value for t in EnginePacketType} == {
        "OPEN": "0",
        "CLOSE": "1",
        "PING": "2",
        "PONG": "3",
        "MESSAGE": "4",
        "UPGRADE": "5",
        "NOOP": "6",
    }
    assert RECORD_SEPARATOR == "\x1e"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("4hello", EnginePacket(MESSAGE, "hello")),
        ("2", EnginePacket(EnginePacketType.PING)),
        ("3", EnginePacket(EnginePacketType.PONG)),
        ("2probe", EnginePacket(EnginePacketType.PING, "probe")),
        ("3probe", EnginePacket(EnginePacketType.PONG, "probe")),
        ("5", EnginePacket(EnginePacketType.UPGRADE)),
        ("6", EnginePacket(EnginePacketType.NOOP)),
        ("1", EnginePacket(EnginePacketType.CLOSE)),
        ("0", EnginePacket(EnginePacketType.OPEN)),
        ('42["hello"]', EnginePacket(MESSAGE, '2["hello"]')),
        ("4", EnginePacket(MESSAGE, "")),
        ("4€", EnginePacket(MESSAGE, "€")),
        # Over WebSocket, binary payloads are sent as they are, in binary frames.
        (ONE_TO_FOUR, EnginePacket(MESSAGE, ONE_TO_FOUR)),
        (b"", EnginePacket(MESSAGE, b"")),
        (bytearray(b"4x"), EnginePacket(MESSAGE, b"4x")),
        (memoryview(b"ab"), EnginePacket(MESSAGE, b"ab")),
    ],
)
def test_decode_websocket_frame(frame: str | bytes, expected: EnginePacket) -> None:
    packet = decode_packet(frame)
    assert packet == expected
    assert type(packet.data) is type(expected.data)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "4hello\x1e2\x1e4world",
            [
                EnginePacket(MESSAGE, "hello"),
                EnginePacket(EnginePacketType.PING),
                EnginePacket(MESSAGE, "world"),
            ],
        ),
        (
            "4hello\x1ebAQIDBA==",
            [EnginePacket(MESSAGE, "hello"), EnginePacket(MESSAGE, ONE_TO_FOUR)],
        ),
        (
            '42["hello"]\x1e42["world"]',
            [EnginePacket(MESSAGE, '2["hello"]'), EnginePacket(MESSAGE, '2["world"]')],
        ),
        ("40", [EnginePacket(MESSAGE, "0")]),
        ("b", [EnginePacket(MESSAGE, b"")]),
        ("4\x1e4", [EnginePacket(MESSAGE, ""), EnginePacket(MESSAGE, "")]),
        ("bAA==\x1e6", [EnginePacket(MESSAGE, b"\x00"), EnginePacket(EnginePacketType.NOOP)]),
    ],
)
def test_decode_polling_payload(body: str, expected: list[EnginePacket]) -> None:
    assert decode_payload(body, max_packets=MAX_PACKETS) == expected


def test_encode_polling_payload_spec_examples() -> None:
    assert (
        encode_payload(
            [
                Outgoing.message("hello"),
                Outgoing.control(EnginePacketType.PING),
                Outgoing.message("world"),
            ]
        )
        == "4hello\x1e2\x1e4world"
    )
    # A text packet and its binary attachment, as one Outgoing and as two.
    assert encode_payload([Outgoing.message("hello", ONE_TO_FOUR)]) == "4hello\x1ebAQIDBA=="
    assert (
        encode_payload([Outgoing.message("hello"), Outgoing.message(ONE_TO_FOUR)])
        == "4hello\x1ebAQIDBA=="
    )
    assert encode_payload([Outgoing.message('2["hello"]'), Outgoing.message('2["world"]')]) == (
        '42["hello"]\x1e42["world"]'
    )


def test_outgoing_frames_for_websocket() -> None:
    outgoing = Outgoing.message('51-["baz",{"_placeholder":true,"num":0}]', ONE_TO_FOUR)
    assert outgoing.frames == ('451-["baz",{"_placeholder":true,"num":0}]', ONE_TO_FOUR)
    assert outgoing.nbytes == len(outgoing.frames[0]) + 4
    assert Outgoing.control(EnginePacketType.PONG, "probe").frames == ("3probe",)
    assert Outgoing.control(EnginePacketType.NOOP).frames == ("6",)
    assert Outgoing.control(EnginePacketType.CLOSE).polling_pieces() == ("1",)


def test_polling_pieces_are_computed_once_and_shared() -> None:
    outgoing = Outgoing.message("x", b"\xff")
    first = outgoing.polling_pieces()
    assert first == ("4x", "b/w==")
    assert outgoing.polling_pieces() is first
    assert "Outgoing(" in repr(outgoing)


# --------------------------------------------------------------------------------------------
# hostile inputs: section E of security.md

HOSTILE_FRAMES = [
    pytest.param("", id="E1-empty"),
    pytest.param("7", id="E1-type-7"),
    pytest.param("9", id="E1-type-9"),
    pytest.param("999", id="S1-999"),
    pytest.param("x", id="E1-type-x"),
    pytest.param("b!", id="E1-invalid-base64"),
    pytest.param("bAQIDB", id="E1-truncated-base64"),
    pytest.param("-1", id="E1-minus"),
    pytest.param(" 4", id="E1-space"),
    pytest.param("\x1e", id="E1-separator"),
    pytest.param("\u0664hello", id="E1-arabic-indic-four"),
    pytest.param("４", id="E1-fullwidth-four"),  # noqa: RUF001
]


@pytest.mark.parametrize("frame", HOSTILE_FRAMES)
def test_hostile_frame_raises_protocol_error(frame: str) -> None:
    with pytest.raises(ProtocolError):
        decode_packet(frame)


HOSTILE_PAYLOADS = [
    pytest.param("", id="E1-empty-body"),
    pytest.param("\x1e", id="E1-only-separator"),
    pytest.param("4hello\x1e", id="E1-trailing-separator"),
    pytest.param("\x1e4hello", id="E1-leading-separator"),
    pytest.param("4a\x1e\x1e4b", id="E1-empty-between"),
    pytest.param("7", id="E1-type-7"),
    pytest.param("4hello\x1e9", id="E1-type-9-second"),
    pytest.param("x", id="E1-type-x"),
    pytest.param("b!!!", id="E1-base64-bad-characters"),
    pytest.param("bAQIDBA", id="E1-base64-missing-padding"),
    pytest.param("bAQIDBA=", id="E1-base64-short-padding"),
    pytest.param("bA", id="E1-base64-one-character"),
    pytest.param("bAQID BA==", id="E1-base64-space"),
    pytest.param("bAQ==ID", id="E1-base64-padding-inside"),
    pytest.param("bAQIDBA==\n", id="E1-base64-newline"),
    pytest.param("b€€€€", id="E1-base64-non-ascii"),
    pytest.param("b\ud800AAA", id="E1-base64-surrogate"),
    pytest.param("4hello\x1ebAQIDBA", id="E1-base64-second"),
]


@pytest.mark.parametrize("body", HOSTILE_PAYLOADS)
def test_hostile_payload_raises_protocol_error(body: str) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(body, max_packets=MAX_PACKETS)


def test_payload_packet_count_limit() -> None:
    """P6: a payload of many tiny packets is refused before it is split."""
    assert len(decode_payload("\x1e".join(["3"] * 5), max_packets=5)) == 5
    with pytest.raises(ProtocolError, match="too many packets"):
        decode_payload("\x1e".join(["3"] * 6), max_packets=5)
    with pytest.raises(ProtocolError, match="too many packets"):
        decode_payload("\x1e".join(["3"] * 100_000), max_packets=MAX_PACKETS)
    assert decode_payload("3", max_packets=1) == [EnginePacket(EnginePacketType.PONG)]


# --------------------------------------------------------------------------------------------
# round trips

#: Text an Engine.IO message can carry: anything but the record separator (the spec's
#: assumption; the Socket.IO encoder's JSON never produces a raw one).
PACKET_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=RECORD_SEPARATOR), max_size=30
)
PARTS = st.lists(PACKET_TEXT | st.binary(max_size=30), min_size=1, max_size=4)
CONTROL_TYPES = st.sampled_from(list(EnginePacketType))
OUTGOING = st.one_of(
    PARTS.map(lambda parts: Outgoing.message(*parts)),
    st.builds(Outgoing.control, CONTROL_TYPES, PACKET_TEXT),
)


def expected_packets(outgoing: Outgoing) -> list[EnginePacket]:
    return [
        EnginePacket(MESSAGE, frame)
        if isinstance(frame, bytes)
        else EnginePacket(EnginePacketType(frame[0]), frame[1:])
        for frame in outgoing.frames
    ]


@examples(300)
@given(st.lists(OUTGOING, min_size=1, max_size=6))
def test_polling_payload_round_trip(messages: list[Outgoing]) -> None:
    body = encode_payload(messages)
    body.encode("utf-8")
    expected = [packet for message in messages for packet in expected_packets(message)]
    assert decode_payload(body, max_packets=len(expected)) == expected
    assert body.count(RECORD_SEPARATOR) == len(expected) - 1
    if len(expected) > 1:
        with pytest.raises(ProtocolError, match="too many packets"):
            decode_payload(body, max_packets=len(expected) - 1)


@examples(200)
@given(OUTGOING)
def test_websocket_frames_round_trip(outgoing: Outgoing) -> None:
    decoded = [decode_packet(frame) for frame in outgoing.frames]
    assert decoded == expected_packets(outgoing)
    assert outgoing.nbytes == sum(len(frame) for frame in outgoing.frames)


@examples(200)
@given(PARTS)
def test_message_round_trip_keeps_types(parts: list[str | bytes]) -> None:
    """Each part comes back as one message packet: text as ``str``, binary as ``bytes``."""
    outgoing = Outgoing.message(*parts)
    packets = decode_payload(encode_payload([outgoing]), max_packets=len(parts))
    assert [packet.data for packet in packets] == parts
    assert [type(packet.data) for packet in packets] == [type(part) for part in parts]
    assert all(packet.type is MESSAGE for packet in packets)
    for piece, part in zip(outgoing.polling_pieces(), parts, strict=True):
        if isinstance(part, bytes):
            assert piece == "b" + base64.b64encode(part).decode("ascii")


# --------------------------------------------------------------------------------------------
# fuzzing: decode_packet and decode_payload return packets or raise ProtocolError

PAYLOAD_TOKENS = st.sampled_from(
    [*"0123456789b=+/ ", "\x1e", "4hello", "AQIDBA==", "bAQIDBA==", "probe", "€", "\x00"]
)
PAYLOAD_LIKE = st.lists(PAYLOAD_TOKENS | st.text(max_size=3), max_size=20).map("".join)


def check_packet(packet: Any) -> None:
    assert isinstance(packet, EnginePacket)
    assert isinstance(packet.type, EnginePacketType)
    if isinstance(packet.data, bytes):
        assert packet.type is MESSAGE
    else:
        assert isinstance(packet.data, str)


@examples(300)
@given(st.text() | PAYLOAD_LIKE | st.binary())
def test_fuzz_decode_packet(frame: str | bytes) -> None:
    try:
        packet = decode_packet(frame)
    except ProtocolError:
        assert isinstance(frame, str)
        return
    check_packet(packet)
    if isinstance(frame, str) and frame.startswith("b"):  # forceBase64 binary (A4)
        assert packet.data == base64.b64decode(frame[1:])
    elif isinstance(frame, str):
        assert packet.type.value + str(packet.data) == frame


def test_base64_text_frames_are_binary_messages() -> None:
    # engine.io-client's forceBase64 sends binary over WebSocket this way (issue 14, A4).
    assert decode_packet("bAQIDBA==") == EnginePacket(EnginePacketType.MESSAGE, b"\x01\x02\x03\x04")
    assert decode_packet("b") == EnginePacket(EnginePacketType.MESSAGE, b"")


@examples(300)
@given(st.text() | PAYLOAD_LIKE, st.integers(1, 8))
def test_fuzz_decode_payload(body: str, max_packets: int) -> None:
    try:
        packets = decode_payload(body, max_packets=max_packets)
    except ProtocolError:
        return
    assert 1 <= len(packets) <= max_packets
    for packet in packets:
        check_packet(packet)


@examples(100)
@given(st.lists(st.text(max_size=5) | PAYLOAD_LIKE, min_size=1, max_size=30))
def test_fuzz_many_small_frames(frames: list[str]) -> None:
    """Frame after frame: each on its own is a packet or a ProtocolError."""
    for frame in frames:
        with contextlib.suppress(ProtocolError):
            check_packet(decode_packet(frame))
        with contextlib.suppress(ProtocolError):
            for packet in decode_payload(frame, max_packets=4):
                check_packet(packet)


# --------------------------------------------------------------------------------------------
# the open packet


def test_open_packet_matches_the_spec_sample_session() -> None:
    packet = encode_open_packet(
        JSON,
        sid="lv_VI97HAXpY6yYWAAAC",
        upgrades=["websocket"],
        ping_interval=25,
        ping_timeout=5,
        max_payload=1000000,
    )
    assert packet == (
        '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
        '"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}'
    )


def test_open_packet_sends_integer_milliseconds() -> None:
    """The conformance suite's 0.3 s / 0.2 s must go out as 300 / 200, not 0 or 0.3."""
    packet = encode_open_packet(
        JSON, sid="s", upgrades=(), ping_interval=0.3, ping_timeout=0.2, max_payload=100
    )
    assert packet.startswith("0")
    handshake = json.loads(packet[1:])
    assert handshake == {
        "sid": "s",
        "upgrades": [],
        "pingInterval": 300,
        "pingTimeout": 200,
        "maxPayload": 100,
    }
    assert type(handshake["pingInterval"]) is int
    assert type(handshake["pingTimeout"]) is int


@examples(200)
@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_open_packet_milliseconds_survive_seconds(interval_ms: int, timeout_ms: int) -> None:
    packet = encode_open_packet(
        JSON,
        sid="s",
        upgrades=("websocket",),
        ping_interval=interval_ms / 1000,
        ping_timeout=timeout_ms / 1000,
        max_payload=1,
    )
    handshake = json.loads(packet[1:])
    assert handshake["pingInterval"] == interval_ms
    assert handshake["pingTimeout"] == timeout_ms
    assert f'"pingInterval":{interval_ms},' in packet


# --- the client's side of the open packet


@examples(200)
@given(
    st.text(min_size=1, max_size=64),
    st.lists(st.sampled_from(["websocket", "polling", "webtransport"]), max_size=3),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**31 - 1),
    st.integers(1, 10**12),
)
def test_decode_open_packet_reads_what_the_server_encodes(
    sid: str, upgrades: list[str], interval_ms: int, timeout_ms: int, max_payload: int
) -> None:
    packet = encode_open_packet(
        JSON,
        sid=sid,
        upgrades=upgrades,
        ping_interval=interval_ms / 1000,
        ping_timeout=timeout_ms / 1000,
        max_payload=max_payload,
    )
    assert decode_open_packet(JSON, packet[1:]) == OpenPacket(
        sid, tuple(upgrades), interval_ms / 1000, timeout_ms / 1000, max_payload
    )


@pytest.mark.parametrize(
    "data",
    [
        "[]",
        "null",
        '{"upgrades":[],"pingInterval":1,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"","upgrades":[],"pingInterval":1,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"' + "s" * 65 + '","pingInterval":1,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"s","upgrades":"websocket","pingInterval":1,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"s","upgrades":[1],"pingInterval":1,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"s","pingInterval":true,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"s","pingInterval":-1,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"s","pingInterval":1,"pingTimeout":1e300,"maxPayload":1}',
        '{"sid":"s","pingInterval":1,"pingTimeout":"1","maxPayload":1}',
        '{"sid":"s","pingInterval":1,"pingTimeout":1,"maxPayload":0}',
        '{"sid":"s","pingInterval":1,"pingTimeout":1,"maxPayload":1.5}',
        '{"sid":"s","pingInterval":1,"pingTimeout":1}',
    ],
)
def test_decode_open_packet_refuses_what_a_client_cannot_use(data: str) -> None:
    with pytest.raises(ProtocolError):
        decode_open_packet(JSON, data)


@examples(300)
@given(
    st.one_of(
        st.text(max_size=200),
        st.builds(
            json.dumps,
            st.dictionaries(
                st.sampled_from(
                    ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload", "x"]
                ),
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.integers(),
                    st.floats(),
                    st.text(max_size=5),
                    st.lists(st.text(max_size=5), max_size=2),
                ),
            ),
        ),
    )
)
def test_decode_open_packet_raises_only_protocol_error(data: str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_open_packet(JSON, data)
