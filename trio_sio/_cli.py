"""Serving from the command line, on the native host: ``python -m trio_sio module:sio``.

hypercorn has its own command line for the ASGI host (``hypercorn -k trio module:app``); this
one is for :func:`~trio_sio.serve_native`, and :func:`run` is the same thing for a script's
``if __name__ == "__main__"``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

from .hosts import Endpoint, NativeConfig, serve_native
from .hosts.native._workers import WorkerFailed, serve_worker, supervise_workers

__all__ = ["LOG_FORMAT", "configure_logging", "main", "run"]

#: The format of the command line's log lines: time, level, logger, message.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def run(
    server: Endpoint,
    host: str = "127.0.0.1",
    port: int = 5001,
    *,
    log_level: str = "info",
    **serve_options: Any,
) -> None:
    """Serve ``server`` on the native host until SIGINT (Ctrl+C) or SIGTERM: :func:`trio.run`
    and :func:`~trio_sio.serve_native` (whose keyword arguments it takes) in one call, for the
    end of a script. Prints the URLs it listens on once it does.

    Unless the program configured logging already, records at ``log_level`` and above go to
    stderr with their time and level (:data:`LOG_FORMAT`), as with ``python -m trio_sio``.

    The signal stops it gracefully, as cancelling :func:`~trio_sio.serve_native` does: every
    session closes with ``"server shutting down"`` and its disconnect handlers run. Must be
    called from the main thread. Inside a Trio program, start
    :func:`~trio_sio.serve_native` in a nursery instead.
    """

    configure_logging(log_level)
    _until_signalled(
        functools.partial(serve_native, server, host, port, **serve_options), announce=True
    )


def configure_logging(level: str) -> None:
    """Records at ``level`` (``"info"``...) and above to stderr, in :data:`LOG_FORMAT`; nothing
    if the program configured logging already (:func:`logging.basicConfig`'s rule).

    The records then carry no thread, process or source location (the format shows none of
    them): a handler added later that shows ``%(lineno)d`` or ``%(filename)s`` finds them
    empty. While the command line's Trio run serves, the records logged by its tasks in one
    pass of the scheduler are written together, right after it: one write to stderr, not one
    per record."""
    if logging.getLogger().handlers:
        return
    handler = _BatchingHandler()
    handler.setFormatter(_Formatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # What the format does not show, records need not look up. At INFO a handshake writes two
    # records, and these took two thirds of a record's cost (about 35 µs, 10 µs without):
    # the caller's file and line (a walk up the stack), thread and process, and the time
    # formatted anew for each record (the logging HOWTO's "Optimization" names the first ones).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class _BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stderr handler that writes, while its :meth:`write_batches` task runs, the records
    that Trio tasks log in one scheduler pass in one write, at the start of the next pass.

    At INFO every handshake logs two records, and the write of each (a system call) cost a
    handshake more than formatting both (benchmarks/PROFILE.md); under load the records of
    many handshakes share one write. A record waits at most for the tasks that ran in the
    same pass. Records from other threads, or while the task is not running, are written at
    once."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        #: Set when records are pending; None while the writer task is not running.
        self._wake: trio.Event | None = None
        self._trio_thread: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        wake = self._wake
        if wake is None or threading.get_ident() != self._trio_thread:
            super().emit(record)
            return
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        wake.set()

    async def write_batches(self) -> None:
        """Write the pending records after each scheduler pass that logged some, until
        cancelled (then write what is left, and the handler writes each record at once)."""
        self._trio_thread = threading.get_ident()
        self._wake = trio.Event()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                self._write_pending()
        finally:
            self._wake = None
            self._write_pending()

    def _write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            text = "".join(self._pending)
            self._pending.clear()
            if not text:
                return
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: as logging, carry on
                pass


class _Formatter(logging.Formatter):
    """:class:`logging.Formatter` with its default time format, formatting each second once."""

    _second: int | None = None
    _second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"  # as default_msec_format


def _load(spec: str) -> Endpoint:
    """The server object at ``package.module:attribute``, imported from the working directory,
    or at ``path/to/file.py:attribute``, imported from the file's directory (hypercorn's
    two forms)."""
    module_name, _, attribute = spec.rpartition(":")  # rpartition: C:\\ in a Windows path
    if not module_name or not attribute:
        raise ValueError(f"expected MODULE:ATTRIBUTE or PATH.py:ATTRIBUTE, got {spec!r}")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        module = _import_file(Path(module_name))
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")  # like `python -m`, hypercorn and uvicorn: the current directory
        module = importlib.import_module(module_name)
    server = getattr(module, attribute)
    if not callable(getattr(server, "handle_websocket", None)):
        # An ASGIApp, say: that one is for hypercorn.
        raise ValueError(f"{spec} is not a trio_sio Server (nor an Engine.IO server)")
    endpoint: Endpoint = server
    return endpoint


def _import_file(path: Path) -> ModuleType:
    """The module in ``path`` (a ``.py`` file or a package's directory), imported as hypercorn
    does: under its own name, with its directory first on ``sys.path`` for its own imports."""
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    path = path.resolve()
    sys.path.insert(0, str(path.parent))
    name = path.stem if path.is_file() else path.name
    module = importlib.import_module(name)
    # A module of that name imported before (the standard library's, say) is not the file.
    found = Path(module.__file__ or "").resolve()
    if found not in (path, path / "__init__.py"):
        raise ValueError(f"{path} is shadowed by the module {name!r} from {found}: rename it")
    return module


def _static(pairs: Sequence[str]) -> Mapping[str, str]:
    files = {}
    for pair in pairs:
        url, separator, path = pair.partition("=")
        if not separator or not url.startswith("/"):
            raise ValueError(f"expected /URL=PATH, got {pair!r}")
        files[url] = path
    return files


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m trio_sio MODULE:SERVER [--host H] [--port P] [--static /URL=PATH]...
    [--certfile F --keyfile F] [--log-level L] [--access-log]``; ``PATH.py:SERVER`` names
    the module by its file. Logging goes to stderr, one line per record with its time and
    level (:data:`LOG_FORMAT`)."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_sio",
        description="Serve a trio_sio Server on the native Trio host.",
    )
    parser.add_argument(
        "server", help="where the Server is, as MODULE:ATTRIBUTE or PATH.py:ATTRIBUTE"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=5001, help="0 picks a free port (default: %(default)s)"
    )
    parser.add_argument(
        "--static",
        action="append",
        default=[],
        metavar="/URL=PATH",
        help="serve a file, or a directory below a URL; may be repeated",
    )
    parser.add_argument(
        "--path", default="socket.io", help="where the server is mounted (default: %(default)s)"
    )
    parser.add_argument("--certfile", type=Path, help="TLS certificate chain (PEM); with --keyfile")
    parser.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="the least severe log records shown (default: %(default)s; debug traces packets)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes on the one port, sticky by session; needs a cluster"
        " adapter (default: %(default)s)",
    )
    # How the supervisor of the workers mode starts each worker: its index and channel.
    parser.add_argument("--worker-channel", metavar="INDEX:FD", help=argparse.SUPPRESS)
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every HTTP response (logger trio_sio.hosts.native.access)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    # Before the server's module is imported: its own logging at import time is shown too.
    configure_logging(args.log_level)
    try:
        server = _load(args.server)
        static_files = _static(args.static)
    except (ValueError, ImportError, AttributeError) as exc:
        parser.error(str(exc))
    ssl_context = None
    if args.certfile or args.keyfile:
        if not (args.certfile and args.keyfile):
            parser.error("--certfile and --keyfile go together")
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.certfile, args.keyfile)
    config = NativeConfig(access_log=args.access_log)
    if args.worker_channel:
        index, _, fd = args.worker_channel.partition(":")
        worker = functools.partial(
            serve_worker,
            server,
            int(fd),
            int(index),
            args.workers,
            static_files=static_files,
            path=args.path,
            config=config,
        )
        _until_signalled(worker)
        return
    if args.workers > 1:
        if ssl_context is not None:
            parser.error(
                "--workers does not go with --certfile: the supervisor routes by the request"
                " line, so terminate TLS in front of it (a proxy) instead"
            )
        if not _has_cluster_adapter(server):
            parser.error(
                f"--workers {args.workers} needs a cluster adapter (for example"
                " Server(adapter_factory=RedisAdapter.factory(url))): without one, a broadcast"
                " reaches only the clients of the worker that sends it"
            )
        forwarded = [*(sys.argv[1:] if argv is None else argv)]

        def command(index: int, fd: int) -> list[str]:
            channel = ["--worker-channel", f"{index}:{fd}"]
            return [sys.executable, "-m", "trio_sio", *forwarded, *channel]

        supervisor = functools.partial(
            supervise_workers, command, args.workers, args.host, args.port, config=config
        )
        _until_signalled(supervisor, announce=True)
        return
    run(
        server,
        args.host,
        args.port,
        log_level=args.log_level,
        static_files=static_files,
        path=args.path,
        ssl_context=ssl_context,
        config=config,
    )


def _has_cluster_adapter(server: Endpoint) -> bool:
    """Whether ``server`` broadcasts across processes (its main namespace's adapter is a
    cluster adapter)."""
    main = getattr(server, "main", None)
    return bool(getattr(getattr(main, "adapter", None), "spans_processes", False))


def _until_signalled(serve: Callable[..., Awaitable[object]], *, announce: bool = False) -> None:
    """``nursery.start(serve)`` until SIGINT or SIGTERM (or ``serve`` returns), then cancel
    it: a graceful shutdown. With ``announce``, print the URLs that starting returned."""

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                for handler in logging.getLogger().handlers:
                    if isinstance(handler, _BatchingHandler):
                        nursery.start_soon(handler.write_batches)

                async def serve_then_stop(*, task_status: trio.TaskStatus[Any]) -> None:
                    await serve(task_status=task_status)
                    nursery.cancel_scope.cancel()

                urls = await nursery.start(serve_then_stop)
                if announce:
                    print(f"serving on {' '.join(urls)}", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except WorkerFailed as exc:
        sys.exit(f"python -m trio_sio: {exc}")
