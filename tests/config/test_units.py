"""Duration and size parsing/formatting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulsegate.config.units import format_duration, format_size, parse_duration, parse_size

DURATION_HELP = "expected a number with unit us, ms, s, m, h or d"
SIZE_HELP = "expected a number with unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
        ("500us", 0.0005),
        ("0.1ms", 0.0001),
        ("1.5m", 90.0),
        (".5s", 0.5),
        ("3.", 3.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("10", 10.0),
        (" 2 s ", 2.0),
        ("+2s", 2.0),
        (3, 3.0),
        (0.75, 0.75),
        (0, 0.0),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2x", f"invalid duration '2x': {DURATION_HELP}"),
        ("", f"invalid duration '': {DURATION_HELP}"),
        ("s", f"invalid duration 's': {DURATION_HELP}"),
        ("1S", f"invalid duration '1S': {DURATION_HELP}"),
        ("1 2s", f"invalid duration '1 2s': {DURATION_HELP}"),
        ("1e3s", f"invalid duration '1e3s': {DURATION_HELP}"),
        ("1h30m", f"invalid duration '1h30m': {DURATION_HELP}"),
        ("-1s", "invalid duration '-1s': must not be negative"),
        (-0.5, "invalid duration '-0.5': must not be negative"),
        (math.inf, "invalid duration 'inf': must be a finite number"),
        (math.nan, "invalid duration 'nan': must be a finite number"),
        (True, f"invalid duration 'true': {DURATION_HELP}"),
        (None, f"invalid duration 'None': {DURATION_HELP}"),
        ("9" * 400, f"invalid duration '{'9' * 400}': too large"),
    ],
)
def test_parse_duration_errors(value: object, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(info.value) == reason


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512B", 512),
        ("64KiB", 64 * 1024),
        ("10MiB", 10 * 1024**2),
        ("1GiB", 1024**3),
        ("2TiB", 2 * 1024**4),
        ("32KB", 32_000),
        ("10MB", 10_000_000),
        ("1GB", 10**9),
        ("1TB", 10**12),
        ("1.5KiB", 1536),
        ("0.5MB", 500_000),
        ("64kib", 64 * 1024),
        ("10 MiB", 10 * 1024**2),
        ("4096", 4096),
        ("0", 0),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size
    assert type(parse_size(text)) is int


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10XB", f"invalid size '10XB': {SIZE_HELP}"),
        ("KiB", f"invalid size 'KiB': {SIZE_HELP}"),
        ("", f"invalid size '': {SIZE_HELP}"),
        ("1.5", "invalid size '1.5': not a whole number of bytes"),
        ("1.1KiB", "invalid size '1.1KiB': not a whole number of bytes"),
        ("-1", "invalid size '-1': must not be negative"),
        ("-1KiB", "invalid size '-1KiB': must not be negative"),
        (-5, "invalid size '-5': must not be negative"),
        (1.5, f"invalid size '1.5': {SIZE_HELP}"),
        (False, f"invalid size 'false': {SIZE_HELP}"),
        (None, f"invalid size 'None': {SIZE_HELP}"),
    ],
)
def test_parse_size_errors(value: object, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)  # type: ignore[arg-type]
    assert str(info.value) == reason


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0005, "500us"),
        (0.0000005, "0.5us"),
        (0.0015, "1.5ms"),
        (0.25, "250ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (30, "30s"),
        (59.5, "59.5s"),
        (60, "1m"),
        (90, "90s"),
        (120, "2m"),
        (3600, "1h"),
        (5400, "90m"),
        (7200.0, "2h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1500, "1500B"),
        (1000, "1KB"),
        (1024, "1KiB"),
        (32 * 1024, "32KiB"),
        (10 * 1024**2, "10MiB"),
        (10**7, "10MB"),
        (1024**3, "1GiB"),
        (3 * 1024**4, "3TiB"),
        (2048 * 1024**4, "2048TiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan])
def test_format_duration_rejects(bad: float) -> None:
    with pytest.raises(ValueError, match="cannot format duration"):
        format_duration(bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_format_size_rejects(bad: int) -> None:
    with pytest.raises(ValueError, match="cannot format size"):
        format_size(bad)


@given(st.integers(min_value=0, max_value=2**70))
def test_size_round_trip(n: int) -> None:
    assert parse_size(format_size(n)) == n


@given(st.integers(min_value=0, max_value=2**20), st.sampled_from(["B", "KB", "MiB", "GiB", "TB"]))
def test_size_text_round_trip(n: int, unit: str) -> None:
    size = parse_size(f"{n}{unit}")
    assert parse_size(format_size(size)) == size


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_duration_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["us", "ms", "s", "m", "h", "d"]))
def test_duration_text_round_trip(n: int, unit: str) -> None:
    seconds = parse_duration(f"{n}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds
