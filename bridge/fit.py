"""Fit a plugin's bands to a 40-band ERB curve: the step between "a curve" and "your EQ's knobs".

Why this shape: the curve is defined at the 40 ERB centres, but a plugin band acts between them,
so the error is measured on a dense grid evenly spaced on the ERB-rate scale (Glasberg & Moore
1990), where each point stands for the same slice of hearing as a centre does. The target is
linearly interpolated in ERB-rate onto that grid.

Method (parametric bands): greedy placement, one filter at a time at the largest residual, with
shelves taken first for the band ends when the plugin offers them; after each addition every
placed filter is re-optimised by a few steps of a small projected Levenberg-Marquardt loop
(Levenberg 1944, Marquardt 1963; Nielsen's damping update; Nocedal & Wright, "Numerical
Optimization", sec. 10.3), then a short final polish. Parameters are (ln f, gain dB, ln Q) with box
bounds; the Jacobian is closed-form (the RBJ magnitudes of `bridge.filters` in the warped-ratio
form y = tan^2(w/2) / tan^2(w0/2), see `_Model.cost`), formed only for kept steps, and the normal
equations are a (3k x 3k) Cholesky solve. A few weak penalties keep the answer musical: gains
pulled toward 0, Q toward 1 (bells) or 0.707 (shelves), pairs of bells at nearly the same
frequency with opposite gains (which cancel each other) discouraged, and a low shelf kept at least
an octave below a high shelf (otherwise a high shelf at 300 Hz plus a bell at 20 Hz is a cheap way
to fake a broadband gain).
Graphic EQs (every band at a fixed frequency) are a bounded least-squares problem in the gains
alone. A warm start (`previous`) skips the greedy phase and runs a few LM steps from the previous
parameters, pulled toward them, so a slowly moving target moves the knobs smoothly.
`fit_tangent` goes one step further for knobs: the first-order change of a fit per unit move of
its target along given directions (the implicit function theorem at the warm problem's optimum),
so the daemon answers a knob turn with a small matrix product and refits only once it rests.

Speed: the time of a numpy loop is call overhead (about 60 small-array calls per LM step), not
arithmetic, so fewer grid points would not help and fewer LM steps would cost accuracy. The same
loop is compiled (bridge/_lmcore.c, `_lm_compiled`) when the install found a C compiler; the
numpy loop (`_lm_numpy`) runs otherwise. bench/fit_quality.py times both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from bridge.bands import BandSetting, BandSpec
from bridge.erb import FREQS_HZ, N_BANDS, erb_grid, erb_rate
from bridge.filters import (_DB, _H, KIND_BELL, KIND_CODES, KIND_HIGH_SHELF, KIND_LOW_SHELF,
                            PeqGrid, peq_db_and_grad, q_from_octaves, response_db)

DENSE_POINTS = 96  # error grid: ~2.4 points per ERB centre spacing, 20 Hz .. 20 kHz
_KIND_NAMES = {v: k for k, v in KIND_CODES.items()}

# Penalty weights, in the unit of the residual (ERB-weighted RMS dB): small enough to cost
# < 0.01 dB of fit on real curves, large enough to decide between near-equivalent solutions.
GAIN_PULL = 0.002  # per dB of gain
Q_PULL = 0.004  # per unit of ln(Q / Q_HOME)
Q_HOME = 1.0  # bells
SHELF_Q_HOME = 0.7071  # shelves: the Butterworth-like shape, no bump or dip beside the shelf
SHELF_Q_PULL = 0.05  # shelves: stronger (Q 0.4-1.3 instead of 0.2-1.8 on word curves, +0.002 dB)
CANCEL_PULL = 0.02  # per dB of the smaller gain of an opposite-sign bell pair at the same freq
CANCEL_WIDTH = np.log(2.0) / 2.0  # half an octave (in ln f): how close two bells must be
CROSS_PULL = 0.5  # per unit of ln f by which a low shelf is less than an octave below a high one
CROSS_MARGIN = np.log(2.0)
_CANCEL_REACH = 5.0 * CANCEL_WIDTH

_solve = np.linalg.solve

try:  # the same loop compiled (bridge/_lmcore.c, built at install when a C compiler is there)
    from bridge import _lmcore
except ImportError:  # pragma: no cover - depends on the build
    _lmcore = None
# EQBRIDGE_FIT_BACKEND=numpy: the whole process fits with `baseline_solvers()` (benchmarks' baseline)
_BASELINE_ENV = os.environ.get("EQBRIDGE_FIT_BACKEND", "").lower() == "numpy"
if _BASELINE_ENV:
    _lmcore = None
_PENALTIES = (CANCEL_PULL, CANCEL_WIDTH, _CANCEL_REACH, CROSS_PULL, CROSS_MARGIN)

# Warm start: pull toward the previous fit per unit of (ln f, gain dB, ln Q), so a small target
# change cannot slide a band along a flat valley of the cost (no band jumping).
WARM_PULL = np.array([0.3, 0.005, 0.05])
STAGE_ITERS = 3  # LM iterations after each greedy addition (the final polish converges)
FINAL_ITERS = 12
WARM_MAX_STEP_OCT = 0.5  # a warm refit moves a band's frequency at most this far (octaves)
WARM_MAX_Q_FACTOR = 2.0  # ... and its Q at most by this factor
WARM_ITERS = 5
MAX_LINE_PIECES = 12  # stretches solved per knob direction and sign (FitTangent.extend_line)
FINAL_RTOL = 1e-3  # stop when an accepted step lowers the cost by less than this fraction
STAGE_RTOL = 1e-3
WARM_RTOL = 1e-3
LAM0 = 1.0  # initial LM damping (tuned: fewer rejected first steps)
WARM_LAM0 = 0.03
STOP_RMS_DB = 0.03  # greedy stops adding bands once the weighted RMS error is below this


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


class _Geometry:
    """What depends only on the band specs and sample rate (cached across fits)."""

    def __init__(self, specs: tuple[BandSpec, ...], sample_rate: float):
        self.sample_rate = sample_rate
        hi = min(20000.0, 0.45 * sample_rate)
        self.freqs = erb_grid(DENSE_POINTS, 20.0, hi)
        self.npts = self.freqs.size
        self.grid = PeqGrid(self.freqs, sample_rate)
        self.pi_sr = np.pi / sample_rate
        self.tan2 = np.tan(self.grid.half) ** 2
        self.sw = np.sqrt(erb_weights(self.freqs))
        self.interp_x = erb_rate(self.freqs)
        self.centres_tan2 = np.tan(np.pi * FREQS_HZ / sample_rate) ** 2
        self.ln_f_range = (math.log(2.0), math.log(0.4999 * sample_rate))  # as response_db clamps
        self.specs = specs
        self.structures: dict[tuple, _Structure] = {}
        self.kinds = [_fit_kinds(s) for s in specs]
        groups: dict[Any, list[int]] = {}
        for i, s in enumerate(specs):
            groups.setdefault(_spec_key(s), []).append(i)
        self.groups = [g for g in groups.values() if len(g) > 1]
        self.end_lo = self.freqs < 60.0
        self.end_hi = self.freqs > 12000.0
        # the same as flat buffers for bridge._lmcore.greedy
        self.kind_bits = np.array([sum(1 << k for k in ks) for ks in self.kinds], dtype=np.uint8)
        self.ntypes = np.array([len(s.types) for s in specs], dtype=np.int64)
        self.end_lo_u8, self.end_hi_u8 = self.end_lo.astype(np.uint8), self.end_hi.astype(np.uint8)
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
        self.free_u8 = self.free.astype(np.uint8)


_GEOMETRY: dict[tuple, _Geometry] = {}
_CENTRES_ERB = erb_rate(FREQS_HZ)


class _Problem:
    """Everything fixed during one fit: grid, weights, target, band constraints."""

    def __init__(self, target_db: np.ndarray, specs: Sequence[BandSpec], sample_rate: float):
        specs = tuple(specs)
        key = (specs, float(sample_rate))
        geo = _GEOMETRY.get(key)
        if geo is None:
            if len(_GEOMETRY) > 64:
                _GEOMETRY.clear()
            geo = _GEOMETRY[key] = _Geometry(specs, float(sample_rate))
        self.geo = geo
        self.sample_rate = geo.sample_rate
        self.freqs, self.npts, self.grid, self.pi_sr = geo.freqs, geo.npts, geo.grid, geo.pi_sr
        self.tan2 = geo.tan2
        self.sw, self.specs = geo.sw, geo.specs
        self.kinds = geo.kinds
        self.lo, self.hi, self.free = geo.lo, geo.hi, geo.free
        self.target = np.interp(geo.interp_x, _CENTRES_ERB, target_db)
        self.sw_db = geo.sw * _DB
        self.sw_target = geo.sw * self.target
        self.log_pi_sr = math.log(geo.pi_sr)


# --------------------------------------------------------------------------------------------
# Residual, Jacobian, penalties
# --------------------------------------------------------------------------------------------

class _Structure:
    """What a set of placed bands fixes for LM, independent of the target (cached per geometry):
    slots, kinds, the per-kind constants of the closed form, bounds and the penalty structure."""

    def __init__(self, geo: _Geometry, kk: np.ndarray, idx: np.ndarray):
        k = idx.size
        self.idx, self.kinds, self.k = idx, kk, k
        bell = kk == KIND_BELL
        low = kk == KIND_LOW_SHELF
        high = ~(bell | low)
        # Every band is |H|^2 = N / D with X = (alpha - beta y)^2 + c y for X = N, D, where
        # alpha, beta, c are A^ea / Q^eq (the shelves' gain factor A^2 folded into N):
        #   bell:        N: A^(0, 0, 2)      D: A^(0, 0, -2)    (exponents of alpha, beta, c)
        #   low shelf:   N: A^(2, 1, 3)      D: A^(0, 1, 1)
        #   high shelf:  N: A^(1, 2, 3)      D: A^(1, 0, 1)
        # and c carries Q^-2. (bridge.filters' forms, divided by u^2 and with y = v / u.)
        ea = np.zeros((3, 2, k))
        ea[:, 0, bell], ea[:, 1, bell] = [[0.0], [0.0], [2.0]], [[0.0], [0.0], [-2.0]]
        ea[:, 0, low], ea[:, 1, low] = [[2.0], [1.0], [3.0]], [[0.0], [1.0], [1.0]]
        ea[:, 0, high], ea[:, 1, high] = [[1.0], [2.0], [3.0]], [[1.0], [0.0], [1.0]]
        # one matrix maps x = [ln f0, gain dB, ln Q] to the logs of (alpha, beta, c) and of w0/2
        emat = np.zeros((6 * k + k, 3 * k))
        r = np.arange(k)
        for m in range(3):
            for nd in range(2):
                emat[(2 * m + nd) * k + r, k + r] = _H * ea[m, nd]
        emat[4 * k + r, 2 * k + r] = -2.0
        emat[5 * k + r, 2 * k + r] = -2.0
        emat[6 * k + r, r] = 1.0
        self.emat = emat
        self.ebias = np.concatenate([np.zeros(6 * k), np.full(k, np.log(geo.pi_sr))])
        # d X / d ln A = 2 P (ea_alpha alpha - ea_beta beta y) + ea_c c y: coefficients
        self.ea2 = 2.0 * ea[:2, ..., None]
        self.ea_c = ea[2, ..., None]
        self.scale = np.empty((3, k, 1))
        self.scale[1] = _DB * _H
        self.scale[2] = -2.0 * _DB
        self.lo = geo.lo[:, idx].ravel()
        self.hi = geo.hi[:, idx].ravel()
        self.free = geo.free[:, idx].ravel()
        self.all_free = bool(self.free.all())
        qfree = geo.free[2, idx].astype(np.float64)
        # base quadratic pulls: gain toward 0 and ln Q toward its home (where Q is free)
        q_pull = np.where(bell, Q_PULL, SHELF_Q_PULL) ** 2 * qfree
        self.w1 = np.concatenate([np.zeros(k), np.full(k, GAIN_PULL ** 2), q_pull])
        self.h1 = np.concatenate([np.zeros(2 * k),
                                  np.log(np.where(bell, Q_HOME, SHELF_Q_HOME))])
        self.c1 = float(self.w1 @ self.h1 ** 2)
        bells = np.flatnonzero(bell).tolist()
        self.pairs = [(i, j) for n, i in enumerate(bells) for j in bells[n + 1:]]
        self.pair_i = np.array([i for i, _ in self.pairs], dtype=np.int64)
        self.pair_j = np.array([j for _, j in self.pairs], dtype=np.int64)
        self.cross = [(i, j) for i in np.flatnonzero(low).tolist()
                      for j in np.flatnonzero(high).tolist()]
        # the same structure as flat buffers for bridge._lmcore
        self.ea = np.ascontiguousarray(ea)
        self.free_u8 = self.free.astype(np.uint8)
        self.cross_i = np.array([i for i, _ in self.cross], dtype=np.int64)
        self.cross_j = np.array([j for _, j in self.cross], dtype=np.int64)


class _Model:
    """One set of placed bands and its LM cost, gradient and Gauss-Newton Hessian.

    The cost is sum(r^2) over the weighted fit residual rows on the grid, the quadratic pulls
    (gain toward 0, ln Q toward its home, and with a warm start every parameter toward the
    previous fit) and the few nonzero penalty rows (cancelling bell pairs, crossed shelves). The
    quadratic pulls have constant Jacobians, so they enter the normal equations as diagonal terms
    rather than as rows. Parameters x are one flat vector [ln f (k), gain dB (k), ln Q (k)] in the
    order of `idx`.

    The band maths is `bridge.filters.peq_db_and_grad`'s closed form, specialised to a fixed set of
    kinds (masks and exponents built once, `_Structure`) and split so a trial step computes only
    the residual; the Jacobian reuses its intermediates when the step is kept.
    """

    def __init__(self, prob: _Problem, kinds: np.ndarray, idx: np.ndarray,
                 anchor: np.ndarray | None = None):
        geo = prob.geo
        kk = kinds[idx]
        key = (kk.tobytes(), idx.tobytes())
        st = geo.structures.get(key)
        if st is None:
            st = geo.structures[key] = _Structure(geo, kk, idx)
        self.prob, self.st = prob, st
        self.k, self.lo, self.hi, self.free = st.k, st.lo, st.hi, st.free
        self.all_free = st.all_free
        # quadratic pulls: w1 (x - h1)^2 + w2 (x - h2)^2 == W (x - H)^2 + const
        if anchor is None:
            self.pw, self.ph, self.pc = st.w1, st.h1, 0.0
        else:
            w2 = np.repeat(WARM_PULL ** 2, st.k)
            h2 = np.asarray(anchor, dtype=np.float64).ravel()
            self.pw = st.w1 + w2
            self.ph = (st.w1 * st.h1 + w2 * h2) / self.pw
            self.pc = st.c1 + float(w2 @ h2 ** 2) - float(self.pw @ self.ph ** 2)

    def cost(self, x: np.ndarray):
        """Cost at x and the intermediates `hess_grad` needs (a tuple).

        With y = W^2 = tan^2(w/2) / tan^2(w0/2) (the BLT-warped frequency ratio squared), every
        |H|^2 of bridge.filters is e^K N / D with N = (aN - bN y)^2 + cN y and D alike (the
        common factor u^2 of the (u, v) form cancels). y is a ratio of two accurately computed
        tangents, so nothing cancels at low frequencies, and 1 - y only loses digits where the
        c*y term dominates.
        """
        prob, st, k = self.prob, self.st, self.k
        e = np.exp(st.emat @ x + st.ebias)
        abc = e[:6 * k].reshape(3, 2, k, 1)  # alpha, beta, c of N and D
        half0 = e[6 * k:]  # w0 / 2
        t0 = np.tan(half0)
        y = prob.tan2 / (t0 * t0)[:, None]  # (k, n)
        p = abc[0] - abc[1] * y
        cy = abc[2] * y
        xx = p * p + cy
        s = np.log(xx[0] / xx[1]).sum(axis=0)
        rf = prob.sw_db * s - prob.sw_target
        dx = x - self.ph
        cost = float(rf @ rf) + float(self.pw @ (dx * dx)) + self.pc
        rows = self._rows(x) if (st.pairs or st.cross) else None
        if rows:
            cost += sum(r * r for r, _ in rows)
        return cost, (x, s, rf, abc, half0, y, p, cy, xx, dx, rows)

    def db_at(self, x: np.ndarray, tan2: np.ndarray) -> np.ndarray:
        """Summed dB response of the bands at x on another grid (tan^2(w/2) of its points)."""
        st, k = self.st, self.k
        e = np.exp(st.emat @ x + st.ebias)
        abc = e[:6 * k].reshape(3, 2, k, 1)
        t0 = np.tan(e[6 * k:])
        y = tan2 / (t0 * t0)[:, None]
        p = abc[0] - abc[1] * y
        xx = p * p + abc[2] * y
        return _DB * np.log(xx[0] / xx[1]).sum(axis=0)

    def _rows(self, x: np.ndarray) -> list:
        """The nonzero penalty rows at x: (value, [(param index, d value / d param), ...]).

        Opposite-sign bells: CANCEL_PULL * |smaller gain| * exp(-d^2 / (2 CANCEL_WIDTH^2)), d their
        ln-frequency distance (same-sign pairs give 0); a low shelf above a high shelf: a hinge
        CROSS_PULL * max(ln f_low - ln f_high + CROSS_MARGIN, 0).
        """
        st, k = self.st, self.k
        xl = x.tolist()
        pairs = st.pairs
        if len(pairs) > 28:  # many bells: find the few candidate pairs with numpy first
            pi, pj = st.pair_i, st.pair_j
            g = x[k:2 * k]
            d = x[pi] - x[pj]
            cand = np.flatnonzero((g[pi] * g[pj] < 0.0) & (np.abs(d) < _CANCEL_REACH))
            pairs = [pairs[n] for n in cand.tolist()]
        rows = _cancel_rows(xl, k, pairs)
        for i, j in st.cross:
            over = xl[i] - xl[j] + CROSS_MARGIN
            if over > 0.0:
                rows.append((CROSS_PULL * over, [(i, CROSS_PULL), (j, -CROSS_PULL)]))
        return rows

    def jacobian_t(self, state) -> np.ndarray:
        """J^T of the weighted grid residual rows at a `cost` state: (3k, grid points)."""
        prob, st, k = self.prob, self.st, self.k
        x, s, rf, abc, half0, y, p, cy, xx, dx, rows = state
        inv = 1.0 / xx
        pinv = p * inv
        t = np.empty((3, 2, k, prob.npts))
        # d X / d y = c - 2 beta P  (and d y / d ln f0 = -y * 2 w0 / sin(w0), in `scale`)
        np.multiply(abc[2], inv, out=t[0])
        t[0] -= (2.0 * abc[1]) * pinv
        # d X / d ln Q = -2 c y  (the -2 in `scale`)
        np.multiply(cy, inv, out=t[2])
        # d X / d ln A = 2 P (ea_alpha alpha - ea_beta beta y) + ea_c c y
        w = st.ea2 * abc[:2]
        np.multiply(w[0] - w[1] * y, pinv, out=t[1])
        t[1] += st.ea_c * t[2]
        d = t[:, 0] - t[:, 1]  # (3, k, n): derivatives of ln N - ln D
        d[0] *= y
        scale = st.scale.copy()
        scale[0, :, 0] = (-_DB * 4.0) * half0 / np.sin(2.0 * half0)
        d *= scale
        jt = d.reshape(3 * k, prob.npts)
        jt *= prob.sw
        return jt

    def hess_grad(self, state):
        """Gauss-Newton Hessian J J^T and gradient J r (both of the half cost) at a `cost` state."""
        rf, dx, rows = state[2], state[9], state[10]
        jt = self.jacobian_t(state)
        hess = jt @ jt.T
        hess.flat[::hess.shape[0] + 1] += self.pw
        grad = jt @ rf + self.pw * dx
        for r, entries in rows or ():  # a handful of sparse rows: rank-one updates by hand
            for i, di in entries:
                grad[i] += di * r
                for j, dj in entries:
                    hess[i, j] += di * dj
        return hess, grad


def _cancel_rows(xl: list[float], k: int, pairs: Sequence[tuple[int, int]]) -> list:
    """Penalty rows of the opposite-sign bell pairs among `pairs` (see `_Model._rows`); xl is the
    parameter vector as a list, k the number of placed bands."""
    rows = []
    for i, j in pairs:
        gi, gj = xl[k + i], xl[k + j]
        d = xl[i] - xl[j]
        # beyond 5 widths a row is < 4e-6 * CANCEL_PULL * gain: left out (cost change < 1e-12)
        if gi * gj < 0.0 and -_CANCEL_REACH < d < _CANCEL_REACH:
            cl = CANCEL_PULL * math.exp(-0.5 * d * d / CANCEL_WIDTH ** 2)
            s, gs = (i, gi) if abs(gi) <= abs(gj) else (j, gj)
            r = cl * abs(gs)
            dr = -r * d / CANCEL_WIDTH ** 2
            rows.append((r, [(i, dr), (j, -dr), (k + s, math.copysign(cl, gs))]))
    return rows


def _lm(model: _Model, p: np.ndarray, max_iter: int, rtol: float, lam: float | None = None):
    """Projected Levenberg-Marquardt on the placed bands; returns the improved (3, k) params,
    the predicted dB on the grid there, and the final damping (to carry into the next stage).
    Runs compiled (`_lm_compiled`) when bridge._lmcore is built, else in numpy (`_lm_numpy`)."""
    if lam is None:
        lam = LAM0
    if _lmcore is not None:
        got = _lm_compiled(model, p, max_iter, rtol, lam)
        if got is not None:
            return got
    return _lm_numpy(model, p, max_iter, rtol, lam)


def _lm_compiled(model: _Model, p: np.ndarray, max_iter: int, rtol: float, lam: float):
    """`_lm_numpy` in C (bridge/_lmcore.c, the same steps); None when a step matrix was not
    positive definite (cannot happen with damping > 0), and the numpy loop takes over."""
    prob, st = model.prob, model.st
    x = np.array(p, dtype=np.float64).ravel()
    s = np.empty(prob.npts)
    lam_out = _lmcore.lm(x, s, model.lo, model.hi, st.free_u8, model.pw, model.ph, st.ea, prob.tan2, prob.sw,
                         prob.sw_db, prob.sw_target, st.pair_i, st.pair_j, st.cross_i, st.cross_j, st.k,
                         float(model.pc), prob.log_pi_sr, _DB, _H, *_PENALTIES, max_iter, rtol, lam,
                         model.all_free)
    if lam_out is None:
        return None
    return x.reshape(3, st.k), _DB * s, lam_out


def _lm_numpy(model: _Model, p: np.ndarray, max_iter: int, rtol: float, lam: float):
    """`_lm` in numpy.

    Damping: Marquardt's scaling (lambda * diag(J^T J)), updated from the gain ratio rho (actual
    over predicted cost drop) as in Nielsen (1999) / Madsen, Nielsen & Tingleff, "Methods for
    non-linear least squares problems" (2004), sec. 3.2; a parameter sitting on a bound whose
    gradient pushes outward is held for that step (projected/active-set LM, Nocedal & Wright 16.7).
    Each trial evaluates the residual only; the Jacobian is formed for kept steps that continue.
    """
    k = model.k
    lo, hi, free = model.lo, model.hi, model.free
    x = np.minimum(np.maximum(p.ravel(), lo), hi)
    cost, state = model.cost(x)
    if k == 0 or max_iter <= 0:
        return x.reshape(3, k), _DB * state[1], lam
    nu = 2.0
    n = x.size
    for _ in range(max_iter):
        hess, grad = model.hess_grad(state)
        if model.all_free and ((x - lo) * (hi - x)).min() > 0.0:
            held = None  # nothing on a bound (the common case, in 4 array calls)
        else:
            held = ((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0)) | ~free
        if held is not None and held.any():
            # hold those parameters: their rows/columns become identity, their gradient 0
            if held.all():
                break
            keep = (~held).astype(np.float64)
            hc = hess * np.outer(keep, keep)
            hc.flat[::n + 1] += held
            gc = grad * keep
        else:
            hc, gc = hess, grad
        diag = hc.diagonal() + 1e-9
        improved = False
        while lam < 1e8:
            m = hc.copy()
            m.flat[::n + 1] += lam * diag
            try:  # numpy's LAPACK (gesv): scipy.linalg costs ~30 MB of RSS in the daemon
                step = _solve(m, -gc)
            except np.linalg.LinAlgError:  # singular (cannot happen with lam > 0, but be safe)
                step = np.linalg.lstsq(m, -gc, rcond=None)[0]
            x_new = np.minimum(np.maximum(x + step, lo), hi)
            cost_new, state_new = model.cost(x_new)
            if cost_new < cost:
                improved = True
                break
            lam *= nu
            nu *= 2.0
        if not improved:
            break
        drop = cost - cost_new
        # predicted drop of the (unclipped) damped GN step: -2 h.g - h.H h = h.(lam D h - g)
        predicted = float(step @ (lam * diag * step - gc))
        rho = drop / predicted if predicted > 0 else 0.0
        lam = max(lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), 1e-9)
        nu = 2.0
        x, state, cost = x_new, state_new, cost_new
        if drop <= rtol * cost:
            break
    return x.reshape(3, k), _DB * state[1], lam


# --------------------------------------------------------------------------------------------
# Band roles
# --------------------------------------------------------------------------------------------

def _fit_kinds(spec: BandSpec) -> list[int]:
    """Kinds the fitter may use for a band (bells and shelves; other types are left off)."""
    return [KIND_CODES[t] for t in ("bell", "low_shelf", "high_shelf") if t in spec.types]


def _slot_distance(prob: _Problem, slot: int, lnf: float) -> float:
    """How far (in ln f) a slot's reachable frequency range is from lnf."""
    return max(prob.lo[0, slot] - lnf, lnf - prob.hi[0, slot], 0.0)


def _peak_width_q(prob: _Problem, r: np.ndarray, i: int) -> float:
    """Q of the residual bump around grid point i, from its half-height width (RBJ BW -> Q)."""
    ri = r[i]
    same = (r * ri >= 0.5 * ri * ri) if ri != 0 else np.zeros(r.size, bool)
    same[i] = True
    # the run of points on the same side of zero and at least half as high, around i
    outside = np.flatnonzero(~same)
    j = int(np.searchsorted(outside, i))
    a = int(outside[j - 1]) + 1 if j > 0 else 0
    b = int(outside[j]) - 1 if j < outside.size else r.size - 1
    bw = max(math.log2(prob.freqs[b] / prob.freqs[a]), 0.1)
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


def fit_backend() -> str:
    """Which implementation of the LM inner loop runs (for benchmarks): "c" or "numpy"."""
    return "numpy" if _lmcore is None else "c"


_OWN_BVLS = not _BASELINE_ENV  # graphic EQs: bounded_lstsq (False: scipy's lsq_linear, the baseline)


@contextmanager
def baseline_solvers() -> Iterator[None]:
    """Fits inside this block use the solvers eqbridge had before its own: the numpy LM loop and
    scipy's BVLS for graphic EQs (benchmarks' baseline; not thread-safe). EQBRIDGE_FIT_BACKEND=numpy
    selects the same for a whole process (a daemon run as a baseline)."""
    global _lmcore, _OWN_BVLS
    saved, (_lmcore, _OWN_BVLS) = (_lmcore, _OWN_BVLS), (None, False)
    try:
        yield
    finally:
        _lmcore, _OWN_BVLS = saved


def fit_curve(target_db: np.ndarray | Sequence[float], bands: Any, *,
              previous: Fit | Sequence[BandSetting] | None = None, sample_rate: float | None = None,
              mapping_name: str = "") -> Fit:
    """Fit the plugin bands `bands` (a Mapping-like object with `.bands`, or BandSpecs) to a curve.

    target_db: 40 values in dB at `bridge.erb.FREQS_HZ`. sample_rate: the mapping's if it has one,
    else 48 kHz. previous: a Fit (or its bands) with as many bands to warm start from (no greedy
    phase).
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
    elif previous is not None and len(prev := getattr(previous, "bands", previous)) == nb:
        settings = _fit_warm(prob, prev)
    else:
        settings = _fit_greedy(prob, usable)
    return _make_fit(name, settings, target, sr, prob)


_CENTRE_W = erb_weights(FREQS_HZ)


def score_settings(target_db: np.ndarray | Sequence[float], bands: Any,
                   settings: Sequence[BandSetting], *, sample_rate: float | None = None) -> Fit:
    """A Fit for given settings of `bands`: how well they match the target (no fitting)."""
    target = np.asarray(target_db, dtype=np.float64).reshape(-1)
    specs, name, sr = _resolve(bands, sample_rate, "")
    return _make_fit(name, tuple(settings), target, sr, _Problem(target, specs, sr))


def _centre_db(prob: _Problem, kinds: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The summed dB response at the 40 centres of bands `kinds` (int64) at x: `_Model.db_at`,
    in C when bridge._lmcore is built (a numpy call per step costs more than its arithmetic)."""
    if _lmcore is not None:
        out = np.empty(N_BANDS)
        _lmcore.db_at(out, x, kinds, prob.geo.centres_tan2, prob.log_pi_sr, _DB, _H)
        return out
    return _Model(prob, kinds, np.arange(kinds.size)).db_at(x, prob.geo.centres_tan2)


def _make_fit(name: str, settings: Sequence[BandSetting], target: np.ndarray, sr: float,
              prob: _Problem | None = None) -> Fit:
    on = [s for s in settings if s.type != "off"]
    if prob is not None and all(s.type in KIND_CODES for s in on):
        # bells and shelves only: the fitter's closed form at the centres (same as response_db)
        pred = np.zeros(N_BANDS)
        if on:
            lo_f, hi_f = prob.geo.ln_f_range
            x = np.array([min(max(math.log(s.freq_hz), lo_f), hi_f) for s in on]
                         + [s.gain_db for s in on] + [math.log(s.q) for s in on])
            kinds = np.array([KIND_CODES[s.type] for s in on], dtype=np.int64)
            pred = _centre_db(prob, kinds, x)
    else:
        pred = response_db(settings, FREQS_HZ, sr)
    err = pred - target
    return Fit(mapping_name=name, bands=tuple(settings), freqs_hz=FREQS_HZ.copy(),
               target_db=target.copy(), predicted_db=pred,
               rms_error_db=float(np.sqrt(_CENTRE_W @ (err * err))),
               max_error_db=float(np.max(np.abs(err))))


def _settings(prob: _Problem, kinds: np.ndarray, idx: np.ndarray, p: np.ndarray,
              sort_interchangeable: bool) -> list[BandSetting]:
    out: list[BandSetting | None] = [None] * len(prob.specs)
    lnf, g, lnq = (row.tolist() for row in p.reshape(3, -1))
    for j, slot in enumerate(idx.tolist()):
        out[slot] = BandSetting(_KIND_NAMES[int(kinds[slot])], math.exp(lnf[j]), g[j],
                                math.exp(lnq[j]))
    for i, b in enumerate(out):
        if b is None:
            out[i] = BandSetting("off", math.exp(float(prob.lo[0, i])), 0.0, 0.7071)
    if sort_interchangeable:
        out = _sort_interchangeable(prob.geo.groups, out)
    return out


def _spec_key(s: BandSpec):
    return (s.types, s.freq_hz, s.gain_db, s.q, s.fixed_freq_hz, s.fixed_q, s.slopes_db_oct)


def _sort_interchangeable(groups: list[list[int]], out: list[BandSetting]) -> list[BandSetting]:
    """Within groups of identical band specs (`_Geometry.groups`), order settings by frequency
    (offs last), so a cold fit reads left to right on the plugin's display."""
    res = list(out)
    for slots in groups:
        chosen = sorted((out[i] for i in slots), key=lambda b: (b.type == "off", b.freq_hz))
        for i, b in zip(slots, chosen):
            res[i] = b
    return res


def _fit_greedy(prob: _Problem, usable: list[int]) -> list[BandSetting]:
    """A cold fit: shelves for the band ends, then a band at the largest residual at a time, LM
    after each. Runs compiled (`_fit_greedy_compiled`) when bridge._lmcore is built, else in numpy
    (`_fit_greedy_numpy`)."""
    if _lmcore is not None:
        got = _fit_greedy_compiled(prob, usable)
        if got is not None:
            return _settings(prob, *got, sort_interchangeable=True)
    return _fit_greedy_numpy(prob, usable)


def _fit_greedy_compiled(prob: _Problem, usable: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """`_fit_greedy_numpy`'s placement in C (bridge/_lmcore.c, the same steps): (kinds per slot,
    placed slots, (3, k) params), or None when a stage's step matrix was not positive definite."""
    geo, nb = prob.geo, len(prob.specs)
    kinds, idx, p = np.empty(nb, dtype=np.int64), np.empty(nb, dtype=np.int64), np.empty(3 * nb)
    k = _lmcore.greedy(kinds, idx, p, np.array(usable, dtype=np.int64), prob.target, prob.freqs, prob.tan2,
                       prob.sw, prob.sw_db, prob.sw_target, geo.lo, geo.hi, geo.free_u8, geo.kind_bits,
                       geo.ntypes, geo.end_lo_u8, geo.end_hi_u8, prob.log_pi_sr, _DB, _H, *_PENALTIES,
                       GAIN_PULL, Q_PULL, SHELF_Q_PULL, Q_HOME, SHELF_Q_HOME, STOP_RMS_DB, LAM0,
                       STAGE_ITERS, STAGE_RTOL, FINAL_ITERS, FINAL_RTOL)
    if k is None:
        return None
    return kinds, idx[:k].copy(), p[:3 * k].reshape(3, k)


def _fit_greedy_numpy(prob: _Problem, usable: list[int]) -> list[BandSetting]:
    """`_fit_greedy` in Python, each stage's LM by `_lm`."""
    kinds = np.full(len(prob.specs), -1)
    placed: list[int] = []
    params: list[list[float]] = []
    free_slots = list(usable)
    t = prob.target
    srt = np.sort(t)
    mid = 0.5 * float(srt[(t.size - 1) // 2] + srt[t.size // 2])  # the median
    fk = prob.kinds

    def place(slot: int, kind: int, f: float, g: float, q: float) -> None:
        kinds[slot] = kind
        placed.append(slot)
        free_slots.remove(slot)
        lnf = min(max(math.log(f), prob.lo[0, slot]), prob.hi[0, slot])
        gg = min(max(g, prob.lo[1, slot]), prob.hi[1, slot])
        lnq = min(max(math.log(q), prob.lo[2, slot]), prob.hi[2, slot])
        params.append([float(lnf), float(gg), float(lnq)])

    def current() -> tuple[np.ndarray, np.ndarray]:
        idx = np.array(placed, dtype=int)
        return idx, np.array(params, dtype=np.float64).T.reshape(3, len(placed))

    # 1. shelves for the band ends, when offered (lowest slot for the low shelf, highest for high)
    lows = [i for i in free_slots if KIND_LOW_SHELF in fk[i]]
    if lows:
        s = min(lows, key=lambda i: (len(prob.specs[i].types), i))
        place(s, KIND_LOW_SHELF, 150.0, float(np.mean(t[prob.geo.end_lo])) - mid, 0.7071)
    highs = [i for i in free_slots if KIND_HIGH_SHELF in fk[i]]
    if highs:
        s = min(highs, key=lambda i: (len(prob.specs[i].types), -i))
        place(s, KIND_HIGH_SHELF, 6000.0, float(np.mean(t[prob.geo.end_hi])) - mid, 0.7071)
    pred = np.zeros_like(t)
    if placed:
        idx, p = current()
        p, pred, _ = _lm(_Model(prob, kinds, idx), p, max_iter=STAGE_ITERS, rtol=STAGE_RTOL)
        params[:] = p.T.tolist()

    # 2. bells (or whatever kind a slot offers) at the largest residual, re-optimising all
    while free_slots:
        resid = t - pred
        wr = prob.sw * resid
        rms = math.sqrt(float(wr @ wr))
        if rms < STOP_RMS_DB:
            break
        i = int(np.argmax(np.abs(resid)))
        lnf = float(np.log(prob.freqs[i]))
        slot = min(free_slots, key=lambda s: (_slot_distance(prob, s, lnf),
                                               KIND_BELL not in fk[s], s))
        ks = fk[slot]
        kind = KIND_BELL if KIND_BELL in ks else ks[0]
        f = math.exp(min(max(lnf, prob.lo[0, slot]), prob.hi[0, slot]))
        place(slot, kind, f, float(resid[i]), _peak_width_q(prob, resid, i))
        idx, p = current()
        p, pred, _ = _lm(_Model(prob, kinds, idx), p, max_iter=STAGE_ITERS, rtol=STAGE_RTOL)
        params[:] = p.T.tolist()

    idx, p = current()
    p, _, _ = _lm(_Model(prob, kinds, idx), p, max_iter=FINAL_ITERS, rtol=FINAL_RTOL)
    return _settings(prob, kinds, idx, p, sort_interchangeable=True)


def _warm_model(prob: _Problem, previous: Sequence[BandSetting]) -> tuple[_Model, np.ndarray, np.ndarray, np.ndarray]:
    """The warm-start problem around previous settings: the bands the fitter can move (same
    kinds), pulled toward where they were and held inside a trust region, so a knob turn never
    throws a band across the spectrum. Returns (model, kinds, placed slots, params (3, k))."""
    kinds = np.full(len(prob.specs), -1)
    placed, cols = [], []
    for i, (b, s) in enumerate(zip(previous, prob.specs)):
        code = KIND_CODES.get(b.type)
        if code is None or code not in _fit_kinds(s):
            continue
        kinds[i] = code
        placed.append(i)
        cols.append([np.log(max(b.freq_hz, 1e-3)), b.gain_db, np.log(max(b.q, 1e-6))])
    idx = np.array(placed, dtype=int)
    p = np.array(cols, dtype=np.float64).T.reshape(3, len(placed))
    p = np.clip(p, prob.lo[:, idx], prob.hi[:, idx])
    model = _Model(prob, kinds, idx, anchor=p.copy())
    x0 = p.ravel()
    step = np.concatenate([np.full(model.k, WARM_MAX_STEP_OCT * np.log(2.0)), np.full(model.k, np.inf),
                           np.full(model.k, np.log(WARM_MAX_Q_FACTOR))])
    model.lo, model.hi = np.maximum(model.lo, x0 - step), np.minimum(model.hi, x0 + step)
    return model, kinds, idx, p


def _fit_warm(prob: _Problem, previous: Sequence[BandSetting]) -> list[BandSetting]:
    model, kinds, idx, p = _warm_model(prob, previous)
    p, _, _ = _lm(model, p, max_iter=WARM_ITERS, rtol=WARM_RTOL, lam=WARM_LAM0)
    return _settings(prob, kinds, idx, p, sort_interchangeable=False)


@dataclass(frozen=True, eq=False)
class FitTangent:
    """A fit and how its parameters move, to first order, when the target moves along a few
    directions (one per knob). At the warm-start problem's optimum the gradient is zero, so by the
    implicit function theorem H dx = J^T W d theta (H the Gauss-Newton Hessian with the pulls, d the
    directions on the error grid). `settings(theta)` solves that small system, holding parameters
    that would cross a limit at the limit (an active set, re-solved at most a few times): a knob turn
    is answered in tens of microseconds, and a warm refit polishes it once the knob rests.
    `settings_along(j, delta)` gives the same answer for one knob moved alone from stretches
    solved beforehand (`extend_line`), in plain Python."""

    bands: tuple[BandSetting, ...]
    slots: tuple[int, ...]
    kinds: tuple[str, ...]
    x0: np.ndarray  # (n,) = (3k,) [ln f, gain dB, ln Q] of the placed bands
    hess: np.ndarray  # (n, n)
    rhs: np.ndarray  # (n, m): J^T W d per unit of each direction
    free: np.ndarray  # (n,) bool: parameters the plugin lets move
    lo: np.ndarray  # (n,) the plugin's limits within the warm trust region
    hi: np.ndarray
    unbounded: np.ndarray  # (n, m): the step per unit of each direction when no limit is reached
    _solvers: dict = field(default_factory=dict, repr=False)  # held mask -> (H_ff^-1, H_fh)
    _lines: dict = field(default_factory=dict, repr=False)  # (j, sign) -> solved stretches (`_piece`)
    _lines_done: set = field(default_factory=set, repr=False)  # (j, sign): no more stretches to solve

    def _solver(self, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """H_ff^-1 and H_fh for a set of held parameters (cached: a knob turned one way keeps
        pressing the same parameters against their limits, move after move)."""
        key = held.tobytes()
        s = self._solvers.get(key)
        if s is None:
            f = ~held
            s = self._solvers[key] = (np.linalg.inv(self.hess[np.ix_(f, f)]), self.hess[np.ix_(f, held)])
        return s

    def step(self, theta: Sequence[float] | np.ndarray, trace: list | None = None) -> np.ndarray:
        """The parameter change (n,) for a target move of sum(theta[j] * direction j).
        `trace`, if given, receives (dx, tested, outside) at every bound test: the candidate
        change, which parameters were tested against their limits and which of those were
        outside them (what `_piece` needs to know over which moves the solve takes this path)."""
        th = np.asarray(theta, dtype=np.float64)
        dx = self.unbounded @ th  # the common case: one small product
        x = self.x0 + dx
        inside = (x >= self.lo) & (x <= self.hi)
        if trace is not None:
            trace.append((dx.copy(), np.ones(dx.size, dtype=bool), ~inside))
        if inside.all():
            return dx
        b = self.rhs @ th
        dx = np.zeros(self.x0.size)
        held = ~self.free
        for _ in range(4):
            f = ~held
            if not f.any():
                break
            inv_ff, h_fh = self._solver(held)
            dx[f] = inv_ff @ (b[f] - h_fh @ dx[held])
            x = self.x0 + dx
            over = f & ((x < self.lo) | (x > self.hi))
            if trace is not None:
                trace.append((dx.copy(), f, over))
            if not over.any():
                break
            dx[over] = np.clip(x[over], self.lo[over], self.hi[over]) - self.x0[over]
            held = held | over
        return dx

    def settings(self, theta: Sequence[float] | np.ndarray) -> tuple[BandSetting, ...]:
        """Every band's setting with the target moved by sum(theta[j] * direction j)."""
        x = np.minimum(np.maximum(self.x0 + self.step(theta), self.lo), self.hi)
        return self._bands_at(x.tolist())

    def settings_along(self, j: int, delta: float) -> tuple[BandSetting, ...] | None:
        """`settings` for a move of direction j alone by `delta` (one knob turned), in plain
        Python. The active-set solve of a one-direction move is piecewise affine in its size
        (`_piece`): each stretch is solved once, then a move on it costs a dozen multiply-adds.
        The first stretch each way is solved on first use (or by `extend_line`, in idle time),
        later ones by `extend_line`; None for a move on none of the known stretches (use
        `settings`)."""
        a = abs(delta)
        for lo, hi, c, v in self._pieces(j, delta >= 0.0):
            if lo <= a <= hi:
                x0, xlo, xhi = self._lists
                return self._bands_at([min(max(x + ci + a * vi, l), h)
                                       for x, ci, vi, l, h in zip(x0, c, v, xlo, xhi)])
        return None

    def extend_line(self, j: int, positive: bool, upto: float, *,
                    stop: Callable[[], bool] | None = None) -> bool:
        """Solve one more stretch of direction j's moves (the first, or the next beyond the known
        ones) toward moves of size `upto`: idle work, a stretch a call (about three solves).
        False when there is nothing left to do. `stop`, asked after each solve: when it says
        True the stretch is given up unchanged (True: still to do), so an input waiting for the
        thread that runs this waits for one solve, not for the whole stretch."""
        key = (j, positive)
        try:
            if key not in self._lines:
                return bool(self._pieces(j, positive, stop))
            pieces = self._lines[key]
            if not pieces or pieces[-1][1] >= upto or key in self._lines_done:
                return False
            nxt = self._piece(j, positive, pieces[-1][1], stop)
        except _Stopped:
            return True
        if nxt is None or nxt[1] <= pieces[-1][1] or len(pieces) >= MAX_LINE_PIECES:
            self._lines_done.add(key)  # a breakpoint too close to tell apart, or too many: stop here
            return False
        pieces.append(nxt)
        return True

    @cached_property
    def _lists(self) -> tuple[list[float], list[float], list[float]]:
        """x0, lo and hi as Python lists (plain-Python arithmetic beats numpy on 12 numbers)."""
        return self.x0.tolist(), self.lo.tolist(), self.hi.tolist()

    def _pieces(self, j: int, positive: bool, stop: Callable[[], bool] | None = None) -> list:
        pieces = self._lines.get((j, positive))
        if pieces is None:
            first = self._piece(j, positive, 0.0, stop)
            pieces = self._lines[(j, positive)] = [] if first is None else [first]
        return pieces

    def _piece(self, j: int, positive: bool, start: float,
               stop: Callable[[], bool] | None = None) -> tuple[float, float, list, list] | None:
        """The stretch of moves along direction j (that sign, sizes from `start` on) over which
        the active-set solve takes one path: every bound test keeps its outcome, so the change is
        c + a v for a move of size a (c = 0 on the first stretch, which starts at no move). Each
        tested parameter then says how far it stays inside (or outside) its limits. Returns
        (from size, to size, c, v), or None where no stretch could be told apart."""
        n_dirs = self.unbounded.shape[1]
        if not 0 <= j < n_dirs:
            raise ValueError(f"direction {j} of {n_dirs}")
        theta = np.zeros(n_dirs)

        def run(a: float) -> tuple[np.ndarray, list]:
            theta[j] = a if positive else -a
            trace: list = []
            dx = self.step(theta, trace)
            if stop is not None and stop():
                raise _Stopped
            return dx, trace

        def same_path(t1: list, t2: list) -> bool:
            return len(t1) == len(t2) and all(np.array_equal(r1[1], r2[1]) and np.array_equal(r1[2], r2[2])
                                              for r1, r2 in zip(t1, t2))

        if start == 0.0:  # everything is proportional to the move: one tiny solve is exact
            a1 = 1e-7
            dx1, t1 = run(a1)
            records = [(d / a1, tested, out) for d, tested, out in t1]
            v, c = dx1 / a1, np.zeros_like(dx1)
            lo_a = 0.0
        else:  # an affine stretch: two sizes just past `start` (nudged past a breakpoint there)
            for nudge in (1e-6, 1e-4, 1e-3):
                a1 = start * (1.0 + nudge) + 1e-9
                a2 = a1 * (1.0 + 1e-4) + 1e-9
                (dx1, t1), (dx2, t2) = run(a1), run(a2)
                if same_path(t1, t2):
                    break
            else:
                return None
            records = [((r2[0] - r1[0]) / (a2 - a1), r1[1], r1[2]) for r1, r2 in zip(t1, t2)]
            lo_a = a1
        hi_a = math.inf
        for n, ((d1, tested, out), (rv, _, _)) in enumerate(zip(t1, records)):
            base = self.x0 + d1 - a1 * rv  # x(a) = base + a rv on this stretch
            moving = rv != 0.0
            inside = tested & ~out & moving
            if n == 0 and out.any():
                inside[:] = False  # the unbounded step failed: only that it keeps failing matters
            with np.errstate(divide="ignore", invalid="ignore"):
                to_lo, to_hi = (self.lo - base) / rv, (self.hi - base) / rv
            ups, downs = inside & (rv > 0), inside & (rv < 0)  # stay inside: between the limits
            crossed = tested & out & moving
            above, below = crossed & (d1 + self.x0 > self.hi), crossed & (d1 + self.x0 < self.lo)
            hi_a = min([hi_a, *to_hi[ups], *to_lo[downs], *to_hi[above & (rv < 0)], *to_lo[below & (rv > 0)]])
            lo_a = max([lo_a, *to_lo[ups], *to_hi[downs], *to_hi[above & (rv > 0)], *to_lo[below & (rv < 0)]])
        lo_a, hi_a = float(lo_a), float(hi_a)
        if start == 0.0 and lo_a <= a1:
            lo_a = 0.0  # rounding may have put it a hair above no move
        if not lo_a <= a1 <= hi_a:
            return None
        if start != 0.0:
            # the slope from two sizes far apart on the stretch (close ones lose digits to rounding)
            far = a1 + (0.5 * (hi_a - a1) if math.isfinite(hi_a) else 1.0)
            dx_far, t_far = run(far)
            if far > a2 and same_path(t1, t_far):
                dx2, a2 = dx_far, far
            v = (dx2 - dx1) / (a2 - a1)
            c = dx1 - a1 * v
        return lo_a, hi_a, c.tolist(), v.tolist()

    def _bands_at(self, x: list[float]) -> tuple[BandSetting, ...]:
        k = len(self.slots)
        out = list(self.bands)
        for j, slot in enumerate(self.slots):
            out[slot] = BandSetting(self.kinds[j], math.exp(x[j]), x[k + j], math.exp(x[2 * k + j]))
        return tuple(out)


class _Stopped(Exception):
    """`FitTangent.extend_line`'s `stop` said so: the stretch being solved is given up."""


def fit_tangent(fit: Fit, bands: Any, directions_db: np.ndarray | Sequence[Sequence[float]], *,
                sample_rate: float | None = None) -> FitTangent:
    """The first-order change of `fit` (made for `bands`) per unit move of its target along each
    of `directions_db` (m curves of 40 dB values at the ERB centres)."""
    dirs = np.asarray(directions_db, dtype=np.float64).reshape(-1, N_BANDS)
    if not np.all(np.isfinite(dirs)):
        raise ValueError("directions must be finite")
    specs, _, sr = _resolve(bands, sample_rate, "")
    if len(fit.bands) != len(specs):
        raise ValueError(f"the fit has {len(fit.bands)} bands, the mapping {len(specs)}")
    prob = _Problem(fit.target_db, specs, sr)
    model, kinds, idx, p = _warm_model(prob, fit.bands)
    x0 = p.ravel()
    n = x0.size
    hess, rhs = np.eye(n), np.zeros((n, dirs.shape[0]))
    if n:
        _, state = model.cost(x0)
        hess, _ = model.hess_grad(state)
        jt = model.jacobian_t(state)
        on_grid = np.stack([np.interp(prob.geo.interp_x, _CENTRES_ERB, d) for d in dirs], axis=1)
        rhs = jt @ (prob.sw[:, None] * on_grid)
    free = model.free.copy()
    unbounded = np.zeros_like(rhs)
    if free.any():
        unbounded[free] = np.linalg.solve(hess[np.ix_(free, free)], rhs[free])
    return FitTangent(bands=tuple(fit.bands), slots=tuple(idx.tolist()),
                      kinds=tuple(_KIND_NAMES[int(kinds[i])] for i in idx.tolist()),
                      x0=x0, hess=hess, rhs=rhs, free=free, lo=model.lo.copy(), hi=model.hi.copy(),
                      unbounded=unbounded)


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


def bounded_lstsq(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  x0: np.ndarray | None = None) -> np.ndarray | None:
    """argmin |a x - b|^2 subject to lo <= x <= hi, for `a` of full column rank, or None when the
    active set does not settle (the caller then asks scipy).

    Why not scipy's lsq_linear: its BVLS solves a fresh SVD least squares at every active-set
    step; here the normal equations are formed once,
    each step is a Cholesky-sized solve on the free variables, and the search starts from x0's
    bounds (a relinearised Gauss-Newton step usually keeps its active set). Method: the
    active-set bounded least squares of Lawson & Hanson ("Solving Least Squares Problems", 1974,
    ch. 23, NNLS with two-sided bounds; Stark & Parker 1995, BVLS): solve on the free variables
    with the others on their bounds; step back to the first bound an infeasible solution crosses;
    when feasible, free the bound variable whose gradient most wants it inside (KKT)."""
    h = a.T @ a
    c = a.T @ b
    n = c.size
    x = np.clip(np.zeros(n) if x0 is None else np.asarray(x0, dtype=np.float64), lo, hi)
    pinned = lo >= hi
    at_lo, at_hi = (x <= lo) & ~pinned, (x >= hi) & ~pinned
    tol = 1e-12 * max(float(np.max(np.abs(c))), 1.0)
    for _ in range(4 * n + 10):
        bound = at_lo | at_hi | pinned
        free = ~bound
        z = x.copy()
        if free.any():
            z[free] = np.linalg.solve(h[np.ix_(free, free)], c[free] - h[np.ix_(free, bound)] @ x[bound])
        low, high = free & (z < lo), free & (z > hi)
        if low.any() or high.any():
            d = z - x
            with np.errstate(divide="ignore", invalid="ignore"):
                alpha = np.where(low, (lo - x) / d, np.where(high, (hi - x) / d, np.inf))
            j = int(np.argmin(alpha))
            x = np.clip(x + max(min(float(alpha[j]), 1.0), 0.0) * d, lo, hi)
            at_lo |= free & (x <= lo)
            at_hi |= free & (x >= hi)
            if low[j]:
                x[j], at_lo[j] = lo[j], True
            else:
                x[j], at_hi[j] = hi[j], True
            continue
        x = z
        g = h @ x - c  # gradient of the half cost: < 0 wants x up, > 0 wants it down
        want = np.where(at_lo, -g, 0.0) + np.where(at_hi, g, 0.0)
        j = int(np.argmax(want))
        if want[j] <= tol:
            return x
        at_lo[j] = at_hi[j] = False
    return None


def _fit_graphic(prob: _Problem, usable: list[int]) -> list[BandSetting]:
    """Gains only: bounded least squares, relinearised (Gauss-Newton with each step an exact
    bounded linear LS, `bounded_lstsq`) since a bell's dB response is not quite linear in gain."""
    idx = np.array(usable, dtype=int)
    kinds = np.full(len(prob.specs), -1)
    for i in usable:
        ks = prob.kinds[i]
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
        g_new = bounded_lstsq(a, b, glo, ghi, x0=g) if _OWN_BVLS else None
        if g_new is None:  # the active set did not settle: scipy's BVLS (lazy: ~20 MB)
            from scipy.optimize import lsq_linear
            g_new = lsq_linear(a, b, bounds=(glo, ghi), method="bvls").x
        done = np.max(np.abs(g_new - g)) < 1e-7
        g = g_new
        if done:
            break
    p = np.vstack([np.log(f), g, np.log(q)])
    return _settings(prob, kinds, idx, p, sort_interchangeable=False)
