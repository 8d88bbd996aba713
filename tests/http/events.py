"""What the parser tests record: events in order, with body chunks joined (how a body is split
into callbacks depends on the reads and on the parser's path, never the bytes)."""

from __future__ import annotations


class EventLog:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def on_body(self, data: bytes) -> None:
        last = self.events[-1] if self.events else None
        if last is not None and last[0] == "body":
            self.events[-1] = ("body", bytes(last[1]) + data)  # type: ignore[call-overload]
        else:
            self.events.append(("body", data))

    def on_response_body(self, data: bytes) -> None:
        self.on_body(data)
