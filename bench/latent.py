"""The macro-knob space: how well few dimensions reconstruct held-out curves, and how smoothly plugin
parameters follow when a knob is turned.

1. Reconstruction. The crowd's curves (SocialFX + SAFE-DB rows as merged by `eqbridge train`,
   bridge.train.pipeline.load_corpus), folds by word as in training (a held-out fold holds words
   the basis never saw). For d = 0..8 PCA dimensions: held-out explained variance
   (bridge.train.latent.heldout_explained) and the RMS reconstruction error in dB (shapes are
   z-scored; the knobs' dB scale `size_db` from models/latent-knobs.json turns them into dB).
   Baseline: the fixed basis the placeholder macros used (tilt around 1 kHz, low shelf at 250 Hz,
   high shelf at 4 kHz, bridge.session.MACRO_SHAPES), least-squares fitted to each held-out curve
   minus the training mean (the same centring PCA gets), with its first 1, 2 and 3 shapes.
2. Smoothness. For each shipped knob, from several words: the word's curve, the knob turned 0 -> 1
   in 41 steps (bridge.model's knobs.apply), each step fitted with fit_curve warm-started from the
   previous step (the first step cold), on reaper-reaeq and lsp-para-x16. Reported per knob: the
   largest per-step change of any band's frequency (octaves), gain (dB) and Q (octaves of Q), and
   the largest per-step change of the target curve itself (dB) for scale. Bands "off" on either
   side of a step are left out.

Run: python bench/latent.py [--words warm,bright,...] [--mappings reaper-reaeq,lsp-para-x16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.model.files import LATENT_KNOBS_FILE, models_dir  # noqa: E402
from bridge.session import MACRO_NAMES, MACRO_SHAPES  # noqa: E402
from bridge.train.latent import MAX_DIMS, fit_pca, heldout_explained  # noqa: E402

N_FOLDS, SEED = 5, 0
WORDS = ("warm", "bright", "muddy", "airy", "harsh", "boomy")
MAPPINGS = ("reaper-reaeq", "lsp-para-x16")
STEPS = 41


def _folds(groups: np.ndarray) -> np.ndarray:
    """The fold of each row, exactly as heldout_explained assigns them."""
    rng = np.random.default_rng(SEED)
    uniq = np.unique(groups)
    fold_of = dict(zip(uniq, rng.permutation(np.arange(len(uniq)) % N_FOLDS)))
    return np.array([fold_of[g] for g in groups])


def reconstruction(x: np.ndarray, groups: np.ndarray, size_db: float) -> None:
    t0 = time.perf_counter()
    explained = heldout_explained(x, groups, N_FOLDS, SEED)
    folds = _folds(groups)
    total = 0.0
    basis = np.stack(MACRO_SHAPES, axis=1)  # 40 x 3
    base_resid = np.zeros(len(MACRO_SHAPES))
    for f in range(N_FOLDS):
        tr, te = x[folds != f], x[folds == f]
        c = te - tr.mean(0)
        total += float((c ** 2).sum())
        for k in range(1, basis.shape[1] + 1):
            b = basis[:, :k]
            coef, *_ = np.linalg.lstsq(b, c.T, rcond=None)
            base_resid[k - 1] += float(((c.T - b @ coef) ** 2).sum())
    rms0 = np.sqrt(total / x.size)

    def db(resid_fraction: float) -> float:
        return float(np.sqrt(max(resid_fraction, 0.0)) * rms0 * size_db)

    meta = json.loads((models_dir() / LATENT_KNOBS_FILE).read_text(encoding="utf-8"))
    shipped = len(meta["names"])
    print(f"## Held-out reconstruction ({len(x)} curves, {len(np.unique(groups))} words, {N_FOLDS} folds by word; "
          f"dB = z-scored shape x size_db {size_db:.2f}; {time.perf_counter() - t0:.1f} s)\n")
    print("| dims | PCA explained | PCA RMS error dB | placeholder basis explained | placeholder RMS error dB |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| 0 (mean only) | 0.000 | {db(1.0):.2f} | 0.000 | {db(1.0):.2f} |")
    for d in range(1, MAX_DIMS + 1):
        mark = " (shipped)" if d == shipped else ""
        row = f"| {d}{mark} | {explained[d - 1]:.3f} | {db(1 - explained[d - 1]):.2f} |"
        if d <= len(MACRO_SHAPES):
            e = 1 - base_resid[d - 1] / total
            names = "+".join(MACRO_NAMES[:d])
            row += f" {e:.3f} ({names}) | {db(1 - e):.2f} |"
        else:
            row += " - | - |"
        print(row)
    e = explained[shipped - 1]
    print(f"\nAt the shipped size ({shipped} dims, {', '.join(meta['names'])}): held-out RMS error "
          f"{db(1 - e):.2f} dB (explained {e:.3f}); the placeholder tilt/low/high basis: "
          f"{db(base_resid[-1] / total):.2f} dB (explained {1 - base_resid[-1] / total:.3f}).\n")


def smoothness(words: tuple[str, ...], mappings: tuple[str, ...]) -> None:
    from bridge.fit import fit_curve
    from bridge.mapping import load_mapping
    from bridge.model import TextToCurve

    model = TextToCurve()
    knobs = model.knobs
    print(f"## Knob sweeps: each knob 0 -> 1 in {STEPS} steps from {', '.join(words)}; warm-started fit_curve\n")
    print("Largest per-step change over all words and bands (p99 in brackets).\n")
    print("| mapping | knob | target curve dB | band freq oct | band gain dB | band Q oct | fits | ms/fit |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in mappings:
        mapping = load_mapping(name)
        for n in range(1, knobs.count + 1):
            dcurve, dfreq, dgain, dq = [], [], [], []
            fits, t_fit = 0, 0.0
            for w in words:
                base = model.curve(w).gains_db
                prev_fit, prev_target = None, None
                for v in np.linspace(0.0, 1.0, STEPS):
                    target = knobs.apply(base, {n: float(v)})
                    t0 = time.perf_counter()
                    fit = fit_curve(target, mapping, previous=prev_fit)
                    t_fit += time.perf_counter() - t0
                    fits += 1
                    if prev_fit is not None:
                        dcurve.append(float(np.max(np.abs(target - prev_target))))
                        for a, b in zip(prev_fit.bands, fit.bands):
                            if a.type == "off" or b.type == "off":
                                continue
                            dfreq.append(abs(np.log2(b.freq_hz / a.freq_hz)))
                            dgain.append(abs(b.gain_db - a.gain_db))
                            dq.append(abs(np.log2(b.q / a.q)))
                    prev_fit, prev_target = fit, target

            def cell(xs: list[float], fmt: str) -> str:
                if not xs:
                    return "-"
                return f"{max(xs):{fmt}} ({np.percentile(xs, 99):{fmt}})"

            print(f"| {name} | {n} {knobs.name(n)} | {cell(dcurve, '.2f')} | {cell(dfreq, '.3f')} | "
                  f"{cell(dgain, '.2f')} | {cell(dq, '.3f')} | {fits} | {1000 * t_fit / fits:.1f} |")
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--words", default=",".join(WORDS))
    ap.add_argument("--mappings", default=",".join(MAPPINGS))
    ap.add_argument("--no-sweep", action="store_true")
    args = ap.parse_args()
    from bridge.train.pipeline import load_corpus

    samples, _table, _rows = load_corpus()
    x = np.stack([s.shape for s in samples])
    groups = np.array([s.word for s in samples])
    size_db = float(json.loads((models_dir() / LATENT_KNOBS_FILE).read_text(encoding="utf-8"))["size_db"])
    reconstruction(x, groups, size_db)
    if not args.no_sweep:
        smoothness(tuple(w for w in args.words.split(",") if w), tuple(m for m in args.mappings.split(",") if m))
    # sanity: the shipped decoder is the PCA the trainer fits on all curves
    mean, comps, _ = fit_pca(x, 1)
    assert comps.shape == (1, x.shape[1]) and np.isfinite(mean).all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
