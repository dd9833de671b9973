"""PeerAddress: IP literals are ready at once, names only once resolved (off the engine thread)."""

from __future__ import annotations

import socket
import threading

import pytest

from bridge.udp_address import PeerAddress, resolve_all
from peers import FakeNames


@pytest.fixture
def names(monkeypatch):
    names = FakeNames({"tablet.test": ["192.0.2.7"]})
    monkeypatch.setattr(socket, "getaddrinfo", names.getaddrinfo)
    return names


@pytest.mark.parametrize("host, family, want", [
    ("127.0.0.1", socket.AF_INET, ("127.0.0.1", 9000)),
    ("::1", socket.AF_INET6, ("::1", 9000, 0, 0)),
])
def test_an_ip_literal_is_ready_without_a_lookup(names, host, family, want):
    a = PeerAddress(host, 9000)
    assert a.numeric and a.resolved == (family, want) and a.sockaddr == want
    a.forget()
    assert a.sockaddr == want
    assert names.lookups == []


def test_a_name_is_ready_only_after_resolve_and_again_after_forget(names):
    a = PeerAddress("tablet.test", 9000, socket.AF_INET)
    assert not a.numeric and a.sockaddr is None and names.lookups == []
    assert a.resolve() == (socket.AF_INET, ("192.0.2.7", 9000))
    assert a.resolve()[1] == a.sockaddr and len(names.lookups) == 1  # asked once
    a.forget()
    assert a.sockaddr is None
    a.resolve()
    assert len(names.lookups) == 2


@pytest.mark.parametrize("host", ["nosuchhost.invalid", "x" * 70 + ".test"])  # a label over 63: UnicodeError
def test_a_name_that_does_not_resolve_raises_oserror_naming_it(names, host):
    a = PeerAddress(host, 9000)
    with pytest.raises(OSError, match="cannot resolve host 'x*(nosuchhost.invalid|\\.test)'"):
        a.resolve()
    assert a.sockaddr is None


def test_resolve_all_tries_the_missing_ones_again_until_stopped(names, monkeypatch):
    names.answers["later.test"] = ["192.0.2.9"]
    peers = [PeerAddress("127.0.0.1", 1), PeerAddress("tablet.test", 2), PeerAddress("later.test", 3)]
    real = names.getaddrinfo
    fails = {"later.test": 2}

    def flaky(host, *a, **kw):
        if fails.get(host):
            fails[host] -= 1
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *a, **kw)
    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    stop = threading.Event()
    resolve_all(peers, stop, retry_s=0.01)
    assert [p.sockaddr for p in peers] == [("127.0.0.1", 1), ("192.0.2.7", 2), ("192.0.2.9", 3)]
    assert fails["later.test"] == 0
    stop.set()
    gone = PeerAddress("nosuchhost.invalid", 4)
    resolve_all([gone], stop, retry_s=0.01)  # returns: stopped
    assert gone.sockaddr is None
