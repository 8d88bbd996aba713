"""Live progress while a load test runs, and the final report on the terminal (rich).

The progress line shows elapsed/total, the rate achieved in the last complete second, its
p50/p99 and the errors so far; it goes to stderr and only when stderr is a terminal, so piped
output and CI logs get the final report alone.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.live import Live
from rich.text import Text

from pulsegate.loadtest.model import Result
from pulsegate.loadtest.runner import ChildSecond
from pulsegate.metrics.histogram import percentiles


class Progress:
    """A one-line live status, refreshed from the generators' half-second reports."""

    def __init__(self, total: float | None = None) -> None:
        self.console = Console(stderr=True)
        self.total = total
        self._live: Live | None = None
        if self.console.is_terminal:
            self._live = Live(Text("starting..."), console=self.console, transient=True, auto_refresh=False)
            self._live.start()

    def update(self, elapsed: float, seconds: dict[int, ChildSecond], errors: int) -> None:
        if self._live is None:
            return
        last = int(elapsed) - 1
        cs = seconds.get(last)
        rate = cs.sent if cs is not None else 0  # sends of the last complete second
        p50 = p99 = 0.0
        if cs is not None and cs.hist:
            p50, p99 = percentiles(cs.hist, [50, 99])
        clock = f"{max(0.0, elapsed):6.1f}s" + (f" / {self.total:.0f}s" if self.total else "")
        line = f"{clock}  {rate:>8,} req/s  p50 {p50 / 1000:7.2f} ms"
        self._live.update(Text(f"{line}  p99 {p99 / 1000:7.2f} ms  errors {errors:,}"), refresh=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def print_report(result: Result) -> None:
    """The final report as a table on stdout."""
    from pulsegate.loadtest.report import render_table

    console = Console(file=sys.stdout)
    console.print(render_table(result))
