"""HTTP long-polling: a session's transport from its handshake until an upgrade (or for good).

A GET waits for packets and takes them as its response; a POST carries the client's packets
in. At most one of each at a time: an overlapping request closes the session, as in
engine.io. GETs belong to the host's request tasks, not to the session; the session's
:class:`~trio_sio._engine.delivery.Delivery` releases a waiting GET as soon as packets are
queued or the session closes.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

from .._errors import Disconnected, DisconnectReason
from .._protocol import (
    EngineErrorCode,
    EnginePacketType,
    HandshakeError,
    Outgoing,
    ProtocolError,
    Transport,
    decode_payload,
    encode_payload,
)
from .delivery import DeliveryClosed
from .host import BodyTooLarge, HttpRequest, HttpResponse
from .session import Session
from .states import SessionState

__all__ = ["PYTHON_CLIENT_PACKETS_PER_POLL", "UPGRADE_CHECK_INTERVAL", "PollingTransport"]

#: During an upgrade, a waiting GET is answered with a noop at this interval from the probe,
#: so that the client can pause polling and finish the upgrade (engine.io's "check").
UPGRADE_CHECK_INTERVAL = 0.1

#: Most packets in one long-polling response to python-engineio's clients, which drop the
#: session when a payload holds more (``engineio.payload.Payload.max_decode_packets``); what
#: does not fit waits for the next GET. Other clients, as with engine.io, get everything
#: queued at once: with 16 per round trip a reader cannot keep up with a loop of broadcasts.
PYTHON_CLIENT_PACKETS_PER_POLL = 16

#: User-Agent prefixes of python-engineio's clients (aiohttp's and requests' defaults).
_PYTHON_CLIENTS = ("Python/", "python-requests/")

_MESSAGE = EnginePacketType.MESSAGE
_NOOP = EnginePacketType.NOOP.value
_CLOSE = EnginePacketType.CLOSE.value


class PollingTransport:
    """The long-polling transport of one session."""

    name = Transport.POLLING

    def __init__(self, session: Session) -> None:
        self._session = session
        self._waiting_get: trio.CancelScope | None = None
        self._answer_nowait: Callable[[str], bool] | None = None  # the waiting GET's
        self._posting = False
        self._probed_at: float | None = None  # when the upgrade's probe was answered
        self._detached_answer: str | None = None  # what a GET released by detach() says
        user_agent = session.request.headers.get("user-agent", "")
        self._max_packets = (
            PYTHON_CLIENT_PACKETS_PER_POLL if user_agent.startswith(_PYTHON_CLIENTS) else None
        )

    # --- GET -----------------------------------------------------------------------------

    async def get(
        self,
        wait_disconnected: Callable[[], Awaitable[NoReturn]] = trio.sleep_forever,
        answer_nowait: Callable[[str], bool] | None = None,
    ) -> str:
        """Serve a GET: wait for packets and return them as one payload.

        While it waits, the calling task watches the client with ``wait_disconnected`` (see
        :class:`~trio_sio._engine.host.HttpRequest`), whose exception ends the poll; the
        delivery cancels that wait when packets arrive. One task per poll.

        With ``answer_nowait`` (which writes a payload as this GET's response without
        waiting, and says whether it did), a packet sent to this client alone is answered by
        the task that sends it: this GET is over then, and its task stays in
        ``wait_disconnected`` until the host ends it.

        Raises:
            ProtocolError: a second GET while one is pending (the session is closed).
        """
        if self._waiting_get is not None:
            self._session.close(DisconnectReason.TRANSPORT_ERROR)
            raise ProtocolError("overlapping GET requests")
        delivery = self._session.delivery
        scope = self._waiting_get = trio.CancelScope()
        try:
            with scope:
                try:
                    batch = delivery.poll_nowait(self._max_packets)
                except trio.WouldBlock:
                    if self._probed_at is not None:
                        scope.deadline = self._next_upgrade_check()
                    self._answer_nowait = answer_nowait
                    delivery.wait_poll(
                        scope.cancel,
                        None if answer_nowait is None else self._answer,
                        self._max_packets,
                    )
                    try:
                        await wait_disconnected()
                    finally:
                        if self._waiting_get is scope:  # not answered (then a GET may follow)
                            delivery.stop_poll_wait()
                else:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return encode_payload(batch)
            # Released: packets arrived, the upgrade check came due, or the transport left.
            if self._detached_answer is not None:
                return self._detached_answer
            try:
                return encode_payload(delivery.poll_nowait(self._max_packets))
            except trio.WouldBlock:
                return _NOOP
        except DeliveryClosed:
            return self._detached_answer or _CLOSE
        finally:
            if self._waiting_get is scope:
                self._waiting_get = self._answer_nowait = None

    def _answer(self, batch: list[Outgoing]) -> bool:
        """The waiting GET's answer, written by the task that sends ``batch``: the GET is
        over at once, so that the client's next one (on any connection) is not taken for an
        overlapping GET while the answered one's task has yet to wake."""
        scope, answer_nowait = self._waiting_get, self._answer_nowait
        assert scope is not None
        assert answer_nowait is not None
        probing = self._probed_at is not None
        if probing and scope.cancel_called:
            return False  # its upgrade check came due: its own task answers it, and takes
        if not answer_nowait(encode_payload(batch)):
            return False
        self._waiting_get = self._answer_nowait = None
        if probing:
            scope.deadline = math.inf  # no upgrade check for an answered GET
        return True

    def _next_upgrade_check(self) -> float:
        assert self._probed_at is not None
        now = trio.current_time()
        ticks = math.floor((now - self._probed_at) / UPGRADE_CHECK_INTERVAL) + 1
        return self._probed_at + ticks * UPGRADE_CHECK_INTERVAL

    # --- the upgrade ---------------------------------------------------------------------

    def upgrade_probed(self) -> None:
        """The upgrade's probe was answered: from now on a waiting GET is answered with a
        noop at every :data:`UPGRADE_CHECK_INTERVAL` (unless packets release it first)."""
        self._probed_at = trio.current_time()
        if self._waiting_get is not None:
            self._waiting_get.deadline = self._next_upgrade_check()

    def upgrade_abandoned(self) -> None:
        """The upgrade failed: the session stays here, GETs wait as usual."""
        self._probed_at = None
        if self._waiting_get is not None:
            self._waiting_get.deadline = math.inf

    def detach(self, reason: DisconnectReason | None) -> None:
        """The session closed, or upgraded (``reason`` is ``None``): a waiting GET is
        answered now. As in engine.io: with a noop when the client closed the session, with a
        close packet otherwise (an upgrade included; official clients have no GET pending by
        then)."""
        self._detached_answer = _NOOP if reason is DisconnectReason.TRANSPORT_CLOSE else _CLOSE
        if self._waiting_get is not None:
            self._waiting_get.cancel()

    # --- POST ----------------------------------------------------------------------------

    async def post(self, request: HttpRequest) -> HttpResponse:
        """Serve a POST: read its body and deliver its packets, in order.

        Raises:
            HandshakeError: the request is refused (the session is closed).
        """
        if self._posting:
            self._session.close(DisconnectReason.TRANSPORT_ERROR)
            raise HandshakeError(EngineErrorCode.BAD_REQUEST)
        self._posting = True
        try:
            return await self._post(request)
        finally:
            self._posting = False

    async def _post(self, request: HttpRequest) -> HttpResponse:
        session = self._session
        options = session.options
        if request.headers.get("content-type", "").startswith("application/octet-stream"):
            # Engine.IO v4 always sends binary as base64 text over polling.
            session.close(DisconnectReason.TRANSPORT_ERROR)
            raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Invalid content")
        raw = request.body
        try:
            if raw is None:
                assert request.read_body is not None
                with trio.move_on_after(options.http_read_timeout):
                    raw = await request.read_body(options.max_payload)
            elif len(raw) > options.max_payload:
                raise BodyTooLarge
        except BodyTooLarge:
            # As engine.io: refused with an empty body, and the session goes on (a waiting GET
            # is answered as usual); official clients close it on this error.
            return HttpResponse(413)
        if raw is None:
            session.close(DisconnectReason.TRANSPORT_ERROR)
            return HttpResponse(408, b"Request Timeout")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            session.close(DisconnectReason.PARSE_ERROR)
            raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Invalid UTF-8") from None
        try:
            await self._deliver(body)
        except ProtocolError:
            raise HandshakeError(EngineErrorCode.BAD_REQUEST) from None
        return HttpResponse(200, b"ok", [("Content-Type", "text/html")])

    async def _deliver(self, body: str) -> None:
        session = self._session
        in_order = self._waiting_get is not None
        try:
            for packet in decode_payload(body, max_packets=session.options.max_packets_per_payload):
                if session.state is SessionState.CLOSED:
                    return
                if not in_order and packet.type is not _MESSAGE:
                    # A close (say) changes what this session's GET gets. That GET may have
                    # become readable together with this POST, on another connection: it
                    # reaches the session first, since trio runs a batch of ready tasks in
                    # random order and clients expect arrival order. (A GET already waiting
                    # leaves nothing to reorder; messages go to the socket's task, whose
                    # answers a GET takes whenever it comes.)
                    await trio.lowlevel.checkpoint()
                    in_order = True
                await session.receive(packet)
        except Disconnected:
            return  # closed while delivering: the rest of the payload has nowhere to go
        except ProtocolError as exc:
            session.refuse(exc)
            raise
