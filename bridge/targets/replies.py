"""Listening to what a host says back (AbletonOSC's replies, REAPER's surface feedback): where to
bind, and a receive loop that ends only when its owner closes."""

from __future__ import annotations

import socket
from typing import Any, Callable, Iterator

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def listen_host(host: str) -> str:
    """Where to listen for a host at `host`: loopback for a local one, every interface otherwise."""
    return "127.0.0.1" if host in LOOPBACK else "0.0.0.0"


def datagrams(sock: socket.socket, closing: Callable[[], bool]) -> Iterator[tuple[bytes, Any]]:
    """(data, sender) per datagram until `closing()` or the socket is closed; `sock` needs a
    timeout, so `closing` is looked at between datagrams."""
    while not closing():
        try:
            got = sock.recvfrom(65535)
        except socket.timeout:
            continue
        except OSError:
            return
        yield got
