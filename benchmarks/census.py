"""What an idle WebSocket session costs in memory, by allocation site (issue 18).

    python benchmarks/census.py                 # 2,000 sessions, the 25 largest sites
    python benchmarks/census.py --sessions 5000 --top 40

The benchmark fixture (``benchmarks/trio_sio_app.py``) is served in this process on the native
host. A child process opens ``--sessions`` WebSocket connections, each with its Socket.IO
connection to ``/``, and keeps them idle. ``tracemalloc`` compares the heap before and after,
each time after a full garbage collection, and the difference is divided by the number of
sessions: bytes per idle session, grouped by the line that allocated them and by package.

It answers "where does an idle connection's memory go", which RSS (``conn_ws`` in
``run.py``) cannot. ``tracemalloc`` counts Python's allocations only, so its total is a little
below RSS per connection; the difference is the allocator's own overhead and fragmentation.
"""

from __future__ import annotations

import argparse
import functools
import gc
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import trio
import trio.testing

import trio_sio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trio_sio_app import sio

#: The child: raw WebSocket clients, so that nothing of trio_sio runs on the client side.
CLIENTS = r"""
import base64, os, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])

def frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + masked

def read_until(sock, marker):
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("the server closed a connection")
        data += chunk
    return data

sockets = []
for _ in range(count):
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    read_until(sock, b'"maxPayload"')  # the 101 and the Engine.IO open packet
    sock.sendall(frame("40"))
    read_until(sock, b'40{"sid"')
    sockets.append(sock)
print("ready", flush=True)
sys.stdin.read()  # until the census is taken
"""


def _package(filename: str) -> str:
    """``trio``, ``trio_sio``, ``stdlib``...: who allocated, by the allocating file."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/trio_sio/" in filename:
        return "trio_sio"
    if filename.startswith("<"):
        return filename  # generated code: dataclass and attrs methods
    return "stdlib"


async def census(sessions: int, top: int) -> str:
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(trio_sio.serve_native, sio, "127.0.0.1", 0)
        port = int(urls[0].rsplit(":", 1)[1].split("/", 1)[0])
        gc.collect()
        before = tracemalloc.take_snapshot()
        clients: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                [sys.executable, "-c", CLIENTS, str(port), str(sessions)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
            )
        )
        assert clients.stdout is not None
        assert clients.stdin is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await clients.stdout.receive_some(64)
            if not chunk:
                raise SystemExit("the clients failed")
            line += chunk
        # Every CONNECT answered: each socket is registered; once every task waits, idle.
        assert sio.statistics().namespaces["/"].sockets == sessions
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        gc.collect()
        after = tracemalloc.take_snapshot()
        await clients.stdin.aclose()
        await clients.wait()
        nursery.cancel_scope.cancel()
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(filters).compare_to(before.filter_traces(filters), "lineno")
    total = sum(stat.size_diff for stat in diff)
    by_package: Counter[str] = Counter()
    for stat in diff:
        by_package[_package(stat.traceback[0].filename)] += stat.size_diff
    lines = [
        f"{sessions} idle WebSocket sessions, each connected to '/': "
        f"{total / sessions / 1000:.2f} KB per session (tracemalloc)",
        "",
        "by package:",
        *(
            f"  {size / sessions:8.0f} B  {name}"
            for name, size in by_package.most_common()
            if abs(size) >= sessions
        ),
        "",
        f"the {top} largest allocation sites:",
    ]
    for stat in diff[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("/work/main/")[-1]
        lines.append(
            f"  {stat.size_diff / sessions:8.0f} B  {stat.count_diff / sessions:5.1f} objects"
            f"  {where}:{frame.lineno}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    tracemalloc.start()
    print(trio.run(census, args.sessions, args.top))


if __name__ == "__main__":
    main()
