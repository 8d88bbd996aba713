"""A worker process: the data plane of one CPU, driven by the supervisor over its control channel.

Started by the supervisor as ``python -m pulsegate.runtime.worker --id N --control-fd FD
[--listen-fd FD ...] [--bind HOST:PORT ...]``. It waits for its config on the channel (an
:class:`~pulsegate.runtime.messages.Apply`), serves it, pushes a metrics snapshot every
``metrics.interval`` and obeys commands. It exits when told to stop, on SIGTERM (both drain first),
or when the channel closes (the supervisor is gone: nobody would restart or watch it).

SIGINT is ignored: a Ctrl-C in a terminal reaches the whole process group, and the supervisor,
not each worker, decides how shutdown proceeds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

import uvloop

from pulsegate.accesslog import AccessLog
from pulsegate.config import ConfigError, GatewayConfig, load_config_text
from pulsegate.logs import configure_logging, get_logger, reopen
from pulsegate.metrics.process import ProcessProbe
from pulsegate.proxy.server import Server
from pulsegate.runtime.channel import Channel
from pulsegate.runtime.malloc import tune_malloc
from pulsegate.runtime.messages import (
    Applied,
    Apply,
    Message,
    Metrics,
    Ping,
    Pong,
    Ready,
    ReopenLogs,
    Stop,
    TargetHealth,
)

log = get_logger("pulsegate.worker")


def access_log_for(config: GatewayConfig) -> AccessLog | None:
    """The access log ``logging.access_log`` asks for (None when ``off``)."""
    cfg = config.logging.access_log
    if cfg.path == "off":
        return None
    return AccessLog(cfg.path, flush_interval=cfg.flush_interval, max_buffer=cfg.buffer_lines)


class Worker:
    """One worker's lifecycle around a :class:`~pulsegate.proxy.server.Server`."""

    def __init__(
        self,
        worker_id: int,
        sockets: Sequence[socket.socket],
        binds: Sequence[str],
        buckets: int | None = None,
    ) -> None:
        self.id = worker_id
        self.buckets = buckets
        #: Verdicts that arrived before the server existed (applied once it does).
        self._verdicts: list[TargetHealth] = []
        self.sockets = list(sockets)
        self.binds = list(binds)
        self.server: Server | None = None
        self.channel: Channel | None = None
        self.config: GatewayConfig | None = None
        self.probe = ProcessProbe()
        self.stopping: asyncio.Future[float] | None = None
        self._early: Apply | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def run(self, control: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = loop.create_future()
        first: asyncio.Future[Apply] = loop.create_future()

        def on_message(msg: Message) -> None:
            if isinstance(msg, Apply) and not first.done():
                first.set_result(msg)
            elif isinstance(msg, Apply) and self.server is None:
                # A reload raced our start: apply the newest config once serving.
                self._early = msg
            else:
                self._handle(msg)

        def on_close(exc: Exception | None) -> None:
            # The supervisor is gone (or sent garbage): drain briefly and leave.
            if not first.done():
                first.cancel()
            self._stop(min(5.0, self.config.shutdown_timeout) if self.config else 0.0)

        # Messages can arrive before the connection call returns: the handler needs the channel first.
        self.channel = channel = Channel(on_message, on_close)
        await loop.create_unix_connection(lambda: channel, sock=control)
        loop.add_signal_handler(
            signal.SIGTERM, lambda: self._stop(self.config.shutdown_timeout if self.config else 0.0)
        )
        try:
            apply = await first
        except asyncio.CancelledError:
            return 1
        try:
            config = load_config_text(apply.text, apply.source)
        except ConfigError as exc:
            self.channel.send(Applied(seq=apply.seq, ok=False, errors=exc.problems))
            return 1
        self.config = config
        configure_logging(
            level=config.logging.level,
            fmt=config.logging.format,
            worker=str(self.id),
            path=config.logging.path,
        )
        if self.binds:
            config = config.model_copy(update={"listen": self.binds})
        try:
            self.server = Server(
                config,
                reuse_port=bool(self.binds),
                sockets=self.sockets,
                access_log=access_log_for(config),
                workers=config.worker_count(),
                health_checks=False,  # the supervisor checks once for every worker
                buckets=self.buckets,
            )
            bound = await self.server.start()
        except OSError as exc:
            # An unopenable access log or an unbindable address: say why, and let the supervisor's
            # restart policy (with its crash-loop backoff) decide what happens next.
            reason = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            log.error("worker.start_failed", reason=reason)
            self.channel.send(Applied(seq=apply.seq, ok=False, errors=[reason]))
            self.channel.close()
            return 1
        self.probe.start(loop)
        for verdict in self._verdicts:
            self._handle(verdict)
        self._verdicts.clear()
        self.channel.send(Applied(seq=apply.seq, ok=True))
        if self._early is not None:
            early, self._early = self._early, None
            self.channel.send(self._apply(early))
        self.channel.send(Ready(worker=self.id, pid=os.getpid(), listening=bound))
        log.info("worker.ready", pid=os.getpid(), listening=[f"{h}:{p}" for h, p in bound])
        self._ticker = loop.create_task(self._push_metrics(config.metrics.interval))
        timeout = await self.stopping
        self._ticker.cancel()
        log.info("worker.draining", connections=len(self.server.connections), timeout=timeout)
        await self.server.stop(timeout)
        self._push_once(time.time(), config.metrics.interval)  # the drained requests count too
        self.probe.stop()
        self.channel.close()
        await asyncio.wait_for(asyncio.shield(self.channel.closed), 1.0)
        log.info("worker.stopped")
        return 0

    def _handle(self, msg: Message) -> None:
        assert self.channel is not None
        if isinstance(msg, Ping):
            self.channel.send(Pong(seq=msg.seq))
        elif isinstance(msg, TargetHealth):
            if self.server is None:
                self._verdicts.append(msg)
            else:
                self.server.health_verdict(msg.upstream, msg.address, msg.healthy, msg.ok)
        elif isinstance(msg, Apply):
            self.channel.send(self._apply(msg))
        elif isinstance(msg, Stop):
            self._stop(msg.timeout)
        elif isinstance(msg, ReopenLogs):
            try:
                reopen()
            except OSError as exc:
                log.error("logs.reopen_failed", reason=str(exc))  # keeps writing to the old file
            try:
                if self.server is not None and self.server.access_log is not None:
                    self.server.access_log.reopen()
            except OSError as exc:
                log.error("access_log.reopen_failed", reason=str(exc))

    def _apply(self, msg: Apply) -> Applied:
        try:
            config = load_config_text(msg.text, msg.source)
        except ConfigError as exc:
            return Applied(seq=msg.seq, ok=False, errors=exc.problems)
        if self.server is None:
            return Applied(seq=msg.seq, ok=False, errors=["worker not started"])
        if self.binds:
            config = config.model_copy(update={"listen": self.binds})
        self.config = config
        self.server.apply(config)
        log.info("worker.config_applied", seq=msg.seq, routes=len(config.routes))
        return Applied(seq=msg.seq, ok=True)

    def _stop(self, timeout: float) -> None:
        if self.stopping is not None and not self.stopping.done():
            self.stopping.set_result(timeout)

    async def _push_metrics(self, interval: float) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval - (time.monotonic() - last) % interval)
            now = time.monotonic()
            self._push_once(time.time(), now - last)
            last = now

    def _push_once(self, wall: float, interval: float) -> None:
        server, channel = self.server, self.channel
        if server is None or channel is None:
            return
        process = self.probe.sample(connections=len(server.connections))
        process.tunnels = server.tunnels
        snap = server.registry.take(
            worker=self.id,
            pid=os.getpid(),
            time=wall,
            interval=interval,
            process=process,
            pools=server.pool_gauges(),
        )
        channel.send(Metrics(snapshot=snap, targets=server.target_states()))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pulsegate-worker")
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--control-fd", type=int, required=True)
    p.add_argument("--listen-fd", type=int, action="append", default=[])
    p.add_argument("--bind", action="append", default=[], help="bind host:port with SO_REUSEPORT")
    p.add_argument("--buckets-fd", type=int, help="descriptor of the supervisor's rate-limit table")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_malloc()
    configure_logging(worker=str(args.id))
    control = socket.socket(fileno=args.control_fd)
    sockets = [socket.socket(fileno=fd) for fd in args.listen_fd]
    for sock in sockets:
        sock.setblocking(False)
    worker = Worker(args.id, sockets, args.bind, args.buckets_fd)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(worker.run(control))


if __name__ == "__main__":
    sys.exit(main())
