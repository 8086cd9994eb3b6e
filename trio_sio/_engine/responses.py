"""The HTTP responses of an Engine.IO endpoint: CORS headers, errors, compressed payloads."""

from __future__ import annotations

import gzip
import zlib

from .._protocol import HandshakeError
from .host import HttpRequest, HttpResponse
from .options import EngineOptions

__all__ = [
    "answer_poll",
    "cors_headers",
    "error_response",
    "payload_response",
    "with_extra_headers",
]


def cors_headers(options: EngineOptions, origin: str | None) -> list[tuple[str, str]]:
    """The CORS headers for a request from ``origin`` (already allowed), if any."""
    if origin is None:
        return []
    headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
    if options.cors_credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    return headers


def error_response(exc: HandshakeError, cors: list[tuple[str, str]] | None) -> HttpResponse:
    """Engine.IO's JSON error body, with the status that goes with it."""
    return HttpResponse(
        exc.http_status, exc.body(), [("Content-Type", "application/json"), *(cors or [])]
    )


def payload_response(
    options: EngineOptions, request: HttpRequest, payload: str, cors: list[tuple[str, str]]
) -> HttpResponse:
    """A long-polling payload, compressed when it is large and the client accepts it."""
    body = payload.encode()
    headers = [("Content-Type", "text/plain; charset=UTF-8"), *cors]
    if options.http_compression and len(body) >= options.compression_threshold:
        accepted = request.headers.get("accept-encoding", "")
        if "gzip" in accepted:
            body = gzip.compress(body, compresslevel=5)
            headers.append(("Content-Encoding", "gzip"))
        elif "deflate" in accepted:
            body = zlib.compress(body, 5)
            headers.append(("Content-Encoding", "deflate"))
    return HttpResponse(200, body, headers)


def with_extra_headers(
    options: EngineOptions, request: HttpRequest, response: HttpResponse
) -> HttpResponse:
    """``response`` with the headers of ``options.headers``, unless it is an error."""
    if options.headers is not None and response.status < 400:
        response.headers.extend(options.headers(request))
    return response


def answer_poll(
    options: EngineOptions, request: HttpRequest, cors: list[tuple[str, str]], payload: str
) -> bool:
    """Answer the long-poll ``request`` with ``payload`` now, through its host's
    ``answer_nowait``; whether it was written."""
    assert request.answer_nowait is not None
    response = payload_response(options, request, payload, cors)
    return request.answer_nowait(with_extra_headers(options, request, response))
