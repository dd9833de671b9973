"""The daemon with the real model, fitter and a real profile (SQLite in tmp_path), over loopback UDP:
latent macro knobs and their names, keep / teach / undo, a restart, and a corrupt profile."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from bridge.config import Config, default_target
from bridge.daemon import Daemon
from peers import ReaperPeer, UdpPeer



@pytest.fixture(scope="module")
def real():
    try:
        from bridge.fit import fit_curve
        from bridge.mapping import load_mapping
        from bridge.model import TextToCurve
        model = TextToCurve()
        model.knobs  # noqa: B018 - the latent knob files must be there too
        load_mapping("reaper-reaeq")
    except Exception as exc:  # pragma: no cover
        pytest.skip(f"real model/mapping/fit unavailable: {exc}")
    return TextToCurve, fit_curve, load_mapping


class Rig:
    def __init__(self, real, state_dir, model=None):
        TextToCurve, fit_curve, load_mapping = real
        self.reaper = ReaperPeer()
        cfg = Config(osc_port=0, targets=(default_target("reaper", port=self.reaper.port, mapping="reaper-reaeq",
                                                         min_interval_ms=0.0),))
        self.model = model or TextToCurve()
        self.d = Daemon(cfg, model=self.model, fit_curve=fit_curve, load_mapping=load_mapping,
                        state_dir=state_dir).start()
        self.client = UdpPeer()
        self.dest = ("127.0.0.1", self.d.osc_port)

    def send(self, address, *args, expect="/eqbridge/params"):
        """Send and wait for the next `expect` (or an error); returns that message."""
        c = self.client
        n = len(c.wait_address(expect, n=0, timeout=0))
        e = len(c.wait_address("/eqbridge/error", n=0, timeout=0))
        c.send(self.dest, address, *args)
        c.wait_for(lambda rs: sum(r.address == expect for r in rs) > n
                   or sum(r.address == "/eqbridge/error" for r in rs) > e, timeout=20)
        errs = c.wait_address("/eqbridge/error", n=0, timeout=0)
        if len(errs) > e:
            raise AssertionError(f"{address}: refused: {errs[-1].args}")
        got = c.wait_address(expect, n=0, timeout=0)
        assert len(got) > n, f"no {expect} after {address}"
        return got[-1]

    def curve(self):
        return np.array(self.client.wait_address("/eqbridge/curve")[-1].args)

    def status(self):
        return json.loads(self.send("/eqbridge/status", expect="/eqbridge/status").args[0])

    def close(self):
        self.d.stop()
        self.client.close()
        self.reaper.close()


@pytest.fixture
def rig(real, tmp_path):
    r = Rig(real, tmp_path / "state")
    yield r
    r.close()


def test_macro_names_come_from_the_models_knobs(rig):
    knobs = rig.model.knobs
    for n in range(1, knobs.count + 1):
        got = rig.send(f"/eqbridge/macro/{n}/name", expect=f"/eqbridge/macro/{n}/name")
        assert got.args == [knobs.name(n)]
    rig.client.send(rig.dest, f"/eqbridge/macro/{knobs.count + 1}/name")
    assert "unknown address" in rig.client.wait_address("/eqbridge/error")[-1].args[0]
    st = rig.status()
    assert st["macro_knobs"] == "latent" and st["macro_names"] == [knobs.name(n) for n in range(1, knobs.count + 1)]
    assert st["profile"]["error"] is None and st["profile"]["path"].startswith(str(rig.d.state_dir))


def test_a_macro_is_the_models_knob_relative_to_the_phrase(rig):
    rig.send("/eqbridge/text", "warm")
    base = rig.curve()
    rig.send("/eqbridge/macro/2", 0.8)
    want = rig.model.knobs.apply(rig.model.curve("warm", 0.5).gains_db, {2: 0.8})
    assert np.allclose(rig.curve(), want, atol=1e-4)
    assert not np.allclose(rig.curve(), base, atol=0.1)
    rig.send("/eqbridge/text", "bright")  # a new answer: the knobs start at 0.5 again
    assert rig.status()["macros"] == [0.5] * rig.model.knobs.count


def test_turning_macro_1_across_its_range_is_smooth(rig):
    rig.send("/eqbridge/text", "warm")
    curves, bands = [], []
    for v in np.linspace(0.0, 1.0, 21):
        rig.send("/eqbridge/macro/1", float(v))
        curves.append(rig.curve())
        bands.append(rig.d.last_bands)  # the settings the params just sent came from
    curves = np.array(curves)
    assert np.ptp(curves[:, 0] - curves[:, -1]) > 3.0  # the knob does something
    step_db = np.max(np.abs(np.diff(curves, axis=0)))
    assert step_db < 2.0, f"the curve jumps {step_db:.2f} dB in one step"
    freqs = np.log2(np.array([[b.freq_hz for b in fit] for fit in bands]))
    step_oct = np.max(np.abs(np.diff(freqs, axis=0)), axis=0)
    assert np.all(step_oct <= 1.0), f"a band frequency moves {step_oct.max():.2f} octaves in one step"


def test_a_kept_phrase_comes_back_as_kept_after_a_restart(real, tmp_path):
    state = tmp_path / "state"
    r = Rig(real, state)
    try:
        r.send("/eqbridge/text", "warm")
        crowd = r.curve()
        r.send("/eqbridge/amount", 0.7)
        r.send("/eqbridge/macro/1", 0.85)
        final = r.curve()
        assert np.max(np.abs(final - crowd)) > 1.0
        assert r.send("/eqbridge/keep", expect="/eqbridge/kept").args == ["warm"]
        assert r.status()["profile"]["kept"] == 1
    finally:
        r.close()
    with sqlite3.connect(state / "profiles" / "default.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kinds = [k for (k,) in db.execute("SELECT kind FROM events ORDER BY id")]
    assert kinds.count("keep") == 1 and "answer" in kinds
    r = Rig(real, state)  # a new process's worth: new model, new daemon, same profile dir
    try:
        r.send("/eqbridge/text", "bright")
        r.send("/eqbridge/text", "warm")
        assert np.allclose(r.curve(), final, atol=1e-4)
        assert r.model.curve("warm", 0.7).personal.startswith("kept by you")
    finally:
        r.close()


def test_a_taught_name_works_inside_a_phrase(rig):
    rig.send("/eqbridge/text", "bright and airy")
    rig.send("/eqbridge/macro/2", 0.3)
    taught = rig.curve()
    assert rig.send("/eqbridge/teach", "my vocal air", expect="/eqbridge/taught").args == ["my vocal air"]
    rig.send("/eqbridge/text", "my vocal air but less harsh")
    ans = rig.model.curve("my vocal air but less harsh", 0.5)
    assert [t.source for t in ans.terms][0] == "taught"
    assert np.allclose(rig.curve(), ans.gains_db, atol=1e-4)
    rig.send("/eqbridge/text", "my vocal air")
    assert np.allclose(rig.curve(), taught, atol=1e-4)


def test_bad_profile_input_is_refused_and_the_daemon_keeps_running(rig):
    rig.client.send(rig.dest, "/eqbridge/keep")
    assert "nothing to keep" in rig.client.wait_address("/eqbridge/error")[-1].args[0]
    rig.client.send(rig.dest, "/eqbridge/teach", "vocal air")
    assert "nothing to teach" in rig.client.wait_address("/eqbridge/error", n=2)[-1].args[0]
    rig.send("/eqbridge/text", "warm")
    rig.client.send(rig.dest, "/eqbridge/teach", "air but less harsh")
    assert "cannot teach the name" in rig.client.wait_address("/eqbridge/error", n=3)[-1].args[0]
    rig.client.send(rig.dest, "/eqbridge/teach")
    assert "takes 1 argument" in rig.client.wait_address("/eqbridge/error", n=4)[-1].args[0]
    assert rig.send("/eqbridge/ping", expect="/eqbridge/pong")


def test_undoing_a_kept_phrase_is_weak_negative_evidence(rig):
    rig.send("/eqbridge/text", "warm")
    rig.send("/eqbridge/keep", expect="/eqbridge/kept")
    rig.send("/eqbridge/undo")
    store = rig.d.profile.store
    rig.client.wait_for(lambda rs: store.events(kind="undo"), timeout=10)
    assert [e["phrase"] for e in store.events(kind="undo")] == ["warm"]
    assert store.kept_entry("warm").evidence == pytest.approx(0.5)


@pytest.mark.parametrize("damage", ["garbage", "newer-schema"])
def test_an_unusable_profile_is_reported_and_never_touched(real, tmp_path, damage):
    state = tmp_path / "state"
    path = state / "profiles" / "default.sqlite3"
    path.parent.mkdir(parents=True)
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE future (x)")
            db.execute("PRAGMA user_version = 99")
        db.close()
    before = path.read_bytes()
    listing = sorted(p.name for p in path.parent.iterdir())
    r = Rig(real, state)
    try:
        assert r.send("/eqbridge/ping", expect="/eqbridge/pong")
        st = r.status()
        assert st["profile"]["error"] and ("not an SQLite" in st["profile"]["error"]
                                            or "newer" in st["profile"]["error"])
        r.send("/eqbridge/text", "warm")  # phrases still work, unpersonalised
        r.client.send(r.dest, "/eqbridge/keep")
        assert "no profile in use" in r.client.wait_address("/eqbridge/error")[-1].args[0]
    finally:
        r.close()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == listing  # no -wal, no -shm, nothing new
