"""The duplex control channel between the supervisor and one worker: length-prefixed msgpack
frames over a socketpair, as an ``asyncio.Protocol``.

A frame is a 4-byte big-endian length and a msgpack body (:mod:`pulsegate.runtime.messages`).
A malformed frame closes the channel: the peer is then treated as lost (the supervisor replaces
the worker; a worker whose supervisor is gone exits).

Example:
    >>> import asyncio, socket
    >>> from pulsegate.runtime.messages import Ping
    >>> async def main():
    ...     a, b = socket.socketpair()
    ...     got = asyncio.get_running_loop().create_future()
    ...     left = await open_channel(a, lambda m: None)
    ...     right = await open_channel(b, got.set_result)
    ...     left.send(Ping(seq=1))
    ...     msg = await got
    ...     left.close(); right.close()
    ...     return msg
    >>> asyncio.run(main())
    Ping(seq=1)
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import cast

import msgspec

from pulsegate.runtime.messages import Message, decode, encode

_HEADER = struct.Struct(">I")
#: Large enough for a metrics snapshot of thousands of routes; a length beyond it is corruption.
MAX_FRAME = 64 * 1024 * 1024


class ChannelError(Exception):
    """The peer sent something that is not a valid frame."""


class Channel(asyncio.Protocol):
    """One end of a control channel; ``on_message`` is called for every decoded message."""

    def __init__(
        self,
        on_message: Callable[[Message], None],
        on_close: Callable[[Exception | None], None] | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_close is not None:
            self.on_close(exc)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= 4:
            (size,) = _HEADER.unpack_from(buf)
            if size > MAX_FRAME:
                self._fail(ChannelError(f"frame of {size} bytes exceeds {MAX_FRAME}"))
                return
            if len(buf) < 4 + size:
                return
            body = bytes(buf[4 : 4 + size])
            del buf[: 4 + size]
            try:
                msg = decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._fail(ChannelError(f"undecodable message: {exc}"))
                return
            self.on_message(msg)

    def _fail(self, exc: ChannelError) -> None:
        self._buf.clear()
        if self.transport is not None:
            self.transport.abort()
        if self.on_close is not None:
            self.on_close(exc)
            self.on_close = None

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, msg: Message) -> bool:
        """Queue ``msg``; False if the channel is closed (the message is dropped)."""
        if self.transport is None or self.transport.is_closing():
            return False
        body = encode(msg)
        self.transport.writelines([_HEADER.pack(len(body)), body])
        return True

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests use it to send malformed frames)."""
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_channel(
    sock: socket.socket,
    on_message: Callable[[Message], None],
    on_close: Callable[[Exception | None], None] | None = None,
) -> Channel:
    """Wrap a connected stream socket (one end of a socketpair) in a :class:`Channel`."""
    loop = asyncio.get_running_loop()
    _, channel = await loop.create_unix_connection(lambda: Channel(on_message, on_close), sock=sock)
    return channel
