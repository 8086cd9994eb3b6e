"""TLS on loopback for a test: a certificate for 127.0.0.1 from a throwaway CA (trustme)."""

from __future__ import annotations

import ssl

import pytest


def loopback_tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context that trusts
    the CA that issued it (the test skips without trustme)."""
    trustme = pytest.importorskip("trustme", reason="trustme (PyPI) makes the test certificates")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context
