"""Registration refuses, at once and with the fix in its message, what the server could not
call later: plain ``def`` handlers, python-socketio's signatures, a bare ``@sio.on``, the
``"*"`` catch-all. Legitimate async callables (partials, methods, callable objects) work.

The decorators' types refuse the same signatures under ``mypy --strict``
(``typing_registration.py``, checked here too).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import trio_sio
from trio_sio.testing import open_client, running

Register = Callable[[trio_sio.Server], Callable[[Any], Any]]

#: Every registration decorator, by name: server, namespace and dynamic namespace share them.
REGISTRATIONS: dict[str, Register] = {
    "on": lambda sio: sio.on("chat"),
    "event": lambda sio: sio.event,
    "on_connect": lambda sio: sio.on_connect,
    "on_disconnect": lambda sio: sio.on_disconnect,
    "on_disconnecting": lambda sio: sio.on_disconnecting,
    "on_any": lambda sio: sio.on_any,
    "prepend_any": lambda sio: sio.prepend_any,
    "use": lambda sio: sio.use,
    "use_packet": lambda sio: sio.use_packet,
    "on_server_event": lambda sio: sio.on_server_event("tick"),
    "namespace on_connect": lambda sio: sio.of("/chat").on_connect,
    "dynamic namespace use": lambda sio: sio.of_dynamic(lambda name, auth: True).use,
}


@pytest.mark.parametrize("decorator", REGISTRATIONS)
def test_plain_def_handlers_are_refused(decorator: str) -> None:
    sio = trio_sio.Server()

    def chat(*args: Any) -> None:  # the shape fits; only `async` is missing
        pass

    with pytest.raises(TypeError, match=r"are awaited: make .*chat an `async def` function"):
        REGISTRATIONS[decorator](sio)(chat)
    assert sio.handlers == trio_sio.Server().handlers  # nothing registered (on "/", at least)


def test_async_outgoing_hook_is_refused() -> None:
    """``on_any_outgoing`` is the synchronous one: an ``async def`` would make coroutines that
    nobody awaits, so the hook would silently never run."""
    sio = trio_sio.Server()

    async def outgoing(sock: trio_sio.Socket, event: str, *args: Any) -> None:
        pass

    with pytest.raises(TypeError, match=r"make .*outgoing a plain `def`, not `async def`"):
        sio.on_any_outgoing(outgoing)  # type: ignore[type-var]
    assert sio.handlers.any_outgoing == ()


def test_bare_on_is_refused_instead_of_registering_nothing() -> None:
    sio = trio_sio.Server()

    async def chat(sock: trio_sio.Socket, message: str) -> None:
        pass

    with pytest.raises(TypeError, match=r"""on takes the event's name: @sio.on\("name"\), or"""):
        sio.on(chat)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"on_server_event takes the event's name"):
        sio.on_server_event(chat)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event names are strings, not 42"):
        sio.on(42)  # type: ignore[arg-type]


def test_star_is_not_a_catch_all_and_says_so() -> None:
    sio = trio_sio.Server()
    with pytest.raises(ValueError, match=r"use @sio\.on_any"):
        sio.on("*")


async def socketio_connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
    pass


async def socketio_disconnect(sid: str) -> None:
    pass


async def socketio_catch_all(event: str, sid: str, data: Any) -> None:
    pass


async def no_varargs(sock: trio_sio.Socket, event: str) -> None:
    pass


async def one_argument(sock: trio_sio.Socket) -> None:
    pass


async def node_packet_middleware(packet: list[Any], next: Any) -> None:
    pass


async def nothing() -> None:
    pass


async def keyword_only(sock: trio_sio.Socket, *, auth: Any) -> None:
    pass


def outgoing_without_args(sock: trio_sio.Socket) -> None:
    pass


@pytest.mark.parametrize(
    ("decorator", "handler", "message"),
    [
        (
            "on_connect",
            socketio_connect,
            "on_connect handlers take (sock, auth), not python-socketio's (sid, environ, auth); "
            "socketio_connect(sid, environ, auth) does not",
        ),
        ("on_connect", keyword_only, "on_connect handlers take (sock, auth)"),
        (
            "on_disconnect",
            socketio_disconnect,
            "on_disconnect handlers take (sock, reason), not python-socketio's (sid)",
        ),
        ("on_disconnecting", one_argument, "on_disconnecting handlers take (sock, reason);"),
        (
            "on_any",
            socketio_catch_all,
            "on_any handlers take (sock, event, *args), not python-socketio's catch-all",
        ),
        ("on_any", no_varargs, "on_any handlers take (sock, event, *args)"),
        ("use", one_argument, "use handlers take (sock, auth);"),
        ("use", socketio_connect, "use handlers take (sock, auth);"),
        (
            "use_packet",
            node_packet_middleware,
            "use_packet handlers take (sock, event, args), not Node's (packet, next)",
        ),
        ("on", nothing, "on handlers take (sock, *args);"),
        ("on_any_outgoing", outgoing_without_args, "on_any_outgoing handlers take (sock, event"),
    ],
    ids=lambda value: value if isinstance(value, str) and " " not in value else None,
)
def test_signatures_the_server_cannot_call_are_refused(
    decorator: str, handler: Callable[..., Any], message: str
) -> None:
    sio = trio_sio.Server()
    register = REGISTRATIONS.get(decorator) or (lambda sio: getattr(sio, decorator))
    with pytest.raises(TypeError) as refused:
        register(sio)(handler)
    assert message in str(refused.value)


class Greeter:
    """Async callables that are not plain functions: a method, an async ``__call__``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, sock: trio_sio.Socket, auth: Any) -> None:
        self.calls.append("connect")

    async def middleware(self, prefix: str, sock: trio_sio.Socket, auth: Any) -> None:
        self.calls.append(prefix + "use")

    async def event(self, sock: trio_sio.Socket, name: str, greeting: str = "hello") -> str:
        return f"{greeting} {name}"


async def reply(prefix: str, sock: trio_sio.Socket, *args: Any) -> str:
    return prefix + ",".join(map(str, args))


async def test_partials_methods_and_callable_objects_are_accepted_and_called() -> None:
    sio = trio_sio.Server()
    greeter = Greeter()
    sio.on_connect(greeter)
    sio.use(functools.partial(greeter.middleware, "first "))
    sio.use(functools.partial(Greeter.middleware, greeter, "second "))
    sio.on("greet")(greeter.event)
    sio.on("reply")(functools.partial(reply, "re: "))
    sio.on_any(functools.partial(reply, ""))
    async with running(sio), open_client(sio) as client:
        assert await client.call("greet", "you") == "hello you"
        assert await client.call("reply", 1, 2) == "re: 1,2"
    assert greeter.calls == ["first use", "second use", "connect"]


def test_the_decorators_types_refuse_the_same_mistakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``typing_registration.py`` marks each mistake ``# type: ignore[...]``; under
    ``--strict`` an ignore that nothing needs is an error, so each must still be caught."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (the dev extra)")
    from mypy import api

    cases = Path(__file__).with_name("typing_registration.py")
    monkeypatch.chdir(cases.parent.parent)  # mypy finds this checkout's trio_sio from here
    stdout, stderr, status = api.run(["--strict", "--warn-unreachable", str(cases)])
    assert status == 0, stdout + stderr
