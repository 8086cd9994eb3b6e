"""The layers keep to their places.

Like trio's test that keeps ``trio._core`` free of its higher layers, this reads every module
(without importing it). The protocol core stays sans-I/O and clock-free: none of its modules
imports an I/O or event loop library, the logging machinery or the clock, or reaches out of the
package. Above it, the Engine.IO runtime, Socket.IO, the hosts and the adapters each use only
the layers below them (see the second half).
"""

from __future__ import annotations

import ast
import pkgutil
from importlib.util import find_spec
from pathlib import Path

import pytest

import trio_sio._protocol

PACKAGE = "trio_sio._protocol"
FORBIDDEN = frozenset({"trio", "hypercorn", "anyio", "asyncio", "logging", "socket", "time"})


def protocol_modules() -> dict[str, Path]:
    """Every module in the package, the package itself included, by dotted name."""
    modules = {PACKAGE: Path(trio_sio._protocol.__file__)}
    for info in pkgutil.walk_packages(trio_sio._protocol.__path__, prefix=PACKAGE + "."):
        spec = find_spec(info.name)
        assert spec is not None
        assert spec.origin is not None
        modules[info.name] = Path(spec.origin)
    return modules


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """The absolute names of everything ``source`` imports, wherever in the file.

    Covers ``import x.y``, ``from x.y import z`` and relative imports (resolved against
    ``module``), plus ``__import__("x")`` and ``importlib.import_module("x")`` with a literal
    name. For ``from x import y`` both ``x`` and ``x.y`` are reported, as ``y`` may be a module.
    """
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                assert node.module is not None
                base = node.module
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if (
                called in ("__import__", "import_module")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names.add(first.value)
    return names


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """The imports in ``source`` that the protocol core must not have."""
    bad = []
    for name in sorted(imported_modules(source, module, is_package=is_package)):
        top = name.split(".")[0]
        if top in FORBIDDEN:
            bad.append(name)
        elif top == "trio_sio" and name != PACKAGE and not name.startswith(PACKAGE + "."):
            # Anything above the core (the runtime) is a higher layer.
            bad.append(name)
    return bad


def test_protocol_package_has_the_expected_modules() -> None:
    """Guards the walk itself: an empty or partial walk would make the next test pass."""
    modules = protocol_modules()
    assert set(modules) >= {
        PACKAGE,
        f"{PACKAGE}.codec",
        f"{PACKAGE}.engineio",
        f"{PACKAGE}.errors",
        f"{PACKAGE}.socketio",
    }
    for path in modules.values():
        assert path.suffix == ".py"
        assert path.is_file()


@pytest.mark.parametrize("module", sorted(protocol_modules()))
def test_protocol_module_is_sans_io(module: str) -> None:
    path = protocol_modules()[module]
    source = path.read_text(encoding="utf-8")
    assert violations(source, module, is_package=path.name == "__init__.py") == []


@pytest.mark.parametrize(
    "source",
    [
        "import trio",
        "import trio.lowlevel",
        "import hypercorn.trio",
        "import anyio as aio",
        "import json, asyncio",
        "from logging import getLogger",
        "from logging.handlers import QueueHandler",
        "from socket import socket",
        "from time import monotonic",
        "import time",
        "from trio import lowlevel",
        "def f():\n    import logging\n",
        "try:\n    import trio\nexcept ImportError:\n    pass\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trio\n",
        "__import__('time')",
        "import importlib\nimportlib.import_module('socket')",
        "from .. import _server",
        "from .._engine import session",
        "from ..engineio import Outgoing",
        "from trio_sio import _socket",
        "import trio_sio._engine.session",
    ],
)
def test_checker_catches_forbidden_imports(source: str) -> None:
    """The checker is not vacuous: each of these, added to a protocol module, fails the test."""
    assert violations(source, f"{PACKAGE}.socketio") != []


@pytest.mark.parametrize(
    "source",
    [
        "import json",
        "import base64, binascii, enum",
        "from dataclasses import dataclass",
        "from urllib.parse import parse_qsl",
        "from .errors import ProtocolError",
        "from . import codec",
        "from trio_sio._protocol.codec import StdlibJson",
        "import timeit",
        "from datetime import timedelta",
        "import sockets_helper",
        "from mytrio import x",
        "x = 'import trio'",
    ],
)
def test_checker_allows_the_standard_library_and_the_core_itself(source: str) -> None:
    assert violations(source, f"{PACKAGE}.socketio") == []


def test_relative_imports_resolve_from_the_package_init() -> None:
    assert imported_modules("from .codec import X", PACKAGE, is_package=True) == {
        f"{PACKAGE}.codec",
        f"{PACKAGE}.codec.X",
    }
    assert violations("from .. import _server", PACKAGE, is_package=True) == [
        "trio_sio",
        "trio_sio._server",
    ]


# --- the layers above the core -------------------------------------------------------------
#
# trio_sio._protocol   sans-I/O codecs (above)
# trio_sio._engine     the Engine.IO runtime: sessions, delivery, transports
# Socket.IO            _server, _namespace, _socket, _broadcast, _adapter, _cluster
# trio_sio.hosts       ASGI/hypercorn, native, in-memory
# trio_sio.adapters    cluster adapters (plug-ins)
#
# Each layer may use the ones listed above it, never one below, and the core never depends on
# the adapters/ plug-in folder.

ENGINE = "trio_sio._engine"
SOCKETIO = {f"trio_sio.{name}" for name in ("_server", "_namespace", "_socket", "_broadcast")}
SOCKETIO |= {"trio_sio._adapter", "trio_sio._cluster", "trio_sio._lifecycle", "trio_sio._recovery"}
HOSTS = "trio_sio.hosts"
ADAPTERS = "trio_sio.adapters"
CLIENT = "trio_sio._client"
TRANSPORTS = {f"{ENGINE}.polling", f"{ENGINE}.websocket"}
WIRE = f"{ADAPTERS}._wire"  # Node's cluster wire formats: pure, like the protocol core


def package_modules() -> dict[str, tuple[Path, bool]]:
    """Every module of trio_sio: dotted name -> (file, whether it is a package's __init__)."""
    import trio_sio

    modules = {"trio_sio": (Path(trio_sio.__file__), True)}
    for info in pkgutil.walk_packages(trio_sio.__path__, prefix="trio_sio."):
        spec = find_spec(info.name)
        assert spec is not None
        assert spec.origin is not None
        modules[info.name] = (Path(spec.origin), info.ispkg)
    return modules


MODULES = package_modules()


def imports_of(module: str) -> set[str]:
    path, is_package = MODULES[module]
    return imported_modules(path.read_text(encoding="utf-8"), module, is_package=is_package)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def modules_in(prefix: str) -> list[str]:
    return sorted(name for name in MODULES if within(name, prefix))


def test_the_layers_are_where_the_rules_expect_them() -> None:
    """Guards the walk: the rules below would pass vacuously on missing modules."""
    assert {f"{ENGINE}.session", f"{ENGINE}.delivery", *TRANSPORTS} <= set(MODULES)
    assert set(MODULES) >= SOCKETIO
    assert {f"{HOSTS}._asgi", f"{HOSTS}.native._http", f"{HOSTS}._memory"} <= set(MODULES)
    assert {f"{ADAPTERS}.redis", f"{ADAPTERS}.redis_sharded", WIRE, f"{ADAPTERS}._base"} <= set(
        MODULES
    )
    assert {f"{CLIENT}._client", f"{CLIENT}._engine", f"{CLIENT}._http"} <= set(MODULES)


@pytest.mark.parametrize("module", modules_in(ENGINE))
def test_engine_uses_only_the_protocol_core(module: str) -> None:
    allowed = (ENGINE, PACKAGE, "trio_sio._errors")
    bad = [
        name
        for name in imports_of(module)
        if within(name, "trio_sio") and not any(within(name, ok) for ok in allowed)
    ]
    assert bad == []


@pytest.mark.parametrize("module", modules_in(ENGINE))
def test_engine_files_keep_to_each_others_public_names(module: str) -> None:
    """No ``from .x import _y``, and no ``other._attribute`` unless this file defines it."""
    path, _ = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }
    defined |= {
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
    }
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            bad += [a.name for a in node.names if a.name.startswith("_") and a.name != "__all__"]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in defined:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                bad.append(ast.unparse(node))
    assert bad == []


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_engine_has_no_import_cycle() -> None:
    """Typing-only imports count: a cycle is a cycle of knowledge."""
    engine = modules_in(ENGINE)
    edges = {m: {n for n in imports_of(m) if n in engine and n != m} for m in engine}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for target in edges[module]:
            if target != ENGINE:  # the package re-exports; its modules never import it
                visit(target, (*path, module))
        done.add(module)

    for module in engine:
        visit(module, ())


@pytest.mark.parametrize("module", sorted(SOCKETIO))
def test_socketio_never_uses_a_host_or_a_transport(module: str) -> None:
    bad = [
        name
        for name in imports_of(module)
        if within(name, HOSTS) or any(within(name, t) for t in TRANSPORTS)
    ]
    assert bad == []


@pytest.mark.parametrize("module", modules_in(ADAPTERS))
def test_adapters_never_use_a_host(module: str) -> None:
    assert [name for name in imports_of(module) if within(name, HOSTS)] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not within(m, ADAPTERS)))
def test_the_core_never_uses_the_adapter_plugins(module: str) -> None:
    assert [name for name in imports_of(module) if within(name, ADAPTERS)] == []


#: Engine files allowed past the rule, and why.
LARGER_ENGINE_FILES = {
    # Delivery owns every way a session's packets leave (five since long-polls are answered
    # by the sending task), and tells the fan-out which recipients drain only when they poll:
    # split across files, the one owner of that state would not be one.
    "trio_sio._engine.delivery": 420,
}


@pytest.mark.parametrize("module", modules_in(ENGINE))
def test_engine_files_stay_small(module: str) -> None:
    path, _ = MODULES[module]
    limit = LARGER_ENGINE_FILES.get(module, 370)  # "about 350"
    assert len(path.read_text(encoding="utf-8").splitlines()) <= limit


def test_the_recovery_store_is_sans_io() -> None:
    """The connection state recovery store is a pure state machine (given the time by its
    callers), as the protocol core is, so it is tested with a model rather than a clock."""
    path, _ = MODULES["trio_sio._recovery"]
    names = imported_modules(path.read_text(encoding="utf-8"), "trio_sio._recovery")
    assert [name for name in names if name.split(".")[0] in FORBIDDEN | {"trio_sio"}] == []


# --- the client ------------------------------------------------------------------------------
#
# The client shares the protocol core, the public exceptions, the acknowledgement rule and the
# registration checks with the server, and nothing else: no server internals (sessions,
# delivery, sockets, namespaces), no host. The server never uses the client.

CLIENT_MAY_USE = (
    CLIENT,
    PACKAGE,
    "trio_sio._errors",
    "trio_sio._acks",
    "trio_sio._signatures",
)


@pytest.mark.parametrize("module", modules_in(CLIENT))
def test_client_uses_only_what_it_shares_with_the_server(module: str) -> None:
    bad = [
        name
        for name in imports_of(module)
        if within(name, "trio_sio") and not any(within(name, ok) for ok in CLIENT_MAY_USE)
    ]
    assert bad == []


#: Modules that join the client to the server: the package, and the testing helpers, which
#: connect a Client to an in-process Server.
CLIENT_AND_SERVER = {"trio_sio", "trio_sio.testing"}


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if not within(m, CLIENT) and m not in CLIENT_AND_SERVER)
)
def test_the_server_never_uses_the_client(module: str) -> None:
    assert [name for name in imports_of(module) if within(name, CLIENT)] == []


def test_the_cluster_wire_format_is_sans_io() -> None:
    """Bytes in, messages out: no I/O library, no Redis client, no logging, no clock. From
    trio_sio it takes the protocol core, the adapter's BroadcastOptions and the (sans-I/O)
    recovery store's PersistedSession."""
    allowed = (PACKAGE, "trio_sio._adapter", "trio_sio._recovery")
    bad = [
        name
        for name in imports_of(WIRE)
        if name.split(".")[0] in FORBIDDEN | {"coredis"}
        or (within(name, "trio_sio") and not any(within(name, ok) for ok in allowed))
    ]
    assert bad == []


@pytest.mark.parametrize("module", [f"{ADAPTERS}._base", WIRE])
def test_the_cluster_protocol_knows_no_transport(module: str) -> None:
    """The cluster adapter base and the wire formats never reach for Redis: a transport is a
    module of its own."""
    assert [name for name in imports_of(module) if name.split(".")[0] == "coredis"] == []
    assert [name for name in imports_of(module) if within(name, f"{ADAPTERS}.redis")] == []
