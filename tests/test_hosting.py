"""Embedding: serve_hypercorn and serve_native inside a Trio program, port 0, graceful shutdown
by cancelling."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_sio
from support.http import connect
from support.websocket import Closed, open_websocket


async def receive_until_closed(ws: Any) -> None:
    while True:
        await ws.receive()


@pytest.mark.parametrize(
    "serve", [trio_sio.serve_hypercorn, trio_sio.serve_native], ids=["hypercorn", "native"]
)
async def test_serve_reports_its_port_and_shuts_down_gracefully(serve: Any) -> None:
    sio = trio_sio.Server()
    reasons: list[trio_sio.DisconnectReason] = []

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on_disconnect
    async def gone(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        await trio.sleep(0.1)  # async cleanup still runs during shutdown
        reasons.append(reason)

    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def serve_until_cancelled(*, task_status: trio.TaskStatus[list[str]]) -> None:
            with server_scope:
                await serve(sio, "127.0.0.1", 0, task_status=task_status)

        urls: list[str] = await nursery.start(serve_until_cancelled)
        url = next(u for u in urls if u.startswith("http://"))
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with connect(url) as idle:  # an idle keep-alive connection does not block
            response = await idle.request("GET", "/socket.io/?EIO=4&transport=polling")
            assert response.status == 200
            async with open_websocket(ws_url) as ws:
                await ws.receive()
                await ws.send("40")
                await ws.receive()
                await ws.send('420["echo","hi"]')
                assert await ws.receive() == '430["hi"]'
                start = trio.current_time()
                server_scope.cancel()
                with trio.fail_after(3), pytest.raises(Closed) as closed:
                    await receive_until_closed(ws)
                assert closed.value.code == 1001
        with trio.fail_after(3):
            while sio.running:
                await trio.sleep(0.01)
    assert reasons == [trio_sio.DisconnectReason.SERVER_SHUTTING_DOWN]
    assert trio.current_time() - start < 3
    assert not sio.running


async def _drive_lifespan(app: trio_sio.ASGIApp) -> list[str]:
    """Run ``app``'s lifespan to the end, as a host would; returns the message types it sent."""
    to_app, inbox = trio.open_memory_channel[dict[str, Any]](2)
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await to_app.send({"type": "lifespan.startup"})
    await to_app.send({"type": "lifespan.shutdown"})
    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.receive, send)
    return sent


async def test_other_app_without_lifespan_support_is_fine() -> None:
    async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
        raise TypeError(f"unsupported scope {scope['type']}")

    app = trio_sio.ASGIApp(trio_sio.Server(), other_asgi_app=no_lifespan)
    assert await _drive_lifespan(app) == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_other_app_failing_after_startup_is_not_hidden() -> None:
    async def fails_at_shutdown(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("cleanup bug")

    app = trio_sio.ASGIApp(trio_sio.Server(), other_asgi_app=fails_at_shutdown)
    with pytest.RaisesGroup(
        pytest.RaisesExc(RuntimeError, match="cleanup bug"), flatten_subgroups=True
    ):
        await _drive_lifespan(app)
