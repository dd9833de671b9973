"""Targets over loopback UDP: addresses, only-what-changed, coalescing, rate limit, AbletonOSC lookup."""

from __future__ import annotations

import logging
import socket
import struct

import pytest

from bridge.bands import HostParam
from bridge.targets.ableton import AbletonLookupError, AbletonOscTarget
from bridge.targets.reaper import ReaperOscTarget
from fakes import live_params
from peers import UNREACHABLE, AbletonPeer, FakeNames, ReaperPeer, reaper_reads, wait_until


def f32(x):
    return struct.unpack(">f", struct.pack(">f", x))[0]


def hp(key, norm, native=0.0, idx=0, live=None):
    return HostParam(key, norm, native, reaper_index=idx, live_name=live)


@pytest.fixture
def reaper():
    peer = ReaperPeer()
    tgt = ReaperOscTarget("127.0.0.1", peer.port, track=3, fx=2, min_interval=0.0)
    tgt.start()
    yield peer, tgt
    tgt.stop()
    peer.close()


def test_reaper_addresses_are_one_based_and_values_normalized(reaper):
    peer, tgt = reaper
    assert tgt.submit([hp("a", 0.25, idx=0), hp("b", 0.75, idx=4), hp("c", 1.7, idx=5)]) == 3
    peer.wait_for(lambda rs: len(rs) >= 3)
    assert sorted(peer.fxparam_messages()) == [
        ("/track/3/fx/2/fxparam/1/value", 0.25), ("/track/3/fx/2/fxparam/5/value", 0.75),
        ("/track/3/fx/2/fxparam/6/value", 1.0)]


@pytest.mark.parametrize("bundle", [True, False])
def test_reaper_gets_each_flush_as_few_bundles_or_one_datagram_per_value(bundle):
    """By default a flush goes as OSC 1.0 bundles under MAX_DATAGRAM, which the stand-in reads
    the way REAPER's OSC surface does (peers.reaper_reads); osc_bundle: false sends 60 datagrams."""
    peer = ReaperPeer()
    tgt = ReaperOscTarget("127.0.0.1", peer.port, track=3, fx=2, min_interval=0.0, bundle=bundle)
    tgt.start()
    try:
        params = [hp(f"p{i}", i / 100.0, idx=i) for i in range(60)]
        assert tgt.submit(params) == 60
        peer.wait_for(lambda rs: len(rs) >= 60)
        assert sorted(peer.fxparam_messages()) == sorted(
            (f"/track/3/fx/2/fxparam/{i + 1}/value", f32(i / 100.0)) for i in range(60))
        assert wait_until(lambda: tgt.sent_messages >= 60, timeout=5.0)  # counted after the send
        assert tgt.sent_messages == 60
        assert 1 < peer.datagrams <= 3 if bundle else peer.datagrams == 60
    finally:
        tgt.stop()
        peer.close()


def test_osc_bundles_hold_the_messages_as_python_osc_and_reaper_read_them():
    from pythonosc.osc_bundle import OscBundle

    from bridge.osc_in import build_message
    from bridge.targets.reaper import MAX_DATAGRAM, osc_bundles
    msgs = [build_message(f"/track/1/fx/1/fxparam/{i}/value", [i / 7.0]) for i in range(60)]
    dgrams = osc_bundles(msgs)
    assert 1 < len(dgrams) < 60 and all(len(d) <= MAX_DATAGRAM for d in dgrams)
    assert [m.dgram for d in dgrams for m in OscBundle(d)._contents] == msgs
    assert [m for d in dgrams for m in reaper_reads(d)] == msgs
    assert osc_bundles([]) == []
    # the stand-in reads no more than REAPER would: a message over its 1024 bytes ends the walk
    long = build_message("/track/1/fx/1/fxparam/1/value", ["x" * 1100])
    assert reaper_reads(osc_bundles([msgs[0], long, msgs[1]], max_bytes=4000)[0]) == [msgs[0]]


def test_a_host_name_is_looked_up_on_the_targets_thread_never_the_callers(monkeypatch):
    """The engine's submit must not wait for a slow resolver: until the name is known, values
    go through the target's thread; then they go inline, with no lookup per datagram."""
    names = FakeNames({"studio.test": ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", names.getaddrinfo)
    peer = ReaperPeer()
    tgt = ReaperOscTarget("studio.test", peer.port, min_interval=0.0, name="named")
    names.gate.clear()  # the resolver hangs
    tgt.start()
    try:
        assert not tgt.inline
        assert tgt.submit([hp("a", 0.25, idx=0), hp("b", 0.5, idx=1)]) == 2  # returns while it hangs
        names.gate.set()
        assert peer.wait_for(lambda rs: len(rs) >= 2)
        assert wait_until(lambda: tgt.inline)
        for i in range(20):
            tgt.submit([hp("a", i / 40.0, idx=0)])
        assert peer.wait_for(lambda rs: rs[-1].args == [f32(19 / 40.0)])
        assert names.lookups == [("studio.test", "eqbridge-named")]  # once, and not here
        assert ("/track/1/fx/1/fxparam/2/value", 0.5) in peer.fxparam_messages()
    finally:
        tgt.stop()
        peer.close()


def test_a_failed_send_looks_the_name_up_again(monkeypatch):
    """A name that pointed somewhere unreachable (an old DHCP lease) is asked again on the
    retry, on the target's thread, and the kept values then arrive."""
    names = FakeNames({"studio.test": [UNREACHABLE[0], "127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", names.getaddrinfo)
    peer = ReaperPeer()
    tgt = ReaperOscTarget("studio.test", peer.port, min_interval=0.0, name="named")
    tgt.start()
    try:
        assert wait_until(lambda: tgt.inline)
        tgt.submit([hp("a", 0.25, idx=0)])  # inline, to 255.255.255.255: fails at once
        assert tgt.send_failure() is not None and not tgt.inline
        assert peer.wait_for(lambda rs: len(rs) >= 1)  # the retry, 0.5 s later
        assert peer.fxparam_messages() == [("/track/1/fx/1/fxparam/1/value", 0.25)]
        assert names.lookups == [("studio.test", "eqbridge-named")] * 2
        assert wait_until(lambda: tgt.send_failure() is None and tgt.inline)
    finally:
        tgt.stop()
        peer.close()


def test_an_inline_send_that_fails_is_retried_without_another_submit(caplog):
    """The values of a failed inline flush are kept, and the target's thread tries them again
    every RETRY_S on its own (once, nothing woke it: they waited for the next change)."""
    tgt = ReaperOscTarget(*UNREACHABLE, min_interval=0.0, name="away")
    tgt.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="eqbridge.targets"):
            tgt.submit([hp("a", 0.25, idx=0)])
            assert tgt.send_failure() is not None
            assert wait_until(lambda: sum("away: send failed" in r.getMessage() for r in caplog.records) >= 3,
                              timeout=5.0)
        assert not tgt.idle()
    finally:
        tgt.stop()


def test_a_name_that_does_not_resolve_keeps_the_values_and_says_why(monkeypatch):
    names = FakeNames({})
    monkeypatch.setattr(socket, "getaddrinfo", names.getaddrinfo)
    tgt = ReaperOscTarget("nosuchhost.invalid", 8000, min_interval=0.0)
    tgt.start()
    try:
        assert wait_until(lambda: tgt.send_failure() is not None)  # from the first lookup
        assert tgt.submit([hp("a", 0.25, idx=0)]) == 1
        assert "cannot resolve host 'nosuchhost.invalid'" in tgt.send_failure()
        assert not tgt.idle()  # kept for the retry
    finally:
        tgt.stop()


def test_only_what_changed_is_sent(reaper):
    peer, tgt = reaper
    tgt.submit([hp("a", 0.25, idx=0), hp("b", 0.5, idx=1)])
    peer.wait_for(lambda rs: len(rs) >= 2)
    assert tgt.submit([hp("a", 0.25, idx=0), hp("b", 0.6, idx=1)]) == 1
    peer.wait_for(lambda rs: len(rs) >= 3)
    assert tgt.submit([hp("a", 0.25, idx=0), hp("b", 0.6, idx=1)]) == 0
    tgt.submit([hp("a", 0.3, idx=0)])
    peer.wait_for(lambda rs: len(rs) >= 4)
    assert peer.fxparam_messages()[2:] == [("/track/3/fx/2/fxparam/2/value", f32(0.6)),
                                           ("/track/3/fx/2/fxparam/1/value", f32(0.3))]
    assert tgt.idle()


def test_a_burst_is_coalesced_latest_wins(reaper):
    peer, tgt = reaper
    tgt.pause()
    for i in range(1000):
        tgt.submit([hp("a", i / 1000, idx=0), hp("b", 0.5, idx=1)])
    tgt.submit([hp("a", 0.1234, idx=0)])
    tgt.resume()
    peer.wait_for(lambda rs: len(rs) >= 2)
    tgt.pause()  # nothing else may follow; a marker value proves the pipe is flushed
    tgt.submit([hp("z", 0.0, idx=9)])
    tgt.resume()
    peer.wait_for(lambda rs: any("fxparam/10/" in r.address for r in rs))
    msgs = peer.fxparam_messages()
    assert sorted(msgs[:2]) == [("/track/3/fx/2/fxparam/1/value", f32(0.1234)),
                                ("/track/3/fx/2/fxparam/2/value", 0.5)]
    assert len(msgs) == 3


def test_a_value_that_returns_before_the_flush_is_not_sent(reaper):
    peer, tgt = reaper
    tgt.submit([hp("a", 0.5, idx=0)])
    peer.wait_for(lambda rs: len(rs) >= 1)
    tgt.pause()
    tgt.submit([hp("a", 0.9, idx=0)])
    tgt.submit([hp("a", 0.5, idx=0)])
    tgt.submit([hp("m", 0.1, idx=7)])
    tgt.resume()
    peer.wait_for(lambda rs: len(rs) >= 2)
    assert peer.fxparam_messages()[1:] == [("/track/3/fx/2/fxparam/8/value", f32(0.1))]


def test_flushes_are_spaced_by_the_interval():
    peer = ReaperPeer()
    tgt = ReaperOscTarget("127.0.0.1", peer.port, min_interval=0.02)
    tgt.start()
    try:
        for i in range(6):
            tgt.submit([hp("a", i / 10, idx=0)])
            peer.wait_for(lambda rs: len(rs) >= i + 1)
        # flush_times is appended after the datagrams go out: the last may arrive first
        assert wait_until(lambda: len(tgt.flush_times) >= 6, timeout=5.0)
        times = list(tgt.flush_times)
        assert len(times) == 6
        assert all(b - a >= 0.02 for a, b in zip(times, times[1:]))
    finally:
        tgt.stop()
        peer.close()


def test_a_polish_never_holds_back_the_next_answer():
    """A background flush (the daemon's polish) does not start the interval an answer waits out;
    answers still wait for answers, and a polish waits for any flush: at most one of each per
    interval."""
    peer = ReaperPeer()
    interval = 0.05
    tgt = ReaperOscTarget("127.0.0.1", peer.port, min_interval=interval)
    tgt.start()

    def flushed(n: int) -> list[float]:  # flush_times is appended after the datagrams go out
        assert wait_until(lambda: len(tgt.flush_times) >= n, timeout=5.0)
        return list(tgt.flush_times)

    try:
        tgt.submit([hp("a", 0.1, idx=0)])  # an answer: sent at once
        flushed(1)
        tgt.submit([hp("a", 0.2, idx=0)], background=True)  # a polish right after: waits its interval
        times = flushed(2)
        assert times[1] - times[0] >= interval
        tgt.submit([hp("a", 0.3, idx=0)])  # the next answer: at once, although the polish just went
        times = flushed(3)
        assert times[2] - times[1] < interval
        tgt.submit([hp("a", 0.4, idx=0)])  # another answer inside the interval: held back
        times = flushed(4)
        assert times[3] - times[2] >= interval
        peer.wait_for(lambda rs: len(rs) >= 4)
        assert [v for _, v in peer.fxparam_messages()] == [f32(0.1), f32(0.2), f32(0.3), f32(0.4)]
    finally:
        tgt.stop()
        peer.close()


def test_params_without_a_reaper_index_are_skipped(reaper):
    peer, tgt = reaper
    assert tgt.submit([HostParam("x", 0.5, 0.0, reaper_index=None)]) == 0


@pytest.fixture
def live():
    tgt = AbletonOscTarget("127.0.0.1", 1, track=1, device=2, reply_port=0, min_interval=0.0)
    peer = AbletonPeer({(1, 2): live_params()}, reply_port=tgt.reply_port)
    tgt.port = peer.port
    tgt.start()
    yield peer, tgt
    tgt.stop()
    peer.close()


def test_ableton_finds_parameters_by_name_and_sends_native_values(live):
    peer, tgt = live
    tgt.submit([hp("g2", 0.6, native=3.5, live="2 Gain A"), hp("f2", 0.4, native=480.0, live="2 Frequency A"),
                hp("g9", 0.4, native=1.0, live="No Such Knob"), hp("gx", 0.9, native=99.0, live="1 Gain A")])
    peer.wait_for(lambda rs: len([r for r in rs if r.address.endswith("set/parameter/value")]) >= 3)
    sets = sorted(peer.sets)
    # "1 Gain A" is index 2 and clamped to Live's max of 15 dB; the unknown name is skipped
    assert sets == [(1, 2, 2, 15.0), (1, 2, 4, 480.0), (1, 2, 5, 3.5)]
    assert tgt.names is not None and tgt.names[0] == "Device On"
    assert tgt.query_value_strings([5]) == {5: "3.5 dB"}


def test_ableton_by_name_is_looked_up_once_on_its_own_thread(monkeypatch):
    names = FakeNames({"live.test": ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", names.getaddrinfo)
    tgt = AbletonOscTarget("live.test", 1, track=1, device=2, reply_port=0, min_interval=0.0, name="live")
    peer = AbletonPeer({(1, 2): live_params()}, reply_port=tgt.reply_port)
    tgt.port = peer.port
    tgt.start()
    try:
        tgt.submit([hp("g2", 0.6, native=3.5, live="2 Gain A")])
        assert peer.wait_for(lambda rs: peer.sets)
        tgt.submit([hp("g2", 0.6, native=-2.0, live="2 Gain A")])
        assert peer.wait_for(lambda rs: len(peer.sets) >= 2)
        assert peer.sets == [(1, 2, 5, 3.5), (1, 2, 5, -2.0)]
        assert names.lookups == [("live.test", "eqbridge-live")]
    finally:
        tgt.stop()
        peer.close()


def test_ableton_lookup_without_live_fails_with_a_reason():
    tgt = AbletonOscTarget("127.0.0.1", 9, reply_port=0, lookup_timeout=0.2)
    try:
        with pytest.raises(AbletonLookupError, match="no answer from AbletonOSC"):
            tgt.lookup()
    finally:
        tgt.stop()


class _FakeMidiPort:
    def __init__(self, name):
        self.name, self.sent, self.closed = name, [], False

    def send(self, msg):
        if self.closed:
            raise OSError("port gone")
        self.sent.append(msg)

    def close(self):
        self.closed = True


class _FakeMidiPorts:
    """bridge.midi_ports' interface (names, open, delete), counting the listings."""

    def __init__(self):
        self.listed = ["Some Synth", "eqb-host:in 1"]
        self.listings = 0
        self.opened = []

    def names(self):
        self.listings += 1
        return list(self.listed)

    def open(self, name, callback=None):
        self.opened.append(_FakeMidiPort(name))
        return self.opened[-1]

    def delete(self):
        pass


def test_midi_out_does_not_list_ports_on_every_flush():
    pytest.importorskip("mido")  # MidiCcTarget builds mido messages
    from bridge import midi_ports
    from bridge.targets.midi_out import MidiCcTarget
    be = _FakeMidiPorts()
    tgt = MidiCcTarget("eqb-host", cc_map={"band1.gain": (2, 21)})
    tgt.port._ports = be
    for i in range(50):
        tgt._send([(hp("band1.gain", i / 100), i)])
    assert len(be.opened) == 1 and len(be.opened[0].sent) == 50
    assert be.listings == 1  # one lookup to open it; none per flush within RECHECK_S
    # a failed send (unplugged) makes the next flush look again and reopen
    be.opened[0].closed = True
    with pytest.raises(OSError):
        tgt._send([(hp("band1.gain", 0.9), 100)])
    tgt._send([(hp("band1.gain", 0.9), 101)])
    assert be.listings == 2 and len(be.opened) == 2 and be.opened[1].sent[-1].value == 101
    # after RECHECK_S the open port is checked against the list again (a quiet unplug)
    tgt.port._checked -= midi_ports.RECHECK_S
    be.listed = ["Some Synth"]
    with pytest.raises(midi_ports.MidiNotConnected):
        tgt._send([(hp("band1.gain", 0.1), 5)])
