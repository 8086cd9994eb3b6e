"""The "raw floor": the least Engine.IO/Socket.IO a server on bare Trio sockets can speak and
still serve the benchmark's load generator (and socket.io-client, for the sanity check). No
hypercorn, no h11, no wsproto: just enough HTTP/1.1 and WebSocket (RFC 6455) parsed by hand.

    python benchmarks/raw_floor.py --port PORT

It is the twin of ``floor_app.py`` (the floor on hypercorn's trio worker) without the HTTP
server underneath: the most a Trio server can do on this machine with the same structure
(issue 18 measures trio_sio's native host against it). It is not a server anyone should use:
no heartbeat (the open packet announces a 5-minute ping interval, so no client expects a ping
during a run), no limits but on a request head's length, no binary, no namespaces but ``/``,
no fragmented WebSocket messages, no chunked request bodies, no TLS, no CORS, no validation
beyond what the fixture needs, no error handling worth the name (a long-poll whose client went
away stays parked until the process ends). What it keeps is the structure any correct server
needs, the same as the hypercorn floor's:

* a task per TCP connection, reading HTTP/1.1 requests on a keep-alive connection, one after
  the other, and becoming the WebSocket's reader after an upgrade;
* one session object per client, with a queue and one writer per WebSocket (a broadcast never
  waits for a client, and a WebSocket's frames are written by one task, in order);
* JSON decoding of events and encoding of acks, the same fixture behaviour as every peer:
  ``echo(*args)`` acks its arguments, ``join(room)`` joins and acks ``room``,
  ``bcast({"room", "n", "size"})`` emits ``m(i, "x" * size)`` n times to the room and acks n;
* long-polling (a waiting GET answered by later packets, batches joined with ``\\x1e``),
  WebSocket from the start, and the upgrade from polling (``2probe``, ``3probe``, ``5``);
* the garbage-collector setting trio_sio's server applies when it starts (``tune_gc``), so
  that the comparison is of code, not of collector settings.

Being a floor, it does what the fastest correct Trio server would on its hot paths, and no
more: it tries each read and write with a non-blocking system call first and waits through
Trio (``wait_readable``/``wait_writable``) only when the kernel is not ready, since Trio's
stream methods always take a turn through the scheduler even when the kernel could answer at
once (trio_sio's native host does the same); a sleeping task is woken with
``trio.lowlevel.reschedule`` rather than a fresh ``trio.Event`` per wait; a broadcast frame is
encoded once for all its WebSocket recipients.

Comparing trio_sio's native host with it shows how much of that host's cost is trio_sio's
own code, rather than Trio's and the kernel's: on round trips (echo, long-polling) and
handshakes. It is no floor for broadcasts: its one writer per WebSocket is woken for every
recipient of every broadcast, where trio_sio's flusher writes into every idle recipient's
socket from one task, without waking their writers, and so can spend less per delivery.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import socket
import sys
from typing import Any

import trio
from floor_fixture import RS, Fixture, FloorSession

from trio_sio.engineio import tune_gc

#: Bytes asked of the kernel per read.
RECEIVE_SIZE = 65_536
#: Reads the kernel answered at once (each a full buffer) before a reader lets others run.
MAX_READS_PER_TURN = 16
#: A request head longer than this ends the connection (the only limit kept: without it a
#: client that never sends a blank line would grow the buffer forever).
MAX_HEAD = 16_384

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
#: The header of an unmasked, final text frame, by payload length, for the short ones (acks,
#: broadcast events): one lookup instead of building two bytes per frame.
_SHORT_TEXT_HEADERS = [bytes((0x80 | OP_TEXT, n)) for n in range(126)]
_CLOSE_NORMAL = bytes((0x80 | OP_CLOSE, 2)) + (1000).to_bytes(2, "big")

_HEAD_END = b"\r\n\r\n"
_OK_HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: "
_NOT_FOUND_HEAD = (
    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: "
)
_BAD_HEAD = (
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: "
)


# --- the socket ------------------------------------------------------------------------------


class Connection:
    """One accepted TCP connection, read and written with non-blocking calls first."""

    __slots__ = ("maybe_more", "raw", "reads", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        tsock = stream.socket
        # A second socket object on the same descriptor, for the plain system calls: Trio's
        # own socket methods checkpoint on every call. Trio made the descriptor non-blocking,
        # so recv and send raise BlockingIOError instead of waiting. It is detached in close(),
        # so that Trio's socket remains the one that closes the descriptor.
        self.raw = socket.socket(tsock.family, tsock.type, tsock.proto, tsock.fileno())
        # Whether the kernel may already hold more bytes: after a read that did not fill the
        # buffer it most likely does not, and asking anyway costs a failed system call.
        self.maybe_more = False
        self.reads = 0

    async def receive(self) -> bytes:
        """The next bytes from the peer; ``b""`` at EOF or when the connection broke."""
        raw = self.raw
        try:
            if self.maybe_more and self.reads < MAX_READS_PER_TURN:
                try:
                    data = raw.recv(RECEIVE_SIZE)
                except BlockingIOError:
                    pass
                else:
                    self.reads += 1
                    self.maybe_more = len(data) == RECEIVE_SIZE
                    return data
            self.reads = 0
            while True:
                # Waiting takes a turn through the scheduler: others run meanwhile.
                await trio.lowlevel.wait_readable(raw)
                try:
                    data = raw.recv(RECEIVE_SIZE)
                except BlockingIOError:
                    continue
                self.maybe_more = len(data) == RECEIVE_SIZE
                return data
        except OSError:  # reset by the peer, and the like
            return b""

    async def send(self, data: bytes) -> bool:
        """All of ``data``, waiting only if the kernel's buffer is full; False if the
        connection broke."""
        raw = self.raw
        try:
            try:
                sent = raw.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return True
            view = memoryview(data)
            while sent < len(data):
                await trio.lowlevel.wait_writable(raw)
                try:
                    sent += raw.send(view[sent:])
                except BlockingIOError:
                    continue
        except OSError:
            return False
        return True

    async def close(self) -> None:
        self.raw.detach()
        await trio.aclose_forcefully(self.stream)


# --- sessions and the fixture ----------------------------------------------------------------


def text_frame(text: str) -> bytes:
    """``text`` as one unmasked, final WebSocket text frame (a server's frames are unmasked)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return _SHORT_TEXT_HEADERS[n] + data
    if n < 65_536:
        return bytes((0x80 | OP_TEXT, 126)) + n.to_bytes(2, "big") + data
    return bytes((0x80 | OP_TEXT, 127)) + n.to_bytes(8, "big") + data


class Session(FloorSession):
    """One Engine.IO client: its queue of packets for whichever transport carries it, and the
    one task (a WebSocket's writer or a pending GET) waiting for them."""

    __slots__ = ("frames", "waiter", "websocket", "wire")

    def __init__(self, *, websocket: bool) -> None:
        super().__init__()
        #: On WebSocket: the queue holds whole frames, encoded (``wire``); on polling, packets
        #: (``frames``), joined into a payload by the GET that takes them.
        self.websocket = websocket
        self.frames: list[str] = []
        self.wire: list[bytes] = []
        self.waiter: trio.lowlevel.Task | None = None

    def push(self, packet: str) -> None:
        """Queue one packet for the client and wake whoever waits for it."""
        if self.websocket:
            self.wire.append(text_frame(packet))
        else:
            self.frames.append(packet)
        self.wake()

    encode_broadcast = staticmethod(text_frame)  # the frame, once for every WebSocket

    def deliver(self, packet: str, encoded: bytes) -> None:
        if self.websocket:
            self.wire.append(encoded)
        else:
            self.frames.append(packet)
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            trio.lowlevel.reschedule(waiter)

    async def park(self) -> None:
        """Sleep until ``wake`` (or cancellation). One waiter at a time."""
        self.waiter = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def take_wire(self) -> bytes:
        """Wait for frames and take them all, as the bytes of one write."""
        while not self.wire:
            await self.park()
        wire, self.wire = self.wire, []
        return b"".join(wire)


fixture: Fixture[Session] = Fixture()


# --- HTTP/1.1 --------------------------------------------------------------------------------


def response(status_head: str, body: str) -> bytes:
    data = body.encode()
    return (status_head + str(len(data)) + "\r\n\r\n").encode() + data


def query_value(query: str, name: str) -> str | None:
    """The value of ``name`` in a query string. Engine.IO's values (sid, transport, EIO) are
    never percent-encoded, so no decoding."""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return None


async def serve_connection(stream: trio.SocketStream) -> None:
    """One TCP connection: HTTP requests one after the other, until it closes or upgrades."""
    conn = Connection(stream)
    try:
        await serve_http(conn)
    except Exception as exc:  # one client's trouble must not stop the server
        print(f"raw floor: connection failed: {exc!r}", file=sys.stderr, flush=True)
    finally:
        await conn.close()


async def serve_http(conn: Connection) -> None:
    buffer = b""
    while True:
        end = buffer.find(_HEAD_END)
        while end < 0:
            if len(buffer) > MAX_HEAD:
                return
            data = await conn.receive()
            if not data:
                return
            buffer += data
            end = buffer.find(_HEAD_END)
        lines = buffer[:end].decode("latin-1").split("\r\n")
        buffer = buffer[end + 4 :]
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            data = await conn.receive()
            if not data:
                return
            buffer += data
        body, buffer = buffer[:length], buffer[length:]

        path, _, query = target.partition("?")
        if path != "/socket.io/":
            reply = response(_NOT_FOUND_HEAD, "")
        elif headers.get("upgrade", "").lower() == "websocket":
            # The connection is the WebSocket's from here on; what the client sent after the
            # head (nothing, normally: it waits for the 101) is its first frames.
            await serve_websocket(conn, query, headers.get("sec-websocket-key", ""), buffer)
            return
        else:
            reply = await polling(method, query, body)
        if not await conn.send(reply):
            return
        if version != "HTTP/1.1" or headers.get("connection", "").lower() == "close":
            return


async def polling(method: str, query: str, body: bytes) -> bytes:
    """The response to one long-polling request."""
    sid = query_value(query, "sid")
    if sid is None:
        if query_value(query, "transport") != "polling":
            return response(_BAD_HEAD, '{"code":0,"message":"Transport unknown"}')
        session = Session(websocket=False)
        fixture.sessions[session.sid] = session
        return response(_OK_HEAD, session.open_packet(["websocket"]))
    found = fixture.sessions.get(sid)
    if found is None:
        return response(_BAD_HEAD, '{"code":1,"message":"Session ID unknown"}')
    session = found
    if session.websocket and not session.upgrading:  # a WebSocket's from the start
        return response(_BAD_HEAD, '{"code":3,"message":"Bad request"}')
    if method == "POST":
        for packet in body.decode().split(RS):
            fixture.handle_packet(session, packet)
        return response(_OK_HEAD, "ok")
    while not session.frames and not session.upgrading:
        if session.waiter is not None:  # the protocol allows one pending GET per session
            return response(_BAD_HEAD, '{"code":3,"message":"Bad request"}')
        await session.park()
    if session.upgrading:
        # Released by an upgrade (as engine.io does on "2probe": the client sends "5" only
        # once its pending poll returned): what is queued belongs to the WebSocket now.
        return response(_OK_HEAD, "6")
    frames, session.frames = session.frames, []
    return response(_OK_HEAD, RS.join(frames))


# --- WebSocket -------------------------------------------------------------------------------


class FrameReader:
    """Splits the client's bytes into frames: (opcode, unmasked payload) for each whole one."""

    __slots__ = ("buffer",)

    def __init__(self, data: bytes) -> None:
        self.buffer = data

    def feed(self, data: bytes) -> list[tuple[int, bytes]] | None:
        """The whole frames now available; None if the client broke what this floor speaks
        (an unmasked or fragmented frame)."""
        buffer = self.buffer + data if self.buffer else data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            if not first & 0x80 or not second & 0x80:
                return None  # a fragment (FIN clear), or a frame the client did not mask
            length = second & 0x7F
            at = pos + 2
            if length == 126:
                if size - at < 2:
                    break
                length = int.from_bytes(buffer[at : at + 2], "big")
                at += 2
            elif length == 127:
                if size - at < 8:
                    break
                length = int.from_bytes(buffer[at : at + 8], "big")
                at += 8
            end = at + 4 + length
            if end > size:
                break
            frames.append((first & 0x0F, unmask(buffer[at + 4 : end], buffer[at : at + 4])))
            pos = end
        self.buffer = buffer[pos:]
        return frames


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask``, as one big-integer operation (far
    cheaper in Python than a loop over bytes)."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * ((n + 3) // 4))[:n]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(n, "little")


async def serve_websocket(conn: Connection, query: str, key: str, leftover: bytes) -> None:
    """A WebSocket from its handshake to its end: a fresh session, or an upgrade of a polling
    one (the probe, then ``5``)."""
    if not key:
        await conn.send(response(_BAD_HEAD, "no Sec-WebSocket-Key"))
        return
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    handshake = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " + accept + "\r\n\r\n"
    ).encode()
    sid = query_value(query, "sid")
    if sid is None:
        session = Session(websocket=True)
        fixture.sessions[session.sid] = session
        # The 101 and the open packet in one write.
        if not await conn.send(handshake + text_frame(session.open_packet([]))):
            fixture.forget(session)
            return
        probing = False
    else:
        found = fixture.sessions.get(sid)
        if found is None or found.websocket:
            await conn.send(response(_BAD_HEAD, '{"code":1,"message":"Session ID unknown"}'))
            return
        session = found
        if not await conn.send(handshake):
            return
        probing = True

    close_reply = b""
    try:
        async with trio.open_nursery() as nursery:
            try:
                close_reply = await read_websocket(conn, session, leftover, probing, nursery)
            finally:
                nursery.cancel_scope.cancel()  # the writer, which would wait forever
    finally:
        if session.websocket:
            fixture.forget(session)
    if close_reply:
        # The writer is gone: nobody else writes now. Best effort, the connection closes next.
        await conn.send(close_reply)


async def read_websocket(
    conn: Connection, session: Session, leftover: bytes, probing: bool, nursery: trio.Nursery
) -> bytes:
    """The WebSocket's reader, until it ends: the frame to answer with (a close frame when the
    client sent one), or ``b""``. ``probing``: an upgrade, whose writer starts once the client
    sends ``5``; otherwise the writer starts here, at once."""
    if not probing:
        nursery.start_soon(write_websocket, conn, session, nursery.cancel_scope)
    reader = FrameReader(b"")
    frames = reader.feed(leftover)
    while frames is not None:
        for opcode, payload in frames:
            if opcode == OP_TEXT:
                text = payload.decode()
                if not probing:
                    fixture.handle_packet(session, text)
                elif text == "2probe":
                    session.upgrading = True
                    session.wake()  # releases a pending poll with a noop
                    # No writer yet: this task is the only one writing.
                    if not await conn.send(text_frame("3probe")):
                        return b""
                elif text == "5":
                    # The upgrade is done: what polling had not taken yet goes out on the
                    # WebSocket, first.
                    session.wire = [text_frame(packet) for packet in session.frames]
                    session.frames = []
                    session.websocket = True
                    probing = False
                    nursery.start_soon(write_websocket, conn, session, nursery.cancel_scope)
                else:
                    return b""
            elif opcode == OP_PING:
                pong = bytes((0x80 | OP_PONG, len(payload))) + payload
                if probing:
                    if not await conn.send(pong):
                        return b""
                else:  # through the writer, so that it never splits one of its frames
                    session.wire.append(pong)
                    session.wake()
            elif opcode == OP_CLOSE:
                return _CLOSE_NORMAL
            elif opcode != OP_PONG:
                return b""  # binary or a continuation: not spoken here
        data = await conn.receive()
        if not data:
            return b""
        frames = reader.feed(data)
    return b""


async def write_websocket(conn: Connection, session: Session, scope: trio.CancelScope) -> None:
    """The session's only writer of frames: everything queued, in one write at a time."""
    while True:
        data = await session.take_wire()
        if not await conn.send(data):
            scope.cancel()  # the connection broke: the reader has nothing left to do either
            return


# --- main ------------------------------------------------------------------------------------


async def serve(host: str, port: int) -> None:
    # Trio's default backlog is the largest the kernel allows: the connection ramps open
    # thousands of connections quickly.
    listeners = await trio.open_tcp_listeners(port, host=host)
    print(f"raw floor listening on http://{host}:{port}", file=sys.stderr, flush=True)
    await trio.serve_listeners(serve_connection, listeners)


def main(argv: list[str] | None = None) -> None:
    """``python benchmarks/raw_floor.py --port PORT``."""
    parser = argparse.ArgumentParser(description="the raw-Trio floor of the benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    tune_gc()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop without a traceback
        trio.run(serve, args.host, args.port)


if __name__ == "__main__":
    main()
