"""The daemon's memory under abuse: kill -9 during a burst of keeps, two daemons on one profile.

Real `eqbridge serve` processes, real UDP on 127.0.0.1, a real SQLite file. A keep counts as
acknowledged when `/eqbridge/kept` arrived; after kill -9 every acknowledged keep must be in the file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from peers import ReaperPeer, UdpPeer

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["warm", "bright", "muddy", "harsh", "airy", "boomy", "thin", "dark", "crisp", "soft"]


def start_daemon(tmp: Path, profile_dir: Path, reaper: ReaperPeer) -> tuple[subprocess.Popen, tuple]:
    probe = UdpPeer()
    port = probe.port
    probe.close()
    env = dict(os.environ, XDG_DATA_HOME=str(tmp / "xdg"), EQBRIDGE_PROFILE_DIR=str(profile_dir),
               PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--osc-port", str(port),
                             "--reaper", f"127.0.0.1:{reaper.port}"],
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = UdpPeer()
    for _ in range(240):  # up to a minute for a cold start; no timing threshold in the test itself
        if proc.poll() is not None:
            pytest.fail(f"eqbridge serve exited: {proc.stderr.read()[-2000:]}")
        client.clear()
        client.send(("127.0.0.1", port), "/eqbridge/ping")
        if client.wait_address("/eqbridge/pong", timeout=0.25):
            break
    else:
        proc.kill()
        pytest.fail("eqbridge serve did not answer pings")
    client.close()
    return proc, ("127.0.0.1", port)


def kept_phrases(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT phrase FROM events WHERE kind = 'keep'").fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def keep_burst(client: UdpPeer, daemon: tuple, tag: str, n: int) -> None:
    """Each phrase is answered before it is kept (a burst of phrases would coalesce to the last);
    keeps are not waited for, so they are in flight when the daemon dies."""
    for i in range(n):
        client.send(daemon, "/eqbridge/text", f"{WORDS[i % len(WORDS)]} and {tag}{chr(97 + i % 26)}{i}")
        assert len(client.wait_address("/eqbridge/curve", n=i + 1, timeout=30)) >= i + 1
        client.send(daemon, "/eqbridge/keep")


def acknowledged(client: UdpPeer) -> set[str]:
    return {str(r.args[0]) for r in client.received if r.address == "/eqbridge/kept"}


def test_kill_9_during_a_burst_of_keeps_loses_no_acknowledged_keep(tmp_path):
    reaper, client = ReaperPeer(), UdpPeer()
    profiles = tmp_path / "profiles"
    proc, daemon = start_daemon(tmp_path, profiles, reaper)
    try:
        keep_burst(client, daemon, "x", 40)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        acked = acknowledged(client)
        assert len(acked) >= 10
        stored = kept_phrases(profiles / "default.sqlite3")
        assert acked <= {p for p in stored}, acked - stored
    finally:
        if proc.poll() is None:
            proc.kill()
        reaper.close()
        client.close()


def test_two_daemons_on_one_profile_do_not_corrupt_it(tmp_path):
    reaper_a, reaper_b = ReaperPeer(), ReaperPeer()
    client_a, client_b = UdpPeer(), UdpPeer()
    profiles = tmp_path / "profiles"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    proc_a, daemon_a = start_daemon(tmp_path / "a", profiles, reaper_a)
    proc_b, daemon_b = start_daemon(tmp_path / "b", profiles, reaper_b)
    try:
        keep_burst(client_a, daemon_a, "a", 30)
        keep_burst(client_b, daemon_b, "b", 30)
        client_a.wait_address("/eqbridge/kept", n=30, timeout=120)
        client_b.wait_address("/eqbridge/kept", n=30, timeout=120)
        acked = acknowledged(client_a) | acknowledged(client_b)
        assert len(acked) == 60
        for proc in (proc_a, proc_b):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        assert kept_phrases(profiles / "default.sqlite3") == acked
    finally:
        for proc in (proc_a, proc_b):
            if proc.poll() is None:
                proc.kill()
        for peer in (reaper_a, reaper_b, client_a, client_b):
            peer.close()
