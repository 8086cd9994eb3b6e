"""trio_sio.Client against real servers: the fixture app on trio_sio's two hosts and on Node's
socket.io 4.8, in the three transport modes (WebSocket, polling, polling then upgrade).

Everything goes over sockets on 127.0.0.1. Waits are bounded by ``fail_after`` budgets that
catch a hang, never by a sleep that guesses how long something takes.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from test_checkpoints import CLIENT_CHECKPOINTS

import trio_sio
from support.peers import PEERS, TRANSPORTS, Peer, serving_peer
from support.servers import serve_server
from support.tls import loopback_tls
from trio_sio._client._client import reconnection_delay

#: A budget that catches a hang (the machine may be busy: it is not a measure of speed).
BUDGET = 20


class Inbox:
    """What the server sent to a namespace, event by event."""

    def __init__(self, namespace: trio_sio.ClientNamespace, *events: str) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[str, tuple[Any, ...]]](100)
        for event in events:
            namespace.on(event)(self._handler(event))

    def _handler(self, event: str) -> Any:
        async def handler(*args: Any) -> None:
            await self._send.send((event, args))

        return handler

    async def next(self) -> tuple[str, tuple[Any, ...]]:
        with trio.fail_after(BUDGET):
            return await self._receive.receive()


@pytest.fixture(params=PEERS)
async def peer(request: pytest.FixtureRequest, nursery: trio.Nursery) -> AsyncIterator[Peer]:
    async with serving_peer(request.param, nursery) as served:
        yield served


@pytest.fixture(params=list(TRANSPORTS))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def wait_for_transport(client: trio_sio.Client, mode: str) -> None:
    """Until the client uses the transport its mode ends on (the upgrade takes a moment)."""
    expected = "polling" if mode == "polling" else "websocket"
    with trio.fail_after(BUDGET):
        while client.transport != expected:
            await trio.sleep(0.01)


async def test_echo_with_acks_both_ways(peer: Peer, mode: str) -> None:
    client = trio_sio.Client()
    inbox = Inbox(client, "message-back", "auth")

    @client.on("ack-me")
    async def ack_me(payload: Any) -> Any:
        return {"answered": payload}

    async with client.connect(peer.url, transports=TRANSPORTS[mode]):
        assert await inbox.next() == ("auth", ({},))
        with trio.fail_after(BUDGET):
            assert await client.call("message-with-ack", 1, "two", [3]) == (1, "two", [3])
            assert await client.call("message-with-ack") is None
            # The server calls the client, whose handler's return value is the ack.
            assert await client.call("request-ack", {"n": 1}) == {"answered": {"n": 1}}
        await client.emit("message", "hi", {"x": None})
        assert await inbox.next() == ("message-back", ("hi", {"x": None}))
        await wait_for_transport(client, mode)
        # After the upgrade (if any), the same again on the transport it switched to.
        with trio.fail_after(BUDGET):
            assert await client.call("message-with-ack", "after") == "after"
    assert client.disconnect_reason is trio_sio.DisconnectReason.IO_CLIENT_DISCONNECT


async def test_binary_both_ways_at_any_depth(peer: Peer, mode: str) -> None:
    client = trio_sio.Client()
    inbox = Inbox(client, "message-back")
    payload = [b"\x00\x01", {"deep": [{"deeper": b"\xff" * 1000}]}, "text"]

    @client.on("ack-me")
    async def ack_me(data: Any) -> Any:
        return [data, b"from the client"]

    async with client.connect(peer.url, transports=TRANSPORTS[mode]):
        with trio.fail_after(BUDGET):
            assert await client.call("message-with-ack", *payload) == tuple(payload)
            answer = await client.call("request-ack", b"\x07")
        assert answer == [b"\x07", b"from the client"]
        await client.emit("message", b"\x01\x02\x03", {"b": b""})
        assert await inbox.next() == ("message-back", (b"\x01\x02\x03", {"b": b""}))


async def test_several_namespaces_with_auth(peer: Peer, mode: str) -> None:
    client = trio_sio.Client()
    custom = client.of("/custom")
    main_inbox = Inbox(client, "auth", "message-back")
    custom_inbox = Inbox(custom, "auth", "message-back")
    token = {"token": "abc", "n": 7}
    async with client.connect(
        peer.url, transports=TRANSPORTS[mode], auth=token, namespaces=("/", "/custom")
    ):
        assert client.connected
        assert custom.connected
        assert client.sid != custom.sid
        assert await main_inbox.next() == ("auth", (token,))
        assert await custom_inbox.next() == ("auth", (token,))
        await custom.emit("message", "to custom")
        assert await custom_inbox.next() == ("message-back", ("to custom",))
        with trio.fail_after(BUDGET):
            assert await custom.call("message-with-ack", b"\x01") == b"\x01"
        await client.emit("message", "to main")
        assert await main_inbox.next() == ("message-back", ("to main",))


async def test_auth_is_asked_for_on_each_connection(peer: Peer) -> None:
    client = trio_sio.Client(delay=0.01)
    inbox = Inbox(client, "auth")
    tokens = iter(range(100))

    async def auth() -> dict[str, int]:
        return {"token": next(tokens)}

    async with client.connect(peer.url, transports=("websocket",), auth=auth):
        assert await inbox.next() == ("auth", ({"token": 0},))
        await client.emit("drop-transport")
        assert await inbox.next() == ("auth", ({"token": 1},))


async def test_refused_namespace_raises_connect_error(peer: Peer, mode: str) -> None:
    client = trio_sio.Client()
    with trio.fail_after(BUDGET), pytest.raises(trio_sio.ConnectError) as refused:
        async with client.connect(
            peer.url, transports=TRANSPORTS[mode], namespaces=("/", "/forbidden")
        ):
            pytest.fail("connected although refused")
    assert refused.value.message == "forbidden"
    assert refused.value.data == {"reason": "nope"}
    assert not client.connected
    # An unknown namespace: the server's own message.
    with trio.fail_after(BUDGET), pytest.raises(trio_sio.ConnectError) as unknown:
        async with client.connect(peer.url, transports=TRANSPORTS[mode], namespaces=("/nope",)):
            pass
    assert unknown.value.message == "Invalid namespace"


async def test_server_disconnect_is_final(peer: Peer, mode: str) -> None:
    client = trio_sio.Client(delay=0.01, randomization_factor=0)
    reasons: list[trio_sio.DisconnectReason] = []

    @client.on_disconnect
    async def disconnected(reason: trio_sio.DisconnectReason) -> None:
        reasons.append(reason)

    with trio.fail_after(BUDGET):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(client.run, peer.url, transports=TRANSPORTS[mode]))
            await client.emit("disconnect-me")
    # run() returned by itself: no reconnection, and the handlers ran first.
    assert client.disconnect_reason is trio_sio.DisconnectReason.IO_SERVER_DISCONNECT
    assert reasons == [trio_sio.DisconnectReason.IO_SERVER_DISCONNECT]
    assert client.connections == 1
    with pytest.raises(trio_sio.Disconnected):
        await client.emit("message", "too late")


async def test_transport_drop_reconnects_with_backoff(peer: Peer, mode: str) -> None:
    delay = 0.2
    client = trio_sio.Client(delay=delay, randomization_factor=0, offline_buffer=4)
    inbox = Inbox(client, "message-back")
    events: list[tuple[str, float]] = []

    @client.on_connect
    async def connected() -> None:
        events.append(("connect", trio.current_time()))

    @client.on_disconnect
    async def disconnected(reason: trio_sio.DisconnectReason) -> None:
        events.append((str(reason), trio.current_time()))

    async with client.connect(peer.url, transports=TRANSPORTS[mode]):
        await wait_for_transport(client, mode)
        first_sid = client.sid
        async with trio.open_nursery() as nursery:
            # A call the server never answers fails at once when the connection drops.
            failed = trio.Event()

            async def unanswered() -> None:
                with pytest.raises(trio_sio.Disconnected):
                    await client.call("no-such-event")
                failed.set()

            nursery.start_soon(unanswered)
            await trio.testing.wait_all_tasks_blocked()
            dropped_at = trio.current_time()
            await client.emit("drop-transport")
            with trio.fail_after(BUDGET):
                await failed.wait()
        # Disconnected now: this emit waits in the offline buffer for the next connection.
        assert not client.connected
        await client.emit("message", "buffered")
        with trio.fail_after(BUDGET):
            while not client.connected:
                await trio.sleep(0.01)
        assert await inbox.next() == ("message-back", ("buffered",))
        assert client.sid != first_sid
        assert client.connections == 2
        with trio.fail_after(BUDGET):
            assert await client.call("message-with-ack", "again") == "again"
    kinds = [kind for kind, _ in events]
    assert kinds == ["connect", kinds[1], "connect"]
    assert kinds[1] in ("transport close", "transport error")
    # The first reconnection attempt waited the backoff's delay (no jitter here).
    assert events[2][1] - dropped_at >= delay


@pytest.mark.parametrize("offline_buffer", [0, 2])
async def test_emits_while_disconnected_beyond_the_buffer_are_refused(
    peer: Peer, offline_buffer: int
) -> None:
    client = trio_sio.Client(delay=0.2, randomization_factor=0, offline_buffer=offline_buffer)
    inbox = Inbox(client, "message-back")
    async with client.connect(peer.url, transports=("websocket",)):
        await client.emit("drop-transport")
        with trio.fail_after(BUDGET):
            while client.connected:
                await trio.sleep(0.01)
        for n in range(offline_buffer):
            await client.emit("message", n)
        with pytest.raises(trio_sio.Disconnected):
            await client.emit("message", "refused")
        with trio.fail_after(BUDGET):
            while not client.connected:
                await trio.sleep(0.01)
            assert await client.call("message-with-ack", 1) == 1
        # What was kept went out first, in order; what was refused never did.
        kept = [await inbox.next() for _ in range(offline_buffer)]
        assert kept == [("message-back", (n,)) for n in range(offline_buffer)]
        await client.emit("message", "last")
        assert await inbox.next() == ("message-back", ("last",))


async def test_server_restart(peer: Peer, mode: str) -> None:
    client = trio_sio.Client(delay=0.05, delay_max=0.2)
    async with client.connect(peer.url, transports=TRANSPORTS[mode]):
        with trio.fail_after(BUDGET):
            assert await client.call("message-with-ack", "before") == "before"
        await peer.stop()
        with trio.fail_after(BUDGET):
            while client.connected:
                await trio.sleep(0.01)
        await peer.start()
        with trio.fail_after(BUDGET):
            while not client.connected:
                await trio.sleep(0.01)
            assert await client.call("message-with-ack", "after") == "after"
    assert client.connections == 2


async def test_a_connection_is_counted_in_the_step_that_connects_it(peer: Peer, mode: str) -> None:
    # ``connected`` and ``connections`` change together: a task that sees the client
    # connected sees this connection counted (a test waiting for ``connected`` and then
    # reading ``connections`` relies on it). A watcher looks at both in every scheduler pass
    # while the transport is dropped and the client reconnects, several times.
    client = trio_sio.Client(delay=0.01, randomization_factor=0)
    seen: list[tuple[bool, int]] = []

    async def watch() -> None:
        while True:
            seen.append((client.connected, client.connections))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        async with client.connect(peer.url, transports=TRANSPORTS[mode]):
            for made in range(1, 6):
                await wait_for_transport(client, mode)
                await client.emit("drop-transport")
                with trio.fail_after(BUDGET):
                    while not (client.connected and client.connections > made):
                        await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    connected_runs = 0
    previous = False
    for connected, connections in seen:
        if connected and not previous:
            connected_runs += 1
        if connected:
            assert connections == connected_runs
        previous = connected
    assert connected_runs == 6


async def test_reconnection_gives_up_after_its_attempts(peer: Peer) -> None:
    client = trio_sio.Client(delay=0.01, delay_max=0.02, attempts=2)
    lost: list[trio_sio.Disconnected] = []

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with pytest.raises(trio_sio.Disconnected) as raised:
            await client.run(peer.url, task_status=task_status)
        lost.append(raised.value)

    with trio.fail_after(BUDGET):
        async with trio.open_nursery() as nursery:
            await nursery.start(run)
            await peer.stop()
    (error,) = lost
    assert error.reason in (
        trio_sio.DisconnectReason.TRANSPORT_CLOSE,
        trio_sio.DisconnectReason.TRANSPORT_ERROR,
    )
    assert error.__cause__ is not None


async def test_unreachable_server_is_a_connect_error() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there now
    client = trio_sio.Client(reconnection=False)
    with pytest.raises(trio_sio.ConnectError, match="cannot connect"):
        async with client.connect(f"http://127.0.0.1:{port}"):
            pass


# --- checkpoints, registration, backoff: one server is enough -------------------------------


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A trio_sio server on the native host; the list holds every event it received."""
    sio = trio_sio.Server()
    received: list[str] = []

    @sio.on_any
    async def record(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        received.append(event)

    @sio.on("ping")
    async def ping(sock: trio_sio.Socket) -> str:
        return "pong"

    @sio.on("poke")
    async def poke(sock: trio_sio.Socket) -> None:
        await sock.emit("poked")

    @sio.on_disconnect
    async def disconnected(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        received.append(f"disconnect: {reason}")

    sio.of("/other").on("ping")(ping)
    sio.of("/other").on_any(record)
    async with serve_server("native", sio) as url:
        yield url, received


async def test_client_functions_are_checkpoints(echo_server: tuple[str, list[str]]) -> None:
    """Each public async function of the client raises Cancelled in a cancelled scope before
    doing anything: nothing reaches the server, and the client stays connected."""
    url, received = echo_server
    client = trio_sio.Client()
    other = client.of("/other")
    recipes = {
        "Client.emit": lambda: client.emit("e"),
        "Client.call": lambda: client.call("e"),
        "Client.run": lambda: trio_sio.Client().run(url),
        "Client.disconnect": client.disconnect,
        "Client.wait_disconnected": client.wait_disconnected,
        "ClientNamespace.emit": lambda: other.emit("e"),
        "ClientNamespace.call": lambda: other.call("e"),
    }
    assert set(recipes) == set(CLIENT_CHECKPOINTS)
    async with client.connect(url, namespaces=("/", "/other")):
        for name, recipe in recipes.items():
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(trio.Cancelled):
                    await recipe()
            assert client.connected, name
            assert other.connected, name
            with trio.fail_after(BUDGET):
                assert await client.call("ping") == "pong"
                assert await other.call("ping") == "pong"
            assert received == ["ping", "ping"], name
            received.clear()
    with trio.fail_after(BUDGET):
        while received != ["disconnect: io client disconnect"]:
            await trio.sleep(0.01)


@pytest.mark.parametrize("mode", list(TRANSPORTS))
async def test_headers_reach_the_server(mode: str) -> None:
    sio = trio_sio.Server()
    seen: list[str | None] = []

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        seen.append(sock.handshake.headers.get("x-token"))

    client = trio_sio.Client()
    async with (
        serve_server("native", sio) as url,
        client.connect(url, transports=TRANSPORTS[mode], headers={"X-Token": "t0k3n"}),
    ):
        await wait_for_transport(client, mode)
    assert seen == ["t0k3n"]


async def test_a_refused_reconnection_is_a_connect_error() -> None:
    sio = trio_sio.Server()
    connections: list[str] = []

    @sio.use
    async def once(sock: trio_sio.Socket, auth: Any) -> None:
        connections.append(sock.id)
        if len(connections) > 1:
            raise trio_sio.ConnectionRefused("not again", {"retry": False})

    @sio.on("drop")
    async def drop(sock: trio_sio.Socket) -> None:
        sock.session.close(trio_sio.DisconnectReason.TRANSPORT_CLOSE)

    client = trio_sio.Client(delay=0.01)

    async def connect_and_drop() -> None:
        async with client.connect(url, transports=("websocket",)):
            await client.emit("drop")
            await trio.sleep_forever()

    async with serve_server("native", sio) as url:
        with trio.fail_after(BUDGET), pytest.raises(trio_sio.ConnectError) as refused:
            await connect_and_drop()
    assert (refused.value.message, refused.value.data) == ("not again", {"retry": False})
    assert len(connections) == 2


async def test_leaving_fails_pending_calls_at_once(echo_server: tuple[str, list[str]]) -> None:
    url, _ = echo_server
    client = trio_sio.Client()
    failed: list[trio_sio.Disconnected] = []

    async def unanswered(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        with pytest.raises(trio_sio.Disconnected) as raised:
            await client.call("no-such-event")
        failed.append(raised.value)

    with trio.fail_after(BUDGET):
        async with trio.open_nursery() as nursery, client.connect(url):
            await nursery.start(unanswered)
            await trio.testing.wait_all_tasks_blocked()
    assert [error.reason for error in failed] == [trio_sio.DisconnectReason.IO_CLIENT_DISCONNECT]


async def test_cancelling_run_closes_the_connection(echo_server: tuple[str, list[str]]) -> None:
    url, received = echo_server
    client = trio_sio.Client()
    with trio.fail_after(BUDGET):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, url)
            assert await client.call("ping") == "pong"
            nursery.cancel_scope.cancel()
        while not any(event.startswith("disconnect: ") for event in received):
            await trio.sleep(0.01)
    assert not client.connected


async def test_disconnect_ends_run(echo_server: tuple[str, list[str]]) -> None:
    url, received = echo_server
    client = trio_sio.Client()
    with trio.fail_after(BUDGET):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, url)
            await client.disconnect()
        # run() returned by itself; the server saw the client leave.
        while "disconnect: io client disconnect" not in received:
            await trio.sleep(0.01)
    assert await client.wait_disconnected() is trio_sio.DisconnectReason.IO_CLIENT_DISCONNECT
    with pytest.raises(trio_sio.Disconnected):
        await client.call("ping")


async def test_a_handler_error_propagates_as_itself(echo_server: tuple[str, list[str]]) -> None:
    """Exceptions propagate (Trio's rule): out of the ``connect`` block, not in a group,
    and at once, whatever the server's heartbeat."""
    url, _ = echo_server
    client = trio_sio.Client()

    @client.on("poked")
    async def poked() -> None:
        raise ZeroDivisionError

    async def poke_and_wait() -> None:
        async with client.connect(url):
            await client.emit("poke")
            await trio.sleep_forever()

    with trio.fail_after(BUDGET), pytest.raises(ZeroDivisionError):
        await poke_and_wait()
    assert not client.connected


async def test_user_errors_in_the_block_come_out_as_themselves(
    echo_server: tuple[str, list[str]],
) -> None:
    url, received = echo_server
    client = trio_sio.Client()
    with trio.fail_after(BUDGET), pytest.raises(KeyError):
        async with client.connect(url):
            raise KeyError("mine")
    # Leaving disconnected gracefully all the same.
    with trio.fail_after(BUDGET):
        while "disconnect: io client disconnect" not in received:
            await trio.sleep(0.01)


def test_sync_handlers_are_refused_at_registration() -> None:
    client = trio_sio.Client()

    def plain(*args: Any) -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        client.on("e")(plain)
    with pytest.raises(TypeError, match="async def"):
        client.on_any(plain)
    with pytest.raises(TypeError, match="async def"):
        client.of("/x").on_connect(plain)  # type: ignore[type-var]


def test_handlers_the_client_cannot_call_are_refused() -> None:
    client = trio_sio.Client()

    async def two(a: Any, b: Any) -> None:
        pass

    async def no_rest(event: str) -> None:
        pass

    async def no_reason() -> None:
        pass

    with pytest.raises(TypeError, match="on_any handlers take"):
        client.on_any(no_rest)
    with pytest.raises(TypeError, match="on_disconnect handlers take"):
        client.on_disconnect(no_reason)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="on_connect handlers take"):
        client.on_connect(two)  # type: ignore[type-var]
    client.on("two")(two)  # events may name their arguments


@pytest.mark.parametrize("event", ["connect", "disconnect", "connect_error", "*"])
def test_reserved_event_names_are_refused(event: str) -> None:
    with pytest.raises(ValueError, match=r"use (@client\.)?on_"):
        trio_sio.Client().on(event)


def test_bare_on_is_refused() -> None:
    async def handler() -> None:
        pass

    with pytest.raises(TypeError, match="takes the event's name"):
        trio_sio.Client().on(handler)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"randomization_factor": 2},
        {"delay": 2, "delay_max": 1},
        {"attempts": -1},
        {"offline_buffer": -1},
        {"handler_queue_size": 0},
        {"replay_buffer": 0},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"between|<=|at least"):
        trio_sio.Client(**options)


@given(
    attempt=st.integers(0, 100),
    delay=st.floats(0, 10),
    extra=st.floats(0, 100),
    factor=st.floats(0, 1),
    seed=st.integers(),
)
def test_reconnection_delay_is_socketio_clients_backoff(
    attempt: int, delay: float, extra: float, factor: float, seed: int
) -> None:
    delay_max = delay + extra
    wait = reconnection_delay(
        attempt,
        delay=delay,
        delay_max=delay_max,
        randomization_factor=factor,
        rng=random.Random(seed),
    )
    base = delay * 2.0 ** min(attempt, 64)
    assert 0 <= wait <= delay_max
    assert wait >= min(base * (1 - factor), delay_max) - 1e-9
    if factor == 0:
        assert wait == min(base, delay_max)


# --- TLS, and a server faster than the handlers ------------------------------------------------


@pytest.mark.parametrize("mode", list(TRANSPORTS))
async def test_tls(mode: str) -> None:
    """https:// with the client's ssl_context: polling, WebSocket and the upgrade, all on
    TLS, to the native host serving with a trustme certificate."""
    server_context, client_context = loopback_tls()
    sio = trio_sio.Server()

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    client = trio_sio.Client(ssl_context=client_context, reconnection=False)
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(trio_sio.serve_native, sio, "127.0.0.1", 0, ssl_context=server_context)
        )
        assert urls[0].startswith("https://")
        async with client.connect(urls[0], transports=TRANSPORTS[mode]):
            await wait_for_transport(client, mode)
            with trio.fail_after(BUDGET):
                assert await client.call("echo", "secure", b"\x00") == ("secure", b"\x00")
        # Without the CA, the certificate is refused: a connect error naming TLS.
        with pytest.raises(trio_sio.ConnectError, match="TLS"):
            async with trio_sio.Client(reconnection=False).connect(
                urls[0], transports=TRANSPORTS[mode]
            ):
                pass
        nursery.cancel_scope.cancel()


async def test_a_slow_handler_throttles_reading() -> None:
    """A server emitting faster than the one handler runs: the client reads only what its
    bounded queues hold, the rest waits in the server's (bounded) buffers and the sockets',
    and everything arrives, in order, once the handler speeds up."""
    # 20 MB: far more than the sockets' buffers hold, within the server's bounds.
    total = 20_000
    sio = trio_sio.Server(outbound_queue_packets=30_000, outbound_queue_bytes=64_000_000)

    @sio.on("flood")
    async def flood(sock: trio_sio.Socket) -> None:
        for n in range(total):
            await sock.emit("n", n, "x" * 1000)

    client = trio_sio.Client(handler_queue_size=4)
    seen: list[int] = []
    go = trio.Event()

    @client.on("n")
    async def on_n(n: int, padding: str) -> None:
        await go.wait()
        seen.append(n)

    async with serve_server("native", sio) as url, client.connect(url, transports=("websocket",)):
        await client.emit("flood")
        await trio.testing.wait_all_tasks_blocked()
        # Stalled: the handler holds one event, the client stopped reading, and what the
        # socket buffers could not take still waits at the server.
        assert seen == []
        (socket,) = sio.main.sockets.values()
        packets, _ = socket.session.delivery.queued()
        assert packets > 0
        go.set()
        with trio.fail_after(BUDGET):
            while len(seen) < total:
                await trio.sleep(0.01)
    assert seen == list(range(total))


@pytest.mark.parametrize("host", ["hypercorn", "native"])
async def test_msgpack_parser_both_ways(host: str, mode: str) -> None:
    """With ``parser=MsgpackParser()`` on both sides, events, acks both ways and binary at
    depth travel as one msgpack message per packet, in every transport mode."""
    sio = trio_sio.Server(parser=trio_sio.MsgpackParser())

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        await sock.emit("echoed", *args)
        return args

    @sio.on("ask")
    async def ask(sock: trio_sio.Socket, question: str) -> Any:
        return await sock.call("answer-me", question)

    client = trio_sio.Client(parser=trio_sio.MsgpackParser())
    inbox = Inbox(client, "echoed")

    @client.on("answer-me")
    async def answer_me(question: str) -> Any:
        return {"answer": question, "bytes": b"\x00\xff"}

    payload = (1, "two", {"deep": [b"\x01\x02", None]})
    async with serve_server(host, sio) as url, client.connect(url, transports=TRANSPORTS[mode]):
        with trio.fail_after(BUDGET):
            assert await client.call("echo", *payload) == payload
            assert await inbox.next() == ("echoed", payload)
            await wait_for_transport(client, mode)
            assert await client.call("ask", "why") == {"answer": "why", "bytes": b"\x00\xff"}
