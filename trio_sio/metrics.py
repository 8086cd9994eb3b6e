"""Prometheus metrics of a :class:`~trio_sio.Server`, read at scrape time.

Needs ``prometheus-client`` (``pip install 'trio-sio[metrics]'``). :class:`ServerCollector`
reads :meth:`Server.statistics() <trio_sio.Server.statistics>` when Prometheus scrapes, so
the metrics cost nothing between scrapes; :func:`metrics_route` serves them on either host::

    from trio_sio.metrics import metrics_route

    app = trio_sio.ASGIApp(sio, routes={"/metrics": metrics_route(sio)})
    # or: await trio_sio.serve_native(sio, routes={"/metrics": metrics_route(sio)})

Under another ASGI framework, register the collector in a registry and mount
``prometheus_client.make_asgi_app(registry)``.

The metrics are ``trio_sio_sessions{transport}``, ``trio_sio_sockets{namespace}``,
``trio_sio_rooms{namespace}`` and ``trio_sio_queued_bytes`` (gauges), and counters named
``trio_sio_..._total`` for the counters of :class:`~trio_sio.ServerStatistics`, and with
connection state recovery on, ``trio_sio_recovery_...`` for its store; the
documentation's "Operating trio_sio" page lists them, with a scrape configuration. Reasons
and causes that never happened are reported as 0, so that ``rate()`` has a series from the
first scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import trio

from ._engine import HttpRequest, HttpResponse
from ._errors import DisconnectReason, RefusalCause
from ._recovery import RecoveryFailure

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "trio_sio.metrics needs prometheus-client: pip install 'trio-sio[metrics]'"
    ) from exc

if TYPE_CHECKING:
    from ._server import Server
    from .hosts import Route

__all__ = ["REFUSAL_CAUSES", "ServerCollector", "metrics_route"]

#: Every cause of a refusal the server counts (see ``ServerStatistics.refusals``).
REFUSAL_CAUSES = tuple(cause.value for cause in RefusalCause)

_REASONS = tuple(reason.value for reason in DisconnectReason)
_RECOVERY_FAILURES = tuple(failure.value for failure in RecoveryFailure)


class ServerCollector(Collector):
    """A Prometheus collector of one server's :meth:`~trio_sio.Server.statistics`.

    Args:
        server: the server to report.
        prefix: the metric names' prefix (one per server if a process runs several).
    """

    def __init__(self, server: Server, *, prefix: str = "trio_sio") -> None:
        self.server = server
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        """The metrics, from one snapshot of the statistics."""
        stats = self.server.statistics()
        p = self.prefix
        sessions = GaugeMetricFamily(
            f"{p}_sessions", "Open Engine.IO sessions, by transport.", labels=["transport"]
        )
        sessions.add_metric(["polling"], stats.polling)
        sessions.add_metric(["websocket"], stats.websocket)
        yield sessions
        sockets = GaugeMetricFamily(
            f"{p}_sockets", "Connected sockets, by namespace.", labels=["namespace"]
        )
        rooms = GaugeMetricFamily(
            f"{p}_rooms",
            "Rooms, by namespace (each socket's own room included).",
            labels=["namespace"],
        )
        for name, namespace in stats.namespaces.items():
            sockets.add_metric([name], namespace.sockets)
            rooms.add_metric([name], namespace.rooms)
        yield sockets
        yield rooms
        yield GaugeMetricFamily(
            f"{p}_queued_bytes", "Bytes waiting in all outbound queues.", stats.queued_bytes
        )
        for name, documentation, value in (
            ("connections", "Engine.IO sessions opened (handshakes).", stats.connections),
            ("upgrades", "Sessions upgraded from long-polling to WebSocket.", stats.upgrades),
            ("socket_connects", "Sockets connected, all namespaces.", stats.socket_connects),
            ("events_received", "Events received from clients.", stats.events_in),
            ("events_sent", "Events sent to clients, once per recipient.", stats.events_out),
            ("received_bytes", "Bytes of Socket.IO packets received.", stats.bytes_in),
            ("sent_bytes", "Bytes of Socket.IO packets sent.", stats.bytes_out),
            ("slow_consumers", "Clients cut for a full outbound queue.", stats.slow_consumers),
            ("protocol_errors", "Sessions closed for a protocol error.", stats.protocol_errors),
        ):
            yield CounterMetricFamily(f"{p}_{name}", documentation, value)
        for name, documentation, label, known, counts in (
            ("disconnects", "Sessions closed, by reason.", "reason", _REASONS, stats.disconnects),
            (
                "socket_disconnects",
                "Sockets disconnected, by reason.",
                "reason",
                _REASONS,
                stats.socket_disconnects,
            ),
            (
                "refusals",
                "Refused handshakes and CONNECTs, by cause.",
                "cause",
                REFUSAL_CAUSES,
                stats.refusals,
            ),
        ):
            yield _by_label(f"{p}_{name}", documentation, label, known, counts)
        recovery = stats.recovery
        if recovery is None:
            return
        for name, documentation, value in (
            ("packets", "Recoverable packets kept.", recovery.packets),
            ("bytes", "Bytes of the recoverable packets kept.", recovery.bytes),
            ("sessions", "Disconnected sockets kept for recovery.", recovery.sessions),
        ):
            yield GaugeMetricFamily(f"{p}_recovery_{name}", documentation, value)
        for name, documentation, value in (
            ("evicted_packets", "Packets dropped to keep the bounds.", recovery.evicted_packets),
            ("evicted_sessions", "Sessions dropped to keep the bounds.", recovery.evicted_sessions),
            ("restored", "Sockets recovered.", recovery.restored),
            ("replayed", "Packets replayed to recovered sockets.", recovery.replayed),
        ):
            yield CounterMetricFamily(f"{p}_recovery_{name}", documentation, value)
        yield _by_label(
            f"{p}_recovery_failures",
            "Reconnections that got a fresh session, by reason.",
            "reason",
            _RECOVERY_FAILURES,
            recovery.failures,
        )


def _by_label(
    name: str, documentation: str, label: str, known: Iterable[str], counts: Mapping[str, int]
) -> CounterMetricFamily:
    """A counter by ``label``: every ``known`` value (0 if it never happened), then any
    other value counted."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key in dict.fromkeys([*known, *counts]):
        family.add_metric([key], counts.get(key, 0))
    return family


def metrics_route(server: Server, *, registry: CollectorRegistry | None = None) -> Route:
    """A :data:`~trio_sio.hosts.Route` that answers ``GET`` with the Prometheus text format
    (other methods with 405).

    Args:
        server: the server whose statistics are reported (a :class:`ServerCollector` is
            registered for it).
        registry: where the collector is registered and what is served: a new registry by
            default (this server's metrics only); ``prometheus_client.REGISTRY`` adds the
            process and Python metrics, and whatever else the program registered there.
    """
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
    registry.register(ServerCollector(server))
    metrics_registry = registry

    async def metrics(request: HttpRequest) -> HttpResponse:
        await trio.lowlevel.checkpoint()
        if request.method != "GET":
            return HttpResponse(405, b"Method Not Allowed", [("Allow", "GET")])
        body = generate_latest(metrics_registry)
        return HttpResponse(200, body, [("Content-Type", CONTENT_TYPE_LATEST)])

    return metrics
