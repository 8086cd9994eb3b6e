"""The hosts: what turns connections into requests for an Engine.IO/Socket.IO endpoint.

The layers below (the Engine.IO runtime, Socket.IO) never import a host; a host sees its
endpoint through :class:`Endpoint` only.

- the ASGI host, for hypercorn's Trio worker: :class:`ASGIApp` and :func:`serve_hypercorn`;
- the native host, h11 and trio_sio's own WebSocket codec on Trio streams:
  :func:`serve_native` with :class:`NativeConfig`;
- the in-memory host of :mod:`trio_sio.testing` (:class:`MemoryWebSocket`).

They share the endpoint protocol, routes, static files and the ordered shutdown
(``_common``).
"""

from ._asgi import ASGIApp, ASGIApplication
from ._common import Endpoint, Route
from ._hypercorn import serve_hypercorn
from ._memory import MemoryWebSocket
from .native import NativeConfig, serve_native

__all__ = [
    "ASGIApp",
    "ASGIApplication",
    "Endpoint",
    "MemoryWebSocket",
    "NativeConfig",
    "Route",
    "serve_hypercorn",
    "serve_native",
]
