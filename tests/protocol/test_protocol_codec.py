"""The JSON seam: ``StdlibJson`` writes what JavaScript's ``JSON.stringify`` writes, refuses what
``JSON.parse`` refuses, and bounds nesting without recursion."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.properties import examples
from trio_sio._protocol import DEFAULT_MAX_JSON_DEPTH, JsonCodec, ProtocolError, StdlibJson
from trio_sio._protocol.codec import check_depth

CODEC = StdlibJson()


def test_is_a_json_codec() -> None:
    codec: JsonCodec = StdlibJson(max_depth=3)
    assert codec.loads(codec.dumps({"a": [1]})) == {"a": [1]}
    assert StdlibJson().max_depth == DEFAULT_MAX_JSON_DEPTH == 32


# --------------------------------------------------------------------------------------------
# dumps: JSON.stringify's conventions


@pytest.mark.parametrize(
    ("value", "stringified"),
    [
        # Compact: no space after ',' or ':'.
        ({"a": [1, 2], "b": {"c": None}}, '{"a":[1,2],"b":{"c":null}}'),
        (["hello", "world"], '["hello","world"]'),
        ([], "[]"),
        ({}, "{}"),
        ([True, False, None], "[true,false,null]"),
        ((1, 2), "[1,2]"),
        # Non-ASCII characters are written as they are, not as \u escapes.
        ("é", '"é"'),
        ("日本語", '"日本語"'),
        ("\U0001f600", '"\U0001f600"'),
        ("\u2028\u2029", '"\u2028\u2029"'),
        ("\x7f", '"\x7f"'),
        # Control characters: the short escapes, else \u00XX in lower case.
        ("\n\r\t\b\f", '"\\n\\r\\t\\b\\f"'),
        ("\x00\x1f", '"\\u0000\\u001f"'),
        ("\x1e", '"\\u001e"'),
        ('"\\', '"\\"\\\\"'),
        ("/</script>", '"/</script>"'),
        # A lone surrogate is escaped, in lower case, as JSON.stringify does since ES2019.
        ("\ud800", '"\\ud800"'),
        ("a\udfffb", '"a\\udfffb"'),
        ({"\udc00": 1}, '{"\\udc00":1}'),
        (2**53, "9007199254740992"),
        (-1, "-1"),
        (0.5, "0.5"),
        (1e21, "1e+21"),
    ],
)
def test_dumps_matches_json_stringify(value: Any, stringified: str) -> None:
    assert CODEC.dumps(value) == stringified


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), [1, float("nan")]])
def test_dumps_refuses_non_finite_numbers(value: Any) -> None:
    with pytest.raises(ValueError, match="Out of range float values"):
        CODEC.dumps(value)


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object(), {b"k": 1}])
def test_dumps_refuses_what_json_cannot_hold(value: Any) -> None:
    with pytest.raises(TypeError):
        CODEC.dumps(value)


def test_dumps_refuses_circular_values() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        CODEC.dumps(circular)


# --------------------------------------------------------------------------------------------
# loads: JSON.parse's grammar, every failure a ProtocolError


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "[1,NaN]",
        '{"a":Infinity}',
        # Numbers too large for a double would come back as infinities.
        "1e400",
        "[-1e400]",
        '{"a":[1.5e999]}',
        # Not JSON at all.
        "",
        " ",
        "[",
        "]",
        "{'a':1}",
        "[1,]",
        "[1 2]",
        "01",
        "+1",
        ".5",
        "0x10",
        "undefined",
        "True",
        '"\\x41"',
        '"unterminated',
        '"\x00"',
        "[1]]",
        "1 2",
        "1" * 5000,
    ],
    ids=repr,
)
def test_loads_refuses_invalid_json(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        CODEC.loads(text)
    assert caught.value.reason == "invalid json"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (" [1, 2] ", [1, 2]),
        ('"\\ud83d\\ude00"', "\U0001f600"),
        ('"\\ud800"', "\ud800"),
        ("1e308", 1e308),
        ("1e-400", 0.0),
        ("-0", 0),
        (str(2**64), 2**64),
        ('{"a":1,"a":2}', {"a": 2}),
        # Brackets inside strings add no depth.
        ('"' + "[" * 40 + '"', "[" * 40),
        ('{"' + "{" * 40 + '":"' + "[" * 40 + '"}', {"{" * 40: "[" * 40}),
    ],
)
def test_loads_accepts_what_json_parse_accepts(text: str, value: Any) -> None:
    decoded = CODEC.loads(text)
    assert decoded == value
    assert type(decoded) is type(value)


# --------------------------------------------------------------------------------------------
# depth


@pytest.mark.parametrize("max_depth", [1, 2, 5, DEFAULT_MAX_JSON_DEPTH])
@pytest.mark.parametrize(("open_", "close"), [("[", "]"), ('{"k":', "}")])
def test_depth_limit_is_exact(max_depth: int, open_: str, close: str) -> None:
    codec = StdlibJson(max_depth=max_depth)
    assert codec.loads(open_ * max_depth + "1" + close * max_depth) is not None
    with pytest.raises(ProtocolError, match="json too deep"):
        codec.loads(open_ * (max_depth + 1) + "1" + close * (max_depth + 1))


def test_depth_counts_mixed_containers_and_the_deepest_branch() -> None:
    codec = StdlibJson(max_depth=3)
    assert codec.loads('[{"a":[1]},[[2]],{"b":{"c":3}}]') is not None
    with pytest.raises(ProtocolError, match="json too deep"):
        codec.loads('[{"a":[1]},[[2]],{"b":{"c":[3]}}]')
    # Many siblings at the limit are fine, and scalars add no depth.
    assert codec.loads("[" + ",".join(["[[1]]"] * 1000) + "]") is not None


@pytest.mark.parametrize(
    "text",
    ["[" * 50_000, "[" * 50_000 + "]" * 50_000, '{"a":' * 50_000],
    ids=["open-arrays", "closed-arrays", "open-objects"],
)
def test_hostile_depth_is_a_protocol_error(text: str) -> None:
    """S4: never a RecursionError, however deep."""
    with pytest.raises(ProtocolError):
        CODEC.loads(text)


def test_check_depth_is_iterative() -> None:
    """The depth check walks values nested far deeper than the Python stack allows."""
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    with pytest.raises(ProtocolError, match="json too deep"):
        check_depth(value, 99_999)
    check_depth(value, 100_000)
    nested: Any = {}
    for _ in range(100_000):
        nested = {"k": nested}
    with pytest.raises(ProtocolError, match="json too deep"):
        check_depth(nested, DEFAULT_MAX_JSON_DEPTH)


# --------------------------------------------------------------------------------------------
# properties

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=10)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


def utf16(value: Any) -> Any:
    """``value`` with its strings as JavaScript sees them (a surrogate pair is one character)."""
    if isinstance(value, list):
        return [utf16(item) for item in value]
    if isinstance(value, dict):
        return {utf16(key): utf16(item) for key, item in value.items()}
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return value


@examples(300)
@given(JSON_VALUES)
def test_round_trip(value: Any) -> None:
    text = CODEC.dumps(value)
    text.encode("utf-8")  # always sendable
    assert CODEC.loads(text) == utf16(value)
    # The standard library's compact, unescaped output, with surrogates escaped as JavaScript
    # escapes lone ones.
    reference = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert text == "".join(
        f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in reference
    )


@examples(300)
@given(
    st.text()
    | st.lists(
        st.sampled_from(['"', "[", "]", "{", "}", ",", ":", "1", "e", "-", "\\u", "NaN", "null"]),
        max_size=30,
    ).map("".join)
)
def test_fuzz_loads(text: str) -> None:
    try:
        value = CODEC.loads(text)
    except ProtocolError:
        return
    # Whatever is accepted can be sent back.
    CODEC.loads(CODEC.dumps(value))


@examples(300)
@given(
    st.tuples(
        st.sampled_from(["", " ", "\n\t "]),
        JSON_VALUES.map(lambda value: json.dumps(value, separators=(",", ":")))
        | st.text(max_size=12),
        st.sampled_from(["", " ", "\r\n", " x", "]", "1"]),
    ).map("".join)
)
def test_loads_accepts_and_refuses_exactly_what_the_json_module_does(text: str) -> None:
    # The codec calls the module's scanner directly when it can: that shortcut must not
    # change what is accepted (surrounding whitespace is JSON; extra data is not).
    try:
        expected = json.loads(text)
        json.dumps(expected, allow_nan=False)
    except ValueError:
        # Not JSON, or JSON.parse's refusals of non-finite numbers (NaN, 1e400).
        with pytest.raises(ProtocolError):
            CODEC.loads(text)
        return
    assert CODEC.loads(text) == expected


def test_a_failed_encode_leaves_nothing_behind_for_the_next() -> None:
    # A value with bytes fails its first encode (the parser then moves them into
    # attachments): the same containers must encode once the bytes are gone.
    shared: dict[str, Any] = {"k": [1]}
    with pytest.raises(TypeError):
        CODEC.dumps([shared, b"binary"])
    assert CODEC.dumps([shared, shared]) == '[{"k":[1]},{"k":[1]}]'
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        CODEC.dumps(circular)
    assert CODEC.dumps({"self": 1}) == '{"self":1}'
