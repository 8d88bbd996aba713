"""Per-request state of one proxied exchange, and the request head sent upstream.

Example:
    >>> host_key(b"API.Example.com:8080")
    b'api.example.com'
    >>> host_key(b"[::1]:80")
    b'[::1]'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pulsegate.http.head import RequestHead
from pulsegate.http.writer import CRLF, content_length_line

if TYPE_CHECKING:
    from pulsegate.proxy.pool import TargetPool
    from pulsegate.proxy.runtime import RouteRuntime
    from pulsegate.proxy.upstream import UpstreamConnection

VIA: Final = b"1.1 pulsegate"
#: The usual case (no Via came with the message), as one piece.
VIA_RID: Final = b"Via: " + VIA + b"\r\nX-Request-Id: "

# Framing of the response body towards the client.
BODY_NONE: Final = 0
BODY_LENGTH: Final = 1
BODY_CHUNKED: Final = 2
BODY_CLOSE: Final = 3
# A client connection's phase, for the sweeper's timeout decision. LINGER: refused and half-closed,
# reading and dropping what the client still sends.
IDLE: Final = 0
HEAD: Final = 1
ACTIVE: Final = 2
LINGER: Final = 3
# Reasons a client connection stops reading; reading resumes when none is left.
BLOCK_UPSTREAM: Final = 1
BLOCK_BUFFER: Final = 2
BLOCK_PIPELINE: Final = 4
BLOCK_REJECTED: Final = 8

# Below this, one chunk is built by copying; above, its framing goes around the data in a writev.
_COPY_CHUNK_MAX: Final = 4096


def frame_chunk(data: bytes) -> bytes | list[bytes]:
    """``data`` as one chunk of a chunked body (RFC 9112 §7.1), without copying large data.

    >>> frame_chunk(b"abc")
    b'3\\r\\nabc\\r\\n'
    """
    if len(data) <= _COPY_CHUNK_MAX:
        return b"%x\r\n%s\r\n" % (len(data), data)
    return [b"%x\r\n" % len(data), data, CRLF]


def host_key(host: bytes) -> bytes:
    """The routing form of a Host value: lower-case, without port or trailing dot."""
    if not host:
        return b""
    if host[:1] == b"[":  # IPv6 literal: the port follows the bracket
        return host[: host.find(b"]") + 1].lower()
    colon = host.rfind(b":")
    if colon >= 0:
        host = host[:colon]
    if host[-1:] == b".":
        host = host[:-1]
    return host.lower()


class Exchange(RequestHead):
    """One request/response pair on a client connection: the parsed request head (the parser
    builds heads of this class, so a request costs one object) plus the proxy's state for it."""

    __slots__ = (
        "aborted",
        "attempts",
        "body",
        "buffered",
        "bytes_in",
        "bytes_out",
        "client_keep",
        "discard",
        "framing",
        "head_bytes",
        "head_sent",
        "key",
        "pool",
        "req_done",
        "resp_done",
        "resp_started",
        "retried",
        "route",
        "started",
        "status",
        "streamed",
        "t0",
        "upstream",
        "upstream_keep",
        "waiter",
    )

    def __init__(self, method: bytes, target: bytes, version: int) -> None:
        super().__init__(method, target, version)
        self.route: RouteRuntime | None = None
        self.pool: TargetPool | None = None
        self.upstream: UpstreamConnection | None = None
        self.head_bytes = b""
        #: Request body pieces (already framed for the upstream) not yet written.
        self.body: list[bytes] = []
        self.buffered = 0
        self.head_sent = False
        self.req_done = False
        self.resp_started = False
        self.resp_done = False
        #: Answered already: drop the rest of the request body.
        self.discard = False
        self.aborted = False
        #: A stale pooled connection was already retried once (that retry is free).
        self.retried = False
        #: Part of the body went upstream while the rest was still arriving: it cannot be replayed.
        self.streamed = False
        #: Upstream attempts made (retries on other targets included).
        self.attempts = 0
        #: The balancer key (consistent hashing), kept for retries.
        self.key: bytes | None = None
        #: The callback queued with the pool while waiting for a connection (to withdraw it if
        #: the client leaves first, so it stops counting as pending).
        self.waiter: object = None
        self.framing = 0
        self.client_keep = True
        self.upstream_keep = False
        #: perf_counter_ns when the upstream attempt started; 0 when not counted in target.inflight.
        self.started = 0
        #: perf_counter_ns when the exchange started (its head was parsed, if it queued behind others).
        self.t0 = 0
        #: Status sent to the client (0 until known); request body bytes in, response bytes out.
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def build_request_head(self, route: RouteRuntime, host_line: bytes, client_ip: bytes) -> bytes:
        """The request line and headers for the upstream: end-to-end headers as received, our
        framing, and the forwarding headers (``X-Forwarded-*``, ``Via``, ``X-Request-Id``).
        ``host_line`` ends the request line and carries the target's Host (see TargetPool)."""
        head = self
        target = head.target
        strip = route.strip
        if strip is not None and head.path.startswith(strip):
            target = target[len(strip) :]
            if target[:1] != b"/":
                target = b"/" + target
        if route.preserve_host and head.host:
            host_line = b" HTTP/1.1\r\nHost: " + head.host + CRLF
        parts = [head.method, b" ", target, host_line, head.fields]
        if head.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif head.content_length is not None:
            parts.append(content_length_line(head.content_length))
        fwd = head.forwarded_for
        parts.append(b"X-Forwarded-For: ")
        parts.append(client_ip if fwd is None else fwd + b", " + client_ip)
        if head.host:
            parts.append(b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ")
            parts.append(head.host)
            parts.append(CRLF)
        else:
            parts.append(b"\r\nX-Forwarded-Proto: http\r\n")
        if head.upgrade is not None:  # set only for a switch we tunnel (see http.request)
            parts.append(b"Connection: Upgrade\r\nUpgrade: ")
            parts.append(head.upgrade)
            parts.append(CRLF)
        if head.via is None:
            parts.append(VIA_RID)
        else:
            parts.append(b"Via: ")
            parts.append(head.via + b", " + VIA)
            parts.append(b"\r\nX-Request-Id: ")
        parts.append(self.request_id or b"")
        parts.append(b"\r\n\r\n")
        return b"".join(parts)

    def __repr__(self) -> str:
        rid = (self.request_id or b"-").decode()
        return f"<Exchange {self.method.decode()} {self.target!r} id={rid}>"
