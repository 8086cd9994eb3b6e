"""What the property tests of the protocol layer (tests/protocol/) share: Hypothesis settings
that scale with the profile, a strategy for Socket.IO packets, and the checks of a decoded
packet."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from trio_sio._protocol import MAX_ACK_ID, RESERVED_EVENTS, PacketType, SocketPacket


def examples(count: int, also_suppress: Sequence[HealthCheck] = ()) -> settings:
    """Settings for ``count`` examples under Hypothesis' default profile, and proportionally
    more (or fewer) under a profile with another ``max_examples``, such as a long fuzz run."""
    return settings(
        max_examples=max(1, count * settings().max_examples // 100),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, *also_suppress],
    )


def packets(
    namespaces: st.SearchStrategy[str],
    *,
    connect_data: st.SearchStrategy[Any],
    event_data: st.SearchStrategy[list[Any]],
    ack_data: st.SearchStrategy[list[Any]],
    ack_ids: st.SearchStrategy[int],
    error_data: st.SearchStrategy[Any],
) -> st.SearchStrategy[SocketPacket]:
    """Socket.IO packets of every type a parser sends, made of a parser's own parts: CONNECT
    with ``connect_data`` or none, DISCONNECT, (BINARY_)EVENT with ``event_data`` and an
    ack id or none, (BINARY_)ACK with ``ack_data`` and an ack id, CONNECT_ERROR with
    ``error_data``."""
    return st.one_of(
        st.builds(SocketPacket, st.just(PacketType.CONNECT), namespaces, st.none() | connect_data),
        st.builds(SocketPacket, st.just(PacketType.DISCONNECT), namespaces),
        st.builds(
            SocketPacket,
            st.sampled_from([PacketType.EVENT, PacketType.BINARY_EVENT]),
            namespaces,
            event_data,
            st.none() | ack_ids,
        ),
        st.builds(
            SocketPacket,
            st.sampled_from([PacketType.ACK, PacketType.BINARY_ACK]),
            namespaces,
            ack_data,
            ack_ids,
        ),
        st.builds(SocketPacket, st.just(PacketType.CONNECT_ERROR), namespaces, error_data),
    )


def assert_same(actual: Any, expected: Any) -> None:
    """Deep equality that also tells ``True`` from ``1``, ``1`` from ``1.0`` and key order
    (and takes NaN for NaN)."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, list):
        assert len(actual) == len(expected), (actual, expected)
        for actual_item, expected_item in zip(actual, expected, strict=True):
            assert_same(actual_item, expected_item)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), (actual, expected)
        for key, expected_item in expected.items():
            assert_same(actual[key], expected_item)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == expected, (actual, expected)


def decoded_type(packet_type: PacketType) -> PacketType:
    """The type a decoder gives back for a packet of ``packet_type``: BINARY_* become
    EVENT/ACK."""
    return {
        PacketType.BINARY_EVENT: PacketType.EVENT,
        PacketType.BINARY_ACK: PacketType.ACK,
    }.get(packet_type, packet_type)


def assert_same_packet(actual: SocketPacket, expected: SocketPacket) -> None:
    assert actual.type is expected.type
    assert actual.namespace == expected.namespace
    assert type(actual.id) is type(expected.id)
    assert actual.id == expected.id
    assert_same(actual.data, expected.data)


def check_packet_shape(result: SocketPacket) -> None:
    """What any packet a decoder returns must look like (see PacketDecoder)."""
    assert isinstance(result, SocketPacket)
    assert result.type not in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)
    assert result.namespace.startswith("/")
    assert result.id is None or 0 <= result.id <= MAX_ACK_ID
    if result.type in (PacketType.EVENT, PacketType.ACK):
        assert isinstance(result.data, list)
    if result.type is PacketType.EVENT:
        assert isinstance(result.data[0], str)
        assert result.data[0] not in RESERVED_EVENTS
    if result.type is PacketType.ACK:
        assert result.id is not None
