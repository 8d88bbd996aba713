"""The supervisor: the control plane. It binds the listeners, starts and watches the worker
processes, reloads config, aggregates metrics and serves the admin API. It carries no client
traffic.

Example (see tests/runtime for the real thing)::

    sup = Supervisor(load_config("gw.yaml"), config_path="gw.yaml")
    exit_code = await sup.run(stop_event)
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import orjson

from pulsegate.config import ConfigError, GatewayConfig, load_config
from pulsegate.logs import get_logger, reopen
from pulsegate.metrics.aggregator import Aggregator
from pulsegate.metrics.history import History, HistoryError
from pulsegate.runtime.backoff import RestartBackoff
from pulsegate.runtime.channel import Channel, open_channel
from pulsegate.runtime.listeners import Listeners, bind_listeners
from pulsegate.runtime.messages import Applied, Apply, Message, Metrics, Ping, Pong, Ready, ReopenLogs, Stop
from pulsegate.runtime.upstreams import UpstreamHub

log = get_logger("pulsegate.supervisor")

#: How long a reload waits for every worker to confirm.
APPLY_TIMEOUT = 10.0


@dataclasses.dataclass
class WorkerSlot:
    """One worker position; its process is replaced when it dies, the slot stays."""

    id: int
    backoff: RestartBackoff
    process: subprocess.Popen[bytes] | None = None
    channel: Channel | None = None
    started_at: float = 0.0
    ready: bool = False
    last_pong: float = 0.0
    ping_seq: int = 0
    restarts: int = 0
    pending: dict[int, asyncio.Future[Applied]] = dataclasses.field(default_factory=dict)
    pidfd: int = -1
    restart_timer: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0


@dataclasses.dataclass
class ReloadOutcome:
    ok: bool
    errors: list[str]
    #: Settings that changed but only apply after a restart (listen addresses, admin, workers).
    restart_required: list[str] = dataclasses.field(default_factory=list)
    workers: int = 0


class Supervisor:
    """Runs the gateway as one supervisor process and ``config.worker_count()`` workers."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        config_path: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_ready: Callable[[Supervisor], None] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.on_ready = on_ready
        self.aggregator = Aggregator()
        self.history: History | None = None
        self.listeners: Listeners | None = None
        self.slots: list[WorkerSlot] = []
        self.started_at = 0.0
        self.stopping = False
        self.admin_address: tuple[str, int] | None = None
        self.reloads = 0
        self.history_errors = 0
        self.reload_failures = 0
        self._apply_seq = 0
        self._reload_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[ReloadOutcome]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exited = asyncio.Event()
        self._all_ready = asyncio.Event()
        self._applying: GatewayConfig | None = None
        self.upstreams = UpstreamHub(self._broadcast, self.aggregator)

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set, then drain the workers; returns the exit status."""
        from pulsegate.admin.server import AdminServer

        self._loop = loop = asyncio.get_running_loop()
        self.started_at = self.clock()
        cfg = self.config
        try:
            self.listeners = bind_listeners(cfg.listen, mode=cfg.supervisor.listen_mode)
        except OSError as exc:
            log.error("gateway.listen_failed", reason=str(exc.strerror or exc))
            return 1
        hc = cfg.metrics.history
        try:
            self.history = History(
                hc.path, retention=hc.retention, resolution=hc.resolution, memory_window=hc.memory_window
            )
        except Exception as exc:
            log.error("history.open_failed", path=hc.path, reason=str(exc))
            self.listeners.close()
            return 1
        admin = AdminServer(self)
        try:
            self.admin_address = await admin.start(cfg.admin.listen)
        except OSError as exc:
            log.error("admin.listen_failed", address=cfg.admin.listen, reason=exc.strerror or str(exc))
            self.listeners.close()
            self.history.close()
            return 1
        self.upstreams.start(cfg)
        for sig, handler in (
            (signal.SIGHUP, self._reload_on_signal),
            (signal.SIGUSR1, self.reopen_logs),
        ):
            loop.add_signal_handler(sig, handler)
        self.slots = [
            WorkerSlot(id=i + 1, backoff=RestartBackoff(maximum=cfg.supervisor.restart_backoff_max))
            for i in range(cfg.worker_count())
        ]
        for slot in self.slots:
            self._spawn(slot)
        self._tasks = [
            loop.create_task(self._ping_forever()),
            loop.create_task(self._points_forever()),
        ]
        ready = await self._wait_ready(cfg.supervisor.start_timeout)
        if not ready:
            log.error(
                "gateway.start_failed",
                reason="workers did not become ready",
                timeout=cfg.supervisor.start_timeout,
            )
            await self._shutdown(0.0, admin)
            return 1
        log.info(
            "gateway.ready",
            listening=[_url(h, p) for h, p in self.listeners.addresses],
            admin=_url(*self.admin_address),
            workers=len(self.slots),
            pid=os.getpid(),
        )
        if self.on_ready is not None:
            self.on_ready(self)
        await stop.wait()
        await self._shutdown(cfg.shutdown_timeout, admin)
        return 0

    async def _wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._all_ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _shutdown(self, timeout: float, admin: object) -> None:
        from pulsegate.admin.server import AdminServer

        self.stopping = True
        log.info("gateway.stopping", timeout=timeout)
        for task in self._tasks:
            task.cancel()
        if self.listeners is not None:
            self.listeners.close()  # the workers hold their own copies; we stop binding the port
        for slot in self.slots:
            if slot.restart_timer is not None:
                slot.restart_timer.cancel()
            if slot.channel is not None and slot.channel.is_open:
                slot.channel.send(Stop(timeout=timeout))
            elif slot.process is not None:
                slot.process.send_signal(signal.SIGTERM)
        deadline = self.clock() + timeout + 5.0
        while any(s.process is not None for s in self.slots):
            remaining = deadline - self.clock()
            if remaining <= 0:
                for slot in self.slots:
                    if slot.process is not None:
                        log.warning("worker.killed", worker_id=slot.id, pid=slot.pid, reason="drain timeout")
                        slot.process.kill()
                deadline = self.clock() + 5.0
            self._exited.clear()
            try:
                await asyncio.wait_for(self._exited.wait(), max(0.05, min(remaining, 1.0)))
            except TimeoutError:
                pass
        self._close_point()
        await self.upstreams.stop()
        if isinstance(admin, AdminServer):
            await admin.stop()
        if self.history is not None:
            try:
                self.history.flush()
            except HistoryError as exc:
                log.error("history.write_failed", reason=str(exc))
            self.history.close()
        log.info("gateway.stopped")

    # -- workers --------------------------------------------------------------------------------

    def _spawn(self, slot: WorkerSlot) -> None:
        assert self._loop is not None and self.listeners is not None
        slot.restart_timer = None
        if self.stopping:
            return
        try:
            parent, child = socket.socketpair()
        except OSError as exc:
            log.error("worker.spawn_failed", worker_id=slot.id, reason=str(exc))
            self._schedule_restart(slot, uptime=0.0)
            return
        args, fds = self.listeners.worker_args()
        cmd = [
            sys.executable,
            "-m",
            "pulsegate.runtime.worker",
            "--id",
            str(slot.id),
            "--control-fd",
            str(child.fileno()),
            *args,
        ]
        if self.upstreams.buckets is not None:
            fds = [*fds, self.upstreams.buckets.fileno()]
            cmd += ["--buckets-fd", str(self.upstreams.buckets.fileno())]
        try:
            proc = subprocess.Popen(cmd, pass_fds=(child.fileno(), *fds), stdin=subprocess.DEVNULL)
        except OSError as exc:
            parent.close()
            child.close()
            log.error("worker.spawn_failed", worker_id=slot.id, reason=str(exc))
            self._schedule_restart(slot, uptime=0.0)
            return
        child.close()
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError as exc:
            # Unwatchable: do not leave it running unsupervised.
            log.error("worker.spawn_failed", worker_id=slot.id, reason=f"pidfd_open: {exc}")
            proc.kill()
            proc.wait()
            parent.close()
            self._schedule_restart(slot, uptime=0.0)
            return
        slot.process = proc
        slot.started_at = slot.last_pong = self.clock()
        slot.ready = False
        slot.pidfd = pidfd
        self._loop.add_reader(slot.pidfd, self._on_exit, slot)
        self._loop.create_task(self._attach(slot, parent, proc))
        log.info("worker.started", worker_id=slot.id, pid=proc.pid)

    async def _attach(self, slot: WorkerSlot, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        channel = await open_channel(sock, lambda m: self._on_message(slot, m))
        if slot.process is not proc:  # died before the channel opened
            channel.close()
            return
        slot.channel = channel
        self._apply_seq += 1
        channel.send(Apply(seq=self._apply_seq, text=self._config_text(), source="supervisor"))
        for verdict in self.upstreams.verdicts():
            channel.send(verdict)

    def _broadcast(self, msg: Message) -> None:
        for slot in self.slots:
            if slot.channel is not None and slot.channel.is_open:
                slot.channel.send(msg)

    def _config_text(self) -> str:
        # During a reload, a worker (re)started meanwhile gets the config being applied.
        return _config_json(self._applying or self.config)

    def _on_message(self, slot: WorkerSlot, msg: Message) -> None:
        if isinstance(msg, Metrics):
            self.aggregator.add(msg.snapshot)
            self.upstreams.report(slot.id, msg.targets)
        elif isinstance(msg, Pong):
            slot.last_pong = self.clock()
        elif isinstance(msg, Ready):
            slot.ready = True
            slot.last_pong = self.clock()
            log.info("worker.ready", worker_id=slot.id, pid=msg.pid)
            if all(s.ready for s in self.slots):
                self._all_ready.set()
        elif isinstance(msg, Applied):
            fut = slot.pending.pop(msg.seq, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif not msg.ok:
                log.error("worker.config_rejected", worker_id=slot.id, errors=msg.errors)

    def _on_exit(self, slot: WorkerSlot) -> None:
        assert self._loop is not None
        proc = slot.process
        self._loop.remove_reader(slot.pidfd)
        os.close(slot.pidfd)
        slot.pidfd = -1
        if proc is None:
            return
        code = proc.wait()
        uptime = self.clock() - slot.started_at
        slot.process = None
        slot.ready = False
        if slot.channel is not None:
            slot.channel.close()
            slot.channel = None
        for fut in slot.pending.values():
            if not fut.done():
                fut.set_result(Applied(seq=0, ok=False, errors=[f"worker {slot.id} exited"]))
        slot.pending.clear()
        self.aggregator.forget_worker(slot.id)
        self.upstreams.forget(slot.id)
        self._exited.set()
        if self.stopping:
            log.info("worker.exited", worker_id=slot.id, pid=proc.pid, code=code)
            return
        slot.restarts += 1
        reason = f"signal {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        log.warning("worker.died", worker_id=slot.id, pid=proc.pid, reason=reason, uptime=round(uptime, 3))
        self._schedule_restart(slot, uptime)

    def _schedule_restart(self, slot: WorkerSlot, uptime: float) -> None:
        assert self._loop is not None
        delay = slot.backoff.delay(uptime)
        if delay > 0:
            log.warning(
                "worker.restart_delayed",
                worker_id=slot.id,
                delay=delay,
                quick_failures=slot.backoff.quick_failures,
            )
        slot.restart_timer = self._loop.call_later(delay, self._spawn, slot)

    async def _ping_forever(self) -> None:
        sc = self.config.supervisor
        while True:
            await asyncio.sleep(sc.ping_interval)
            now = self.clock()
            for slot in self.slots:
                if slot.process is None:
                    continue
                if now - slot.last_pong > sc.ping_timeout:
                    log.error(
                        "worker.unresponsive",
                        worker_id=slot.id,
                        pid=slot.pid,
                        silent_for=round(now - slot.last_pong, 3),
                    )
                    slot.process.kill()  # its exit is handled (and the slot restarted) by _on_exit
                    slot.last_pong = now  # one kill per timeout
                elif slot.channel is not None:
                    slot.ping_seq += 1
                    slot.channel.send(Ping(seq=slot.ping_seq))

    async def _points_forever(self) -> None:
        boundary = math.floor(time.time()) + 1
        while True:
            # Timers may fire a little early: wait until the second has really ended.
            while (now := time.time()) < boundary:
                await asyncio.sleep(boundary - now)
            self._close_point(boundary - 1)
            boundary = max(boundary + 1, math.floor(now) + 1)

    def _close_point(self, second: float | None = None) -> None:
        """Close the current point, labelled with the wall-clock second it covers."""
        label = float(math.floor(time.time()) if second is None else second)
        point = self.aggregator.close_point(label)
        if self.history is not None:
            try:
                self.history.append(point)
            except HistoryError as exc:
                # A full disk must not take the gateway down; memory history keeps working.
                self.history_errors += 1
                if self.history_errors == 1 or self.history_errors % 60 == 0:
                    log.error("history.write_failed", reason=str(exc), failures=self.history_errors)

    # -- commands -------------------------------------------------------------------------------

    async def reload(self, source: str = "api") -> ReloadOutcome:
        """Re-read the config file, validate it, and apply it to every worker between requests.

        An invalid file changes nothing: the outcome (and the log) carries the same problems
        ``pulsegate check`` prints.
        """
        async with self._reload_lock:
            outcome = await self._reload()
        self.reloads += 1
        if outcome.ok:
            log.info(
                "config.reloaded",
                source=source,
                workers=outcome.workers,
                restart_required=outcome.restart_required,
            )
        else:
            self.reload_failures += 1
            log.error("config.reload_failed", source=source, errors=outcome.errors)
        return outcome

    async def _reload(self) -> ReloadOutcome:
        if self.config_path is None:
            return ReloadOutcome(False, ["no config file to reload (the gateway runs an embedded config)"])
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            return ReloadOutcome(False, list(exc.problems))
        old = self.config
        # Settings bound at start keep their running values; the effective config says so.
        needs_restart = [
            key
            for key in ("listen", "workers", "supervisor", "logging")
            if getattr(new, key) != getattr(old, key)
        ]
        keep: dict[str, object] = {key: getattr(old, key) for key in needs_restart}
        if new.admin.listen != old.admin.listen:
            needs_restart.append("admin.listen")
            keep["admin"] = new.admin.model_copy(update={"listen": old.admin.listen})
        kept_metrics = {
            k: getattr(old.metrics, k)
            for k in ("history", "interval")
            if getattr(new.metrics, k) != getattr(old.metrics, k)
        }
        if kept_metrics:
            needs_restart += [f"metrics.{k}" for k in kept_metrics]
            keep["metrics"] = new.metrics.model_copy(update=kept_metrics)
        effective = new.model_copy(update=keep) if keep else new
        self._apply_seq += 1
        self._applying = effective
        try:
            return await self._apply_all(self._apply_seq, effective, old, needs_restart)
        finally:
            self._applying = None

    async def _apply_all(
        self, seq: int, effective: GatewayConfig, old: GatewayConfig, needs_restart: list[str]
    ) -> ReloadOutcome:
        assert self._loop is not None and self.config_path is not None
        waits: list[asyncio.Future[Applied]] = []
        text_json = _config_json(effective)
        for slot in self.slots:
            if slot.channel is not None and slot.channel.is_open:
                fut: asyncio.Future[Applied] = self._loop.create_future()
                slot.pending[seq] = fut
                slot.channel.send(Apply(seq=seq, text=text_json, source=self.config_path))
                waits.append(fut)
        try:
            results = await asyncio.wait_for(asyncio.gather(*waits), APPLY_TIMEOUT)
        except TimeoutError:
            self._roll_back(old)
            errors = ["workers did not confirm the new config in time"]
            return ReloadOutcome(False, errors, needs_restart, workers=len(waits))
        errors = [e for r in results if not r.ok for e in r.errors]
        if errors:
            self._roll_back(old)
        else:
            self.config = effective
            self.upstreams.configure(effective)
        return ReloadOutcome(not errors, errors, needs_restart, workers=len(results))

    def _roll_back(self, old: GatewayConfig) -> None:
        """Some worker could not apply a reload: put every worker back on the running config."""
        self._apply_seq += 1
        text = _config_json(old)
        for slot in self.slots:
            if slot.channel is not None and slot.channel.is_open:
                slot.channel.send(Apply(seq=self._apply_seq, text=text, source="rollback"))
        log.warning("config.rolled_back", seq=self._apply_seq)

    def _reload_on_signal(self) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self.reload(source="SIGHUP"))
        self._background.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._background.discard)

    def reopen_logs(self) -> None:
        """SIGUSR1: reopen our log file and tell every worker to reopen theirs (logrotate)."""
        try:
            reopen()
        except OSError as exc:
            log.error("logs.reopen_failed", reason=str(exc))  # keeps writing to the old file
        else:
            log.info("logs.reopened")
        for slot in self.slots:
            if slot.channel is not None:
                slot.channel.send(ReopenLogs())

    # -- views for the admin API ---------------------------------------------------------------

    def workers_info(self) -> list[dict[str, object]]:
        now = self.clock()
        out: list[dict[str, object]] = []
        for slot in self.slots:
            totals = self.aggregator.workers.get(slot.id)
            last = totals.last if totals is not None else None
            out.append(
                {
                    "id": slot.id,
                    "pid": slot.pid or None,
                    "alive": slot.process is not None,
                    "ready": slot.ready,
                    "uptime_s": round(now - slot.started_at, 3) if slot.process is not None else 0.0,
                    "restarts": slot.restarts,
                    "rss_bytes": last.rss_bytes if last else 0,
                    "cpu_percent": round(totals.cpu_percent, 1) if totals else 0.0,
                    "loop_lag_ms": round(last.loop_lag_max * 1000, 3) if last else 0.0,
                    "requests_per_s": round(totals.requests_per_s, 1) if totals else 0.0,
                    "requests_total": totals.requests if totals else 0,
                    "connections": last.connections if last else 0,
                }
            )
        return out

    def health(self) -> dict[str, object]:
        ready = sum(1 for s in self.slots if s.ready)
        return {
            "status": "ok" if ready == len(self.slots) and not self.stopping else "degraded",
            "workers": len(self.slots),
            "workers_ready": ready,
            "uptime_s": round(self.clock() - self.started_at, 3),
            "stopping": self.stopping,
        }


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)  # real-time signals have no name in the enum


def _config_json(config: GatewayConfig) -> str:
    # JSON is YAML: the validated model travels as data, so the worker parses exactly what the
    # supervisor checked (whatever the file says now, or when there is no file: the demo).
    return orjson.dumps(config.model_dump(mode="json")).decode()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
