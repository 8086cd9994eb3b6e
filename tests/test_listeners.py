"""Listeners and middleware as in Node (issue 16, items 3 and 4), in-process.

- ``on_any``/``prepend_any``/``off_any`` and their ``_outgoing`` twins keep lists, on a
  namespace and on one socket; the namespace's run first.
- ``sock.use`` is Node's ``socket.use``: it runs after the namespace's packet middleware, and
  raising drops the event, logged on the server, unknown to the client.
- ``sock.on(event)`` is that socket's handler, instead of the namespace's; ``sock.off``
  gives the event back to the namespace.
- ``sock.wait_disconnected()`` returns the reason.
- :class:`trio_sio.NamespaceHandlers`: ``on_<event>`` methods, checked as the decorators check.

The official client's view of ``sock.use`` and ``sock.on_any`` is in test_official_clients.py
(``test_per_socket_listeners_js_client``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import trio_sio
from trio_sio.testing import open_client, running


async def answer(sock: trio_sio.Socket, *args: Any) -> None:
    """A handler, so that the test client's ``call`` returns once the event is handled."""


def only_socket(namespace: trio_sio.Namespace) -> trio_sio.Socket:
    (sock,) = namespace.sockets.values()
    return sock


async def test_namespace_listeners_are_lists_in_node_order() -> None:
    sio = trio_sio.Server()
    seen: list[str] = []

    async def first(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        seen.append(f"first {event}")

    async def second(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        seen.append(f"second {event}")

    async def before(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        seen.append(f"before {event}")

    def out_a(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        seen.append(f"out a {event}")

    def out_b(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        seen.append(f"out b {event}")

    for event in ("one", "two", "three"):
        sio.on(event)(answer)
    assert sio.on_any(first) is first
    sio.on_any(second)
    sio.prepend_any(before)
    sio.on_any_outgoing(out_a)
    sio.prepend_any_outgoing(out_b)

    async with running(sio), open_client(sio) as client:
        await client.call("one")
        await sio.emit("news")
        await client.receive("news")
        assert seen == ["before one", "first one", "second one", "out b news", "out a news"]
        seen.clear()

        sio.off_any(first)
        sio.off_any_outgoing(out_b)
        await client.call("two")
        await sio.emit("news")
        await client.receive("news")
        assert seen == ["before two", "second two", "out a news"]
        seen.clear()

        sio.off_any()
        sio.off_any_outgoing()
        await client.call("three")
        await sio.emit("news")
        await client.receive("news")
        assert seen == []
    assert sio.handlers.any == ()
    assert sio.handlers.any_outgoing == ()


async def test_socket_listeners_follow_the_namespaces_and_end_with_the_socket() -> None:
    sio = trio_sio.Server()
    seen: list[str] = []
    sio.on("hello")(answer)
    sio.on("hi")(answer)

    @sio.on_any
    async def namespace_any(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        seen.append(f"namespace {event}")

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        if auth.get("watched"):

            @sock.on_any
            async def mine(sock: trio_sio.Socket, event: str, *args: Any) -> None:
                seen.append(f"socket {event} {list(args)}")

            @sock.prepend_any
            async def earlier(sock: trio_sio.Socket, event: str, *args: Any) -> None:
                seen.append(f"socket first {event}")

            @sock.on_any_outgoing
            def sent(sock: trio_sio.Socket, event: str, *args: Any) -> None:
                seen.append(f"sent {event}")

    async with (
        running(sio),
        open_client(sio, auth={"watched": True}) as watched,
        open_client(sio) as other,
    ):
        await watched.call("hello", 1)
        await other.call("hi")
        await sio.emit("news")  # a broadcast: only the watched socket's listener sees it
        await watched.receive("news")
        await other.receive("news")
        assert seen == [
            "namespace hello",
            "socket first hello",
            "socket hello [1]",
            "namespace hi",
            "sent news",
        ]
        assert sio.main._outgoing_hook() is not None
        await watched.disconnect()
        with trio.fail_after(1):
            while len(sio.main.sockets) > 1:
                await trio.sleep(0.01)
        # The only socket that watched is gone: broadcasts are back to no hook at all.
        assert sio.main._outgoing_hook() is None


async def test_removing_socket_outgoing_listeners_restores_the_bare_fan_out() -> None:
    sio = trio_sio.Server()
    sent: list[str] = []

    def listener(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        sent.append(event)

    async with running(sio), open_client(sio) as client:
        sock = only_socket(sio.main)
        assert sio.main._outgoing_hook() is None
        sock.on_any_outgoing(listener)
        sock.on_any_outgoing(listener)
        await sock.emit("direct")
        await client.receive("direct")
        sock.off_any_outgoing(listener)  # one of the two
        await sio.emit("news")
        await client.receive("news")
        sock.off_any_outgoing(listener)
        assert sio.main._outgoing_hook() is None
        await sio.emit("unseen")
        await client.receive("unseen")
    assert sent == ["direct", "direct", "news"]


async def test_socket_use_refuses_after_the_namespace_middleware(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    sio = trio_sio.Server()
    order: list[str] = []

    @sio.use_packet
    async def namespace_middleware(sock: trio_sio.Socket, event: str, args: list[Any]) -> None:
        order.append(f"namespace {event}")
        args.append("namespace")

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        @sock.use
        async def no_secrets(sock: trio_sio.Socket, event: str, args: list[Any]) -> None:
            order.append(f"socket {event} {args}")
            if event == "secret":
                raise PermissionError("not for this socket")

    @sio.on_any
    async def seen(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        order.append(f"any {event}")

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("secret")
    async def secret(sock: trio_sio.Socket, *args: Any) -> str:
        order.append("secret handled")
        return "leaked"

    async with running(sio), open_client(sio) as client:
        await client.emit("secret", 1)
        assert await client.call("echo", "a") == ("a", "namespace")
    assert order == [
        "namespace secret",
        "socket secret [1, 'namespace']",
        "namespace echo",
        "socket echo ['a', 'namespace']",
        "any echo",
    ]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, refusals
    assert "'secret'" in refusals[0]
    assert "not for this socket" in refusals[0]


async def test_a_socket_handler_runs_instead_of_the_namespaces() -> None:
    sio = trio_sio.Server()

    @sio.on("whoami")
    async def namespace_whoami(sock: trio_sio.Socket) -> str:
        return "anyone"

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        count = 0  # state that lives with this connection, in the closure

        @sock.on("whoami")
        async def whoami(sock: trio_sio.Socket) -> str:
            return f"you, {auth['name']}"

        @sock.on("count")
        async def counter(sock: trio_sio.Socket) -> int:
            nonlocal count
            count += 1
            return count

    async with running(sio), open_client(sio, auth={"name": "ada"}) as client:
        assert await client.call("whoami") == "you, ada"
        assert await client.call("count") == 1
        assert await client.call("count") == 2
        sock = only_socket(sio.main)
        sock.off("whoami")
        sock.off("never registered")
        assert await client.call("whoami") == "anyone"


async def test_socket_registrations_are_checked_like_the_namespaces() -> None:
    sio = trio_sio.Server()
    async with running(sio), open_client(sio):
        sock = only_socket(sio.main)

        async def handler(sock: trio_sio.Socket, *args: Any) -> None:
            pass

        def plain(sock: trio_sio.Socket, event: str, *args: Any) -> None:
            pass

        async def node_middleware(packet: Any, next: Any) -> None:
            pass

        with pytest.raises(ValueError, match="reserved"):
            sock.on("disconnect")
        with pytest.raises(ValueError, match=r"use @sock.on_any"):
            sock.on("*")
        with pytest.raises(TypeError, match=r"@sock.on\(\"name\"\)"):
            sock.on(handler)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="are awaited"):
            sock.on("x")(plain)  # type: ignore[type-var]
        with pytest.raises(TypeError, match="are awaited"):
            sock.on_any(plain)  # type: ignore[type-var]
        with pytest.raises(TypeError, match="plain `def`"):
            sock.on_any_outgoing(handler)  # type: ignore[type-var]
        with pytest.raises(TypeError, match=r"use handlers take \(sock, event, args\), not Node"):
            sock.use(node_middleware)  # type: ignore[type-var]
        assert sock._listeners is None or (
            not sock._listeners.events
            and not sock._listeners.any
            and not sock._listeners.any_outgoing
            and not sock._listeners.middlewares
        )


async def test_wait_disconnected_returns_the_reason() -> None:
    sio = trio_sio.Server()
    reasons: list[trio_sio.DisconnectReason] = []
    async with running(sio), trio.open_nursery() as nursery:
        async with open_client(sio) as client:
            sock = only_socket(sio.main)

            async def follow() -> None:
                reasons.append(await sock.wait_disconnected())

            nursery.start_soon(follow)
            await trio.sleep(0.01)
            assert reasons == []
            await client.disconnect()
        with trio.fail_after(1):
            while not reasons:
                await trio.sleep(0.01)
        assert reasons == [trio_sio.DisconnectReason.IO_CLIENT_DISCONNECT]
        # Once disconnected it returns at once.
        assert await sock.wait_disconnected() == trio_sio.DisconnectReason.IO_CLIENT_DISCONNECT


class Chat(trio_sio.NamespaceHandlers):
    """A class-based namespace, as a python-socketio user writes one."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def on_connect(self, sock: trio_sio.Socket, auth: Any) -> None:
        sock.join("lobby")
        self.log.append("connect")

    async def on_message(self, sock: trio_sio.Socket, text: str) -> str:
        await self.namespace.emit("message", text)
        return f"sent {text}"

    async def on_disconnecting(
        self, sock: trio_sio.Socket, reason: trio_sio.DisconnectReason
    ) -> None:
        self.log.append(f"disconnecting {sorted(sock.rooms - {sock.id})}")

    async def on_disconnect(self, sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        self.log.append(f"disconnect {reason}")

    def helper(self) -> None:
        """Not an on_ method: not registered, and may be a plain def."""


async def test_class_based_namespace() -> None:
    sio = trio_sio.Server()
    chat = Chat()
    assert sio.of("/chat").register(chat) is chat
    assert chat.namespace is sio.of("/chat")
    assert set(sio.of("/chat").handlers.events) == {"message"}
    async with running(sio):
        async with open_client(sio, "/chat") as client:
            assert await client.call("message", "hi") == "sent hi"
            assert (await client.receive("message")).args == ("hi",)
            await client.disconnect()
        with trio.fail_after(1):
            while len(chat.log) < 3:
                await trio.sleep(0.01)
    assert chat.log == ["connect", "disconnecting ['lobby']", "disconnect io client disconnect"]


async def test_class_based_namespace_on_the_server_and_a_dynamic_family() -> None:
    class Echo(trio_sio.NamespaceHandlers):
        async def on_echo(self, sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
            return (sock.namespace.name, *args)

    sio = trio_sio.Server()
    main = sio.register(Echo())
    assert main.namespace is sio.main
    family = sio.of_dynamic(lambda name, auth: name.startswith("/room-"))
    assert family.register(Echo()).namespace is family
    async with running(sio):
        async with open_client(sio) as client:
            assert await client.call("echo", 1) == ("/", 1)
        async with open_client(sio, "/room-7") as client:
            assert await client.call("echo", 2) == ("/room-7", 2)


def test_a_class_with_a_mistake_registers_nothing() -> None:
    class SocketioStyle(trio_sio.NamespaceHandlers):
        async def on_message(self, sock: trio_sio.Socket, text: str) -> None:
            pass

        async def on_connect(self, sid: str, environ: Any, auth: Any) -> None:
            pass

    class Plain(trio_sio.NamespaceHandlers):
        def on_message(self, sock: trio_sio.Socket, text: str) -> None:
            pass

    class Reserved(trio_sio.NamespaceHandlers):
        async def on_connect_error(self, sock: trio_sio.Socket) -> None:
            pass

    sio = trio_sio.Server()
    with pytest.raises(TypeError, match=r"SocketioStyle.on_connect handlers take \(self, sock"):
        sio.register(SocketioStyle())
    with pytest.raises(TypeError, match=r"make .*Plain.on_message an `async def`"):
        sio.register(Plain())
    with pytest.raises(ValueError, match="reserved"):
        sio.register(Reserved())
    assert sio.handlers == trio_sio.Server().handlers
    with pytest.raises(RuntimeError, match="not registered"):
        _ = Plain().namespace
    with pytest.raises(TypeError, match="NamespaceHandlers object"):
        sio.register(object())  # type: ignore[type-var]
    chat = Chat()
    sio.of("/chat").register(chat)
    with pytest.raises(RuntimeError, match="already registered"):
        sio.of("/other").register(chat)
