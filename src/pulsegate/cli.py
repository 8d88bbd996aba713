"""Command line: argument parsing and process setup only; the work lives in the packages.

pulsegate run -c gw.yaml      # serve in the foreground (Ctrl-C / SIGTERM stop cleanly)
pulsegate check -c gw.yaml    # validate: exit 0 + summary, or exit 2 + one line per problem
pulsegate demo                # embedded config + two demo services
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvloop

from pulsegate import __version__
from pulsegate.config import ConfigError, GatewayConfig, load_config, summarize

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pulsegate", description="HTTP reverse proxy / API gateway")
    p.add_argument("--version", action="version", version=f"pulsegate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("-c", "--config", required=True, help="YAML config file")
    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("-c", "--config", required=True, help="YAML config file")
    demo = sub.add_parser("demo", help="run with an embedded config and demo upstreams")
    demo.add_argument("--listen", default="127.0.0.1:8080", help="gateway address [127.0.0.1:8080]")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args.config)
    if args.command == "run":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        return _run_loop(lambda stop: _serve(config, stop))
    return _run_loop(lambda stop: _demo(args.listen, stop))


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


async def _serve(config: GatewayConfig, stop: asyncio.Event) -> int:
    from pulsegate.proxy.server import bound_urls

    return await _serve_until(
        config, stop, lambda bound: f"pulsegate: listening on {', '.join(bound_urls(bound))}", hint=""
    )


async def _demo(listen: str, stop: asyncio.Event) -> int:
    from pulsegate.demo import banner, demo_config, start_services, stop_services
    from pulsegate.proxy.server import bound_urls

    services, addresses = await start_services()
    try:
        config = demo_config(listen, addresses)
        return await _serve_until(
            config, stop, lambda bound: banner(bound_urls(bound)), hint=" (try --listen 127.0.0.1:0)"
        )
    finally:
        await stop_services(services)


async def _serve_until(
    config: GatewayConfig, stop: asyncio.Event, ready: Callable[[list[tuple[str, int]]], str], hint: str
) -> int:
    """Serve ``config`` until ``stop`` is set, then drain; prints ``ready(bound)`` once listening."""
    from pulsegate.proxy.server import Server

    server = Server(config)
    try:
        bound = await server.start()
    except OSError as exc:
        print(f"pulsegate: cannot listen: {exc}{hint}", file=sys.stderr)
        return EXIT_FAIL
    print(ready(bound), flush=True)
    await stop.wait()
    print("pulsegate: stopping (draining in-flight requests)", flush=True)
    await server.stop(config.shutdown_timeout)
    return EXIT_OK
