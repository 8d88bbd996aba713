"""The sans-IO parsers on their own: bytes in, events out, no sockets.

Property tests: any split of a valid stream gives the same events; arbitrary bytes never raise
anything but DownstreamError/UpstreamError (the fuzz target). Example tests pin the header
classification."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulsegate.errors import DownstreamError, UpstreamError
from pulsegate.http import RequestHead, RequestParser, ResponseHead, ResponseParser
from tests.http.events import EventLog


class Recorder(EventLog):
    def on_head(self, head: RequestHead) -> None:
        self.events.append(
            (
                "head",
                head.method,
                head.target,
                head.version,
                head.host,
                tuple(head.headers),
                head.content_length,
            )
        )

    def on_end(self) -> None:
        self.events.append(("end",))

    def on_response_head(self, head: ResponseHead) -> None:
        self.events.append(("rhead", head.status, tuple(head.headers), head.content_length, head.chunked))

    def on_response_end(self) -> None:
        self.events.append(("rend",))


def parse(chunks: list[bytes], **limits: int) -> Recorder:
    rec = Recorder()
    p = RequestParser(rec, max_header_bytes=limits.get("max_header_bytes", 8192), max_body_bytes=1 << 20)
    for c in chunks:
        p.feed(c)
    return rec


STREAM = (
    b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
    b"POST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
    b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    b"GET /d HTTP/1.0\r\n\r\n"
)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True) if b > a]
    assert parse(chunks).events == parse([STREAM]).events


def test_events_of_the_stream() -> None:
    ev = parse([STREAM]).events
    assert [e[0] for e in ev] == ["head", "end", "head", "body", "end", "head", "body", "end", "head", "end"]
    assert ev[0][1:5] == (b"GET", b"/a?x=1", 1, b"example.com")
    assert ev[3] == ("body", b"hello")
    assert ev[6] == ("body", b"abcde")
    assert ev[8][3] == 0  # HTTP/1.0 without Host is fine


def test_hop_by_hop_and_rewritten_headers_are_lifted_out() -> None:
    rec = Recorder()
    heads: list[RequestHead] = []
    rec.on_head = heads.append  # type: ignore[method-assign]
    p = RequestParser(rec, max_header_bytes=8192, max_body_bytes=100)
    p.feed(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nX-B: 2\r\nTE: trailers\r\n"
        b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nVia: 1.0 a\r\nX-Request-Id: r1\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    (h,) = heads
    assert h.fields == b"X-B: 2\r\n"
    assert h.forwarded_for == b"1.2.3.4, 5.6.7.8"
    assert h.via == b"1.0 a" and h.request_id == b"r1"
    assert h.expect_continue is False  # no body to wait for


def test_absolute_form_target_replaces_host() -> None:
    rec = Recorder()
    p = RequestParser(rec, max_header_bytes=8192, max_body_bytes=100)
    p.feed(b"GET http://Other.Example:81/p?q HTTP/1.1\r\nHost: ignored\r\n\r\n")
    assert rec.events[0][2:5] == (b"/p?q", 1, b"Other.Example:81")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_fuzz_request_parser_only_raises_downstream_errors(data: bytes, step: int) -> None:
    rec = Recorder()
    p = RequestParser(rec, max_header_bytes=256, max_body_bytes=128)
    try:
        for i in range(0, len(data), step):
            p.feed(data[i : i + step])
    except DownstreamError as exc:
        assert 400 <= exc.status < 600


_FRAGMENTS = [
    b"GET / HTTP/1.1\r\n",
    b"POST /x HTTP/1.1\r\n",
    b"Host: a\r\n",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"\r\n",
    b"abc",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
    b"X: \x00\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=14))
def test_fuzz_structured_request_streams(parts: list[bytes]) -> None:
    """Near-valid streams reach the deep states that random bytes rarely do."""
    rec = Recorder()
    p = RequestParser(rec, max_header_bytes=512, max_body_bytes=64)
    try:
        for part in parts:
            p.feed(part)
    except DownstreamError:
        return
    # Without an error, events are well formed: a head precedes its body and end.
    opened = False
    for ev in rec.events:
        if ev[0] == "head":
            assert not opened
            opened = True
        elif ev[0] == "body":
            assert opened
        else:
            assert opened
            opened = False


def test_response_parser_head_request_and_interim() -> None:
    rec = Recorder()
    p = ResponseParser(rec)
    p.feed(b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [e[0] for e in rec.events] == ["rhead", "rhead", "body", "rend"]
    assert rec.events[0][1] == 103
    p.head_request = True
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    assert rec.events[-2][0] == "rhead" and rec.events[-1] == ("rend",)
    p.feed(b"HTTP/1.1 204 No Content\r\n\r\n")  # the parser was reset: next response parses
    assert rec.events[-1] == ("rend",)


def test_response_close_delimited_body_ends_at_eof() -> None:
    rec = Recorder()
    p = ResponseParser(rec)
    p.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome")
    assert rec.events[-1] == ("body", b"some")
    assert p.feed_eof() is True
    assert rec.events[-1] == ("rend",)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_fuzz_response_parser_only_raises_upstream_errors(data: bytes) -> None:
    try:
        ResponseParser(Recorder()).feed(data)
    except UpstreamError as exc:
        assert exc.status == 502


def test_closing_request_body_in_a_later_read_is_still_parsed() -> None:
    ev = parse(
        [b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 4\r\n\r\n", b"ping", b"GET /x"]
    ).events
    assert [e[0] for e in ev] == ["head", "body", "end"]  # and nothing after the closing request
    assert ev[1] == ("body", b"ping")


def test_bytes_after_a_response_are_refused() -> None:
    # We send one request at a time: a second response in the same read answers nothing, and on a
    # pooled connection it would answer the next client's request (response desync).
    p = ResponseParser(Recorder())
    try:
        p.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad"
        )
    except UpstreamError as exc:
        assert "after its response" in exc.reason
    else:
        raise AssertionError("the extra response was accepted")
    q = ResponseParser(Recorder())
    q.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    q.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # the next exchange's answer: fine


def test_large_body_passes_around_llhttp_and_the_next_response_parses() -> None:
    body = bytes(range(256)) * 1024  # 256 KiB: above BYPASS_MIN, so reads after the first bypass
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    for cut in (40, 40 + 1000, 70_000, len(resp) - 1):  # the head alone, head + some body, ...
        rec = Recorder()
        p = ResponseParser(rec)
        p.feed(resp[:cut])
        rest = resp[cut:]
        while rest:
            p.feed(rest[:50_000])
            rest = rest[50_000:]
        p.feed(b"HTTP/1.1 204 No Content\r\n\r\n")  # the next exchange on this connection
        assert [e[0] for e in rec.events] == ["rhead", "body", "rend", "rhead", "rend"], cut
        assert rec.events[1] == ("body", body)


def test_bytes_after_a_bypassed_body_are_refused() -> None:
    body = b"b" * (128 << 10)
    rec = Recorder()
    p = ResponseParser(rec)
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:1000])
    try:
        p.feed(body[1000:] + b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
    except UpstreamError as exc:
        assert "after its response" in exc.reason
    else:
        raise AssertionError("bytes after the body were accepted")
    assert rec.events[-1] == ("rend",) and rec.events[-2] == ("body", body)
