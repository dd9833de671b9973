"""How well and how fast `bridge.fit.fit_curve` turns word curves into 8 plugin bands.

Curves: the English Audealize EQ descriptors (models/data/audealize/eqdescriptors.json), each
scaled to +-5 dB peak. Bands: low shelf + 6 bells + high shelf, +-15 dB, Q 0.18-6, 20 Hz-20 kHz.
Rows: our cold fit, our warm refit (target changed by 2%, started from the cold fit), both again
with the baseline solvers (bridge.fit.baseline_solvers: the numpy LM loop rather than the compiled
one, bridge/_lmcore.c, and scipy's BVLS for graphic EQs), a naive
baseline (8 bells at fixed ERB-spaced centres set to the target there, Q 1.4) and AutoEq's PEQ
optimiser (autoeq==4.1.2) with the same filters, when it is importable.
Errors are ERB-weighted RMS dB (bridge.fit.weighted_rms_db) at the 40 centres and on a dense
1000-point ERB grid.

Then the same curves on EVERY shipped mapping (mappings/*.yaml, each at its own sample rate):
median/p95 error and median/p99 cold-fit time per mapping. And a smoothness check: a target swept
slowly from one word's curve to another's, (1-t) A + t B over 50 steps, each step warm-started
from the previous fit; reported is the largest per-step move of any band's frequency in octaves
(a band jumping across the spectrum would show as several octaves) and the warm-step times.
Run: python bench/fit_quality.py [--limit N] [--no-autoeq] [--no-mappings] [--no-sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.bands import BandSetting, BandSpec  # noqa: E402
from bridge.erb import FREQS_HZ, erb_grid  # noqa: E402
from bridge.filters import response_db  # noqa: E402
from bridge.fit import DENSE_POINTS, fit_curve, interpolate_curve, weighted_rms_db  # noqa: E402
from bridge.mapping import list_mappings, load_mapping  # noqa: E402

FS = 48000.0
GAIN, Q, FREQ = (-15.0, 15.0), (0.18, 6.0), (20.0, 20000.0)
SPECS = ([BandSpec("low shelf", ("low_shelf",), FREQ, GAIN, Q)]
         + [BandSpec(f"bell {i + 1}", ("bell",), FREQ, GAIN, Q) for i in range(6)]
         + [BandSpec("high shelf", ("high_shelf",), FREQ, GAIN, Q)])
DENSE = erb_grid(1000)


def load_curves(limit: int | None) -> list[np.ndarray]:
    data = json.loads((ROOT / "models/data/audealize/eqdescriptors.json").read_text())
    out = []
    for d in data:
        if d.get("lang") != "English":
            continue
        s = np.asarray(d["settings"], dtype=np.float64)
        out.append(5.0 * s / np.max(np.abs(s)))
    return out[:limit] if limit else out


def errors(bands, target, fs: float = FS) -> tuple[float, float]:
    """(RMS at the 40 centres, RMS on the dense 1000-point grid), ERB-weighted."""
    at_c = weighted_rms_db(response_db(bands, FREQS_HZ, fs) - target, FREQS_HZ)
    dense = weighted_rms_db(response_db(bands, DENSE, fs) - interpolate_curve(target, DENSE), DENSE)
    return at_c, dense


def other_load() -> str:
    """What else was running: the load average and the busiest other processes (Linux /proc)."""
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return "load unknown"
    busy = []
    try:
        import subprocess
        out = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu", "--no-headers"],
                             capture_output=True, text=True, timeout=5).stdout.splitlines()
        me = " ".join(sys.argv)
        for line in out:
            pc, _, cmd = line.strip().partition(" ")
            if float(pc) >= 1.0 and "fit_quality" not in cmd and me not in cmd:
                busy.append(f"{cmd.strip()[:60]} ({pc}% cpu)")
            if len(busy) == 4:
                break
    except Exception:  # noqa: BLE001 - ps missing: report the load only
        pass
    return f"load average {' '.join(load)}; other busy processes: {'; '.join(busy) or 'none'}"


class OtherCpu:
    """CPU the rest of the machine used while a section ran: (all busy time in /proc/stat - this
    process's CPU time) / wall time, in cores. Linux only; None elsewhere."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (sum(f) - f[3] - (f[4] if len(f) > 4 else 0)) / tick  # minus idle and iowait
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system

    def cores(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        return max((end[1] - self.start[1]) - (end[2] - self.start[2]), 0.0) / max(wall, 1e-9)

    def text(self) -> str:
        c = self.cores()
        return "other processes' CPU unknown" if c is None else \
            f"other processes used {c:.2f} of {os.cpu_count()} cores meanwhile"


def mapping_rows(curves: list[np.ndarray]) -> list[str]:
    """Cold fits of every curve on every shipped mapping: error and time per mapping, and the
    time of the same fits with the baseline solvers (same run, interleaved)."""
    from bridge.fit import baseline_solvers
    out = [f"{'mapping':<22} {'bands':>5} {'med@40':>8} {'p95@40':>8} {'med@1k':>8} "
           f"{'p95@1k':>8} {'med ms':>9} {'p99 ms':>9}   baseline solvers: med / p99 ms"]
    for name in list_mappings():
        m = load_mapping(name)
        fs = float(getattr(m, "sample_rate", None) or FS)
        fit_curve(curves[0], m)  # caches
        with baseline_solvers():
            fit_curve(curves[0], m)  # and the baseline's (scipy's import, for graphic EQs)
        ec, ed, tt, tn = [], [], [], []
        for target in curves:
            t0 = time.perf_counter()
            fit = fit_curve(target, m)
            tt.append((time.perf_counter() - t0) * 1e3)
            with baseline_solvers():
                t0 = time.perf_counter()
                fit_curve(target, m)
                tn.append((time.perf_counter() - t0) * 1e3)
            c, d = errors(fit.bands, target, fs)
            ec.append(c)
            ed.append(d)
        out.append(f"{name:<22} {len(m.bands):>5}" + summarise(ec, ed, tt)
                   + f"   {np.median(tn):>16.2f} / {np.percentile(tn, 99):.2f}")
    return out


SWEEP_STEPS = 50


def sweep(curves: list[np.ndarray], pairs: int = 20) -> list[str]:
    """Warm-started fits along (1-t) A + t B; the largest per-step band frequency move."""
    rng = np.random.default_rng(0)
    worst, worst_pair, moves, times, errs = 0.0, None, [], [], []
    for _ in range(pairs):
        ia, ib = rng.choice(len(curves), size=2, replace=False)
        a, b = curves[ia], curves[ib]
        prev = fit_curve(a, SPECS, sample_rate=FS)
        for step in range(1, SWEEP_STEPS + 1):
            t = step / SWEEP_STEPS
            target = (1 - t) * a + t * b
            t0 = time.perf_counter()
            fit = fit_curve(target, SPECS, previous=prev, sample_rate=FS)
            times.append((time.perf_counter() - t0) * 1e3)
            errs.append(fit.rms_error_db)
            for x, y in zip(prev.bands, fit.bands):
                if x.type != "off" and y.type != "off":
                    mv = abs(np.log2(y.freq_hz / x.freq_hz))
                    moves.append(mv)
                    if mv > worst:
                        worst, worst_pair = mv, (int(ia), int(ib), step)
            prev = fit
    mv, e = np.array(moves), np.array(errs)
    return [f"sweep: {pairs} word pairs x {SWEEP_STEPS} steps, each warm-started from the previous "
            f"step ({len(times)} fits, 8-band set)",
            f"  band frequency move per step: median {np.median(mv):.4f} oct, p99 "
            f"{np.percentile(mv, 99):.3f} oct, max {worst:.3f} oct (pair {worst_pair})",
            f"  RMS error along the sweeps: median {np.median(e):.3f} dB, p95 "
            f"{np.percentile(e, 95):.3f} dB; warm step time median {np.median(times):.2f} ms, "
            f"p99 {np.percentile(times, 99):.2f} ms"]


def naive(target) -> list[BandSetting]:
    centres = erb_grid(8, 50.0, 16000.0)
    gains = np.clip(interpolate_curve(target, centres), *GAIN)
    return [BandSetting("bell", float(f), float(g), 1.4) for f, g in zip(centres, gains)]


def autoeq_fitter():
    """A function target -> bands using AutoEq's PEQ optimiser, or the reason it is unavailable."""
    try:
        from autoeq.peq import PEQ
    except Exception as exc:  # noqa: BLE001 - report any import failure as text
        return None, f"AutoEq unavailable ({type(exc).__name__}: {exc}); " \
                     "try: pip install --no-deps autoeq==4.1.2 tabulate"
    lim = {"min_fc": FREQ[0], "max_fc": FREQ[1], "min_q": Q[0], "max_q": Q[1],
           "min_gain": GAIN[0], "max_gain": GAIN[1]}
    config = {"filters": [dict(type="LOW_SHELF", **lim)] + [dict(type="PEAKING", **lim)] * 6
              + [dict(type="HIGH_SHELF", **lim)]}
    f = erb_grid(DENSE_POINTS)
    names = {"LowShelf": "low_shelf", "HighShelf": "high_shelf", "Peaking": "bell"}

    def run(target):
        peq = PEQ.from_dict(json.loads(json.dumps(config)), f, FS, target=interpolate_curve(target, f))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peq.optimize()
        return [BandSetting(names[type(flt).__name__], float(flt.fc), float(flt.gain), float(flt.q))
                for flt in peq.filters]

    return run, ""


def summarise(errs_c, errs_d, times_ms) -> str:
    """The error and time columns of one row (the caller puts its name in front)."""
    c, d, t = np.array(errs_c), np.array(errs_d), np.array(times_ms)
    return (f" {np.median(c):8.3f} {np.percentile(c, 95):8.3f} {np.median(d):8.3f} "
            f"{np.percentile(d, 95):8.3f} {np.median(t):9.2f} {np.percentile(t, 99):9.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N curves")
    ap.add_argument("--no-autoeq", action="store_true", help="skip the (slow) AutoEq row")
    ap.add_argument("--no-mappings", action="store_true", help="skip the per-mapping table")
    ap.add_argument("--no-sweep", action="store_true", help="skip the smoothness sweep")
    args = ap.parse_args(argv)
    curves = load_curves(args.limit)
    fit_curve(curves[0], SPECS)  # warm caches / imports before timing
    from bridge.fit import baseline_solvers, fit_backend
    print(f"fitter path: {fit_backend()}; {other_load()}")
    loops = [("", nullcontext), (" (baseline)", baseline_solvers)]

    other = OtherCpu()
    keys = [f"ours, {kind}{label}" for label, _ in loops for kind in ("cold", "warm refit 2%")]
    rows: dict[str, tuple[list, list, list]] = {k: ([], [], []) for k in
                                                (*keys, "naive 8 bells", "AutoEq 4.1.2")}
    ae, ae_note = (None, "AutoEq skipped (--no-autoeq)") if args.no_autoeq else autoeq_fitter()

    def record(key: str, bands, target: np.ndarray, seconds: float) -> None:
        for column, value in zip(rows[key], (*errors(bands, target), seconds * 1e3)):
            column.append(value)

    for target in curves:
        moved = target * 1.02
        for label, loop in loops:
            with loop():
                t0 = time.perf_counter()
                cold = fit_curve(target, SPECS, sample_rate=FS)
                t1 = time.perf_counter()
                warm = fit_curve(moved, SPECS, previous=cold, sample_rate=FS)
                t2 = time.perf_counter()
            record(f"ours, cold{label}", cold.bands, target, t1 - t0)
            record(f"ours, warm refit 2%{label}", warm.bands, moved, t2 - t1)
        for key, baseline in (("naive 8 bells", naive), ("AutoEq 4.1.2", ae)):
            if baseline is not None:
                t0 = time.perf_counter()
                bands = baseline(target)
                record(key, bands, target, time.perf_counter() - t0)

    print(f"{len(curves)} English Audealize word curves at +-5 dB peak; 8 bands "
          "(low shelf + 6 bells + high shelf, +-15 dB, Q 0.18-6); ERB-weighted RMS error, dB")
    print(f"{'fitter':<31} {'med@40':>8} {'p95@40':>8} {'med@1k':>8} {'p95@1k':>8} "
          f"{'med ms':>9} {'p99 ms':>9}")
    for key, (c, d, t) in rows.items():
        if c:
            print(f"{key:<31}" + summarise(c, d, t))
    if ae is None:
        print(ae_note)
    cold_c, _, cold_t = rows["ours, cold"]
    warm_t = rows["ours, warm refit 2%"][2]
    print(f"targets: median <= 0.10 dB: {np.median(cold_c):.3f} "
          f"{'ok' if np.median(cold_c) <= 0.10 else 'MISSED'}; "
          f"cold p99 <= 10 ms: {np.percentile(cold_t, 99):.2f} "
          f"{'ok' if np.percentile(cold_t, 99) <= 10 else 'MISSED'}; "
          f"warm p99 <= 2 ms: {np.percentile(warm_t, 99):.2f} "
          f"{'ok' if np.percentile(warm_t, 99) <= 2 else 'MISSED'}")
    print(f"({other.text()})")
    if not args.no_mappings:
        print()
        print(f"every shipped mapping, cold fits of the same {len(curves)} curves "
              "(ERB-weighted RMS error, dB; each mapping at its own sample rate)")
        other = OtherCpu()
        for line in mapping_rows(curves):
            print(line)
        print(f"({other.text()})")
    if not args.no_sweep:
        print()
        other = OtherCpu()
        for line in sweep(curves):
            print(line)
        print(f"({other.text()})")
    print(f"after the run: {other_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
