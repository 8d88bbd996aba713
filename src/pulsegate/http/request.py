"""Sans-IO request parser for the downstream (client) side: bytes in, validated heads out.

httptools (llhttp) does the tokenizing and already refuses most smuggling vectors strictly:
Content-Length with Transfer-Encoding, duplicate Content-Length, bad chunk sizes, bare LF, NUL and
other control bytes, obs-fold, whitespace before the colon. On top of that this module enforces
what an intermediary must (RFC 9112): exactly one Host in HTTP/1.1, only ``chunked`` as a transfer
coding, HTTP/1.0 and 1.1 only, header-block and body size limits, and the ``Expect`` rules.

A plain bodiless head between messages is scanned and classified in C (:mod:`pulsegate.http._wire`)
instead, with the same results; anything the scan is not sure of goes to llhttp
(tests/http/test_wire.py).

Example:
    >>> class Sink:
    ...     def on_head(self, head): print(head.method, head.path, head.host)
    ...     def on_body(self, data): print("body", data)
    ...     def on_end(self): print("end")
    >>> p = RequestParser(Sink(), max_header_bytes=8192, max_body_bytes=1024)
    >>> p.feed(b"POST /x HTTP/1.1\\r\\nHost: a\\r\\nContent-Length: 2\\r\\n\\r\\nhi")
    b'POST' b'/x' b'a'
    body b'hi'
    end
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NoReturn, Protocol

import httptools

from pulsegate.errors import DownstreamError
from pulsegate.http.head import RequestHead

# How each header the intermediary must not forward blindly is handled; anything else is kept.
_KEEP: Final = 0
_HOST: Final = 1
_CL: Final = 2
_TE: Final = 3
_CONN: Final = 4
_DROP: Final = 5
_UPGRADE: Final = 6
_EXPECT: Final = 7
_RID: Final = 8
_XFF: Final = 9
_VIA: Final = 10
_SPECIAL: Final[dict[bytes, int]] = {
    b"host": _HOST,
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"connection": _CONN,
    # Hop-by-hop (RFC 9110 §7.6.1) and the proxy-rewritten ones: the proxy writes its own.
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"x-forwarded-proto": _DROP,
    b"x-forwarded-host": _DROP,
    b"upgrade": _UPGRADE,
    b"expect": _EXPECT,
    b"x-request-id": _RID,
    b"x-forwarded-for": _XFF,
    b"via": _VIA,
}
# Header names as spelled on the wire -> kind. Lower-casing every name costs a call per header;
# names repeat, so the spelling seen is remembered (bounded, so hostile names cannot grow it).
_KIND_BY_SPELLING: Final[dict[bytes, int]] = {}
_KIND_CACHE_MAX: Final = 4096


def header_kind(name: bytes, special: dict[bytes, int], cache: dict[bytes, int]) -> int:
    """The kind of a header name (``special`` holds lower-case names), memoised in ``cache``."""
    kind = special.get(name.lower(), _KEEP)
    if len(cache) < _KIND_CACHE_MAX:
        cache[name] = kind
    return kind


#: What the C fast path returns: method, target, minor version, fields, Host, keep-alive,
#: X-Request-Id, X-Forwarded-For, Via, Content-Length (0 or None), head length.
ScannedRequest = tuple[
    bytes, bytes, int, bytes, bytes, bool, bytes | None, bytes | None, bytes | None, int | None, int
]


def _load_scan() -> Callable[[bytes], ScannedRequest | None] | None:
    try:
        from pulsegate.http._wire import scan_request
    except ImportError:  # a pure-Python install: llhttp parses every request
        return None
    return scan_request


#: ``pulsegate.http._wire.scan_request``, or None when the C extension is not built.
SCAN_REQUEST: Final = _load_scan()

#: What the llhttp path counts for a head (target + each name and value + 4) can exceed its raw
#: length by one byte per header with no space after the colon; the scan takes at most 64 headers.
_SIZE_SLACK: Final = 64

_REQUEST_ID_OK: Final = re.compile(rb"[A-Za-z0-9._:@=+/\-]{1,128}").fullmatch
_CONNECTION_KEEP: Final = frozenset((b"close", b"keep-alive", b"upgrade"))
#: Connection values that name no other header: skip splitting them (common spellings first,
#: so the usual value is not even lower-cased).
_SIMPLE_CONNECTION: Final = frozenset((b"close", b"keep-alive"))
_SIMPLE_SPELLINGS: Final = frozenset((b"close", b"keep-alive", b"Close", b"Keep-Alive"))


class RequestHandler(Protocol):
    """What the parser reports to; the proxy's client connection implements it."""

    def on_head(self, head: RequestHead) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_end(self) -> None: ...

    def on_upgrade(self, data: bytes) -> None:
        """The request that just ended asked to switch protocols (``head.upgrade`` is set); the
        parser stops here and ``data`` is what followed it in the same read."""


def named_in_connection(
    value: bytes, keep: frozenset[bytes], found: list[bytes] | None
) -> list[bytes] | None:
    """Header names a Connection value lists (beyond ``keep``), added to ``found``.

    >>> named_in_connection(b"keep-alive, X-Secret", frozenset((b"keep-alive",)), None)
    [b'x-secret']
    """
    if value in _SIMPLE_SPELLINGS:
        return found
    low = value.lower()
    if low in _SIMPLE_CONNECTION:
        return found  # the usual values name nothing: skip the split
    for token in split_tokens(low):
        if token not in keep:
            found = found or []
            found.append(token)
    return found


def split_tokens(value: bytes) -> list[bytes]:
    """Lower-cased, stripped members of a comma-separated header value.

    >>> split_tokens(b"Keep-Alive, X-Foo ,")
    [b'keep-alive', b'x-foo']
    """
    return [t for t in (p.strip().lower() for p in value.split(b",")) if t]


class RequestParser:
    """Parses a stream of pipelined requests and reports each to a :class:`RequestHandler`.

    :meth:`feed` raises :class:`~pulsegate.errors.DownstreamError` carrying the status to answer
    (400, 413, 417, 431, 501, 505); after that the connection must be closed.
    """

    __slots__ = (
        "_body_size",
        "_closed",
        "_completed",
        "_error",
        "_feed",
        "_get_method",
        "_handler",
        "_head_class",
        "_head_size",
        "_headers",
        "_idle",
        "_keep_alive",
        "_last",
        "_max_body",
        "_max_head",
        "_p",
        "_partial",
        "_scan",
        "_upgrade",
        "_url",
        "in_head",
    )

    def __init__(
        self,
        handler: RequestHandler,
        *,
        max_header_bytes: int,
        max_body_bytes: int,
        head_class: type[RequestHead] = RequestHead,
        fast: bool = True,
    ) -> None:
        self._handler = handler
        #: What heads are built as: a subclass lets the caller hang its per-request state on the
        #: head and allocate one object per request instead of two.
        self._head_class = head_class
        self._max_head = max_header_bytes
        self._max_body = max_body_bytes
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        #: True while a request head has started but is not complete (for ``header_timeout``).
        self.in_head = False
        self._head_size = 0
        self._partial = 0
        self._body_size = 0
        self._closed = False
        self._last = False
        self._completed = 0
        #: The last head asked to switch protocols: parsing stops after its message.
        self._upgrade = False
        self._error: DownstreamError | None = None
        #: Plain bodiless heads between messages are scanned in C (``fast=False``: llhttp only,
        #: for the differential tests); anything the scan declines goes to llhttp.
        self._scan = SCAN_REQUEST if fast else None
        #: llhttp is between messages (no request line begun): the scan may take the next head.
        self._idle = True
        # httptools binds callbacks by attribute lookup once; on_body goes straight to the handler
        # so body bytes cost no extra Python frame.
        self._p = httptools.HttpRequestParser(_Callbacks(self, handler))
        # Bound once: a method call on the (non-native) parser object looks the name up each time.
        self._feed: Callable[[bytes], None] = self._p.feed_data
        self._get_method: Callable[[], bytes] = self._p.get_method
        self._keep_alive: Callable[[], bool] = self._p.should_keep_alive

    def feed(self, data: bytes) -> None:
        """Parse ``data``; report complete heads, body bytes and message ends to the handler."""
        if self._closed:
            return  # bytes after a request that closes the connection are ignored (RFC 9112 §9.6)
        # Counted before the scan: heads it took end in this read as llhttp's would (see below).
        done_before = self._completed
        if self._idle and self._scan is not None:
            data = self._take_scanned(data)
            if not data:
                return
        was_in_head = self.in_head
        before = self._head_size if was_in_head else 0
        try:
            self._feed(data)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops after a request carrying Upgrade. One we tunnel (see _check_upgrade)
            # ends HTTP on this connection; any other was a plain request: go on parsing.
            rest = data[exc.args[0] :]
            if self._upgrade:
                self._closed = True
                self._handler.on_upgrade(rest)
            elif rest:
                self.feed(rest)
            return
        except httptools.HttpParserCallbackError as exc:
            err = self._error or exc.__context__
            self._error = None
            if isinstance(err, DownstreamError):
                raise err from None
            raise
        except httptools.HttpParserError as exc:
            if self._closed:
                # llhttp refuses bytes after a closing request in the same read; they are not
                # processed (RFC 9112 §9.6), as they are when they come in a later read.
                return
            raise DownstreamError(f"malformed request: {exc}", status=400) from None
        if self.in_head:
            # A header line still being received reports nothing until it ends; count those bytes
            # so one endless header cannot grow memory past the limit. Bytes of this read not
            # reported for the current head are its unfinished tail, unless an earlier message
            # ended in this same read (then we cannot tell, and one read is the bound).
            if self._completed == done_before:
                self._partial = max(0, self._partial + len(data) - (self._head_size - before))
            else:
                self._partial = 0
            if self._head_size + self._partial > self._max_head:
                raise DownstreamError("request header block too large", status=431)

    def _take_scanned(self, data: bytes) -> bytes:
        """Report the plain bodiless heads at the start of ``data`` that the C scan accepts, as
        on_headers_complete and on_message_complete would; returns the rest, for llhttp."""
        scan = self._scan
        assert scan is not None
        while True:
            scanned = scan(data)
            if scanned is None:
                return data
            method, target, minor, fields, host, keep_alive, rid, xff, via, length, end = scanned
            if end + _SIZE_SLACK > self._max_head:
                return data  # near the limit: llhttp's path counts the size its way (431)
            head = self._head_class(method, target, minor)
            head.set_raw(data[:end])
            head.fields = fields
            head.host = host
            head.host_count = 1 if host else 0
            head.content_length = length
            head.keep_alive = keep_alive
            if rid is not None and _REQUEST_ID_OK(rid):
                head.request_id = rid
            head.forwarded_for = xff
            head.via = via
            self._last = not keep_alive
            self._body_size = 0
            self._handler.on_head(head)
            self._completed += 1
            if self._last:
                self._closed = True
            self._handler.on_end()
            if end == len(data) or self._closed:
                return b""
            data = data[end:]

    def _fail(self, reason: str, status: int) -> NoReturn:
        # Raised inside an httptools callback, the error comes back wrapped; keep ours to re-raise.
        self._error = DownstreamError(reason, status=status)
        raise self._error

    def _body_limited(self, handler: RequestHandler) -> Callable[[bytes], None]:
        on_body = handler.on_body

        def on_body_checked(data: bytes) -> None:
            # Content-Length bodies were checked at the head; this catches chunked ones.
            self._body_size += len(data)
            if self._body_size > self._max_body:
                self._fail("request body too large", 413)
            on_body(data)

        return on_body_checked

    # -- callbacks (called by httptools) ----------------------------------------------------------

    def on_message_begin(self) -> None:
        # llhttp holds a message's first bytes (even part of a method) from here on: the scan
        # must not take the next read as if it started a message.
        self._idle = False

    def on_url(self, url: bytes) -> None:
        if not self.in_head:
            self.in_head = True
            self._url = url
            self._head_size = len(url)
        else:
            self._url += url  # llhttp reports a URL split across reads in pieces
            self._head_size += len(url)
        if self._head_size > self._max_head:
            self._fail("request line too long", 431)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a chunked body's trailer fields: not forwarded
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_head:
            self._fail("request header block too large", 431)

    def on_headers_complete(self) -> None:
        p = self._p
        self.in_head = False
        self._partial = 0
        method = self._get_method()
        if method == b"CONNECT":
            self._fail("CONNECT is not supported", 501)
        head = self._make_head(method, self._url, 1)
        keep_alive = self._keep_alive()
        headers = self._headers
        self._headers = []
        if self._classify(head, headers) or not keep_alive:
            # get_http_version() formats a string (~0.4 us). llhttp accepts only 0.9, 1.0, 1.1 and
            # 2.0, and keeps a connection alive without a Connection header only for 1.1; so only
            # a Connection header or a closing request needs the real version.
            version = p.get_http_version()
            if version == "1.0":
                head.version = 0
            elif version != "1.1":
                self._fail(f"HTTP version {version} not supported", 505)
        if head.version == 1 and head.host_count != 1:
            # RFC 9112 §3.2: a 1.1 request without Host, or with several, gets 400.
            if head.host_count > 1:
                self._fail("multiple Host headers", 400)
            if not head.host:
                self._fail("missing Host header", 400)
        head.keep_alive = keep_alive
        if head.upgrade is not None:
            self._upgrade = _check_upgrade(head, headers)
        if head.content_length is not None and head.content_length > self._max_body:
            self._fail("request body too large", 413)
        # After this message, a non-keep-alive request ends the stream (bytes after it are ignored);
        # its own body may still arrive in later reads.
        self._last = not keep_alive
        self._body_size = 0
        self._handler.on_head(head)

    def on_message_complete(self) -> None:
        self._idle = True
        self._completed += 1
        if self._last:
            self._closed = True
        self._handler.on_end()

    # -- helpers -------------------------------------------------------------------------------------

    def _make_head(self, method: bytes, url: bytes, minor: int) -> RequestHead:
        if url[:1] == b"/":
            return self._head_class(method, url, minor)
        if url == b"*" and method == b"OPTIONS":
            return self._head_class(method, url, minor)
        low = url[:8].lower()
        if low.startswith((b"http://", b"https://")):
            # absolute-form (RFC 9112 §3.2.2): the authority replaces Host.
            rest = url[url.index(b"//") + 2 :]
            cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
            authority, target = rest[:cut], rest[cut:]
            if not authority or b"@" in authority:
                self._fail("invalid absolute-form request target", 400)
            if target[:1] != b"/":
                target = b"/" + target
            head = self._head_class(method, target, minor)
            head.host = authority
            head.host_count = 1  # the authority is the host; Host headers are ignored
            return head
        self._fail("invalid request target", 400)

    def _classify(self, head: RequestHead, headers: list[tuple[bytes, bytes]]) -> bool:
        """Sort headers into forwarded ones and attributes; True if a Connection header came."""
        fields: list[bytes] = []
        hosts = 0
        saw_connection = False
        drop_named: list[bytes] | None = None
        cache = _KIND_BY_SPELLING
        # The request and response loops look alike on purpose: each is inlined on the hot path,
        # where a shared helper would cost a call per header.
        for name, value in headers:
            kind = cache.get(name)
            if kind is None:
                kind = header_kind(name, _SPECIAL, cache)
            if kind == _KEEP:
                # Four appends: cheaper than building a tuple to extend with.
                fields.append(name)
                fields.append(b": ")
                fields.append(value)
                fields.append(b"\r\n")
            elif kind == _HOST:
                hosts += 1
                if not head.host:
                    head.host = value
            elif kind == _CL:
                head.content_length = int(value)  # llhttp already refused anything but digits
            elif kind == _TE:
                if head.chunked or value.strip().lower() != b"chunked":
                    # gzip/deflate transfer codings would need decoding we do not do (RFC 9112 §6.1).
                    self._fail("unsupported Transfer-Encoding", 501)
                head.chunked = True
            elif kind == _CONN:
                saw_connection = True
                drop_named = named_in_connection(value, _CONNECTION_KEEP, drop_named)
            elif kind == _EXPECT:
                if value.strip().lower() != b"100-continue":
                    self._fail("unsupported expectation", 417)
                head.expect_continue = True
            elif kind == _RID:
                if head.request_id is None and _REQUEST_ID_OK(value):
                    head.request_id = value
            elif kind == _XFF:
                fwd = head.forwarded_for
                head.forwarded_for = value if fwd is None else fwd + b", " + value
            elif kind == _VIA:
                head.via = value if head.via is None else head.via + b", " + value
            elif kind == _UPGRADE:
                head.upgrade = value
        head.headers = headers
        if drop_named:
            # Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
            head.fields = serialize_kept(headers, _SPECIAL, frozenset(drop_named))
        else:
            head.fields = b"".join(fields)
        if hosts:
            head.host_count = hosts
            if not head.host:
                self._fail("empty Host header", 400)
        if head.expect_continue and not head.has_body:
            head.expect_continue = False  # nothing to wait for
        return saw_connection


def _check_upgrade(head: RequestHead, headers: list[tuple[bytes, bytes]]) -> bool:
    """Keep ``head.upgrade`` only for a switch we tunnel: HTTP/1.1, ``Connection: upgrade``, and
    not ``h2c`` (we speak HTTP/1.1 to upstreams; as Envoy, that upgrade is dropped)."""
    value = head.upgrade
    wanted = head.version == 1 and value is not None and b"h2c" not in value.lower()
    if wanted:
        wanted = any(
            b"upgrade" in split_tokens(v) for n, v in headers if len(n) == 10 and n.lower() == b"connection"
        )
    if not wanted:
        head.upgrade = None
    return wanted


def serialize_kept(
    headers: list[tuple[bytes, bytes]], special: dict[bytes, int], named: frozenset[bytes]
) -> bytes:
    """``Name: value\r\n`` for each header that is neither special nor named in Connection."""
    return b"".join(
        b"%s: %s\r\n" % (n, v) for n, v in headers if (low := n.lower()) not in special and low not in named
    )


class _Callbacks:
    """The object httptools calls: parser methods, except on_body which is the handler's own."""

    __slots__ = (
        "on_body",
        "on_header",
        "on_headers_complete",
        "on_message_begin",
        "on_message_complete",
        "on_url",
    )

    def __init__(self, parser: RequestParser, handler: RequestHandler) -> None:
        self.on_message_begin = parser.on_message_begin
        self.on_url = parser.on_url
        self.on_header = parser.on_header
        self.on_headers_complete = parser.on_headers_complete
        self.on_message_complete = parser.on_message_complete
        self.on_body = parser._body_limited(handler) if parser._max_body else handler.on_body
