"""The client's parser seam: how Socket.IO packets become Engine.IO messages and back.

The default is the JSON parser of :mod:`trio_sio._protocol.socketio`; another one (msgpack)
plugs in with the same two methods.
"""

from __future__ import annotations

from typing import Protocol

from .._protocol import Decoder, JsonCodec, SocketPacket, StdlibJson, encode_packet

__all__ = ["JsonParser", "PacketDecoder", "Parser"]


class PacketDecoder(Protocol):
    """Decodes one connection's incoming messages (it may hold a packet's first part)."""

    def receive_text(self, text: str) -> SocketPacket | None: ...

    def receive_binary(self, data: bytes) -> SocketPacket | None: ...


class Parser(Protocol):
    """What the client needs from a Socket.IO parser."""

    def encode(self, packet: SocketPacket) -> tuple[str | bytes, ...]:
        """The packet as Engine.IO messages (the first one, then any attachments)."""
        ...

    def decoder(self, *, max_binary_bytes: int) -> PacketDecoder:
        """A decoder for a new connection."""
        ...


class JsonParser:
    """Socket.IO's default parser: JSON text, binary data as attachments."""

    def __init__(self, json: JsonCodec | None = None) -> None:
        self.json = json or StdlibJson()

    def encode(self, packet: SocketPacket) -> tuple[str | bytes, ...]:
        return encode_packet(self.json, packet)

    def decoder(self, *, max_binary_bytes: int) -> PacketDecoder:
        return Decoder(self.json, max_binary_bytes=max_binary_bytes)
