"""What every host shares: the endpoint it serves, static files, and the ordered shutdown."""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import trio

from .._engine import HttpRequest, HttpResponse

__all__ = ["Endpoint", "Route", "close_endpoints", "content_type", "find_static_file"]

#: ``async def route(request) -> HttpResponse``: a plain HTTP handler a host serves at a path
#: of its own (the Prometheus metrics of :mod:`trio_sio.metrics`, a health check), beside the
#: endpoints and the static files.
Route = Callable[[HttpRequest], Awaitable[HttpResponse]]


class Endpoint(Protocol):
    """What a host serves: a :class:`~trio_sio.Server` or an
    :class:`~trio_sio.engineio.EngineServer`."""

    @property
    def running(self) -> bool:
        """Whether its ``run`` is running."""
        ...

    @property
    def max_payload(self) -> int:
        """The largest message it accepts (a host's own WebSocket limit should match)."""
        ...

    @property
    def shutdown_grace(self) -> float:
        """How long its :meth:`shutdown` may take."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> Any:
        """Host its sessions until cancelled (``nursery.start``)."""
        ...

    async def handle_http(self, request: HttpRequest) -> HttpResponse:
        """Answer a request."""
        ...

    async def handle_websocket(self, request: HttpRequest, ws: Any) -> None:
        """Serve a WebSocket connection."""
        ...

    async def shutdown(self) -> None:
        """Close every session and wait until they have ended."""
        ...


async def close_endpoints(
    endpoints: Sequence[Endpoint],
    *,
    then: Callable[[], Awaitable[None]] | None = None,
    grace: float | None = None,
) -> None:
    """The shutdown every host does when it stops, in order: every session of ``endpoints``
    closes (clients see their transport close, disconnect handlers run), then ``then`` (the
    host's own closing, such as WebSocket closing handshakes). Shielded from the caller's
    cancellation, and bounded by ``grace``, by default the longest of the endpoints'
    ``shutdown_grace``."""
    with trio.CancelScope(shield=True) as scope:
        if grace is None:
            grace = max((endpoint.shutdown_grace for endpoint in endpoints), default=1.0)
        scope.deadline = trio.current_time() + grace
        for endpoint in endpoints:
            await endpoint.shutdown()
        if then is not None:
            await then()


def find_static_file(files: Mapping[str, Path], path: str) -> Path | None:
    """The file to serve for URL ``path``: ``files`` maps URL paths to files, or to
    directories served below them (``index.html`` for the directory itself). Nothing outside
    a directory is ever served, and a path the file system refuses (a NUL byte, a name too
    long) is simply not found."""
    try:
        file = files.get(path)
        if file is not None and file.is_file():
            return file
        for url, root in files.items():
            base = url.rstrip("/")
            if path.startswith(base + "/") and root.is_dir():
                relative = path[len(base) + 1 :] or "index.html"
                candidate = (root / relative).resolve()
                if candidate.is_relative_to(root.resolve()) and candidate.is_file():
                    return candidate
    except (ValueError, OSError):
        pass
    return None


def content_type(file: Path) -> str:
    """The ``Content-Type`` of a static file (UTF-8 for text)."""
    guessed = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if guessed.startswith("text/") or guessed == "application/javascript":
        guessed += "; charset=utf-8"
    return guessed
