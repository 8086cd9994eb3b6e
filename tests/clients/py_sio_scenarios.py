"""Drive the Socket.IO fixture app (CONTRACT.md) with python-socketio's asyncio AsyncClient.

    python tests/clients/py_sio_scenarios.py <base_url> <polling|websocket|upgrade> <scenario>

Prints one JSON line; see scenario_support.py for the output and exit-code contract. With
transports ["polling", "websocket"] python-engineio upgrades inside ``connect()``, so "upgrade"
mode checks ``client.transport() == "websocket"`` right after connecting. With
``TRIO_SIO_PARSER=msgpack`` (the fixture app's switch) the clients use python-socketio's msgpack
serializer, and the client named in the result says so.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from typing import Any

import socketio

# The script's own directory is sys.path[0], so its sibling module imports directly.
from scenario_support import (
    Context,
    EventLog,
    Observed,
    Scenario,
    ScenarioFailure,
    check,
    check_equal,
    package_version,
    run_main,
)

NESTED: dict[str, Any] = {
    "text": "héllo wörld ✓ 日本",
    "number": 3.25,
    "negative": -7,
    "flags": [True, False, None],
    "nested": {"list": [1, "two", {"three": 3}], "empty": {}, "emptyList": []},
}

ALL_BYTES = bytes(range(256))

SERIALIZER = "msgpack" if os.environ.get("TRIO_SIO_PARSER") == "msgpack" else "default"

#: python-socketio reports a server-side DISCONNECT packet with this reason (the JS client
#: says "io server disconnect").
SERVER_DISCONNECT_REASON: str = socketio.AsyncClient.reason.SERVER_DISCONNECT


#: With connection state recovery on (the fixture's TRIO_SIO_RECOVERY=1, Node's
#: connectionStateRecovery), every event the server sends without an ack request ends with an
#: offset string, for clients that recover (python-socketio does not): not part of what the
#: scenarios check. python-socketio keeps no trace of the CONNECT's pid, so the environment says.
RECOVERY_OFFSETS = os.environ.get("TRIO_SIO_RECOVERY") == "1"
#: The recorded events the server sends (the others the client emits itself).
SERVER_EVENTS = frozenset({"auth", "message-back", "room-message"})


def room_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


class Client:
    """One AsyncClient plus a log of the events the scenarios listen to."""

    #: Events recorded on every namespace the client connects ("room-message" only exists on /).
    RECORDED = ("connect", "connect_error", "disconnect", "auth", "message-back", "room-message")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.sio = socketio.AsyncClient(reconnection=False, serializer=SERIALIZER)
        self.log = EventLog()
        self.namespaces: list[str] = []
        ctx.cleanups.append(self.sio.disconnect)

    def _recorder(self, namespace: str, event: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            if RECOVERY_OFFSETS and event in SERVER_EVENTS and args and isinstance(args[-1], str):
                args = args[:-1]
            self.log.record(namespace, event, args)

        return record

    def listen(self, event: str, namespace: str = "/") -> None:
        self.sio.on(event, self._recorder(namespace, event), namespace=namespace)

    async def connect(
        self, namespaces: list[str] | None = None, auth: object = None, *, wait: bool = True
    ) -> None:
        self.namespaces = namespaces or ["/"]
        for namespace in self.namespaces:
            for name in self.RECORDED:
                self.listen(name, namespace)
        await self.sio.connect(
            self.ctx.base_url,
            auth=auth,
            transports=self.ctx.transports,
            namespaces=self.namespaces,
            socketio_path="socket.io",
            wait=wait,
            wait_timeout=5,
        )
        if wait:
            self.check_transport()

    def check_transport(self) -> None:
        transport = self.sio.transport()
        check(
            transport == self.ctx.expected_transport,
            f"transport is {transport}, expected {self.ctx.expected_transport}",
        )

    async def emit(self, event: str, *args: Any, namespace: str = "/") -> None:
        await self.sio.emit(event, data=args, namespace=namespace)

    async def emit_ack(self, event: str, *args: Any, namespace: str = "/") -> tuple[Any, ...]:
        """Emit with an acknowledgement request; return every argument of the ack."""
        answer: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

        def on_ack(*ack_args: Any) -> None:
            if not answer.done():
                answer.set_result(ack_args)

        await self.sio.emit(event, data=args, namespace=namespace, callback=on_ack)
        return await answer

    async def echoed(self, *args: Any, namespace: str = "/") -> tuple[Any, ...]:
        await self.emit("message", *args, namespace=namespace)
        return await self.log.next("message-back", namespace)

    async def round_trip(self, tag: str, namespace: str = "/") -> None:
        """One message-with-ack round trip: the socket works and earlier packets are flushed."""
        check_equal(
            await self.emit_ack("message-with-ack", tag, namespace=namespace),
            [tag],
            f"round trip on {namespace}",
        )


async def connected_client(
    ctx: Context, namespaces: list[str] | None = None, auth: object = None
) -> Client:
    client = Client(ctx)
    await client.connect(namespaces, auth)
    return client


# ---------------------------------------------------------------------------------------------


async def scenario_auth(ctx: Context) -> Observed:
    """CONNECT payload echoed as "auth", with and without a payload, on / and /custom."""
    payload = {"token": "s3cr3t", "user": {"id": 7, "roles": ["a", "b"]}, "empty": None}
    echoed: list[object] = []
    for namespace in ["/", "/custom"]:
        for auth in [None, payload]:
            ctx.step(f"connect {namespace} with auth={auth is not None}")
            client = await connected_client(ctx, [namespace], auth)
            (got,) = await client.log.next("auth", namespace)
            check_equal(got, auth or {}, f"auth on {namespace}")
            echoed.append(got)
    return {"echoed": echoed}


async def scenario_echo(ctx: Context) -> Observed:
    """message with several args (nested, none at all) comes back as message-back."""
    counts: dict[str, int] = {}
    for namespace in ["/", "/custom"]:
        ctx.step(f"connect {namespace}")
        client = await connected_client(ctx, [namespace])
        sent: list[tuple[Any, ...]] = [
            ("hello", 42, True, None, NESTED, [1, [2, [3, [4]]]]),
            (),
            ({"only": "one"},),
            ("", 0, False, -1.5e-9, "x" * 1000),
        ]
        for i, args in enumerate(sent):
            ctx.step(f"message #{i} on {namespace}")
            check_equal(await client.echoed(*args, namespace=namespace), args, f"message-back #{i}")
        await client.round_trip("barrier", namespace)
        counts[namespace] = client.log.count("message-back", namespace)
        check(counts[namespace] == len(sent), f"{counts[namespace]} message-back on {namespace}")
    return {"message_back_counts": counts}


async def scenario_ack(ctx: Context) -> Observed:
    """message-with-ack answers ack(...args) with 0, 1 and several args; also via call()."""
    for namespace in ["/", "/custom"]:
        ctx.step(f"connect {namespace}")
        client = await connected_client(ctx, [namespace])
        for args in [(), ("one",), (1, "two", {"three": [3, 3, 3]}, None, True), (NESTED,)]:
            ctx.step(f"ack with {len(args)} args on {namespace}")
            answer = await client.emit_ack("message-with-ack", *args, namespace=namespace)
            check_equal(answer, args, f"ack for {len(args)} args on {namespace}")
        ctx.step(f"call() on {namespace}")
        reply = await client.sio.call("message-with-ack", {"call": True}, namespace, timeout=5)
        check_equal(reply, {"call": True}, "call() reply")
    return {"namespaces": ["/", "/custom"]}


async def scenario_binary(ctx: Context) -> Observed:
    """bytes at top level and nested, in events and acks."""
    ctx.step("connect")
    client = await connected_client(ctx)
    cases: list[tuple[Any, ...]] = [
        (ALL_BYTES,),
        (b"first", "text between", bytes([0, 1, 2, 255])),
        ({"file": ALL_BYTES, "meta": {"name": "f.bin", "parts": [b"p1", "p2", bytes(3)]}},),
        ([b"in a list", {"deep": {"deeper": {"deepest": b"!"}}}],),
        (b"", {"empty": b""}),
    ]
    for i, args in enumerate(cases):
        ctx.step(f"binary message #{i}")
        check_equal(await client.echoed(*args), args, f"message-back #{i}")
    for i, args in enumerate(cases):
        ctx.step(f"binary ack #{i}")
        check_equal(await client.emit_ack("message-with-ack", *args), args, f"binary ack #{i}")
    return {"binary_events": len(cases), "binary_acks": len(cases)}


async def scenario_namespaces(ctx: Context) -> Observed:
    """/ and /custom multiplexed on one Engine.IO session."""
    ctx.step("connect / and /custom together")
    client = await connected_client(ctx, ["/", "/custom"], {"which": "both"})
    for namespace in ["/", "/custom"]:
        (auth,) = await client.log.next("auth", namespace)
        check_equal(auth, {"which": "both"}, f"auth on {namespace}")
    sids = {ns: client.sio.get_sid(ns) for ns in ["/", "/custom"]}
    check(sids["/"] != sids["/custom"], f"namespace sockets need distinct ids: {sids}")
    ctx.step("messages stay in their namespace")
    check_equal(await client.echoed("from-root"), ("from-root",), "message-back on /")
    check_equal(
        await client.echoed("from-custom", namespace="/custom"),
        ("from-custom",),
        "message-back on /custom",
    )
    await client.round_trip("r")
    await client.round_trip("c", "/custom")
    check(client.log.count("message-back", "/") == 1, "one message-back on /")
    check(client.log.count("message-back", "/custom") == 1, "one message-back on /custom")
    ctx.step("acks interleaved across namespaces")
    for i in range(20):
        namespace = "/custom" if i % 2 else "/"
        answer = await client.emit_ack("message-with-ack", namespace, i, namespace=namespace)
        check_equal(answer, (namespace, i), f"interleaved ack #{i}")
    return {"sids": sids}


async def scenario_forbidden(ctx: Context) -> Observed:
    """/forbidden is refused with {"message": "forbidden", "data": {"reason": "nope"}}."""
    ctx.step("connect /forbidden alone")
    client = Client(ctx)
    try:
        await client.connect(["/forbidden"])
    except socketio.exceptions.ConnectionError:
        pass
    else:
        raise ScenarioFailure("connecting /forbidden should fail")
    check(client.log.count("connect_error", "/forbidden") == 1, "one connect_error expected")
    (error,) = client.log.seen[("/forbidden", "connect_error")][0]
    check_equal(error, {"message": "forbidden", "data": {"reason": "nope"}}, "refusal payload")

    ctx.step("connect / and /forbidden on one session")
    both = Client(ctx)
    await both.connect(["/", "/forbidden"], wait=False)
    await both.log.next("connect", "/")
    (error2,) = await both.log.next("connect_error", "/forbidden")
    check_equal(error2, {"message": "forbidden", "data": {"reason": "nope"}}, "second refusal")
    await both.round_trip("still-here")
    both.check_transport()
    return {"error": error}


async def scenario_unknown(ctx: Context) -> Observed:
    """An unknown namespace is refused ("Invalid namespace"); / on the same session lives."""
    ctx.step("connect / and /does-not-exist")
    client = Client(ctx)
    await client.connect(["/", "/does-not-exist"], wait=False)
    await client.log.next("connect", "/")
    (error,) = await client.log.next("connect_error", "/does-not-exist")
    check_equal(error, {"message": "Invalid namespace"}, "refusal payload")
    ctx.step("/ still works")
    await client.round_trip("after-unknown")
    check(client.sio.connected, "client should still be connected")
    client.check_transport()
    return {"error": error}


async def scenario_rooms(ctx: Context) -> Observed:
    """join / room-broadcast / leave with three clients."""
    ctx.step("connect three clients")
    a, b, c = [await connected_client(ctx) for _ in range(3)]
    room = room_name("room")
    ctx.step("a and b join")
    check_equal(await a.emit_ack("join", room), (room,), "join ack (a)")
    check_equal(await b.emit_ack("join", room), (room,), "join ack (b)")
    ctx.step("a broadcasts")
    payload = {"from": "a", "list": [1, 2, 3], "blob": b"\x00\x01"}
    check_equal(await a.emit_ack("room-broadcast", room, payload), (), "room-broadcast ack")
    check_equal(await b.log.next("room-message"), (room, payload), "room-message at b")
    await asyncio.gather(a.round_trip("a"), c.round_trip("c"), asyncio.sleep(0.05))
    check(a.log.count("room-message") == 0, "the sender must not get its own broadcast")
    check(c.log.count("room-message") == 0, "a non-member must not get the broadcast")
    ctx.step("b leaves, a broadcasts again")
    check_equal(await b.emit_ack("leave", room), (room,), "leave ack")
    check_equal(await a.emit_ack("room-broadcast", room, "again"), (), "ack after leave")
    await asyncio.gather(b.round_trip("b"), c.round_trip("c2"), asyncio.sleep(0.05))
    check(b.log.count("room-message") == 1, "b left the room and must not get more")
    check(c.log.count("room-message") == 0, "c never joined")
    return {"room": room}


async def scenario_request_ack(ctx: Context) -> Observed:
    """Server emits ack-me with an ack request; our answer comes back as the request's ack."""
    ctx.step("connect")
    client = Client(ctx)
    asked: list[tuple[Any, ...]] = []

    def on_ack_me(*args: Any) -> dict[str, Any]:
        asked.append(args)
        return {"answer": args[0], "extra": [1, "two"], "blob": b"bin"}

    client.sio.on("ack-me", on_ack_me)
    await client.connect()
    payloads: list[object] = [{"question": 42}, "plain", [1, {"two": 2}]]
    for payload in payloads:
        ctx.step(f"request-ack {payload!r}")
        answer = await client.emit_ack("request-ack", payload)
        expected = ({"answer": payload, "extra": [1, "two"], "blob": b"bin"},)
        check_equal(answer, expected, "answer relayed by the server")
    check_equal(asked, [(p,) for p in payloads], "ack-me payloads")
    return {"requests": len(asked)}


async def scenario_disconnect_me(ctx: Context) -> Observed:
    """disconnect-me: a server-side DISCONNECT, reported with python-socketio's reason."""
    ctx.step("connect")
    client = await connected_client(ctx)
    ctx.step("disconnect-me")
    await client.emit("disconnect-me")
    (reason,) = await client.log.next("disconnect")
    check_equal(reason, SERVER_DISCONNECT_REASON, "disconnect reason")
    check(not client.sio.connected, "client should be disconnected")
    return {"reason": reason}


async def scenario_ordering(ctx: Context) -> Observed:
    """100 quick message and message-with-ack emits arrive (and are answered) in order."""
    ctx.step("connect")
    client = await connected_client(ctx)
    count = 100
    order: list[int] = []
    done = asyncio.Event()
    # python-engineio's client aborts the session when one polling response holds more than
    # 16 packets (engineio.payload.Payload.max_decode_packets), and a server may batch every
    # pending packet into one response. Over polling keep at most 6 message/ack pairs in
    # flight (12 packets plus a ping); over websocket send all 200 packets at once.
    in_flight = asyncio.Semaphore(6 if ctx.mode == "polling" else count)

    def on_ack(n: int) -> None:
        order.append(n)
        in_flight.release()
        if len(order) == count:
            done.set()

    ctx.step("emit 100 + 100")
    for i in range(count):
        await in_flight.acquire()
        await client.sio.emit("message", i)
        await client.sio.emit("message-with-ack", i, callback=on_ack)
    ctx.step("wait for 100 acks")
    await done.wait()
    ctx.step("check the order")
    await client.round_trip("barrier")
    check_equal(order, list(range(count)), "ack order")
    backs = [args[0] for args in client.log.seen[("/", "message-back")]]
    check_equal(backs, list(range(count)), "message-back order")
    return {"acks": len(order), "message_backs": len(backs)}


async def scenario_large(ctx: Context) -> Observed:
    """A 500 kB string is echoed intact (event and ack)."""
    ctx.step("connect")
    client = await connected_client(ctx)
    text = "".join(f"{i:x}|" for i in range(120_000))[:500_000]
    ctx.step("500 kB message")
    (echoed,) = await client.echoed(text)
    check(echoed == text, f"500 kB message-back differs (length {len(echoed)})")
    ctx.step("500 kB ack")
    (acked,) = await client.emit_ack("message-with-ack", text)
    check(acked == text, "500 kB ack differs")
    return {"length": len(text)}


async def scenario_reconnect(ctx: Context) -> Observed:
    """After a server-side disconnect, connect() again and get auth again."""
    ctx.step("connect")
    auth = {"attempt": "same payload"}
    client = await connected_client(ctx, ["/"], auth)
    check_equal(await client.log.next("auth"), (auth,), "first auth")
    first_sid = client.sio.get_sid("/")
    ctx.step("server disconnects us")
    await client.emit("disconnect-me")
    check_equal(await client.log.next("disconnect"), (SERVER_DISCONNECT_REASON,), "reason")
    ctx.step("wait for the client to finish closing")
    # python-engineio refuses connect() until its read loop has ended ("Client is not in a
    # disconnected state"), which happens shortly after the disconnect event.
    for _ in range(300):
        if client.sio.eio.state == "disconnected":
            break
        await asyncio.sleep(0.01)
    else:
        raise ScenarioFailure(f"client stuck in state {client.sio.eio.state!r}")
    ctx.step("connect() again")
    await client.connect(["/"], auth)
    check_equal(await client.log.next("auth"), (auth,), "auth after reconnecting")
    second_sid = client.sio.get_sid("/")
    check(second_sid != first_sid, f"a new session should get a new id (still {first_sid})")
    await client.round_trip("after-reconnect")
    return {"first_sid": first_sid, "second_sid": second_sid}


async def scenario_heartbeat(ctx: Context) -> Observed:
    """An idle connection survives 1 s of 300 ms pings; the client keeps answering."""
    ctx.step("connect")
    client = await connected_client(ctx)
    ctx.step("stay idle for 1 s")
    await asyncio.sleep(1.0)
    check(client.log.count("disconnect") == 0, "disconnected while idle")
    check(client.sio.connected, "client should still be connected")
    await client.round_trip("after-idle")
    client.check_transport()
    return {"idle_s": 1.0}


SCENARIOS: dict[str, Scenario] = {
    "auth": scenario_auth,
    "echo": scenario_echo,
    "ack": scenario_ack,
    "binary": scenario_binary,
    "namespaces": scenario_namespaces,
    "forbidden": scenario_forbidden,
    "unknown": scenario_unknown,
    "rooms": scenario_rooms,
    "request-ack": scenario_request_ack,
    "disconnect-me": scenario_disconnect_me,
    "ordering": scenario_ordering,
    "large": scenario_large,
    "reconnect": scenario_reconnect,
    "heartbeat": scenario_heartbeat,
}

if __name__ == "__main__":
    serializer = f" (serializer {SERIALIZER})" if SERIALIZER != "default" else ""
    run_main(f"python-socketio@{package_version('python-socketio')}{serializer}", SCENARIOS)
