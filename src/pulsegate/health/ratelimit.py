"""Token-bucket rate limiting shared by every worker process of one gateway.

The buckets live in a file mapped with ``mmap`` (under ``/dev/shm`` when it exists), so the limit
holds for the sum of all workers instead of each worker separately. The file is a fixed table of
``slots`` buckets grouped into sets of ``WAYS`` consecutive slots; a key's fingerprint picks its
set and the key may sit in any slot of that set (linear probing bounded to the set). Sets never
overlap, so one ``fcntl.lockf`` record lock on a set's bytes serialises every access to its
slots. Record locks belong to the process and the kernel drops them when it dies, so a worker
killed mid-``take`` cannot wedge the others. Buckets refill lazily on access.

A set with no free slot evicts the bucket that is (or will be) full soonest. A bucket already full
is indistinguishable from a fresh one, so that loses nothing; when more distinct keys are active
within burst/rate seconds than a set holds (a flood of distinct keys), live buckets are evicted
and their keys come back with a full burst: the limiter fails open for those keys, it never
refuses more than it should. Size ``slots`` well above the keys active per refill period.

Locks are per process, not per thread: use it from one thread per process (asyncio workers).
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import re
import struct
import tempfile
from dataclasses import dataclass

__all__ = ["Decision", "SharedBuckets", "parse_rate"]

WAYS = 8
_MAGIC = b"PGRLIM01"
_HEADER = struct.Struct("<8sQ")
_HEADER_BYTES = 64  # keeps every slot 32-byte aligned, so no field straddles a cache line
# fingerprint (0 = empty), tokens, last update, time the bucket is full again. The last field is
# redundant for refill but lets eviction compare buckets whose keys have different limits.
_SLOT = struct.Struct("<Qddd")
_SLOT_BYTES = _SLOT.size
_SET_BYTES = WAYS * _SLOT_BYTES
_FPS = struct.Struct("<" + f"Q{_SLOT_BYTES - 8}x" * WAYS)
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_RE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*([a-z]+))?\s*")
_blake2b = hashlib.blake2b


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one :meth:`SharedBuckets.take`, with what rate-limit headers need."""

    allowed: bool
    remaining: int
    retry_after: float
    reset: float


def parse_rate(text: str | int | float) -> float:
    """Tokens per second from ``"100/s"``, ``"6000/m"``, ``"10/ms"``, ``"3600/h"`` or a number.

    >>> parse_rate("6000/m"), parse_rate("10/ms"), parse_rate(2.5)
    (100.0, 10000.0, 2.5)
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid rate {text!r}: expected a number or '<count>/<s|m|h|ms>'")
    if isinstance(text, int | float):
        value, unit = float(text), "s"
    else:
        match = _RATE_RE.fullmatch(text)
        if match is None or (match[2] is not None and match[2] not in _UNITS):
            raise ValueError(f"invalid rate {text!r}: expected '<count>/<s|m|h|ms>', e.g. '100/s'")
        value, unit = float(match[1]), match[2] or "s"
    rate = value / _UNITS[unit]
    if not 0.0 < rate < float("inf"):
        raise ValueError(f"invalid rate {text!r}: must be positive and finite")
    return rate


class SharedBuckets:
    """A table of token buckets in a memory-mapped file that several processes can share.

    >>> buckets = SharedBuckets.create(slots=64)
    >>> [buckets.take(b"client", rate=1.0, burst=2, now=0.0).allowed for _ in range(3)]
    [True, True, False]
    >>> buckets.take(b"client", rate=1.0, burst=2, now=1.0)
    Decision(allowed=True, remaining=0, retry_after=0.0, reset=2.0)
    >>> buckets.close(); buckets.unlink()
    """

    __slots__ = ("_fd", "_map", "_sets", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        try:
            size = os.fstat(fd).st_size
            if size < _HEADER_BYTES:
                raise ValueError(f"{path} is not a pulsegate rate-limit table")
            self._map = mmap.mmap(fd, size)
            magic, slots = _HEADER.unpack_from(self._map)
            if magic != _MAGIC or not slots or slots % WAYS or size != _HEADER_BYTES + slots * _SLOT_BYTES:
                self._map.close()
                raise ValueError(f"{path} is not a pulsegate rate-limit table")
        except BaseException:
            os.close(fd)
            raise
        self._sets = slots // WAYS

    @classmethod
    def create(cls, slots: int = 65536, directory: str | None = None) -> SharedBuckets:
        """Create a zeroed table of ``slots`` buckets (rounded up to a multiple of ``WAYS``)."""
        if slots < 1:
            raise ValueError(f"slots must be positive, got {slots}")
        slots = -(-slots // WAYS) * WAYS
        if directory is None:
            directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        # mkstemp: unique name, mode 0600, so other users cannot read or forge bucket state.
        fd, path = tempfile.mkstemp(prefix="pulsegate-ratelimit-", suffix=".tbl", dir=directory)
        try:
            os.ftruncate(fd, _HEADER_BYTES + slots * _SLOT_BYTES)
            os.pwrite(fd, _HEADER.pack(_MAGIC, slots), 0)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return cls(path, fd)

    @classmethod
    def attach(cls, path: str) -> SharedBuckets:
        """Map a table another process created with :meth:`create`."""
        return cls(path, os.open(path, os.O_RDWR | os.O_CLOEXEC))

    @classmethod
    def from_fd(cls, fd: int) -> SharedBuckets:
        """Map a table from a descriptor inherited from its creator (who may have unlinked the
        file already: then nothing is left behind however the processes end)."""
        return cls(f"<fd {fd}>", fd)

    def fileno(self) -> int:
        return self._fd

    def take(self, key: bytes, rate: float, burst: float, now: float) -> Decision:
        """Take one token from ``key``'s bucket (``rate`` tokens/s, capacity ``burst``) at ``now``.

        A key seen for the first time (or evicted since) starts with a full bucket. ``now`` is
        ``time.monotonic()``; the clock is system-wide, so all processes agree on it.
        """
        if not (rate > 0.0 and burst >= 1.0):
            raise ValueError(f"need rate > 0 and burst >= 1, got rate={rate!r} burst={burst!r}")
        mm = self._map
        if mm.closed:
            raise ValueError("SharedBuckets is closed")
        fp = int.from_bytes(_blake2b(key, digest_size=8).digest(), "little") or 1
        base = _HEADER_BYTES + (fp % self._sets) * _SET_BYTES
        fcntl.lockf(self._fd, fcntl.LOCK_EX, _SET_BYTES, base)
        try:
            fps = _FPS.unpack_from(mm, base)
            if fp in fps:
                off = base + fps.index(fp) * _SLOT_BYTES
                _, tokens, last, _ = _SLOT.unpack_from(mm, off)
                if now > last:
                    tokens += (now - last) * rate
                    last = now
                # Also clamps tokens from a larger burst configured earlier.
                tokens = min(tokens, burst)
            else:
                off = base + (fps.index(0) if 0 in fps else self._victim(mm, base)) * _SLOT_BYTES
                tokens, last = burst, now
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            reset = (burst - tokens) / rate
            _SLOT.pack_into(mm, off, fp, tokens, last, last + reset)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, _SET_BYTES, base)
        # `last` may be a little after `now` when another process stamped the bucket between our
        # reading the clock and getting the lock; report times relative to the caller's `now`.
        reset += last - now
        if allowed:
            return Decision(True, int(tokens), 0.0, reset)
        return Decision(False, 0, (1.0 - tokens) / rate + last - now, reset)

    @staticmethod
    def _victim(mm: mmap.mmap, base: int) -> int:
        full_at = [_SLOT.unpack_from(mm, base + i * _SLOT_BYTES)[3] for i in range(WAYS)]
        return full_at.index(min(full_at))

    def close(self) -> None:
        """Unmap the table. Idempotent; the file stays for other processes."""
        if not self._map.closed:
            self._map.close()
            os.close(self._fd)

    def unlink(self) -> None:
        """Remove the file (the creator does this at shutdown); attached maps stay valid."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> SharedBuckets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
