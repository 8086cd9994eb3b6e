"""Micro-benchmark of the native host's long-polling path, per HTTP parser (issue 18).

Two measurements, each a few seconds, printed as a table:

* **parse**: µs to parse one long-poll GET and one POST (head and body, as the load generator
  writes them: one write, ``Host``, ``Accept``, ``Content-Type``, ``Content-Length``) with each
  parser of ``trio_sio/hosts/native/_parse.py`` (timeit, best of 5).
* **echo**: server CPU µs per long-polling echo (one GET and one POST on keep-alive connections
  of their own, the ``poll_echo_dedicated`` pattern), read from ``/proc`` for a server process
  on the native host with that parser; a Socket.IO ``echo`` acknowledged, so Engine.IO and
  Socket.IO are included. The client is a raw one in this process, on the other core.

::

    python benchmarks/http_micro.py                    # both parsers, 3 interleaved rounds
    python benchmarks/http_micro.py --baseline /tmp/base   # and another checkout's host

``--baseline`` adds a server importing trio_sio from another checkout (say ``git worktree add
/tmp/base main``), with its default parser, to the same interleaved rounds. Not a replacement
for ``run.py``: one client, no contention; read the ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import timeit
from typing import Any

import trio

GET = (
    b"GET /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\n"
    b"Host: 127.0.0.1:3000\r\nAccept: */*\r\n\r\n"
)
POST = (
    b"POST /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"
    b"Accept: */*\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: %d\r\n\r\n%s"
)
SID = b"AbCdEfGhIjKlMnOpQrSt"


def parse_costs(parser_name: str) -> tuple[float, float]:
    """µs per GET and per POST for one parser (a fresh parser per connection, reused)."""
    from trio_sio.hosts.native._parse import END_OF_MESSAGE, make_parser

    parser = make_parser(parser_name, 16 * 1024)  # type: ignore[arg-type]
    get = GET % SID
    body = b'421["echo",1]'
    post = POST % (SID, len(body), body)

    def one(data: bytes) -> None:
        parser.feed(data)
        while parser.next_event() is not END_OF_MESSAGE:
            pass

    results: list[float] = []
    for data in (get, post):
        number = 20_000
        best = min(timeit.repeat(functools.partial(one, data), number=number, repeat=5))
        results.append(best / number * 1e6)
    return results[0], results[1]


# --- the echo: a server process and a raw client ------------------------------------------


def serve(parser_name: str) -> None:
    import trio_sio

    print(f"serving {parser_name} from {trio_sio.__file__}", file=sys.stderr)
    sio = trio_sio.Server()

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    options: dict[str, Any] = {}
    if parser_name != "auto":
        options["http_parser"] = parser_name

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            config = trio_sio.NativeConfig(**options)
            urls = await nursery.start(
                lambda task_status: trio_sio.serve_native(
                    sio, "127.0.0.1", 0, config=config, task_status=task_status
                )
            )
            print(urls[0], flush=True)

    trio.run(main)


class Connection:
    """One keep-alive connection, one request at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def request(self, data: bytes) -> bytes:
        await self.stream.send_all(data)
        return await self.response()

    async def response(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive_some(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += await self.stream.receive_some(65536)
        self.buffer = rest[length:]
        return rest[:length]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def echo_round(port: int, pid: int, echoes: int) -> float:
    """Server CPU µs per echo over ``echoes`` echoes of one session."""
    gets = Connection(await trio.open_tcp_stream("127.0.0.1", port))
    posts = Connection(await trio.open_tcp_stream("127.0.0.1", port))
    opened = await gets.request(GET.replace(b"&sid=%s", b"") % ())
    sid = json.loads(opened[1:])["sid"].encode()

    def post(body: bytes) -> bytes:
        return POST % (sid, len(body), body)

    assert await posts.request(post(b"40")) == b"ok"
    assert (await gets.request(GET % sid)).startswith(b"40")
    for warm_up in (True, False):
        start = cpu_seconds(pid)
        for i in range(echoes // 5 if warm_up else echoes):
            await gets.stream.send_all(GET % sid)
            assert await posts.request(post(b'42%d["echo",%d]' % (i, i))) == b"ok"
            assert await gets.response() == b"43%d[%d]" % (i, i)
    spent = cpu_seconds(pid) - start
    await gets.stream.aclose()
    await posts.stream.aclose()
    return spent / echoes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parsers", default="h11,httptools")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--echoes", type=int, default=3000)
    parser.add_argument("--echo-only", action="store_true")
    parser.add_argument("--baseline", help="another checkout, served with its default parser")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        os.sched_setaffinity(0, {0})
        serve(args.serve)
        return
    names = args.parsers.split(",")
    if not args.echo_only:
        for name in names:
            get, post = parse_costs(name)
            print(f"parse  {name:9}  GET {get:6.1f} µs  POST {post:6.1f} µs")
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    servers = {}
    launches: list[tuple[str, str, dict[str, str] | None]] = [(name, name, None) for name in names]
    if args.baseline:
        launches.append(("baseline", "auto", {**os.environ, "PYTHONPATH": args.baseline}))
    for label, name, env in launches:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", name], stdout=subprocess.PIPE, text=True, env=env
        )
        assert process.stdout is not None
        servers[label] = (process, int(process.stdout.readline().rsplit(":", 1)[1]))
    try:
        costs: dict[str, list[float]] = {label: [] for label in servers}
        for _ in range(args.rounds):
            for name, (process, port) in servers.items():
                costs[name].append(trio.run(echo_round, port, process.pid, args.echoes))
        for name, values in costs.items():
            rounds = " ".join(f"{value:.0f}" for value in values)
            print(
                f"echo   {name:9}  {statistics.median(values):6.1f} µs server CPU per echo "
                f"(GET + POST; rounds: {rounds})"
            )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
