"""Error taxonomy: every failure says where it came from and whether a retry is safe.

Modelled on pingora-error: a small set of sources, an HTTP status to answer with, and a
``retryable`` flag the proxy consults before trying another target.

Example:
    >>> e = UpstreamError("connection refused", status=502, retryable=True)
    >>> (e.source, e.status, e.retryable)
    ('upstream', 502, True)
"""

from __future__ import annotations

from typing import ClassVar, Literal

Source = Literal["downstream", "upstream", "internal"]


class GatewayError(Exception):
    """Base class: a failure with a source, the status to answer and retry-safety."""

    source: ClassVar[Source] = "internal"

    def __init__(self, reason: str, *, status: int = 500, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status}, retryable={self.retryable})"


class DownstreamError(GatewayError):
    """The client sent something we refuse (bad framing, limits, timeouts). Never retried."""

    source: ClassVar[Source] = "downstream"

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason, status=status, retryable=False)


class UpstreamError(GatewayError):
    """The upstream failed: refused, reset, timed out or sent a malformed response."""

    source: ClassVar[Source] = "upstream"

    def __init__(self, reason: str, *, status: int = 502, retryable: bool = False) -> None:
        super().__init__(reason, status=status, retryable=retryable)


class ConnectError(UpstreamError):
    """No connection to the target could be made (refused, unreachable, timed out): nothing of the
    request was sent, so it is safe to retry on another target whatever the method."""

    def __init__(self, reason: str, *, status: int = 502) -> None:
        super().__init__(reason, status=status, retryable=True)


class InternalError(GatewayError):
    """A bug or resource problem inside the gateway itself."""

    source: ClassVar[Source] = "internal"
