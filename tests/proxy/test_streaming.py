"""1 GiB each way through a real gateway process: bodies stream with back-pressure, so the
gateway's peak RSS barely moves. The growth is printed (and recorded in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import arun

GIB = 1 << 30
BLOCK = b"\xa5" * (1 << 20)


def worker_pid(supervisor: int) -> int:
    """The one worker of a ``workers: 1`` gateway: the bytes flow through it, not the supervisor."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Upload: count and drop the body. Download: send 1 GiB chunked, as fast as the peer reads."""
    head = await reader.readuntil(b"\r\n\r\n")
    if head.startswith(b"POST"):
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        got = 0
        while got < length:
            got += len(await reader.read(1 << 20))
        body = str(got).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    else:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(GIB // len(BLOCK)):
            writer.write(b"%x\r\n%s\r\n" % (len(BLOCK), BLOCK))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_gib_up_and_down_with_bounded_memory(tmp_path: Path) -> None:
    async def main() -> None:
        srv = await asyncio.start_server(origin, "127.0.0.1", 0)
        uport = srv.sockets[0].getsockname()[1]
        cfg = tmp_path / "gw.yaml"
        cfg.write_text(
            f"listen: '127.0.0.1:0'\nupstreams: {{u: {{targets: ['127.0.0.1:{uport}']}}}}\n"
            "routes: [{upstream: u}]\nlimits: {max_body_bytes: 2GiB}\nworkers: 1\n"
            "admin: {listen: '127.0.0.1:0'}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pulsegate", "run", "-c", str(cfg), stdout=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            line = (await proc.stdout.readline()).decode()
            port = int(line.rsplit(":", 1)[1])
            worker = worker_pid(proc.pid)
            base = peak_rss_kib(worker)

            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % GIB)
            for _ in range(GIB // len(BLOCK)):
                w.write(BLOCK)
                await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert await r.readexactly(len(str(GIB))) == str(GIB).encode()

            w.write(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            assert b"Transfer-Encoding: chunked" in head
            received = 0
            while True:
                size = int((await r.readuntil(b"\r\n"))[:-2], 16)
                if size == 0:
                    await r.readexactly(2)
                    break
                received += len(await r.readexactly(size))
                await r.readexactly(2)
            assert received == GIB
            w.close()
            growth_mib = (peak_rss_kib(worker) - base) / 1024
            print(f"\n1 GiB up + 1 GiB down: worker peak RSS growth {growth_mib:.1f} MiB")
            assert growth_mib < 32
        finally:
            proc.terminate()
            await proc.wait()
            srv.close()

    arun(main(), timeout=170)
