"""What a worker sends the supervisor each interval: counter deltas, histogram deltas and gauges.

Deltas, not running totals: the supervisor adds them up, so a replaced worker's counters never go
backwards in the merged view. Histograms travel sparse (``{bucket index: count}``).

Example:
    >>> import msgspec
    >>> snap = Snapshot(worker=1, pid=42, time=1.0, interval=1.0, process=ProcessSample())
    >>> decode_snapshot(msgspec.msgpack.encode(snap)).pid
    42
"""

from __future__ import annotations

import msgspec

Sparse = dict[int, int]


class RouteSample(msgspec.Struct, forbid_unknown_fields=False):
    """One route's deltas over the interval (``in_flight`` is a gauge)."""

    requests: int = 0
    status: list[int] = msgspec.field(default_factory=lambda: [0] * 6)
    bytes_in: int = 0
    bytes_out: int = 0
    in_flight: int = 0
    total: Sparse = msgspec.field(default_factory=dict)
    upstream: Sparse = msgspec.field(default_factory=dict)
    overhead: Sparse = msgspec.field(default_factory=dict)


class TargetSample(msgspec.Struct):
    """One upstream target's deltas; ``in_flight``, ``pool_idle`` and ``pool_active`` are gauges."""

    upstream: str
    address: str
    requests: int = 0
    status: list[int] = msgspec.field(default_factory=lambda: [0] * 6)
    bytes_in: int = 0
    bytes_out: int = 0
    connect_failures: int = 0
    timeouts: int = 0
    in_flight: int = 0
    pool_idle: int = 0
    pool_active: int = 0


class ProcessSample(msgspec.Struct):
    """The worker process: gauges and cumulative CPU, deltas for the rest."""

    connections: int = 0
    #: Upgraded (WebSocket) connections open now.
    tunnels: int = 0
    accepted: int = 0
    rss_bytes: int = 0
    #: Cumulative user + system CPU seconds of the process.
    cpu_seconds: float = 0.0
    #: Event-loop lag over the interval: how late a timer ran (max and mean, seconds).
    loop_lag_max: float = 0.0
    loop_lag_mean: float = 0.0
    #: Collections per generation and total pause time, over the interval.
    gc_collections: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0])
    gc_pause_seconds: float = 0.0
    gc_pause_max: float = 0.0


class Snapshot(msgspec.Struct):
    """Everything one worker measured over one interval."""

    worker: int
    pid: int
    #: Wall-clock time the interval ended.
    time: float
    #: Seconds the interval covered.
    interval: float
    process: ProcessSample
    routes: dict[str, RouteSample] = msgspec.field(default_factory=dict)
    #: Keyed ``upstream/address``.
    targets: dict[str, TargetSample] = msgspec.field(default_factory=dict)
    #: Event counter deltas keyed ``family<TAB>label...`` (see Registry.count).
    events: dict[str, int] = msgspec.field(default_factory=dict)


_decoder = msgspec.msgpack.Decoder(Snapshot)


def decode_snapshot(data: bytes) -> Snapshot:
    """Decode a msgpack snapshot (raises ``msgspec.DecodeError`` on bad input)."""
    return _decoder.decode(data)
