"""Runs the admin application on uvicorn inside the supervisor's event loop.

uvicorn normally owns the process's signals; here the supervisor does (SIGTERM drains workers,
SIGHUP reloads), so signal capture is switched off and the server is stopped explicitly.

Example::

    admin = AdminServer(supervisor)
    host, port = await admin.start("127.0.0.1:0")
    ...
    await admin.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING

import uvicorn

from pulsegate.admin.app import create_app
from pulsegate.balancing.target import split_address

if TYPE_CHECKING:
    from pulsegate.runtime.supervisor import Supervisor


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class AdminServer:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    async def start(self, listen: str) -> tuple[str, int]:
        """Bind ``listen`` (raises ``OSError``) and serve; returns the bound address."""
        host, port = split_address(listen, allow_port_zero=True)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"{exc.strerror} ({listen})") from None
        sock.setblocking(False)
        self._sock = sock
        config = uvicorn.Config(
            create_app(self.sup),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        name = sock.getsockname()
        return str(name[0]), int(name[1])

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5.0)
        if self._sock is not None:
            self._sock.close()
