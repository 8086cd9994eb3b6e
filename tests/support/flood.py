"""One flooding client, run in a process of its own by ``tests/test_native_flood.py``.

A flood from inside the test's process would be paced by the server it attacks: both share
one Trio loop, so the attacker could not send while the server was busy, and the server would
never find more input waiting. From another process it is a real peer.

Usage: ``python flood.py KIND URL SECONDS``. Prints ``ready`` once connected (for WebSocket
floods: once the Engine.IO session is open), floods for ``SECONDS``, then prints one line of
JSON with what it sent and what came back, and when it started and ended
(``time.monotonic()``, the same clock in every process). Kinds:

``pipelined-get``
    ``GET /nothing-here`` requests, pipelined on one keep-alive connection; the responses are
    read and counted.
``ping``
    WebSocket pings, each with an 8-byte counter; the pongs are read, and the highest counter
    that came back tells how many pings the server got through.
``pong``
    Unsolicited pongs; every 1,000th frame is a ping with the counter, to see how far the
    server got.
``continuation``
    A text message that never ends: one first fragment, then empty continuation frames, with
    a counting ping every 1,000th frame.

The Engine.IO heartbeat (``2``) is answered (``3``) between chunks, except inside the endless
message, where data frames cannot go.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import sys
import threading
import time
from urllib.parse import urlsplit

#: Bytes written per send: frames are never split across chunks.
CHUNK = 16 * 1024
#: In the pong and continuation floods, one frame in this many is a counting ping.
MARK_EVERY = 1000
#: A mask of zeros leaves the payload as it is (clients must mask; any key will do).
MASK = b"\x00\x00\x00\x00"


def masked(first: int, payload: bytes) -> bytes:
    """A client frame of up to 125 bytes."""
    return bytes((first, 0x80 | len(payload))) + MASK + payload


def ping(counter: int) -> bytes:
    return masked(0x89, struct.pack(">Q", counter))


HEARTBEAT_ANSWER = masked(0x81, b"3")


class Flood:
    def __init__(self, kind: str, url: str, seconds: float) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        self.kind = kind
        self.host, self.port = parts.hostname, parts.port
        self.seconds = seconds
        self.sock = socket.create_connection((self.host, self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = 0  # frames or requests written into the socket
        self.answers = 0  # pongs or responses read
        self.highest = -1  # highest ping counter that came back in a pong
        self.close_code: int | None = None
        self.heartbeat_due = threading.Event()
        self.finished = threading.Event()  # the server closed the connection
        self.buffer = b""

    # --- reading ------------------------------------------------------------------------

    def recv(self) -> bytes | None:
        """What the server sent (``b""`` at EOF), or ``None`` if nothing came for a while."""
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return b""

    def read_responses(self) -> None:
        tail = b""
        marker = b"HTTP/1.1 "
        while not self.finished.is_set():
            data = self.recv()
            if data is None:
                continue
            if not data:
                break
            data = tail + data
            self.answers += data.count(marker)
            tail = data[-(len(marker) - 1) :]
        self.finished.set()

    def websocket_handshake(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\n"
                "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit("no handshake response")
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"handshake refused: {head[:40]!r}")
        opcode, payload = self.next_frame()
        if opcode != 0x1 or not payload.startswith(b"0"):
            raise SystemExit(f"no Engine.IO open packet: {payload[:40]!r}")

    def next_frame(self) -> tuple[int, bytes]:
        """The next server frame (unmasked, never fragmented by our servers); opcode -1 at EOF."""
        while True:
            buffer = self.buffer
            if len(buffer) >= 2:
                length = buffer[1] & 0x7F
                start = 2
                if length == 126:
                    start, length = 4, int.from_bytes(buffer[2:4], "big")
                elif length == 127:
                    start, length = 10, int.from_bytes(buffer[2:10], "big")
                if len(buffer) >= start + length:
                    self.buffer = buffer[start + length :]
                    return buffer[0] & 0x0F, buffer[start : start + length]
            data = self.recv()
            if data == b"":
                return -1, b""
            if data is not None:
                self.buffer += data

    def read_frames(self) -> None:
        while not self.finished.is_set():
            opcode, payload = self.next_frame()
            if opcode == -1:
                break
            if opcode == 0xA:
                self.answers += 1
                if len(payload) == 8:
                    self.highest = max(self.highest, struct.unpack(">Q", payload)[0])
            elif opcode == 0x1 and payload == b"2":
                self.heartbeat_due.set()
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                break
        self.finished.set()

    # --- writing ------------------------------------------------------------------------

    def chunks(self) -> bytes:
        kind = self.kind
        if kind == "pipelined-get":
            request = f"GET /nothing-here HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
            count = CHUNK // len(request)
            self.sent += count
            return request * count
        frames = []
        size = 0
        while size < CHUNK - 16:
            n = self.sent
            if kind == "ping" or n % MARK_EVERY == 0:
                frame = ping(n)
            elif kind == "pong":
                frame = masked(0x8A, b"")
            else:
                frame = masked(0x00, b"")
            frames.append(frame)
            size += len(frame)
            self.sent += 1
        return b"".join(frames)

    def send(self, data: bytes, deadline: float) -> bool:
        """Write all of ``data`` unless the time is up or the connection ended."""
        view = memoryview(data)
        while view:
            if time.monotonic() > deadline or self.finished.is_set():
                return False
            try:
                view = view[self.sock.send(view) :]
            except TimeoutError:
                continue
            except OSError:
                return False
        return True

    def run(self) -> dict[str, object]:
        if self.kind != "pipelined-get":
            self.websocket_handshake()
        self.sock.settimeout(0.1)
        reader = self.read_responses if self.kind == "pipelined-get" else self.read_frames
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        if self.kind == "continuation":
            self.sock.sendall(masked(0x01, b"4"))  # fin clear: the message never ends
        started = time.monotonic()
        print("ready", started, flush=True)
        deadline = started + self.seconds
        while self.send(self.chunks(), deadline):
            if self.heartbeat_due.is_set() and self.kind in ("ping", "pong"):
                self.heartbeat_due.clear()
                if not self.send(HEARTBEAT_ANSWER, deadline):
                    break
        elapsed = time.monotonic() - started
        # Answers to what was sent last may still be on the way.
        thread.join(0.2)
        self.finished.set()
        self.sock.close()
        return {
            "started": started,
            "ended": time.monotonic(),
            "kind": self.kind,
            "seconds": round(elapsed, 3),
            "sent": self.sent,
            "answers": self.answers,
            "processed": self.highest + 1 if self.kind != "pipelined-get" else self.answers,
            "close_code": self.close_code,
            "closed_early": elapsed < self.seconds - 0.05,
        }


def main() -> None:
    kind, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    print(json.dumps(Flood(kind, url, seconds).run()), flush=True)


if __name__ == "__main__":
    main()
