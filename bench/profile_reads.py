"""What a user's profile adds to a phrase's answer, as the profile grows.

The daemon logs an answer event for every phrase (on its profile thread), and the next phrase
reads the profile's in-memory index (taught names, kept phrases) inside TextToCurve.curve. Here,
for profiles of 0, 200 and 2000 kept phrases in a real SQLite file: record an answer, then time
the real model's curve for a new phrase, as the daemon does, two ways in the same run, phrases
interleaved:
  - now: an answer event leaves the index as it is (bridge.profile.INDEXED_KINDS);
  - baseline: the index is dropped after the write, as every write did before, so the phrase
    rebuilds it (decoding every kept phrase's embedding).
Then a read while another process holds the profile's write lock and the daemon's writer waits
for it (busy_timeout, 5 s): how long a phrase's profile read waits, now and before (the baseline
takes the lock as reads did before).

    python bench/profile_reads.py [--phrases 200]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bridge_latency import phrases  # noqa: E402

from bridge.model import TextToCurve  # noqa: E402
from bridge.profile import ProfileStore  # noqa: E402

SIZES = (0, 200, 2000)


def pct(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):7.3f} ms  p99 {np.percentile(ms, 99):7.3f} ms"


def filled_store(path: Path, n: int, model: TextToCurve) -> ProfileStore:
    """A profile with n kept phrases (their real embeddings; curves near the crowd's)."""
    store = ProfileStore(path)
    rng = np.random.default_rng(n)
    for ph in phrases(n + 1)[1:]:
        emb = model.phrase_embedding(ph)
        store.keep(ph, emb, model.curve(ph).gains_db + rng.normal(0, 1, 40))
    return store


def answer_times(model: TextToCurve, store: ProfileStore, asked: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"now": [], "baseline": []}
    for i, ph in enumerate(asked):
        way = "now" if i % 2 == 0 else "baseline"
        store.record_answer(ph, None, np.zeros(40))  # what the daemon's profile thread writes
        if way == "baseline":
            store._index = None  # before: every write dropped the index
        t0 = time.perf_counter()
        model.curve(ph)
        out[way].append((time.perf_counter() - t0) * 1000.0)
    return out


def read_during_held_write(store: ProfileStore, model: TextToCurve, hold_s: float = 0.3) -> dict[str, float]:
    """ms a phrase's curve waits while the daemon's writer is stuck behind another process's
    write lock, which that process keeps for `hold_s`."""
    out = {}
    for way in ("now", "baseline"):
        other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(hold_s, lambda: (other.execute("ROLLBACK"), other.close()))
        release.start()
        writer = threading.Thread(target=store.record_answer, args=("held", None, np.zeros(40)))
        writer.start()
        time.sleep(hold_s / 3)  # the writer is in BEGIN IMMEDIATE, holding the store's connection
        t0 = time.perf_counter()
        if way == "baseline":
            with store._lock:  # reads took the connection's lock before
                model.curve("warm and bright")
        else:
            model.curve("warm and bright")
        out[way] = (time.perf_counter() - t0) * 1000.0
        writer.join()
        release.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phrases", type=int, default=200)
    a = ap.parse_args()
    model = TextToCurve()
    asked = phrases(2 * a.phrases + 2500)[2500:]  # not among the kept ones
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            store = filled_store(Path(tmp) / f"p{n}.sqlite3", n, model)
            model.profile = store
            model.curve("warm")  # the index built once, the encoder warm
            t = answer_times(model, store, asked)
            print(f"{n:5d} kept phrases: phrase after an answer event  now {pct(t['now'])}   "
                  f"baseline (index rebuilt) {pct(t['baseline'])}   (n={len(t['now'])} each)")
            if n == SIZES[-1]:
                w = read_during_held_write(store, model)
                print(f"      while a write waits for another process's lock (held 300 ms): the phrase "
                      f"waited now {w['now']:.3f} ms, baseline {w['baseline']:.3f} ms")
            model.profile = None
            store.close()


if __name__ == "__main__":
    main()
