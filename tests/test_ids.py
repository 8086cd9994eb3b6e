"""Session and socket ids from the pooled CSPRNG read (``trio_sio._engine.ids``): the format of
``secrets.token_urlsafe(15)``, never repeated, and not shared with a forked child."""

from __future__ import annotations

import os
import re
import secrets

from trio_sio._engine import random_id
from trio_sio._engine.ids import _PER_READ


def test_ids_look_like_token_urlsafe_and_never_repeat() -> None:
    ids = [random_id() for _ in range(10 * _PER_READ + 7)]  # across several reads
    shape = re.compile(r"[A-Za-z0-9_-]{20}")
    assert all(shape.fullmatch(i) for i in ids)
    assert len(secrets.token_urlsafe(15)) == 20
    assert len(set(ids)) == len(ids)


def test_a_forked_child_starts_with_a_pool_of_its_own() -> None:
    random_id()  # the parent's pool holds ids not handed out yet
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write_end, random_id().encode())
        os._exit(0)
    os.close(write_end)
    theirs = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(child, 0)
    ours = random_id()
    assert len(theirs) == 20
    assert theirs != ours
