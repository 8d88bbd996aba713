"""The control channel over a real socketpair: frames in order, in any split, and a malformed or
oversized frame closes the channel instead of being half-read."""

from __future__ import annotations

import asyncio
import socket
import struct

from pulsegate.metrics.snapshot import ProcessSample, RouteSample, Snapshot
from pulsegate.runtime.channel import MAX_FRAME, Channel, ChannelError, open_channel
from pulsegate.runtime.messages import Apply, Message, Metrics, Ping, encode
from tests.support import arun


async def _pair() -> tuple[Channel, Channel, asyncio.Queue[Message], asyncio.Future[Exception | None]]:
    a, b = socket.socketpair()
    got: asyncio.Queue[Message] = asyncio.Queue()
    closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def on_close(exc: Exception | None) -> None:
        if not closed.done():
            closed.set_result(exc)

    left = await open_channel(a, lambda m: None)
    right = await open_channel(b, got.put_nowait, on_close)
    return left, right, got, closed


def test_messages_arrive_in_order_including_a_snapshot() -> None:
    async def main() -> None:
        left, right, got, _ = await _pair()
        snap = Snapshot(
            worker=2,
            pid=7,
            time=1.5,
            interval=1.0,
            process=ProcessSample(rss_bytes=123),
            routes={"api": RouteSample(requests=5, total={70: 5})},
        )
        msgs: list[Message] = [Ping(seq=1), Metrics(snapshot=snap), Apply(seq=3, text="{}", source="x")]
        for m in msgs:
            assert left.send(m)
        assert [await got.get() for _ in msgs] == msgs
        left.close()
        right.close()

    arun(main())


def test_a_frame_split_byte_by_byte_decodes_once() -> None:
    async def main() -> None:
        left, right, got, _ = await _pair()
        body = encode(Ping(seq=42))
        frame = struct.pack(">I", len(body)) + body
        for i in range(len(frame)):
            left.send_raw(frame[i : i + 1])
            await asyncio.sleep(0)  # let each byte arrive on its own
        assert await got.get() == Ping(seq=42)
        left.close()
        right.close()

    arun(main())


def test_garbage_closes_the_channel_with_a_reason() -> None:
    async def main() -> None:
        left, right, got, closed = await _pair()
        left.send_raw(struct.pack(">I", 3) + b"\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
        exc = await closed
        assert isinstance(exc, ChannelError) and "undecodable" in str(exc)
        assert got.empty() and not right.is_open
        left.close()

    arun(main())


def test_oversized_length_closes_the_channel() -> None:
    async def main() -> None:
        left, _, _, closed = await _pair()
        left.send_raw(struct.pack(">I", MAX_FRAME + 1))
        exc = await closed
        assert isinstance(exc, ChannelError) and "exceeds" in str(exc)
        left.close()

    arun(main())
