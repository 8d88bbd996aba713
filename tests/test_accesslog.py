"""The access log: records buffered without I/O, written in batches by the loop's timer or when the
buffer fills, reopened for logrotate, and lossy (counted) rather than raising when the reader is gone."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

import pytest

from pulsegate.accesslog import AccessLog
from tests.support import arun

KEYS = [
    "ts",
    "method",
    "path",
    "route",
    "upstream",
    "target",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ms",
    "request_id",
    "client",
]
# 2026-11-28T17:35:34.123Z
T0 = 1795887334.123


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ObservedLog(AccessLog):
    """Counts flushes and sets an event after each, so a test can await the timer's flush."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.flushes = 0
        self.flushed = asyncio.Event()

    def flush(self) -> None:
        super().flush()
        self.flushes += 1
        self.flushed.set()


def rec(log: AccessLog, n: int = 0, path: bytes = b"/a", status: int = 200) -> None:
    log.record(
        b"GET",
        path,
        "api",
        "backend",
        "10.0.0.1:8080",
        status,
        17,
        512 + n,
        1500 + n,
        1234,
        b"rid-%d" % n,
        b"::1",
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_records_are_written_only_on_flush_in_order_with_every_key(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), clock=Clock())
    for n in range(3):
        rec(log, n)
    assert path.read_bytes() == b""
    assert log.records_written == 0
    log.flush()
    written = lines(path)
    assert [list(line) for line in written] == [KEYS] * 3
    assert written[0] == {
        "ts": "2026-11-28T17:35:34.123Z",
        "method": "GET",
        "path": "/a",
        "route": "api",
        "upstream": "backend",
        "target": "10.0.0.1:8080",
        "status": 200,
        "bytes_in": 17,
        "bytes_out": 512,
        "duration_ms": 1.5,
        "upstream_ms": 1.234,
        "request_id": "rid-0",
        "client": "::1",
    }
    assert [line["request_id"] for line in written] == ["rid-0", "rid-1", "rid-2"]
    assert [line["duration_ms"] for line in written] == [1.5, 1.501, 1.502]
    assert (log.records_written, log.dropped) == (3, 0)
    log.flush()  # nothing new: nothing written twice
    assert len(lines(path)) == 3
    log.close()


def test_file_is_appended_to_and_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b'{"earlier":true}\n')
    log = AccessLog(str(path))
    rec(log)
    log.close()
    assert len(lines(path)) == 2
    with pytest.raises(FileNotFoundError, match=r"access log \(its directory must exist\)") as info:
        AccessLog(str(tmp_path / "missing" / "access.log"))
    assert info.value.filename == str(tmp_path / "missing" / "access.log")
    with pytest.raises(ValueError, match="flush_interval"):
        AccessLog(str(path), flush_interval=0)
    with pytest.raises(ValueError, match="max_buffer"):
        AccessLog(str(path), max_buffer=0)


def test_without_a_loop_a_full_buffer_is_flushed_inline(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), max_buffer=4)
    for n in range(3):
        rec(log, n)
    assert path.read_bytes() == b""
    rec(log, 3)
    assert len(lines(path)) == 4
    log.close()


def test_full_buffer_schedules_one_flush_with_call_soon_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "access.log"

    async def main() -> None:
        log = ObservedLog(str(path), flush_interval=3600, max_buffer=3)
        log.start(asyncio.get_running_loop())
        for n in range(5):  # fills at the third record; two more arrive before the loop runs again
            rec(log, n)
        assert path.read_bytes() == b""  # not on the recording request's path
        await asyncio.wait_for(log.flushed.wait(), 2)
        assert log.flushes == 1
        assert [line["request_id"] for line in lines(path)] == [f"rid-{n}" for n in range(5)]
        log.close()

    arun(main())


def test_timer_flushes_every_interval_and_rearms(tmp_path: Path) -> None:
    path = tmp_path / "access.log"

    async def main() -> None:
        log = ObservedLog(str(path), flush_interval=0.01)
        log.start(asyncio.get_running_loop())
        rec(log, 0)
        assert path.read_bytes() == b""
        await asyncio.wait_for(log.flushed.wait(), 2)
        assert [line["request_id"] for line in lines(path)] == ["rid-0"]
        log.flushed.clear()
        rec(log, 1)
        await asyncio.wait_for(log.flushed.wait(), 2)
        assert [line["request_id"] for line in lines(path)] == ["rid-0", "rid-1"]
        log.close()

    arun(main())


def test_odd_bytes_in_paths_and_ids_are_logged_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    raw = bytes(range(256))
    log.record(raw, b'/\xff\xfe%00\x00"\\\n', "r", "u", "t", 400, 0, 0, 0, 0, b"\x80", b"\xc3(")
    log.close()
    (line,) = lines(path)
    assert line["method"] == raw.decode("latin-1")
    assert line["path"].encode("latin-1") == b'/\xff\xfe%00\x00"\\\n'
    assert line["request_id"] == "\x80"
    assert line["client"] == "\xc3("


def test_a_bad_str_does_not_cost_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    rec(log, 0)
    log.record(b"GET", b"/", "bad\udcff", "u", "t", 200, 0, 2**70, 0, 0, b"", b"")
    rec(log, 2)
    log.close()
    written = lines(path)
    assert [line["route"] for line in written] == ["api", "bad\udcff", "api"]
    assert written[1]["bytes_out"] == 2**70


def test_reopen_after_logrotate_renamed_the_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    fd = log.fileno()
    rec(log, 0)
    log.flush()
    path.rename(tmp_path / "access.log.1")
    rec(log, 1)
    log.reopen()  # flushes to the renamed file first: the line was recorded before the rotation
    rec(log, 2)
    log.flush()
    assert log.fileno() == fd
    assert [line["request_id"] for line in lines(tmp_path / "access.log.1")] == ["rid-0", "rid-1"]
    assert [line["request_id"] for line in lines(path)] == ["rid-2"]
    log.close()


def test_close_flushes_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    rec(log)
    log.close()
    log.close()
    assert len(lines(path)) == 1
    assert log.fileno() == -1
    rec(log)  # a request finishing during shutdown: counted, not raised
    log.flush()
    assert (log.records_written, log.dropped) == (1, 1)


def test_stdout_is_written_with_the_batch_and_left_open() -> None:
    child = (
        "import os\n"
        "from pulsegate.accesslog import AccessLog\n"
        "log = AccessLog('stdout')\n"
        "for n in range(3):\n"
        "    log.record(b'GET', b'/%d' % n, 'r', 'u', 't', 200, 0, 0, 1000, 500, b'', b'')\n"
        "log.close()\n"
        "os.write(1, b'still open\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, check=True, timeout=10).stdout
    *records, last = out.splitlines()
    assert [json.loads(line)["path"] for line in records] == ["/0", "/1", "/2"]
    assert last == b"still open"


def test_a_reader_that_went_away_counts_dropped_lines(tmp_path: Path) -> None:
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    log = AccessLog(str(fifo))
    rec(log, 0)
    log.flush()
    assert os.read(reader, 65536).count(b"\n") == 1
    os.close(reader)
    for n in range(5):
        rec(log, n)
    log.flush()  # EPIPE (Python ignores SIGPIPE): lost and counted, not raised
    assert (log.records_written, log.dropped) == (1, 5)
    log.close()


def test_a_full_nonblocking_pipe_keeps_whole_lines_and_counts_the_rest(tmp_path: Path) -> None:
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = AccessLog(str(fifo), max_buffer=100_000)
        os.set_blocking(log.fileno(), False)
        fcntl.fcntl(log.fileno(), fcntl.F_SETPIPE_SZ, 4096)  # the smallest pipe: full sooner
        total = 300  # ~70 KB: more than the default 64 KiB pipe even if the resize was refused
        for n in range(total):
            rec(log, n)
        log.flush()
        assert log.dropped > 0
        assert log.records_written + log.dropped == total
        for n in range(total, total + 2):
            rec(log, n)
        received = b""
        while True:
            try:
                chunk = os.read(reader, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            received += chunk
        log.flush()  # the pipe has room again: the next batch starts on a line of its own
        received += os.read(reader, 1 << 20)
        log.close()
    finally:
        os.close(reader)

    raw_lines = received.split(b"\n")
    assert raw_lines[-1] == b""
    parsed: list[dict[str, Any]] = []
    torn = 0
    for raw in raw_lines[:-1]:
        try:
            parsed.append(json.loads(raw))
        except json.JSONDecodeError:
            torn += 1
    assert torn <= 1  # at most the one line the full pipe cut short
    ids = [line["request_id"] for line in parsed]
    assert len(ids) == log.records_written
    assert ids[:-2] == [f"rid-{n}" for n in range(len(ids) - 2)]
    assert ids[-2:] == [f"rid-{total}", f"rid-{total + 1}"]


def test_write_errors_other_than_the_pipe_are_counted_too(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    log = AccessLog("/dev/full")
    rec(log)
    log.flush()  # ENOSPC
    assert (log.records_written, log.dropped) == (0, 1)
    log.close()


def test_record_cost_is_printed_and_sane() -> None:
    log = AccessLog(os.devnull, max_buffer=10**9)
    call = 'record(b"GET", path, "api", "backend", "10.0.0.1:8080", 200, 0, 512, 1500, 1234, rid, b"::1")'
    env = {"record": log.record, "path": b"/api/v1/items", "rid": b"0af7651916cd43dd"}
    number = 20_000
    record_ns = min(timeit.repeat(call, number=number, repeat=5, globals=env)) / number * 1e9
    log.flush()
    batch = 1024  # a full default buffer: what one flush formats and writes
    for n in range(batch):
        rec(log, n)
    started = timeit.default_timer()
    log.flush()
    flush_ns = (timeit.default_timer() - started) / batch * 1e9
    log.close()
    print(f"\naccess log: record() {record_ns:.0f} ns, flush {flush_ns:.0f} ns per line (batch of {batch})")
    assert record_ns < 20_000, "record() regressed by an order of magnitude"


def test_record_checked_escapes_quotes_and_backslashes_in_the_path(tmp_path: Path) -> None:
    # The proxy's fast path: llhttp admits only printable ASCII in a request target, of which only
    # the quote and the backslash need escaping in JSON.
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.record_checked(b"GET", b'/a"b\\c', "r", "u", "t:1", 200, 0, 1, 2, 1, b"id", b"::1")
    log.record_checked(b"GET", b"/plain?q=1", "", "", "", 404, 0, 1, 2, 0, b"id2", b"127.0.0.1")
    log.close()
    first, second = lines(path)
    assert first["path"] == '/a"b\\c' and first["route"] == "r"
    assert second["path"] == "/plain?q=1" and second["route"] == "" and second["target"] == ""
