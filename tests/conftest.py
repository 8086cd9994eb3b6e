"""Shared fixtures.

``conformance_url``: base URL (``http://127.0.0.1:PORT``) of a server running the fixture app of
``../shared/conformance/CONTRACT.md`` (Socket.IO at ``/socket.io/``, Engine.IO echo at
``/engine.io/``). By default it serves ``tests/conformance_app.py`` in-process, once on each
host: its ``app`` with hypercorn's Trio worker, and the same servers on the native Trio host.
With ``TRIO_SIO_EXTERNAL_URL`` set it uses that server instead, once (for example a Node
reference server, to check the harness itself). A test module switches on an optional part of
the fixture app (``TRIO_SIO_METRICS``) by overriding the ``conformance_env`` fixture.

It also serves the fixture app as a cluster, once per Redis adapter (hosts ``cluster-classic``,
``cluster-sharded``, ``cluster-streams``; tests/support/cluster.py): a private ``redis-server``
and ``python tests/conformance_app.py --native --workers 2`` with ``TRIO_SIO_REDIS_URL``,
``TRIO_SIO_REDIS_ADAPTER`` and the test's ``conformance_env``, two processes behind one port,
kept across tests per environment (a test must leave nothing behind: its rooms are its own).
Run the conformance suite on the clusters alone with::

    pytest tests/test_official_clients.py tests/test_operations.py tests/test_parsers.py \
        tests/test_recovery_clients.py tests/test_admin.py -k cluster

A test that cannot apply to a cluster is marked ``not_on_cluster(reason, adapters=...)``:
skipped there, saying why.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from support.cluster import ADAPTERS, Clusters
from support.redis import REDIS_MISSING

TESTS_DIR = Path(__file__).resolve().parent
CONFORMANCE_APP = TESTS_DIR / "conformance_app.py"
EXTERNAL_URL_ENV = "TRIO_SIO_EXTERNAL_URL"

#: Engine.IO maxPayload of the fixture app; hypercorn's own WebSocket limit must match it.
MAX_PAYLOAD = 1_000_000


def load_conformance_app() -> object:
    """Import a fresh copy of tests/conformance_app.py and return its ASGI ``app``."""
    app: object = load_conformance_module().app
    return app


def load_conformance_module() -> Any:
    """Import a fresh copy of tests/conformance_app.py (its servers are not shared)."""
    if not CONFORMANCE_APP.is_file():
        raise FileNotFoundError(
            f"{CONFORMANCE_APP} does not exist; set {EXTERNAL_URL_ENV}=http://host:port "
            "to run these tests against a server started elsewhere"
        )
    spec = importlib.util.spec_from_file_location("conformance_app", CONFORMANCE_APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The hosts the fixture app is served on in-process.
HOSTS = ["hypercorn", "native"]
#: The fixture app as a cluster, one per Redis adapter (tests/support/cluster.py).
CLUSTERS = [f"cluster-{adapter}" for adapter in ADAPTERS]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked ``not_on_cluster(reason, adapters=...)`` is skipped, with its reason, on
    the cluster hosts of those adapters (all by default), before any fixture starts."""
    for item in items:
        marker = item.get_closest_marker("not_on_cluster")
        callspec = getattr(item, "callspec", None)
        host = callspec.params.get("conformance_url") if callspec is not None else None
        if marker is None or host not in CLUSTERS:
            continue
        adapter = host.removeprefix("cluster-")
        if adapter in marker.kwargs.get("adapters", ADAPTERS):
            reason = f"on a cluster of the {adapter} adapter: {marker.args[0]}"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def conformance_env() -> dict[str, str]:
    """Environment variables set while the fixture app is loaded: none here; a test module
    overrides this fixture to switch on an optional part of the app."""
    return {}


@pytest.fixture(scope="session")
def conformance_clusters() -> Iterator[Clusters]:
    """The clusters of the fixture app, started when a test first needs one and kept across
    tests."""
    clusters = Clusters()
    try:
        yield clusters
    finally:
        clusters.close()


_ADAPTERS_BY_MODULE = pytest.StashKey[dict[str, set[str]]]()


def cluster_adapters(request: pytest.FixtureRequest) -> set[str]:
    """The adapters whose cluster hosts the selected, not skipped tests of the requesting
    test's module use (worked out once per session)."""
    by_module = request.session.stash.get(_ADAPTERS_BY_MODULE, None)
    if by_module is None:
        by_module = {}
        for item in request.session.items:
            callspec = getattr(item, "callspec", None)
            host = callspec.params.get("conformance_url") if callspec is not None else None
            if host in CLUSTERS and item.get_closest_marker("skip") is None:
                module = item.nodeid.partition("::")[0]
                by_module.setdefault(module, set()).add(host.removeprefix("cluster-"))
        request.session.stash[_ADAPTERS_BY_MODULE] = by_module
    return by_module.get(request.node.nodeid.partition("::")[0], set())


@pytest.fixture(params=[*HOSTS, *CLUSTERS])
async def conformance_url(
    request: pytest.FixtureRequest,
    conformance_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[str]:
    """Base URL of the fixture app, on each host for the duration of one test, and on a
    cluster of two processes per Redis adapter (kept for the test module)."""
    for name, value in conformance_env.items():
        monkeypatch.setenv(name, value)
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        if request.param != HOSTS[0]:
            pytest.skip(f"{EXTERNAL_URL_ENV} is set: the external server is tested once")
        yield external.rstrip("/")
        return

    if request.param in CLUSTERS:
        if REDIS_MISSING is not None:
            pytest.skip(REDIS_MISSING)
        adapter = request.param.removeprefix("cluster-")
        clusters: Clusters = request.getfixturevalue("conformance_clusters")
        # This module's other cluster hosts start with this one, in parallel.
        also = cluster_adapters(request)
        yield await trio.to_thread.run_sync(clusters.url, adapter, conformance_env, also)
        return

    if request.param == "native":
        module = load_conformance_module()
        async with trio.open_nursery() as nursery:
            urls: list[str] = await nursery.start(module.serve_native, 0)
            yield urls[0]
            nursery.cancel_scope.cancel()
        return

    from hypercorn.config import Config
    from hypercorn.trio import serve

    app = load_conformance_app()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.websocket_max_message_size = MAX_PAYLOAD
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve, app, config)
        http_urls = [url for url in urls if url.startswith("http://")]
        assert http_urls, f"hypercorn bound no plain-HTTP address: {urls}"
        yield http_urls[0]
        nursery.cancel_scope.cancel()
