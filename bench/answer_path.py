"""Where a knob answer's time goes, step by step, and the floor a wake-up sets on this machine.

1. In one process, with the real model, mapping (reaper-reaeq) and fitter: the steps from a
   datagram to the REAPER messages (to a socket read by a process of its own, as REAPER's OSC
   thread reads its socket: a reader in this process would take the GIL), each timed on its
   own, two ways in the same run, moves interleaved: as the daemon answered before (python-osc parse, address
   match + argument check, session update, the tangent's full active-set solve, host values, 12
   datagrams) and as it answers now (decode_knob, the knobs after the move, the tangent's line
   for one knob, host values, one OSC bundle; the session is updated after the send).
   First back to back (warm caches), then with an idle gap before every move, as a hand on a
   knob gives (the daemon's real situation).
2. What a garbage collection costs in the started daemon, with the objects loaded at start in
   the collector's sight and frozen (gc.freeze, as Daemon.start does now).
3. A ping/pong round trip to `eqbridge serve` over loopback, back to back and with the same idle
   gaps: the cost of two wake-ups, which no code on the answer path can remove.

    python bench/answer_path.py [--moves 300] [--gap-ms 50]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from pythonosc.osc_packet import OscPacket  # noqa: E402

from bridge.config import Config, default_target  # noqa: E402
from bridge.daemon import Daemon  # noqa: E402
from bridge.osc_in import BY_PATH, check_args, decode_knob, knob_table  # noqa: E402
from bridge.session import Event  # noqa: E402
from peers import build, free_port, wait_until  # noqa: E402

READER = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', 0))\n"
          "print(s.getsockname()[1], flush=True)\nwhile True:\n    s.recv(65535)\n")
"""The REAPER side: a process that reads every datagram (and does nothing with it)."""
STEPS = ("parse", "address + arguments", "session update", "tangent step", "host values", "encode + 12 datagrams")
SHORTCUT_STEPS = ("decode (bytes -> event)", "knobs after the move", "tangent line", "host values",
                  "encode + 1 OSC bundle")


def answer_steps(d: Daemon, value: float) -> list[float]:
    """One knob move through the answer path as it was (python-osc parse, argument checks, the
    session updated first, the tangent's full active-set solve), each step timed (seconds)."""
    t = [time.perf_counter()]
    msg = OscPacket(build("/eqbridge/macro/1", value)).messages[0].message
    t.append(time.perf_counter())
    addr = BY_PATH[msg.address]
    ev = Event(addr.event, addr.fixed[:1] + check_args(addr, list(msg.params)), None, "bench")
    t.append(time.perf_counter())
    d.session.apply(ev)
    t.append(time.perf_counter())
    k, b = d.session.state.knobs, d._tangent.knobs
    bands = d._tangent.tangent.settings([k.amount - b.amount] + [m - m0 for m, m0 in zip(k.macros, b.macros)])
    t.append(time.perf_counter())
    params = d.active.mapping.host_params(bands)
    t.append(time.perf_counter())
    d.active.output.bundle = False  # one datagram per parameter, as before
    d.active.output.submit(params)
    t.append(time.perf_counter())
    return list(np.diff(t))


def shortcut_steps(d: Daemon, value: float, table: dict) -> list[float]:
    """The same move as the daemon answers it now (bridge.osc_in.decode_knob, then
    Daemon._send_knob_first: the tangent's line, sent before the session catches up)."""
    dgram = build("/eqbridge/macro/1", value)
    t = [time.perf_counter()]
    kind, args = decode_knob(dgram, table)
    ev = Event(kind, args, None, "bench")
    t.append(time.perf_counter())
    knobs, _ = d.session.moved_knobs(ev)
    t.append(time.perf_counter())
    bands, _ = d._tangent_bands(knobs)
    t.append(time.perf_counter())
    params = d.active.mapping.host_params(bands)
    t.append(time.perf_counter())
    d.active.output.bundle = True  # the REAPER target's default now
    d.active.output.submit(params)
    t.append(time.perf_counter())
    d.session.apply(ev)  # after the send, as in the daemon (not timed)
    return list(np.diff(t))


def _table(label: str, names: tuple, rows: list) -> None:
    a = np.array(rows) * 1000
    print(f"{label}: p50 / p99 ms per step")
    for j, name in enumerate(names):
        print(f"  {name:26s} {np.percentile(a[:, j], 50):6.3f} / {np.percentile(a[:, j], 99):6.3f}")
    total = a.sum(axis=1)
    print(f"  {'total to the last send':26s} {np.percentile(total, 50):6.3f} / {np.percentile(total, 99):6.3f}")


@contextmanager
def started_daemon() -> Iterator[Daemon]:
    """An in-process daemon (real model, reaper-reaeq, fitter) answering "warm", its tangent built,
    sending to a reader in another process (READER)."""
    sink = subprocess.Popen([sys.executable, "-c", READER], stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline())
    cfg = Config(osc_port=0, targets=(default_target("reaper", port=port, mapping="reaper-reaeq",
                                                     min_interval_ms=0.0),))
    d = Daemon(cfg, persist=False)
    d.start()
    try:
        d.submit(Event("text", ("warm",), None, "bench"))
        if not wait_until(lambda: d._tangent is not None, timeout=10):
            raise SystemExit("the daemon built no tangent")
        yield d
    finally:
        d.stop()
        sink.kill()
        sink.wait()


def in_process(moves: int, gap_s: float) -> None:
    with started_daemon() as d:
        table = knob_table(d.osc.addresses)
        for label, gap in (("back to back", 0.0), (f"after {gap_s * 1000:.0f} ms idle", gap_s)):
            rows: dict[str, list] = {"before": [], "now": []}
            for i in range(moves):
                for which in ("before", "now"):  # interleaved: both see the same machine
                    if gap:
                        time.sleep(gap)
                    with d._engine_lock:  # the engine must not polish meanwhile
                        v = 0.5 + 0.001 * (i % 40) + (0.0005 if which == "now" else 0.0)
                        rows[which].append(answer_steps(d, v) if which == "before" else shortcut_steps(d, v, table))
                        d._settle_at = None
            _table(f"{label}, as before (full parse, session first, full solve)", STEPS, rows["before"])
            _table(f"{label}, now (decode_knob, send first, tangent line)", SHORTCUT_STEPS, rows["now"])


def collector_pauses() -> None:
    """What a cyclic-GC collection costs in a started daemon (model, mapping and fitter loaded)
    after serving 3 phrases and 60 knob moves, with everything loaded at start kept in the
    collector's sight (as before) and frozen (Daemon.start now)."""
    import gc
    with started_daemon() as d:
        for label in ("start-up objects in sight (before)", "start-up objects frozen (now)"):
            if label.endswith("(before)"):
                gc.unfreeze()
            else:
                gc.collect()
                gc.freeze()
            for i, phrase in enumerate(("bright", "less muddy", "warm and airy")):  # serve a little first
                with d._engine_lock:
                    d.process([Event("text", (phrase,), None, "bench")])
                    for j in range(20):
                        d.process([Event("macro", (1, 0.5 + 0.005 * j), None, "bench")])
            ms = []
            for gen in (0, 1, 2):
                t = time.perf_counter()
                gc.collect(gen)
                ms.append((time.perf_counter() - t) * 1000)
            print(f"collection, {label}: gen 0 {ms[0]:.2f} ms, gen 1 {ms[1]:.2f} ms, gen 2 {ms[2]:.2f} ms "
                  f"({len(gc.get_objects())} objects tracked)")


def ping_floor(moves: int, gap_s: float) -> None:
    port = free_port()
    tmp = tempfile.mkdtemp()
    env = dict(os.environ, XDG_DATA_HOME=tmp, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--osc-port", str(port), "--log-level", "warning"],
                            env=env, cwd=tmp)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    ping = build("/eqbridge/ping")
    try:
        for _ in range(150):  # wait for the daemon
            s.sendto(ping, ("127.0.0.1", port))
            try:
                s.recv(100)
                break
            except socket.timeout:
                continue
        s.settimeout(5)
        for label, gap in (("back to back", 0.0), (f"after {gap_s * 1000:.0f} ms idle", gap_s)):
            ts = []
            for _ in range(moves):
                if gap:
                    time.sleep(gap)
                t = time.perf_counter()
                s.sendto(ping, ("127.0.0.1", port))
                s.recv(100)
                ts.append((time.perf_counter() - t) * 1000)
            print(f"ping -> pong ({label}): p50 {np.percentile(ts, 50):.3f} ms, p99 {np.percentile(ts, 99):.3f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        s.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=50.0)
    a = ap.parse_args()
    in_process(a.moves, a.gap_ms / 1000)
    collector_pauses()
    ping_floor(a.moves, a.gap_ms / 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
