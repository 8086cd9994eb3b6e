"""What happens to the sockets of one Socket.IO server, as an operator sees it.

The Socket.IO side of :mod:`trio_sio._engine.lifecycle`: each namespace connect, disconnect,
refusal and room change goes through one method of :class:`ServerLifecycle`, which counts it,
logs one line on ``trio_sio.socketio`` and tells the :class:`ServerListener` objects
registered. Lines start with ``socket=<socket id>`` once there is a socket, or with
``sid=<session id>`` for a CONNECT that was refused::

    socket=Qw7e connect namespace=/chat sid=Ab3x
    socket=Qw7e disconnect namespace=/chat reason="io client disconnect" sid=Ab3x
    sid=Ab3x refused namespace=/admin cause=middleware message="not authorized"
    sid=Cd5y recovered namespace=/chat socket=Qw7e replayed=12
    sid=Ef7z recovery_failed namespace=/chat reason=expired: fresh session

Per packet there are only counters (events and bytes in and out), and, when the logger
``trio_sio.socketio.packets`` is at DEBUG, one trace line per packet. Whether to trace is
looked up once per handshake (:meth:`ServerLifecycle.session_opened`), not per packet, so
tracing switched on applies from the next handshake, and switched off costs one test of a
flag.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._engine.lifecycle import EngineListener, quote
from ._errors import DisconnectReason, RefusalCause
from ._recovery import RecoveryFailure

if TYPE_CHECKING:
    from ._protocol import Outgoing
    from ._socket import Socket

__all__ = ["ServerLifecycle", "ServerListener"]

logger = logging.getLogger("trio_sio.socketio")
packet_logger = logging.getLogger("trio_sio.socketio.packets")

#: Longest part of a packet a trace line shows.
TRACE_CHARS = 200


class ServerListener(EngineListener):
    """Told of every socket's lifecycle, synchronously, as it happens; every method does
    nothing unless overridden. A listener must not raise, nor block: it runs inside the
    server's own bookkeeping. Register one for the sockets with
    ``sio.lifecycle.listeners.append(listener)``, and for the sessions as well (the
    :class:`EngineListener` methods: handshake, upgrade, close) with
    ``sio.engine.lifecycle.listeners.append(listener)``. The two methods told of every
    event, :meth:`event_received` and :meth:`event_sent`, are called only for the listeners
    in :attr:`ServerLifecycle.event_listeners`: without any, events cost no call."""

    def socket_connected(self, socket: Socket) -> None:
        """``socket`` connected (the client has its CONNECT packet)."""

    def socket_disconnected(self, socket: Socket, reason: DisconnectReason) -> None:
        """``socket`` disconnected; :attr:`Socket.rooms` still has the rooms it was in."""

    def rooms_joined(self, socket: Socket, rooms: tuple[str, ...]) -> None:
        """``socket`` joined ``rooms``, each a room it was not in before."""

    def rooms_left(self, socket: Socket, rooms: tuple[str, ...]) -> None:
        """``socket`` left ``rooms``, each a room it was in (not called for the rooms left by
        disconnecting)."""

    def event_received(self, socket: Socket, event: str, args: Sequence[Any]) -> None:
        """``socket`` received ``event``, admitted by the packet middleware, which is about
        to be handled (acknowledgement callbacks are not among ``args``)."""

    def event_sent(self, socket: Socket, data: Sequence[Any]) -> None:
        """An event is on its way to ``socket``: its own emits and calls, and each recipient
        of a broadcast. ``data`` is the packet's, the event's name then its arguments, shared
        by every recipient of a broadcast: read it, do not change it."""


class ServerLifecycle:
    """The counters, the log lines and the listeners of one server's sockets.

    Attributes:
        socket_connects: sockets connected (all namespaces).
        socket_disconnects: sockets disconnected, by reason.
        refusals: CONNECTs refused, by cause (``middleware``, ``on_connect``,
            ``invalid_namespace``, ``max_namespaces_per_client``, ``server_error``).
        events_in, events_out: events received from, and sent to, clients (a broadcast
            counts once per recipient).
        bytes_in, bytes_out: the size of the Socket.IO packets received and sent (Engine.IO
            messages with their binary attachments; heartbeats and transport framing are
            not counted).
        trace: whether packets are traced now (see the module's docstring).
        listeners: told of every socket's lifecycle (see :class:`ServerListener`).
        event_listeners: told of every event as well, in and out. A call per event and per
            recipient of a broadcast: for listeners that need them (the Admin UI's
            development mode).
    """

    def __init__(self) -> None:
        self.socket_connects = 0
        self.socket_disconnects: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.events_in = 0
        self.events_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.trace = False
        self.listeners: list[ServerListener] = []
        self.event_listeners: list[ServerListener] = []

    def session_opened(self) -> None:
        """A handshake: look up again whether to trace packets."""
        self.trace = packet_logger.isEnabledFor(logging.DEBUG)

    def connected(self, socket: Socket) -> None:
        self.socket_connects += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "socket=%s connect namespace=%s sid=%s",
                socket.id,
                quote(socket.namespace.name),
                socket.session.sid,
            )
        for listener in self.listeners:
            listener.socket_connected(socket)

    def disconnected(self, socket: Socket, reason: DisconnectReason) -> None:
        self.socket_disconnects[reason.value] += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "socket=%s disconnect namespace=%s reason=%s sid=%s",
                socket.id,
                quote(socket.namespace.name),
                quote(reason.value),
                socket.session.sid,
            )
        for listener in self.listeners:
            listener.socket_disconnected(socket, reason)

    def refused(self, sid: str, namespace: str, cause: RefusalCause, message: str) -> None:
        """A CONNECT to ``namespace`` was refused, by ``cause``, with ``message``."""
        self.refusals[cause.value] += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "sid=%s refused namespace=%s cause=%s message=%s",
                sid,
                quote(namespace),
                cause.value,
                quote(message),
            )

    def recovered(self, sid: str, namespace: str, socket_id: str, replayed: int) -> None:
        """A reconnecting client got its socket back, with ``replayed`` missed packets."""
        logger.info(
            "sid=%s recovered namespace=%s socket=%s replayed=%d",
            sid,
            quote(namespace),
            socket_id,
            replayed,
        )

    def recovery_failed(self, sid: str, namespace: str, failure: RecoveryFailure) -> None:
        """A reconnecting client could not get its socket back: it gets a fresh one."""
        logger.info(
            "sid=%s recovery_failed namespace=%s reason=%s: fresh session",
            sid,
            quote(namespace),
            quote(failure.value),
        )

    def connect_timed_out(self, sid: str, timeout: float) -> None:
        logger.info("sid=%s connect_timeout after=%ss: closing it", sid, timeout)

    def joined(self, socket: Socket, rooms: tuple[str, ...]) -> None:
        for listener in self.listeners:
            listener.rooms_joined(socket, rooms)

    def left(self, socket: Socket, rooms: tuple[str, ...]) -> None:
        for listener in self.listeners:
            listener.rooms_left(socket, rooms)

    # --- events (only called while event_listeners has some) -----------------------------

    def received(self, socket: Socket, event: str, args: Sequence[Any]) -> None:
        for listener in self.event_listeners:
            listener.event_received(socket, event, args)

    def sent(self, socket: Socket, data: Sequence[Any]) -> None:
        for listener in self.event_listeners:
            listener.event_sent(socket, data)

    # --- tracing (only called while trace is set) ----------------------------------------

    def trace_in(self, sid: str, data: str | bytes) -> None:
        packet_logger.debug("sid=%s in %s", sid, _shown(data))

    def trace_out(self, socket_id: str, outgoing: Outgoing) -> None:
        """As the packet is encoded for the socket's session: the packets an on_connect
        handler sends show before the CONNECT that precedes them on the wire."""
        packet_logger.debug("socket=%s out %s", socket_id, _shown_frames(outgoing.frames))

    def trace_broadcast(self, namespace: str, recipients: int, outgoing: Outgoing) -> None:
        packet_logger.debug(
            "socket=- broadcast namespace=%s recipients=%d %s",
            quote(namespace),
            recipients,
            _shown_frames(outgoing.frames),
        )


def _shown(data: str | bytes) -> str:
    if isinstance(data, bytes):
        return f"<{len(data)} bytes binary>"
    if len(data) > TRACE_CHARS:
        return f"{data[:TRACE_CHARS]!r}...({len(data)} chars)"
    return repr(data)


def _shown_frames(frames: Iterable[str | bytes]) -> str:
    # Without the Engine.IO message type ("4"), as trace_in shows what arrives.
    return " ".join(_shown(frame[1:] if isinstance(frame, str) else frame) for frame in frames)
