"""Issue 14's refusals with python-socketio's AsyncClient, against tests/support/defects_app.py.

    python tests/clients/py_defects_scenarios.py <base_url> <polling|websocket|upgrade> refusals

Prints one JSON line; see scenario_support.py for the output and exit-code contract.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

# The script's own directory is sys.path[0], so its sibling module imports directly.
from scenario_support import Context, Observed, check, check_equal, package_version, run_main


async def refused(ctx: Context, namespace: str) -> Any:
    """Connect / and ``namespace``: return the connect_error data ``namespace`` gets."""
    client = socketio.AsyncClient(reconnection=False)
    ctx.cleanups.append(client.disconnect)
    errors: asyncio.Queue[Any] = asyncio.Queue()
    client.on("connect_error", errors.put_nowait, namespace=namespace)
    await client.connect(
        ctx.base_url,
        transports=ctx.transports,
        namespaces=["/", namespace],
        socketio_path="socket.io",
        wait=False,
    )
    error = await errors.get()
    check(client.connected, "the connection survives the refusal")
    check_equal(await client.call("ping"), "pong", "round trip on /")
    return error


async def scenario_refusals(ctx: Context) -> Observed:
    """on_connect raising ConnectionRefused, and returning False, refuse with connect_error."""
    ctx.step("on_connect raises")
    raised = await refused(ctx, "/refuse-raise")
    check_equal(raised, {"message": "no", "data": {"why": 1}}, "ConnectionRefused")
    ctx.step("on_connect returns False")
    returned = await refused(ctx, "/refuse-false")
    check_equal(returned, {"message": "Connection rejected by server"}, "False")
    return {"raised": raised, "returned": returned}


run_main(
    f"python-socketio@{package_version('python-socketio')}",
    {"refusals": scenario_refusals},
)
