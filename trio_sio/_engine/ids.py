"""Random ids (session ids, socket ids) for the Trio thread, from one read of the kernel's
CSPRNG per 256 ids.

``secrets.token_urlsafe(15)`` reads 15 bytes with a system call per id, two ids per
connection (its session's and its socket's). Here one read of 256 ids' worth is encoded at
once and sliced: the same 120 bits from the same source, in the same 20 URL-safe characters.
What is not handed out yet stays in this process only: a child process made by ``fork``
starts with an empty pool, so no two processes share an id.
"""

from __future__ import annotations

import base64
import os

__all__ = ["random_id"]

_ID_BYTES = 15  # 120 bits: 20 base64 characters, no padding
_ID_CHARS = 20
_PER_READ = 256


class _Pool:
    __slots__ = ("encoded", "next")

    def __init__(self) -> None:
        self.encoded = ""
        self.next = 0

    def empty(self) -> None:
        self.encoded = ""
        self.next = 0


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.empty)


def random_id() -> str:
    """A new random id: 20 URL-safe base64 characters, as ``secrets.token_urlsafe(15)``."""
    pool = _pool
    start = pool.next
    if start >= len(pool.encoded):
        pool.encoded = base64.urlsafe_b64encode(os.urandom(_ID_BYTES * _PER_READ)).decode("ascii")
        start = 0
    pool.next = end = start + _ID_CHARS
    return pool.encoded[start:end]
