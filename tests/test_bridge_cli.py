"""`eqbridge serve` as a real process (clean SIGTERM/SIGINT shutdown) and `eqbridge send` against it."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from peers import UNREACHABLE, ReaperPeer, free_port

ROOT = Path(__file__).resolve().parents[1]


def parser():
    from bridge.cli import send, serve
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    serve.register(sub)
    send.register(sub)
    return p


def run_cli(*argv) -> int:
    args = parser().parse_args(list(argv))
    return args.func(args)


def test_check_prints_the_plan(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets: [{name: a, daw: reaper, port: 8123, track: 4}, {name: b, daw: ableton}]\n")
    assert run_cli("serve", "--config", str(cfg), "--check", "--osc-port", "9555") == 0
    out = capsys.readouterr().out
    assert "OSC in: udp 127.0.0.1:9555" in out and "127.0.0.1:8123, track 4" in out and "ableton" in out
    assert "MIDI" not in out
    cfg.write_text("midi: {input: nano, map: [{control: amount, cc: 7}, {control: macro/1, cc: 8, pickup: true}]}\n")
    assert run_cli("serve", "--config", str(cfg), "--check", "--midi-feedback", "nanoKONTROL") == 0
    out = capsys.readouterr().out
    assert "cc 7 (any channel) -> amount" in out and "cc 8 (any channel, pickup) -> macro/1" in out and "the knobs' values to a port matching 'nanoKONTROL'" in out


def test_check_reports_an_unknown_mapping(capsys):
    pytest.importorskip("bridge.mapping")
    assert run_cli("serve", "--check", "--mapping", "no-such-eq") == 2
    assert "ERROR" in capsys.readouterr().out


def test_check_reports_a_host_that_does_not_resolve(capsys):
    # .invalid never resolves (RFC 2606); the daemon would only log each failed send
    assert run_cli("serve", "--check", "--reaper", "nohost.invalid:8000") == 2
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("target (active)"))
    assert "ERROR: cannot resolve host 'nohost.invalid'" in line
    assert run_cli("serve", "--check", "--reaper", "localhost:8000") == 0


@pytest.fixture
def served(tmp_path):
    reaper = ReaperPeer()
    port = free_port()
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--osc-port", str(port), "--reaper", f"127.0.0.1:{reaper.port}",
         "--log-level", "debug"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait until it answers (no timing threshold: up to a minute for a cold model load)
    ok = False
    for _ in range(120):
        if proc.poll() is not None:
            break
        if run_cli("send", "--ping", "--port", str(port), "--timeout", "0.5") == 0:
            ok = True
            break
    if not ok:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"eqbridge serve did not answer pings: {err[-2000:]}")
    yield proc, port, reaper, tmp_path
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    reaper.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_and_send_then_clean_shutdown(served, capsys, sig):
    proc, port, reaper, tmp = served
    assert run_cli("send", "--macro", "2", "0.8", "--port", str(port)) == 0
    assert "ok: curve" in capsys.readouterr().out
    assert run_cli("send", "--macro", "7", "0.8", "--port", str(port)) == 1
    assert "unknown address" in capsys.readouterr().err
    assert run_cli("send", "--status", "--json", "--port", str(port)) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["macros"][1] == pytest.approx(0.8)
    assert run_cli("send", "--nudge", "2", "-0.25", "--port", str(port)) == 0
    assert run_cli("send", "--nudge", "amount", "0.125", "--port", str(port)) == 0
    capsys.readouterr()
    assert run_cli("send", "--status", "--json", "--port", str(port)) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["macros"][1] == pytest.approx(0.55) and status["amount"] == pytest.approx(0.625)
    assert run_cli("send", "--undo", "--port", str(port)) == 0
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "eqbridge stopped" in err and "Traceback" not in err
    state = tmp / "xdg" / "eqbridge" / "state.json"
    assert state.exists()
    assert sorted(p.name for p in tmp.iterdir()) == ["xdg"]  # nothing written to the working directory


def test_two_signals_back_to_back_still_shut_down_cleanly(served):
    """A service manager's SIGTERM and then a user's (or a timeout's, then a kill's) arrive while
    the first is handled: the daemon still stops, saves and exits 0. (A handler that set a
    threading.Event once hung a daemon this way: it took a lock the interrupted main thread held.)"""
    proc, port, reaper, tmp = served
    assert run_cli("send", "--macro", "1", "0.7", "--port", str(port)) == 0
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "eqbridge stopped" in err and "Traceback" not in err
    assert (tmp / "xdg" / "eqbridge" / "state.json").exists()


def test_send_without_a_daemon_fails_clearly(capsys):
    assert run_cli("send", "warm", "--port", str(free_port()), "--timeout", "0.2") == 1
    assert "no answer" in capsys.readouterr().err


def test_send_that_cannot_leave_this_machine_says_why(capsys):
    """No traceback from sendto: a phrase too big for a datagram (2), a host that does not
    resolve (1, like no answer), a port out of range (argparse's usage error, 2)."""
    assert run_cli("send", "a" * 70_000, "--port", str(free_port())) == 2
    assert "more than one UDP datagram carries" in capsys.readouterr().err
    assert run_cli("send", "--ping", "--host", "nosuch.invalid", "--timeout", "0.2") == 1
    assert "cannot send to nosuch.invalid:" in capsys.readouterr().err  # .invalid never resolves (RFC 2606)
    with pytest.raises(SystemExit) as exc:
        run_cli("send", "--ping", "--port", "70000")
    assert exc.value.code == 2 and "the daemon's OSC port: must be 1..65535, got 70000" in capsys.readouterr().err


def test_send_macro_name_keep_and_teach(served, capsys):
    proc, port, reaper, tmp = served
    from bridge.model import TextToCurve
    assert run_cli("send", "--macro-name", "1", "--port", str(port)) == 0
    assert capsys.readouterr().out.strip() == TextToCurve().knobs.name(1)
    assert run_cli("send", "--keep", "--port", str(port)) == 1
    assert "nothing to keep" in capsys.readouterr().err
    assert run_cli("send", "warm", "--port", str(port)) == 0
    assert run_cli("send", "--macro", "1", "0.7", "--port", str(port)) == 0
    capsys.readouterr()
    assert run_cli("send", "--keep", "--port", str(port)) == 0
    assert capsys.readouterr().out.strip() == "kept: warm"
    assert run_cli("send", "--teach", "my vocal air", "--port", str(port)) == 0
    assert capsys.readouterr().out.strip() == "taught: my vocal air"
    assert run_cli("send", "--status", "--json", "--port", str(port)) == 0
    prof = json.loads(capsys.readouterr().out)["profile"]
    assert prof["error"] is None and prof["kept"] == 1 and prof["taught"] == ["my vocal air"]
    assert prof["path"] == str(tmp / "xdg" / "eqbridge" / "profiles" / "default.sqlite3")


def test_send_refuses_a_phrase_with_any_message_option(capsys):
    """Every message option of `eqbridge send` (bridge.cli.send.OPTIONS, also named in its
    error text) is refused beside a PHRASE, before anything is sent."""
    from bridge.cli.send import OPTIONS
    send_parser = parser()._subparsers._group_actions[0].choices["send"]
    plumbing = {"help", "phrase", "host", "port", "timeout", "no_wait", "json"}
    assert {a.dest for a in send_parser._actions} - plumbing == set(OPTIONS)
    examples = {"amount": ["0.5"], "macro": ["1", "0.5"], "nudge": ["amount", "0.1"], "macro_name": ["1"],
                "teach": ["x"], "bypass": ["1"], "target": ["reaper"]}
    for dest in OPTIONS:
        argv = ["send", "warm", "--" + dest.replace("_", "-"), *examples.get(dest, [])]
        assert run_cli(*argv, "--port", "1") == 2, dest
        assert "give either a PHRASE or one option" in capsys.readouterr().err


def test_send_fails_when_the_daw_cannot_get_the_values(capsys):
    """The daemon accepted the phrase but cannot send to the DAW: a script must not print "ok"."""
    from bridge.config import Config, default_target
    from bridge.daemon import Daemon
    from fakes import FakeModel, fake_fit, fake_load_mapping

    host, port = UNREACHABLE
    cfg = Config(osc_port=0, targets=(default_target("reaper", host=host, port=port, mapping="fake4"),))
    d = Daemon(cfg, model=FakeModel(), fit_curve=fake_fit, load_mapping=fake_load_mapping, persist=False).start()
    try:
        assert run_cli("send", "warm", "--port", str(d.osc_port)) == 1
        captured = capsys.readouterr()
        assert "ok:" not in captured.out
        assert f"error: REAPER OSC {host}:{port}" in captured.err and "not sent" in captured.err
        assert run_cli("send", "--ping", "--port", str(d.osc_port)) == 0
    finally:
        d.stop()
