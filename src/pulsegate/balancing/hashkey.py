"""Compile a ``hash_key`` spec into a function extracting the consistent-hash key of a request.

Specs:

- ``client_ip``: the client address as given by the proxy;
- ``path``: the request path as given by the proxy (whether it includes the query string is the
  caller's choice);
- ``header:NAME``: the value of the first header named ``NAME`` (case-insensitive);
- ``cookie:NAME``: the value of the first cookie named ``NAME`` (case-sensitive, as cookie names
  are) across the ``Cookie`` header(s), in order; the value is returned raw (surrounding
  whitespace removed, quotes kept).

The returned function takes ``(client_ip, path, headers)`` with header names in their original
case and returns the key bytes, or None when the header/cookie is absent (a present but empty
value gives ``b""``). Everything is resolved at compile time: the per-request work is one scan of
the headers with a length check before any case folding.

Example:
    >>> get = compile_hash_key("cookie:session")
    >>> get(b"10.0.0.7", b"/", [(b"Host", b"x"), (b"Cookie", b"theme=dark; session=abc123")])
    b'abc123'
    >>> compile_hash_key("header:X-User")(b"10.0.0.7", b"/", [(b"x-user", b"alice")])
    b'alice'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

HashKeyFunc = Callable[[bytes, bytes, Sequence[tuple[bytes, bytes]]], bytes | None]

# RFC 9110 token: header field names and (RFC 6265) cookie names.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SPECS = "client_ip, path, header:NAME or cookie:NAME"
_OWS = b" \t"


def _header_value(lname: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    size = len(lname)
    for name, value in headers:
        if len(name) == size and name.lower() == lname:
            return value
    return None


def cookie_value(header: bytes, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in one ``Cookie`` header value (RFC 6265 ``a=1; b=2``).

    Searches for ``name=`` instead of splitting the header: no list is built, and a match counts
    only at the start of a cookie-pair (beginning of the header or after ``;`` and whitespace),
    so ``xsession=1`` or a value containing ``session=`` does not match ``session``.

    >>> cookie_value(b"a=1; xs=2; s=3", b"s")
    b'3'
    >>> cookie_value(b"a=s=1", b"s") is None
    True
    """
    needle = name + b"="
    start = 0
    while True:
        i = header.find(needle, start)
        if i < 0:
            return None
        j = i - 1
        while j >= 0 and header[j] in _OWS:
            j -= 1
        if j < 0 or header[j] == 0x3B:  # ';'
            begin = i + len(needle)
            end = header.find(b";", begin)
            return header[begin : end if end >= 0 else len(header)].strip(_OWS)
        start = i + 1


def compile_hash_key(spec: str) -> HashKeyFunc:
    """Turn ``spec`` into ``f(client_ip, path, headers) -> bytes | None``; ValueError if invalid.

    >>> f = compile_hash_key("header:x-tenant")
    >>> f(b"1.2.3.4", b"/a", [(b"X-Tenant", b"acme"), (b"x-tenant", b"other")])
    b'acme'
    >>> compile_hash_key("client_ip")(b"1.2.3.4", b"/a", [])
    b'1.2.3.4'
    >>> compile_hash_key("query")
    Traceback (most recent call last):
    ...
    ValueError: invalid hash key spec 'query': expected client_ip, path, header:NAME or cookie:NAME
    """
    if spec == "client_ip":

        def by_client_ip(client_ip: bytes, path: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
            return client_ip

        return by_client_ip
    if spec == "path":

        def by_path(client_ip: bytes, path: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
            return path

        return by_path
    kind, sep, name = spec.partition(":")
    if not sep or kind not in ("header", "cookie") or not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid hash key spec {spec!r}: expected {_SPECS}")
    if kind == "header":
        lname = name.lower().encode("ascii")

        def by_header(client_ip: bytes, path: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
            return _header_value(lname, headers)

        return by_header

    cname = name.encode("ascii")

    def by_cookie(client_ip: bytes, path: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
        for hname, value in headers:
            # len("cookie") == 6; comparing the length first skips lower() on most headers.
            if len(hname) == 6 and hname.lower() == b"cookie":
                found = cookie_value(value, cname)
                if found is not None:
                    return found
        return None

    return by_cookie
