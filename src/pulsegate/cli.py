"""Command line: argument parsing and process setup only; the work lives in the packages.

pulsegate run -c gw.yaml      # supervisor + workers in the foreground (Ctrl-C / SIGTERM drain;
                              # SIGHUP reloads the file; SIGUSR1 reopens log files)
pulsegate check -c gw.yaml    # validate: exit 0 + summary, or exit 2 + one line per problem
pulsegate demo                # embedded config + two demo services
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvloop

from pulsegate import __version__
from pulsegate.config import ConfigError, GatewayConfig, load_config, summarize
from pulsegate.logs import configure_logging
from pulsegate.proxy.server import bound_urls
from pulsegate.runtime.supervisor import Supervisor

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pulsegate", description="HTTP reverse proxy / API gateway")
    p.add_argument("--version", action="version", version=f"pulsegate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("-c", "--config", required=True, help="YAML config file")
    run.add_argument("--pid-file", help="write the supervisor's pid here (for SIGHUP / SIGUSR1 scripts)")
    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("-c", "--config", required=True, help="YAML config file")
    demo = sub.add_parser("demo", help="run with an embedded config and demo upstreams")
    demo.add_argument("--listen", default="127.0.0.1:8080", help="gateway address [127.0.0.1:8080]")
    demo.add_argument("--admin", default="127.0.0.1:9090", help="admin API address [127.0.0.1:9090]")
    from pulsegate.loadtest.cli import add_parser as add_load

    add_load(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "load":
        from pulsegate.loadtest.cli import main as load_main

        return load_main(args)
    if args.command == "check":
        return _check(args.config)
    if args.command == "run":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        if args.pid_file:
            try:
                with open(args.pid_file, "w", encoding="ascii") as f:
                    f.write(f"{os.getpid()}\n")
            except OSError as exc:
                print(f"pulsegate: cannot write pid file: {exc}", file=sys.stderr)
                return EXIT_USAGE
        try:
            return _run_loop(lambda stop: _serve(config, args.config, stop))
        finally:
            if args.pid_file:
                with contextlib.suppress(OSError):
                    os.unlink(args.pid_file)
    return _run_loop(lambda stop: _demo(args.listen, args.admin, stop))


def _check(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    print(summarize(config, path))
    return EXIT_OK


def _run_loop(body: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await body(stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        return r.run(runner())


async def _serve(config: GatewayConfig, path: str, stop: asyncio.Event) -> int:
    def ready(sup: Supervisor) -> None:
        assert sup.listeners is not None and sup.admin_address is not None
        print(f"pulsegate: listening on {', '.join(bound_urls(sup.listeners.addresses))}", flush=True)
        print(f"pulsegate: admin API on {bound_urls([sup.admin_address])[0]}", flush=True)

    return await _supervise(config, path, stop, ready)


async def _demo(listen: str, admin: str, stop: asyncio.Event) -> int:
    from pulsegate.demo import banner, demo_config, start_services, stop_services

    services, addresses = await start_services()
    try:
        config = demo_config(listen, admin, addresses)

        def ready(sup: Supervisor) -> None:
            assert sup.listeners is not None and sup.admin_address is not None
            urls = bound_urls(sup.listeners.addresses)
            print(banner(urls, bound_urls([sup.admin_address])[0], len(sup.slots)), flush=True)

        code = await _supervise(config, None, stop, ready)
        if code == EXIT_FAIL:
            print(
                "pulsegate demo: could not start (try --listen 127.0.0.1:0 --admin 127.0.0.1:0)",
                file=sys.stderr,
            )
        return code
    finally:
        await stop_services(services)


async def _supervise(
    config: GatewayConfig, path: str | None, stop: asyncio.Event, ready: Callable[[Supervisor], None]
) -> int:
    """Run the supervisor and its workers until ``stop`` is set; ``ready`` runs once serving."""
    configure_logging(
        level=config.logging.level,
        fmt=config.logging.format,
        worker="supervisor",
        path=config.logging.path,
    )
    sup = Supervisor(config, config_path=path, on_ready=ready)
    code = await sup.run(stop)
    if code == EXIT_OK:
        print("pulsegate: stopped", flush=True)
    return code
