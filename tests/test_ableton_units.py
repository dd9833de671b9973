"""AbletonOSC units check: Live's value_string confirms (or contradicts) the mapping's units.

Real UDP on 127.0.0.1 through the stand-in AbletonOSC (tests/peers.py), and the daemon end to end.
"""

from __future__ import annotations

import json
import logging
import math

import pytest

from bridge.bands import HostParam
from bridge.config import Config, default_target
from bridge.daemon import Daemon
from bridge.targets.ableton import AbletonOscTarget, parse_display, unit_problem, units_from_mapping
from fakes import FakeModel, fake_fit, fake_load_mapping, live_params
from peers import AbletonPeer, LiveParam, UdpPeer, eq_eight_display, frequencies_shown_in, wait_until


def hp(key: str, native: float, live: str) -> HostParam:
    return HostParam(key, 0.5, native, live_name=live)




@pytest.mark.parametrize("text, want", [
    ("1.00 kHz", (1000.0, "Hz")), ("120 Hz", (120.0, "Hz")), ("12.5kHz", (12500.0, "Hz")),
    ("-3.0 dB", (-3.0, "dB")), ("+1.5 dB", (1.5, "dB")), ("\u22126.0 dB", (-6.0, "dB")),
    ("0.71", (0.71, "")), ("Off", (None, "Off")),
])
def test_live_display_strings_parse_to_a_base_unit(text, want):
    assert parse_display(text) == (pytest.approx(want[0]) if want[0] is not None else None, want[1])


def test_inf_db_is_a_gain_whose_number_is_not_compared():
    value, unit = parse_display("-inf dB")
    assert math.isinf(value) and value < 0 and unit == "dB"
    assert parse_display("inf dB")[0] == math.inf
    assert unit_problem("1 Gain A", "-inf dB", "dB", -15.0) is None


def test_unit_problem_names_the_parameter_and_both_sides():
    assert unit_problem("1 Frequency A", "1.00 kHz", "Hz", 1003.0) is None
    assert unit_problem("1 Frequency A", "480 Hz", "Hz", None) is None  # unit only
    why = unit_problem("1 Frequency A", "480.0 dB", "Hz", 480.0)
    assert why == "1 Frequency A: Live shows '480.0 dB', the mapping expects Hz"
    # a frequency Live keeps as 0..1: the unit agrees, the number does not
    why = unit_problem("1 Frequency A", "1.00 kHz", "Hz", 0.5)
    assert why is not None and "for value 0.5" in why and "expects 0.5 Hz" in why
    assert unit_problem("2 Freq", "2.00 kHz", "kHz", 2.0) is None  # a mapping in kHz


def test_the_eq_eight_mapping_states_hz_and_db():
    mapping = pytest.importorskip("bridge.mapping").load_mapping("ableton-eq-eight")
    units = units_from_mapping(mapping)
    assert units["1 Frequency A"] == "Hz" and units["8 Gain A"] == "dB"
    assert "1 Resonance A" not in units


@pytest.fixture
def live():
    """A target and a stand-in Live; the peer's `display` can be swapped before the first flush."""
    made = []

    def make(display=eq_eight_display, params=None, **kw):
        tgt = AbletonOscTarget("127.0.0.1", 1, track=1, device=2, reply_port=0, min_interval=0.0, **kw)
        peer = AbletonPeer({(1, 2): params or live_params()}, reply_port=tgt.reply_port, display=display)
        tgt.port = peer.port
        made.append((peer, tgt))
        tgt.start()
        return peer, tgt
    yield make
    for peer, tgt in made:
        tgt.stop()
        peer.close()


BATCH = [hp("band1.freq", 2400.0, "1 Frequency A"), hp("band1.gain", -3.0, "1 Gain A"),
         hp("band1.q", 0.71, "1 Resonance A"), hp("band2.freq", 480.0, "2 Frequency A")]


def test_units_confirmed_on_a_correct_live(live):
    peer, tgt = live()
    tgt.submit(BATCH)
    assert wait_until(lambda: tgt.units_status is not None)
    assert tgt.units_status == "units confirmed: 1 Frequency A = '2.40 kHz', 1 Gain A = '-3.0 dB'"
    assert tgt.last_error is None and "units confirmed" in tgt.describe()
    assert sorted(peer.sets) == [(1, 2, 1, 2400.0), (1, 2, 2, -3.0), (1, 2, 3, pytest.approx(0.71)),
                                 (1, 2, 4, 480.0)]


def test_units_confirmed_right_after_lookup_when_the_mapping_units_are_given(live):
    mapping = pytest.importorskip("bridge.mapping").load_mapping("ableton-eq-eight")
    peer, tgt = live(units=units_from_mapping(mapping))
    assert wait_until(lambda: tgt.units_status is not None)  # nothing submitted: Live's own values
    assert tgt.units_status == "units confirmed: 1 Frequency A = '1.00 kHz', 1 Gain A = '0.0 dB'"
    assert peer.sets == []


def test_a_unit_mismatch_names_the_parameter_and_stays_in_last_error(live, caplog):
    peer, tgt = live(display=frequencies_shown_in("dB"))
    with caplog.at_level(logging.WARNING, logger="eqbridge.targets.ableton"):
        tgt.submit(BATCH)
        assert wait_until(lambda: tgt.units_status is not None)
    want = "units mismatch: 1 Frequency A: Live shows '2400.0 dB', the mapping expects Hz"
    assert tgt.last_error == want and tgt.units_status == want
    assert any(want in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    tgt.submit([hp("band1.gain", 2.0, "1 Gain A")])  # a good flush does not clear it
    peer.wait_for(lambda rs: (1, 2, 2, 2.0) in peer.sets)
    assert wait_until(lambda: tgt.idle()) and tgt.last_error == want


def test_a_frequency_live_keeps_as_0_to_1_is_caught_by_its_number(live):
    """Public sources disagree on whether EQ Eight exposes Hz or 0..1 (mappings/ableton-eq-eight.yaml)."""
    def normalized_freq(p: LiveParam) -> str:
        if "Frequency" in p.name:
            return eq_eight_display(LiveParam(p.name, 10.0, 22000.0, 10.0 * 2200.0 ** p.value))
        return eq_eight_display(p)
    params = [LiveParam(p.name, 0.0, 1.0, 0.5) if "Frequency" in p.name else p for p in live_params()]
    peer, tgt = live(display=normalized_freq, params=params)
    tgt.submit(BATCH)
    assert wait_until(lambda: tgt.units_status is not None)
    # 2400 Hz was clamped to Live's max of 1.0, which Live shows as 22 kHz
    assert tgt.last_error == ("units mismatch: 1 Frequency A: Live shows '22.00 kHz' for value 1, "
                              "the mapping expects 1 Hz")


def test_no_value_string_reply_is_noted_and_sending_goes_on(live):
    peer, tgt = live(display=lambda p: None, units_timeout=0.3)
    tgt.submit(BATCH)
    assert wait_until(lambda: tgt.units_status is not None)
    assert tgt.units_status == "units not confirmed (no value_string reply)"
    assert tgt.last_error is None
    tgt.submit([hp("band1.freq", 300.0, "1 Frequency A")])
    assert peer.wait_for(lambda rs: (1, 2, 1, 300.0) in peer.sets)


# ---- the daemon: the check runs on the target's thread, the engine keeps answering


@pytest.fixture
def live_daemon(monkeypatch):
    """Start a daemon driving a stand-in Live (built when the daemon binds its reply port)."""
    started = []

    def start(display):
        peers = []
        orig = AbletonOscTarget.__init__

        def init(self, *a, **kw):
            orig(self, *a, **kw)
            peers.append(AbletonPeer({(1, 0): live_params()}, reply_port=self.reply_port, display=display))
            self.port = peers[-1].port
        monkeypatch.setattr(AbletonOscTarget, "__init__", init)
        target = default_target("ableton", name="live", port=1, reply_port=0, mapping="fake4",
                                min_interval_ms=0.0, track=1, fx=0)
        d = Daemon(Config(osc_port=0, targets=(target,)), model=FakeModel(), fit_curve=fake_fit,
                   load_mapping=fake_load_mapping, persist=False)
        d.start()
        client = UdpPeer()
        started.append((d, client, peers))
        return d, peers[0], client, ("127.0.0.1", d.osc_port)
    yield start
    for d, client, peers in started:
        d.stop()
        client.close()
        for p in peers:
            p.close()


def status(client, dest) -> dict:
    n = len(client.wait_address("/eqbridge/status", n=0, timeout=0))
    client.send(dest, "/eqbridge/status")
    return json.loads(client.wait_address("/eqbridge/status", n=n + 1)[-1].args[0])


def sends_all_eight(peer) -> bool:
    return len({i for (_, _, i, _) in peer.sets}) >= 8  # fake4: 4 bands x (gain, freq)


def test_daemon_reports_a_unit_mismatch_in_status(live_daemon):
    d, peer, client, dest = live_daemon(frequencies_shown_in("dB"))
    client.send(dest, "/eqbridge/text", "warm")
    assert peer.wait_for(lambda rs: sends_all_eight(peer))
    out = d.active.output
    assert wait_until(lambda: out.units_status is not None)
    err = status(client, dest)["target"]["output"]["error"]
    assert err.startswith("units mismatch: 1 Frequency A: Live shows '100.0 dB'") and "expects Hz" in err


def test_daemon_confirms_units_on_a_correct_live(live_daemon):
    d, peer, client, dest = live_daemon(eq_eight_display)
    client.send(dest, "/eqbridge/text", "warm")
    assert peer.wait_for(lambda rs: sends_all_eight(peer))
    out = d.active.output
    assert wait_until(lambda: out.units_status is not None)
    assert out.units_status.startswith("units confirmed: 1 Frequency A = '100 Hz', 1 Gain A = ")
    assert status(client, dest)["target"]["output"]["error"] is None


def test_daemon_without_value_string_replies_still_sends(live_daemon):
    d, peer, client, dest = live_daemon(lambda p: None)
    client.send(dest, "/eqbridge/text", "warm")
    assert peer.wait_for(lambda rs: sends_all_eight(peer))
    out = d.active.output
    assert wait_until(lambda: out.units_status is not None)
    assert out.units_status == "units not confirmed (no value_string reply)"
    before = len(peer.sets)
    client.send(dest, "/eqbridge/text", "bright")  # the next answer goes out as before
    assert peer.wait_for(lambda rs: len(peer.sets) > before)
    assert status(client, dest)["target"]["output"]["error"] is None
