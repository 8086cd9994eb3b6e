"""Development sessions: ``nox -s tests``, ``lint``, ``typecheck`` and ``docs``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (needs Node.js/npm for the official-client tests)."""
    session.install("-e", ".[test]")
    session.run("npm", "ci", "--prefix", "tests/js", "--no-audit", "--no-fund", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    paths = ["trio_sio", "tests", "examples", "benchmarks", "docs", "scripts", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "trio_sio", "examples", "benchmarks")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with Sphinx, warnings as errors, into build/docs."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "build/docs", *session.posargs
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark trio_sio against python-socketio (uvicorn, hypercorn-asyncio), Node's socket.io
    and a bare hypercorn-trio floor; writes benchmarks/RESULTS.md (~15 min on 2 cores; not run
    in CI). Arguments go to benchmarks/run.py, e.g. ``nox -s bench -- --smoke``. The redis
    extra is for the cluster and workers servers (``--servers trio_sio_classic,...``)."""
    session.install(
        "-e", ".[redis]", "python-socketio==5.18.1", "uvicorn[standard]==0.54.0", "py-spy"
    )
    session.run("npm", "ci", "--prefix", "tests/js", "--no-audit", "--no-fund", external=True)
    session.run("python", "benchmarks/run.py", *session.posargs)
