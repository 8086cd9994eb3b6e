"""Testing helpers: run a :class:`~trio_sio.Server` in-process and talk to it.

The test client speaks Engine.IO/Socket.IO to the server over an in-memory WebSocket, so no
socket is opened and everything runs on Trio's clock: under pytest-trio's ``autojump_clock``
heartbeats, connect timeouts and ``fail_after`` deadlines take no real time. ::

    async def test_echo(nursery):
        async with trio_sio.testing.running(sio):
            async with trio_sio.testing.open_client(sio) as client:
                assert await client.call("echo", 1, 2) == (1, 2)

Inside :func:`running`, a handler that raises makes the test fail with that exception
(``handler_errors="raise"``) instead of being logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import trio

from ._acks import ack_arguments, ack_value
from ._client import Client
from ._client._client import _single_errors
from ._client._http import TransportFailure
from ._client._transports import MessageTransport, PacketPerMessage
from ._engine import HttpRequest
from ._errors import ConnectionRefused, Disconnected
from ._protocol import PacketType, Parser, SocketPacket
from ._server import Server
from .hosts import MemoryWebSocket

__all__ = ["ReceivedEvent", "TestClient", "connect_client", "open_client", "running"]


@asynccontextmanager
async def running(server: Server, *, raise_handler_errors: bool = True) -> AsyncIterator[Server]:
    """Run ``server`` for the duration of the block (in a nursery of its own).

    With ``raise_handler_errors`` (the default) an exception in a handler propagates and
    fails the test, rather than being logged.
    """
    if raise_handler_errors:
        server.handler_errors = "raise"
        server.engine.supervise = False
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield server
        nursery.cancel_scope.cancel()


@dataclass(frozen=True)
class ReceivedEvent:
    """An event the server sent to the test client."""

    name: str
    args: tuple[Any, ...]


class TestClient:
    """A Socket.IO client connected to one namespace of an in-process server, speaking the
    server's parser.

    Attributes:
        sid: the socket id the server assigned.
        namespace: the namespace it is connected to.
        disconnect_reason: ``"io server disconnect"`` or ``"transport close"`` once gone.
        pid: the private session id, with connection state recovery on (else ``None``).
        offset: the offset of the last recoverable event received. The server appends it to
            the event's arguments, which socket.io-client hands to its listeners; this client
            takes it off, so events arrive as the server's application sent them.
        recovered: whether the server restored the session this client came back to (see
            ``open_client(recover=...)``).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, ws: MemoryWebSocket, namespace: str, parser: Parser) -> None:
        self._ws = ws
        self.namespace = namespace
        self.sid = ""
        self.disconnect_reason: str | None = None
        self.pid: str | None = None
        self.offset: str | None = None
        self.recovered = False
        self._previous_pid: str | None = None  # the session open_client(recover=) asks for
        # The server's parser: its decoder takes the server's packets as well as clients'.
        self._parser = parser
        self._decoder = parser.decoder(max_attachments=10_000, max_binary_bytes=100_000_000)
        self._events_in, self._events_out = trio.open_memory_channel[ReceivedEvent](1000)
        self._acks: dict[int, trio.MemorySendChannel[list[Any]]] = {}
        self._ack_ids = 0
        self._handlers: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._connected = trio.Event()
        self._connect_error: dict[str, Any] | None = None
        self._gone = trio.Event()

    @property
    def connected(self) -> bool:
        """Whether the namespace is connected."""
        return self._connected.is_set() and not self._gone.is_set()

    def on(self, event: str, handler: Callable[..., Awaitable[Any]]) -> None:
        """Answer the server's ``event`` (``sock.call`` or ``emit_with_ack``) with ``handler``'s
        return value; events without a handler go to :meth:`receive`."""
        self._handlers[event] = handler

    async def _send_packet(self, packet: SocketPacket) -> None:
        try:
            for message in self._parser.encode(packet):
                await self._ws.to_server.send(
                    "4" + message if isinstance(message, str) else message
                )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise Disconnected from None

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event."""
        await self._send_packet(SocketPacket(PacketType.EVENT, self.namespace, [event, *args]))

    async def call(self, event: str, *args: Any) -> Any:
        """Send an event and wait for the server's acknowledgement (``None``, a value, or a
        tuple, like :meth:`Socket.call`)."""
        ack_id = self._ack_ids
        self._ack_ids += 1
        send, receive = trio.open_memory_channel[list[Any]](1)
        self._acks[ack_id] = send
        try:
            await self._send_packet(
                SocketPacket(PacketType.EVENT, self.namespace, [event, *args], ack_id)
            )
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def watch_disconnect() -> None:
                        await self._gone.wait()
                        scope.cancel()

                    nursery.start_soon(watch_disconnect)
                    answer = await receive.receive()
                    nursery.cancel_scope.cancel()
            if scope.cancelled_caught:
                raise Disconnected
        finally:
            self._acks.pop(ack_id, None)
        return ack_value(answer)

    async def receive(self, name: str | None = None) -> ReceivedEvent:
        """The next event from the server (skipping others when ``name`` is given).

        Raises:
            Disconnected: the connection closed first.
        """
        while True:
            try:
                event = await self._events_out.receive()
            except trio.EndOfChannel:
                raise Disconnected from None
            if name is None or event.name == name:
                return event

    async def disconnect(self) -> None:
        """Leave the namespace (the server sees ``"io client disconnect"``)."""
        if not self._gone.is_set():
            await self._send_packet(SocketPacket(PacketType.DISCONNECT, self.namespace))
            self.disconnect_reason = "io client disconnect"
            self._gone.set()

    async def wait_disconnected(self) -> str | None:
        """Wait until the server disconnects this client; returns the reason.

        A client whose unread events filled its buffer stops reading (as a slow client
        would) and learns of a closed connection from the transport alone.
        """
        async with trio.open_nursery() as nursery:

            async def transport_closed() -> None:
                await self._ws.closed.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(transport_closed)
            await self._gone.wait()
            nursery.cancel_scope.cancel()
        if not self._gone.is_set():
            return "transport close"
        return self.disconnect_reason

    async def _run(self, nursery: trio.Nursery) -> None:
        try:
            async for frame in self._ws.from_server:
                await self._handle_frame(frame, nursery)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # our side closed (the test is leaving) while a ping was being answered
        finally:
            if self.disconnect_reason is None:
                self.disconnect_reason = "transport close"
            self._gone.set()
            self._connected.set()
            await self._events_in.aclose()

    async def _handle_frame(self, frame: str | bytes, nursery: trio.Nursery) -> None:
        if isinstance(frame, str):
            kind, body = frame[:1], frame[1:]
            if kind == "2":
                await self._ws.to_server.send("3")
            elif kind == "0":
                pass
            elif kind == "4":
                packet = self._decoder.receive_text(body)
                if packet is not None:
                    await self._handle_packet(packet, nursery)
            return
        packet = self._decoder.receive_binary(frame)
        if packet is not None:
            await self._handle_packet(packet, nursery)

    async def _handle_packet(self, packet: SocketPacket, nursery: trio.Nursery) -> None:
        if packet.namespace != self.namespace:
            return
        if packet.type is PacketType.CONNECT:
            self.sid = packet.data["sid"]
            self.pid = packet.data.get("pid")
            self.recovered = self.pid is not None and self.pid == self._previous_pid
            self._connected.set()
        elif packet.type is PacketType.CONNECT_ERROR:
            self._connect_error = packet.data
            self._connected.set()
        elif packet.type is PacketType.DISCONNECT:
            self.disconnect_reason = "io server disconnect"
            self._gone.set()
        elif packet.type is PacketType.ACK:
            channel = self._acks.get(packet.id) if packet.id is not None else None
            if channel is not None:
                channel.send_nowait(packet.data)
        elif packet.type is PacketType.EVENT:
            name, *args = packet.data
            if self.pid is not None and packet.id is None and args and isinstance(args[-1], str):
                self.offset = args.pop()
            handler = self._handlers.get(name)
            if handler is not None:
                nursery.start_soon(self._answer, handler, packet.id, args)
            else:
                await self._events_in.send(ReceivedEvent(name, tuple(args)))

    async def _answer(
        self, handler: Callable[..., Awaitable[Any]], ack_id: int | None, args: list[Any]
    ) -> None:
        result = await handler(*args)
        reply = ack_arguments(result)
        if ack_id is not None and reply is not None:
            await self._send_packet(SocketPacket(PacketType.ACK, self.namespace, reply, ack_id))


@asynccontextmanager
async def open_client(
    server: Server,
    namespace: str = "/",
    *,
    auth: Mapping[str, Any] | None = None,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    recover: TestClient | None = None,
) -> AsyncIterator[TestClient]:
    """Connect a :class:`TestClient` to ``namespace`` of a running ``server``.

    With ``recover``, a client whose connection is gone, the new client asks for its session
    back (``{pid, offset}`` in CONNECT, as socket.io-client does), and
    :attr:`TestClient.recovered` says whether it got it.

    Raises:
        ConnectionRefused: the server refused the namespace (its message and data).
    """
    ws = MemoryWebSocket()
    request = _websocket_request(None, query, headers)
    client = TestClient(ws, namespace, server.parser)
    connect_auth = dict(auth) if auth else None
    if recover is not None and recover.pid is not None:
        client._previous_pid = recover.pid
        client.offset = recover.offset  # kept until a newer one arrives, as socket.io-client
        recovery = {"pid": recover.pid, "offset": recover.offset}
        connect_auth = {**recovery, **(connect_auth or {})}
    refusal: ConnectionRefused | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_websocket, request, ws)
        await ws.accepted.wait()
        if ws.rejection is not None:
            refusal = ConnectionRefused(ws.rejection.body.decode())
        else:
            opening = await ws.from_server.receive()
            assert isinstance(opening, str)
            assert opening.startswith("0"), opening
            nursery.start_soon(client._run, nursery)
            connect = SocketPacket(PacketType.CONNECT, namespace, connect_auth)
            await client._send_packet(connect)
            await client._connected.wait()
            if client._connect_error is not None:
                error = client._connect_error
                refusal = ConnectionRefused(error.get("message", ""), error.get("data"))
        try:
            if refusal is None:
                yield client
        finally:
            await ws.to_server.aclose()
            nursery.cancel_scope.cancel()
    if refusal is not None:
        raise refusal


def _websocket_request(
    sid: str | None, query: Mapping[str, str] | None, headers: Mapping[str, str] | None
) -> HttpRequest:
    """The WebSocket request of an in-memory client (for a new session, or to join ``sid``'s)."""
    params = {"EIO": "4", "transport": "websocket", **({"sid": sid} if sid else {})}
    return HttpRequest(
        method="GET",
        path="/socket.io/",
        query_string=urlencode({**params, **(query or {})}),
        headers={k.lower(): v for k, v in (headers or {}).items()},
        client=("127.0.0.1", 0),
    )


class _MemoryTransport(PacketPerMessage):
    """The client's end of a :class:`~trio_sio.hosts.MemoryWebSocket`, as the message
    transport of a :class:`~trio_sio.Client`."""

    def __init__(self, ws: MemoryWebSocket) -> None:
        self._ws = ws

    async def receive_message(self) -> str | bytes:
        try:
            return await self._ws.from_server.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise TransportFailure("the in-memory WebSocket closed", closed=True) from None

    async def send_message(self, message: str | bytes) -> None:
        try:
            await self._ws.to_server.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TransportFailure("the in-memory WebSocket closed", closed=True) from None

    async def finish(self) -> None:
        await self._ws.to_server.aclose()

    async def aclose(self) -> None:
        await self._ws.to_server.aclose()
        await self._ws.from_server.aclose()


@asynccontextmanager
async def connect_client(
    server: Server,
    client: Client,
    *,
    namespaces: Sequence[str] = ("/",),
    auth: Any = None,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Client]:
    """Connect a :class:`trio_sio.Client` to a running in-process ``server`` over an
    in-memory WebSocket, for the duration of the block: :meth:`Client.connect
    <trio_sio.Client.connect>`'s behaviour (reconnection, recovery, backpressure) without
    sockets, on Trio's clock, so that reconnection backoff and heartbeats take no real time
    under ``autojump_clock``. Every (re)connection opens a new in-memory WebSocket with
    ``query`` and ``headers`` in its request; ``auth`` is ``connect``'s.

    Raises:
        trio_sio.ConnectError: as :meth:`Client.connect <trio_sio.Client.connect>`.
    """
    with _single_errors():  # the client's errors come out as themselves, as from connect
        async with trio.open_nursery() as server_side:

            async def open_websocket(sid: str | None) -> MessageTransport:
                ws = MemoryWebSocket()
                request = _websocket_request(sid, query, headers)
                server_side.start_soon(server.handle_websocket, request, ws)
                await ws.accepted.wait()
                if ws.rejection is not None:
                    body = ws.rejection.body.decode(errors="replace")
                    raise TransportFailure(f"WebSocket refused: HTTP {ws.rejection.status} {body}")
                return _MemoryTransport(ws)

            client._open_websocket = open_websocket
            try:
                async with client.connect(
                    "http://trio-sio.testing",
                    transports=("websocket",),
                    auth=auth,
                    namespaces=namespaces,
                ):
                    yield client
            finally:
                client._open_websocket = None
                server_side.cancel_scope.cancel()
