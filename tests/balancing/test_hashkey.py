"""Hash-key specs: header, cookie, client_ip and path extraction."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsegate.balancing import compile_hash_key
from pulsegate.balancing.hashkey import cookie_value

Headers = list[tuple[bytes, bytes]]

HEADERS: Headers = [
    (b"Host", b"api.example.com"),
    (b"X-User", b"alice"),
    (b"x-user", b"mallory"),
    (b"Cookie", b"theme=dark; session=abc123"),
    (b"COOKIE", b"session=second; lang=en"),
    (b"X-Empty", b""),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("client_ip", b"203.0.113.9"),
        ("path", b"/v1/orders?id=7"),
        ("header:X-User", b"alice"),  # first occurrence wins
        ("header:x-user", b"alice"),  # names are case-insensitive
        ("header:X-USER", b"alice"),
        ("header:host", b"api.example.com"),
        ("header:X-Empty", b""),  # present but empty is not absent
        ("header:X-Missing", None),
        ("header:Cookie", b"theme=dark; session=abc123"),
        ("cookie:session", b"abc123"),  # first Cookie header first
        ("cookie:lang", b"en"),  # found in the second Cookie header
        ("cookie:theme", b"dark"),
        ("cookie:Session", None),  # cookie names are case-sensitive
        ("cookie:missing", None),
    ],
)
def test_specs(spec: str, expected: bytes | None) -> None:
    assert compile_hash_key(spec)(b"203.0.113.9", b"/v1/orders?id=7", HEADERS) == expected


def test_no_headers() -> None:
    assert compile_hash_key("header:x")(b"ip", b"/", []) is None
    assert compile_hash_key("cookie:x")(b"ip", b"/", []) is None


@pytest.mark.parametrize(
    ("header", "name", "expected"),
    [
        (b"a=1", b"a", b"1"),
        (b"a=1; b=2; c=3", b"b", b"2"),
        (b"a=1;b=2", b"b", b"2"),  # no space after ';' (lenient, as browsers send it)
        (b"a=1;  \tb=2 ", b"b", b"2"),  # surrounding whitespace trimmed
        (b"a=1; b=", b"b", b""),
        (b"a=x=y; b=2", b"a", b"x=y"),  # '=' inside a value is part of it
        (b"a=b=1; b=2", b"b", b"2"),  # 'b=' inside a's value is not cookie b
        (b"ab=1; b=2", b"b", b"2"),  # suffix of another name does not match
        (b"b2=1", b"b", None),
        (b"xb=1", b"b", None),
        (b'a="quoted"', b"a", b'"quoted"'),  # raw value, quotes kept
        (b"a=1; a=2", b"a", b"1"),  # first occurrence wins
        (b"", b"a", None),
        (b"a", b"a", None),  # no '=': not a cookie-pair
        (b"session_id=9; session=7", b"session", b"7"),
    ],
)
def test_cookie_value(header: bytes, name: bytes, expected: bytes | None) -> None:
    assert cookie_value(header, name) == expected


cookie_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1)
cookie_val = st.binary(max_size=12).map(
    lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E and c not in b'";\\,')
)


@settings(derandomize=True, deadline=None, max_examples=200)
@given(
    cookies=st.lists(st.tuples(cookie_name, cookie_val), max_size=6),
    split=st.integers(0, 6),
    probe=cookie_name,
    case=st.sampled_from([b"Cookie", b"cookie", b"COOKIE"]),
)
def test_cookie_round_trip(cookies: list[tuple[str, bytes]], split: int, probe: str, case: bytes) -> None:
    # Serialise the jar into one or two Cookie headers; every name must read back its first value.
    pairs = [n.encode() + b"=" + v for n, v in cookies]
    headers: Headers = [(b"Host", b"h")]
    for part in (pairs[:split], pairs[split:]):
        if part:
            headers.append((case, b"; ".join(part)))
    for name in [n for n, _ in cookies] + [probe]:
        first = next((v for n, v in cookies if n == name), None)
        assert compile_hash_key(f"cookie:{name}")(b"ip", b"/", headers) == first


@settings(derandomize=True, deadline=None, max_examples=100)
@given(
    names=st.lists(st.sampled_from(["X-A", "x-a", "X-B", "Host", "x-b"]), max_size=6),
    probe=st.sampled_from(["x-a", "X-B", "HOST", "x-c"]),
)
def test_header_first_occurrence_case_insensitive(names: list[str], probe: str) -> None:
    headers: Headers = [(n.encode(), str(i).encode()) for i, n in enumerate(names)]
    expected = next((str(i).encode() for i, n in enumerate(names) if n.lower() == probe.lower()), None)
    assert compile_hash_key(f"header:{probe}")(b"ip", b"/", headers) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "query",
        "ip",
        "client-ip",
        "CLIENT_IP",
        "Path",
        "header:",
        "header",
        "cookie:",
        "header:X User",
        "header: X-User",
        "header:X-User:extra",
        "cookie:a;b",
        "cookie:a=b",
        "Header:X-User",
        "arg:id",
        "header:Ünïcode",
    ],
)
def test_invalid_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="invalid hash key spec"):
        compile_hash_key(spec)
