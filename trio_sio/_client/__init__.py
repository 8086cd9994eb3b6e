"""The Socket.IO client: :class:`Client` over trio-websocket and h11 long-polling.

Layers, each using only those before it: ``_http`` (URLs, TCP/TLS streams, HTTP/1.1 on h11),
``_transports`` (WebSocket and polling), ``_engine`` (one Engine.IO session: heartbeat,
batches, upgrade) and ``_client`` (namespaces,
events, acknowledgements, reconnection). Protocol logic itself lives in
:mod:`trio_sio._protocol`, shared with the server, parsers included (``parser=``: JSON by
default, or msgpack).
"""

from ._client import Client, ClientNamespace, ConnectError

__all__ = ["Client", "ClientNamespace", "ConnectError"]
