"""Engine.IO settings live in one object, :class:`~trio_sio.engineio.EngineOptions`; the
server's keyword arguments are that object's fields, neither more nor fewer."""

from __future__ import annotations

import pytest

import trio_sio
from trio_sio._engine.options import ENGINE_SETTINGS
from trio_sio.engineio import EngineOptions, EngineSettings, Transport


def test_every_engine_option_is_a_server_keyword() -> None:
    assert set(EngineSettings.__annotations__) == ENGINE_SETTINGS


def test_server_keywords_reach_the_one_options_object() -> None:
    sio = trio_sio.Server(ping_interval=3.0, transports=["websocket"], max_payload=1234)
    options = sio.engine_options
    assert options is sio.engine.options
    assert (options.ping_interval, options.transports) == (3.0, (Transport.WEBSOCKET,))
    assert sio.max_payload == 1234
    assert options.ping_timeout == EngineOptions().ping_timeout  # the default


def test_an_unknown_keyword_fails_at_construction() -> None:
    with pytest.raises(TypeError, match="ping_intervall"):
        trio_sio.Server(ping_intervall=3.0)  # type: ignore[call-arg]
