"""The native host's two HTTP request parsers agree: the same events, or the same error, for
the same bytes however they are split (``trio_sio/hosts/native/_parse.py``).

Valid requests (pipelined, with ``Content-Length`` and chunked bodies, split at arbitrary
points), the host's hostile heads, and mutations and garbage made from them go to the h11
parser and the httptools (llhttp) one alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trio_sio import NativeConfig
from trio_sio.hosts.native._parse import (
    END_OF_MESSAGE,
    NEED_DATA,
    H11Parser,
    HttpParseError,
    HttptoolsParser,
    RequestHead,
    RequestParser,
    make_parser,
)

pytest.importorskip("httptools", reason="the fast extra (httptools) is compared with h11")

LIMIT = 4096
PARSERS = (H11Parser, HttptoolsParser)

Outcome = tuple[object, ...]


def run(parser: RequestParser, pieces: list[bytes]) -> tuple[list[object], str | None]:
    """Feed ``pieces`` one at a time, taking every event each allows; the events (body bytes
    joined per message, as the split changes how they come) and the error, if any."""
    events: list[object] = []
    body: list[bytes] = []
    try:
        for piece in pieces:
            parser.feed(piece)
            while (event := parser.next_event()) is not NEED_DATA:
                if isinstance(event, bytes):
                    assert event, "no empty body chunks"
                    body.append(event)
                    continue
                if event is END_OF_MESSAGE:
                    events.append(b"".join(body))
                    body = []
                events.append(event)
    except HttpParseError as exc:
        return events, type(exc).__name__ + f"/{exc.status // 100}xx"
    return events, None


def outcomes(pieces: list[bytes]) -> Iterator[tuple[list[object], str | None]]:
    for parser in PARSERS:
        yield run(parser(LIMIT), pieces)


def assert_agree(pieces: list[bytes]) -> tuple[list[object], str | None]:
    """Both parsers' events are the same; returns h11's outcome.

    Neither accepts anything the other refuses. (One may still be waiting for bytes where the
    other has refused already: llhttp reads a chunked body byte by byte, h11 line by line.)
    """
    h11_outcome, httptools_outcome = outcomes(pieces)
    assert httptools_outcome[0] == h11_outcome[0]
    return h11_outcome


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [b""]


# --- valid requests ---------------------------------------------------------------------------

tokens = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=12,
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30
).map(lambda v: v.strip())
paths = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~%=&?", max_size=40)
bodies = st.binary(max_size=300)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE"]))
    target = "/" + draw(paths)
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1:5001"]
    names: set[str] = {"host"}
    for name, value in draw(st.lists(st.tuples(tokens, header_values), max_size=6)):
        if name.lower() in ("content-length", "transfer-encoding", "host") or name in names:
            continue
        names.add(name)
        spaces = draw(st.sampled_from(["", " ", "  ", "\t"]))
        lines.append(f"{name}:{spaces}{value}{draw(st.sampled_from(['', ' ', chr(9)]))}")
    body = b""
    if method in ("POST", "PUT") and draw(st.booleans()):
        body = draw(bodies)
        if draw(st.booleans()):
            lines.append(f"Content-Length: {len(body)}")
        else:
            lines.append("Transfer-Encoding: chunked")
            sizes = draw(st.lists(st.integers(1, 64), max_size=5))
            chunks, rest = [], body
            for size in sizes:
                piece, rest = rest[:size], rest[size:]
                if piece:
                    chunks.append(b"%x\r\n%s\r\n" % (len(piece), piece))
            if rest:
                chunks.append(b"%x\r\n%s\r\n" % (len(rest), rest))
            trailer = b"X-Trailer: t\r\n" if draw(st.booleans()) else b""
            body = b"".join(chunks) + b"0\r\n" + trailer + b"\r\n"
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(0, 10_000)))
def test_valid_pipelined_requests_split_anywhere_give_the_same_events(
    batch: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(batch)
    events, error = assert_agree(split(data, cuts))
    assert error is None
    heads = [event for event in events if isinstance(event, RequestHead)]
    assert len(heads) == len(batch)
    assert events.count(END_OF_MESSAGE) == len(batch)
    # Split or whole, the same events.
    assert run(H11Parser(LIMIT), [data]) == (events, None)


# --- hostile and malformed ----------------------------------------------------------------

HOSTILE = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 600 + b"Host: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nOrigin: http://a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    # Trailers folded, or ended by a bare line feed (h11 takes them, llhttp does not).
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX:\n t\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX: a\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3 + b"GET / HTTP/1.1\r\nHost: x\r\n" + b"Y: y\r\n" * 900,
]


@pytest.mark.parametrize("data", HOSTILE)
def test_hostile_heads_are_refused_alike(data: bytes) -> None:
    events, error = assert_agree([data])
    assert error is not None
    assert all(
        isinstance(event, (RequestHead, bytes)) or event is END_OF_MESSAGE for event in events
    )


@pytest.mark.parametrize("data", HOSTILE)
def test_hostile_heads_split_byte_by_byte_are_refused_alike(data: bytes) -> None:
    pieces = [data[i : i + 1] for i in range(len(data))]
    assert assert_agree(pieces)[1] is not None


def test_an_oversized_head_is_431_on_both() -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * LIMIT + b"\r\n\r\n"
    for parser in PARSERS:
        with pytest.raises(HttpParseError) as refused:
            run_raising(parser(LIMIT), data)
        assert refused.value.status == 431


def run_raising(parser: RequestParser, data: bytes) -> None:
    parser.feed(data)
    while parser.next_event() is not NEED_DATA:
        pass


MUTATIONS = st.sampled_from(
    [b"\x00", b"\r", b"\n", b" ", b"\t", b":", b"\x7f", b"\x80", b"\xff", b",", b"\r\n", b"0"]
)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests(),
    st.lists(
        st.tuples(st.integers(0, 10_000), MUTATIONS | st.binary(min_size=1, max_size=3)),
        min_size=1,
        max_size=3,
    ),
    st.lists(st.integers(0, 10_000), max_size=3),
)
@example(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", [(0, b"\r\n")], [])
@example(  # found by this test: a folded trailer, which h11 took and llhttp refused
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: t\r\n\r\n",
    [(69, b"\n")],
    [],
)
def test_mutated_requests_give_the_same_events_or_both_fail(
    data: bytes, mutations: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    for position, inserted in mutations:
        at = position % (len(data) + 1)
        data = data[:at] + inserted + data[at:]
    assert_agree(split(data, cuts))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_gives_the_same_outcome(data: bytes) -> None:
    assert_agree([data])


def test_auto_picks_httptools_and_h11_can_be_forced() -> None:
    assert isinstance(make_parser("auto", LIMIT), HttptoolsParser)
    assert isinstance(make_parser(NativeConfig(http_parser="h11").http_parser, LIMIT), H11Parser)
    with pytest.raises(ValueError, match="http_parser"):
        NativeConfig(http_parser="fastest")  # type: ignore[arg-type]


def test_without_httptools_auto_is_h11_and_insisting_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trio_sio.hosts.native import _parse

    monkeypatch.setattr(_parse, "httptools", None)
    assert isinstance(make_parser("auto", LIMIT), H11Parser)
    with pytest.raises(ValueError, match=r"trio-sio\[fast\]"):
        NativeConfig(http_parser="httptools")
