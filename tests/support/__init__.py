"""Test support: a raw HTTP client, servers on loopback, child processes, and Engine.IO
helpers."""
