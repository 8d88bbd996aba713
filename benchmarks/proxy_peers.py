"""The programs ``proxy_bench.py`` measures: how each is configured and started.

Every proxy gets the same job: listen on 127.0.0.1:PORT, forward everything to one upstream over
HTTP/1.1 keep-alive connections, one process (or one worker) on one core.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

UPSTREAM_BODY = b"hello world\n"
STATUS_PATH = "/__rig_status"
BENCH_DIR = Path(__file__).resolve().parent
NODE_DIR = BENCH_DIR / "node"

# argv builder: (scratch dir for this start, listen port, upstream port) -> command line.
CommandBuilder = Callable[[Path, int, int], list[str]]


@dataclass(frozen=True)
class Peer:
    name: str
    build: CommandBuilder | None  # None when the peer cannot run here
    unavailable: str | None = None  # why it cannot run
    env: dict[str, str] | None = None  # None: inherit this script's environment


def _nginx_conf(workdir: Path, http_block: str) -> str:
    """A self-contained nginx.conf: every path under ``workdir``, never the system config."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {workdir / (kind + '_temp')};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # One worker, like every other peer; daemon off so the process we start is the master and
    # killpg on its group reaches the worker.
    return f"""\
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
{temp_paths}
{http_block}
}}
"""


def nginx_argv(nginx: str, workdir: Path, conf: str) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    conf_path = workdir / "nginx.conf"
    conf_path.write_text(conf)
    # -p/-e keep nginx away from /etc/nginx and /var/log/nginx before it has read our config.
    return [nginx, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf_path)]


def nginx_upstream_argv(nginx: str, workdir: Path, port: int, locations: str = "") -> list[str]:
    """The origin every proxy forwards to: a fixed 12-byte 200 answer on ``/``, no logging.

    ``locations``: extra ``location`` blocks a workload serves (see workloads.py).
    """
    body = UPSTREAM_BODY.decode().replace("\n", "\\n")
    extra = f"\n{locations}" if locations else ""
    server = f"""\
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{body}";
        }}{extra}
        # Read directly by the rig (never through a proxy): accepted connections and requests
        # show whether a proxy reuses its upstream connections and forwards every request.
        location = {STATUS_PATH} {{
            stub_status;
        }}
    }}"""
    return nginx_argv(nginx, workdir, _nginx_conf(workdir, server))


def nginx_proxy_builder(nginx: str, keepalive: int) -> CommandBuilder:
    def build(workdir: Path, port: int, upstream_port: int) -> list[str]:
        # proxy_http_version 1.1 + an empty Connection header is what lets nginx reuse the
        # upstream connections held by `keepalive`; without them it opens one per request.
        proxy = f"""\
    upstream bench {{
        server 127.0.0.1:{upstream_port};
        keepalive {keepalive};
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        # Request bodies (--workload post: 64 KiB) stay in memory instead of going through a
        # temp file, as pulsegate holds them; no effect on requests without a body.
        client_body_buffer_size 128k;
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""
        return nginx_argv(nginx, workdir, _nginx_conf(workdir, proxy))

    return build


def haproxy_cfg(port: int, upstream_port: int, maxconn: int = 4096) -> str:
    """HAProxy as a plain HTTP/1.1 reverse proxy, one thread, nothing logged."""
    # maxconn is per process in `global` and per frontend in `defaults`; both must exceed the
    # client connections (256+ with --connections) or haproxy queues them. Not more than that:
    # haproxy refuses to start when the open-file hard limit is below about 2 x maxconn (the
    # limit is 20000 on these machines, so 10000 failed). http-reuse always shares idle server
    # connections between client connections, as the other peers' pools do. No `log` line at
    # all: the other peers write no access log either.
    return f"""\
global
    nbthread 1
    maxconn {maxconn}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    maxconn {maxconn}
    timeout connect 30s
    timeout client 30s
    timeout server 30s

frontend bench
    bind 127.0.0.1:{port}
    default_backend bench

backend bench
    server origin 127.0.0.1:{upstream_port}
"""


def haproxy_peer(haproxy: str | None, missing_why: str = "haproxy is not installed") -> Peer:
    if haproxy is None:
        return Peer("haproxy", None, missing_why)

    def build(workdir: Path, port: int, upstream_port: int) -> list[str]:
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "haproxy.cfg"
        conf.write_text(haproxy_cfg(port, upstream_port))
        # -db: stay in the foreground as one process (no master/worker fork), so the pid we
        # start is the whole proxy and its process group holds nothing else.
        return [haproxy, "-f", str(conf), "-db"]

    return Peer("haproxy", build)


def pulsegate_yaml(
    port: int,
    upstream_port: int,
    workers: int | None,
    *,
    variant: str = "default",
    workdir: Path | None = None,
) -> str:
    """``variant``: ``default`` (metrics on, no access log), ``bare`` (metrics off) or ``full``
    (metrics on and an access log file)."""
    # Pool sizes match the node peers' agent limits (1024 connections, 256 idle).
    lines = [
        f'listen: "127.0.0.1:{port}"',
        f'upstreams: {{bench: {{targets: ["127.0.0.1:{upstream_port}"], '
        "pool: {max_idle: 256, max_connections: 1024}}}",
        'routes: [{name: bench, match: {path_prefix: "/"}, upstream: bench}]',
        'admin: {listen: "127.0.0.1:0"}',
        f'metrics: {{enabled: {"false" if variant == "bare" else "true"}, history: {{path: "off"}}}}',
    ]
    if variant == "full":
        log_path = (workdir or Path(".")) / "access.log"
        lines.append(f'logging: {{access_log: {{path: "{log_path}"}}}}')
    if workers is not None:
        lines.append(f"workers: {workers}")
    return "\n".join(lines) + "\n"


def pulsegate_peer(
    executable: Path, workers: int | None, *, variant: str = "default", name: str = "pulsegate"
) -> Peer:
    if not executable.exists():
        return Peer(name, None, f"{executable} does not exist (is the package installed?)")

    def build(workdir: Path, port: int, upstream_port: int) -> list[str]:
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "pulsegate.yaml"
        conf.write_text(pulsegate_yaml(port, upstream_port, workers, variant=variant, workdir=workdir))
        return [str(executable), "run", "-c", str(conf)]

    return Peer(name, build)


def node_peer(name: str, script: str, node: str | None, required_module: str) -> Peer:
    if node is None:
        return Peer(name, None, "node is not installed")
    if not (NODE_DIR / "node_modules" / required_module / "package.json").exists():
        return Peer(name, None, f"npm package {required_module!r} missing in {NODE_DIR}/node_modules")
    script_path = NODE_DIR / script

    def build(workdir: Path, port: int, upstream_port: int) -> list[str]:
        return [node, str(script_path), str(port), f"127.0.0.1:{upstream_port}"]

    return Peer(name, build, env=node_env())


def node_env() -> dict[str, str]:
    # NODE_ENV=production is what a deployment would set; NODE_OPTIONS from the caller's shell
    # (e.g. an inspector flag) would distort the measurement, so it is dropped.
    env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}
    env["NODE_ENV"] = "production"
    return env
