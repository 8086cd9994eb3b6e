"""The explicit states of the Engine.IO runtime, and the interface of a session's transport."""

from __future__ import annotations

import enum
from typing import Protocol

from .._errors import DisconnectReason
from .._protocol import Transport

__all__ = ["Consumer", "SessionState", "SessionTransport", "UpgradeState"]


class SessionState(enum.Enum):
    """OPEN, then CLOSING while a graceful close drains the queue, then CLOSED."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class UpgradeState(enum.Enum):
    """Where a polling session is in its upgrade to WebSocket."""

    NONE = "none"  # no upgrade under way
    PROBING = "probing"  # a WebSocket arrived; waiting for its 2probe
    PROBED = "probed"  # 3probe answered; waiting for 5 (long-polls are released soon)


class Consumer(enum.Enum):
    """Who takes from a session's queue now.

    ==============  ===========================================================================
    ``NONE``        nobody: a long-polling session between GETs, or no transport yet.
    ``POLL``        a long-poll GET waits; the first packet releases it, and it takes.
    ``IDLE``        the WebSocket writer task is parked (or not started yet: it starts when
                    first needed), nothing is queued, and the connection holds nothing
                    unsent: the task that sends a packet may write it itself (where the host
                    can write without waiting).
    ``FLUSH_DUE``   the writer is parked (or not started yet); broadcasts queued packets
                    without waking it, and the flusher will write them (with all that joins
                    them meanwhile) in one write, or wake the writer to take them in one batch
                    where the host cannot.
    ``BUSY``        the writer task is awake: it takes everything queued before it parks.
    ==============  ===========================================================================
    """

    NONE = "none"
    POLL = "poll"
    IDLE = "idle"
    FLUSH_DUE = "flush due"
    BUSY = "busy"


class SessionTransport(Protocol):
    """The transport a session uses now (see :mod:`~trio_sio._engine.polling` and
    :mod:`~trio_sio._engine.websocket`)."""

    name: Transport

    def detach(self, reason: DisconnectReason | None) -> None:
        """Stop carrying the session's packets: it closed (``reason``), or an upgrade
        replaces this transport (``None``). Synchronous; releases whatever waits."""
        ...
