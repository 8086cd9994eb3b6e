"""The protocol core stays sans-I/O and clock-free.

Like trio's test that keeps ``trio._core`` free of its higher layers, this reads every module of
``trio_sio._protocol`` (without importing it) and fails if any of them imports an I/O or event
loop library, the logging machinery or the clock, or reaches out of the package.
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
