"""Parsed message heads, already split into what an intermediary forwards and what it rewrites.

The parsers classify every header once: end-to-end headers are serialized, in their original
order and spelling, into ``fields`` (ready to forward); hop-by-hop and framing headers (RFC 9110
§7.6.1, RFC 9112 §6) and the ones a proxy rewrites (``X-Forwarded-*``, ``Via``, ``X-Request-Id``)
are lifted into attributes. ``headers`` keeps every header as received, for routing and hashing.
"""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


class RequestHead:
    """A validated request head.

    Example:
        >>> h = RequestHead(b"GET", b"/a?b=1", 1)
        >>> (h.path, h.query)
        (b'/a', b'?b=1')
    """

    __slots__ = (
        "_headers",
        "_raw",
        "chunked",
        "content_length",
        "expect_continue",
        "fields",
        "forwarded_for",
        "host",
        "host_count",
        "keep_alive",
        "method",
        "path",
        "query",
        "request_id",
        "target",
        "upgrade",
        "version",
        "via",
    )

    def __init__(self, method: bytes, target: bytes, version: int) -> None:
        self.method = method
        #: The request target exactly as sent (origin-form after absolute-form is unpacked).
        self.target = target
        q = target.find(b"?")
        self.path = target if q < 0 else target[:q]
        self.query = b"" if q < 0 else target[q:]
        #: HTTP minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
        self.version = version
        self._headers: Headers | None = []
        #: The head as received, when ``_headers`` is None (see ``headers``).
        self._raw = b""
        #: The end-to-end headers to forward, serialized: ``b"Name: value\r\n" * n``.
        self.fields = b""
        #: Host header value as sent (may carry a port), or the authority of an absolute-form target.
        self.host = b""
        #: How many Host headers came (HTTP/1.1 requires exactly one).
        self.host_count = 0
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.expect_continue = False
        self.request_id: bytes | None = None
        self.forwarded_for: bytes | None = None
        self.via: bytes | None = None
        self.upgrade: bytes | None = None

    @property
    def headers(self) -> Headers:
        """Every header as received (name case preserved), in order.

        Split from the raw head on first use when the C fast path scanned it: only header-based
        routes and hash keys read it, so most requests never pay for the list.
        """
        if self._headers is None:
            self._headers = split_head(self._raw)
        return self._headers

    @headers.setter
    def headers(self, headers: Headers) -> None:
        self._headers = headers

    def set_raw(self, raw: bytes) -> None:
        """``raw``, a head the fast path accepted, is where ``headers`` comes from."""
        self._headers = None
        self._raw = raw

    @property
    def has_body(self) -> bool:
        """Whether a body follows the head (RFC 9112 §6.3: only CL or chunked frame a request body)."""
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return f"<RequestHead {self.method.decode()} {self.target!r} HTTP/1.{self.version}>"


class ResponseHead:
    """A validated response head.

    ``headers`` is split from the raw head on first use when the C fast path scanned it (nothing
    on the proxy's path reads it, so most responses never pay for the list).

    Example:
        >>> ResponseHead(204, []).status
        204
        >>> ResponseHead(200, None, b"HTTP/1.1 200 OK\\r\\nA:  b\\r\\n\\r\\n").headers
        [(b'A', b'b')]
    """

    __slots__ = (
        "_headers",
        "_raw",
        "chunked",
        "content_length",
        "fields",
        "keep_alive",
        "status",
        "upgrade",
        "via",
    )

    def __init__(self, status: int, headers: Headers | None, raw: bytes = b"") -> None:
        self.status = status
        self._headers = headers
        #: The head as received, when ``headers`` is None (a head the fast path accepted: CRLF
        #: lines, no obs-fold, so a plain split is exact).
        self._raw = raw
        #: The end-to-end headers to forward, serialized.
        self.fields = b""
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.via: bytes | None = None
        #: The Upgrade header (the protocol a 101 switches to).
        self.upgrade: bytes | None = None

    @property
    def headers(self) -> Headers:
        """Every header as received: names as spelled, values without leading whitespace."""
        if self._headers is None:
            self._headers = split_head(self._raw)
        return self._headers

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status} cl={self.content_length} chunked={self.chunked}>"


def split_head(raw: bytes) -> Headers:
    """The header lines of a head the C fast path accepted (CRLF lines, no obs-fold, so a plain
    split is exact), as llhttp reports them: values without leading whitespace.

    >>> split_head(b"GET / HTTP/1.1\\r\\nHost:  a \\r\\nX:\\r\\n\\r\\n")
    [(b'Host', b'a '), (b'X', b'')]
    """
    headers: Headers = []
    for line in raw.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers.append((name, value.lstrip(b" \t")))
    return headers
