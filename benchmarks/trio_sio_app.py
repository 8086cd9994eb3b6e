"""The benchmark fixture on trio_sio (issue 7): the same behaviour as every peer's fixture.

Run it from the repository root with::

    hypercorn -k trio benchmarks/trio_sio_app.py:app     # the ASGI host
    python benchmarks/trio_sio_app.py --native --port PORT  # the native Trio host
    python -m trio_sio benchmarks/trio_sio_app.py:sio --workers 2 --port PORT  # (Redis below)

Namespace ``/``:

* ``echo(*args)`` acknowledges with its arguments;
* ``join(room)`` joins ``room`` and acknowledges with ``room``;
* ``bcast({"room": r, "n": n, "size": s})`` emits ``m(i, "x" * s)`` for ``i`` in ``0..n-1`` to
  room ``r``, then acknowledges with ``n``.

With ``TRIO_SIO_BENCH_ADMIN=development`` (or ``production``) it also serves the Socket.IO
Admin UI's namespace (no login), to measure what instrumenting costs against the same run
without it.

With ``BENCH_REDIS_URL`` set (``redis://127.0.0.1:PORT/0``), it broadcasts through a Redis
adapter, with its default options: ``BENCH_REDIS_ADAPTER=classic`` (the default,
:class:`~trio_sio.adapters.redis.RedisAdapter`), ``sharded``
(:class:`~trio_sio.adapters.redis_sharded.ShardedRedisAdapter`) or ``streams``
(:class:`~trio_sio.adapters.redis_streams.RedisStreamsAdapter`); Node's fixture
(``js/fixture.mjs``) reads the same variables. Several processes on one Redis are then one
cluster, and ``--workers`` accepts the fixture.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import trio_sio
from trio_sio.adapters import REDIS_ADAPTERS, redis_adapter_factory


def _adapter_options() -> dict[str, Any]:
    """The Redis adapter ``BENCH_REDIS_URL`` and ``BENCH_REDIS_ADAPTER`` (``classic``, the default,
    ``sharded`` or ``streams``) ask for; the in-memory one without a URL."""
    kind = os.environ.get("BENCH_REDIS_ADAPTER") or "classic"
    if kind not in REDIS_ADAPTERS:
        choices = ", ".join(REDIS_ADAPTERS)
        raise SystemExit(f"BENCH_REDIS_ADAPTER must be one of {choices}, not {kind!r}")
    url = os.environ.get("BENCH_REDIS_URL")
    return {"adapter_factory": redis_adapter_factory(kind, url)} if url else {}


sio = trio_sio.Server(
    # Any browser origin may connect: the load generator sends no Origin header, but a page
    # used to look at the fixture by hand would.
    cors_allowed_origins="*",
    # Everything else is the default, on purpose: the benchmark measures what users get.
    # The default outbound bound (4096 packets / 4 MiB per client) is already generous for
    # the broadcast scenario, which keeps at most one ``bcast`` (n <= a few hundred small
    # packets) in flight per recipient; raising it would only hide a slow-consumer drop,
    # which the load generator would report as missing deliveries.
    **_adapter_options(),
)

admin_mode = os.environ.get("TRIO_SIO_BENCH_ADMIN")
if admin_mode:
    import trio_sio.admin

    trio_sio.admin.instrument(sio, auth=None, mode=admin_mode)  # type: ignore[arg-type]


@sio.on("echo")
async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
    return args


@sio.on("join")
async def join(sock: trio_sio.Socket, room: str) -> str:
    sock.join(room)
    return room


@sio.on("bcast")
async def bcast(sock: trio_sio.Socket, spec: dict[str, Any]) -> int:
    room: str = spec["room"]
    n: int = spec["n"]
    payload = "x" * spec["size"]
    target = sio.to(room)
    for i in range(n):
        await target.emit("m", i, payload)
    return n


app = trio_sio.ASGIApp(sio)


def main(argv: list[str] | None = None) -> None:
    """``python benchmarks/trio_sio_app.py --native --port PORT``: the native host."""
    parser = argparse.ArgumentParser(description="the trio_sio benchmark fixture")
    parser.add_argument("--native", action="store_true", help="serve on the native Trio host")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument(
        "--log-level",
        default="info",
        help="as trio_sio.run's (default %(default)s, what users get; warning: no lifecycle lines)",
    )
    args = parser.parse_args(argv)
    if not args.native:
        parser.error("only --native can be served this way; use hypercorn for `app`")
    trio_sio.run(sio, "127.0.0.1", args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
