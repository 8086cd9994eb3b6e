"""Engine.IO request validation: ``parse_query``, ``validate_request``, the error codes and the
error body (section H of the hostile-input catalogue in ``security.md``)."""

from __future__ import annotations

import json
from collections.abc import Collection
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.properties import examples
from trio_sio._protocol import (
    EngineErrorCode,
    EngineRequest,
    HandshakeError,
    Transport,
    parse_query,
    validate_request,
)

BOTH = frozenset(Transport)
POLLING = Transport.POLLING
WEBSOCKET = Transport.WEBSOCKET
SID = "lv_VI97HAXpY6yYWAAAC"


def refused(
    method: str,
    query: dict[str, str],
    *,
    is_websocket: bool = False,
    origin: str | None = None,
    allowed: Collection[Transport] = BOTH,
) -> EngineErrorCode:
    """The error code ``validate_request`` refuses the request with."""
    with pytest.raises(HandshakeError) as caught:
        validate_request(
            method, query, allowed_transports=allowed, is_websocket=is_websocket, origin=origin
        )
    return caught.value.code


# --------------------------------------------------------------------------------------------
# error codes and the error body


def test_error_codes_are_engine_io_server_errors() -> None:
    assert {code.name: code.value for code in EngineErrorCode} == {
        "UNKNOWN_TRANSPORT": 0,
        "UNKNOWN_SID": 1,
        "BAD_HANDSHAKE_METHOD": 2,
        "BAD_REQUEST": 3,
        "FORBIDDEN": 4,
        "UNSUPPORTED_PROTOCOL_VERSION": 5,
    }


@pytest.mark.parametrize("code", list(EngineErrorCode))
def test_every_error_code_is_truthy(code: EngineErrorCode) -> None:
    """CVE-2023-31125: engine.io tested ``if (errorCode)`` and code 0 slipped through."""
    assert code
    assert bool(code) is True
    assert HandshakeError(code).code


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (EngineErrorCode.UNKNOWN_TRANSPORT, "Transport unknown"),
        (EngineErrorCode.UNKNOWN_SID, "Session ID unknown"),
        (EngineErrorCode.BAD_HANDSHAKE_METHOD, "Bad handshake method"),
        (EngineErrorCode.BAD_REQUEST, "Bad request"),
        (EngineErrorCode.FORBIDDEN, "Forbidden"),
        (EngineErrorCode.UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version"),
    ],
)
def test_error_body_is_what_engine_io_sends(code: EngineErrorCode, message: str) -> None:
    """engine.io answers ``JSON.stringify({code, message})``: compact, code first."""
    error = HandshakeError(code)
    assert code.message == message
    assert error.message == message
    assert str(error) == message
    assert error.body() == f'{{"code":{code.value},"message":"{message}"}}'.encode()


@pytest.mark.parametrize("code", list(EngineErrorCode))
def test_http_status_is_403_only_for_forbidden(code: EngineErrorCode) -> None:
    expected = 403 if code is EngineErrorCode.FORBIDDEN else 400
    assert code.http_status == expected
    assert HandshakeError(code).http_status == expected


def test_error_body_with_custom_message() -> None:
    error = HandshakeError(EngineErrorCode.FORBIDDEN, 'Token "x" expired')
    assert error.message == 'Token "x" expired'
    assert error.body() == b'{"code":4,"message":"Token \\"x\\" expired"}'
    assert error.http_status == 403
    unicode = HandshakeError(EngineErrorCode.FORBIDDEN, "Zugriff verweigert: \u00e9\u20ac")
    assert json.loads(unicode.body()) == {"code": 4, "message": "Zugriff verweigert: \u00e9\u20ac"}


# --------------------------------------------------------------------------------------------
# parse_query


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "EIO=4&transport=polling&t=N8hyd6w",
            {"EIO": "4", "transport": "polling", "t": "N8hyd6w"},
        ),
        (
            b"EIO=4&transport=websocket&sid=lv_VI97HAXpY6yYWAAAC",
            {"EIO": "4", "transport": "websocket", "sid": "lv_VI97HAXpY6yYWAAAC"},
        ),
        ("", {}),
        (b"", {}),
        ("EIO=4&EIO=3", {"EIO": "4"}),
        ("transport=polling&transport=websocket", {"transport": "polling"}),
        ("sid=&EIO=", {"sid": "", "EIO": ""}),
        ("sid", {"sid": ""}),
        ("transport=web%73ocket", {"transport": "websocket"}),
        ("a=b+c&d=%2B", {"a": "b c", "d": "+"}),
        ("name=%E2%82%AC", {"name": "€"}),
        # Raw bytes in the query string are read as latin-1.
        (b"name=\xe2\x82\xac", {"name": "\u00e2\u0082\u00ac"}),
        ("a=%ff", {"a": "\ufffd"}),
        ("__proto__=1&constructor=2", {"__proto__": "1", "constructor": "2"}),
    ],
)
def test_parse_query(raw: str | bytes, expected: dict[str, str]) -> None:
    assert parse_query(raw) == expected


def test_parse_query_field_limit() -> None:
    """A query string with very many fields is a bad request, not an unexpected exception."""
    assert len(parse_query("&".join(f"k{n}=v" for n in range(64)))) == 64
    for raw in ("&".join(f"k{n}=v" for n in range(65)), "a&" * 10_000, b"EIO=4" + b"&x" * 100):
        with pytest.raises(HandshakeError) as caught:
            parse_query(raw)
        assert caught.value.code is EngineErrorCode.BAD_REQUEST


@examples(300)
@given(
    st.text()
    | st.binary()
    | st.lists(st.sampled_from(["&", "=", "%", "EIO", "4", "+"])).map("".join)
)
def test_fuzz_parse_query(raw: str | bytes) -> None:
    query: dict[str, str] | EngineErrorCode
    try:
        query = parse_query(raw)
    except HandshakeError as error:
        query = error.code
    if isinstance(query, EngineErrorCode):
        assert query is EngineErrorCode.BAD_REQUEST
    else:
        assert all(type(name) is str and type(value) is str for name, value in query.items())


def parse_qsl_reference(raw: str | bytes) -> dict[str, str] | EngineErrorCode:
    """What parse_query must return: parse_qsl's fields, the first of a repeated name."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    try:
        fields = parse_qsl(text, keep_blank_values=True, max_num_fields=64)
    except ValueError:
        return EngineErrorCode.BAD_REQUEST
    query: dict[str, str] = {}
    for name, value in fields:
        query.setdefault(name, value)
    return query


@examples(500)
@given(
    st.text()
    | st.binary()
    | st.lists(st.sampled_from(["&", "=", "%", "%41", "EIO", "4", "+", "sid", "&&", "=="])).map(
        "".join
    )
    | st.lists(st.sampled_from(["&", "a", "="]), min_size=120, max_size=140).map("".join)
)
def test_parse_query_reads_as_parse_qsl_does(raw: str | bytes) -> None:
    """The fast path for queries with nothing to unquote changes no result."""
    query: dict[str, str] | EngineErrorCode
    try:
        query = parse_query(raw)
    except HandshakeError as error:
        query = error.code
    assert query == parse_qsl_reference(raw)


# --------------------------------------------------------------------------------------------
# validate_request: requests that pass


@pytest.mark.parametrize(
    ("method", "transport", "sid", "is_websocket"),
    [
        ("GET", POLLING, None, False),
        ("GET", WEBSOCKET, None, True),
        ("GET", POLLING, SID, False),
        ("POST", POLLING, SID, False),
        ("GET", WEBSOCKET, SID, True),
        # The registry lookup is the caller's; a 64-character or odd-looking sid gets that far.
        ("GET", POLLING, "s" * 64, False),
        ("POST", POLLING, "__proto__", False),
    ],
)
def test_valid_requests(
    method: str, transport: Transport, sid: str | None, is_websocket: bool
) -> None:
    query = {"EIO": "4", "transport": transport.value, "t": "N8hyd6w"}
    if sid is not None:
        query["sid"] = sid
    request = validate_request(method, query, allowed_transports=BOTH, is_websocket=is_websocket)
    assert request == EngineRequest(transport, sid)
    assert validate_request(
        method, query, allowed_transports={transport}, is_websocket=is_websocket
    ) == EngineRequest(transport, sid)


@pytest.mark.parametrize(
    "origin", ["https://app.example", "null", "", "https://exa\tmple", "https://ex\u00e4mple"]
)
def test_acceptable_origins(origin: str) -> None:
    request = validate_request(
        "GET",
        {"EIO": "4", "transport": "polling"},
        allowed_transports=BOTH,
        is_websocket=False,
        origin=origin,
    )
    assert request == EngineRequest(POLLING, None)


# --------------------------------------------------------------------------------------------
# validate_request: section H of the catalogue


@pytest.mark.parametrize("transport", ["polling", "websocket"])
@pytest.mark.parametrize("eio", [None, "3", "5", "", "4 ", " 4", "04", "4.0", "\u0664"], ids=repr)
def test_h1_unsupported_protocol_version(transport: str, eio: str | None) -> None:
    query = {"transport": transport}
    if eio is not None:
        query["EIO"] = eio
    for sid in (None, SID):
        if sid is not None:
            query["sid"] = sid
        code = refused("GET", query, is_websocket=transport == "websocket")
        assert code is EngineErrorCode.UNSUPPORTED_PROTOCOL_VERSION


@pytest.mark.parametrize(
    "transport",
    [None, "", "flashsocket", "__proto__", "constructor", "toString", "webtransport", "Polling",
     "WEBSOCKET", "polling ", "jsonp-polling", "0"],
    ids=repr,
)  # fmt: skip
@pytest.mark.parametrize("eio", ["4", "3", None])
def test_h2_unknown_transport(transport: str | None, eio: str | None) -> None:
    """Checked first, as by engine.io: the code is 0 whatever else is wrong."""
    query = {} if transport is None else {"transport": transport}
    if eio is not None:
        query["EIO"] = eio
    assert refused("GET", query) is EngineErrorCode.UNKNOWN_TRANSPORT
    assert refused("POST", query, is_websocket=True) is EngineErrorCode.UNKNOWN_TRANSPORT


@pytest.mark.parametrize(
    ("allowed", "transport"),
    [({POLLING}, "websocket"), ({WEBSOCKET}, "polling"), (set(), "polling")],
)
def test_h2_transport_not_allowed(allowed: set[Transport], transport: str) -> None:
    query = {"EIO": "4", "transport": transport}
    code = refused("GET", query, is_websocket=transport == "websocket", allowed=allowed)
    assert code is EngineErrorCode.UNKNOWN_TRANSPORT


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "HEAD", "get", ""])
def test_h3_handshake_must_be_get(method: str) -> None:
    assert (
        refused(method, {"EIO": "4", "transport": "polling"})
        is EngineErrorCode.BAD_HANDSHAKE_METHOD
    )


@pytest.mark.parametrize("sid", ["", "x" * 65, "x" * 10_000])
def test_h4_sid_that_cannot_exist(sid: str) -> None:
    for transport, is_websocket in (("polling", False), ("websocket", True)):
        query = {"EIO": "4", "transport": transport, "sid": sid}
        assert refused("GET", query, is_websocket=is_websocket) is EngineErrorCode.UNKNOWN_SID


def test_h5_websocket_handshake_without_upgrade() -> None:
    error_code = refused("GET", {"EIO": "4", "transport": "websocket"}, is_websocket=False)
    assert error_code is EngineErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    ("query", "is_websocket"),
    [
        ({"EIO": "4", "transport": "polling"}, True),
        ({"EIO": "4", "transport": "polling", "sid": SID}, True),
        ({"EIO": "4", "transport": "websocket", "sid": SID}, False),
    ],
)
def test_transport_mismatch(query: dict[str, str], is_websocket: bool) -> None:
    assert refused("GET", query, is_websocket=is_websocket) is EngineErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    "origin",
    ["https://a.example\r\nSet-Cookie: x=1", "https://a.example\n", "\x00", "a\x7f", "\x1f", "\r"],
    ids=repr,
)
def test_h7_origin_with_control_characters(origin: str) -> None:
    for query, is_websocket in (
        ({"EIO": "4", "transport": "polling"}, False),
        ({"EIO": "4", "transport": "websocket"}, True),
        ({"EIO": "4", "transport": "polling", "sid": SID}, False),
    ):
        code = refused("GET", query, is_websocket=is_websocket, origin=origin)
        assert code is EngineErrorCode.BAD_REQUEST


# --------------------------------------------------------------------------------------------
# fuzzing: a request either passes or is refused with a HandshakeError

QUERY_VALUES = st.sampled_from(["4", "3", "polling", "websocket", "", SID, "__proto__"]) | st.text(
    max_size=70
)
QUERIES = st.dictionaries(
    st.sampled_from(["EIO", "transport", "sid", "t"]) | st.text(max_size=5), QUERY_VALUES
)


@examples(300)
@given(
    st.sampled_from(["GET", "POST", "PUT"]) | st.text(max_size=6),
    QUERIES,
    st.frozensets(st.sampled_from(list(Transport))),
    st.booleans(),
    st.none() | st.text(max_size=20),
)
def test_fuzz_validate_request(
    method: str,
    query: dict[str, str],
    allowed: frozenset[Transport],
    is_websocket: bool,
    origin: str | None,
) -> None:
    refusal: HandshakeError | None = None
    try:
        request = validate_request(
            method, query, allowed_transports=allowed, is_websocket=is_websocket, origin=origin
        )
    except HandshakeError as error:
        refusal = error
    if refusal is not None:
        assert isinstance(refusal.code, EngineErrorCode)
        assert json.loads(refusal.body())["code"] == refusal.code.value
        return
    # Everything a passing request needs is really there.
    assert query["EIO"] == "4"
    assert request.transport in allowed
    assert request.transport.value == query["transport"]
    assert (request.transport is WEBSOCKET) == is_websocket
    assert request.sid == query.get("sid")
    if request.sid is None:
        assert method == "GET"
    else:
        assert 1 <= len(request.sid) <= 64
