"""How good are knob answers from the fit's tangent? Along knob turns, against a warm refit per move.

A turn moves macro 1 from 0.5 to 0.8 in steps of 0.005 (a MIDI knob turned by hand), for several
words and mappings. Each move is answered the way the daemon answers it (bridge.daemon): from the
tangent built at the last polished fit; once a move is farther than TANGENT_REACH from that base,
the daemon polishes (warm refit) and rebuilds the tangent there. The baseline, side by side, is a
warm refit for every move. Figures: ERB-weighted RMS error of each answer to its target (dB) and
the time per answer (the tangent product vs the refit).

    python bench/knob_tangent.py [--reach R ...] [--step S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.daemon import TANGENT_H, TANGENT_REACH  # noqa: E402
from bridge.fit import fit_curve, fit_tangent, score_settings  # noqa: E402
from bridge.mapping import load_mapping  # noqa: E402
from bridge.model import TextToCurve  # noqa: E402
from bridge.model.latent import MacroKnobs  # noqa: E402

WORDS = ["warm", "bright", "muddy", "boomy", "harsh", "airy", "thin", "full"]
MAPPINGS = ["reaper-reaeq", "ableton-eq-eight", "lsp-para-x16"]


def turn(model: TextToCurve, knobs: MacroKnobs, mapping, word: str, reach: float, step: float):
    g = model.curve(word).gains_db

    def tangent_at(v: float, fit):
        c = knobs.apply(g, {1: v})
        d = (knobs.apply(g, {1: v + TANGENT_H}) - c) / TANGENT_H
        return fit_tangent(fit, mapping, d[None])

    fit = fit_curve(knobs.apply(g, {1: 0.5}), mapping)
    base, tan = 0.5, tangent_at(0.5, fit)
    refit = fit
    ans_err, ref_err, t_ans, t_ref = [], [], [], []
    for v in np.arange(0.5 + step, 0.8 + 1e-9, step):
        target = knobs.apply(g, {1: float(v)})
        t0 = time.perf_counter()
        bands = tan.settings([v - base])
        t_ans.append(time.perf_counter() - t0)
        ans_err.append(score_settings(target, mapping, bands).rms_error_db)
        t0 = time.perf_counter()
        refit = fit_curve(target, mapping, previous=refit)
        t_ref.append(time.perf_counter() - t0)
        ref_err.append(refit.rms_error_db)
        if abs(v - base) > reach:  # the daemon's polish and new tangent (in the idle gap)
            fit = fit_curve(target, mapping, previous=bands)
            base, tan = float(v), tangent_at(float(v), fit)
    return ans_err, ref_err, t_ans, t_ref


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reach", type=float, action="append", help=f"default: {TANGENT_REACH} (the daemon's)")
    ap.add_argument("--step", type=float, default=0.005)
    a = ap.parse_args()
    model, knobs = TextToCurve(), MacroKnobs()
    print(f"macro 1 turned 0.5 -> 0.8 in steps of {a.step}; {len(WORDS)} words; RMS error to the target (dB)")
    print(f"{'mapping':18s} {'reach':>6s} | {'tangent mean':>12s} {'p95':>6s} {'max':>6s} {'us':>6s} | "
          f"{'refit/move mean':>15s} {'p95':>6s} {'max':>6s} {'us':>6s}")
    for name in MAPPINGS:
        m = load_mapping(name)
        for reach in a.reach or [TANGENT_REACH]:
            ae, re, ta, tr = [], [], [], []
            for w in WORDS:
                x = turn(model, knobs, m, w, reach, a.step)
                ae += x[0]
                re += x[1]
                ta += x[2]
                tr += x[3]
            print(f"{name:18s} {reach:6.3f} | {np.mean(ae):12.3f} {np.percentile(ae, 95):6.3f} {np.max(ae):6.3f} "
                  f"{np.median(ta) * 1e6:6.0f} | {np.mean(re):15.3f} {np.percentile(re, 95):6.3f} "
                  f"{np.max(re):6.3f} {np.median(tr) * 1e6:6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
