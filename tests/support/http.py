"""A small HTTP/1.1 client on h11, for probing the server byte by byte."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import trio


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def polling_target(sid: str | None = None) -> str:
    """The request target of a Socket.IO long-polling request (a handshake without ``sid``)."""
    return "/socket.io/?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


class Connection:
    """One keep-alive HTTP connection."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    async def send_head(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        content_length: int | None = None,
        chunked: bool = False,
    ) -> None:
        all_headers = [("Host", self.host), *headers]
        if chunked:
            all_headers.append(("Transfer-Encoding", "chunked"))
        elif content_length is not None:
            all_headers.append(("Content-Length", str(content_length)))
        data = self.conn.send(h11.Request(method=method, target=target, headers=all_headers))
        await self.stream.send_all(data)

    async def send_body(self, chunk: bytes) -> None:
        await self.stream.send_all(self.conn.send(h11.Data(data=chunk)) or b"")

    async def end_body(self) -> None:
        await self.stream.send_all(self.conn.send(h11.EndOfMessage()) or b"")

    async def read_response(self) -> Response:
        response: h11.Response | None = None
        body = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.receive_some(65536)
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        assert response is not None
        headers = {k.decode().lower(): v.decode() for k, v in response.headers}
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Response(response.status_code, headers, bytes(body))

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        has_body = method in ("POST", "PUT") or body
        await self.send_head(
            method, target, headers, content_length=len(body) if has_body else None
        )
        if body:
            await self.send_body(body)
        await self.end_body()
        return await self.read_response()


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Connection]:
    host, port = host_port(url)
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        yield Connection(stream, f"{host}:{port}")


async def request(
    url: str,
    method: str,
    target: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """One request on a fresh connection."""
    async with connect(url) as connection:
        return await connection.request(method, target, body, headers)
