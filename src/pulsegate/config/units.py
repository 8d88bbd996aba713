"""Human-friendly durations and sizes: ``250ms``, ``1.5s``, ``10MiB``, ``32KB``.

Durations become float seconds and sizes int bytes; the ``format_*`` functions give the shortest
text that parses back to exactly the same value, so a config can be printed and re-read losslessly.

Example:
    >>> parse_duration("250ms"), parse_size("64KiB")
    (0.25, 65536)
    >>> format_duration(90.0), format_size(10 * 1024 * 1024)
    ('90s', '10MiB')
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, localcontext
from typing import Annotated

from pydantic import BeforeValidator

__all__ = [
    "DURATION_UNITS",
    "SIZE_UNITS",
    "Duration",
    "Size",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

# Seconds per unit. Decimal factors keep "0.1ms" or "1.5s" exact until the final float conversion.
DURATION_UNITS: dict[str, Decimal] = {
    "us": Decimal("0.000001"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}

# Bytes per unit; matched case-insensitively (there are no bit units that a lower-case "b" could mean).
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_SIZE_UNITS_FOLDED = {unit.lower(): factor for unit, factor in SIZE_UNITS.items()}

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_RE = re.compile(rf"\s*({_NUMBER})\s*(us|ms|s|m|h|d)?\s*")
_SIZE_RE = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]+)?\s*")

_DURATION_EXPECTED = "expected a number with unit us, ms, s, m, h or d"
_SIZE_EXPECTED = "expected a number with unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"


def parse_duration(value: str | int | float) -> float:
    """Parse a duration into float seconds; a bare number means seconds.

    Raises ``ValueError`` with a one-line reason for negative, non-finite or unparsable input.

    >>> [parse_duration(v) for v in ("2s", "1.5s", "500us", "1m", "1h", "7d", 3)]
    [2.0, 1.5, 0.0005, 60.0, 3600.0, 604800.0, 3.0]
    >>> parse_duration("2x")
    Traceback (most recent call last):
    ...
    ValueError: invalid duration '2x': expected a number with unit us, ms, s, m, h or d
    """
    # bool is an int subclass; "timeout: yes" in YAML is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration {_show(value)}: {_DURATION_EXPECTED}")
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if match is None:
            raise ValueError(f"invalid duration {_show(value)}: {_DURATION_EXPECTED}")
        number, unit = match.groups()
        amount = Decimal(number) * DURATION_UNITS[unit or "s"]
    else:
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {_show(value)}: must be a finite number")
        amount = Decimal(value)
    if amount < 0:
        raise ValueError(f"invalid duration {_show(value)}: must not be negative")
    seconds = float(amount)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {_show(value)}: too large")
    return seconds


def parse_size(value: str | int) -> int:
    """Parse a size into int bytes; a bare integer means bytes. Units are case-insensitive.

    ``KB``/``MB``/``GB``/``TB`` are decimal (1000), ``KiB``/``MiB``/``GiB``/``TiB`` binary (1024). A
    fraction is accepted when it comes to a whole number of bytes (``1.5KiB`` = 1536).

    >>> [parse_size(v) for v in ("512B", "32KB", "64KiB", "10MiB", "1.5KiB", 4096)]
    [512, 32000, 65536, 10485760, 1536, 4096]
    >>> parse_size("10XB")
    Traceback (most recent call last):
    ...
    ValueError: invalid size '10XB': expected a number with unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"invalid size {_show(value)}: {_SIZE_EXPECTED}")
    if isinstance(value, int):
        amount = Decimal(value)
    else:
        match = _SIZE_RE.fullmatch(value)
        factor = None
        if match is not None:
            factor = _SIZE_UNITS_FOLDED.get((match.group(2) or "b").lower())
        if match is None or factor is None:
            raise ValueError(f"invalid size {_show(value)}: {_SIZE_EXPECTED}")
        with localcontext() as ctx:
            ctx.prec = 200  # exact for any sane input; avoids rounding "1.0000000001GiB" to whole
            amount = Decimal(match.group(1)) * factor
    if amount < 0:
        raise ValueError(f"invalid size {_show(value)}: must not be negative")
    if amount != amount.to_integral_value():
        raise ValueError(f"invalid size {_show(value)}: not a whole number of bytes")
    return int(amount)


def format_duration(seconds: float) -> str:
    """Format float seconds in the largest unit that keeps the number exact (and >= 1).

    ``parse_duration(format_duration(x)) == x`` for every finite ``x >= 0``.

    >>> [format_duration(s) for s in (0, 0.25, 1.5, 30, 90, 120, 7200, 86400, 0.0005)]
    ['0s', '250ms', '1.5s', '30s', '90s', '2m', '2h', '1d', '500us']
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}: must be a finite number >= 0")
    # repr() is the shortest decimal that round-trips to this float; work on it exactly.
    exact = Decimal(repr(float(seconds)))
    if exact == 0:
        return "0s"
    for unit in ("d", "h", "m"):
        whole, rest = divmod(exact, DURATION_UNITS[unit])
        if rest == 0:
            return f"{_plain(whole)}{unit}"
    for unit in ("s", "ms"):
        amount = exact / DURATION_UNITS[unit]
        if amount >= 1:
            return f"{_plain(amount)}{unit}"
    return f"{_plain(exact / DURATION_UNITS['us'])}us"


def format_size(size: int) -> str:
    """Format bytes with the largest unit that divides them exactly; binary units win ties.

    ``parse_size(format_size(n)) == n`` for every int ``n >= 0``.

    >>> [format_size(n) for n in (0, 512, 1000, 1024, 32 * 1024, 10 * 1024**2, 10**7, 1500)]
    ['0B', '512B', '1KB', '1KiB', '32KiB', '10MiB', '10MB', '1500B']
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"cannot format size {size!r}: must be an int >= 0")
    if size == 0:
        return "0B"
    # Binary first: buffer sizes in this project are powers of two, and "64KiB" reads better.
    for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"):
        whole, rest = divmod(size, SIZE_UNITS[unit])
        if rest == 0:
            return f"{whole}{unit}"
    return f"{size}B"


def _plain(number: Decimal) -> str:
    """Fixed-point text without trailing zeros: Decimal('3E+1') -> '30', Decimal('1.50') -> '1.5'."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _show(value: object) -> str:
    if isinstance(value, bool):  # it came from YAML, so say it the YAML way
        return "'true'" if value else "'false'"
    return f"'{value}'"


def _duration_input(value: object) -> float:
    return parse_duration(value)  # type: ignore[arg-type]  # parse_duration rejects other types itself


def _size_input(value: object) -> int:
    return parse_size(value)  # type: ignore[arg-type]  # parse_size rejects other types itself


Duration = Annotated[float, BeforeValidator(_duration_input)]
"""A pydantic field type: accepts ``"250ms"``-style text or a number of seconds, stores float seconds."""

Size = Annotated[int, BeforeValidator(_size_input)]
"""A pydantic field type: accepts ``"64KiB"``-style text or a number of bytes, stores int bytes."""
