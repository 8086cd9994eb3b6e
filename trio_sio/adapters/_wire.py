"""Node's cluster wire formats as pure code: bytes in, messages out, and back (no I/O, no clock,
no logging; tests/test_layering.py keeps it so).

Two formats, one vocabulary. Both carry the same operations between the nodes of a cluster
(broadcasts, socket joins/leaves/disconnects, fetching sockets, server-side events, broadcasts
with acknowledgements); each decodes to, and encodes from, a :class:`Request` or a
:class:`Response` whose ``kind`` is a :class:`RequestType`:

- :class:`ClassicWire`: ``@socket.io/redis-adapter``'s classic mode (and
  ``@socket.io/redis-emitter``). Broadcasts are the msgpack array ``[uid, packet, opts]`` on
  ``<key>#<nsp>#`` (or ``…#<room>#``); requests 0-9 are JSON (msgpack when they may carry
  binary) on ``<key>-request#<nsp>#``, answers on ``<key>-response#<nsp>#`` (or ``…#<uid>#``).
- :class:`ShardedWire`: ``createShardedAdapter``, which speaks ``socket.io-adapter``'s
  ``ClusterAdapter`` messages ``{uid, nsp, type, data}`` (types 3-12), JSON unless they carry
  binary, on ``<prefix>#<nsp>#``, ``<prefix>#<nsp>#<room>#`` and ``<prefix>#<nsp>#<uid>#``.

msgpack is read as notepack.io writes it (its extension 0 is ``undefined`` or an
``ArrayBuffer``; a timestamp is a JavaScript ``Date`` and becomes the string ``Date.toJSON``
gives). Everything hostile raises :class:`WireError`, never anything else: a payload that does
not decode (only JSON and msgpack are ever decoded), nests deeper than the JSON limit (the one
check of :func:`trio_sio._protocol.codec.check_depth`), or lacks the protocol's shape.
"""

from __future__ import annotations

import base64
import datetime
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

try:
    import msgpack
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the cluster adapters need msgpack (and coredis): pip install 'trio-sio[redis]'"
    ) from exc

from .._adapter import BroadcastOptions
from .._protocol import PacketType, ProtocolError
from .._protocol.codec import JsonCodec, check_depth, check_json_depth
from .._recovery import PersistedSession

__all__ = [
    "ClassicWire",
    "ForeignMessage",
    "Request",
    "RequestType",
    "Response",
    "ShardedWire",
    "StreamsWire",
    "SubscriptionMode",
    "WireError",
    "decode_session",
    "encode_session",
    "is_stream_id",
    "room_list",
    "subscription_mode",
]

#: Levels a message's envelope adds around the payload (the depth limit is the payload's).
ENVELOPE_DEPTH = 3
MAX_ID_LENGTH = 128


class WireError(Exception):
    """A cluster message that does not decode or does not have the protocol's shape."""


class ForeignMessage(WireError):
    """A well-formed cluster message that is not for this namespace (another namespace, an
    unknown channel or message type)."""


class RequestType(enum.IntEnum):
    """Request types of the classic adapter's request/response channels (the ``type`` field),
    and the vocabulary both formats decode to."""

    SOCKETS = 0
    ALL_ROOMS = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3
    REMOTE_DISCONNECT = 4
    REMOTE_FETCH = 5
    SERVER_SIDE_EMIT = 6
    BROADCAST = 7
    BROADCAST_CLIENT_COUNT = 8
    BROADCAST_ACK = 9


@dataclass(frozen=True)
class Request:
    """One node asking the others to do something.

    Attributes:
        kind: what to do. A plain broadcast is a ``BROADCAST`` without ``request_id``.
        uid: the sender's node id (``None`` from senders without one).
        request_id: set when answers are expected.
        opts: which sockets; ``None`` for the classic single-socket forms (``sid``/``room``).
        rooms: the rooms to join or leave, or (``SOCKETS``) the rooms to list sockets of.
        event: ``[name, *args]`` of a broadcast or a server-side event.
        close: whether a disconnect also closes the underlying connection.
        sid, room: the classic single-socket join/leave/disconnect.
    """

    kind: RequestType
    uid: str | None
    request_id: str | None = None
    opts: BroadcastOptions | None = None
    rooms: tuple[str, ...] = ()
    event: tuple[Any, ...] = ()
    close: bool = False
    sid: str | None = None
    room: str | None = None


@dataclass(frozen=True)
class Response:
    """An answer to a :class:`Request`.

    Attributes:
        request_id: the request answered.
        uid: the answering node's id when it names itself (Node's classic adapter does not).
        kind: the request type answered, when the wire says so (the classic format names
            only ``SERVER_SIDE_EMIT``, ``BROADCAST_CLIENT_COUNT`` and ``BROADCAST_ACK``; its
            other answers decode as ``None``).
        body: ``sockets`` (ids, or socket descriptions), ``rooms``, ``data`` (a server-side
            event's answer), ``clientCount`` or ``packet`` (a client's acknowledgement).
    """

    request_id: str
    uid: str | None
    kind: RequestType | None
    body: dict[str, Any]


SubscriptionMode = Literal["static", "dynamic", "dynamic-private"]


def subscription_mode(value: str) -> SubscriptionMode:
    """``value`` as a :data:`SubscriptionMode`, or ``ValueError``."""
    modes = get_args(SubscriptionMode)
    if value not in modes:
        raise ValueError(f"subscription_mode must be one of {', '.join(modes)}, not {value!r}")
    return cast(SubscriptionMode, value)


# --- decoding ------------------------------------------------------------------------------


def _ext_hook(code: int, data: bytes) -> Any:
    # notepack.io's own extension type 0: ``undefined`` (fixext 1) or an ArrayBuffer.
    if code == 0:
        return None if data == b"\x00" else bytes(data)
    raise ValueError(f"msgpack extension type {code}")


def _iso(timestamp: msgpack.Timestamp) -> str:
    """A msgpack timestamp (a JavaScript ``Date``) as ``Date.toJSON`` writes it."""
    moment: datetime.datetime = timestamp.to_datetime()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _dates_in_list(items: list[Any]) -> list[Any]:
    if any(type(item) is msgpack.Timestamp for item in items):
        return [_iso(item) if type(item) is msgpack.Timestamp else item for item in items]
    return items


def _dates_in_map(pairs: dict[Any, Any]) -> dict[Any, Any]:
    for key, value in pairs.items():
        if type(value) is msgpack.Timestamp:
            pairs[key] = _iso(value)
    return pairs


def unpack(data: bytes, max_depth: int) -> Any:
    """msgpack as notepack.io writes it, nested at most ``max_depth`` deep."""
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            ext_hook=_ext_hook,
            strict_map_key=True,
            list_hook=_dates_in_list,
            object_hook=_dates_in_map,
        )
        check_depth(value, max_depth)
    except ProtocolError as exc:
        raise WireError(str(exc)) from None
    except Exception as exc:  # msgpack raises several kinds; none may escape
        raise WireError(f"not msgpack: {type(exc).__name__}") from None
    return _iso(value) if type(value) is msgpack.Timestamp else value


def pack(value: Any) -> bytes:
    """msgpack as Node's adapters read it; ``TypeError``/``ValueError``/``OverflowError`` for
    values msgpack cannot carry."""
    payload: bytes = msgpack.packb(value, use_bin_type=True)
    return payload


def decode_json_or_msgpack(data: bytes, json: JsonCodec, max_depth: int) -> Any:
    """JSON when it starts with ``{`` (as Node's adapters decide), msgpack otherwise; either
    nested at most ``max_depth`` deep."""
    if data[:1] != b"{":
        return unpack(data, max_depth)
    try:
        text = data.decode()
        value = json.loads(text)
    except (ProtocolError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    # The server's codec holds client input to its own limit, or to none (a JsonCodec need
    # not have one): the adapter's limit is checked here, as unpack checks it for msgpack.
    try:
        check_json_depth(text, value, max_depth)
    except ProtocolError as exc:
        raise WireError(str(exc)) from None
    return value


def has_binary(value: Any) -> bool:
    """Whether ``value`` holds bytes anywhere (iteratively: depth was checked on the way in,
    but local values may come from anywhere)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes | bytearray | memoryview):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def room_list(value: Any) -> list[str]:
    """Rooms from the wire: a list of strings (Node rooms may be numbers: made strings)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise WireError("rooms are not a list")
    rooms = []
    for room in value:
        if isinstance(room, str):
            rooms.append(room)
        elif isinstance(room, int) and not isinstance(room, bool):
            rooms.append(str(room))
        else:
            raise WireError("a room is not a string")
    return rooms


def parse_options(opts: Any) -> BroadcastOptions:
    """``{rooms, except, flags}`` from the wire as :class:`BroadcastOptions`."""
    if opts is None:
        return BroadcastOptions()
    if not isinstance(opts, dict):
        raise WireError("opts is not an object")
    flags = opts.get("flags")
    if flags is not None and not isinstance(flags, dict):
        raise WireError("flags is not an object")
    return BroadcastOptions(
        rooms=frozenset(room_list(opts.get("rooms"))),
        except_rooms=frozenset(room_list(opts.get("except"))),
        volatile=bool(flags and flags.get("volatile")),
    )


def wire_selection(opts: BroadcastOptions | None) -> dict[str, Any]:
    opts = opts or BroadcastOptions()
    return {"rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}


def wire_options(opts: BroadcastOptions | None) -> dict[str, Any]:
    wire = wire_selection(opts)
    wire["flags"] = {"volatile": True} if opts is not None and opts.volatile else {}
    return wire


def event_data(packet: Any, nsp: str) -> tuple[Any, ...]:
    """The ``[event, *args]`` of an EVENT packet object from the cluster, checked. A packet
    without ``nsp`` belongs to the message's namespace ``nsp``."""
    if not isinstance(packet, dict):
        raise WireError("packet is not an object")
    if packet.get("nsp", nsp) != nsp:
        raise ForeignMessage("another namespace")
    if packet.get("type") not in (PacketType.EVENT.value, PacketType.BINARY_EVENT.value):
        raise WireError("not an EVENT packet")
    return _event(packet.get("data"))


def _event(data: Any) -> tuple[Any, ...]:
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise WireError("bad event data")
    return tuple(data)


def packet_object(event: Iterable[Any], nsp: str) -> dict[str, Any]:
    return {"type": PacketType.EVENT.value, "data": list(event), "nsp": nsp}


def _node_id(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH:
        raise WireError(f"bad {what}")
    return value


def _required_id(value: Any) -> str:
    request_id = _node_id(value, "requestId")
    if request_id is None:
        raise WireError("no requestId")
    return request_id


def _close_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise WireError("bad close flag")
    return value


# --- the classic format --------------------------------------------------------------------


class ClassicWire:
    """``@socket.io/redis-adapter``'s classic channels and messages for one namespace.

    Args:
        key: the channels' prefix (Node: ``opts.key``).
        nsp: the namespace's name.
        uid: this node's id.
        json: the server's JSON codec.
        max_depth: the JSON depth limit of a payload.
        specific_responses: answer on the requester's own response channel.
    """

    def __init__(
        self,
        key: str,
        nsp: str,
        uid: str,
        json: JsonCodec,
        max_depth: int,
        *,
        specific_responses: bool = False,
    ) -> None:
        self.nsp = nsp
        self.uid = uid
        self.json = json
        self.max_depth = max_depth + ENVELOPE_DEPTH
        self.specific_responses = specific_responses
        self.broadcast_channel = f"{key}#{nsp}#"
        self.request_channel = f"{key}-request#{nsp}#"
        self.response_channel = f"{key}-response#{nsp}#"
        self.own_response_channel = f"{self.response_channel}{uid}#"
        self._broadcast_b = self.broadcast_channel.encode()
        self._request_b = self.request_channel.encode()
        self._responses_b = frozenset(
            {self.response_channel.encode(), self.own_response_channel.encode()}
        )

    def room_of(self, channel: bytes) -> str | None:
        """The room of a single-room broadcast channel (a receiver without members of it
        need not decode the message), ``None`` for any other channel."""
        if not channel.startswith(self._broadcast_b):
            return None
        room_part = channel[len(self._broadcast_b) :]
        if not room_part:
            return None
        if not room_part.endswith(b"#"):
            raise ForeignMessage("not a room channel")
        try:
            return room_part[:-1].decode()
        except UnicodeDecodeError:
            raise ForeignMessage("room name is not UTF-8") from None

    def decode(self, channel: bytes, data: bytes) -> Request | Response:
        if channel.startswith(self._broadcast_b):
            self.room_of(channel)  # a malformed room channel is foreign
            return self._decode_broadcast(data)
        if channel == self._request_b:
            return self._decode_request(data)
        if channel in self._responses_b:
            return self._decode_response(data)
        raise ForeignMessage("unknown channel")

    def _decode_broadcast(self, data: bytes) -> Request:
        message = unpack(data, self.max_depth)
        if not isinstance(message, list) or len(message) != 3:
            raise WireError("not [uid, packet, opts]")
        uid, packet, opts = message
        if not isinstance(uid, str):
            raise WireError("bad uid")
        uid = _node_id(uid, "uid")
        return Request(
            RequestType.BROADCAST,
            uid,
            event=event_data(packet, self.nsp),
            opts=parse_options(opts),
        )

    def _decode_request(self, data: bytes) -> Request:
        request = decode_json_or_msgpack(data, self.json, self.max_depth)
        if not isinstance(request, dict):
            raise WireError("request is not an object")
        uid = _node_id(request.get("uid"), "uid")
        request_id = _node_id(request.get("requestId"), "requestId")
        kind = request.get("type")
        if kind == RequestType.SOCKETS:
            rooms = tuple(room_list(request.get("rooms")))
            return Request(RequestType.SOCKETS, uid, _required_id(request_id), rooms=rooms)
        if kind == RequestType.ALL_ROOMS:
            return Request(RequestType.ALL_ROOMS, uid, _required_id(request_id))
        if kind in (RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE):
            kind = RequestType(kind)
            if "opts" in request:  # socketsJoin / socketsLeave: no answer expected
                opts = parse_options(request.get("opts"))
                return Request(kind, uid, opts=opts, rooms=tuple(room_list(request.get("rooms"))))
            # The older form, one socket by id (answered by the node that has it).
            sid, room = request.get("sid"), request.get("room")
            if not isinstance(sid, str) or not isinstance(room, str):
                raise WireError("bad sid/room")
            return Request(kind, uid, _required_id(request_id), sid=sid, room=room)
        if kind == RequestType.REMOTE_DISCONNECT:
            close = _close_flag(request.get("close", False))
            if "opts" in request:
                opts = parse_options(request.get("opts"))
                return Request(RequestType.REMOTE_DISCONNECT, uid, opts=opts, close=close)
            sid = request.get("sid")
            if not isinstance(sid, str):
                raise WireError("bad sid")
            return Request(
                RequestType.REMOTE_DISCONNECT, uid, _required_id(request_id), sid=sid, close=close
            )
        if kind == RequestType.REMOTE_FETCH:
            opts = parse_options(request.get("opts"))
            return Request(RequestType.REMOTE_FETCH, uid, _required_id(request_id), opts=opts)
        if kind == RequestType.SERVER_SIDE_EMIT:
            event = _event(request.get("data"))
            return Request(RequestType.SERVER_SIDE_EMIT, uid, request_id, event=event)
        if kind == RequestType.BROADCAST:
            return Request(
                RequestType.BROADCAST,
                uid,
                _required_id(request_id),
                event=event_data(request.get("packet"), self.nsp),
                opts=parse_options(request.get("opts")),
            )
        raise ForeignMessage(f"unknown request type {kind!r}")

    def _decode_response(self, data: bytes) -> Response:
        response = decode_json_or_msgpack(data, self.json, self.max_depth)
        if not isinstance(response, dict):
            raise WireError("response is not an object")
        request_id = response.get("requestId")
        if not isinstance(request_id, str):
            raise WireError("response without requestId")
        responder = response.get("uid")
        kind = response.get("type")
        typed = (
            RequestType.SERVER_SIDE_EMIT,
            RequestType.BROADCAST_CLIENT_COUNT,
            RequestType.BROADCAST_ACK,
        )
        body = {k: v for k, v in response.items() if k not in ("requestId", "uid", "type")}
        return Response(
            request_id,
            responder if isinstance(responder, str) else None,
            next((t for t in typed if t == kind), None),
            body,
        )

    def encode_request(self, request: Request) -> tuple[str, bytes]:
        """The channel and payload of ``request`` (``TypeError``/``ValueError`` when its
        values cannot travel)."""
        kind = request.kind
        if kind == RequestType.BROADCAST and request.request_id is None:
            channel = self.broadcast_channel
            opts = request.opts or BroadcastOptions()
            if len(opts.rooms) == 1:
                (room,) = opts.rooms
                channel = f"{channel}{room}#"
            message = [request.uid, packet_object(request.event, self.nsp), wire_options(opts)]
            return channel, pack(message)
        body: dict[str, Any] = {"uid": request.uid, "type": kind.value}
        if request.request_id is not None:
            body["requestId"] = request.request_id
        if kind == RequestType.BROADCAST:
            body["packet"] = packet_object(request.event, self.nsp)
            body["opts"] = wire_options(request.opts)
            return self.request_channel, pack(body)  # may carry binary
        if kind == RequestType.SOCKETS:
            body["rooms"] = list(request.rooms)
        elif kind in (RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE):
            if request.opts is None:
                body.update(sid=request.sid, room=request.room)
            else:
                body.update(opts=wire_selection(request.opts), rooms=list(request.rooms))
        elif kind == RequestType.REMOTE_DISCONNECT:
            if request.opts is None:
                body["sid"] = request.sid
            else:
                body["opts"] = wire_selection(request.opts)
            body["close"] = request.close
        elif kind == RequestType.REMOTE_FETCH:
            body["opts"] = wire_selection(request.opts)
        elif kind == RequestType.SERVER_SIDE_EMIT:
            body["data"] = list(request.event)
        return self.request_channel, self.json.dumps(body).encode()

    def encode_response(self, requester: str | None, response: Response) -> tuple[str, bytes]:
        """The channel and payload of ``response`` to ``requester``'s request."""
        kind = response.kind
        if kind == RequestType.SERVER_SIDE_EMIT:
            # Node's adapter answers server-side events on the shared channel, whatever the
            # option says.
            body = {"type": kind.value, "requestId": response.request_id, **response.body}
            body["uid"] = self.uid
            return self.response_channel, self.json.dumps(body).encode()
        channel = self.response_channel
        if self.specific_responses and requester:
            channel = f"{self.response_channel}{requester}#"
        if kind == RequestType.BROADCAST_ACK:  # a client's answer may carry binary
            return channel, pack(
                {"type": kind.value, "requestId": response.request_id, **response.body}
            )
        body = {"requestId": response.request_id, **response.body, "uid": self.uid}
        if kind == RequestType.BROADCAST_CLIENT_COUNT:  # the other answers go untyped
            body = {"type": kind.value, **body}
        return channel, self.json.dumps(body).encode()


# --- the sharded format (socket.io-adapter's ClusterAdapter messages) ----------------------


class _ClusterMessage(enum.IntEnum):
    """``socket.io-adapter``'s ``MessageType``."""

    INITIAL_HEARTBEAT = 1
    HEARTBEAT = 2
    BROADCAST = 3
    SOCKETS_JOIN = 4
    SOCKETS_LEAVE = 5
    DISCONNECT_SOCKETS = 6
    FETCH_SOCKETS = 7
    FETCH_SOCKETS_RESPONSE = 8
    SERVER_SIDE_EMIT = 9
    SERVER_SIDE_EMIT_RESPONSE = 10
    BROADCAST_CLIENT_COUNT = 11
    BROADCAST_ACK = 12
    ADAPTER_CLOSE = 13


_REQUEST_TYPES = {
    RequestType.BROADCAST: _ClusterMessage.BROADCAST,
    RequestType.REMOTE_JOIN: _ClusterMessage.SOCKETS_JOIN,
    RequestType.REMOTE_LEAVE: _ClusterMessage.SOCKETS_LEAVE,
    RequestType.REMOTE_DISCONNECT: _ClusterMessage.DISCONNECT_SOCKETS,
    RequestType.REMOTE_FETCH: _ClusterMessage.FETCH_SOCKETS,
    RequestType.SERVER_SIDE_EMIT: _ClusterMessage.SERVER_SIDE_EMIT,
}
_REQUEST_KINDS = {message: kind for kind, message in _REQUEST_TYPES.items()}
_MAY_CARRY_BINARY = frozenset(
    {
        _ClusterMessage.BROADCAST,
        _ClusterMessage.BROADCAST_ACK,
        _ClusterMessage.FETCH_SOCKETS_RESPONSE,
        _ClusterMessage.SERVER_SIDE_EMIT,
        _ClusterMessage.SERVER_SIDE_EMIT_RESPONSE,
    }
)
SOCKET_ID_LENGTH = 20  # Node's adapter takes a 20-character room for a socket's own room


_HEARTBEATS = frozenset(
    {_ClusterMessage.INITIAL_HEARTBEAT, _ClusterMessage.HEARTBEAT, _ClusterMessage.ADAPTER_CLOSE}
)


def _message_type(value: int) -> _ClusterMessage:
    try:
        return _ClusterMessage(value)
    except ValueError:
        raise ForeignMessage(f"unknown message type {value!r}") from None


def _decode_cluster_message(
    uid: str | None, kind: _ClusterMessage, data_: Any, nsp: str
) -> Request | Response:
    """The ``data`` of a ``ClusterAdapter`` message of type ``kind`` (not a heartbeat)."""
    if not isinstance(data_, dict):
        raise WireError("data is not an object")
    request_id = _node_id(data_.get("requestId"), "requestId")
    if kind == _ClusterMessage.FETCH_SOCKETS_RESPONSE:
        sockets = data_.get("sockets")
        if not isinstance(sockets, list):
            raise WireError("sockets is not a list")
        body: dict[str, Any] = {"sockets": sockets}
        return Response(_required_id(request_id), uid, RequestType.REMOTE_FETCH, body)
    if kind == _ClusterMessage.SERVER_SIDE_EMIT_RESPONSE:
        body = {"data": data_.get("packet")}
        return Response(_required_id(request_id), uid, RequestType.SERVER_SIDE_EMIT, body)
    if kind == _ClusterMessage.BROADCAST_CLIENT_COUNT:
        body = {"clientCount": data_.get("clientCount")}
        return Response(_required_id(request_id), uid, RequestType.BROADCAST_CLIENT_COUNT, body)
    if kind == _ClusterMessage.BROADCAST_ACK:
        body = {"packet": data_["packet"]} if "packet" in data_ else {}
        return Response(_required_id(request_id), uid, RequestType.BROADCAST_ACK, body)
    request_kind = _REQUEST_KINDS[kind]
    if kind == _ClusterMessage.BROADCAST:
        event = event_data(data_.get("packet"), nsp)
        opts = parse_options(data_.get("opts"))
        return Request(request_kind, uid, request_id, opts=opts, event=event)
    if kind == _ClusterMessage.SERVER_SIDE_EMIT:
        return Request(request_kind, uid, request_id, event=_event(data_.get("packet")))
    opts = parse_options(data_.get("opts"))
    if kind == _ClusterMessage.DISCONNECT_SOCKETS:
        close = _close_flag(data_.get("close", False))
        return Request(request_kind, uid, opts=opts, close=close)
    if kind == _ClusterMessage.FETCH_SOCKETS:
        return Request(request_kind, uid, _required_id(request_id), opts=opts)
    rooms = tuple(room_list(data_.get("rooms")))  # SOCKETS_JOIN, SOCKETS_LEAVE
    return Request(request_kind, uid, opts=opts, rooms=rooms)


def _cluster_request(request: Request) -> tuple[_ClusterMessage, dict[str, Any]]:
    """The message type and ``data`` of a ``ClusterAdapter`` request."""
    kind = request.kind
    message_type = _REQUEST_TYPES.get(kind)
    if message_type is None or (request.opts is None and kind != RequestType.SERVER_SIDE_EMIT):
        raise ValueError(f"the ClusterAdapter protocol has no {kind.name} request of this form")
    data: dict[str, Any] = {}
    if request.request_id is not None:
        data["requestId"] = request.request_id
    if kind == RequestType.BROADCAST:
        data["packet"] = {"type": PacketType.EVENT.value, "data": list(request.event)}
        data["opts"] = wire_options(request.opts)
    elif kind == RequestType.SERVER_SIDE_EMIT:
        data["packet"] = list(request.event)
    elif kind == RequestType.REMOTE_DISCONNECT:
        data.update(opts=wire_options(request.opts), close=request.close)
    elif kind == RequestType.REMOTE_FETCH:
        data["opts"] = wire_options(request.opts)
    else:
        data.update(opts=wire_options(request.opts), rooms=list(request.rooms))
    return message_type, data


def _cluster_response(response: Response) -> tuple[_ClusterMessage, dict[str, Any]]:
    """The message type and ``data`` of a ``ClusterAdapter`` answer."""
    body = response.body
    data: dict[str, Any] = {"requestId": response.request_id}
    if response.kind == RequestType.SERVER_SIDE_EMIT:
        message_type = _ClusterMessage.SERVER_SIDE_EMIT_RESPONSE
        data["packet"] = body.get("data")
    elif response.kind == RequestType.BROADCAST_CLIENT_COUNT:
        message_type = _ClusterMessage.BROADCAST_CLIENT_COUNT
        data["clientCount"] = body.get("clientCount")
    elif response.kind == RequestType.BROADCAST_ACK:
        message_type = _ClusterMessage.BROADCAST_ACK
        data.update(body)
    elif response.kind == RequestType.REMOTE_FETCH:
        message_type = _ClusterMessage.FETCH_SOCKETS_RESPONSE
        data["sockets"] = body["sockets"]
    else:
        raise ValueError("the ClusterAdapter protocol has no answer of this kind")
    return message_type, data


class ShardedWire:
    """``createShardedAdapter``'s channels and messages for one namespace.

    Args:
        prefix: the channels' prefix (Node: ``channelPrefix``).
        nsp, uid, json, max_depth: as for :class:`ClassicWire`.
        mode: Node's ``subscriptionMode``: ``"static"`` (two channels per namespace),
            ``"dynamic"`` (plus one per public room) or ``"dynamic-private"`` (plus one per
            room, sockets' own rooms included). Every node of a cluster must use the same.
    """

    def __init__(
        self,
        prefix: str,
        nsp: str,
        uid: str,
        json: JsonCodec,
        max_depth: int,
        *,
        mode: SubscriptionMode = "dynamic",
        msgpack_only: bool = False,
    ) -> None:
        mode = subscription_mode(mode)
        self.msgpack_only = msgpack_only
        self.nsp = nsp
        self.uid = uid
        self.json = json
        self.max_depth = max_depth + ENVELOPE_DEPTH
        self.mode = mode
        self.channel = f"{prefix}#{nsp}#"
        self.own_response_channel = self.response_channel_of(uid)

    def room_of(self, channel: bytes) -> str | None:
        """Always ``None``: a node subscribes only to the channels of rooms it has."""
        return None

    def response_channel_of(self, uid: str) -> str:
        return f"{self.channel}{uid}#"

    def room_channel(self, room: str) -> str:
        return f"{self.channel}{room}#"

    def has_room_channel(self, room: str, *, private: bool) -> bool:
        """Whether broadcasts to ``room`` alone travel on its own channel; ``private`` tells
        a socket's own room (Node: a room that is also a socket id)."""
        return self.mode == "dynamic-private" or (self.mode == "dynamic" and not private)

    def decode(self, channel: bytes, data: bytes) -> Request | Response:
        message = decode_json_or_msgpack(data, self.json, self.max_depth)
        if not isinstance(message, dict):
            raise WireError("message is not an object")
        uid = _node_id(message.get("uid"), "uid")
        if message.get("nsp") != self.nsp:
            raise ForeignMessage("another namespace")
        message_type = message.get("type")
        kind = _message_type(message_type if isinstance(message_type, int) else -1)
        if kind in _HEARTBEATS:
            raise ForeignMessage("heartbeats are not part of the sharded protocol")
        return _decode_cluster_message(uid, kind, message.get("data"), self.nsp)

    def encode_request(self, request: Request) -> tuple[str, bytes]:
        message_type, data = _cluster_request(request)
        channel = self.channel
        rooms = request.opts.rooms if request.opts else frozenset()
        # A broadcast with acks stays on the main channel: the number of answers to expect
        # is the number of all nodes, not of those with the room.
        plain_broadcast = message_type == _ClusterMessage.BROADCAST and request.request_id is None
        if plain_broadcast and len(rooms) == 1:
            (room,) = rooms
            if self.has_room_channel(room, private=len(room) == SOCKET_ID_LENGTH):
                channel = self.room_channel(room)
        return channel, self._encode(message_type, data)

    def encode_response(self, requester: str | None, response: Response) -> tuple[str, bytes]:
        if requester is None:
            raise ValueError("a sharded answer goes to its requester's channel")
        message_type, data = _cluster_response(response)
        return self.response_channel_of(requester), self._encode(message_type, data)

    def _encode(self, message_type: _ClusterMessage, data: dict[str, Any]) -> bytes:
        message = {"uid": self.uid, "nsp": self.nsp, "type": message_type.value, "data": data}
        if self.msgpack_only or (message_type in _MAY_CARRY_BINARY and has_binary(data)):
            return pack(message)
        return self.json.dumps(message).encode()


# --- the Streams format (socket.io-adapter's ClusterAdapter messages as stream entries) ----

#: Longest stream entry id accepted (two 64-bit decimals and a dash).
MAX_STREAM_ID_LENGTH = 41
#: What socket.io-adapter's messages of these kinds carry travels by pub/sub, not the stream:
#: nobody replays them.
_EPHEMERAL = frozenset({RequestType.SERVER_SIDE_EMIT, RequestType.REMOTE_FETCH})


def is_stream_id(value: str) -> bool:
    """Whether ``value`` is a Redis stream entry id (``<ms>-<seq>``), as Node checks an
    offset a client sent back before using it."""
    if len(value) > MAX_STREAM_ID_LENGTH or not value.isascii():
        return False
    ms, dash, seq = value.partition("-")
    return bool(dash) and ms.isdigit() and seq.isdigit()


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise WireError(f"bad {what}")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise WireError(f"{what} is not UTF-8") from None


class StreamsWire:
    """``@socket.io/redis-streams-adapter`` 0.3's messages for one namespace.

    Broadcasts (without acks) and socket joins, leaves and disconnects are entries of one
    stream, whose fields are ``uid``, ``nsp``, ``type`` (the ``ClusterAdapter`` message type,
    in decimal) and, when the message has any, ``data``: JSON, or base64 of msgpack when a
    message type that may carry binary does. What nobody replays (fetching sockets,
    server-side events, broadcasts with acks) is published, msgpack, on ``<prefix>#<nsp>#``, and
    answers on the requester's ``<prefix>#<nsp>#<uid>#``, as :class:`ShardedWire` in its
    ``static`` mode names them.

    Inside the adapter an entry travels as one *frame*, the msgpack array of its four field
    values (bytes, or ``None`` for a field it lacks), so that the bounded queues between
    Redis and the handlers carry bytes: :meth:`frame` builds one from the fields Redis
    returned, :meth:`fields` gives the fields to append. Its "channel" is its entry id.

    Args:
        stream: the stream's name (Node: ``streamName``).
        prefix: the channels' prefix (Node: ``channelPrefix``).
        nsp, uid, json, max_depth: as for :class:`ClassicWire`.
    """

    def __init__(
        self, stream: str, prefix: str, nsp: str, uid: str, json: JsonCodec, max_depth: int
    ) -> None:
        self.stream = stream
        self.nsp = nsp
        self.uid = uid
        self.json = json
        self.max_depth = max_depth + ENVELOPE_DEPTH
        self._pubsub = ShardedWire(
            prefix, nsp, uid, json, max_depth, mode="static", msgpack_only=True
        )
        self.channel = self._pubsub.channel
        self.own_response_channel = self._pubsub.own_response_channel

    @staticmethod
    def frame(fields: Any) -> bytes:
        """The frame of an entry's fields (a mapping of bytes to bytes, as Redis returns)."""
        return pack([fields.get(name) for name in (b"uid", b"nsp", b"type", b"data")])

    @staticmethod
    def fields(frame: bytes) -> dict[str, bytes]:
        """The fields to append for a frame :meth:`encode_request` made."""
        values = msgpack.unpackb(frame)
        names = ("uid", "nsp", "type", "data")
        return {name: value for name, value in zip(names, values, strict=True) if value is not None}

    def room_of(self, channel: bytes) -> str | None:
        """Always ``None``: no channel per room."""
        return None

    def is_entry(self, channel: str) -> bool:
        """Whether a message for ``channel`` is a stream entry (else a pub/sub message)."""
        return channel == self.stream

    def decode(self, channel: bytes, data: bytes) -> Request | Response:
        """The message of a pub/sub ``channel``, or of a stream entry (``channel`` is its id,
        ``data`` its frame)."""
        if b"#" in channel:
            return self._pubsub.decode(channel, data)
        values = unpack(data, 2)
        if not isinstance(values, list) or len(values) != 4:
            raise WireError("not a stream entry frame")
        raw_uid, raw_nsp, raw_type, raw_data = values
        if _text(raw_nsp, "nsp") != self.nsp:
            raise ForeignMessage("another namespace")
        uid = _node_id(_text(raw_uid, "uid"), "uid")
        type_text = _text(raw_type, "type") or ""
        if not (type_text.isascii() and type_text.isdigit() and len(type_text) <= 3):
            raise WireError("bad type")
        kind = _message_type(int(type_text))
        if kind in _HEARTBEATS:  # older versions' heartbeats: 0.3 counts nodes by NUMSUB
            raise ForeignMessage("heartbeats are not part of the 0.3 protocol")
        return _decode_cluster_message(uid, kind, self._decode_data(raw_data), self.nsp)

    def _decode_data(self, raw: Any) -> Any:
        if raw is None or raw == b"":
            return None
        if not isinstance(raw, bytes):
            raise WireError("bad data")
        if raw[:1] == b"{":
            return decode_json_or_msgpack(raw, self.json, self.max_depth)
        try:
            packed = base64.b64decode(raw, validate=True)
        except ValueError:
            raise WireError("data is neither JSON nor base64") from None
        return unpack(packed, self.max_depth)

    def encode_request(self, request: Request) -> tuple[str, bytes]:
        if request.kind in _EPHEMERAL or request.request_id is not None:
            return self._pubsub.encode_request(request)
        message_type, data = _cluster_request(request)
        if message_type in _MAY_CARRY_BINARY and has_binary(data):
            text = base64.b64encode(pack(data))
        else:
            text = self.json.dumps(data).encode()
        uid, nsp = self.uid.encode(), self.nsp.encode()
        return self.stream, pack([uid, nsp, str(message_type.value).encode(), text])

    def encode_response(self, requester: str | None, response: Response) -> tuple[str, bytes]:
        return self._pubsub.encode_response(requester, response)


def encode_session(session: PersistedSession) -> bytes:
    """A persisted session as Node's Streams adapter stores it under its session key:
    base64 of msgpack ``{sid, pid, rooms, data}`` (``TypeError``/``ValueError`` when its data
    is not msgpack)."""
    value = {
        "sid": session.sid,
        "pid": session.pid,
        "rooms": sorted(session.rooms),
        "data": session.data,
    }
    return base64.b64encode(pack(value))


def decode_session(raw: bytes, namespace: str, max_depth: int) -> PersistedSession:
    """A session stored by :func:`encode_session` (or Node), for ``namespace``."""
    try:
        packed = base64.b64decode(raw, validate=True)
    except ValueError:
        raise WireError("session is not base64") from None
    value = unpack(packed, max_depth + ENVELOPE_DEPTH)
    if not isinstance(value, dict):
        raise WireError("session is not an object")
    sid, pid = value.get("sid"), value.get("pid")
    if not isinstance(sid, str) or not isinstance(pid, str):
        raise WireError("session without sid or pid")
    rooms = frozenset(room_list(value.get("rooms")))
    data = value.get("data")
    return PersistedSession(namespace, sid, pid, rooms, {} if data is None else data)
