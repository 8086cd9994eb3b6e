"""The HTTP responses of an Engine.IO endpoint: CORS headers, errors, compressed payloads."""

from __future__ import annotations

import gzip
import zlib

from .._protocol import HandshakeError
from .host import HttpRequest, HttpResponse
from .options import EngineOptions

__all__ = ["cors_headers", "error_response", "payload_response"]


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
