"""Test support: a raw HTTP client, servers on loopback, and Engine.IO helpers."""
