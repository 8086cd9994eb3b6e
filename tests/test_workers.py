"""``python -m trio_sio MODULE:SERVER --workers 2``: several processes on one port.

Each test starts the command line as users do (tests/support/workers_app.py, broadcasting
through a private ``redis-server`` with the classic Redis adapter) and drives it with real
clients: socket.io-client under Node (tests/js/workers_scenarios.mjs) and raw HTTP requests on
one keep-alive connection.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from support.clients import JS_DIR, NODE, requires_node, run_scenario
from support.http import connect
from support.processes import Child, child
from support.redis import REDIS_MISSING, RedisServer

APP = "tests/support/workers_app.py"
#: Generous: 200 clients on a busy 2-core machine, and the workers' start.
BUDGET_S = 60


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if REDIS_MISSING is not None:
        pytest.skip(REDIS_MISSING)
    redis = RedisServer()
    try:
        redis.start()
        yield redis.url
    finally:
        redis.close()


@asynccontextmanager
async def workers(redis_url: str, count: int = 2) -> AsyncIterator[tuple[Child, str]]:
    """The supervisor and its URL, once every worker serves; stopped with Ctrl+C after the
    block, which must end it cleanly."""
    os.environ["TRIO_SIO_REDIS_URL"] = redis_url
    try:
        async with child(
            "-m", "trio_sio", f"{APP}:sio", "--workers", str(count), "--port", "0",
            # The output is read only until "serving on": INFO lines (two per handshake)
            # would fill the pipe and stall the workers.
            "--log-level", "warning",
            budget_s=BUDGET_S,
        ) as supervisor:  # fmt: skip
            url = (await supervisor.wait_for(r"serving on (\S+)"))[1]
            yield supervisor, url
            assert await supervisor.interrupt() == 0, supervisor.output
    finally:
        del os.environ["TRIO_SIO_REDIS_URL"]


async def test_workers_need_a_cluster_adapter() -> None:
    async with child("-m", "trio_sio", f"{APP}:lonely", "--workers", "2") as process:
        assert await process.wait() == 2
    assert "--workers 2 needs a cluster adapter" in process.output


async def test_each_request_of_a_keep_alive_connection_reaches_its_session(
    redis_url: str,
) -> None:
    """Two sessions, one per worker, then requests of both alternating on one connection:
    each worker hands the other's requests back to the supervisor."""
    async with workers(redis_url) as (_, url):
        sids = []
        for _ in range(8):  # round-robin: both workers make sessions
            async with connect(url) as connection:
                opened = await connection.request("GET", "/socket.io/?EIO=4&transport=polling")
                sids.append(json.loads(opened.body[1:])["sid"])  # after the "0" (open)
        owners = {sid.partition(".")[0] for sid in sids}
        assert owners == {"0", "1"}, sids
        async with connect(url) as connection:
            for sid in sids:
                posted = await connection.request(
                    "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"40"
                )
                assert (posted.status, posted.body) == (200, b"ok")
            for sid in sids:
                polled = await connection.request(
                    "GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}"
                )
                assert polled.status == 200
                assert polled.body.startswith(b'40{"sid":'), polled.body


async def test_every_endpoint_of_a_worker_names_it_in_its_sids(redis_url: str) -> None:
    """The conformance fixture's ``--workers 2`` serves ``/engine.io/`` (an Engine.IO server
    beside the Socket.IO one) in each worker: its polling sessions, too, are routed by sid to
    their worker, whichever connection their requests come on."""
    os.environ["TRIO_SIO_REDIS_URL"] = redis_url
    try:
        async with child(
            "tests/conformance_app.py", "--native", "--workers", "2", "--port", "0",
            budget_s=BUDGET_S,
        ) as supervisor:  # fmt: skip
            url = (await supervisor.wait_for(r"serving on (\S+)"))[1]
            sids = []
            for _ in range(4):  # round-robin: both workers make sessions
                async with connect(url) as connection:
                    opened = await connection.request("GET", "/engine.io/?EIO=4&transport=polling")
                    sids.append(json.loads(opened.body[1:])["sid"])
            assert {sid.partition(".")[0] for sid in sids} == {"0", "1"}, sids
            async with connect(url) as connection:
                for sid in sids:
                    query = f"/engine.io/?EIO=4&transport=polling&sid={sid}"
                    posted = await connection.request("POST", query, f"4{sid}".encode())
                    assert (posted.status, posted.body) == (200, b"ok")
                    polled = await connection.request("GET", query)
                    assert (polled.status, polled.body) == (200, f"4{sid}".encode())
            assert await supervisor.interrupt() == 0, supervisor.output
    finally:
        del os.environ["TRIO_SIO_REDIS_URL"]


async def test_the_conformance_fixture_needs_redis_for_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRIO_SIO_REDIS_URL", raising=False)
    async with child("tests/conformance_app.py", "--native", "--workers", "2") as process:
        assert await process.wait() == 2
    assert "--workers needs TRIO_SIO_REDIS_URL" in process.output


@requires_node
async def test_200_clients_polling_then_upgrade_on_two_workers(redis_url: str) -> None:
    """No session error among 200 clients, each served by one worker before and after its
    upgrade; both workers serve some; a broadcast from one reaches the clients of both."""
    assert NODE is not None
    async with workers(redis_url) as (_, url):
        result = await run_scenario(
            [NODE, str(JS_DIR / "workers_scenarios.mjs")],
            url,
            "upgrade",
            "load",
            extra=["200"],
            budget_s=BUDGET_S - 15,
        )
    pids = result["observed"]["pids"]
    assert len(pids) == 2, pids
    assert sum(pids.values()) == 200, pids
    assert result["observed"]["errors"] == 0


@requires_node
async def test_a_worker_that_dies_is_restarted_and_its_clients_reconnect(
    redis_url: str,
) -> None:
    assert NODE is not None
    async with workers(redis_url) as (supervisor, url):
        result = await run_scenario(
            [NODE, str(JS_DIR / "workers_scenarios.mjs")],
            url,
            "upgrade",
            "restart",
            extra=["40"],
            budget_s=BUDGET_S - 15,
        )
    observed = result["observed"]
    assert observed["reconnected"] >= 1
    assert str(observed["restarted_pid"]) not in observed["before"]
    assert re.search(r"worker \d exited with 3; starting it again", supervisor.output)


async def test_hostile_requests_to_the_supervisor_leave_a_bystander_served(
    redis_url: str,
) -> None:
    """An idle connection, a request line longer than a head may be, and sids that name no
    worker: each gets its answer (or waits alone), and a bystander's session goes on."""
    async with (
        workers(redis_url) as (_, url),
        connect(url),
        connect(url) as bystander,
    ):  # the first stays idle
        opened = await bystander.request("GET", "/socket.io/?EIO=4&transport=polling")
        sid = json.loads(opened.body[1:])["sid"]
        async with connect(url) as long_line:
            await long_line.stream.send_all(b"GET /" + b"a" * 20_000)
            answer = await long_line.stream.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 431 "), answer
        for stranger in ("7.abc", "x.abc", "abc", "0000000000001.abc", "%30.abc"):
            refused = await bystander.request(
                "GET", f"/socket.io/?EIO=4&transport=polling&sid={stranger}"
            )
            assert refused.status == 400, (stranger, refused.body)
        posted = await bystander.request(
            "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"40"
        )
        assert (posted.status, posted.body) == (200, b"ok")
        polled = await bystander.request("GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
        assert polled.body.startswith(b'40{"sid":'), polled.body
