"""Child processes whose output a test waits on: servers started as users start them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parent.parent.parent


def python_env() -> dict[str, str]:
    """The environment for a child ``python``: this checkout's ``trio_sio`` comes first, from
    any working directory, whichever checkout the environment has installed."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


class Child:
    """A child process (stdout and stderr together) whose output we wait on."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = ""

    async def wait_for(self, pattern: str) -> re.Match[str]:
        assert self.process.stdout is not None
        while (match := re.search(pattern, self.output)) is None:
            data = await self.process.stdout.receive_some()
            if not data:
                raise AssertionError(f"exited before printing {pattern!r}:\n{self.output}")
            self.output += data.decode(errors="replace")
        return match

    async def wait(self) -> int:
        """Read the output until the process exits; its exit code."""
        assert self.process.stdout is not None
        while data := await self.process.stdout.receive_some():
            self.output += data.decode(errors="replace")
        return await self.process.wait()

    async def interrupt(self) -> int:
        """Ctrl+C; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return await self.wait()


@asynccontextmanager
async def child(
    *args: str | Path, cwd: Path = REPO, budget_s: float = 30, stdin: bool = False
) -> AsyncIterator[Child]:
    """``python *args``, killed at the end of the block if it is still running; the block
    fails after ``budget_s``. With ``stdin``, the block writes its input
    (``Child.process.stdin``)."""
    command = [sys.executable, *map(str, args)]
    process = await trio.lowlevel.open_process(
        command,
        cwd=cwd,
        env=python_env(),
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with trio.fail_after(budget_s):
            yield Child(process)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            if process.stdin is not None:
                await process.stdin.aclose()
            assert process.stdout is not None
            await process.stdout.aclose()
