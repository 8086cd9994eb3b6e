"""``fetch_sockets()`` returns local :class:`~trio_sio.Socket` and cluster
:class:`~trio_sio.adapters.RemoteSocket` objects mixed: every operation both have must be
called the same way on both, or code written against the union silently does nothing on one
of them (an un-awaited coroutine). As in Node, ``join``/``leave`` are plain calls; ``emit``
and ``disconnect`` are awaited here because they are Trio checkpoints.
"""

from __future__ import annotations

import inspect

import pytest

import trio_sio
from trio_sio.adapters import RemoteSocket

SHARED = sorted(
    name
    for name, member in vars(RemoteSocket).items()
    if not name.startswith("_") and callable(member) and hasattr(trio_sio.Socket, name)
)


def test_the_shared_operations_are_the_ones_users_call_on_fetched_sockets() -> None:
    assert {"disconnect", "emit", "join", "leave"} <= set(SHARED)


@pytest.mark.parametrize("name", SHARED)
def test_socket_and_remote_socket_have_one_call_shape(name: str) -> None:
    local = getattr(trio_sio.Socket, name)
    remote = getattr(RemoteSocket, name)
    assert inspect.iscoroutinefunction(local) == inspect.iscoroutinefunction(remote), name
    local_parameters = list(inspect.signature(local).parameters.values())
    remote_parameters = list(inspect.signature(remote).parameters.values())
    assert [(p.name, p.kind) for p in local_parameters] == [
        (p.name, p.kind) for p in remote_parameters
    ], name
