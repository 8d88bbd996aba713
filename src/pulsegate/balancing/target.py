"""An upstream target (one ``host:port``) and the live state balancers read.

The proxy updates ``inflight`` and ``ewma_us`` on the hot path with plain attribute arithmetic;
balancers only read them. ``available`` is derived: active health checks set ``healthy``, passive
outlier ejection sets ``ejected_until``, and :meth:`Target.refresh` combines them.

Example:
    >>> t = Target("127.0.0.1:9001", weight=3)
    >>> (t.host, t.port, t.weight, t.available)
    ('127.0.0.1', 9001, 3, True)
"""

from __future__ import annotations

from typing import Final

# EWMA smoothing for observed latencies: each observation moves the average 1/8 of the way,
# the same decay nginx's and Finagle's peak-EWMA use as a default order of magnitude.
EWMA_ALPHA: Final = 0.125


def split_address(address: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into its parts.

    Port 0 (an ephemeral port) is only meaningful for listen addresses: ``allow_port_zero``.

    >>> split_address("[::1]:80")
    ('::1', 80)
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError(f"missing host in {address!r}")
    port_n = int(port)
    if not (0 if allow_port_zero else 1) <= port_n < 65536:
        raise ValueError(f"port out of range in {address!r}")
    return host, port_n


class Target:
    """One upstream server: its address, weight and live load figures."""

    __slots__ = (
        "address",
        "available",
        "eject_reason",
        "ejected_until",
        "ejections",
        "errors",
        "ewma_us",
        "failures",
        "healthy",
        "host",
        "inflight",
        "port",
        "readmitted_at",
        "weight",
    )

    def __init__(self, address: str, weight: int = 1) -> None:
        if weight < 1:
            raise ValueError("weight must be >= 1")
        self.address = address
        self.host, self.port = split_address(address)
        self.weight = weight
        self.inflight = 0
        self.ewma_us = 0.0
        self.available = True
        #: Verdict of the active health checks (True when none are configured).
        self.healthy = True
        #: Passive ejection: out of rotation until this loop time (0.0 = not ejected).
        self.ejected_until = 0.0
        self.eject_reason = ""
        #: Ejections in a row (the next one lasts longer); decays while the target behaves.
        self.ejections = 0
        self.readmitted_at = 0.0
        #: Consecutive gateway failures (connect failures, resets, timeouts) and consecutive
        #: errors (those plus 5xx answers); a good answer zeroes both.
        self.failures = 0
        self.errors = 0

    def refresh(self) -> None:
        """Recompute ``available`` after ``healthy`` or ``ejected_until`` changed."""
        self.available = self.healthy and self.ejected_until == 0.0

    def observe_latency(self, micros: float) -> None:
        """Fold one observed response latency (microseconds) into the EWMA."""
        if self.ewma_us == 0.0:
            self.ewma_us = micros
        else:
            self.ewma_us += (micros - self.ewma_us) * EWMA_ALPHA

    def __repr__(self) -> str:
        return (
            f"<Target {self.address} w={self.weight} inflight={self.inflight} "
            f"ewma={self.ewma_us:.0f}us{'' if self.available else ' unavailable'}>"
        )
