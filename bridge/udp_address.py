"""Where datagrams go: a peer's host:port, looked up once, on a thread that may wait for it.

`socket.sendto(data, (name, port))` asks the resolver again for every datagram (glibc keeps no
cache), on the calling thread. A LAN name that resolves slowly, or not at all ("studio.local"
without mDNS waits out the resolver's timeouts, seconds), would then stall the thread that sends,
once per message. So a `PeerAddress` given an IP literal is ready at once (AI_NUMERICHOST never
asks a resolver), and one given a name is ready only after `resolve()`, which its owner calls
off the engine thread. After a failed send the owner calls `forget()`: a name may point elsewhere
by now (DHCP), so the next send resolves it again; an IP literal stays as it is.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from bridge.errors import ConfigError

log = logging.getLogger("eqbridge.udp")

SockAddr = tuple[Any, ...]
RESOLVE_RETRY_S = 5.0
"""How often `resolve_all` asks again for a name that did not resolve."""


def _first(host: str, port: int, family: int, flags: int) -> tuple[int, SockAddr]:
    """The first UDP (family, sockaddr) for host:port; raises OSError (names that are not valid
    IDNA raise UnicodeError inside getaddrinfo: turned into OSError too)."""
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, 0, flags)
    except UnicodeError as exc:
        raise OSError(f"not a host name: {exc}") from None
    fam, _, _, _, addr = infos[0]
    return fam, addr


def port_number(v: Any, where: str) -> int:
    """A UDP port from a config value or a flag (0: a listening port the system picks); the one
    check that `eqbridge serve`'s config and `eqbridge send` share."""
    try:
        p = int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: must be a port number 1..65535, got {v!r}") from None
    if not 0 <= p <= 65535:
        raise ConfigError(f"{where}: must be 1..65535, got {p}")
    return p


class PeerAddress:
    """host:port of a peer that is sent datagrams; `family` restricts the lookup to what the
    sending socket can reach (AF_UNSPEC: whatever the host has, first answer wins)."""

    def __init__(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> None:
        self.host, self.port, self.family = host, int(port), family
        try:
            self.resolved: tuple[int, SockAddr] | None = _first(host, self.port, family, socket.AI_NUMERICHOST)
            self.numeric = True
        except OSError:
            self.resolved, self.numeric = None, False

    @property
    def sockaddr(self) -> SockAddr | None:
        """The address to `sendto`, or None until a name is resolved."""
        return None if self.resolved is None else self.resolved[1]

    def resolve(self) -> tuple[int, SockAddr]:
        """(family, sockaddr), looking the name up if needed: may block for seconds, so never on
        the engine thread. Raises OSError naming the host."""
        if self.resolved is None:
            try:
                self.resolved = _first(self.host, self.port, self.family, 0)
            except OSError as exc:
                raise OSError(f"cannot resolve host {self.host!r}: {getattr(exc, 'strerror', None) or exc}") from None
        return self.resolved

    def forget(self) -> None:
        """A send failed: a name is looked up again at the next `resolve()` (an IP literal stays)."""
        if not self.numeric:
            self.resolved = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def resolve_all(peers: list[PeerAddress], stop: threading.Event, retry_s: float = RESOLVE_RETRY_S) -> None:
    """Resolve every peer, trying the ones that fail again every `retry_s` until `stop` is set
    (a tablet that joins the network later): for a thread of its own. Each failure is logged once."""
    told: set[str] = set()
    while not stop.is_set():
        waiting = [p for p in peers if p.resolved is None]
        for p in waiting:
            try:
                p.resolve()
                log.info("%s is %s", p, p.sockaddr)
            except OSError as exc:
                if str(exc) not in told:
                    told.add(str(exc))
                    log.warning("%s; trying again every %.0f s", exc, retry_s)
        if all(p.resolved is not None for p in peers):
            return
        stop.wait(retry_s)
