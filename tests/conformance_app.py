"""The conformance fixture: the app described in ``shared/conformance/CONTRACT.md``, exactly.

Run it with ``hypercorn -k trio --bind 127.0.0.1:PORT tests/conformance_app.py:app``, or on
the native Trio host with ``python tests/conformance_app.py --native --port PORT`` (add
``--workers 2`` for two processes behind the one port, sticky by session, with
``TRIO_SIO_REDIS_URL`` set: a cluster on one machine); the
official ``socket.io-protocol`` and ``engine.io-protocol`` test suites and the project's own
client tests drive it from outside.

With ``TRIO_SIO_REDIS_URL`` set (``redis://127.0.0.1:6390/0``), its namespaces use a Redis
adapter, so several copies of it (and Node servers) form one cluster:
``TRIO_SIO_REDIS_ADAPTER=classic`` (the default, Redis pub/sub), ``sharded`` (Redis 7 sharded
pub/sub, Node's ``createShardedAdapter`` in its default ``dynamic`` mode) or ``streams`` (one
Redis stream, Node's ``@socket.io/redis-streams-adapter``; with ``TRIO_SIO_RECOVERY=1`` a
client recovers on any copy); any other value stops it at startup. With
``TRIO_SIO_METRICS=1`` it also serves its Prometheus metrics at ``/metrics`` (on both hosts).
With ``TRIO_SIO_RECOVERY=1`` it has connection state recovery on (``max_disconnection_duration``
2 s): CONNECT then carries a ``pid``, and every event sent without an ack request ends with its
offset, as Node's fixture with ``connectionStateRecovery`` sends them.
With ``TRIO_SIO_PARSER=msgpack`` its packets use the msgpack parser (npm's
``socket.io-msgpack-parser``) instead of JSON; its clients must use it too.
With ``TRIO_SIO_ADMIN=1`` it serves the Socket.IO Admin UI's namespace, ``/admin``, without a
login, in development mode.
"""

from __future__ import annotations

import os
from typing import Any

import trio

import trio_sio
from trio_sio.adapters import REDIS_ADAPTERS, redis_adapter_factory
from trio_sio.engineio import EngineOptions, EngineServer, Outgoing, Session


def _cluster_options() -> dict[str, Any]:
    """The Redis adapter ``TRIO_SIO_REDIS_URL`` and ``TRIO_SIO_REDIS_ADAPTER`` (``classic``,
    the default, ``sharded`` or ``streams``) ask for; the in-memory one without a URL."""
    kind = os.environ.get("TRIO_SIO_REDIS_ADAPTER") or "classic"
    if kind not in REDIS_ADAPTERS:
        choices = ", ".join(REDIS_ADAPTERS)
        raise SystemExit(f"TRIO_SIO_REDIS_ADAPTER must be one of {choices}, not {kind!r}")
    url = os.environ.get("TRIO_SIO_REDIS_URL")
    return {"adapter_factory": redis_adapter_factory(kind, url)} if url else {}


def _recovery_options() -> dict[str, Any]:
    """Connection state recovery when ``TRIO_SIO_RECOVERY=1`` is set; off otherwise."""
    if os.environ.get("TRIO_SIO_RECOVERY") != "1":
        return {}
    recovery = trio_sio.ConnectionStateRecovery(max_disconnection_duration=2.0)
    return {"connection_state_recovery": recovery}


def _parser_options() -> dict[str, Any]:
    """The msgpack parser when ``TRIO_SIO_PARSER=msgpack`` is set; the default JSON one when
    it is unset, empty or ``json``."""
    name = os.environ.get("TRIO_SIO_PARSER", "")
    if name in ("", "json"):
        return {}
    if name != "msgpack":
        raise ValueError(f"TRIO_SIO_PARSER={name!r}: expected msgpack or json")
    return {"parser": trio_sio.MsgpackParser()}


def _routes() -> dict[str, trio_sio.hosts.Route]:
    """``/metrics`` when ``TRIO_SIO_METRICS=1`` is set; nothing more otherwise."""
    if os.environ.get("TRIO_SIO_METRICS") != "1":
        return {}
    from trio_sio.metrics import metrics_route

    return {"/metrics": metrics_route(sio)}


sio = trio_sio.Server(
    ping_interval=0.3,
    ping_timeout=0.2,
    max_payload=1_000_000,
    connect_timeout=1.0,
    cors_allowed_origins="*",
    **_cluster_options(),
    **_recovery_options(),
    **_parser_options(),
)
if os.environ.get("TRIO_SIO_ADMIN") == "1":
    import trio_sio.admin

    trio_sio.admin.instrument(sio, auth=None, mode="development")
custom = sio.of("/custom")
forbidden = sio.of("/forbidden")


async def send_auth(sock: trio_sio.Socket, auth: Any) -> None:
    await sock.emit("auth", auth)


async def message(sock: trio_sio.Socket, *args: Any) -> None:
    await sock.emit("message-back", *args)


async def message_with_ack(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
    return args


for namespace in (sio, custom):
    namespace.on_connect(send_auth)
    namespace.on("message")(message)
    namespace.on("message-with-ack")(message_with_ack)


@sio.on("join")
async def join(sock: trio_sio.Socket, room: str) -> str:
    sock.join(room)
    return room


@sio.on("leave")
async def leave(sock: trio_sio.Socket, room: str) -> str:
    sock.leave(room)
    return room


@sio.on("room-broadcast")
async def room_broadcast(sock: trio_sio.Socket, room: str, payload: Any) -> None:
    await sock.to(room).emit("room-message", room, payload)


@sio.on("request-ack")
async def request_ack(sock: trio_sio.Socket, payload: Any) -> Any:
    with trio.move_on_after(2):
        return await sock.call("ack-me", payload)
    return {"error": "timeout"}


@sio.on("disconnect-me")
async def disconnect_me(sock: trio_sio.Socket) -> None:
    await sock.disconnect()


@forbidden.use
async def refuse(sock: trio_sio.Socket, auth: Any) -> None:
    raise trio_sio.ConnectionRefused("forbidden", {"reason": "nope"})


class EngineEcho:
    """The bare Engine.IO echo at ``/engine.io/``: every message goes back unchanged."""

    def on_open(self, session: Session) -> None:
        pass

    async def on_message(self, session: Session, data: str | bytes) -> None:
        await session.send(Outgoing.message(data))

    def on_close(self, session: Session, reason: trio_sio.DisconnectReason) -> None:
        pass


echo = EngineServer(
    EngineEcho(),
    EngineOptions(
        ping_interval=0.3, ping_timeout=0.2, max_payload=1_000_000, cors_allowed_origins="*"
    ),
)

routes = _routes()
app = trio_sio.ASGIApp(sio, routes=routes, other_asgi_app=trio_sio.ASGIApp(echo, path="engine.io"))


async def serve_native(port: int, *, task_status: trio.TaskStatus[list[str]]) -> None:
    """Both endpoints on the native host (``/socket.io/`` and ``/engine.io/``), on 127.0.0.1."""
    await trio_sio.serve_native(
        sio,
        "127.0.0.1",
        port,
        endpoints={"engine.io": echo},
        routes=routes,
        task_status=task_status,
    )


def main(argv: list[str] | None = None) -> None:
    """``python tests/conformance_app.py --native --port PORT [--workers N]``: serve on the
    native host; with ``--workers N`` (and ``TRIO_SIO_REDIS_URL``), as N processes behind one
    port, sticky by session, as ``python -m trio_sio --workers N`` serves one server."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--native", action="store_true", help="serve on the native Trio host")
    parser.add_argument("--port", type=int, default=3000, help="0 picks a free port")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes on the one port; needs TRIO_SIO_REDIS_URL",
    )
    # How the supervisor starts each worker: its index and channel (as python -m trio_sio).
    parser.add_argument("--worker-channel", metavar="INDEX:FD", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.native:
        parser.error("only --native can be served this way; use hypercorn for `app`")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers == 1:
        trio_sio.run(sio, "127.0.0.1", args.port, endpoints={"engine.io": echo}, routes=routes)
        return
    if not os.environ.get("TRIO_SIO_REDIS_URL"):
        parser.error("--workers needs TRIO_SIO_REDIS_URL: broadcasts cross workers through Redis")
    _serve_workers(args.workers, args.port, args.worker_channel)


def _serve_workers(workers: int, port: int, channel: str | None) -> None:
    """The supervisor (``channel`` is ``None``: it prints ``serving on URL`` once every worker
    serves) or one worker, built as the command line's ``--workers`` is, with both endpoints
    and the routes in every worker. Logs warnings and worse only: a cluster serves hundreds of
    tests, two INFO lines per handshake would be most of its work."""
    import functools
    import sys

    # The command line's own pieces: the supervisor and worker of the native host, and its
    # run-until-SIGINT/SIGTERM loop (the fixture is a test tool, so private names are fine).
    from trio_sio._cli import _until_signalled, configure_logging
    from trio_sio.hosts.native._workers import serve_worker, supervise_workers

    configure_logging("warning")
    if channel is not None:
        index, _, fd = channel.partition(":")
        worker = functools.partial(
            serve_worker,
            sio,
            int(fd),
            int(index),
            workers,
            endpoints={"engine.io": echo},
            routes=routes,
        )
        _until_signalled(worker)
        return

    def command(index: int, fd: int) -> list[str]:
        return [
            sys.executable,
            os.path.abspath(__file__),
            "--native",
            f"--workers={workers}",
            f"--worker-channel={index}:{fd}",
        ]

    supervisor = functools.partial(supervise_workers, command, workers, "127.0.0.1", port)
    _until_signalled(supervisor, announce=True)


if __name__ == "__main__":
    main()
