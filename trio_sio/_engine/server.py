"""The Engine.IO server: handshakes, and the requests of existing sessions routed to their
transports."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

import trio

from .._errors import DisconnectReason, RefusalCause
from .._protocol import (
    EngineErrorCode,
    HandshakeError,
    JsonCodec,
    Outgoing,
    ProtocolError,
    StdlibJson,
    Transport,
    encode_open_packet,
    has_invalid_header_char,
    parse_query,
    validate_request,
)
from .alarms import Alarm
from .gc_tuning import tune_gc
from .host import HttpRequest, HttpResponse, WebSocketClosed, WebSocketConnection
from .ids import random_id
from .lifecycle import EngineLifecycle, quote
from .options import EngineOptions
from .polling import PollingTransport
from .registry import SessionRegistry
from .responses import (
    answer_poll,
    cors_headers,
    error_response,
    payload_response,
    with_extra_headers,
)
from .session import EngineHandler, Session
from .states import SessionTransport
from .websocket import WebSocketTransport, upgrade

__all__ = ["EngineServer", "EngineStatistics"]


@dataclass(frozen=True)
class EngineStatistics:
    """A snapshot of an :class:`EngineServer` (trio's ``statistics()`` convention).

    Attributes:
        sessions: sessions open now.
        polling, websocket: of those, how many use each transport.
        queued_bytes: bytes waiting in all outbound queues.
        session_tasks: sessions still running (in a task of the server's nursery, or in
            the host's task for the WebSocket they started on), including those still
            finishing their disconnect handlers; 0 when idle.
    """

    sessions: int
    polling: int
    websocket: int
    queued_bytes: int
    session_tasks: int


class EngineServer:
    """Engine.IO v4 endpoint: owns the sessions and answers the host's requests.

    It does nothing until :meth:`run` is running (sessions live in its nursery); requests
    arriving before that, or after, are answered ``503``.

    With ``supervise`` (the default) an exception escaping a session closes that session and
    is logged once; without it, it propagates and ends :meth:`run` (for tests).
    """

    def __init__(
        self,
        handler: EngineHandler,
        options: EngineOptions | None = None,
        *,
        json: JsonCodec | None = None,
        supervise: bool = True,
    ) -> None:
        self.handler = handler
        self.options = options or EngineOptions()
        self.json: JsonCodec = json or StdlibJson()
        self._sessions = SessionRegistry(handler, self.options, supervise=supervise)
        self._nursery: trio.Nursery | None = None
        self._upgrades = ["websocket"] if Transport.WEBSOCKET in self.options.transports else []
        #: Starts every new session id. ``python -m trio_sio --workers`` names the worker
        #: there (``"1."``), so that its supervisor can route a session's requests to it.
        self.sid_prefix = ""

    @property
    def supervise(self) -> bool:
        """Whether an exception escaping a session only closes that session (logged)."""
        return self._sessions.supervise

    @supervise.setter
    def supervise(self, value: bool) -> None:
        self._sessions.supervise = value

    # --- lifetime ------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Host the sessions until cancelled; then every session closes with
        ``"server shutting down"``. Use with ``nursery.start``."""
        if self._nursery is not None:
            raise RuntimeError("this Engine.IO server is already running")
        if self.options.tune_gc:
            tune_gc()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._sessions.alarms.run, name="trio_sio.alarms")
                self._nursery = nursery
                task_status.started()
                await self._sessions.fanout.run()
        finally:
            self._nursery = None
            # Those that run in their host's tasks (WebSocket from the start), not in the
            # nursery that just ended.
            for session in self._sessions:
                session.close(DisconnectReason.SERVER_SHUTTING_DOWN)
        raise AssertionError("unreachable")  # pragma: no cover

    async def shutdown(self) -> None:
        """Close every session with ``"server shutting down"``; wait until their tasks end."""
        await trio.lowlevel.checkpoint()
        for session in self._sessions:
            session.close(DisconnectReason.SERVER_SHUTTING_DOWN)
        await self._sessions.wait_tasks_ended()

    def call_at(self, deadline: float, action: Callable[[], None]) -> Alarm:
        """Call ``action`` (synchronous) once ``deadline`` has passed on Trio's clock, on
        the timer task that also keeps the sessions' heartbeats; cancel the returned
        :class:`Alarm` if it is no longer needed. Only while :meth:`run` runs."""
        return self._sessions.alarms.call_at(deadline, action)

    async def start_broadcast(self) -> None:
        """The checkpoint that starts a broadcast (:meth:`.FanOut.wait_for_polls`)."""
        await self._sessions.fanout.wait_for_polls()

    async def pace_broadcast(self) -> None:
        """Ends a broadcast (:meth:`.FanOut.pace`); never raises ``Cancelled``."""
        await self._sessions.fanout.pace()

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is hosting sessions."""
        return self._nursery is not None

    @property
    def max_payload(self) -> int:
        """The largest polling body or WebSocket message accepted (``options.max_payload``)."""
        return self.options.max_payload

    @property
    def shutdown_grace(self) -> float:
        """How long :meth:`shutdown` may take (the hosts give it that long when they stop)."""
        return 1.0

    @property
    def lifecycle(self) -> EngineLifecycle:
        """The sessions' counters, lifecycle log and listeners (internal, not stable yet)."""
        return self._sessions.lifecycle

    def sessions(self) -> Iterator[Session]:
        """The open sessions."""
        return iter(self._sessions)

    def get_session(self, sid: str) -> Session | None:
        """The open session with this id, if any."""
        return self._sessions.get(sid)

    def statistics(self) -> EngineStatistics:
        """Counts of sessions and queued bytes."""
        sessions = list(self._sessions)
        websocket = sum(1 for s in sessions if s.transport is Transport.WEBSOCKET)
        return EngineStatistics(
            sessions=len(sessions),
            polling=len(sessions) - websocket,
            websocket=websocket,
            queued_bytes=sum(s.delivery.queued()[1] for s in sessions),
            session_tasks=self._sessions.tasks,
        )

    async def _open_session(
        self, request: HttpRequest, transport: Callable[[Session], SessionTransport]
    ) -> Session:
        """A new session on the transport that ``transport`` makes for it, running in this
        server's nursery."""
        session = await self._new_session(request, transport)
        assert self._nursery is not None
        try:
            await self._nursery.start(session.run, name="trio_sio.session")
        except BaseException:
            self._sessions.session_closed(session)
            raise
        return session

    async def _new_session(
        self, request: HttpRequest, transport: Callable[[Session], SessionTransport]
    ) -> Session:
        """A new session on the transport that ``transport`` makes for it, registered, for
        the caller to run."""
        if self._nursery is None:
            raise _Unavailable
        limit = self.options.max_sessions
        if limit is not None and len(self._sessions) >= limit:
            self.lifecycle.refused(request, RefusalCause.MAX_SESSIONS, f"limit={limit}")
            raise _Unavailable
        allow = self.options.allow_request
        if allow is not None and not await allow(request):
            self.lifecycle.refused(request, RefusalCause.ALLOW_REQUEST)
            raise HandshakeError(EngineErrorCode.FORBIDDEN)
        session = Session(self._sessions, self.sid_prefix + random_id(), request)
        session.attach(transport(session))
        self._sessions.add(session)
        return session

    def _open_packet(self, session: Session) -> str:
        options = self.options
        return encode_open_packet(
            self.json,
            sid=session.sid,
            upgrades=self._upgrades if session.transport is Transport.POLLING else [],
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            max_payload=options.max_payload,
        )

    def _refuse_origin(self, request: HttpRequest, origin: str) -> None:
        self.lifecycle.refused(
            request, RefusalCause.CORS_ALLOWED_ORIGINS, f"origin={quote(origin)}"
        )

    # --- HTTP (long-polling) -------------------------------------------------------------

    async def handle_http(self, request: HttpRequest) -> HttpResponse:
        """Answer one long-polling request (or a CORS preflight)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        return with_extra_headers(self.options, request, await self._handle_http(request))

    async def _handle_http(self, request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("origin")
        if origin is not None and has_invalid_header_char(origin):
            # Never echoed back, whatever the CORS setting (catalogue H7).
            return error_response(
                HandshakeError(EngineErrorCode.BAD_REQUEST, "Invalid origin"), None
            )
        if origin is not None and not self.options.origin_allowed(origin, request):
            self._refuse_origin(request, origin)
            return error_response(HandshakeError(EngineErrorCode.FORBIDDEN), None)
        cors = cors_headers(self.options, origin)
        if request.method == "OPTIONS":
            requested = request.headers.get("access-control-request-headers")
            headers = [*cors, ("Access-Control-Allow-Methods", "OPTIONS, GET, POST")]
            if requested:
                headers.append(("Access-Control-Allow-Headers", requested))
            return HttpResponse(204, b"", headers)
        try:
            engine_request = validate_request(
                request.method,
                parse_query(request.query_string),
                allowed_transports=self.options.transports,
                is_websocket=False,
                origin=origin,
            )
            if engine_request.sid is None:
                return await self._handshake_polling(request, cors)
            session = self._sessions.get(engine_request.sid)
            if session is None:
                raise HandshakeError(EngineErrorCode.UNKNOWN_SID)
            transport = session.current_transport
            if not isinstance(transport, PollingTransport):
                raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Transport mismatch")
            if request.method == "GET":
                answer_payload = None
                if request.answer_nowait is not None:
                    answer_payload = functools.partial(answer_poll, self.options, request, cors)
                try:
                    payload = await transport.get(request.wait_disconnected, answer_payload)
                except ProtocolError:
                    raise HandshakeError(EngineErrorCode.BAD_REQUEST) from None
                return payload_response(self.options, request, payload, cors)
            if request.method == "POST":
                response = await transport.post(request)
                response.headers.extend(cors)
                return response
            raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Bad method")
        except HandshakeError as exc:
            return error_response(exc, cors)
        except _Unavailable:
            return HttpResponse(503, b"Service Unavailable", cors)

    async def _handshake_polling(
        self, request: HttpRequest, cors: list[tuple[str, str]]
    ) -> HttpResponse:
        session = await self._open_session(request, PollingTransport)
        response = payload_response(self.options, request, self._open_packet(session), cors)
        if self.options.initial_headers is not None:
            response.headers.extend(self.options.initial_headers(request))
        cookie = self.options.cookie
        if cookie:
            response.headers.append(
                ("Set-Cookie", f"{cookie}={session.sid}; Path=/; HttpOnly; SameSite=Lax")
            )
        return response

    # --- WebSocket -----------------------------------------------------------------------

    async def handle_websocket(self, request: HttpRequest, ws: WebSocketConnection) -> None:
        """Serve one WebSocket connection: a new session, or the upgrade of a polling one."""
        # Not even a session opened and closed again when cancelled (the counters would see it).
        await trio.lowlevel.checkpoint_if_cancelled()
        origin = request.headers.get("origin")
        try:
            if origin is not None and not self.options.origin_allowed(origin, request):
                self._refuse_origin(request, origin)
                raise HandshakeError(EngineErrorCode.FORBIDDEN)
            engine_request = validate_request(
                "GET",
                parse_query(request.query_string),
                allowed_transports=self.options.transports,
                is_websocket=True,
                origin=origin,
            )
            if engine_request.sid is None:
                session = await self._new_session(
                    request, functools.partial(WebSocketTransport, ws=ws)
                )
            else:
                existing = self._sessions.get(engine_request.sid)
                if existing is None:
                    raise HandshakeError(EngineErrorCode.UNKNOWN_SID)
                # A session that already upgraded (or is upgrading) gets this WebSocket
                # accepted and then closed, as engine.io does: see websocket.upgrade.
                session = existing
        except HandshakeError as exc:
            await ws.reject(error_response(exc, None))
            return
        except _Unavailable:
            await ws.reject(HttpResponse(503, b"Service Unavailable"))
            return
        if engine_request.sid is not None:
            await ws.accept(self.options.extra_headers(request, opening=False))
            await upgrade(session, ws)
            return
        transport = session.current_transport
        assert isinstance(transport, WebSocketTransport)
        try:
            await ws.accept(self.options.extra_headers(request, opening=True))
            await ws.send([Outgoing((self._open_packet(session),))])
        except WebSocketClosed:
            session.close(DisconnectReason.TRANSPORT_CLOSE)
            return
        except BaseException:
            session.close(DisconnectReason.TRANSPORT_CLOSE)
            raise
        # This task runs the session: no task of its own, nor a task switch to start one.
        await session.serve(transport.run)


class _Unavailable(Exception):
    """The server is not running, or is full."""
