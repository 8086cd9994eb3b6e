"""The "floor": the least Engine.IO/Socket.IO an ASGI app on hypercorn's trio worker can speak
and still serve the benchmark's load generator (and socket.io-client, for the sanity check).

    hypercorn -k trio benchmarks/floor_app.py:app

It is not a server anyone should use: no heartbeat (the open packet announces a 5-minute ping
interval, so no client expects a ping during a run), no limits, no binary, no namespaces but
``/``, no validation beyond what the fixture needs, no error handling worth the name. What it
keeps is the structure any correct server on this host needs, so that its cost is the cost of
hypercorn's per-message path plus the least Python around it:

* one session object per client, with a queue and a writer (a broadcast never waits for a
  client, and a WebSocket's frames are written by one task, in order);
* JSON decoding of events and encoding of acks, the same fixture behaviour as every peer;
* the garbage-collector setting trio_sio's server applies when it starts (``tune_gc``), so
  that the comparison is of code, not of collector settings.

Comparing trio_sio with it shows how much of trio_sio's cost is trio_sio's own code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import trio
from floor_fixture import RS, Fixture, FloorSession

from trio_sio.engineio import tune_gc

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Session(FloorSession):
    __slots__ = ("frames", "wake")

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[str] = []
        self.wake = trio.Event()

    def push(self, frame: str) -> None:
        self.frames.append(frame)
        self.wake.set()

    async def take(self) -> list[str]:
        """Wait for frames and take them all."""
        while not self.frames:
            await self.wake.wait()
            self.wake = trio.Event()
        frames, self.frames = self.frames, []
        return frames


fixture: Fixture[Session] = Fixture()


async def respond(send: Send, status: int, body: str) -> None:
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=UTF-8"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
    sid = query.get("sid")
    if sid is None:
        session = Session()
        fixture.sessions[session.sid] = session
        await respond(send, 200, session.open_packet(["websocket"]))
        return
    session_or_none = fixture.sessions.get(sid)
    if session_or_none is None:
        await respond(send, 400, '{"code":1,"message":"Session ID unknown"}')
        return
    session = session_or_none
    if scope["method"] == "POST":
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        for packet in b"".join(chunks).decode().split(RS):
            fixture.handle_packet(session, packet)
        await respond(send, 200, "ok")
        return
    while not session.frames and not session.upgrading:
        await session.wake.wait()
        session.wake = trio.Event()
    if session.upgrading:
        # Released by an upgrade (as engine.io does on "2probe": the client sends "5" only
        # once its pending poll returned): what is queued belongs to the WebSocket now.
        session.wake.set()
        await respond(send, 200, "6")
        return
    frames, session.frames = session.frames, []
    await respond(send, 200, RS.join(frames))


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
    sid = query.get("sid")
    await send({"type": "websocket.accept"})
    if sid is None:
        session = Session()
        fixture.sessions[session.sid] = session
        await send({"type": "websocket.send", "text": session.open_packet([])})
    else:
        found = fixture.sessions.get(sid)
        if found is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        session = found
        while True:  # the upgrade: 2probe -> 3probe, then 5
            message = await receive()
            text = message.get("text")
            if text == "2probe":
                session.upgrading = True
                session.wake.set()  # releases a pending poll with a noop
                await send({"type": "websocket.send", "text": "3probe"})
            elif text == "5":
                break
            else:
                return

    async def writer() -> None:
        while True:
            for frame in await session.take():
                await send({"type": "websocket.send", "text": frame})

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            while True:
                message = await receive()
                text = message.get("text")
                if text is None:
                    break
                fixture.handle_packet(session, text)
            nursery.cancel_scope.cancel()
    finally:
        fixture.forget(session)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                tune_gc()
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
