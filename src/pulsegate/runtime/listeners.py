"""The supervisor's listening sockets, in the two modes ``supervisor.listen_mode`` offers.

- ``inherit``: the supervisor binds and listens once per address; every worker inherits the same
  socket and accepts on it (one accept queue, workers take connections as they are free).
- ``reuseport``: each worker binds its own ``SO_REUSEPORT`` socket; the kernel hashes each new
  connection to one of them. The supervisor still binds first, without listening, so port 0
  resolves to one concrete port that all workers then share.

docs/design.md records which balances better on our benchmark and why ``reuseport`` is the default.

Example:
    >>> ls = bind_listeners(["127.0.0.1:0"], mode="inherit")
    >>> ls.addresses[0][0], ls.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    ('127.0.0.1', 1)
    >>> ls.close()
"""

from __future__ import annotations

import dataclasses
import socket

from pulsegate.balancing.target import split_address

BACKLOG = 4096


@dataclasses.dataclass
class Listeners:
    mode: str
    sockets: list[socket.socket]
    #: The concrete (host, port) of each socket (port 0 resolved).
    addresses: list[tuple[str, int]]

    def worker_args(self) -> tuple[list[str], list[int]]:
        """Command-line arguments and fds to pass to a worker."""
        if self.mode == "inherit":
            fds = [s.fileno() for s in self.sockets]
            return [a for fd in fds for a in ("--listen-fd", str(fd))], fds
        binds = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.addresses]
        return [a for b in binds for a in ("--bind", b)], []

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def bind_listeners(listen: list[str], *, mode: str) -> Listeners:
    """Bind every address (raises ``OSError`` with the address in the message)."""
    sockets: list[socket.socket] = []
    addresses: list[tuple[str, int]] = []
    try:
        for address in listen:
            host, port = split_address(address, allow_port_zero=True)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if mode == "reuseport":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror}") from None
            if mode == "inherit":
                sock.listen(BACKLOG)
                sock.set_inheritable(True)
            name = sock.getsockname()
            addresses.append((str(name[0]), int(name[1])))
    except BaseException:
        for s in sockets:
            s.close()
        raise
    return Listeners(mode, sockets, addresses)
