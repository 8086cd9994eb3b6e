"""The parser seam: what turns Socket.IO packets into Engine.IO messages and back.

A :class:`Parser` is chosen once per server (``Server(parser=...)``, Node's ``parser``
option) and must match the clients' (socket.io-client's ``parser`` option). It encodes each
outgoing packet once, whatever the number of recipients, and makes one :class:`PacketDecoder`
per session for the messages that session receives. Two ship with trio_sio: the JSON text
format of the Socket.IO protocol (:class:`~trio_sio._protocol.socketio.JsonParser`, the
default) and the msgpack format of ``socket.io-msgpack-parser``
(:class:`~trio_sio._protocol.msgpack_parser.MsgpackParser`).
"""

from __future__ import annotations

from typing import Protocol

from .socketio import SocketPacket

__all__ = ["PacketDecoder", "Parser"]


class PacketDecoder(Protocol):
    """Decodes the Engine.IO messages of one session into Socket.IO packets.

    A decoder returns only packets the server can act on: never BINARY_EVENT or BINARY_ACK
    (binary values are ``bytes`` inside ``data``); an EVENT's ``data`` is a non-empty list
    whose first item is an event name (a ``str`` not in ``RESERVED_EVENTS``); an ACK has an
    ``id`` and a list ``data``; a CONNECT's ``data`` is a ``dict`` or ``None``; a
    CONNECT_ERROR's a ``dict`` or a ``str``; a DISCONNECT has none. Every namespace starts
    with ``/``. Anything else the peer sends raises :class:`ProtocolError`, and nothing but
    it, however hostile the bytes: the server closes that session and no other.
    """

    @property
    def pending(self) -> SocketPacket | None:
        """The packet whose remaining messages are awaited, if any (a JSON binary packet
        waiting for its attachments), so that it can be refused before more is buffered."""
        ...

    def receive_text(self, text: str) -> SocketPacket | None:
        """Decode a text message: a complete packet, or ``None`` if more messages are
        needed to complete it."""
        ...

    def receive_binary(self, data: bytes) -> SocketPacket | None:
        """Decode a binary message: a complete packet, or ``None`` if more messages are
        needed to complete it."""
        ...

    def reset(self) -> None:
        """Forget any partly received packet (the session is closing)."""
        ...


class Parser(Protocol):
    """Encodes and decodes Socket.IO packets: the format of the Engine.IO messages."""

    def encode(self, packet: SocketPacket) -> tuple[str | bytes, ...]:
        """The Engine.IO messages that carry ``packet``, each a text (``str``) or binary
        (``bytes``) message, in order. The result is shared by every recipient of a
        broadcast, so it must not depend on who receives it.

        Raises:
            TypeError: ``packet.data`` holds a value the format cannot carry (the message
                names the event or the acknowledgement).
        """
        ...

    def decoder(self, *, max_attachments: int, max_binary_bytes: int) -> PacketDecoder:
        """A new decoder for one session. It honours the server's bounds where they apply
        to the format: ``max_attachments`` binary messages per packet, and at most
        ``max_binary_bytes`` of them buffered."""
        ...
