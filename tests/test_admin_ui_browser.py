"""The real Socket.IO Admin UI in headless Chromium, against trio_sio on each host.

The UI is the npm package's own build (``@socket.io/admin-ui`` 0.5.1, ``ui/dist`` in
tests/js/node_modules), served by the trio_sio host itself at ``/admin-ui/`` as the docs say
(docs/operating.rst). The app's client is a second page with the official socket.io-client
bundle. The UI's page asks two CDNs for fonts and icons: those requests are refused here, as
the machine's network would; the UI works without them. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import bcrypt
import pytest
from test_admin import app_server
from test_browser import ARTIFACTS, MISSING, REPO, in_browser

import trio_sio
import trio_sio.admin
from support.servers import HOSTS, serve_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route

NODE_MODULES = REPO / "tests" / "js" / "node_modules"
UI_DIST = NODE_MODULES / "@socket.io" / "admin-ui" / "ui" / "dist"
BUNDLE = NODE_MODULES / "socket.io-client" / "dist" / "socket.io.min.js"

if MISSING:  # pragma: no cover - depends on the machine (test_browser raised if required)
    pytestmark = pytest.mark.skip(reason=MISSING)
else:
    from playwright.sync_api import expect

#: The app's client: joins "lobby", and says in its title what happened to it.
CLIENT_PAGE = """<!doctype html>
<title>connecting</title>
<script src="/socket.io.min.js"></script>
<script>
  const sock = io({ transports: ["websocket"] });
  sock.on("connect", () => {
    const id = sock.id;
    sock.emit("join", "lobby", () => { document.title = "joined " + id; });
  });
  sock.on("disconnect", (reason) => { document.title = "disconnected: " + reason; });
</script>
"""

JOINED = re.compile(r"^joined (\S+)$")


@asynccontextmanager
async def serve_ui(host: str, sio: trio_sio.Server, workdir: Path) -> AsyncIterator[str]:
    """``sio`` on ``host``, with the UI at ``/admin-ui/`` and the client page at ``/``."""
    assert UI_DIST.is_dir(), "no Admin UI: run npm ci --prefix tests/js"
    page = workdir / "client.html"
    page.write_text(CLIENT_PAGE)
    files: dict[str, str | Path] = {"/": page, "/socket.io.min.js": BUNDLE, "/admin-ui/": UI_DIST}
    async with serve_server(host, sio, static_files=files) as url:
        yield url


def offline(browser: Browser, origin: str) -> BrowserContext:
    """A browser context that reaches only ``origin`` (the UI's CDN requests are refused)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})

    def only_origin(route: Route) -> None:
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_origin)
    return context


def open_client(context: BrowserContext, url: str) -> tuple[Page, str]:
    """The app's client page, connected and in "lobby"; with its socket id."""
    page = context.new_page()
    page.goto(url + "/")
    expect(page).to_have_title(JOINED)
    match = JOINED.match(page.title())
    assert match is not None
    return page, match[1]


@pytest.mark.parametrize("host", HOSTS)
async def test_ui_shows_sockets_and_rooms_and_disconnects_one(host: str, tmp_path: Path) -> None:
    def script(browser: Browser, url: str) -> None:
        context = offline(browser, url)
        client, sid = open_client(context, url)
        other, other_sid = open_client(context, url)
        ui = context.new_page()
        # Where the UI keeps its connection settings: it connects at once when it finds them.
        ui.add_init_script(
            f"localStorage.setItem('server_url', {url!r});"
            "localStorage.setItem('namespace', '/admin');"
        )
        ui.goto(url + "/admin-ui/#/sockets/")
        expect(ui.get_by_text("connected", exact=True).first).to_be_visible()
        row = ui.locator("tbody tr", has_text=sid)
        expect(row).to_be_visible()
        expect(row).to_contain_text("127.0.0.1")
        expect(ui.locator("tbody tr", has_text=other_sid)).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        ui.screenshot(path=ARTIFACTS / f"admin-ui-sockets-{host}.png")

        ui.goto(url + "/admin-ui/#/rooms/")
        lobby = ui.locator("tbody tr", has_text="lobby")
        expect(lobby).to_be_visible()
        expect(lobby).to_contain_text("2")  # both sockets
        ui.goto(url + f"/admin-ui/#/n/%2F/sockets/{sid}")
        expect(ui.get_by_text("lobby", exact=True).first).to_be_visible()
        ui.screenshot(path=ARTIFACTS / f"admin-ui-socket-{host}.png")

        # The "disconnect" button of one socket's row disconnects that client, and only it.
        ui.goto(url + "/admin-ui/#/sockets/")
        row.get_by_role("button").click()
        expect(client).to_have_title("disconnected: io server disconnect")
        ui.goto(url + "/admin-ui/#/sockets/")  # the click also opened the row's details
        expect(ui.locator("tbody tr", has_text=other_sid)).to_be_visible()
        expect(row).to_have_count(0)
        expect(other).to_have_title(JOINED)
        context.close()

    sio = app_server(None)
    async with serve_ui(host, sio, tmp_path) as url:
        await in_browser(script, url)
        assert sio.statistics().socket_disconnects["io server disconnect"] == 1


@pytest.mark.parametrize("host", HOSTS)
async def test_ui_login_refuses_a_wrong_password(host: str, tmp_path: Path) -> None:
    password_hash = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()

    def script(browser: Browser, url: str) -> None:
        context = offline(browser, url)
        _, sid = open_client(context, url)
        ui = context.new_page()
        ui.goto(url + "/admin-ui/")
        ui.get_by_label("Server URL").fill(url)
        ui.get_by_label("Username").fill("admin")
        ui.get_by_label("Password").fill("wrong")
        ui.get_by_role("button", name="Connect").click()
        expect(ui.get_by_text("Invalid credentials")).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        ui.screenshot(path=ARTIFACTS / f"admin-ui-refused-{host}.png")
        ui.get_by_label("Password").fill("s3cret")
        ui.get_by_role("button", name="Connect").click()
        expect(ui.get_by_text("Invalid credentials")).to_be_hidden()
        ui.goto(url + "/admin-ui/#/sockets/")
        expect(ui.locator("tbody tr", has_text=sid)).to_be_visible()
        context.close()

    sio = app_server(trio_sio.admin.BasicAuth("admin", password_hash))
    async with serve_ui(host, sio, tmp_path) as url:
        await in_browser(script, url)
        assert sio.statistics().refusals["middleware"] == 1
