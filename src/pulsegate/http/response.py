"""Sans-IO response parser for the upstream side: bytes in, validated heads out.

Besides classifying headers (hop-by-hop and framing out, the rest kept in order), it knows two
things llhttp cannot: that a response to HEAD has no body whatever its Content-Length says, and
that interim 1xx responses precede the final one on the same message exchange.

Example:
    >>> class Sink:
    ...     def on_response_head(self, head): print(head.status, head.content_length)
    ...     def on_response_body(self, data): print("body", data)
    ...     def on_response_end(self): print("end")
    >>> p = ResponseParser(Sink())
    >>> p.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi")
    200 2
    body b'hi'
    end
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import httptools

from pulsegate.errors import UpstreamError
from pulsegate.http.head import ResponseHead
from pulsegate.http.request import header_kind, named_in_connection, serialize_kept

_KEEP, _CL, _TE, _CONN, _DROP, _VIA, _UPGRADE = range(7)
_SPECIAL: dict[bytes, int] = {
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"connection": _CONN,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"upgrade": _UPGRADE,  # hop-by-hop: rewritten by the proxy on a 101, dropped otherwise
    # The proxy sets its own request id on the way back.
    b"x-request-id": _DROP,
    b"via": _VIA,
}
_CONNECTION_KEEP = frozenset((b"close", b"keep-alive"))
_KIND_BY_SPELLING: dict[bytes, int] = {}


class ResponseHeadHandler(Protocol):
    """Receives response heads and ends (may change between responses)."""

    def on_response_head(self, head: ResponseHead) -> None: ...
    def on_response_end(self) -> None: ...

    def on_response_upgrade(self, data: bytes) -> None:
        """A 101 switched protocols: ``data`` followed its head; the parser is done."""


class ResponseHandler(ResponseHeadHandler, Protocol):
    """What the parser reports to; the proxy's upstream connection implements it."""

    def on_response_body(self, data: bytes) -> None: ...


class ResponseParser:
    """Parses the responses on one upstream connection.

    Set :attr:`head_request` before the response to a HEAD request arrives. :attr:`handler` may be
    replaced between responses (heads and ends go to the current one; body bytes always go to the
    handler given at construction, which httptools binds once). :meth:`feed` raises
    :class:`~pulsegate.errors.UpstreamError` (502) on a malformed response.
    """

    __slots__ = (
        "_begun",
        "_body_handler",
        "_ended",
        "_fast",
        "_fast_feed",
        "_fast_keep",
        "_feed",
        "_full",
        "_full_feed",
        "_full_keep",
        "_headers",
        "_in_head",
        "_keep_alive",
        "_p",
        "_pre",
        "_skip_body",
        "_status",
        "_until_eof",
        "handler",
        "head_request",
    )

    def __init__(self, handler: ResponseHandler) -> None:
        self.handler: ResponseHeadHandler = handler
        self._body_handler = handler
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = True
        self._skip_body = False
        self._until_eof = False
        self.head_request = False
        #: The status of the response being parsed (1xx included).
        self._status = 0
        #: A message has begun and not ended (the parser is not at a message boundary).
        self._begun = False
        #: A final response ended during this feed: any byte after it is an error.
        self._ended = False
        #: The head of the current response, classified from the raw bytes (fast path), or None.
        self._pre: ResponseHead | None = None
        # Two llhttp parsers, used one message at a time: one reports every header to Python (for
        # heads split across reads, 1xx, HEAD); the other reports none, for a complete head in one
        # read, whose headers we take from the raw bytes (no Python objects per header).
        self._fast = httptools.HttpResponseParser(_FastCallbacks(self, self._body_handler))
        # Bound once: a method call on the (non-native) parser object looks the name up each time.
        self._fast_feed: Callable[[bytes], None] = self._fast.feed_data
        self._fast_keep: Callable[[], bool] = self._fast.should_keep_alive
        self._full = self._p = self._fresh_parser()
        self._feed = self._full_feed
        self._keep_alive = self._full_keep

    def _fresh_parser(self) -> httptools.HttpResponseParser:
        p = httptools.HttpResponseParser(_Callbacks(self, self._body_handler))
        self._full_feed: Callable[[bytes], None] = p.feed_data
        self._full_keep: Callable[[], bool] = p.should_keep_alive
        return p

    def feed(self, data: bytes) -> None:
        """Parse ``data`` and report to the handler."""
        self._ended = False
        if not self._begun and not self.head_request:
            # At a message boundary: a complete final head in this read takes the fast path.
            pre = self._pre = scan_head(data)
            if pre is not None:
                self._p, self._feed, self._keep_alive = self._fast, self._fast_feed, self._fast_keep
            else:
                self._p, self._feed, self._keep_alive = self._full, self._full_feed, self._full_keep
        try:
            self._feed(data)
        except httptools.HttpParserUpgrade as exc:
            # Only after a 101 (the handler raised for any it did not ask for).
            self.handler.on_response_upgrade(data[exc.args[0] :])
            return
        except httptools.HttpParserCallbackError as exc:
            if exc.__context__ is not None:
                raise exc.__context__ from None
            raise
        except httptools.HttpParserError as exc:
            raise UpstreamError(f"malformed response: {exc}", status=502) from None
        if self._skip_body:
            # llhttp would wait for the body a HEAD response announces; start afresh instead.
            self._skip_body = False
            self._full = self._p = self._fresh_parser()
            self._feed, self._keep_alive = self._full_feed, self._full_keep

    def feed_eof(self) -> bool:
        """The upstream closed. True if that ended a close-delimited body (reported as its end).

        httptools has no ``finish()``, so the one framing that ends at EOF is tracked here.
        """
        if not self._until_eof:
            return False
        self._until_eof = False
        self.handler.on_response_end()
        return True

    # -- callbacks ---------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # trailer fields of a chunked body are dropped
            self._headers.append((name, value))

    def on_message_begin(self) -> None:
        if self._ended:
            # We send one request at a time: bytes after the response are no answer to anything,
            # and kept on a pooled connection they would answer the next client (desync).
            raise UpstreamError("upstream sent bytes after its response", status=502)
        self._begun = True

    def on_headers_complete(self) -> None:
        status = self._status = self._p.get_status_code()
        pre = self._pre
        if pre is not None:
            self._pre = None
            pre.status = status
            pre.keep_alive = self._keep_alive()
            self._head_done(pre)
            return
        if self._p is self._fast:
            raise UpstreamError("upstream sent a second response head", status=502)
        headers = self._headers
        self._headers = []
        head = ResponseHead(status, headers)
        head.keep_alive = self._keep_alive()
        fields: list[bytes] = []
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
            elif kind == _CL:
                head.content_length = int(value)
            elif kind == _TE:
                if head.chunked or value.strip().lower() != b"chunked":
                    # We re-frame bodies; another coding (gzip, ...) would be silently lost.
                    raise UpstreamError("unsupported Transfer-Encoding in response", status=502)
                head.chunked = True
            elif kind == _CONN:
                drop_named = named_in_connection(value, _CONNECTION_KEEP, drop_named)
            elif kind == _VIA:
                head.via = value if head.via is None else head.via + b", " + value
            elif kind == _UPGRADE:
                head.upgrade = value
        if drop_named:
            head.fields = serialize_kept(headers, _SPECIAL, frozenset(drop_named))
        else:
            head.fields = b"".join(fields)
        self._head_done(head)

    def _head_done(self, head: ResponseHead) -> None:
        status = head.status
        if status >= 200:
            self._in_head = False
            self._until_eof = (
                head.content_length is None
                and not head.chunked
                and status not in (204, 304)
                and not self.head_request
            )
        self.handler.on_response_head(head)
        if self.head_request and status >= 200:
            self._skip_body = True
            self.head_request = False
            self._in_head = True
            self._begun = False
            self._ended = True
            self.handler.on_response_end()

    def on_message_complete(self) -> None:
        if self._skip_body:
            return  # already ended at the head
        self._in_head = True
        self._until_eof = False
        self._begun = False
        if self._status >= 200:
            self._ended = True
            self.handler.on_response_end()


class _FastCallbacks:
    """What the fast parser calls: no ``on_header``, so llhttp reports no header to Python."""

    __slots__ = ("on_body", "on_headers_complete", "on_message_begin", "on_message_complete")

    def __init__(self, parser: ResponseParser, handler: ResponseHandler) -> None:
        self.on_message_begin = parser.on_message_begin
        self.on_headers_complete = parser.on_headers_complete
        self.on_message_complete = parser.on_message_complete
        self.on_body = handler.on_response_body


class _Callbacks(_FastCallbacks):
    __slots__ = ("on_header",)

    def __init__(self, parser: ResponseParser, handler: ResponseHandler) -> None:
        super().__init__(parser, handler)
        self.on_header = parser.on_header


# First bytes of the header names the proxy does not forward as they are (see _SPECIAL): a line
# starting with any other byte is kept without looking at its name.
_MAYBE_SPECIAL = bytes(1 if chr(i).lower() in "ctkpuxv" else 0 for i in range(256))


def scan_head(data: bytes) -> ResponseHead | None:
    """Classify a complete final response head at the start of ``data`` from its raw bytes, or
    None when it is not one (partial head, 1xx, no status line) or needs the general path.

    Kept header lines are forwarded as they came, sliced in runs, not rebuilt. llhttp still parses
    the same bytes and refuses anything malformed before this result is used.

    >>> h = scan_head(b"HTTP/1.1 200 OK\\r\\nServer: x\\r\\nContent-Length: 2\\r\\nDate: d\\r\\n\\r\\nhi")
    >>> (h.content_length, h.fields)
    (2, b'Server: x\\r\\nDate: d\\r\\n')
    """
    end = data.find(b"\r\n\r\n")
    if end < 12 or not data.startswith(b"HTTP/1.") or data[9] == 49:  # 49: "1", an interim 1xx
        return None
    stop = end + 2  # the blank line that ends the head
    pos = data.find(b"\r\n") + 2
    head = ResponseHead(0, None)
    head.raw = data[pos:stop]
    kept: list[bytes] = []
    run = pos
    cache = _KIND_BY_SPELLING
    drop_named: list[bytes] | None = None
    while pos < stop:
        eol = data.find(b"\r\n", pos)
        if _MAYBE_SPECIAL[data[pos]]:
            colon = data.find(b":", pos, eol)
            if colon <= pos:
                return None  # no name: llhttp will say what is wrong
            name = data[pos:colon]
            kind = cache.get(name)
            if kind is None:
                kind = header_kind(name, _SPECIAL, cache)
            if kind != _KEEP:
                if run < pos:
                    kept.append(data[run:pos])
                run = eol + 2
                # As llhttp reports values: without the leading whitespace (trailing is kept).
                value = data[colon + 1 : eol].lstrip(b" \t")
                if kind == _CL:
                    value = value.rstrip(b" \t")
                    if not value.isdigit() or head.content_length is not None or head.chunked:
                        return None  # llhttp decides (and refuses what it must)
                    head.content_length = int(value)
                elif kind == _TE:
                    if head.chunked or head.content_length is not None or value.lower() != b"chunked":
                        return None
                    head.chunked = True
                elif kind == _CONN:
                    drop_named = named_in_connection(value, _CONNECTION_KEEP, drop_named)
                elif kind == _VIA:
                    head.via = value if head.via is None else head.via + b", " + value
                elif kind == _UPGRADE:
                    head.upgrade = value
        pos = eol + 2
    if drop_named:
        # Headers named in Connection are hop-by-hop too: the general serializer drops them.
        head.fields = serialize_kept(head.headers, _SPECIAL, frozenset(drop_named))
        return head
    if run < stop:
        kept.append(data[run:stop])
    head.fields = kept[0] if len(kept) == 1 else b"".join(kept)
    return head
