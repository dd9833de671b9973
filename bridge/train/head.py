"""Heads from a text embedding to a 40-band shape, and the word-level cross-validation that picks one.

All heads are pure numpy functions of (train embeddings, train shapes, weights) so that the
runtime can evaluate the chosen one from a small .npz without scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]


def fit_ridge(x: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ridge regression y ~ x @ coef + bias (closed form on the centred data)."""
    sw = w / w.sum()
    xm, ym = sw @ x, sw @ y
    xc, yc = (x - xm) * np.sqrt(w)[:, None], (y - ym) * np.sqrt(w)[:, None]
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    return coef, ym - xm @ coef


def cosine_kernel(a: np.ndarray, b: np.ndarray, temperature: float) -> np.ndarray:
    """exp((cos - 1) / T) between unit rows: 1 for the same text, smooth everywhere (no hard
    neighbour cut-off, so a small change of embedding, e.g. int8 noise, moves the answer little)."""
    return np.exp((a @ b.T - 1.0) / temperature)


@dataclass(frozen=True)
class HeadParams:
    """Kernel ridge regression over known words: everything the runtime needs (a small .npz).

    prediction(x) = exp((keys @ x - 1) / T) @ coef + bias
    """

    keys: np.ndarray
    coef: np.ndarray
    bias: np.ndarray
    temperature: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return cosine_kernel(np.atleast_2d(x), self.keys, self.temperature) @ self.coef + self.bias


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, temperature: float, lam: float) -> HeadParams:
    """Weighted kernel ridge: a word with more people behind it is fitted more closely (lam / w)."""
    bias = (w / w.sum()) @ y
    k = cosine_kernel(x, x, temperature)
    coef = np.linalg.solve(k + lam * np.diag(1.0 / w), y - bias)
    return HeadParams(x.astype(np.float32), coef.astype(np.float32), bias.astype(np.float32), temperature)


def word_folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per word (words, not rows, are split: a test word is never seen in training)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % n_folds)


def rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return (a * b).sum(1) / np.where(den > 0, den, 1.0)


def rowwise_mae(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).mean(axis=1)


def cross_val_predict(fit: Callable[[np.ndarray, np.ndarray, np.ndarray], Predictor], x: np.ndarray,
                      y: np.ndarray, w: np.ndarray, folds: np.ndarray,
                      x_query: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold predictions for every word; `x_query` asks the same fold models about other
    embeddings of the same words (e.g. fp32 ones, to isolate the effect of quantisation)."""
    x_query = x if x_query is None else x_query
    pred = np.zeros_like(y)
    for f in np.unique(folds):
        test = folds == f
        pred[test] = fit(x[~test], y[~test], w[~test])(x_query[test])
    return pred


def baselines(x: np.ndarray) -> dict[str, Callable]:
    """Reference heads reported beside the chosen one."""
    def global_mean(xt, yt, wt):
        m = (wt / wt.sum()) @ yt
        return lambda xq: np.tile(m, (len(xq), 1))

    def nearest_word(xt, yt, wt):
        return lambda xq: yt[np.argmax(xq @ xt.T, axis=1)]

    def ridge(xt, yt, wt):
        coef, bias = fit_ridge(xt, yt, wt, alpha=1.0)
        return lambda xq: xq @ coef + bias

    return {"global mean": global_mean, "nearest word": nearest_word, "ridge": ridge}


def shrink(data_mean: np.ndarray, n: np.ndarray, model: np.ndarray, k: float) -> np.ndarray:
    """Lean on a word's own data when it has plenty, on the model when it is thin: n/(n+k)."""
    a = (n / (n + k))[:, None]
    return a * data_mean + (1 - a) * model
