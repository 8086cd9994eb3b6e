"""The sans-I/O protocol core: Engine.IO v4 and Socket.IO v5 parsers and encoders (the
Socket.IO packet formats behind the :class:`Parser` seam: JSON, the default, and msgpack).

Pure functions and small state machines, h11-style. Nothing in this package imports trio,
hypercorn or anyio, performs I/O, reads the clock or logs (a test enforces the imports): inputs
are ``str``/``bytes``, outputs are packets and frames. Every decoder raises
:class:`ProtocolError`, and nothing else, for input the protocol does not allow.
"""

from .codec import DEFAULT_MAX_JSON_DEPTH, JsonCodec, StdlibJson
from .engineio import (
    RECORD_SEPARATOR,
    EnginePacket,
    EnginePacketType,
    EngineRequest,
    OpenPacket,
    Outgoing,
    Transport,
    decode_open_packet,
    decode_packet,
    decode_payload,
    encode_open_packet,
    encode_payload,
    has_invalid_header_char,
    parse_query,
    validate_request,
)
from .errors import EngineErrorCode, HandshakeError, ProtocolError
from .msgpack_parser import MsgpackDecoder, MsgpackParser
from .parser import PacketDecoder, Parser
from .socketio import (
    MAX_ACK_ID,
    RESERVED_EVENTS,
    Decoder,
    JsonParser,
    PacketType,
    SocketPacket,
)

__all__ = [
    "DEFAULT_MAX_JSON_DEPTH",
    "MAX_ACK_ID",
    "RECORD_SEPARATOR",
    "RESERVED_EVENTS",
    "Decoder",
    "EngineErrorCode",
    "EnginePacket",
    "EnginePacketType",
    "EngineRequest",
    "HandshakeError",
    "JsonCodec",
    "JsonParser",
    "MsgpackDecoder",
    "MsgpackParser",
    "OpenPacket",
    "Outgoing",
    "PacketDecoder",
    "PacketType",
    "Parser",
    "ProtocolError",
    "SocketPacket",
    "StdlibJson",
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
