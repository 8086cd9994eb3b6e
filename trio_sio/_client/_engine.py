"""One Engine.IO session seen from the client: the handshake, the heartbeat, writing in
batches, and the polling-to-WebSocket upgrade as engine.io-client does it (probe, pause
polling, ``5``, switch)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import trio

from .._errors import Disconnected, DisconnectReason
from .._protocol import (
    EnginePacket,
    EnginePacketType,
    OpenPacket,
    Outgoing,
    ProtocolError,
    StdlibJson,
    decode_open_packet,
)
from ._http import Endpoint, TransportFailure
from ._transports import MessageOpener, MessageTransport, PollingTransport, open_websocket

__all__ = ["EngineConnection", "EngineSettings", "open_engine"]

OnMessage = Callable[[str | bytes], Awaitable[None]]
_PROBE_ANSWER = EnginePacket(EnginePacketType.PONG, "probe")


@dataclass(frozen=True)
class EngineSettings:
    """What every Engine.IO session of one client shares."""

    transports: tuple[str, ...]
    headers: Sequence[tuple[str, str]]
    ssl_context: ssl.SSLContext | None
    #: Largest WebSocket message or polling response accepted, in bytes.
    max_payload: int
    #: Outgoing packets queued for the writer before ``send`` waits.
    outgoing_queue: int
    #: Opens the WebSocket instead of a connection to the endpoint (the in-memory client).
    open_websocket: MessageOpener | None = None


class EngineConnection:
    """An open Engine.IO session. :func:`open_engine` makes one and runs its tasks.

    Attributes:
        open: what the server's open packet said.
        reason: why the session ended, once it has (``ended`` is then set).
        error: the exception that ended it, if one did.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        endpoint: Endpoint,
        settings: EngineSettings,
        on_message: OnMessage,
    ) -> None:
        self._nursery = nursery
        self._endpoint = endpoint
        self._settings = settings
        self._on_message = on_message
        self._out_send, self._out_receive = trio.open_memory_channel[Outgoing](
            settings.outgoing_queue
        )
        self._write_lock = trio.Lock()
        self._last_ping = trio.current_time()
        self._early: list[EnginePacket] = []
        #: Set by close(): how the session ends, whatever ends it from then on.
        self._closing: DisconnectReason | None = None
        self.transport: PollingTransport | MessageTransport | None = None
        self.open: OpenPacket | None = None
        self.reason: DisconnectReason | None = None
        self.error: Exception | None = None
        self.ended = trio.Event()

    @property
    def transport_name(self) -> str:
        """``"polling"`` or ``"websocket"``: the transport in use now."""
        assert self.transport is not None
        return self.transport.name

    async def send(self, outgoing: Outgoing) -> None:
        """Queue packets for the writer; waits while the queue is full.

        Raises:
            Disconnected: the session has ended.
        """
        try:
            await self._out_send.send(outgoing)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Disconnected(self.reason) from self.error

    async def close(self, reason: DisconnectReason = DisconnectReason.IO_CLIENT_DISCONNECT) -> None:
        """End the session from this side: a CLOSE packet after what is queued, then the
        transport closes. Waits no longer than :attr:`heartbeat_window` for the writer to get
        there."""
        self._closing = reason
        if not self.ended.is_set():
            with trio.move_on_after(self.heartbeat_window):
                with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                    await self._out_send.send(Outgoing.control(EnginePacketType.CLOSE))
                self._out_send.close()
                await self.ended.wait()
        self.end(DisconnectReason.IO_CLIENT_DISCONNECT)

    @property
    def heartbeat_window(self) -> float:
        """The server's ``pingInterval + pingTimeout``: how long a live server may be silent,
        and how long closing may take."""
        assert self.open is not None
        return self.open.ping_interval + self.open.ping_timeout

    def end(self, reason: DisconnectReason, error: Exception | None = None) -> None:
        """Mark the session over (the first reason wins) and stop its tasks."""
        if self.ended.is_set():
            return
        if self._closing is not None:
            # Closing: the server closing its side too is no failure.
            reason, error = self._closing, None
        self.reason = reason
        self.error = error
        self.ended.set()
        # Wake anyone waiting to queue a packet, now and later.
        self._out_receive.close()
        self._nursery.cancel_scope.cancel()

    # --- opening ------------------------------------------------------------------------

    async def handshake(self) -> None:
        """Open the session on the first transport of the settings.

        Raises:
            TransportFailure: the server could not be reached or refused the session.
            ProtocolError: its first packet is no valid open packet.
        """
        settings = self._settings
        first: EnginePacket
        if settings.transports[0] == "polling":
            polling = PollingTransport(
                self._endpoint,
                settings.ssl_context,
                settings.headers,
                max_body=settings.max_payload,
            )
            self.transport = polling
            first, *self._early = await polling.poll() or [EnginePacket(EnginePacketType.NOOP)]
        else:
            ws = await self._open_websocket(sid=None)
            self.transport = ws
            first = await ws.receive()
        if first.type is not EnginePacketType.OPEN or not isinstance(first.data, str):
            raise ProtocolError("invalid open packet", f"{first.type.name} came first")
        self.open = decode_open_packet(StdlibJson(), first.data)
        if isinstance(self.transport, PollingTransport):
            self.transport.sid = self.open.sid
        self._last_ping = trio.current_time()

    async def _open_websocket(self, *, sid: str | None) -> MessageTransport:
        settings = self._settings
        if settings.open_websocket is not None:
            return await settings.open_websocket(sid)
        return await open_websocket(
            self._nursery,
            self._endpoint,
            settings.ssl_context,
            settings.headers,
            sid=sid,
            max_message=settings.max_payload,
        )

    def start(self) -> None:
        """Start reading, writing, the heartbeat watchdog and, if it can, the upgrade."""
        assert self.open is not None
        nursery = self._nursery
        nursery.start_soon(self._guarded, self._read_first)
        nursery.start_soon(self._guarded, self._write)
        nursery.start_soon(self._heartbeat)
        if (
            isinstance(self.transport, PollingTransport)
            and "websocket" in self.open.upgrades
            and "websocket" in self._settings.transports
        ):
            nursery.start_soon(self._guarded, self._upgrade)

    # --- the tasks ----------------------------------------------------------------------

    async def _guarded(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run one of the session's tasks; what ends the session ends it with its reason."""
        try:
            await task()
        except ProtocolError as exc:
            self.end(DisconnectReason.PARSE_ERROR, exc)
        except TransportFailure as exc:
            reason = DisconnectReason.TRANSPORT_CLOSE if exc.closed else None
            self.end(reason or DisconnectReason.TRANSPORT_ERROR, exc)

    async def _read_first(self) -> None:
        for packet in self._early:
            await self._deliver(packet)
        self._early = []
        assert self.transport is not None
        await self.transport.read(self._deliver)

    async def _deliver(self, packet: EnginePacket) -> None:
        kind = packet.type
        if kind is EnginePacketType.MESSAGE:
            await self._on_message(packet.data)
        elif kind is EnginePacketType.PING:
            self._last_ping = trio.current_time()
            # Closing, if the queue is closed: the server is told so by the CLOSE packet.
            with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                await self._out_send.send(Outgoing.control(EnginePacketType.PONG))
        elif kind is EnginePacketType.CLOSE:
            raise TransportFailure("the server closed the session", closed=True)
        elif kind is not EnginePacketType.NOOP:
            raise ProtocolError("unexpected packet", kind.name)

    async def _write(self) -> None:
        """Write what is queued; over polling, as many packets per POST as fit."""
        assert self.open is not None
        budget = self.open.max_payload * 3 // 4  # base64 makes binary a third larger
        carried: Outgoing | None = None
        while True:
            if carried is None:
                try:
                    carried = await self._out_receive.receive()
                except trio.ClosedResourceError:  # end() closed it: the session is over
                    return
                except trio.EndOfChannel:  # close(): everything queued is written
                    assert self.transport is not None
                    with trio.move_on_after(self.heartbeat_window):
                        await self.transport.finish()
                    self.end(DisconnectReason.IO_CLIENT_DISCONNECT)
                    return
            batch = [carried]
            size = carried.nbytes
            carried = None
            while True:
                try:
                    following = self._out_receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                if size + following.nbytes > budget:
                    carried = following
                    break
                batch.append(following)
                size += following.nbytes
            async with self._write_lock:
                assert self.transport is not None
                await self.transport.write(batch)

    async def _heartbeat(self) -> None:
        """End the session when the server has not pinged for one heartbeat and its grace."""
        window = self.heartbeat_window
        while True:
            deadline = self._last_ping + window
            if trio.current_time() >= deadline:
                error = TransportFailure(f"no ping from the server for {window:g} s")
                self.end(DisconnectReason.PING_TIMEOUT, error)
                return
            await trio.sleep_until(deadline)

    async def _upgrade(self) -> None:
        """Probe a WebSocket; if it answers, pause polling, send ``5`` and switch.

        A failed probe leaves the session on polling, as engine.io-client does.
        """
        polling = self.transport
        assert isinstance(polling, PollingTransport)
        assert self.open is not None
        try:
            ws = await self._open_websocket(sid=self.open.sid)
        except TransportFailure:
            return
        switched = False
        try:
            try:
                await ws.send_text("2probe")
                if await ws.receive() != _PROBE_ANSWER:
                    return
            except (TransportFailure, ProtocolError):
                return
            # Pausing: the poll under way returns (the server answers it at once with a
            # NOOP once probed) and its packets are delivered; then no POST is under way.
            polling.pausing = True
            await polling.paused.wait()
            async with self._write_lock:
                await ws.send_text("5")
                self.transport = ws
                switched = True
        finally:
            if not switched:
                await ws.aclose()
        await polling.aclose()
        self._nursery.start_soon(self._guarded, self._read_websocket)

    async def _read_websocket(self) -> None:
        assert self.transport is not None
        assert not isinstance(self.transport, PollingTransport)
        await self.transport.read(self._deliver)


@asynccontextmanager
async def open_engine(
    endpoint: Endpoint, settings: EngineSettings, on_message: OnMessage
) -> AsyncIterator[EngineConnection]:
    """Open an Engine.IO session and run it for the duration of the block.

    When the session ends the block is cancelled; its ``reason`` and ``error`` say why.
    The block must not raise (an exception there would come out in an exception group).

    Raises:
        TransportFailure, ProtocolError: the handshake failed.
    """
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        engine = EngineConnection(nursery, endpoint, settings, on_message)
        try:
            try:
                await engine.handshake()
            except (TransportFailure, ProtocolError) as exc:
                failure = exc
            else:
                engine.start()
                yield engine
        finally:
            # Still running means cancelled from outside: the server is told with a CLOSE
            # packet written directly (the writer is cancelled too), rather than left to
            # notice a dead connection when a heartbeat goes unanswered.
            farewell = engine.open is not None and not engine.ended.is_set()
            engine.end(engine.reason or DisconnectReason.IO_CLIENT_DISCONNECT)
            if engine.transport is not None:
                with trio.CancelScope(shield=True):
                    if farewell:
                        with (
                            trio.move_on_after(engine.heartbeat_window),
                            suppress(TransportFailure),
                        ):
                            await engine.transport.write([Outgoing.control(EnginePacketType.CLOSE)])
                    await engine.transport.aclose()
    if failure is not None:
        raise failure
