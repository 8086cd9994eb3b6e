"""The JSON seam: every JSON encode and decode in trio_sio goes through a :class:`JsonCodec`.

The default uses the standard library with the settings that make its output byte-identical to
JavaScript's ``JSON.stringify`` for the same values (compact separators, no ASCII escaping), and
turns every decoding failure into :class:`~trio_sio._protocol.errors.ProtocolError`. A faster
library can be plugged in by passing another object with the same two methods.
"""

from __future__ import annotations

import json
import json.encoder
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .errors import ProtocolError

__all__ = ["DEFAULT_MAX_JSON_DEPTH", "JsonCodec", "StdlibJson"]

DEFAULT_MAX_JSON_DEPTH = 32


class JsonCodec(Protocol):
    """What trio_sio needs from a JSON library."""

    def dumps(self, value: Any) -> str:
        """Encode ``value``; raise ``TypeError``/``ValueError`` for values JSON cannot hold."""
        ...

    def loads(self, text: str) -> Any:
        """Decode ``text``; raise :class:`ProtocolError` for anything that is not valid JSON
        or is nested deeper than the codec allows."""
        ...


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity, JSON.parse does not: neither do we.
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    # ``1e400`` would sneak in an infinity that dumps() then refuses to send back.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


# JSON.stringify writes lone surrogates as \uXXXX escapes; json.dumps leaves them raw, and a raw
# surrogate cannot be encoded as UTF-8. They only ever occur inside JSON strings.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class StdlibJson:
    """:class:`JsonCodec` on the standard library's ``json`` module.

    ``max_depth`` bounds how deeply arrays and objects may nest. A cheap bracket count decides
    whether the exact check is needed at all, so ordinary payloads pay one ``str.count`` pair.

    Both directions call the module's C accelerators directly where it has them, as
    ``json.dumps``/``json.loads`` do a few Python calls further in: about 0.8 µs less per
    encode and 0.5 µs less per decode, once or twice for every event and acknowledgement.
    """

    def __init__(self, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:
        self.max_depth = max_depth
        self._encoder = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=True
        )
        self._decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)
        self._encode_fast = _c_encoder(self._encoder)
        # Every JSONDecoder has its scanner as an attribute; typeshed's stubs omit it.
        self._scan: Callable[[str, int], tuple[Any, int]] = self._decoder.scan_once  # type: ignore[attr-defined]

    def dumps(self, value: Any) -> str:
        encode = self._encode_fast
        if encode is None:
            text = self._encoder.encode(value)
        else:
            try:
                text = "".join(encode(value, 0))
            except RecursionError:
                # Without the encoder's per-call memo of containers, a cycle shows up as
                # unbounded depth; say what json.dumps says for it.
                raise ValueError("Circular reference detected (or nesting too deep)") from None
        if not text.isascii():
            text = _SURROGATE.sub(_escape_surrogate, text)
        return text

    def loads(self, text: str) -> Any:
        try:
            # The scanner alone when the text is one value and nothing else; anything more
            # (surrounding whitespace, extra data, an error) takes the decoder's own path, so
            # that what is accepted, and every message, stays ``json.loads``'s.
            try:
                value, end = self._scan(text, 0)
            except StopIteration:
                end = -1
            if end != len(text):
                value = self._decoder.decode(text)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("invalid json", str(exc)[:100]) from None
        check_json_depth(text, value, self.max_depth)
        return value


def _c_encoder(encoder: json.JSONEncoder) -> Callable[[Any, int], Iterable[str]] | None:
    """The C encoder ``encoder.encode`` would make on every call, made once; ``None`` without
    the accelerator. No memo of containers (``markers``): kept from call to call it would
    outlive a failed encode (as a binary value's first attempt is), and a cycle ends in
    ``RecursionError`` instead."""
    make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
    if make is None:  # pragma: no cover - CPython has it
        return None
    encode: Callable[[Any, int], Iterable[str]] = make(
        None,
        encoder.default,
        json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        False,
        False,
        False,
    )
    return encode


def check_json_depth(text: str, value: Any, max_depth: int) -> None:
    """:func:`check_depth` for ``value``, decoded from the JSON ``text``: skipped when ``text``
    holds too few brackets to nest that deep, so ordinary payloads pay one ``str.count`` pair.
    """
    if text.count("[") + text.count("{") > max_depth:
        check_depth(value, max_depth)


def check_depth(value: Any, max_depth: int) -> None:
    """Raise :class:`ProtocolError` if ``value`` nests lists/dicts deeper than ``max_depth``.

    Iterative, so hostile depth cannot exhaust the Python stack.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise ProtocolError("json too deep", f"more than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
