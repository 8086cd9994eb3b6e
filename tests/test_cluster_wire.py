"""Node's cluster wire formats (trio_sio/adapters/_wire.py), as pure code: every message the
adapters send decodes back to itself, and any bytes on any channel decode or raise WireError,
never anything else.

The cross-checks against Node's own adapters are in tests/test_redis_adapter.py (real Node
processes on a real Redis); these pin the codec itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_sio import BroadcastOptions
from trio_sio._protocol.codec import DEFAULT_MAX_JSON_DEPTH, StdlibJson
from trio_sio._recovery import PersistedSession
from trio_sio.adapters._base import WireFormat
from trio_sio.adapters._wire import (
    ClassicWire,
    ForeignMessage,
    Request,
    RequestType,
    Response,
    ShardedWire,
    StreamsWire,
    WireError,
    decode_session,
    encode_session,
    is_stream_id,
    subscription_mode,
    unpack,
)

JSON = StdlibJson()
UID = "0123abcd"
OTHER = "fedc9876"

texts = st.text(st.characters(codec="utf-8"), max_size=12)
rooms = st.frozensets(texts, max_size=3)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)


def values(*, binary: bool) -> st.SearchStrategy[Any]:
    leaves = scalars | st.binary(max_size=8) if binary else scalars
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=8,
    )


def events(*, binary: bool) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(texts, st.lists(values(binary=binary), max_size=3)).map(
        lambda parts: (parts[0], *parts[1])
    )


options = st.builds(BroadcastOptions, rooms=rooms, except_rooms=rooms, volatile=st.booleans())
selections = st.builds(BroadcastOptions, rooms=rooms, except_rooms=rooms)  # no flags travel
request_ids = st.text("0123456789abcdef", min_size=1, max_size=12)


def classic_requests() -> st.SearchStrategy[Request]:
    kinds = RequestType
    return st.one_of(
        st.builds(Request, st.just(kinds.BROADCAST), st.just(UID), opts=options,
                  event=events(binary=True)),
        st.builds(Request, st.just(kinds.BROADCAST), st.just(UID), request_ids, opts=options,
                  event=events(binary=True)),
        st.builds(Request, st.just(kinds.SOCKETS), st.just(UID), request_ids,
                  rooms=rooms.map(tuple)),
        st.builds(Request, st.just(kinds.ALL_ROOMS), st.just(UID), request_ids),
        st.builds(Request, st.sampled_from([kinds.REMOTE_JOIN, kinds.REMOTE_LEAVE]),
                  st.just(UID), opts=selections,
                  rooms=rooms.map(tuple)),
        st.builds(Request, st.sampled_from([kinds.REMOTE_JOIN, kinds.REMOTE_LEAVE]),
                  st.just(UID), request_ids, sid=texts, room=texts),
        st.builds(Request, st.just(kinds.REMOTE_DISCONNECT), st.just(UID),
                  opts=selections,
                  close=st.booleans()),
        st.builds(Request, st.just(kinds.REMOTE_DISCONNECT), st.just(UID), request_ids,
                  sid=texts, close=st.booleans()),
        st.builds(Request, st.just(kinds.REMOTE_FETCH), st.just(UID), request_ids,
                  opts=selections),
        st.builds(Request, st.just(kinds.SERVER_SIDE_EMIT), st.just(UID),
                  st.none() | request_ids, event=events(binary=False)),
    )  # fmt: skip


def sharded_requests() -> st.SearchStrategy[Request]:
    kinds = RequestType
    return st.one_of(
        st.builds(Request, st.just(kinds.BROADCAST), st.just(UID), st.none() | request_ids,
                  opts=options, event=events(binary=True)),
        st.builds(Request, st.sampled_from([kinds.REMOTE_JOIN, kinds.REMOTE_LEAVE]),
                  st.just(UID), opts=options, rooms=rooms.map(tuple)),
        st.builds(Request, st.just(kinds.REMOTE_DISCONNECT), st.just(UID), opts=options,
                  close=st.booleans()),
        st.builds(Request, st.just(kinds.REMOTE_FETCH), st.just(UID), request_ids,
                  opts=options),
        st.builds(Request, st.just(kinds.SERVER_SIDE_EMIT), st.just(UID),
                  st.none() | request_ids, event=events(binary=True)),
    )  # fmt: skip


def responses(*, binary: bool) -> st.SearchStrategy[Response]:
    kinds = RequestType
    sockets = st.lists(
        st.fixed_dictionaries({"id": texts, "rooms": st.lists(texts, max_size=2)}), max_size=2
    )
    return st.one_of(
        st.builds(Response, request_ids, st.just(UID), st.just(kinds.REMOTE_FETCH),
                  st.fixed_dictionaries({"sockets": sockets})),
        st.builds(Response, request_ids, st.just(UID), st.just(kinds.SERVER_SIDE_EMIT),
                  st.fixed_dictionaries({"data": values(binary=False)})),
        st.builds(Response, request_ids, st.just(UID), st.just(kinds.BROADCAST_CLIENT_COUNT),
                  st.fixed_dictionaries({"clientCount": st.integers(0, 10**6)})),
        st.builds(Response, request_ids, st.just(UID), st.just(kinds.BROADCAST_ACK),
                  st.fixed_dictionaries({"packet": values(binary=binary)})),
    )  # fmt: skip


def classic(**kwargs: Any) -> ClassicWire:
    return ClassicWire("socket.io", "/chat", UID, JSON, DEFAULT_MAX_JSON_DEPTH, **kwargs)


def sharded(mode: str = "dynamic") -> ShardedWire:
    return ShardedWire(
        "socket.io", "/chat", UID, JSON, DEFAULT_MAX_JSON_DEPTH, mode=subscription_mode(mode)
    )


def streams() -> StreamsWire:
    return StreamsWire("socket.io", "socket.io", "/chat", UID, JSON, DEFAULT_MAX_JSON_DEPTH)


WIRES: dict[str, Callable[[], WireFormat]] = {
    "classic": classic,
    "sharded": sharded,
    "streams": streams,
}
REQUESTS = {
    "classic": classic_requests(),
    "sharded": sharded_requests(),
    "streams": sharded_requests(),  # the same ClusterAdapter messages
}


@pytest.mark.parametrize("name", sorted(WIRES))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_requests_round_trip(name: str, data: st.DataObject) -> None:
    wire = WIRES[name]()
    request = data.draw(REQUESTS[name])
    channel, payload = wire.encode_request(request)
    assert wire.decode(channel.encode(), payload) == request


@pytest.mark.parametrize("name", sorted(WIRES))
@settings(max_examples=100)
@given(data=st.data())
def test_responses_round_trip(name: str, data: st.DataObject) -> None:
    wire = WIRES[name]()
    response = data.draw(responses(binary=True))
    channel, payload = wire.encode_response(OTHER, response)
    decoded = wire.decode(channel.encode(), payload)
    assert isinstance(decoded, Response)
    assert decoded.request_id == response.request_id
    assert decoded.body == response.body
    # The classic format leaves fetch answers untyped, and its acks anonymous (as Node's).
    assert decoded.kind in (response.kind, None)
    assert decoded.uid in (UID, None)


ANY_CHANNEL = st.sampled_from(
    [
        b"socket.io#/chat#",
        b"socket.io#/chat#room#",
        b"socket.io#/chat#room",
        b"socket.io-request#/chat#",
        b"socket.io-response#/chat#",
        b"socket.io-response#/chat#0123abcd#",
        b"socket.io#/chat#0123abcd#",
        b"elsewhere",
    ]
)
FIELDS = "uid nsp type data requestId packet opts rooms except flags sockets sid room close"
FIELDS += " clientCount"
hostile_objects = st.recursive(
    scalars | st.binary(max_size=4) | st.sampled_from([0, 1, 2, 3, 7, 9, 11, 12, 13, "/chat"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "uid",
                    "nsp",
                    "type",
                    "data",
                    "requestId",
                    "packet",
                    "opts",
                    "rooms",
                    "except",
                    "flags",
                    "sockets",
                    "sid",
                    "room",
                    "close",
                    "clientCount",
                ]
            )
            | texts,
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


FIELD_VALUES = (
    st.none()
    | st.binary(max_size=8)
    | st.sampled_from(
        [b"/chat", b"1", b"2", b"3", b"9", b"13", b"{}", b'{"packet":["e"]}', UID.encode()]
    )
)


def hostile_payloads_json() -> st.SearchStrategy[bytes]:
    return hostile_objects.map(lambda value: json.dumps(value, default=repr).encode()) | (
        hostile_objects.map(lambda value: base64.b64encode(msgpack.packb(value)))
    )


def hostile_payloads() -> st.SearchStrategy[bytes]:
    return st.one_of(
        # stream entry frames: four fields, each missing or any bytes
        st.lists(FIELD_VALUES, min_size=3, max_size=5).map(
            lambda fields: msgpack.packb(fields, use_bin_type=True)
        ),
        st.tuples(FIELD_VALUES, hostile_payloads_json()).map(
            lambda parts: StreamsWire.frame(
                {b"uid": parts[0], b"nsp": b"/chat", b"type": b"3", b"data": parts[1]}
            )
        ),
        st.binary(max_size=64),
        hostile_objects.map(lambda value: msgpack.packb(value, use_bin_type=True)),
        hostile_objects.filter(lambda v: isinstance(v, dict)).map(
            lambda value: json.dumps(value, default=repr).encode()
        ),
    )


@pytest.mark.parametrize("name", sorted(WIRES))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(channel=ANY_CHANNEL, payload=hostile_payloads())
def test_hostile_messages_raise_only_wire_errors(name: str, channel: bytes, payload: bytes) -> None:
    wire = WIRES[name]()
    try:
        wire.room_of(channel)
        message = wire.decode(channel, payload)
    except WireError:
        return
    assert isinstance(message, Request | Response)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_depth_is_checked_once_for_both_encodings() -> None:
    wire = sharded()
    envelope = {"uid": OTHER, "nsp": "/chat", "type": 9, "data": {"packet": ["e", None]}}
    # JSON goes through the server's codec, whose limit counts the envelope's levels too.
    ok = dict(envelope, data={"packet": ["e", nested(DEFAULT_MAX_JSON_DEPTH - 4)]})
    deep = dict(envelope, data={"packet": ["e", nested(DEFAULT_MAX_JSON_DEPTH + 1)]})
    for encode in (lambda v: json.dumps(v).encode(), lambda v: msgpack.packb(v)):
        assert isinstance(wire.decode(b"socket.io#/chat#", encode(ok)), Request)
        with pytest.raises(WireError):
            wire.decode(b"socket.io#/chat#", encode(deep))
    with pytest.raises(WireError):
        unpack(b"\x91" * 100_000 + b"\xa1x", DEFAULT_MAX_JSON_DEPTH)  # 100,000 arrays deep


@given(depth=st.integers(0, 12))
def test_the_adapters_depth_limit_bounds_json_as_it_bounds_msgpack(depth: int) -> None:
    """A JSON message is held to the adapter's ``max_depth`` even when the server's codec
    allows more (or has no limit): a hostile node cannot go deeper by choosing JSON."""
    limit = 4
    loose = StdlibJson(max_depth=1_000)
    wire = ShardedWire("socket.io", "/chat", UID, loose, limit, mode=subscription_mode("dynamic"))
    message = {"uid": OTHER, "nsp": "/chat", "type": 9, "data": {"packet": ["e", nested(depth)]}}
    accepted = []
    for payload in (json.dumps(message).encode(), msgpack.packb(message)):
        try:
            wire.decode(b"socket.io#/chat#", payload)
        except WireError:
            accepted.append(False)
        else:
            accepted.append(True)
    assert accepted == [depth <= limit] * 2


def test_notepack_values() -> None:
    """A JavaScript Date (msgpack timestamp) becomes Date.toJSON's string; notepack's
    extension 0 is undefined or an ArrayBuffer; other extensions are refused."""
    stamp = msgpack.Timestamp.from_unix_nano(1_704_164_645_678_000_000)
    value = unpack(msgpack.packb([stamp, {"when": stamp}, [stamp]], datetime=False), 10)
    iso = "2024-01-02T03:04:05.678Z"
    assert value == [iso, {"when": iso}, [iso]]
    undefined = msgpack.ExtType(0, b"\x00")
    buffer = msgpack.ExtType(0, b"\x01\x02")
    assert unpack(msgpack.packb([undefined, buffer]), 10) == [None, b"\x01\x02"]
    with pytest.raises(WireError):
        unpack(msgpack.packb([msgpack.ExtType(5, b"x")]), 10)


def test_classic_channels_and_answers() -> None:
    wire = classic(specific_responses=True)
    request = Request(RequestType.BROADCAST, UID, opts=BroadcastOptions(frozenset({"r"})),
                      event=("e", 1))  # fmt: skip
    assert wire.encode_request(request)[0] == "socket.io#/chat#r#"
    assert wire.room_of(b"socket.io#/chat#r#") == "r"
    assert wire.room_of(b"socket.io-request#/chat#") is None
    with pytest.raises(ForeignMessage):
        wire.room_of(b"socket.io#/chat#r")
    fetched = Response("id", UID, RequestType.REMOTE_FETCH, {"sockets": []})
    assert wire.encode_response(OTHER, fetched)[0] == f"socket.io-response#/chat#{OTHER}#"
    # Node answers server-side events on the shared channel whatever the option says.
    answer = Response("id", UID, RequestType.SERVER_SIDE_EMIT, {"data": 1})
    assert wire.encode_response(OTHER, answer)[0] == "socket.io-response#/chat#"


@pytest.mark.parametrize(
    ("mode", "room", "channel"),
    [
        ("dynamic", "public", "socket.io#/chat#public#"),
        ("dynamic", "x" * 20, "socket.io#/chat#"),  # looks like a socket id: private
        ("dynamic-private", "x" * 20, f"socket.io#/chat#{'x' * 20}#"),
        ("static", "public", "socket.io#/chat#"),
    ],
)
def test_sharded_channels_follow_the_subscription_mode(mode: str, room: str, channel: str) -> None:
    wire = sharded(mode)
    opts = BroadcastOptions(frozenset({room}))
    plain = Request(RequestType.BROADCAST, UID, opts=opts, event=("e",))
    assert wire.encode_request(plain)[0] == channel
    # With acks, always the namespace channel: every node must answer.
    with_ack = Request(RequestType.BROADCAST, UID, "id", opts=opts, event=("e",))
    assert wire.encode_request(with_ack)[0] == "socket.io#/chat#"
    answer = Response("id", UID, RequestType.BROADCAST_CLIENT_COUNT, {"clientCount": 1})
    assert wire.encode_response(OTHER, answer)[0] == f"socket.io#/chat#{OTHER}#"


def test_sharded_messages_are_json_unless_binary() -> None:
    wire = sharded()
    text = Request(RequestType.SERVER_SIDE_EMIT, UID, event=("e", 1))
    binary = Request(RequestType.SERVER_SIDE_EMIT, UID, event=("e", b"\x01"))
    assert json.loads(wire.encode_request(text)[1]) == {
        "uid": UID,
        "nsp": "/chat",
        "type": 9,
        "data": {"packet": ["e", 1]},
    }
    assert msgpack.unpackb(wire.encode_request(binary)[1])["data"]["packet"] == ["e", b"\x01"]


def test_sharded_refuses_what_its_protocol_lacks() -> None:
    wire = sharded()
    with pytest.raises(ValueError, match="ALL_ROOMS"):
        wire.encode_request(Request(RequestType.ALL_ROOMS, UID, "id"))
    with pytest.raises(ValueError, match="subscription_mode"):
        subscription_mode("sometimes")
    for kind in (1, 2, 13, 99):
        message = json.dumps({"uid": OTHER, "nsp": "/chat", "type": kind, "data": {}})
        with pytest.raises(ForeignMessage):
            wire.decode(b"socket.io#/chat#", message.encode())
    other_nsp = json.dumps({"uid": OTHER, "nsp": "/", "type": 9, "data": {"packet": ["e"]}})
    with pytest.raises(ForeignMessage):
        wire.decode(b"socket.io#/chat#", other_nsp.encode())


# --- the Streams format --------------------------------------------------------------------


def entry(**fields: bytes) -> bytes:
    """The frame of a stream entry with these fields, as the adapter's reader makes it."""
    return StreamsWire.frame({name.encode(): value for name, value in fields.items()})


def test_streams_entries_are_nodes_fields() -> None:
    """The fields of an entry, as Node's Streams adapter writes them: the type in decimal,
    data JSON (an object, so starting with "{"), or base64 msgpack when it carries binary;
    what nobody replays is msgpack on the namespace's channel, answers on the requester's."""
    wire = streams()
    opts = BroadcastOptions(frozenset({"r"}))
    text = Request(RequestType.BROADCAST, UID, opts=opts, event=("e", 1))
    binary = Request(RequestType.BROADCAST, UID, opts=opts, event=("e", b"\x01"))
    channel, frame = wire.encode_request(text)
    assert channel == "socket.io"
    fields = StreamsWire.fields(frame)
    assert fields.keys() == {"uid", "nsp", "type", "data"}
    assert (fields["uid"], fields["nsp"], fields["type"]) == (UID.encode(), b"/chat", b"3")
    assert json.loads(fields["data"])["opts"] == {"rooms": ["r"], "except": [], "flags": {}}
    packed = base64.b64decode(StreamsWire.fields(wire.encode_request(binary)[1])["data"])
    assert msgpack.unpackb(packed)["packet"]["data"] == ["e", b"\x01"]
    emit = Request(RequestType.SERVER_SIDE_EMIT, UID, event=("e", 1))
    channel, payload = wire.encode_request(emit)
    assert channel == "socket.io#/chat#"
    assert msgpack.unpackb(payload) == {
        "uid": UID, "nsp": "/chat", "type": 9, "data": {"packet": ["e", 1]},
    }  # fmt: skip
    with_ack = Request(RequestType.BROADCAST, UID, "id", opts=opts, event=("e",))
    assert wire.encode_request(with_ack)[0] == "socket.io#/chat#"
    answer = Response("id", UID, RequestType.SERVER_SIDE_EMIT, {"data": 1})
    assert wire.encode_response(OTHER, answer)[0] == f"socket.io#/chat#{OTHER}#"


def test_streams_refuse_what_is_not_theirs() -> None:
    wire = streams()
    with pytest.raises(ForeignMessage):
        wire.decode(b"1-0", entry(uid=b"x", nsp=b"/", type=b"9", data=b'{"packet":["e"]}'))
    for foreign_type in (b"99", b"1", b"2", b"13"):  # unknown, and older versions' heartbeats
        with pytest.raises(ForeignMessage):
            wire.decode(b"1-0", entry(uid=b"x", nsp=b"/chat", type=foreign_type, data=b"{}"))
    for bad_type in (b"3a", b"", b"-3", b"\xff"):
        with pytest.raises(WireError):
            wire.decode(b"1-0", entry(uid=b"x", nsp=b"/chat", type=bad_type, data=b"{}"))
    with pytest.raises(WireError):  # neither JSON nor base64
        wire.decode(b"1-0", entry(uid=b"x", nsp=b"/chat", type=b"9", data=b"!!"))
    with pytest.raises(ValueError, match="ALL_ROOMS"):
        wire.encode_request(Request(RequestType.ALL_ROOMS, UID, "id"))


@pytest.mark.parametrize(
    ("value", "ok"),
    [("1-0", True), ("1733500000000-12", True), ("1-", False), ("-1", False), ("1", False),
     ("1-0-0", False), ("x-1", False), ("1" * 30 + "-" + "1" * 30, False),
     ("\u0661-\u0660", False)],
)  # fmt: skip
def test_stream_ids(value: str, ok: bool) -> None:
    assert is_stream_id(value) is ok


sessions = st.builds(
    PersistedSession,
    st.just("/chat"),
    texts,
    texts,
    rooms,
    st.dictionaries(texts, values(binary=True), max_size=3),
)


@settings(max_examples=100)
@given(session=sessions)
def test_sessions_round_trip(session: PersistedSession) -> None:
    stored = encode_session(session)
    assert decode_session(stored, "/chat", DEFAULT_MAX_JSON_DEPTH) == session
    # Node's format: base64 of msgpack {sid, pid, rooms, data}.
    assert msgpack.unpackb(base64.b64decode(stored))["pid"] == session.pid


@settings(max_examples=200)
@given(raw=st.binary(max_size=40) | hostile_objects.map(
    lambda value: base64.b64encode(msgpack.packb(value, use_bin_type=True))))  # fmt: skip
def test_hostile_sessions_raise_only_wire_errors(raw: bytes) -> None:
    try:
        session = decode_session(raw, "/chat", DEFAULT_MAX_JSON_DEPTH)
    except WireError:
        return
    assert isinstance(session.pid, str)
