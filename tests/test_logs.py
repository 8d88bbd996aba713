"""Structured event logs: the JSON and console formats, reconfiguration, logrotate's reopen and
whole lines from processes sharing a pipe."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulsegate import logs
from pulsegate.logs import configure_logging, get_logger, reopen, set_worker

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MANAGED = ("pulsegate", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put every logger it touches back as it was."""
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
        for name, lg in ((n, logging.getLogger(n)) for n in MANAGED)
    }
    yield
    if logs._handler is not None:
        logs._handler.close()
        logs._handler = None
    set_worker("supervisor")
    for name, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


def json_lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_line_carries_ts_level_worker_event_and_fields() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", worker="w1", stream=out)
    get_logger("pulsegate.runtime").info("worker.started", pid=123, id=1, name="a b", ok=True)
    (line,) = json_lines(out)
    assert list(line)[:4] == ["ts", "level", "worker", "event"]
    assert TS.match(str(line["ts"]))
    assert line == {
        "ts": line["ts"],
        "level": "info",
        "worker": "w1",
        "event": "worker.started",
        "pid": 123,
        "id": 1,
        "name": "a b",
        "ok": True,
    }


def test_odd_field_values_fall_back_to_str_and_never_break_the_line() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    obj = object()
    get_logger("pulsegate.t").warning("odd", obj=obj, path=Path("/x"), big=2**70, bad="\udcff", ts="mine")
    (line,) = json_lines(out)
    assert line["level"] == "warning"
    assert line["obj"] == str(obj)
    assert line["path"] == "/x"
    assert line["big"] == 2**70
    assert line["bad"] == "\udcff"
    # A field may not overwrite the line's own keys: it is kept under another name.
    assert TS.match(str(line["ts"]))
    assert line["_ts"] == "mine"


def test_level_filters_events() -> None:
    out = io.StringIO()
    configure_logging(level="warning", fmt="json", stream=out)
    log = get_logger("pulsegate.t")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["event"] for line in json_lines(out)] == ["w", "e"]


def test_exception_adds_the_traceback() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        get_logger("pulsegate.t").exception("request.failed", route="api")
    (line,) = json_lines(out)
    assert line["level"] == "error"
    assert line["route"] == "api"
    exc = str(line["exc"])
    assert exc.startswith("Traceback (most recent call last):")
    assert exc.rstrip().endswith("ZeroDivisionError: division by zero")


def test_plain_stdlib_loggers_log_their_name_as_event_and_message_as_msg() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    logging.getLogger("pulsegate.config").warning("reloaded %d routes", 3)
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /metrics HTTP/1.1" 200')
    assert [(line["event"], line["msg"]) for line in json_lines(out)] == [
        ("pulsegate.config", "reloaded 3 routes"),
        ("uvicorn.error", "Application startup complete."),
    ]


def test_other_libraries_and_the_root_logger_are_left_alone() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("httpx").handlers[:])
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    assert (list(root.handlers), root.level, logging.getLogger("httpx").handlers[:]) == before
    logging.getLogger("httpx").warning("not ours")
    assert out.getvalue() == ""


def test_reconfiguring_replaces_the_handler_instead_of_adding_one() -> None:
    out = io.StringIO()
    for _ in range(3):
        configure_logging(fmt="json", stream=out)
    get_logger("pulsegate.t").info("once")
    logging.getLogger("uvicorn.error").info("once too")
    assert len(json_lines(out)) == 2

    elsewhere = io.StringIO()
    configure_logging(fmt="json", stream=elsewhere)
    get_logger("pulsegate.t").info("moved")
    assert len(json_lines(out)) == 2
    assert [line["event"] for line in json_lines(elsewhere)] == ["moved"]


def test_set_worker_changes_the_stamp() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    log = get_logger("pulsegate.t")
    log.info("a")
    set_worker("w7")
    log.info("b")
    assert [(line["worker"], line["event"]) for line in json_lines(out)] == [("supervisor", "a"), ("w7", "b")]


def test_console_format_when_forced_has_no_colours_off_a_tty() -> None:
    out = io.StringIO()
    configure_logging(fmt="console", worker="supervisor", stream=out)
    get_logger("pulsegate.t").info("worker.started", pid=123, id=1, cmd="a b", empty="")
    get_logger("pulsegate.t").warning("slow")
    first, second = out.getvalue().splitlines()
    assert re.fullmatch(
        r'\d\d:\d\d:\d\d\.\d{3} INFO  supervisor worker\.started pid=123 id=1 cmd="a b" empty=""', first
    )
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} WARN  supervisor slow", second)


def test_auto_format_is_json_off_a_tty_and_coloured_console_on_one() -> None:
    out = io.StringIO()
    configure_logging(fmt="auto", stream=out)
    get_logger("pulsegate.t").info("piped")
    assert json_lines(out)[0]["event"] == "piped"

    master, slave = os.openpty()
    with open(slave, "w", encoding="utf-8") as tty, open(master, "rb", buffering=0) as reader:
        configure_logging(fmt="auto", stream=tty)
        get_logger("pulsegate.t").error("on.tty", n=1)
        text = reader.read(4096).decode()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} \x1b\[31mERROR\x1b\[0m supervisor on\.tty n=1\r\n", text)


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging(level="loud")
    with pytest.raises(ValueError, match="log format"):
        configure_logging(fmt="xml")
    with pytest.raises(ValueError, match="not both"):
        configure_logging(stream=io.StringIO(), path="x.log")


def test_reopen_after_logrotate_renamed_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pulsegate.log"
    configure_logging(fmt="json", path=str(path))
    log = get_logger("pulsegate.t")
    log.info("before")
    path.rename(tmp_path / "pulsegate.log.1")
    log.info("still.old")  # the handler holds the renamed file until told to reopen
    reopen()
    log.info("after")

    def events(p: Path) -> list[object]:
        return [json.loads(line)["event"] for line in p.read_text().splitlines()]

    assert events(tmp_path / "pulsegate.log.1") == ["before", "still.old"]
    assert events(path) == ["after"]


def test_reopen_is_a_no_op_for_streams() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    reopen()
    get_logger("pulsegate.t").info("still.here")
    assert json_lines(out)[0]["event"] == "still.here"


CHILD = """
import sys
from pulsegate.logs import configure_logging, get_logger
configure_logging(fmt="json", worker=sys.argv[1])
log = get_logger("pulsegate.child")
pad = "x" * 300
sys.stdin.read()  # both children start logging only once the parent closes their stdin
for seq in range(int(sys.argv[2])):
    log.info("child.line", seq=seq, pad=pad)
"""


def test_two_processes_sharing_a_pipe_write_only_whole_lines() -> None:
    lines_each = 2000
    read_end, write_end = os.pipe()
    try:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, f"w{i}", str(lines_each)],
                stdin=subprocess.PIPE,
                stderr=write_end,
            )
            for i in range(2)
        ]
    finally:
        os.close(write_end)
    for child in children:
        assert child.stdin is not None
        child.stdin.close()
    chunks = []
    with open(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    assert [child.wait(timeout=10) for child in children] == [0, 0]

    seen: dict[str, list[int]] = {"w0": [], "w1": []}
    for raw in b"".join(chunks).decode().splitlines():
        line = json.loads(raw)
        assert line["event"] == "child.line"
        assert len(line["pad"]) == 300
        seen[line["worker"]].append(line["seq"])
    assert seen == {"w0": list(range(lines_each)), "w1": list(range(lines_each))}
