"""Word-level cross-validation of heads: the numbers in the model card and bench/model_quality.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.train import head as H

N_FOLDS = 10
SEED = 20261125

# The grid the chosen head comes from (small on purpose: 542 words cannot support a big search).
HEAD_GRID: tuple[dict, ...] = tuple(
    {"temperature": t, "lam": lam} for t in (0.05, 0.1, 0.2, 0.4) for lam in (0.1, 0.3, 1.0, 3.0)
)


@dataclass(frozen=True)
class Score:
    name: str
    r: float  # mean Pearson r between predicted and held-out word-mean shapes
    mae: float  # mean absolute error in shape units (z-score)
    n_words: int


def score(name: str, pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> Score:
    return Score(name, float(H.rowwise_pearson(pred[mask], y[mask]).mean()),
                 float(H.rowwise_mae(pred[mask], y[mask]).mean()), int(mask.sum()))


def head_fitter(params: dict):
    return lambda xt, yt, wt: H.fit_head(xt, yt, wt, **params).predict


def train_weights(counts: np.ndarray) -> np.ndarray:
    """A word's mean counts more with more people behind it, saturating (n/(n+2))."""
    return counts / (counts + 2.0)


def rank_heads(x: np.ndarray, y: np.ndarray, counts: np.ndarray, folds: np.ndarray
               ) -> list[tuple[dict, Score, np.ndarray]]:
    """Every head setting with its CV score and out-of-fold predictions, best mean r first
    (scored on words with >= 3 people: their means are worth matching)."""
    w, mask = train_weights(counts), counts >= 3
    results = []
    for params in HEAD_GRID:
        pred = H.cross_val_predict(head_fitter(params), x, y, w, folds)
        results.append((params, score("head", pred, y, mask), pred))
    return sorted(results, key=lambda t: -t[1].r)


def baseline_scores(x: np.ndarray, y: np.ndarray, counts: np.ndarray, folds: np.ndarray,
                    masks: dict[str, np.ndarray]) -> dict[str, dict[str, Score]]:
    """Global mean, nearest known word and plain ridge under the same folds, per word pool."""
    w = train_weights(counts)
    out: dict[str, dict[str, Score]] = {}
    for name, fit in H.baselines(x).items():
        pred = H.cross_val_predict(fit, x, y, w, folds)
        out[name] = {pool: score(name, pred, y, m) for pool, m in masks.items()}
    return out


def choose_shrinkage(shapes_by_word: list[np.ndarray], model: np.ndarray,
                     grid=(0.5, 1, 2, 3, 5, 8, 13), seed: int = SEED) -> tuple[float, dict]:
    """k in n/(n+k) by simulation: from words with >= 6 people, take m of them as 'data' and ask
    how well the shrunk estimate matches the mean of the others, for m = 1, 2, 4."""
    rng = np.random.default_rng(seed)
    trials = []
    for rows, pred in zip(shapes_by_word, model):
        if len(rows) < 6:
            continue
        for m in (1, 2, 4):
            perm = rng.permutation(len(rows))
            trials.append((rows[perm[:m]].mean(0), m, rows[perm[m:]].mean(0), pred))
    table = {}
    for k in grid:
        est = np.stack([H.shrink(d[None], np.array([m], float), p[None], k)[0] for d, m, _, p in trials])
        truth = np.stack([t for _, _, t, _ in trials])
        table[k] = float(H.rowwise_pearson(est, truth).mean())
    return max(table, key=table.get), table
