"""Sans-IO response parser for the upstream side: bytes in, validated heads out.

Besides classifying headers (hop-by-hop and framing out, the rest kept in order), it knows two
things llhttp cannot: that a response to HEAD has no body whatever its Content-Length says, and
that interim 1xx responses precede the final one on the same message exchange.

A plain head at a message boundary (status 2xx-5xx, Content-Length, keep-alive) is scanned and
classified in C (:mod:`pulsegate.http._wire`) and its body passed on as read; llhttp parses
everything else, with the same results (tests/http/test_wire.py).

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
from typing import Final, Protocol

import httptools

from pulsegate.errors import UpstreamError
from pulsegate.http.head import ResponseHead
from pulsegate.http.request import header_kind, named_in_connection, serialize_kept

_KEEP: Final = 0
_CL: Final = 1
_TE: Final = 2
_CONN: Final = 3
_DROP: Final = 4
_VIA: Final = 5
_UPGRADE: Final = 6
_SPECIAL: Final[dict[bytes, int]] = {
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
_CONNECTION_KEEP: Final = frozenset((b"close", b"keep-alive"))
#: Content-Length bodies from this size on bypass llhttp after the first read (a fresh parser
#: per such response costs about as much as copying a few KiB).
BYPASS_MIN: Final = 64 << 10
_KIND_BY_SPELLING: Final[dict[bytes, int]] = {}

#: What the C fast path returns: status, fields, Content-Length, keep-alive, Via, head length.
Scanned = tuple[int, bytes, int, bool, bytes | None, int]


def _load_scan() -> Callable[[bytes], Scanned | None] | None:
    try:
        from pulsegate.http._wire import scan_response
    except ImportError:  # a pure-Python install: llhttp parses every response
        return None
    return scan_response


#: ``pulsegate.http._wire.scan_response``, or None when the C extension is not built.
SCAN: Final = _load_scan()


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
        "_begins",
        "_body_handler",
        "_body_left",
        "_bypass",
        "_ended",
        "_feed",
        "_feed_fresh",
        "_fresh",
        "_headers",
        "_in_head",
        "_keep_alive",
        "_on_body",
        "_p",
        "_scan",
        "_skip_body",
        "_stale",
        "_status",
        "_until_eof",
        "handler",
        "head_request",
    )

    def __init__(self, handler: ResponseHandler, *, fast: bool = True) -> None:
        self.handler: ResponseHeadHandler = handler
        self._body_handler = handler
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = True
        self._skip_body = False
        self._until_eof = False
        self.head_request = False
        #: The status of the response being parsed (1xx included).
        self._status = 0
        #: A final response ended during this feed: any byte after it is an error.
        self._ended = False
        #: The parser is at a message boundary; it was at feed() entry; messages begun in this feed.
        self._fresh = True
        self._feed_fresh = True
        self._begins = 0
        #: A large Content-Length body whose head just ended: pass the rest around llhttp.
        self._bypass = 0
        #: Bytes of such a body still to come; they go to the handler as read, without a copy.
        self._body_left = 0
        self._on_body: Callable[[bytes], None] = handler.on_response_body
        #: Plain heads at a message boundary are scanned in C (``fast=False``: llhttp only, for
        #: the differential tests); anything the scan declines goes to llhttp.
        self._scan = SCAN if fast else None
        #: llhttp was fed a head whose body then went around it: replace it at the body's end.
        self._stale = False
        self._p = self._fresh_parser()

    def _fresh_parser(self) -> httptools.HttpResponseParser:
        p = httptools.HttpResponseParser(_Callbacks(self, self._body_handler))
        # Bound once: a method call on the (non-native) parser object looks the name up each time.
        self._feed: Callable[[bytes], None] = p.feed_data
        self._keep_alive: Callable[[], bool] = p.should_keep_alive
        return p

    def feed(self, data: bytes) -> None:
        """Parse ``data`` and report to the handler."""
        ended = False
        if self._body_left:
            data = self._pass_body(data)
            if not data:
                return
            ended = True  # bytes after the body: llhttp judges them (it skips CRLFs, as here)
        elif self._fresh and self._scan is not None and not self.head_request:
            scanned = self._scan(data)
            if scanned is not None:
                data = self._take(data, scanned)
                if not data:
                    return
                ended = True
        self._ended = ended
        self._feed_fresh = self._fresh
        self._begins = 0
        self._bypass = 0  # also after a feed that raised (a retried 5xx): never carried over
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
            self._p = self._fresh_parser()
        elif self._bypass:
            # The head began this read (at its start: no blank lines before it), so it ends at
            # the first blank line in it.
            length, self._bypass = self._bypass, 0
            if data.startswith(b"HTTP/"):
                seen = len(data) - (data.find(b"\r\n\r\n") + 4)
                if seen < length:
                    self._body_left = length - seen
                    self._stale = True

    def _take(self, data: bytes, scanned: Scanned) -> bytes:
        """A head the C scan accepted (status 2xx-5xx, Content-Length framing): report it and
        as much of its body as came, without llhttp. Returns the bytes after the response."""
        status, fields, length, keep_alive, via, end = scanned
        head = ResponseHead(status, None, data[:end])
        head.fields = fields
        head.content_length = length
        head.keep_alive = keep_alive
        head.via = via
        self._status = status
        self.handler.on_response_head(head)
        came = len(data) - end
        if came < length:
            if came:
                self._on_body(data[end:])
            self._body_left = length - came
            return b""
        if length:
            self._on_body(data[end : end + length])
        self._message_done()
        return data[end + length :] if came > length else b""

    def _pass_body(self, data: bytes) -> bytes:
        """Body bytes of a Content-Length response, handed on as read: llhttp would copy every
        chunk into a new bytes object (and a megabyte body is mostly those copies). Returns the
        bytes after the body."""
        left = self._body_left
        n = len(data)
        if n < left:
            if n:  # an empty read reports nothing, as llhttp's path
                self._body_left = left - n
                self._on_body(data)
            return b""
        self._body_left = 0
        self._on_body(data if n == left else data[:left])
        if self._stale:
            self._stale = False
            self._p = self._fresh_parser()  # this one still waits for the body we passed around it
        self._message_done()
        return data[left:] if n > left else b""

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
        self._fresh = False
        self._begins += 1

    def on_headers_complete(self) -> None:
        status = self._status = self._p.get_status_code()
        headers = self._headers
        self._headers = []
        head = ResponseHead(status, headers)
        head.keep_alive = self._keep_alive()
        if not head.keep_alive:
            self._scan = None  # nothing may follow this response: llhttp refuses it, not the scan
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
        if status >= 200:
            self._in_head = False
            self._until_eof = (
                head.content_length is None
                and not head.chunked
                and status not in (204, 304)
                and not self.head_request
            )
            if (
                head.content_length is not None
                and head.content_length >= BYPASS_MIN
                and self._feed_fresh
                and self._begins == 1
                and status not in (204, 304)
                and not self.head_request
            ):
                self._bypass = head.content_length
        self.handler.on_response_head(head)
        if self.head_request and status >= 200:
            self._skip_body = True
            self.head_request = False
            self._in_head = True
            self._ended = True
            self._fresh = True
            self.handler.on_response_end()

    def on_message_complete(self) -> None:
        if self._skip_body:
            return  # already ended at the head
        self._bypass = 0  # the whole body came with the head
        self._message_done()

    def _message_done(self) -> None:
        self._in_head = True
        self._until_eof = False
        self._fresh = True
        if self._status >= 200:
            self._ended = True
            self.handler.on_response_end()


class _Callbacks:
    __slots__ = ("on_body", "on_header", "on_headers_complete", "on_message_begin", "on_message_complete")

    def __init__(self, parser: ResponseParser, handler: ResponseHandler) -> None:
        self.on_message_begin = parser.on_message_begin
        self.on_header = parser.on_header
        self.on_headers_complete = parser.on_headers_complete
        self.on_message_complete = parser.on_message_complete
        self.on_body = handler.on_response_body
