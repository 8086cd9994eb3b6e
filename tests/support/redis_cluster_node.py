"""One trio_sio node of a Redis cluster, run as its own process by tests/support/redis_nodes.py.

    python tests/support/redis_cluster_node.py --redis redis://127.0.0.1:PORT/0 --name A \
        [--adapter classic|sharded|streams] [--subscription-mode dynamic|static|dynamic-private]

Serves with hypercorn's Trio worker on a free loopback port and prints one JSON line,
``{"url": "http://127.0.0.1:PORT", "name": "A"}``, once it serves. Clients drive the cluster
operations through events (tests/js/redis_cluster.mjs is the Node side): every handler returns
what it observed, as JSON, through the acknowledgement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

# This file's directory holds a module named ``redis``: keep it off the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import trio  # noqa: E402
from hypercorn.config import Config  # noqa: E402
from hypercorn.trio import serve  # noqa: E402

import trio_sio  # noqa: E402
from trio_sio.adapters import ClusterReplies, RemoteSocket  # noqa: E402
from trio_sio.adapters._redis_base import RedisAdapterBase  # noqa: E402
from trio_sio.adapters.redis import RedisAdapter, RedisAdapterOptions  # noqa: E402
from trio_sio.adapters.redis_sharded import ShardedRedisAdapter  # noqa: E402
from trio_sio.adapters.redis_streams import RedisStreamsAdapter  # noqa: E402


def build(
    redis_url: str,
    name: str,
    requests_timeout: float,
    adapter_name: str = "classic",
    subscription_mode: str = "dynamic",
) -> trio_sio.Server:
    options = RedisAdapterOptions(requests_timeout=requests_timeout, reconnect_delay=(0.05, 0.5))
    if adapter_name == "streams":
        factory: Any = RedisStreamsAdapter.factory(redis_url, options)
    elif adapter_name == "sharded":
        factory = ShardedRedisAdapter.factory(
            redis_url,
            options,
            subscription_mode=subscription_mode,  # type: ignore[arg-type]
        )
    else:
        factory = RedisAdapter.factory(redis_url, options)
    sio = trio_sio.Server(cors_allowed_origins="*", adapter_factory=factory)
    server_events: list[list[Any]] = []

    def adapter() -> RedisAdapterBase:
        result = sio.main.adapter
        assert isinstance(result, RedisAdapterBase)
        return result

    def describe(socket: trio_sio.Socket | RemoteSocket) -> dict[str, Any]:
        remote = isinstance(socket, RemoteSocket)
        handshake = socket.handshake if remote else {"auth": socket.handshake.auth}
        return {
            "id": socket.id,
            "rooms": sorted(socket.rooms),
            "data": socket.data,
            "remote": remote,
            "handshake": handshake,
        }

    def replies_info(replies: list[Any]) -> dict[str, Any]:
        assert isinstance(replies, ClusterReplies)
        return {
            "nodes": replies.nodes,
            "answered": replies.answered,
            "answered_by": list(replies.answered_by),
            "complete": replies.complete,
        }

    @sio.on_connect
    async def on_connect(sock: trio_sio.Socket, auth: Any) -> None:
        sock.data.update(node=name, name=auth.get("name") if isinstance(auth, dict) else None)

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> str:
        sock.join(room)
        return room

    @sio.on("room-broadcast")
    async def room_broadcast(
        sock: trio_sio.Socket, room: str, payload: Any, except_rooms: list[str] | None = None
    ) -> bool:
        operator = sio.to(room)
        if except_rooms:
            operator = operator.except_(*except_rooms)
        await operator.emit("room-message", name, room, payload)
        return True

    @sio.on("fetch")
    async def fetch(sock: trio_sio.Socket, room: str | None = None) -> dict[str, Any]:
        sockets = await (sio.in_(room) if room else sio.main).fetch_sockets()
        return {"sockets": [describe(s) for s in sockets], **replies_info(sockets)}

    @sio.on("remote-join")
    async def remote_join(sock: trio_sio.Socket, sid: str, room: str) -> bool:
        await sio.in_(sid).sockets_join(room)
        return True

    @sio.on("remote-socket")
    async def remote_socket(sock: trio_sio.Socket, sid: str, op: str, arg: Any = None) -> bool:
        for target in await sio.fetch_sockets():
            if target.id == sid and isinstance(target, RemoteSocket):
                if op == "emit":
                    await target.emit("remote-emit", arg)
                elif op == "join":
                    target.join(arg)
                elif op == "leave":
                    target.leave(arg)
                elif op == "disconnect":
                    await target.disconnect()
                return True
        return False

    @sio.on("sse")
    async def sse(sock: trio_sio.Socket, event: str, *args: Any) -> bool:
        await sio.server_side_emit(event, *args)
        return True

    @sio.on("sse-ack")
    async def sse_ack(sock: trio_sio.Socket, event: str, *args: Any) -> dict[str, Any]:
        replies = await sio.server_side_emit_with_ack(event, *args)
        return {"responses": list(replies), **replies_info(replies)}

    @sio.on("sse-log")
    async def sse_log(sock: trio_sio.Socket) -> list[list[Any]]:
        return server_events

    @sio.on_server_event("hello")
    async def hello(*args: Any) -> None:
        server_events.append(list(args))

    @sio.on_server_event("ping")
    async def ping(value: Any) -> str:
        return f"pong-{name}-{value}"

    @sio.on("broadcast-ack")
    async def broadcast_ack(sock: trio_sio.Socket, room: str, payload: Any) -> dict[str, Any]:
        acks = await sio.to(room).emit_with_ack("question", payload)
        with trio.move_on_after(3):
            await acks.wait()
        return {
            "expected": acks.expected,
            "replies": sorted(acks.replies.values()),
            "remote_replies": sorted(acks.remote_replies),
            "complete": acks.complete,
            "missing_nodes": acks.missing_nodes,
        }

    @sio.on("flood")
    async def flood(sock: trio_sio.Socket, room: str, count: int, size: int) -> dict[str, Any]:
        payload = "x" * size
        operator = sio.to(room)
        started = time.perf_counter()
        for i in range(count):
            await operator.emit("flood", i, payload)
        return {"seconds": time.perf_counter() - started}

    @sio.on("stats")
    async def stats(sock: trio_sio.Socket) -> dict[str, Any]:
        return dataclasses.asdict(adapter().statistics())

    @sio.on("server-count")
    async def server_count(sock: trio_sio.Socket) -> int:
        return await adapter().server_count()

    return sio


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--requests-timeout", type=float, default=3.0)
    parser.add_argument("--adapter", choices=["classic", "sharded", "streams"], default="classic")
    parser.add_argument("--subscription-mode", default="dynamic")
    args = parser.parse_args()
    sio = build(args.redis, args.name, args.requests_timeout, args.adapter, args.subscription_mode)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(serve, trio_sio.ASGIApp(sio), config)
        url = next(u for u in urls if u.startswith("http://"))
        print(json.dumps({"url": url, "name": args.name}), flush=True)


if __name__ == "__main__":
    trio.run(main)
