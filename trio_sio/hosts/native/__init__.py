"""The native host: HTTP/1.1 (h11) and WebSocket (our own codec) straight on Trio streams.

The same :class:`~trio_sio.Server` and handlers as under hypercorn, without ASGI in between;
see :func:`serve_native`.
"""

from ._config import NativeConfig
from ._serve import serve_native

__all__ = ["NativeConfig", "serve_native"]
