"""WebSocket: a session's transport from its handshake, or from an upgrade of long-polling.

The reader is the host's own task for the connection (which would otherwise only wait), one
task less per connection. A session that starts on WebSocket also runs in that task (it holds
the session's nursery), one task less again. The writer is a task of the session's nursery,
started the first time a packet cannot leave without it: the fast paths (writing into an idle
connection from the sending task, or from the flusher) belong to the session's
:class:`~trio_sio._engine.delivery.Delivery`, which this transport hands the connection to, and
while the kernel takes those writes at once no writer task is needed. Whichever of reader and
writer ends first closes the session, which cancels the other.
"""

from __future__ import annotations

import trio

from .._errors import Disconnected, DisconnectReason
from .._protocol import (
    EnginePacketType,
    Outgoing,
    ProtocolError,
    Transport,
    decode_packet,
)
from .delivery import DeliveryClosed
from .host import WebSocketClosed, WebSocketConnection
from .polling import PollingTransport
from .session import Session
from .states import SessionState, UpgradeState

__all__ = ["WebSocketTransport", "upgrade"]

_PROBE_ANSWER = Outgoing.control(EnginePacketType.PONG, "probe")
_MESSAGE = EnginePacketType.MESSAGE.value
_PONG = EnginePacketType.PONG.value

#: WebSocket close codes for the reasons a session ends with (1000 for the others).
_CLOSE_CODES = {
    DisconnectReason.SERVER_SHUTTING_DOWN: 1001,  # going away
    DisconnectReason.PARSE_ERROR: 1002,  # protocol error
}


class WebSocketTransport:
    """The WebSocket transport of one session."""

    name = Transport.WEBSOCKET

    def __init__(self, session: Session, ws: WebSocketConnection) -> None:
        self._session = session
        self._ws = ws
        # Cancelled when the session ends, for the reader of an upgraded session (a session
        # that started on this WebSocket cancels it with its nursery).
        self._reader_scope: trio.CancelScope | None = None
        self._close_code = 1000

    @property
    def connection(self) -> WebSocketConnection:
        """The host's WebSocket connection."""
        return self._ws

    def detach(self, reason: DisconnectReason | None) -> None:
        """The session closed: the reader stops, and the connection closes with a code that
        says why."""
        if reason is not None and self._close_code == 1000:
            self._close_code = _CLOSE_CODES.get(reason, 1000)
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    async def run(self) -> None:
        """Serve the session over the WebSocket until either ends, then close the WebSocket.
        Runs in the host's task for the connection: in the session's nursery when the session
        started on this WebSocket (see :meth:`Session.serve`), so the closing handshake is
        shielded from the session's end, which cancels that nursery."""
        session = self._session
        try:
            if session.state is not SessionState.CLOSED:
                session.delivery.attach_writer(self._ws, self._start_writer)
                if session.nursery.parent_task is trio.lowlevel.current_task():
                    # The session runs in this task: its end cancels this read with the
                    # nursery.
                    await self._read()
                else:
                    self._reader_scope = trio.CancelScope()
                    with self._reader_scope:
                        await self._read()
        except BaseException:
            if session.state is not SessionState.CLOSED:
                # The host cancelled its task: it is stopping. Hosts close the sessions
                # first, but an ASGI server started on its own (the hypercorn command) cannot:
                # ASGI announces nothing before it cuts the open connections, at its graceful
                # timeout. So this is the server shutting down, and the client still gets its
                # close frame (1001).
                session.close(DisconnectReason.SERVER_SHUTTING_DOWN)
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self._ws.close(self._close_code)
                raise
            # The session ended, which cancelled its nursery, this task's too when the session
            # started here: the connection closes as usual.
            await self._close()
            raise
        await self._close()

    async def _close(self) -> None:
        with trio.CancelScope(shield=True):
            await self._ws.close(self._close_code)

    def _start_writer(self) -> None:
        self._session.nursery.start_soon(self._write, name="trio_sio.ws_writer")

    async def _write(self) -> None:
        session = self._session
        take = session.delivery.take
        send = self._ws.send
        try:
            while True:
                await send(await take())
        except DeliveryClosed:
            # A graceful close finished draining (or the session is gone).
            session.close(session.close_reason or DisconnectReason.FORCED_CLOSE)
        except WebSocketClosed:
            session.close(DisconnectReason.TRANSPORT_CLOSE)
        except Exception as exc:
            if not session.survive_failure(exc):
                raise

    async def _read(self) -> None:
        session = self._session
        ws = self._ws
        max_payload = session.options.max_payload
        on_message = session.handler.on_message
        heartbeat = session.heartbeat
        try:
            while True:
                frame = await ws.receive()
                if len(frame) > max_payload:
                    self._close_code = 1009
                    session.close(DisconnectReason.TRANSPORT_ERROR)
                    return
                if heartbeat.refreshable and frame != _PONG:
                    heartbeat.refresh()
                if frame.__class__ is str and frame.startswith(_MESSAGE):
                    # A text message, the hot path: no packet made for it (decode_packet
                    # would make EnginePacket(MESSAGE, frame[1:])), nor Session.receive's call.
                    await on_message(session, frame[1:])
                    continue
                packet = decode_packet(frame)
                if packet.type is EnginePacketType.MESSAGE:
                    await on_message(session, packet.data)
                else:
                    await session.receive(packet)
        except Disconnected:
            pass  # the session closed while the application handled a message
        except WebSocketClosed as closed:
            # 1009: the host refused a message over its size limit, like our check above.
            too_big = closed.code == 1009
            session.close(
                DisconnectReason.TRANSPORT_ERROR if too_big else DisconnectReason.TRANSPORT_CLOSE
            )
        except ProtocolError as exc:
            session.refuse(exc)
        except Exception as exc:
            if not session.survive_failure(exc):
                raise


async def upgrade(session: Session, ws: WebSocketConnection) -> None:
    """Take over an accepted WebSocket that wants to upgrade a polling session.

    Expects ``2probe`` (answered ``3probe``; from then on a waiting GET is released with a
    noop every 100 ms, so the client can pause polling), then ``5``, within
    ``upgrade_timeout``. Then the session swaps its transport and runs over the WebSocket.
    Otherwise the WebSocket is closed and the session goes on over long-polling.
    """
    polling = session.current_transport
    if (
        not isinstance(polling, PollingTransport)
        or session.upgrade is not UpgradeState.NONE
        or session.state is not SessionState.OPEN
    ):
        await ws.close(1008)
        return
    session.upgrade = UpgradeState.PROBING
    upgraded = False
    try:
        with trio.move_on_after(session.options.upgrade_timeout):
            if await ws.receive() == "2probe":
                await ws.send([_PROBE_ANSWER])
                session.upgrade = UpgradeState.PROBED
                polling.upgrade_probed()
                upgraded = await ws.receive() == "5" and session.state is SessionState.OPEN
    except WebSocketClosed:
        pass
    finally:
        session.upgrade = UpgradeState.NONE
        if not upgraded:
            polling.upgrade_abandoned()
    if not upgraded:
        await ws.close(1002)
        return
    transport = WebSocketTransport(session, ws)
    session.attach(transport)  # the polling transport lets go first, in the same step
    await transport.run()
