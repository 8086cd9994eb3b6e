"""The RFC 6455 server-side codec (``trio_sio._protocol.websocket``), checked against wsproto.

* Differential: any frame sequence, fed in any chunking, is decoded by our decoder into exactly
  the messages and control frames wsproto's server-side ``FrameProtocol`` yields, and ours
  refuses it exactly when wsproto does (wsproto has no message size limit, so the differential
  runs with a limit no example reaches; the limit has its own properties).
* Fuzz: arbitrary bytes only ever raise ``WebSocketError`` (a ``ProtocolError``).
* Our encoder's frames decode in a wsproto client to what was sent; permessage-deflate both
  ways against wsproto's extension, and its decompression bomb bound (W2 of security.md).
"""

from __future__ import annotations

import functools
import os
import tracemalloc
import zlib
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from support.properties import examples as scaled_examples
from trio_sio._protocol import ProtocolError
from trio_sio._protocol.websocket import (
    Close,
    Ping,
    Pong,
    WebSocketDecoder,
    WebSocketError,
    WebSocketEvent,
    accept_key,
    encode_close,
    encode_frame,
    encode_messages,
    negotiate_deflate,
)

#: Larger than any generated stream: the differential compares protocol rules, not the limit.
NO_LIMIT = 1 << 30
#: The frame streams drawn here may be larger than Hypothesis likes its examples.
examples = functools.partial(scaled_examples, also_suppress=[HealthCheck.data_too_large])


# --------------------------------------------------------------------------------------------
# building client frames by hand


def xor(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0  # the three RSV bits, RSV1 most significant
    masked: bool = True
    mask: bytes = b"\x12\x34\x56\x78"
    length_form: str | None = None  # "7", "16" or "64"; None: the minimal one

    def encode(self) -> bytes:
        first = (0x80 if self.fin else 0) | (self.rsv << 4) | self.opcode
        n = len(self.payload)
        form = self.length_form or ("7" if n < 126 else "16" if n < 65536 else "64")
        mask_bit = 0x80 if self.masked else 0
        if form == "7" and n < 126:
            header = bytes((first, mask_bit | n))
        elif form in ("7", "16") and n < 65536:
            header = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
        if not self.masked:
            return header + self.payload
        return header + self.mask + xor(self.payload, self.mask)


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else code.to_bytes(2, "big") + reason


# --------------------------------------------------------------------------------------------
# the two decoders, reduced to (events, refused)


def run_ours(
    chunks: list[bytes], max_size: int = NO_LIMIT
) -> tuple[list[WebSocketEvent], WebSocketError | None]:
    decoder = WebSocketDecoder(max_message_size=max_size)
    events: list[WebSocketEvent] = []
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (event := decoder.next_event()) is not None:
                events.append(event)
                if isinstance(event, Close):
                    return events, None
    except WebSocketError as exc:
        return events, exc
    return events, None


def run_wsproto(chunks: list[bytes]) -> tuple[list[WebSocketEvent], bool]:
    protocol = FrameProtocol(client=False, extensions=[])
    events: list[WebSocketEvent] = []
    parts: list[Any] = []
    try:
        for chunk in chunks:
            protocol.receive_bytes(chunk)
            for frame in protocol.received_frames():
                if frame.opcode is Opcode.PING:
                    events.append(Ping(bytes(frame.payload)))
                elif frame.opcode is Opcode.PONG:
                    events.append(Pong(bytes(frame.payload)))
                elif frame.opcode is Opcode.CLOSE:
                    code, reason = frame.payload
                    events.append(Close(int(code), reason))
                    return events, False
                else:
                    parts.append(frame.payload)
                    if frame.message_finished:
                        if frame.opcode is Opcode.TEXT:
                            events.append("".join(parts))
                        else:
                            events.append(b"".join(bytes(p) for p in parts))
                        parts = []
    except ParseFailed:
        return events, True
    return events, False


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks = []
    position = 0
    for size in sizes:
        if position >= len(data):
            break
        chunks.append(data[position : position + size])
        position += size
    if position < len(data):
        chunks.append(data[position:])
    return chunks


# --------------------------------------------------------------------------------------------
# strategies

OPCODES = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA]
masks = st.binary(min_size=4, max_size=4)
text_bytes = st.text(max_size=40).map(lambda s: s.encode("utf-8"))
invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xc3", b"a\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80abc"]
)
close_codes = st.one_of(
    st.sampled_from([1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1014, 1015]),
    st.sampled_from([999, 2999, 3000, 3999, 4000, 4999, 5000]),
    st.integers(0, 65535),
)


@st.composite
def payloads(draw: st.DrawFn, opcode: int) -> bytes:
    if opcode == 0x8:
        if draw(st.integers(0, 9)) == 0:
            return draw(st.binary(max_size=3))
        reason = draw(st.one_of(text_bytes, invalid_utf8))
        return close_payload(draw(close_codes), reason[:100])
    if opcode in (0x9, 0xA):
        return draw(st.binary(max_size=20))
    return draw(
        st.one_of(
            text_bytes,
            text_bytes,
            st.binary(max_size=40),
            invalid_utf8,
            st.binary(min_size=126, max_size=300),
        )
    )


@st.composite
def any_frame(draw: st.DrawFn) -> Frame:
    """A frame that is mostly valid on its own; sequences of them are often not."""
    opcode = draw(st.sampled_from(OPCODES) | st.integers(0, 15))
    payload = draw(payloads(opcode))
    return Frame(
        opcode=opcode,
        payload=payload,
        fin=draw(st.booleans()) if opcode < 8 else draw(st.integers(0, 15)) != 0,
        rsv=0 if draw(st.integers(0, 15)) else draw(st.integers(1, 7)),
        masked=draw(st.integers(0, 20)) != 0,
        mask=draw(masks),
        length_form=None if draw(st.integers(0, 15)) else draw(st.sampled_from(["16", "64"])),
    )


@st.composite
def message_frames(draw: st.DrawFn) -> list[Frame]:
    """One message, cut into fragments (text possibly inside a character), with control
    frames in between."""
    text = draw(st.booleans())
    data = draw(text_bytes if text else st.binary(max_size=80))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    frames = []
    for index, piece in enumerate(pieces):
        opcode = (0x1 if text else 0x2) if index == 0 else 0x0
        frames.append(Frame(opcode, piece, fin=index == len(pieces) - 1, mask=draw(masks)))
        if draw(st.integers(0, 5)) == 0:
            control = draw(st.sampled_from([0x9, 0xA]))
            frames.append(Frame(control, draw(st.binary(max_size=10)), mask=draw(masks)))
    return frames


@st.composite
def plausible_streams(draw: st.DrawFn) -> list[Frame]:
    """Valid messages, now and then a broken or arbitrary frame, maybe a close at the end."""
    frames: list[Frame] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 6)) == 0:
            frames.append(draw(any_frame()))
        else:
            frames.extend(draw(message_frames()))
    if draw(st.booleans()):
        frames.append(Frame(0x8, draw(payloads(0x8)), mask=draw(masks)))
    return frames


chunk_sizes = st.lists(st.integers(1, 64), max_size=50)


# --------------------------------------------------------------------------------------------
# the differential properties


@examples(300)
@given(frames=plausible_streams(), sizes=chunk_sizes)
def test_plausible_streams_decode_as_wsproto_does(frames: list[Frame], sizes: list[int]) -> None:
    data = b"".join(frame.encode() for frame in frames)
    ours, error = run_ours(split(data, sizes))
    theirs, refused = run_wsproto([data])
    assert ours == theirs
    assert (error is not None) == refused, error


@examples(300)
@given(frames=st.lists(any_frame(), max_size=8), sizes=chunk_sizes)
def test_arbitrary_frame_sequences_decode_as_wsproto_does(
    frames: list[Frame], sizes: list[int]
) -> None:
    data = b"".join(frame.encode() for frame in frames)
    ours, error = run_ours(split(data, sizes))
    theirs, refused = run_wsproto(split(data, sizes))
    assert ours == theirs
    assert (error is not None) == refused, error


@examples(100)
@given(frames=plausible_streams())
def test_byte_at_a_time_is_the_same_as_all_at_once(frames: list[Frame]) -> None:
    data = b"".join(frame.encode() for frame in frames)
    whole = run_ours([data])
    one_by_one = run_ours([data[i : i + 1] for i in range(len(data))])
    assert whole[0] == one_by_one[0]
    assert (whole[1] is None) == (one_by_one[1] is None)


@examples(200)
@given(data=st.binary(max_size=600), sizes=chunk_sizes, deflate=st.booleans())
def test_fuzz_only_websocket_errors(data: bytes, sizes: list[int], deflate: bool) -> None:
    """Any bytes: events or WebSocketError (a ProtocolError with a close code), nothing else."""
    extension = negotiate_deflate("permessage-deflate") if deflate else None
    decoder = WebSocketDecoder(max_message_size=200, deflate=extension)
    error: WebSocketError | None = None
    try:
        for chunk in split(data, sizes):
            decoder.receive_data(chunk)
            while decoder.next_event() is not None:
                pass
    except WebSocketError as exc:
        error = exc
    if error is not None:
        assert isinstance(error, ProtocolError)
        assert error.close_code in (1002, 1007, 1009)
        with pytest.raises(WebSocketError):
            decoder.next_event()  # a failed decoder stays failed
    assert decoder.buffered <= len(data)


@examples(200)
@given(streams=st.lists(message_frames(), max_size=6), limit=st.integers(0, 120))
def test_size_limit_refuses_exactly_the_messages_over_it(
    streams: list[list[Frame]], limit: int
) -> None:
    """A message is refused (1009) as soon as its fragments so far exceed the limit, and only
    then; everything before it is delivered."""
    expected: list[WebSocketEvent] = []
    too_big = False
    for frames in streams:
        size = 0
        data = b""
        for frame in frames:
            if frame.opcode >= 8:
                expected.append(Ping(frame.payload) if frame.opcode == 9 else Pong(frame.payload))
                continue
            size += len(frame.payload)
            if size > limit:
                too_big = True
                break
            data += frame.payload
            if frame.fin:
                expected.append(data.decode() if frames[0].opcode == 1 else data)
        if too_big:
            break
    stream = b"".join(f.encode() for frames in streams for f in frames)
    events, error = run_ours([stream], max_size=limit)
    assert events == expected
    if too_big:
        assert error is not None
        assert error.close_code == 1009
    else:
        assert error is None


# --------------------------------------------------------------------------------------------
# examples and edge cases


def decode_all(data: bytes, **kwargs: Any) -> list[WebSocketEvent]:
    decoder = WebSocketDecoder(max_message_size=kwargs.pop("max_size", NO_LIMIT), **kwargs)
    decoder.receive_data(data)
    events = []
    while (event := decoder.next_event()) is not None:
        events.append(event)
    return events


def test_rfc_6455_examples() -> None:
    # §5.7: a masked "Hello", a fragmented unmasked one (refused: clients must mask), a ping.
    assert decode_all(bytes.fromhex("818537fa213d7f9f4d5158")) == ["Hello"]
    with pytest.raises(WebSocketError, match="unmasked"):
        decode_all(bytes.fromhex("010348656c80026c6f"))
    masked_ping = Frame(0x9, b"Hello").encode()
    assert decode_all(masked_ping) == [Ping(b"Hello")]


def test_accept_key_matches_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for bad in ["", "not base64!", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ==dGhl"]:
        with pytest.raises(WebSocketError):
            accept_key(bad)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (Frame(0x3).encode(), 1002),  # reserved opcode
        (Frame(0x1, b"x", rsv=4).encode(), 1002),  # RSV1 without an extension
        (Frame(0x1, b"x", rsv=1).encode(), 1002),  # RSV3
        (Frame(0x9, b"x", fin=False).encode(), 1002),  # fragmented control frame
        (Frame(0x9, b"x" * 126).encode(), 1002),  # control frame over 125 bytes
        (Frame(0x0, b"x").encode(), 1002),  # continuation with nothing to continue
        (Frame(0x1, b"a", fin=False).encode() + Frame(0x2, b"b").encode(), 1002),
        (Frame(0x1, b"x", length_form="16").encode(), 1002),  # non-minimal length
        (Frame(0x1, b"x" * 200, length_form="64").encode(), 1002),
        (bytes((0x82, 0xFF)) + (1 << 63).to_bytes(8, "big") + b"mask", 1002),
        (Frame(0x1, b"\xff").encode(), 1007),  # invalid UTF-8
        (Frame(0x1, b"\xe2\x82", fin=False).encode() + Frame(0x0, b"x").encode(), 1007),
        (Frame(0x8, b"\x03").encode(), 1002),  # 1-byte close payload
        (Frame(0x8, close_payload(1005)).encode(), 1002),  # local-only close code
        (Frame(0x8, close_payload(1000, b"\xff")).encode(), 1007),
    ],
)
def test_violations_are_refused_with_the_right_close_code(data: bytes, code: int) -> None:
    with pytest.raises(WebSocketError) as refused:
        decode_all(data)
    assert refused.value.close_code == code


def test_oversize_message_is_refused_from_the_header_before_buffering() -> None:
    decoder = WebSocketDecoder(max_message_size=1000)
    header = bytes((0x82, 0xFF)) + (1 << 40).to_bytes(8, "big")
    decoder.receive_data(header)  # no mask key yet, no payload: the header says enough
    with pytest.raises(WebSocketError) as refused:
        decoder.next_event()
    assert refused.value.close_code == 1009
    assert decoder.buffered == 0
    # Fragments count together.
    decoder = WebSocketDecoder(max_message_size=1000)
    decoder.receive_data(Frame(0x2, b"x" * 600, fin=False).encode())
    assert decoder.next_event() is None
    decoder.receive_data(Frame(0x0, b"x" * 600).encode()[:14])
    with pytest.raises(WebSocketError, match="too big"):
        decoder.next_event()


def test_tiny_fragments_cost_no_more_than_the_message() -> None:
    """CVE-2026-48779 class: a message cut into one-byte fragments."""
    count = 20_000
    stream = Frame(0x1, b"a", fin=False).encode()
    stream += b"".join(Frame(0x0, b"a", fin=False).encode() for _ in range(count))
    decoder = WebSocketDecoder(max_message_size=1_000_000)
    decoder.receive_data(stream)
    tracemalloc.start()
    try:
        assert decoder.next_event() is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.buffered <= count + 1
    assert peak < 256 * 1024
    decoder.receive_data(Frame(0x0, b"!").encode())
    assert decoder.next_event() == "a" * (count + 1) + "!"


def test_runs_of_fragments_pause_and_frames_for_nobody_are_counted() -> None:
    decoder = WebSocketDecoder(max_message_size=1000, pause_after=4)
    stream = Frame(0x1, b"a", fin=False).encode()
    stream += b"".join(Frame(0x0, b"", fin=False).encode() for _ in range(6))
    stream += Frame(0x9, b"p").encode() + Frame(0xA).encode() + Frame(0x0, b"b").encode()
    decoder.receive_data(stream)
    # Four frames without an event, then a pause with the rest still buffered.
    assert decoder.next_event() is None
    assert decoder.paused
    assert decoder.next_event() == Ping(b"p")  # three more fragments, then the ping
    assert not decoder.paused
    assert decoder.next_event() == Pong(b"")
    assert decoder.next_event() == "ab"
    assert decoder.next_event() is None
    assert not decoder.paused
    # The six empty fragments that did not end the message, the ping and the pong.
    assert decoder.overhead_frames == 8
    with pytest.raises(ValueError, match="pause_after"):
        WebSocketDecoder(max_message_size=1000, pause_after=0)


def test_bytes_after_close_are_ignored_and_errors_stick() -> None:
    decoder = WebSocketDecoder(max_message_size=100)
    decoder.receive_data(Frame(0x8, close_payload(1001, b"bye")).encode() + b"\xff garbage")
    assert decoder.next_event() == Close(1001, "bye")
    assert decoder.next_event() is None
    decoder.receive_data(Frame(0x1, b"late").encode())
    assert decoder.next_event() is None
    assert decoder.closed
    assert decode_all(Frame(0x8).encode()) == [Close(1005, "")]


def test_large_payloads_unmask_correctly() -> None:
    for size in (0, 1, 3, 4, 5, 511, 512, 513, 70_000):
        payload = os.urandom(size)
        assert decode_all(Frame(0x2, payload, mask=os.urandom(4)).encode()) == [payload]


# --------------------------------------------------------------------------------------------
# the encoder, read back by a wsproto client


def client_decode(data: bytes, extensions: list[Any] | None = None) -> list[Any]:
    protocol = FrameProtocol(client=True, extensions=extensions or [])
    protocol.receive_bytes(data)
    out: list[Any] = []
    for frame in protocol.received_frames():
        if frame.opcode is Opcode.CLOSE:
            out.append(("close", int(frame.payload[0]), frame.payload[1]))
        else:
            assert frame.message_finished
            out.append(frame.payload if frame.opcode is Opcode.TEXT else bytes(frame.payload))
    return out


@examples(100)
@given(
    frames=st.lists(
        st.one_of(
            st.text(max_size=200),
            st.binary(max_size=200),
            st.sampled_from(["x" * 125, "x" * 126, "é" * 40_000, b"\x00" * 65_535]),
            st.just(b"\x01" * 65_536),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_encoded_messages_decode_in_a_wsproto_client(frames: list[str | bytes]) -> None:
    assert client_decode(encode_messages(frames)) == frames


def test_close_frames_and_their_reasons() -> None:
    assert client_decode(encode_close(1001, "going away")) == [("close", 1001, "going away")]
    long_reason = "é" * 100  # 200 bytes: cut to fit, never inside a character
    [(_, code, reason)] = client_decode(encode_close(4000, long_reason))
    assert code == 4000
    assert reason == "é" * 61
    assert encode_close(1005) == encode_close(None) == bytes((0x88, 0))
    assert encode_frame(0xA, b"p") == b"\x8a\x01p"


# --------------------------------------------------------------------------------------------
# permessage-deflate


def wsproto_deflate_pair(offer: str = "permessage-deflate") -> tuple[Any, Any]:
    """Our negotiated extension and a wsproto client extension agreeing with it."""
    ours = negotiate_deflate(offer)
    assert ours is not None
    theirs = WsprotoDeflate()
    theirs.finalize(ours.response_header().partition(";")[2])
    return ours, theirs


@pytest.mark.parametrize(
    ("offer", "accepted"),
    [
        ("permessage-deflate", "permessage-deflate"),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
        ),
        # Unknown or malformed parameters: that offer is skipped, the next one taken.
        ("permessage-deflate; x=1, permessage-deflate", "permessage-deflate"),
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("x-webkit-deflate-frame", None),
        (None, None),
        ("permessage-deflate" + "; a" * 3000, None),
    ],
)
def test_deflate_negotiation(offer: str | None, accepted: str | None) -> None:
    extension = negotiate_deflate(offer)
    assert (extension.response_header() if extension else None) == accepted


@examples(50)
@given(
    messages=st.lists(
        st.one_of(st.text(max_size=3000), st.binary(max_size=3000), st.just("a" * 5000)),
        max_size=6,
    ),
    no_takeover=st.booleans(),
)
def test_deflate_round_trips_with_wsproto(messages: list[str | bytes], no_takeover: bool) -> None:
    offer = "permessage-deflate"
    if no_takeover:
        offer += "; server_no_context_takeover; client_no_context_takeover"
    ours, theirs = wsproto_deflate_pair(offer)
    client = FrameProtocol(client=True, extensions=[theirs])
    sent = b"".join(bytes(client.send_data(message)) for message in messages)
    assert decode_all(sent, deflate=ours) == messages
    if messages:
        # And back: our compressed frames, read by the wsproto client.
        assert client_decode(encode_messages(messages, ours), [theirs]) == messages


def test_deflate_is_refused_when_not_negotiated() -> None:
    _, theirs = wsproto_deflate_pair()
    client = FrameProtocol(client=True, extensions=[theirs])
    with pytest.raises(WebSocketError, match="reserved bit"):
        decode_all(bytes(client.send_data("a" * 2000)))


def test_deflate_bomb_is_bounded() -> None:
    """W2: 255 KiB that inflate to 256 MiB; with a 1 MB limit, memory stays near 1 MB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * (256 * 1024 * 1024)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    assert len(bomb) < 300 * 1024
    frame = Frame(0x2, bomb, rsv=4).encode()
    extension = negotiate_deflate("permessage-deflate")
    tracemalloc.start()
    try:
        with pytest.raises(WebSocketError) as refused:
            decode_all(frame, deflate=extension, max_size=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.close_code == 1009
    assert peak < 4 * 1024 * 1024
