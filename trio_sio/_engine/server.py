"""The Engine.IO server: the session registry and the request handling of both transports."""

from __future__ import annotations

import gzip
import secrets
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

import trio

from .._errors import DisconnectReason
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
from .alarms import Alarm, Alarms
from .gc_tuning import tune_gc
from .host import BodyTooLarge, HttpRequest, HttpResponse, WebSocketClosed, WebSocketConnection
from .options import EngineOptions
from .session import EngineHandler, Session

__all__ = ["EngineServer", "EngineStatistics"]


@dataclass(frozen=True)
class EngineStatistics:
    """A snapshot of an :class:`EngineServer` (trio's ``statistics()`` convention).

    Attributes:
        sessions: sessions open now.
        polling, websocket: of those, how many use each transport.
        queued_bytes: bytes waiting in all outbound queues.
        session_tasks: tasks alive in the server's nursery (one per session, including
            sessions still finishing their disconnect handlers); 0 when idle.
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
        self.supervise = supervise
        self.options = options or EngineOptions()
        self.json: JsonCodec = json or StdlibJson()
        self._sessions: dict[str, Session] = {}
        self._nursery: trio.Nursery | None = None
        self._session_tasks = 0
        self._sessions_ended = trio.Event()
        self._flusher = _Flusher()
        self._alarms = Alarms()  # the sessions' heartbeats, and call_at
        self._upgrades = ["websocket"] if Transport.WEBSOCKET in self.options.transports else []

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
                await nursery.start(self._alarms.run, name="trio_sio.alarms")
                self._nursery = nursery
                task_status.started()
                await self._flusher.run()
        finally:
            self._nursery = None
        raise AssertionError("unreachable")  # pragma: no cover

    async def shutdown(self) -> None:
        """Close every session with ``"server shutting down"``; wait until their tasks end."""
        for session in list(self._sessions.values()):
            session._ws_close_code = 1001  # going away
            session.close(DisconnectReason.SERVER_SHUTTING_DOWN)
        while self._session_tasks:
            await self._sessions_ended.wait()

    def call_at(self, deadline: float, action: Callable[[], None]) -> Alarm:
        """Call ``action`` (synchronous) once ``deadline`` has passed on Trio's clock, on
        the timer task that also keeps the sessions' heartbeats; cancel the returned
        :class:`Alarm` if it is no longer needed. Only while :meth:`run` runs."""
        return self._alarms.call_at(deadline, action)

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is hosting sessions."""
        return self._nursery is not None

    def sessions(self) -> Iterator[Session]:
        """The open sessions."""
        return iter(list(self._sessions.values()))

    def get_session(self, sid: str) -> Session | None:
        """The open session with this id, if any."""
        return self._sessions.get(sid)

    def _session_task_started(self) -> None:
        self._session_tasks += 1

    def _session_task_ended(self) -> None:
        self._session_tasks -= 1
        if not self._session_tasks:
            self._sessions_ended.set()
            self._sessions_ended = trio.Event()

    def _forget(self, session: Session) -> None:
        if self._sessions.get(session.sid) is session:
            del self._sessions[session.sid]

    def statistics(self) -> EngineStatistics:
        """Counts of sessions and queued bytes."""
        sessions = list(self._sessions.values())
        websocket = sum(1 for s in sessions if s.transport is Transport.WEBSOCKET)
        return EngineStatistics(
            sessions=len(sessions),
            polling=len(sessions) - websocket,
            websocket=websocket,
            queued_bytes=sum(s.outbox.queued()[1] for s in sessions),
            session_tasks=self._session_tasks,
        )

    async def _open_session(self, request: HttpRequest, transport: Transport) -> Session:
        if self._nursery is None:
            raise _Unavailable
        limit = self.options.max_sessions
        if limit is not None and len(self._sessions) >= limit:
            raise _Unavailable
        allow = self.options.allow_request
        if allow is not None and not await allow(request):
            raise HandshakeError(EngineErrorCode.FORBIDDEN)
        sid = secrets.token_urlsafe(15)
        session = Session(self, sid, transport, request)
        self._sessions[sid] = session
        try:
            await self._nursery.start(session.run, name="trio_sio.session")
        except BaseException:
            self._forget(session)
            raise
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

    # --- HTTP (long-polling) -------------------------------------------------------------

    async def handle_http(self, request: HttpRequest) -> HttpResponse:
        """Answer one long-polling request (or a CORS preflight)."""
        origin = request.headers.get("origin")
        if origin is not None and has_invalid_header_char(origin):
            # Never echoed back, whatever the CORS setting (catalogue H7).
            return self._error(HandshakeError(EngineErrorCode.BAD_REQUEST, "Invalid origin"), None)
        if origin is not None and not self.options.origin_allowed(origin, request):
            return self._error(HandshakeError(EngineErrorCode.FORBIDDEN), None)
        cors = self._cors_headers(origin)
        if request.method == "OPTIONS":
            requested = request.headers.get("access-control-request-headers")
            headers = [*cors, ("Access-Control-Allow-Methods", "OPTIONS, GET, POST")]
            if requested:
                headers.append(("Access-Control-Allow-Headers", requested))
            return HttpResponse(204, b"", headers)
        try:
            query = parse_query(request.query_string)
            engine_request = validate_request(
                request.method,
                query,
                allowed_transports=self.options.transports,
                is_websocket=False,
                origin=origin,
            )
            if engine_request.sid is None:
                return await self._handshake_polling(request, cors)
            session = self._sessions.get(engine_request.sid)
            if session is None:
                raise HandshakeError(EngineErrorCode.UNKNOWN_SID)
            if session.transport is not Transport.POLLING:
                raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Transport mismatch")
            if request.method == "GET":
                try:
                    payload = await session.poll(request.wait_disconnected)
                except ProtocolError:
                    raise HandshakeError(EngineErrorCode.BAD_REQUEST) from None
                return self._text_response(request, payload, cors)
            if request.method == "POST":
                try:
                    with session.posting():
                        return await self._post(request, session, cors)
                except ProtocolError:
                    raise HandshakeError(EngineErrorCode.BAD_REQUEST) from None
            raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Bad method")
        except HandshakeError as exc:
            return self._error(exc, cors)
        except _Unavailable:
            return HttpResponse(503, b"Service Unavailable", cors)

    async def _handshake_polling(
        self, request: HttpRequest, cors: list[tuple[str, str]]
    ) -> HttpResponse:
        session = await self._open_session(request, Transport.POLLING)
        response = self._text_response(request, self._open_packet(session), cors)
        cookie = self.options.cookie
        if cookie:
            response.headers.append(
                ("Set-Cookie", f"{cookie}={session.sid}; Path=/; HttpOnly; SameSite=Lax")
            )
        return response

    async def _post(
        self, request: HttpRequest, session: Session, cors: list[tuple[str, str]]
    ) -> HttpResponse:
        if request.headers.get("content-type", "").startswith("application/octet-stream"):
            # Engine.IO v4 always sends binary as base64 text over polling.
            session.close(DisconnectReason.TRANSPORT_ERROR)
            raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Invalid content")
        assert request.read_body is not None
        raw = None
        try:
            with trio.move_on_after(self.options.http_read_timeout):
                raw = await request.read_body(self.options.max_payload)
        except BodyTooLarge:
            session.close(DisconnectReason.TRANSPORT_ERROR)
            return HttpResponse(413, b"Payload Too Large", cors)
        if raw is None:
            session.close(DisconnectReason.TRANSPORT_ERROR)
            return HttpResponse(408, b"Request Timeout", cors)
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            session.close(DisconnectReason.PARSE_ERROR)
            raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Invalid UTF-8") from None
        await session.post(body)
        return HttpResponse(200, b"ok", [("Content-Type", "text/html"), *cors])

    def _cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        if origin is None:
            return []
        headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        if self.options.cors_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers

    def _error(self, exc: HandshakeError, cors: list[tuple[str, str]] | None) -> HttpResponse:
        return HttpResponse(
            exc.http_status, exc.body(), [("Content-Type", "application/json"), *(cors or [])]
        )

    def _text_response(
        self, request: HttpRequest, payload: str, cors: list[tuple[str, str]]
    ) -> HttpResponse:
        body = payload.encode()
        headers = [("Content-Type", "text/plain; charset=UTF-8"), *cors]
        options = self.options
        if options.http_compression and len(body) >= options.compression_threshold:
            accepted = request.headers.get("accept-encoding", "")
            if "gzip" in accepted:
                body = gzip.compress(body, compresslevel=5)
                headers.append(("Content-Encoding", "gzip"))
            elif "deflate" in accepted:
                body = zlib.compress(body, 5)
                headers.append(("Content-Encoding", "deflate"))
        return HttpResponse(200, body, headers)

    # --- WebSocket -----------------------------------------------------------------------

    async def handle_websocket(self, request: HttpRequest, ws: WebSocketConnection) -> None:
        """Serve one WebSocket connection: a new session, or the upgrade of a polling one."""
        origin = request.headers.get("origin")
        try:
            if origin is not None and not self.options.origin_allowed(origin, request):
                raise HandshakeError(EngineErrorCode.FORBIDDEN)
            query = parse_query(request.query_string)
            engine_request = validate_request(
                "GET",
                query,
                allowed_transports=self.options.transports,
                is_websocket=True,
                origin=origin,
            )
            if engine_request.sid is None:
                session = await self._open_session(request, Transport.WEBSOCKET)
            else:
                session_or_none = self._sessions.get(engine_request.sid)
                if session_or_none is None:
                    raise HandshakeError(EngineErrorCode.UNKNOWN_SID)
                # A session that already upgraded (or is upgrading) gets this WebSocket
                # accepted and then closed, as engine.io does: see Session.upgrade.
                session = session_or_none
        except HandshakeError as exc:
            await ws.reject(self._error(exc, None))
            return
        except _Unavailable:
            await ws.reject(HttpResponse(503, b"Service Unavailable"))
            return
        if engine_request.sid is not None:
            await ws.accept([])
            await session.upgrade(ws)
            return
        try:
            await ws.accept([])
            await ws.send([Outgoing((self._open_packet(session),))])
        except WebSocketClosed:
            session.close(DisconnectReason.TRANSPORT_CLOSE)
            return
        except BaseException:
            session.close(DisconnectReason.TRANSPORT_CLOSE)
            raise
        await session.run_websocket(ws)


class _Flusher:
    """Writes what broadcasts queued for idle WebSocket connections, once per scheduler pass.

    A broadcast that finds a recipient idle queues the packet without waking that recipient's
    writer and hands the session to the flusher, which runs once the broadcasting task lets
    others run: all that a burst of broadcasts queued for one connection goes out in one
    ``send``, and idle recipients cost no task switch each. (A single-target send to an idle
    connection is written at once instead; nothing would join it.)
    """

    def __init__(self) -> None:
        self._sessions: list[Session] = []
        self._added = trio.lowlevel.ParkingLot()

    def add(self, session: Session) -> None:
        self._sessions.append(session)
        if self._added:
            self._added.unpark_all()

    async def run(self) -> NoReturn:
        while True:
            if not self._sessions:
                await self._added.park()
            sessions, self._sessions = self._sessions, []
            for session in sessions:
                try:
                    session._flush_deferred()
                except Exception:
                    if not session._survive_failure():
                        raise
            await trio.lowlevel.checkpoint()


class _Unavailable(Exception):
    """The server is not running, or is full."""
