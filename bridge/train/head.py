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


def knn_weights(q: np.ndarray, keys: np.ndarray, k: int, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices and softmax weights of the k nearest keys by cosine (rows are unit vectors)."""
    sims = q @ keys.T
    k = min(k, keys.shape[0])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sims, idx, axis=1)
    ww = np.exp((top - top.max(axis=1, keepdims=True)) / temperature)
    return idx, ww / ww.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class HeadParams:
    """Everything the runtime needs to evaluate the head: ridge + kNN blend.

    prediction = (1 - blend) * (x @ coef + bias) + blend * sum_k softmax(cos/T)_k * shapes[k]
    """

    coef: np.ndarray
    bias: np.ndarray
    keys: np.ndarray
    shapes: np.ndarray
    k: int
    temperature: float
    blend: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        ridge = x @ self.coef + self.bias
        if self.blend <= 0:
            return ridge
        idx, ww = knn_weights(x, self.keys, self.k, self.temperature)
        knn = np.einsum("nk,nkb->nb", ww, self.shapes[idx])
        return (1 - self.blend) * ridge + self.blend * knn


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, alpha: float, k: int,
             temperature: float, blend: float) -> HeadParams:
    coef, bias = fit_ridge(x, y, w, alpha)
    return HeadParams(coef.astype(np.float32), bias.astype(np.float32), x.astype(np.float32),
                      y.astype(np.float32), k, temperature, blend)


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
                      y: np.ndarray, w: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions for every word."""
    pred = np.zeros_like(y)
    for f in np.unique(folds):
        test = folds == f
        pred[test] = fit(x[~test], y[~test], w[~test])(x[test])
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
