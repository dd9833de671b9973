"""The user's profile: durable keeps, safe opening, migrations, concurrency, export/import, forget,
and personalization (exact with synthetic unit-vector embeddings)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.cli import main as cli_main
from bridge.errors import EqBridgeError, ProfileError
from bridge.personalize import personal_weight, personalize, phrase_embedding, taught_curve
from bridge.profile import (MIGRATIONS, SCHEMA_VERSION, ProfileStore, list_profiles, open_profile,
                            profile_path, profiles_dir)
from bridge.text import Term
from peers import wait_until

ROOT = Path(__file__).resolve().parents[1]
DIM = 384


def unit(i, j=None, t=0.0):
    """A unit vector: e_i, or cos(t) e_i + sin(t) e_j (cosine with e_i is exactly cos(t))."""
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    if j is not None:
        v[i], v[j] = np.cos(t), np.sin(t)
    return v


def curve(value):
    return np.full(40, float(value))


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ------------------------------------------------------------------ basics and restart

def test_keep_survives_reopen(tmp_path):
    path = tmp_path / "p.sqlite3"
    rising = np.linspace(-3, 3, 40)
    with ProfileStore(path) as store:
        store.record_answer("Warm", unit(0), curve(1), 0.5, "reaeq")
        store.keep("Warm ", unit(0), rising, 0.5, "reaeq")
    with ProfileStore(path) as store:  # "after a restart"
        assert np.array_equal(store.kept("warm"), rising)
        assert store.kept("cold") is None
        assert store.counts()["answer"] == 1
        store.keep("warm", unit(0), curve(2), 0.5, "reaeq")
        assert np.array_equal(store.kept("WARM"), curve(2))  # the latest keep wins
        assert store.kept_entry("warm").keeps == 2


def test_migrations_set_user_version_and_wal(tmp_path):
    path = tmp_path / "p.sqlite3"
    with ProfileStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS) >= 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "taught"} <= tables
    conn.close()
    ProfileStore(path).close()  # reopening an up-to-date file migrates nothing


def test_newer_schema_is_refused_and_untouched(tmp_path):
    path = tmp_path / "p.sqlite3"
    with ProfileStore(path) as store:
        store.keep("warm", unit(0), curve(1))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode = DELETE")  # leave a single self-contained file
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ProfileError, match="newer"):
        ProfileStore(path)
    assert path.read_bytes() == before


def test_corrupt_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "p.sqlite3"
    garbage = np.random.default_rng(0).bytes(8192)
    path.write_bytes(garbage)
    with pytest.raises(ProfileError, match="not an SQLite database"):
        ProfileStore(path)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.sqlite3"]  # no -wal/-shm created


def test_damaged_pages_are_refused_and_untouched(tmp_path):
    path = tmp_path / "p.sqlite3"
    with ProfileStore(path) as store:
        for i in range(300):
            store.keep(f"phrase {chr(97 + i % 26)} {i}", unit(i % DIM), curve(i % 7))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page: 3 * page] = b"\xa5" * page  # a valid header, a trashed b-tree page
    path.write_bytes(bytes(data))
    with pytest.raises(ProfileError):
        ProfileStore(path)
    assert path.read_bytes() == bytes(data)


# ------------------------------------------------------------------ durability and concurrency

WRITER = r"""
import sys
import numpy as np
from pathlib import Path
from bridge.profile import ProfileStore
path, tag, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
emb = np.ones(384, dtype=np.float32) / np.sqrt(384)
with ProfileStore(path) as store:
    for i in range(n):
        phrase = f"{tag} {i}"
        store.keep(phrase, emb, np.full(40, float(i)), 0.5, "reaeq")
        sys.stdout.write(phrase + "\n")   # acknowledged: printed only after the commit returned
        sys.stdout.flush()
"""


def test_kill_9_during_keeps_loses_no_acknowledged_keep(tmp_path):
    path = tmp_path / "p.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "burst", "1000000"],
                            stdout=subprocess.PIPE, text=True, env=subprocess_env())
    acked = []
    deadline = time.monotonic() + 120
    while len(acked) < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()  # lines printed between our last read and the kill were acknowledged too
    proc.wait()
    acked += [line for line in rest.splitlines() if line.strip()]
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 200
    conn = sqlite3.connect(path)  # straight SQLite, as a fresh process after the crash would
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {r[0] for r in conn.execute("SELECT phrase FROM events WHERE kind = 'keep'")}
    conn.close()
    assert set(acked) <= stored
    with ProfileStore(path) as store:
        assert store.integrity_check() == "ok"
        assert np.array_equal(store.kept(acked[-1]), np.full(40, float(len(acked) - 1)))


def test_two_processes_on_one_profile(tmp_path):
    path = tmp_path / "p.sqlite3"
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=subprocess_env()) for tag in ("alpha", "beta")]
    with ProfileStore(path) as store:  # a third writer in this process, at the same time
        for i in range(50):
            store.keep(f"gamma {i}", unit(1), curve(i))
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert len(out.split("\n")) - 1 == n
    with ProfileStore(path) as store:
        assert store.integrity_check() == "ok"
        phrases = {e["phrase"] for e in store.events(kind="keep")}
    assert phrases == {f"{t} {i}" for t in ("alpha", "beta") for i in range(n)} | {f"gamma {i}" for i in range(50)}


def test_the_answer_logged_per_phrase_does_not_rebuild_the_index(tmp_path, monkeypatch):
    """The index holds keeps, undos and taught names; rebuilding it decodes every kept phrase
    (tens of ms for thousands), so the answer event written after each phrase must leave it."""
    builds = []
    real = ProfileStore._build_index
    monkeypatch.setattr(ProfileStore, "_build_index", staticmethod(lambda conn: builds.append(1) or real(conn)))
    with ProfileStore(tmp_path / "p.sqlite3") as store:
        store.keep("warm", unit(0), curve(1))
        assert store.taught_names() == frozenset() and len(builds) == 1
        for i in range(5):
            store.record_answer(f"bright {i}", unit(1), curve(i))
            assert store.has_kept() and store.kept("warm") is not None
        assert len(builds) == 1
        store.undo("warm")
        assert store.kept_entry("warm").undos == 1 and len(builds) == 2
        store.teach("my air", curve(3))
        assert "my air" in store.taught_names() and len(builds) == 3


def held_elsewhere(lock) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


def test_reads_do_not_wait_for_a_write_held_up_by_another_process(tmp_path):
    """Another process holds the write lock (an import): the daemon's profile writer waits for
    it (busy_timeout) holding the connection, and a phrase's reads meanwhile take the index as
    it stands instead of waiting with it. The write lands once the lock is free."""
    path = tmp_path / "p.sqlite3"
    with ProfileStore(path) as store:
        store.keep("warm", unit(0), curve(1))
        assert store.has_kept()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        writer = threading.Thread(target=store.keep, args=("dark", unit(1), curve(2)))
        writer.start()
        assert wait_until(lambda: held_elsewhere(store._lock))  # the writer is in BEGIN IMMEDIATE
        reader = threading.Thread(target=lambda: (store.taught_names(), store.kept("warm"), store.neighbours(unit(0))))
        reader.start()
        reader.join(timeout=2.0)  # the writer waits up to BUSY_TIMEOUT_MS (5 s)
        assert not reader.is_alive()
        assert writer.is_alive()
        other.execute("ROLLBACK")
        other.close()
        writer.join(timeout=10)
        assert np.array_equal(store.kept("dark"), curve(2))


# ------------------------------------------------------------------ export, import, forget, names

def test_export_import_round_trip(tmp_path):
    with ProfileStore(tmp_path / "a.sqlite3") as a:
        a.record_answer("warm", unit(0), curve(1), 0.5, "reaeq")
        a.keep("warm", unit(0), curve(2), 0.5, "reaeq", answer=curve(1))
        a.undo("bright", unit(1), curve(3), 0.7, "eq_eight")
        a.teach("My Vocal Air", np.linspace(0, 4, 40))
        data = json.loads(json.dumps(a.export_json()))  # really through JSON text
    with ProfileStore(tmp_path / "b.sqlite3") as b:
        assert b.import_json(data) == {"events": 3, "taught": 1}
        assert b.import_json(data) == {"events": 0, "taught": 0}  # merge is idempotent
        assert b.export_json() == data
        assert np.array_equal(b.kept("warm"), curve(2))
        assert np.array_equal(b.taught("my vocal air"), np.linspace(0, 4, 40))
        (ev,) = b.events("warm", "keep")
        assert ev["embedding"].dtype == np.float32 and np.array_equal(ev["embedding"], unit(0))
    with pytest.raises(ProfileError):
        ProfileStore(tmp_path / "c.sqlite3").import_json({"format": "something else"})


def test_forget(tmp_path):
    with ProfileStore(tmp_path / "p.sqlite3") as store:
        store.keep("warm", unit(0), curve(1))
        store.undo("warm")
        store.keep("bright", unit(1), curve(2))
        store.teach("my vocal air", curve(3))
        assert store.forget("WARM") == 2
        assert store.kept("warm") is None and store.kept("bright") is not None
        assert store.forget("my vocal air") == 1 and store.taught("my vocal air") is None
        store.teach("air", curve(3))
        store.forget()
        assert store.counts() == {"answer": 0, "keep": 0, "undo": 0, "taught": 0}
        assert store.neighbours(unit(1), 3) == [] and store.taught_names() == frozenset()


def test_profile_location_and_names(tmp_path, monkeypatch):
    monkeypatch.setenv("EQBRIDGE_PROFILE_DIR", str(tmp_path / "profiles"))
    assert profiles_dir() == tmp_path / "profiles"
    monkeypatch.delenv("EQBRIDGE_PROFILE_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert profiles_dir() == tmp_path / "xdg" / "eqbridge" / "profiles"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # ignored, never the cwd
    assert profiles_dir() == Path.home() / ".local" / "share" / "eqbridge" / "profiles"
    monkeypatch.setenv("EQBRIDGE_PROFILE_DIR", "relative")
    with pytest.raises(ProfileError):
        profiles_dir()
    for bad in ("../x", "a/b", "", ".hidden", "x" * 65, "a b", "-x"):
        with pytest.raises(ProfileError):
            profile_path(bad, tmp_path)
    with open_profile("studio-b", tmp_path):
        pass
    with open_profile("default", tmp_path):
        pass
    assert list_profiles(tmp_path) == ["default", "studio-b"]
    with pytest.raises(ProfileError):
        open_profile("missing", tmp_path, create=False)


def test_bad_input_is_a_profile_error(tmp_path):
    with ProfileStore(tmp_path / "p.sqlite3") as store:
        with pytest.raises(ProfileError):
            store.keep("warm", unit(0), np.ones(39))
        with pytest.raises(ProfileError):
            store.keep("warm", unit(0), curve(np.nan))
        with pytest.raises(ProfileError):
            store.teach("warm but less harsh", curve(1))  # two descriptors cannot be one name
        with pytest.raises(EqBridgeError):
            store.keep("", unit(0), curve(1))
    with pytest.raises(ProfileError, match="closed"):
        store.kept("warm")


def test_cli(tmp_path, capsys):
    d = str(tmp_path)
    with open_profile("default", tmp_path) as store:
        store.keep("warm", unit(0), curve(1), 0.5, "reaeq")
    assert cli_main(["profile", "--dir", d, "list"]) == 0
    assert "default" in capsys.readouterr().out
    assert cli_main(["profile", "--dir", d, "show", "default", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"][0]["phrase"] == "warm"
    out = tmp_path / "export.json"
    assert cli_main(["profile", "--dir", d, "export", "default", "-o", str(out)]) == 0
    assert cli_main(["profile", "--dir", d, "import", str(out), "--name", "copy"]) == 0
    with open_profile("copy", tmp_path) as store:
        assert np.array_equal(store.kept("warm"), curve(1))
    assert cli_main(["profile", "--dir", d, "forget", "copy", "--phrase", "warm", "--yes"]) == 0
    with open_profile("copy", tmp_path) as store:
        assert store.kept("warm") is None
    assert cli_main(["profile", "--dir", d, "show", "../etc"]) == 2


# ------------------------------------------------------------------ personalization

def test_kept_phrase_comes_back_as_kept(tmp_path):
    with ProfileStore(tmp_path / "p.sqlite3") as store:
        mine = np.linspace(-2, 5, 40)
        store.keep("warm", unit(0), mine)
        out, why = personalize("warm", unit(0), curve(9), store)
        assert np.array_equal(out, mine) and "kept by you" in why
        store.undo("warm")  # one undo: weak, the keep still stands (evidence 0.5)
        assert np.array_equal(personalize("warm", unit(0), curve(9), store)[0], mine)
        store.undo("warm")  # two undos use up one keep: back to the crowd
        out, why = personalize("warm", unit(0), curve(9), store)
        assert np.array_equal(out, curve(9)) and "crowd" in why


def test_near_phrase_is_pulled_more_with_more_evidence(tmp_path):
    crowd, mine = curve(0), curve(10)
    near = unit(0, 1, 0.3)  # cosine 0.955 with unit(0)
    pulls = []
    with ProfileStore(tmp_path / "p.sqlite3") as store:
        for keeps in (1, 2, 3):
            store.keep("toasty", unit(0), mine)
            out, why = personalize("warm", near, crowd, store)
            w = personal_weight([(float(np.cos(0.3)), keeps)])
            assert np.allclose(out, w * mine) and "toasty" in why
            pulls.append(float(out[0]))
        assert 0 < pulls[0] < pulls[1] < pulls[2] < 10
        # an unrelated phrase (orthogonal) is not pulled; nor is a phrase below the threshold
        assert np.array_equal(personalize("muddy", unit(5), crowd, store)[0], crowd)
        assert np.array_equal(personalize("cold", unit(0, 1, np.arccos(0.6)), crowd, store)[0], crowd)
        # undo is weak negative evidence: it lowers the pull but does not erase three keeps
        store.undo("toasty")
        assert 0 < personalize("warm", near, crowd, store)[0][0] < pulls[2]


def test_phrase_embedding_keeps_sign_and_drops_size():
    table = {"warm": unit(0), "harsh": unit(1)}
    e = table.__getitem__
    assert np.allclose(phrase_embedding("a bit warm", e), unit(0))
    assert np.allclose(phrase_embedding("less warm", e), -unit(0))
    assert np.isclose(float(phrase_embedding("warm but less harsh", e) @ unit(0)), 1 / np.sqrt(2))
    assert phrase_embedding("more", e) is None


def test_taught_names_work_as_words(tmp_path):
    with ProfileStore(tmp_path / "p.sqlite3") as store:
        assert taught_curve(Term("my vocal air", 1.0), store) is None
        stored = store.teach("My  Vocal Air", np.linspace(0, 3, 40))
        assert stored == "my vocal air" and store.taught_names() == {"my vocal air"}
        assert np.array_equal(taught_curve(Term("my vocal air", -1.0), store), np.linspace(0, 3, 40))
        assert np.array_equal(taught_curve("My Vocal Air", store), np.linspace(0, 3, 40))
        assert taught_curve("harsh", store) is None and taught_curve("x", None) is None
    with ProfileStore(tmp_path / "p.sqlite3") as again:  # other processes' teaching is seen too
        assert again.taught_names() == {"my vocal air"}
