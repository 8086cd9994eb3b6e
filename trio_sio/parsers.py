"""Parsers: the format of the Socket.IO packets on the wire (see :doc:`parsers`).

Pass one to the server, ``trio_sio.Server(parser=trio_sio.MsgpackParser())``; the clients
must use the same one. To write your own, implement :class:`Parser` and
:class:`PacketDecoder` with the packet types here, raising :class:`trio_sio.ProtocolError`
for input the format does not allow.
"""

from ._protocol import (
    MAX_ACK_ID,
    RESERVED_EVENTS,
    PacketDecoder,
    PacketType,
    Parser,
    SocketPacket,
)
from ._protocol.socketio import validate_payload

__all__ = [
    "MAX_ACK_ID",
    "RESERVED_EVENTS",
    "PacketDecoder",
    "PacketType",
    "Parser",
    "SocketPacket",
    "validate_payload",
]
