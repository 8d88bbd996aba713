"""Messages on the supervisor <-> worker control channel (msgpack, tagged structs).

Up (worker -> supervisor): :class:`Ready`, :class:`Pong`, :class:`Metrics`, :class:`Applied`.
Down (supervisor -> worker): :class:`Ping`, :class:`Apply`, :class:`Stop`, :class:`ReopenLogs`,
:class:`TargetHealth`.
Later tools (profiler, memory snapshots, the tuner) add their own tags here.

Example:
    >>> decode(encode(Ping(seq=7)))
    Ping(seq=7)
"""

from __future__ import annotations

import msgspec

from pulsegate.health.monitor import TargetState
from pulsegate.metrics.snapshot import Snapshot


class Ready(msgspec.Struct, tag="ready"):
    """The worker listens and serves (sent once, after start)."""

    worker: int
    pid: int
    listening: list[tuple[str, int]]


class Ping(msgspec.Struct, tag="ping"):
    seq: int


class Pong(msgspec.Struct, tag="pong"):
    seq: int


class Metrics(msgspec.Struct, tag="metrics"):
    snapshot: Snapshot
    #: Each target as this worker sees it (health, passive ejection, load) for /api/upstreams.
    targets: list[TargetState] = []


class TargetHealth(msgspec.Struct, tag="target_health"):
    """An active health check's result (the supervisor runs the checks for every worker)."""

    upstream: str
    address: str
    healthy: bool
    #: This check passed (readmits a target the worker ejected passively).
    ok: bool


class Apply(msgspec.Struct, tag="apply"):
    """Swap in this config (already validated by the supervisor; the worker parses it again)."""

    seq: int
    text: str
    source: str


class Applied(msgspec.Struct, tag="applied"):
    seq: int
    ok: bool
    errors: list[str] = []


class Stop(msgspec.Struct, tag="stop"):
    """Stop accepting, drain in-flight requests for up to ``timeout`` seconds, exit."""

    timeout: float


class ReopenLogs(msgspec.Struct, tag="reopen_logs"):
    pass


Message = Ready | Ping | Pong | Metrics | Apply | Applied | Stop | ReopenLogs | TargetHealth

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(msg: Message) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes) -> Message:
    """Decode one message body (raises ``msgspec.DecodeError`` / ``ValidationError``)."""
    msg: Message = _decoder.decode(data)
    return msg
