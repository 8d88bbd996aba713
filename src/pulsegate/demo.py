"""``pulsegate demo``: the gateway with an embedded config and two in-process demo services.

The services are real HTTP servers on loopback ephemeral ports:
- ``catalog`` (two instances, balanced round robin): ``GET /items``, ``GET /items/<n>`` as JSON,
  and which instance answered;
- ``echo``: returns the request it received (method, path, headers, body) as JSON, which shows
  what the gateway forwards (X-Forwarded-*, Via, X-Request-Id).

The catalog is health-checked (``/healthz``) and ``/limited`` is rate limited (5/s per client), so
``/api/upstreams`` and a 429 can be seen too.
"""

from __future__ import annotations

import asyncio
import json

from pulsegate.config import GatewayConfig, load_config_text
from pulsegate.origin import Origin, Reply, Request

DEMO_CONFIG = """\
listen: "{listen}"
admin: {{listen: "{admin}"}}
metrics: {{history: {{path: "off"}}}}
upstreams:
  catalog:
    targets: ["{catalog_a}", "{catalog_b}"]
    balance: round_robin
    health: {{path: /healthz, interval: 2s}}
  echo:
    targets: ["{echo}"]
routes:
  - name: catalog
    match: {{path_prefix: "/api/"}}
    upstream: catalog
    strip_prefix: true
  - name: echo
    match: {{path_prefix: "/echo"}}
    upstream: echo
  - name: limited
    match: {{path_prefix: "/limited"}}
    upstream: echo
    rate_limit: {{rate: 5/s, burst: 5, key: client_ip}}
  - name: home
    match: {{path: "/"}}
    upstream: echo
"""

_JSON = ((b"Content-Type", b"application/json"),)
_ITEMS = [{"id": i, "name": f"item-{i}", "price": round(1.5 * i, 2)} for i in range(1, 6)]


def catalog_handler(instance: str) -> Origin:
    def handle(req: Request) -> Reply:
        path = req.path.decode("latin-1")
        if path == "/healthz":
            return Reply(200, _JSON, b'{"status": "ok"}')
        if path in ("/items", "/items/"):
            body: object = {"served_by": instance, "items": _ITEMS}
        elif path.startswith("/items/") and path[7:].isdigit() and 1 <= int(path[7:]) <= len(_ITEMS):
            body = {"served_by": instance, "item": _ITEMS[int(path[7:]) - 1]}
        else:
            return Reply(404, _JSON, json.dumps({"served_by": instance, "error": "not found"}).encode())
        return Reply(200, _JSON, json.dumps(body).encode())

    return Origin(handle)


def echo_handler() -> Origin:
    def handle(req: Request) -> Reply:
        body = {
            "method": req.method.decode(),
            "target": req.target.decode("latin-1"),
            "headers": [f"{n.decode('latin-1')}: {v.decode('latin-1')}" for n, v in req.headers],
            "body": req.body.decode("utf-8", "replace"),
        }
        return Reply(200, _JSON, json.dumps(body, indent=2).encode() + b"\n")

    return Origin(handle)


async def start_services() -> tuple[list[Origin], dict[str, str]]:
    """Start the demo services; returns them and the addresses to put in the config."""
    a, b, echo = catalog_handler("catalog-a"), catalog_handler("catalog-b"), echo_handler()
    for origin in (a, b, echo):
        await origin.start()
    return [a, b, echo], {"catalog_a": a.target, "catalog_b": b.target, "echo": echo.target}


def demo_config(listen: str, admin: str, addresses: dict[str, str]) -> GatewayConfig:
    return load_config_text(DEMO_CONFIG.format(listen=listen, admin=admin, **addresses), source="<demo>")


def banner(urls: list[str], admin: str, workers: int) -> str:
    base = urls[0]
    return "\n".join(
        [
            f"pulsegate demo: gateway listening on {', '.join(urls)}",
            f"{workers} worker processes; admin API: {admin}/api/workers  {admin}/metrics",
            "try:",
            f"  curl -s {base}/api/items          # catalog service, balanced over two instances",
            f"  curl -s {base}/api/items/3",
            f"  curl -s {base}/echo/hello -d hi   # echo service: shows the forwarded request",
            f"  curl -si {base}/nowhere           # no route: 404 with a request id",
            f"  for i in $(seq 8); do curl -so /dev/null -w '%{{http_code}} ' {base}/limited; done"
            "   # 5/s: then 429",
            f"  curl -s {admin}/api/upstreams     # health checks, ejections, latency per target",
            "Ctrl-C stops.",
        ]
    )


async def stop_services(services: list[Origin]) -> None:
    await asyncio.gather(*(s.stop() for s in services))
