"""The chat demo in a real browser: headless Chromium, driven by Playwright's Python API.

The server runs in the test's Trio loop; the browser is driven with Playwright's synchronous
API in a worker thread (``trio.to_thread.run_sync``), so the two never share an event loop.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest
import trio

import trio_sio

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
#: The demo's own copy of the client bundle, else the test clients' (the same pinned version).
BUNDLES = [
    REPO / "examples" / "chat" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js",
    REPO / "tests" / "js" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js",
]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    MISSING = "Playwright is not installed (pip install playwright)"
else:
    MISSING = "no chromium executable (apt install chromium)" if CHROMIUM is None else ""
if MISSING:  # pragma: no cover - depends on the machine
    # CI sets TRIO_SIO_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
    if os.environ.get("TRIO_SIO_REQUIRE_BROWSER"):
        raise RuntimeError(f"TRIO_SIO_REQUIRE_BROWSER is set, but {MISSING}")
    pytestmark = pytest.mark.skip(reason=MISSING)


def load_chat() -> ModuleType:
    """A fresh import of examples/chat/app.py (a new server each time)."""
    path = REPO / "examples" / "chat" / "app.py"
    spec = importlib.util.spec_from_file_location("example_chat_browser", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Demo:
    url: str  # the page
    server: trio.CancelScope  # cancel it to stop the server


@asynccontextmanager
async def serve_chat(bundle: Path) -> AsyncIterator[Demo]:
    """The chat demo on a free loopback port, its page using ``bundle``."""
    chat = load_chat()
    chat.app.static_files["/socket.io.min.js"] = bundle
    server = trio.CancelScope()

    async def serve(*, task_status: trio.TaskStatus[list[str]]) -> None:
        with server:
            await trio_sio.serve_hypercorn(
                chat.sio, "127.0.0.1", 0, app=chat.app, task_status=task_status
            )

    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(serve)
        yield Demo(next(url for url in urls if url.startswith("http://")) + "/", server)
        server.cancel()


async def in_browser(script: Callable[[Browser, str], None], url: str) -> None:
    """Run ``script(browser, url)`` in a worker thread with a fresh headless Chromium."""

    def run() -> None:
        expect.set_options(timeout=15_000)  # loaded CI machines
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                script(browser, url)
            finally:
                browser.close()

    with trio.fail_after(90):
        await trio.to_thread.run_sync(run)


CONNECTED = re.compile(r"^connected \(websocket\)$")
DISCONNECTED = re.compile(r"^(disconnected: transport close|connection failed: .*)$")


def chat_on_two_pages(
    browser: Browser, url: str, first_says: str, second_says: str
) -> tuple[Page, Page]:
    """Two pages of the chat at ``url``, both upgraded to WebSocket: the first sends
    ``first_says`` with the button, the second ``second_says`` with Enter, and both pages
    show both messages."""
    first = browser.new_page(viewport={"width": 640, "height": 360})
    second = browser.new_page(viewport={"width": 640, "height": 360})
    for page in (first, second):
        page.goto(url)
        expect(page.locator("#state")).to_have_text(CONNECTED)  # upgraded to WebSocket
    first.fill("#input", first_says)
    first.click("#send")
    second.fill("#input", second_says)
    second.press("#input", "Enter")
    for page in (first, second):
        expect(page.locator("#messages li")).to_have_text([first_says, second_says])
    return first, second


async def test_two_pages_chat() -> None:
    bundle = next((path for path in BUNDLES if path.is_file()), None)
    assert bundle is not None, "no socket.io-client bundle: run npm ci --prefix examples/chat"

    def chat(browser: Browser, url: str) -> None:
        first, second = chat_on_two_pages(
            browser, url, "hello from the first page", "and hello from the second"
        )
        expect(first.locator("#input")).to_have_value("")
        ARTIFACTS.mkdir(exist_ok=True)
        second.screenshot(path=ARTIFACTS / "chat.png")
        trio.from_thread.run_sync(demo.server.cancel)
        for page in (first, second):
            expect(page.locator("#state")).to_have_text(DISCONNECTED)
            expect(page.locator("#send")).to_be_disabled()

    async with serve_chat(bundle) as demo:
        await in_browser(chat, demo.url)


async def test_page_explains_a_missing_bundle(tmp_path: Path) -> None:
    def missing(browser: Browser, url: str) -> None:
        page = browser.new_page(viewport={"width": 640, "height": 240})
        page.goto(url)
        expect(page.locator("#state")).to_have_text("no client library")
        expect(page.locator("#messages")).to_contain_text("npm ci --prefix examples/chat")
        expect(page.locator("#send")).to_be_disabled()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "chat-missing-bundle.png")

    async with serve_chat(tmp_path / "not-installed.js") as demo:
        await in_browser(missing, demo.url)
