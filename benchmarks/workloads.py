"""Request mixes for ``proxy_bench.py --workload``: what wrk sends and what the nginx origin answers.

``hello`` is the historical benchmark (GET / answered with 12 bytes) and stays exactly as it was.
The others each add one thing a real deployment sees: browser-sized request heads, large
responses, request bodies. Every one keeps ``location /`` on the origin answering hello world,
because the readiness check and the cross-check with the origin's counters rely on it; its own
path is then probed once through each proxy before load, so a proxy that mangles the workload is
skipped with the reason instead of being measured on errors.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRK_DIR = Path(__file__).resolve().parent / "wrk"
BROWSER_JSON_BYTES = 2048
LARGE_BYTES = 1 << 20
POST_BYTES = 64 << 10
# Characters that nginx would not pass through a single-quoted ``return`` text unchanged:
# ``$`` starts a variable, ``\\`` and ``'`` are escapes/delimiters of the config syntax.
_NGINX_UNSAFE = ("$", "\\", "'")

# (origin work dir) -> nginx ``location`` blocks to add to the origin's server block.
OriginLocations = Callable[[Path], str]


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    method: str
    path: str  # also the wrk URL's path, so wrk's own banner names it
    script: Path | None  # wrk -s; None: plain wrk GET of the URL
    request_headers: int  # header lines wrk sends, Host (and Content-Length) included
    request_bytes: int  # request body
    response_bytes: int  # response body
    content_type: str  # of the response
    origin_locations: OriginLocations

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}{self.path}"

    def record(self) -> dict[str, Any]:
        """What --json stores about the workload."""
        script = None if self.script is None else str(self.script.relative_to(WRK_DIR.parent.parent))
        return {
            "name": self.name,
            "description": self.description,
            "method": self.method,
            "path": self.path,
            "wrk_script": script,
            "request_headers": self.request_headers,
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
        }


def browser_json(size: int = BROWSER_JSON_BYTES) -> str:
    """A page of an item listing as compact JSON, padded to exactly ``size`` bytes."""

    def doc(count: int, pad: str = "") -> dict[str, Any]:
        items = [
            {
                "id": 1000 + i,
                "sku": f"SKU-{(i * 7919) % 100000:05d}",
                "name": f"Stainless steel item {i}",
                "price_cents": 199 + 37 * i,
                "currency": "EUR",
                "in_stock": i % 3 != 0,
                "tags": ["kitchen", "sale"] if i % 2 else ["garden"],
            }
            for i in range(count)
        ]
        return {
            "page": 2,
            "per_page": count,
            "total": 480,
            "items": items,
            "links": {"prev": "/api/items?page=1", "next": "/api/items?page=3"},
            "pad": pad,
        }

    def dump(d: dict[str, Any]) -> str:
        return json.dumps(d, separators=(",", ":"))

    count = 0
    while len(dump(doc(count + 1))) <= size:
        count += 1
    text = dump(doc(count, " " * (size - len(dump(doc(count))))))
    if len(text.encode()) != size or any(c in text for c in _NGINX_UNSAFE):
        raise ValueError(f"cannot build a {size}-byte JSON body safe for an nginx return")
    return text


def _no_locations(workdir: Path) -> str:
    return ""


def _browser_locations(workdir: Path) -> str:
    # Single quotes so the JSON's double quotes need no escaping; browser_json() guarantees the
    # text has nothing else nginx would interpret.
    return f"""\
        location = /api/items {{
            default_type application/json;
            return 200 '{browser_json()}';
        }}"""


def _large_locations(workdir: Path) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "large.bin"
    path.write_bytes(bytes(range(256)) * (LARGE_BYTES // 256))
    # Readable by nginx's worker user (nobody when started by root) whatever the umask is.
    workdir.chmod(0o711)
    path.chmod(0o644)
    # sendfile keeps the origin's copy in the kernel and the open file cache saves an open() and
    # fstat() per request: both are cost on the load core that would otherwise cap the rate.
    return f"""\
        location = /large {{
            alias {path};
            default_type application/octet-stream;
            sendfile on;
            open_file_cache max=16 inactive=300s;
        }}"""


def _post_locations(workdir: Path) -> str:
    # nginx reads and discards the body before the connection is reused; the buffer size keeps
    # that in memory whatever nginx decides to do with a 64 KiB body.
    return f"""\
        location = /upload {{
            client_max_body_size {4 * POST_BYTES};
            client_body_buffer_size 128k;
            default_type text/plain;
            return 200 "ok\\n";
        }}"""


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="hello",
            description="GET /, 12-byte text answer",
            method="GET",
            path="/",
            script=None,
            request_headers=1,
            request_bytes=0,
            response_bytes=len(b"hello world\n"),
            content_type="text/plain",
            origin_locations=_no_locations,
        ),
        Workload(
            name="browser",
            description=f"GET /api/items?page=2, 12 browser headers, {BROWSER_JSON_BYTES}-byte JSON answer",
            method="GET",
            path="/api/items?page=2",
            script=WRK_DIR / "browser.lua",
            request_headers=12,
            request_bytes=0,
            response_bytes=BROWSER_JSON_BYTES,
            content_type="application/json",
            origin_locations=_browser_locations,
        ),
        Workload(
            name="large",
            description=f"GET /large, {LARGE_BYTES}-byte static file (sendfile on the origin)",
            method="GET",
            path="/large",
            script=WRK_DIR / "large.lua",
            request_headers=1,
            request_bytes=0,
            response_bytes=LARGE_BYTES,
            content_type="application/octet-stream",
            origin_locations=_large_locations,
        ),
        Workload(
            name="post",
            description=f"POST /upload with a {POST_BYTES}-byte body, 3-byte answer",
            method="POST",
            path="/upload",
            script=WRK_DIR / "post.lua",
            request_headers=3,
            request_bytes=POST_BYTES,
            response_bytes=len(b"ok\n"),
            content_type="text/plain",
            origin_locations=_post_locations,
        ),
    )
}
DEFAULT_WORKLOAD = "hello"


def probe(port: int, workload: Workload, timeout_s: float = 10.0) -> str | None:
    """One request of ``workload`` to ``port``; None when the answer is right, else what was wrong."""
    body = b"x" * workload.request_bytes if workload.request_bytes else None
    headers = {"Content-Type": "application/octet-stream"} if body else {}
    what = f"{workload.method} {workload.path}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(workload.method, workload.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"{what}: {type(exc).__name__}: {exc}"
    finally:
        conn.close()
    ctype = resp.getheader("Content-Type", "")
    if (
        resp.status != 200
        or len(data) != workload.response_bytes
        or not ctype.startswith(workload.content_type)
    ):
        return (
            f"{what} answered {resp.status}, {len(data)} bytes of {ctype or 'no type'}; expected 200, "
            f"{workload.response_bytes} bytes of {workload.content_type}"
        )
    return None
