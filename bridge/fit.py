"""Fit a plugin's bands to a 40-band ERB curve: the step between "a curve" and "your EQ's knobs".

Why this shape: the curve is defined at the 40 ERB centres, but a plugin band acts between them,
so the error is measured on a dense grid evenly spaced on the ERB-rate scale (Glasberg & Moore
1990), where each point stands for the same slice of hearing as a centre does. The target is
linearly interpolated in ERB-rate onto that grid.

Method (parametric bands): greedy placement, one filter at a time at the largest residual, with
shelves taken first for the band ends when the plugin offers them; after each addition every
placed filter is re-optimised by a small projected Levenberg-Marquardt loop (Levenberg 1944,
Marquardt 1963; Nocedal & Wright, "Numerical Optimization", sec. 10.3) on the closed-form Jacobian
of `bridge.filters.peq_db_and_grad`, in parameters (ln f, gain dB, ln Q) with box bounds. A few
weak penalty rows keep the answer musical: gains pulled toward 0, Q toward 1, and pairs of bells at
nearly the same frequency with opposite gains (which cancel each other) discouraged.
Graphic EQs (every band at a fixed frequency) are a bounded least-squares problem in the gains
alone. A warm start (`previous`) skips the greedy phase so a slowly moving target moves the knobs
smoothly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from bridge.bands import BandSetting, BandSpec
from bridge.erb import FREQS_HZ, N_BANDS, erb_grid, erb_rate
from bridge.filters import (KIND_BELL, KIND_CODES, KIND_HIGH_SHELF, KIND_LOW_SHELF, PeqGrid,
                            peq_db_and_grad, q_from_octaves, response_db)

DENSE_POINTS = 96  # error grid: ~2.4 points per ERB centre spacing, 20 Hz .. 20 kHz
_KIND_NAMES = {v: k for k, v in KIND_CODES.items()}

# Penalty weights, in the unit of the residual (ERB-weighted RMS dB): small enough to cost
# < 0.01 dB of fit on real curves, large enough to decide between near-equivalent solutions.
GAIN_PULL = 0.002  # per dB of gain
Q_PULL = 0.004  # per unit of ln(Q / Q_HOME)
Q_HOME = 1.0
CANCEL_PULL = 0.02  # per dB of the smaller gain of an opposite-sign bell pair at the same freq
CANCEL_WIDTH = np.log(2.0) / 2.0  # half an octave (in ln f): how close two bells must be

# Warm start: pull toward the previous fit per unit of (ln f, gain dB, ln Q), so a small target
# change cannot slide a band along a flat valley of the cost (no band jumping).
WARM_PULL = np.array([0.1, 0.005, 0.03])
STAGE_ITERS = 3  # LM iterations after each greedy addition (the final polish converges)
FINAL_ITERS = 25
WARM_ITERS = 12
FINAL_RTOL = 3e-4  # stop when an accepted step lowers the cost by less than this fraction
LAM0 = 1.0  # initial LM damping (tuned: fewer rejected first steps)
STOP_RMS_DB = 0.01  # greedy stops adding bands once the weighted RMS error is below this


@dataclass(frozen=True, eq=False)
class Fit:
    """A fitted setting of every plugin band, and how well it matches the target.

    `rms_error_db` is the ERB-weighted RMS of (predicted - target) at the 40 centres: each centre
    weighted by its share of the ERB-rate axis (trapezoid rule), so it agrees with the same
    measure on a dense ERB grid. `max_error_db` is the largest absolute error at the centres.
    """

    mapping_name: str
    bands: tuple[BandSetting, ...]
    freqs_hz: np.ndarray
    target_db: np.ndarray
    predicted_db: np.ndarray
    rms_error_db: float
    max_error_db: float


# --------------------------------------------------------------------------------------------
# Weights and grids
# --------------------------------------------------------------------------------------------

def erb_weights(freqs_hz: np.ndarray) -> np.ndarray:
    """Weights summing to 1: each point's share of the ERB-rate axis (trapezoid rule)."""
    e = erb_rate(np.asarray(freqs_hz, dtype=np.float64))
    if e.size == 1:
        return np.ones(1)
    gaps = np.diff(e)
    w = np.zeros_like(e)
    w[:-1] += gaps / 2.0
    w[1:] += gaps / 2.0
    return w / w.sum()


def weighted_rms_db(err_db: np.ndarray, freqs_hz: np.ndarray) -> float:
    """ERB-weighted RMS of an error curve (see `erb_weights`)."""
    return float(np.sqrt(np.sum(erb_weights(freqs_hz) * np.asarray(err_db) ** 2)))


def interpolate_curve(target_db: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """The 40-centre curve at other frequencies: linear in ERB-rate, flat beyond the ends."""
    return np.interp(erb_rate(freqs_hz), erb_rate(FREQS_HZ), np.asarray(target_db, np.float64))


class _Problem:
    """Everything fixed during one fit: grid, weights, target, band constraints."""

    def __init__(self, target_db: np.ndarray, specs: Sequence[BandSpec], sample_rate: float):
        self.sample_rate = sample_rate
        hi = min(20000.0, 0.45 * sample_rate)
        self.freqs = erb_grid(DENSE_POINTS, 20.0, hi)
        self.grid = PeqGrid(self.freqs, sample_rate)
        self.sw = np.sqrt(erb_weights(self.freqs))
        self.target = interpolate_curve(target_db, self.freqs)
        self.specs = tuple(specs)
        nb = len(self.specs)
        fmax = 0.49 * sample_rate
        lo = np.zeros((3, nb))
        hi_ = np.zeros((3, nb))
        for i, s in enumerate(self.specs):
            if s.fixed_freq_hz is not None:
                lo[0, i] = hi_[0, i] = np.log(min(s.fixed_freq_hz, fmax))
            else:
                lo[0, i] = np.log(min(max(s.freq_hz[0], 2.0), fmax))
                hi_[0, i] = np.log(min(max(s.freq_hz[1], 2.0), fmax))
            lo[1, i], hi_[1, i] = s.gain_db
            if s.fixed_q is not None:
                lo[2, i] = hi_[2, i] = np.log(s.fixed_q)
            else:
                lo[2, i], hi_[2, i] = np.log(s.q[0]), np.log(s.q[1])
        self.lo, self.hi = lo, hi_
        self.free = hi_ > lo  # (3, nb): which parameters the fitter may move


# --------------------------------------------------------------------------------------------
# Residual, Jacobian, penalties
# --------------------------------------------------------------------------------------------

class _Placed:
    """Constants of one set of placed bands (slot indices, kinds, penalty structure) for LM."""

    def __init__(self, prob: _Problem, kinds: np.ndarray, idx: np.ndarray,
                 anchor: np.ndarray | None = None):
        self.idx = idx
        self.anchor = anchor
        self.kinds = kinds[idx]
        k = idx.size
        self.k = k
        self.qfree = prob.free[2, idx].astype(np.float64)
        bells = np.flatnonzero(self.kinds == KIND_BELL)
        pi, pj = np.triu_indices(bells.size, 1)
        self.bi, self.bj = bells[pi], bells[pj]
        # Jacobian (transposed: params x rows) of the constant penalty rows: gain and ln Q pulls
        jt = np.zeros((3 * k, 2 * k))
        jt[k + np.arange(k), np.arange(k)] = GAIN_PULL
        jt[2 * k + np.arange(k), k + np.arange(k)] = Q_PULL * self.qfree
        if anchor is not None:
            # warm start: Tikhonov rows pulling each parameter toward the previous fit
            jt = np.concatenate([jt, np.diag(np.repeat(WARM_PULL, k))], axis=1)
        self.jt_const = jt


def _residual(prob: _Problem, pl: _Placed, p: np.ndarray, want_jac: bool = True):
    """Weighted residual rows (fit + penalties) and their transposed Jacobian (params x rows).

    p rows are ln f, gain dB, ln Q of the placed bands (columns follow `pl.idx`).
    """
    k = pl.k
    db, d_f, d_g, d_q = peq_db_and_grad(pl.kinds, np.exp(p[0]), p[1], np.exp(p[2]), prob.grid,
                                        want_grad=want_jac)
    pred = db.sum(axis=0)
    r_fit = prob.sw * (pred - prob.target)
    # penalties: gain toward 0, ln Q toward ln Q_HOME (only where Q is free)
    r_g = GAIN_PULL * p[1]
    r_q = Q_PULL * (p[2] - np.log(Q_HOME)) * pl.qfree
    # opposite-sign bells at nearly the same frequency
    bi, bj = pl.bi, pl.bj
    dlf = p[0, bi] - p[0, bj]
    closeness = np.exp(-0.5 * (dlf / CANCEL_WIDTH) ** 2)
    gi, gj = p[1, bi], p[1, bj]
    opposite = (gi * gj < 0) * CANCEL_PULL
    smaller_is_i = np.abs(gi) <= np.abs(gj)
    small_gain = np.where(smaller_is_i, gi, gj)
    r_c = opposite * closeness * np.abs(small_gain)
    if pl.anchor is not None:
        r = np.concatenate([r_fit, r_g, r_q, (np.repeat(WARM_PULL, k) * (p - pl.anchor).ravel()), r_c])
    else:
        r = np.concatenate([r_fit, r_g, r_q, r_c])
    if not want_jac:
        return r, pred, None
    jt_fit = np.concatenate([d_f, d_g, d_q]) * prob.sw
    npair = bi.size
    if npair:
        jt_pair = np.zeros((3 * k, npair))
        cols = np.arange(npair)
        dr = opposite * closeness * (-dlf / CANCEL_WIDTH ** 2) * np.abs(small_gain)
        jt_pair[bi, cols] = dr
        jt_pair[bj, cols] = -dr
        jt_pair[k + np.where(smaller_is_i, bi, bj), cols] = np.sign(small_gain) * opposite * closeness
        jt = np.concatenate([jt_fit, pl.jt_const, jt_pair], axis=1)
    else:
        jt = np.concatenate([jt_fit, pl.jt_const], axis=1)
    return r, pred, jt


def _lm(prob: _Problem, kinds: np.ndarray, idx: np.ndarray, p: np.ndarray, max_iter: int,
        rtol: float, anchor: np.ndarray | None = None) -> np.ndarray:
    """Projected Levenberg-Marquardt on the placed bands; returns the improved (3, k) params.

    Damping: Marquardt's scaling (lambda * diag(J^T J)); a parameter sitting on a bound whose
    gradient pushes outward is held for that step (projected/active-set LM, Nocedal & Wright 16.7).
    """
    k = idx.size
    if k == 0:
        return p
    pl = _Placed(prob, kinds, idx, anchor)
    lo = prob.lo[:, idx].ravel()
    hi = prob.hi[:, idx].ravel()
    free = prob.free[:, idx].ravel()
    x = np.clip(p.ravel(), lo, hi)
    r, _, jt = _residual(prob, pl, x.reshape(3, k))
    cost = r @ r
    lam = LAM0
    for _ in range(max_iter):
        grad = jt @ r
        act = free & ~(((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0)))
        cols = np.flatnonzero(act)
        if cols.size == 0:
            break
        jc = jt[cols]
        jtj = jc @ jc.T
        gc = grad[cols]
        diag = np.diag(jtj) + 1e-9
        improved = False
        while lam < 1e8:
            step = np.linalg.solve(jtj + np.diag(lam * diag), -gc)
            x_new = x.copy()
            x_new[cols] = np.clip(x[cols] + step, lo[cols], hi[cols])
            r_new, _, jt_new = _residual(prob, pl, x_new.reshape(3, k))
            cost_new = r_new @ r_new
            if cost_new < cost:
                improved = True
                break
            lam *= 8.0
        if not improved:
            break
        drop = cost - cost_new
        x, r, jt, cost = x_new, r_new, jt_new, cost_new
        lam = max(lam / 4.0, 1e-9)
        if drop <= rtol * cost:
            break
    return x.reshape(3, k)


# --------------------------------------------------------------------------------------------
# Band roles
# --------------------------------------------------------------------------------------------

def _fit_kinds(spec: BandSpec) -> list[int]:
    """Kinds the fitter may use for a band (bells and shelves; other types are left off)."""
    return [KIND_CODES[t] for t in ("bell", "low_shelf", "high_shelf") if t in spec.types]


def _initial_q(prob: _Problem, slot: int, q: float) -> float:
    return float(np.exp(np.clip(np.log(q), prob.lo[2, slot], prob.hi[2, slot])))


def _slot_distance(prob: _Problem, slot: int, lnf: float) -> float:
    """How far (in ln f) a slot's reachable frequency range is from lnf."""
    return max(prob.lo[0, slot] - lnf, lnf - prob.hi[0, slot], 0.0)


def _peak_width_q(prob: _Problem, r: np.ndarray, i: int) -> float:
    """Q of the residual bump around grid point i, from its half-height width (RBJ BW -> Q)."""
    half = abs(r[i]) / 2.0
    same = (np.sign(r) == np.sign(r[i])) & (np.abs(r) >= half)
    a = i
    while a > 0 and same[a - 1]:
        a -= 1
    b = i
    while b < r.size - 1 and same[b + 1]:
        b += 1
    bw = max(np.log2(prob.freqs[b] / prob.freqs[a]), 0.1)
    # the residual bump's half-height width ~ the bell's midpoint-gain bandwidth (RBJ's BW)
    return float(q_from_octaves(bw))


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------

def _resolve(bands: Any, sample_rate: float | None, mapping_name: str):
    if hasattr(bands, "bands"):
        specs = tuple(bands.bands)
        name = mapping_name or str(getattr(bands, "name", "") or "")
        sr = sample_rate if sample_rate is not None else getattr(bands, "sample_rate", None)
    else:
        specs = tuple(bands)
        name, sr = mapping_name, sample_rate
    for s in specs:
        if not isinstance(s, BandSpec):
            raise TypeError(f"bands must be BandSpec values, got {type(s).__name__}")
    return specs, name, float(sr) if sr is not None else 48000.0


def fit_curve(target_db: np.ndarray | Sequence[float], bands: Any, *,
              previous: Fit | None = None, sample_rate: float | None = None,
              mapping_name: str = "") -> Fit:
    """Fit the plugin bands `bands` (a Mapping-like object with `.bands`, or BandSpecs) to a curve.

    target_db: 40 values in dB at `bridge.erb.FREQS_HZ`. sample_rate: the mapping's if it has one,
    else 48 kHz. previous: a Fit with as many bands to warm start from (no greedy phase).
    Returns one BandSetting per plugin band; unused bands are type "off".
    """
    target = np.asarray(target_db, dtype=np.float64).reshape(-1)
    if target.size != N_BANDS or not np.all(np.isfinite(target)):
        raise ValueError(f"target_db must be {N_BANDS} finite values at the ERB centres")
    specs, name, sr = _resolve(bands, sample_rate, mapping_name)
    prob = _Problem(target, specs, sr)
    nb = len(specs)
    usable = [i for i in range(nb) if _fit_kinds(specs[i])]
    if usable and all(specs[i].fixed_freq_hz is not None for i in usable):
        settings = _fit_graphic(prob, usable)
    elif previous is not None and len(previous.bands) == nb:
        settings = _fit_warm(prob, previous)
    else:
        settings = _fit_greedy(prob, usable)
    return _make_fit(name, settings, target, sr)


def _make_fit(name: str, settings: Sequence[BandSetting], target: np.ndarray, sr: float) -> Fit:
    pred = response_db(settings, FREQS_HZ, sr)
    err = pred - target
    return Fit(mapping_name=name, bands=tuple(settings), freqs_hz=FREQS_HZ.copy(),
               target_db=target.copy(), predicted_db=pred,
               rms_error_db=weighted_rms_db(err, FREQS_HZ),
               max_error_db=float(np.max(np.abs(err))))


def _settings(prob: _Problem, kinds: np.ndarray, idx: np.ndarray, p: np.ndarray,
              sort_interchangeable: bool) -> list[BandSetting]:
    out = [BandSetting("off", float(np.exp(prob.lo[0, i])), 0.0, 0.7071) for i in range(len(prob.specs))]
    for j, slot in enumerate(idx):
        out[slot] = BandSetting(_KIND_NAMES[int(kinds[slot])], float(np.exp(p[0, j])),
                                float(p[1, j]), float(np.exp(p[2, j])))
    if sort_interchangeable:
        out = _sort_interchangeable(prob.specs, out)
    return out


def _spec_key(s: BandSpec):
    return (s.types, s.freq_hz, s.gain_db, s.q, s.fixed_freq_hz, s.fixed_q, s.slopes_db_oct)


def _sort_interchangeable(specs: Sequence[BandSpec], out: list[BandSetting]) -> list[BandSetting]:
    """Within groups of identical band specs, order settings by frequency (offs last), so a cold
    fit reads left to right on the plugin's display."""
    groups: dict[Any, list[int]] = {}
    for i, s in enumerate(specs):
        groups.setdefault(_spec_key(s), []).append(i)
    res = list(out)
    for slots in groups.values():
        if len(slots) < 2:
            continue
        chosen = sorted((out[i] for i in slots), key=lambda b: (b.type == "off", b.freq_hz))
        for i, b in zip(slots, chosen):
            res[i] = b
    return res


def _fit_greedy(prob: _Problem, usable: list[int]) -> list[BandSetting]:
    kinds = np.full(len(prob.specs), -1)
    placed: list[int] = []
    params: list[list[float]] = []
    free_slots = list(usable)
    t = prob.target
    mid = float(np.median(t))

    def place(slot: int, kind: int, f: float, g: float, q: float) -> None:
        kinds[slot] = kind
        placed.append(slot)
        free_slots.remove(slot)
        lnf = float(np.clip(np.log(f), prob.lo[0, slot], prob.hi[0, slot]))
        gg = float(np.clip(g, prob.lo[1, slot], prob.hi[1, slot]))
        params.append([lnf, gg, np.log(_initial_q(prob, slot, q))])

    def current() -> tuple[np.ndarray, np.ndarray]:
        idx = np.array(placed, dtype=int)
        return idx, np.array(params, dtype=np.float64).T.reshape(3, len(placed))

    # 1. shelves for the band ends, when offered (lowest slot for the low shelf, highest for high)
    lows = [i for i in free_slots if KIND_LOW_SHELF in _fit_kinds(prob.specs[i])]
    if lows:
        s = min(lows, key=lambda i: (len(prob.specs[i].types), i))
        place(s, KIND_LOW_SHELF, 150.0, float(np.mean(t[prob.freqs < 60.0])) - mid, 0.7071)
    highs = [i for i in free_slots if KIND_HIGH_SHELF in _fit_kinds(prob.specs[i])]
    if highs:
        s = min(highs, key=lambda i: (len(prob.specs[i].types), -i))
        place(s, KIND_HIGH_SHELF, 6000.0, float(np.mean(t[prob.freqs > 12000.0])) - mid, 0.7071)
    if placed:
        idx, p = current()
        p = _lm(prob, kinds, idx, p, max_iter=STAGE_ITERS, rtol=1e-3)
        params[:] = p.T.tolist()

    # 2. bells (or whatever kind a slot offers) at the largest residual, re-optimising all
    while free_slots:
        idx, p = current()
        if placed:
            _, pred, _ = _residual(prob, _Placed(prob, kinds, idx), p, want_jac=False)
            resid = t - pred
        else:
            resid = t.copy()
        rms = float(np.sqrt(np.sum((prob.sw * resid) ** 2)))
        if rms < STOP_RMS_DB:
            break
        i = int(np.argmax(np.abs(resid)))
        lnf = float(np.log(prob.freqs[i]))
        slot = min(free_slots, key=lambda s: (_slot_distance(prob, s, lnf),
                                               KIND_BELL not in _fit_kinds(prob.specs[s]), s))
        ks = _fit_kinds(prob.specs[slot])
        kind = KIND_BELL if KIND_BELL in ks else ks[0]
        f = float(np.exp(np.clip(lnf, prob.lo[0, slot], prob.hi[0, slot])))
        place(slot, kind, f, float(resid[i]), _peak_width_q(prob, resid, i))
        idx, p = current()
        p = _lm(prob, kinds, idx, p, max_iter=STAGE_ITERS, rtol=1e-3)
        params[:] = p.T.tolist()

    idx, p = current()
    p = _lm(prob, kinds, idx, p, max_iter=FINAL_ITERS, rtol=FINAL_RTOL)
    return _settings(prob, kinds, idx, p, sort_interchangeable=True)


def _fit_warm(prob: _Problem, previous: Fit) -> list[BandSetting]:
    kinds = np.full(len(prob.specs), -1)
    placed, cols = [], []
    for i, (b, s) in enumerate(zip(previous.bands, prob.specs)):
        code = KIND_CODES.get(b.type)
        if code is None or code not in _fit_kinds(s):
            continue
        kinds[i] = code
        placed.append(i)
        cols.append([np.log(max(b.freq_hz, 1e-3)), b.gain_db, np.log(max(b.q, 1e-6))])
    idx = np.array(placed, dtype=int)
    p = np.array(cols, dtype=np.float64).T.reshape(3, len(placed))
    p = np.clip(p, prob.lo[:, idx], prob.hi[:, idx])
    p = _lm(prob, kinds, idx, p, max_iter=WARM_ITERS, rtol=FINAL_RTOL, anchor=p.copy())
    return _settings(prob, kinds, idx, p, sort_interchangeable=False)


def graphic_q(freqs_hz: Sequence[float]) -> np.ndarray:
    """Q of graphic-EQ bands whose Q is not given: the RBJ Q of each band's own spacing in octaves
    (mean distance to its neighbours), as constant-Q graphic EQs are built (e.g. 1/3 oct -> 4.3)."""
    lf = np.log2(np.asarray(freqs_hz, dtype=np.float64))
    order = np.argsort(lf)
    s = lf[order]
    if s.size == 1:
        return np.array([0.7071])
    gaps = np.diff(s)
    bw = np.empty_like(s)
    bw[0], bw[-1] = gaps[0], gaps[-1]
    bw[1:-1] = (gaps[:-1] + gaps[1:]) / 2.0
    out = np.empty_like(bw)
    out[order] = q_from_octaves(np.maximum(bw, 1e-3))
    return out


def _fit_graphic(prob: _Problem, usable: list[int]) -> list[BandSetting]:
    """Gains only: bounded least squares, relinearised (Gauss-Newton with each step an exact
    bounded linear LS, scipy lsq_linear) since a bell's dB response is not quite linear in gain."""
    idx = np.array(usable, dtype=int)
    kinds = np.full(len(prob.specs), -1)
    for i in usable:
        ks = _fit_kinds(prob.specs[i])
        kinds[i] = KIND_BELL if KIND_BELL in ks else ks[0]
    f = np.exp(prob.lo[0, idx])
    q = np.exp(prob.lo[2, idx])
    qfree = prob.free[2, idx]
    if qfree.any():
        q = np.where(qfree, np.clip(graphic_q(f), np.exp(prob.lo[2, idx]), np.exp(prob.hi[2, idx])), q)
    g = np.zeros(idx.size)
    glo, ghi = prob.lo[1, idx], prob.hi[1, idx]
    for _ in range(12):
        db, _, d_g, _ = peq_db_and_grad(kinds[idx], f, g, q, prob.grid)
        a = (d_g * prob.sw).T
        b = prob.sw * (prob.target - db.sum(axis=0)) + a @ g
        g_new = lsq_linear(a, b, bounds=(glo, ghi), method="bvls").x
        done = np.max(np.abs(g_new - g)) < 1e-7
        g = g_new
        if done:
            break
    p = np.vstack([np.log(f), g, np.log(q)])
    return _settings(prob, kinds, idx, p, sort_interchangeable=False)
