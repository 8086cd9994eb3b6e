"""Registration checks shared by everything that takes handlers (the server's namespaces and
sockets, and the client): a handler the caller could never call is refused as it is registered,
not when the first event arrives."""

from __future__ import annotations

import functools
import inspect
from typing import Literal

__all__ = ["check_event_name", "check_handler", "is_async"]


def is_async(handler: object) -> bool:
    """Whether calling ``handler`` gives a coroutine: an ``async def`` function or method, a
    :func:`functools.partial` of one, or an object whose ``__call__`` is ``async def``."""
    while isinstance(handler, functools.partial):
        handler = handler.func  # inspect unwraps partials of functions, not of objects
    if inspect.iscoroutinefunction(handler):
        return True
    if inspect.isroutine(handler) or isinstance(handler, type):
        return False
    return inspect.iscoroutinefunction(type(handler).__call__)


def check_handler(
    handler: object,
    kind: str,
    takes: str,
    arguments: int,
    *,
    rest: Literal["none", "some", "any"] = "none",
    hint: str = "",
    synchronous: bool = False,
) -> None:
    """Refuse, as it is registered, a handler the server (or the client) could not call.

    Otherwise the mistake shows only when a client connects, as an error logged for every
    call (a ``def`` handler's result cannot be awaited; python-socketio's ``(sid, environ,
    auth)`` misses an argument), or not at all (an ``async def`` ``on_any_outgoing`` makes a
    coroutine nobody awaits).

    Args:
        handler: what was registered.
        kind: the decorator, for the message (``"on_connect"``).
        takes: the parameters, for the message (``"(sock, auth)"``).
        arguments: how many positional arguments it is always called with.
        rest: what follows them: ``"none"``; ``"some"``, the event's arguments, which a
            handler may name one by one (only the first ``arguments`` are checked);
            ``"any"``, arguments of every event, which need ``*args``.
        hint: the python-socketio or Node signature this one replaces (``", not ..."``).
        synchronous: whether the handler must be a plain ``def``.
    """
    if not callable(handler):
        raise TypeError(f"{kind} registers a function {takes}, not {handler!r}")
    name = getattr(handler, "__qualname__", None) or repr(handler)
    if synchronous and is_async(handler):
        raise TypeError(
            f"{kind} handlers are called synchronously as each packet is sent: "
            f"make {name} a plain `def`, not `async def`"
        )
    if not synchronous and not is_async(handler):
        raise TypeError(f"{kind} handlers are awaited: make {name} an `async def` function")
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return  # nothing to read (some builtins): trust it
    placeholders = [None] * arguments
    try:
        if rest == "some":
            signature.bind_partial(*placeholders)
        else:
            signature.bind(*placeholders)
    except TypeError:
        fits = False
    else:
        fits = rest != "any" or any(
            parameter.kind is inspect.Parameter.VAR_POSITIONAL
            for parameter in signature.parameters.values()
        )
    if not fits:
        # The parameters as the reader wrote them, without the annotations' noise.
        plain = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
        raise TypeError(f"{kind} handlers take {takes}{hint}; {name}{plain} does not")


def check_event_name(
    event: object, decorator: str, *, alternative: str = "", owner: str = "sio"
) -> str:
    """``event`` if it is an event's name; a message naming the fix otherwise."""
    if isinstance(event, str):
        return event
    if callable(event):
        # A bare `@sio.on`: on() got the handler where the event's name goes, and would
        # return a decorator that nobody calls, registering nothing.
        raise TypeError(
            f'{decorator} takes the event\'s name: @{owner}.{decorator}("name"){alternative}'
        )
    raise TypeError(f"event names are strings, not {event!r}")
