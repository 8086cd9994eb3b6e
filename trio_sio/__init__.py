"""trio_sio: a Socket.IO v5 / Engine.IO v4 server built on Trio's structured concurrency.

::

    sio = trio_sio.Server()

    @sio.on("chat message")
    async def chat_message(sock: trio_sio.Socket, msg: str) -> None:
        await sio.emit("chat message", msg)

    app = trio_sio.ASGIApp(sio)  # hypercorn -k trio module:app
"""

from ._acks import NO_ACK as NO_ACK
from ._acks import Ack as Ack
from ._adapter import Adapter as Adapter
from ._adapter import BroadcastOptions as BroadcastOptions
from ._broadcast import AckCollector as AckCollector
from ._broadcast import BroadcastOperator as BroadcastOperator
from ._cli import run as run
from ._client import Client as Client
from ._client import ClientNamespace as ClientNamespace
from ._client import ConnectError as ConnectError
from ._errors import ConnectionRefused as ConnectionRefused
from ._errors import Disconnected as Disconnected
from ._errors import DisconnectReason as DisconnectReason
from ._errors import RefusalCause as RefusalCause
from ._namespace import Namespace as Namespace
from ._namespace import NamespaceHandlers as NamespaceHandlers
from ._namespace import ParentNamespace as ParentNamespace
from ._protocol import JsonParser as JsonParser
from ._protocol import MsgpackParser as MsgpackParser
from ._protocol import ProtocolError as ProtocolError
from ._recovery import ConnectionStateRecovery as ConnectionStateRecovery
from ._recovery import RecoveryFailure as RecoveryFailure
from ._recovery import RecoveryStatistics as RecoveryStatistics
from ._server import NamespaceStatistics as NamespaceStatistics
from ._server import Server as Server
from ._server import ServerStatistics as ServerStatistics
from ._socket import Handshake as Handshake
from ._socket import Socket as Socket
from ._socket import SocketStatistics as SocketStatistics
from .hosts import ASGIApp as ASGIApp
from .hosts import NativeConfig as NativeConfig
from .hosts import serve_hypercorn as serve_hypercorn
from .hosts import serve_native as serve_native

__all__ = [
    "NO_ACK",
    "ASGIApp",
    "Ack",
    "AckCollector",
    "Adapter",
    "BroadcastOperator",
    "BroadcastOptions",
    "Client",
    "ClientNamespace",
    "ConnectError",
    "ConnectionRefused",
    "ConnectionStateRecovery",
    "DisconnectReason",
    "Disconnected",
    "Handshake",
    "JsonParser",
    "MsgpackParser",
    "Namespace",
    "NamespaceHandlers",
    "NamespaceStatistics",
    "NativeConfig",
    "ParentNamespace",
    "ProtocolError",
    "RecoveryFailure",
    "RecoveryStatistics",
    "RefusalCause",
    "Server",
    "ServerStatistics",
    "Socket",
    "SocketStatistics",
    "run",
    "serve_hypercorn",
    "serve_native",
]

__version__ = "0.1.0.dev0"
