"""Acknowledgement arguments, said once.

Socket.IO acknowledges with a list of arguments; Python returns one value. The rule, the same
for every way trio_sio turns one into the other:

==========================  ===============================================================
a handler returns           the client's callback receives
==========================  ===============================================================
``None`` (or nothing)       no arguments: ``cb()``
a value ``x``               one argument: ``cb(x)``
a tuple ``(a, b)``          several arguments: ``cb(a, b)``
``Ack(*args)``              exactly ``args``: ``Ack(None)`` is Node's ``cb(null)``,
                            ``Ack((1, 2))`` one array, ``Ack()`` no arguments
``NO_ACK``                  nothing: the callback is never called
==========================  ===============================================================

Arguments given positionally (to ``emit``, ``call`` and ``Ack``) are one argument each; a
tuple among them is one JSON array. Answers come back the other way round (``Socket.call``,
``AckCollector.replies``): no arguments is ``None``, one is that value, several a tuple.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["NO_ACK", "Ack", "ack_arguments", "ack_value"]


class Ack:
    """Exactly these acknowledgement arguments, as a handler's return value (see the
    module's table)."""

    __slots__ = ("args",)

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __repr__(self) -> str:
        return f"Ack{self.args!r}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ack) and other.args == self.args

    def __hash__(self) -> int:
        return hash(self.args)


class _NoAck:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ACK"


#: Return it from a handler to leave the client's callback uncalled (Node: not calling ``cb``).
NO_ACK: Final = _NoAck()


def ack_arguments(result: Any) -> list[Any] | None:
    """A handler's return value as acknowledgement arguments; ``None`` for :data:`NO_ACK`."""
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    if isinstance(result, Ack):
        return list(result.args)
    if result is NO_ACK:
        return None
    return [result]


def ack_value(args: list[Any]) -> Any:
    """Acknowledgement arguments as one Python value: ``None``, the value, or a tuple."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)
