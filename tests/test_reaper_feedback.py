"""REAPER's surface feedback read to find the EQ: the pure state, the listener over loopback with
the stand-in REAPER (tests/peers.ReaperPeer) sending bundles as REAPER does, and the daemon
following the selected track."""

from __future__ import annotations

import json
import socket

from fakes import FakeModel, fake_fit, fake_load_mapping
from peers import ReaperPeer, UdpPeer, build, free_port, wait_until
from test_daemon import send_and_wait

from bridge.config import Config, default_target
from bridge.daemon import Daemon
from bridge.targets.reaper_feedback import ReaperFeedback, ReaperSurface


def test_the_eq_is_on_the_most_recently_selected_track_that_has_one():
    s = ReaperSurface("reaeq")
    assert s.where() is None and "no selected track" in s.problem()
    s.feed("/track/2/fx/1/name", ["ReaComp (Cockos)"])
    s.feed("/track/2/fx/3/name", ["VST: ReaEQ (Cockos)"])
    s.feed("/track/2/fx/4/name", ["ReaEQ (Cockos)"])
    s.feed("/track/2/select", [1.0])
    assert s.where() == (2, 3)  # the first matching slot, case-insensitive
    s.feed("/track/5/select", [1])  # a second selected track without an EQ
    assert s.where() == (2, 3)
    s.feed("/track/2/select", ["0"])
    assert s.where() is None
    assert s.problem() == "no FX matching 'reaeq' on the selected track 5 (REAPER reported no FX names)"
    s.feed("/track/5/fx/2/name", ["ReaEQ"])
    assert s.where() == (5, 2)
    s.feed("/track/5/fx/2/name", [""])  # the FX was removed
    assert s.where() is None


def test_the_surface_ignores_what_it_does_not_read():
    s = ReaperSurface("ReaEQ")
    assert not s.feed("/track/2/volume", [0.5])
    assert not s.feed("/track/2/select", [])
    assert not s.feed("/track/2/select", ["yes"])
    assert not s.feed("/track/x/select", [1.0])
    assert s.selected == [] and s.fx_names == {}


def test_the_listener_follows_reaper_and_survives_garbage():
    reaper = ReaperPeer()
    moves = []
    fb = ReaperFeedback("ReaEQ", lambda t, f: moves.append((t, f)), port=0).start()
    dest = ("127.0.0.1", fb.port)
    try:
        reaper.feed_back_fx(dest, 1, ["ReaEQ (Cockos)"])
        reaper.feed_back_fx(dest, 3, ["ReaComp (Cockos)", "ReaEQ (Cockos)"])
        reaper.feed_back_select(dest, 1)
        assert wait_until(lambda: moves == [(1, 1)])
        for junk in (b"", b"\x00" * 7, b"#bundle\x00garbage",
                     "/track/\u00e9".encode("latin-1") + b"\x00,s\x00\x00\xff\xfe\x00\x00",
                     build("/track/1/select", "on"), build("/track/1/fx/1/name")):  # the last two: readable, wrong
            reaper.sock.sendto(junk, dest)
        reaper.feed_back_select(dest, 3, was=1)
        assert wait_until(lambda: moves == [(1, 1), (3, 2)])
        reaper.feed_back_select(dest, 3, was=1)  # the same place again: no move
        reaper.feed_back_select(dest, 2, was=3)  # a track without an EQ: stay where we are
        assert wait_until(lambda: fb.datagrams == 12)
        assert moves == [(1, 1), (3, 2)] and fb.unreadable == 4
        st = fb.to_json()
        assert st["selected_tracks"] == [2] and st["eq"] is None
        assert st["problem"].startswith("no FX matching 'ReaEQ' on the selected track 2")
    finally:
        fb.stop()
        reaper.close()


def _status(client, dest):
    n = len(client.wait_address("/eqbridge/status", n=0, timeout=0))
    client.send(dest, "/eqbridge/status")
    return json.loads(client.wait_address("/eqbridge/status", n=n + 1)[-1].args[0])


def _tracks_set(reaper):
    return {(t, f) for (t, f, _) in reaper.params}


def test_the_daemon_drives_the_eq_on_the_track_selected_in_reaper():
    """A phrase goes to the ReaEQ on whichever track the user selected in REAPER (its surface
    feedback, from the stand-in REAPER); a track without one keeps the last; an explicit
    /eqbridge/target stops the following until the target is chosen by name again."""
    reaper = ReaperPeer()
    fb_port = free_port()
    spec = default_target("reaper", name="vocal", port=reaper.port, mapping="fake4", min_interval_ms=0.0,
                          follow_fx="ReaEQ", feedback_port=fb_port)
    d = Daemon(Config(osc_port=0, targets=(spec,)), model=FakeModel(), fit_curve=fake_fit,
               load_mapping=fake_load_mapping, persist=False)
    d.start()
    client = UdpPeer()
    dest, fb = ("127.0.0.1", d.osc_port), ("127.0.0.1", fb_port)
    try:
        st = _status(client, dest)
        assert (st["target"]["follow"]["eq"], st["target"]["follow"]["problem"]) == (
            None, "REAPER has reported no selected track yet")
        reaper.feed_back_fx(fb, 2, ["ReaComp (Cockos)", "VST: ReaEQ (Cockos)"])
        reaper.feed_back_select(fb, 2)
        assert wait_until(lambda: _status(client, dest)["target"]["key"].endswith("/2/2/fake4"))
        send_and_wait(client, dest, "/eqbridge/text", "warm")
        assert reaper.wait_for(lambda rs: _tracks_set(reaper) == {(2, 2)})
        # a track without an EQ: nothing moves, the status says why
        reaper.feed_back_select(fb, 3, was=2)
        assert wait_until(lambda: _status(client, dest)["target"]["follow"]["selected_tracks"] == [3])
        st = _status(client, dest)
        assert st["target"]["key"].endswith("/2/2/fake4") and "track 3" in st["target"]["follow"]["problem"]
        # its FX list arrives with a ReaEQ in slot 1: the EQ moves there, with a state of its own
        reaper.feed_back_fx(fb, 3, ["ReaEQ (Cockos)"])
        assert wait_until(lambda: _status(client, dest)["target"]["key"].endswith("/3/1/fake4"))
        assert _status(client, dest)["phrase"] is None
        send_and_wait(client, dest, "/eqbridge/text", "bright")
        assert reaper.wait_for(lambda rs: _tracks_set(reaper) == {(2, 2), (3, 1)})
        # garbage on the feedback port changes nothing and the daemon keeps answering
        for junk in (b"", b"#bundle\x00\x00", b"\xff" * 40):
            client.sock.sendto(junk, fb)
        client.send(dest, "/eqbridge/ping")
        assert client.wait_address("/eqbridge/pong")
        # chosen explicitly, the target stays put while REAPER's selection moves...
        client.send(dest, "/eqbridge/target", "reaper", 1, 1)
        assert wait_until(lambda: _status(client, dest)["target"]["key"].endswith("/1/1/fake4"))
        reaper.feed_back_select(fb, 2, was=3)
        assert wait_until(lambda: _status(client, dest)["target"]["follow"] is None)  # not a follower
        assert d.followers["vocal"].where() == (2, 2)
        assert _status(client, dest)["target"]["key"].endswith("/1/1/fake4")
        # ...and chosen by name again, it follows again, back to its own state on track 2
        client.send(dest, "/eqbridge/target", "vocal")
        assert wait_until(lambda: _status(client, dest)["target"]["key"].endswith("/2/2/fake4"))
        st = _status(client, dest)
        assert st["phrase"] == "warm" and st["target"]["follow"]["unreadable"] == 3
    finally:
        d.stop()
        client.close()
        reaper.close()


def test_a_feedback_port_in_use_is_reported_and_the_daemon_runs_on():
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    reaper = ReaperPeer()
    spec = default_target("reaper", port=reaper.port, mapping="fake4", min_interval_ms=0.0,
                          follow_fx="ReaEQ", feedback_port=taken.getsockname()[1])
    d = Daemon(Config(osc_port=0, targets=(spec,)), model=FakeModel(), fit_curve=fake_fit,
               load_mapping=fake_load_mapping, persist=False)
    d.start()
    client = UdpPeer()
    dest = ("127.0.0.1", d.osc_port)
    try:
        follow = _status(client, dest)["target"]["follow"]
        assert follow["error"].startswith(f"cannot listen for REAPER's feedback on port {spec.feedback_port}")
        send_and_wait(client, dest, "/eqbridge/text", "warm")  # on the configured track and slot
        assert reaper.wait_for(lambda rs: _tracks_set(reaper) == {(1, 1)})
    finally:
        d.stop()
        client.close()
        reaper.close()
        taken.close()
