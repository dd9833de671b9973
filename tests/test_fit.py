"""The curve fitter: accuracy on reachable targets, limits, warm-start smoothness, graphic EQs."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.optimize import least_squares

from bridge.bands import BandSetting, BandSpec
from bridge.erb import FREQS_HZ
from bridge.filters import response_db
from bridge.fit import Fit, erb_weights, fit_curve, weighted_rms_db

ROOT = Path(__file__).resolve().parents[1]


def eight_band(gain=(-15.0, 15.0), q=(0.18, 6.0)):
    return ([BandSpec("ls", ("low_shelf", "bell"), (20.0, 20000.0), gain, q)]
            + [BandSpec(f"b{i}", ("bell",), (20.0, 20000.0), gain, q) for i in range(6)]
            + [BandSpec("hs", ("high_shelf", "bell"), (20.0, 20000.0), gain, q)])


SYNTH = [
    [BandSetting("low_shelf", 120.0, 4.0, 0.7), BandSetting("bell", 1000.0, -3.0, 1.2),
     BandSetting("high_shelf", 6000.0, 2.5, 0.7)],
    [BandSetting("bell", 300.0, 5.0, 0.8), BandSetting("bell", 3000.0, -4.0, 2.0)],
    [BandSetting("low_shelf", 250.0, -6.0, 0.5), BandSetting("bell", 800.0, 2.0, 1.0),
     BandSetting("bell", 4000.0, 3.0, 1.5), BandSetting("high_shelf", 10000.0, -3.0, 0.7)],
    [BandSetting("bell", 2000.0, 6.0, 0.4)],
]


@pytest.mark.parametrize("settings", SYNTH)
def test_reachable_targets_fit_closely(settings):
    target = response_db(settings, FREQS_HZ)
    fit = fit_curve(target, eight_band())
    assert isinstance(fit, Fit)
    assert len(fit.bands) == 8
    assert fit.rms_error_db < 0.1
    assert fit.max_error_db < 0.3
    assert np.allclose(fit.predicted_db, response_db(fit.bands, FREQS_HZ))
    assert fit.rms_error_db == pytest.approx(weighted_rms_db(fit.predicted_db - target, FREQS_HZ))


def test_erb_weights_sum_to_one():
    w = erb_weights(FREQS_HZ)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w > 0)


def test_limits_respected():
    specs = [BandSpec("ls", ("low_shelf",), (30.0, 300.0), (-6.0, 6.0), (0.5, 2.0)),
             BandSpec("b1", ("bell",), (200.0, 2000.0), (-6.0, 6.0), (0.5, 2.0)),
             BandSpec("b2", ("bell",), (1000.0, 8000.0), (-6.0, 6.0), (0.7, 0.7)),
             BandSpec("b3", ("bell",), (100.0, 10000.0), (-6.0, 6.0), (0.5, 2.0), fixed_q=1.0),
             BandSpec("hs", ("high_shelf",), (2000.0, 16000.0), (-6.0, 6.0), (0.5, 2.0))]
    target = 12.0 * np.sin(np.linspace(0, 3 * np.pi, 40))  # well beyond +-6 dB
    fit = fit_curve(target, specs)
    for b, s in zip(fit.bands, specs):
        if b.type == "off":
            continue
        assert b.type in s.types
        assert s.freq_hz[0] - 1e-6 <= b.freq_hz <= s.freq_hz[1] + 1e-6
        assert s.gain_db[0] - 1e-9 <= b.gain_db <= s.gain_db[1] + 1e-9
        assert s.q[0] - 1e-9 <= b.q <= s.q[1] + 1e-9
        if s.fixed_q is not None:
            assert b.q == pytest.approx(s.fixed_q)


def test_mapping_like_object_and_name():
    mapping = SimpleNamespace(name="Test EQ", bands=tuple(eight_band()), sample_rate=44100.0)
    target = response_db(SYNTH[0], FREQS_HZ, 44100.0)
    fit = fit_curve(target, mapping)
    assert fit.mapping_name == "Test EQ"
    assert fit.rms_error_db < 0.1


def _word_curves(n):
    data = json.loads((ROOT / "models/data/audealize/eqdescriptors.json").read_text())
    out = []
    for d in data:
        if d["lang"] == "English":
            s = np.asarray(d["settings"], dtype=np.float64)
            out.append(5.0 * s / np.max(np.abs(s)))
        if len(out) == n:
            break
    return out


def test_word_curves_fit_well():
    errs = [fit_curve(t, eight_band()).rms_error_db for t in _word_curves(20)]
    assert np.median(errs) < 0.15


def test_warm_start_moves_smoothly():
    specs = eight_band()
    for target in _word_curves(8):
        first = fit_curve(target, specs)
        again = fit_curve(target * 1.01, specs, previous=first)
        assert again.rms_error_db < first.rms_error_db + 0.02
        for a, b in zip(first.bands, again.bands):
            assert a.type == b.type
            if a.type != "off":
                assert abs(np.log2(b.freq_hz / a.freq_hz)) < 1 / 6


def test_deterministic():
    target = _word_curves(3)[2]
    a = fit_curve(target, eight_band())
    b = fit_curve(target, eight_band())
    assert a.bands == b.bands
    assert np.array_equal(a.predicted_db, b.predicted_db)


def test_graphic_eq_is_bounded_least_squares():
    centres = [31.5, 63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000]
    specs = [BandSpec(f"g{i}", ("bell",), gain_db=(-6.0, 6.0), fixed_freq_hz=float(f), fixed_q=1.4)
             for i, f in enumerate(centres)]
    target = 9.0 * np.cos(np.linspace(0, 2 * np.pi, 40))  # asks for more than +-6 dB
    fit = fit_curve(target, specs)
    assert [b.freq_hz for b in fit.bands] == pytest.approx(centres)
    assert all(b.q == pytest.approx(1.4) for b in fit.bands)
    # same problem solved by a general bounded nonlinear least-squares solver
    from bridge.fit import DENSE_POINTS, interpolate_curve
    from bridge.erb import erb_grid
    grid = erb_grid(DENSE_POINTS)
    sw = np.sqrt(erb_weights(grid))
    dense_target = interpolate_curve(target, grid)

    def resid(g):
        bands = [BandSetting("bell", f, gg, 1.4) for f, gg in zip(centres, g)]
        return sw * (response_db(bands, grid) - dense_target)

    ref = least_squares(resid, np.zeros(len(centres)), bounds=(-6.0, 6.0), xtol=1e-12,
                        ftol=1e-12, gtol=1e-12).x
    got = np.array([b.gain_db for b in fit.bands])
    assert np.allclose(got, ref, atol=1e-3)
    assert np.any(np.isclose(np.abs(got), 6.0))  # the bounds bite


def test_bad_target_rejected():
    with pytest.raises(ValueError):
        fit_curve(np.zeros(39), eight_band())
    with pytest.raises(ValueError):
        fit_curve(np.full(40, np.nan), eight_band())


def test_lm_model_gradient_matches_finite_differences():
    # the fitter's specialised closed form (cost, J^T r) against central differences of the cost
    from bridge.fit import _Model, _Problem
    from bridge.filters import KIND_BELL, KIND_HIGH_SHELF, KIND_LOW_SHELF
    specs = eight_band()
    prob = _Problem(_word_curves(3)[2], specs, 48000.0)
    kinds = np.array([KIND_LOW_SHELF] + [KIND_BELL] * 6 + [KIND_HIGH_SHELF])
    idx = np.arange(8)
    rng = np.random.default_rng(1)
    x = np.concatenate([np.log(np.geomspace(60.0, 12000.0, 8)), rng.uniform(-8, 8, 8),
                        np.log(rng.uniform(0.3, 3.0, 8))])
    x[9], x[10] = 4.0, -3.0  # two opposite bells ...
    x[1], x[2] = np.log(500.0), np.log(560.0)  # ... close together: a cancelling-pair row
    x[0], x[7] = np.log(3000.0), np.log(2000.0)  # crossed shelves: the hinge row
    for anchor in (None, x.reshape(3, 8) + 0.05):
        model = _Model(prob, kinds, idx, anchor)
        cost, state = model.cost(x)
        _, grad = model.hess_grad(state)
        eps = 1e-6
        num = np.array([(model.cost(x + eps * e)[0] - model.cost(x - eps * e)[0]) / (2 * eps)
                        for e in np.eye(x.size)]) / 2.0
        assert np.allclose(grad, num, rtol=1e-5, atol=1e-7 * max(1.0, np.abs(num).max()))
        # the fit rows reproduce the exact responses
        pred = 10.0 / np.log(10.0) * state[1]
        settings = [BandSetting(t, float(np.exp(x[i])), float(x[8 + i]), float(np.exp(x[16 + i])))
                    for i, t in enumerate(["low_shelf"] + ["bell"] * 6 + ["high_shelf"])]
        assert np.allclose(pred, response_db(settings, prob.freqs, 48000.0), atol=1e-9)


def test_shelves_not_crossed_and_sorted():
    specs = eight_band()
    for target in _word_curves(40):
        fit = fit_curve(target, specs)
        ls = [b for b in fit.bands if b.type == "low_shelf"]
        hs = [b for b in fit.bands if b.type == "high_shelf"]
        if ls and hs:
            assert ls[0].freq_hz < hs[0].freq_hz


def test_slow_sweep_moves_bands_smoothly():
    # a knob turned slowly: (1-t) A + t B over 50 warm-started steps, no band jumps an octave
    specs = eight_band()
    curves = _word_curves(12)
    for a, b in ((curves[0], curves[5]), (curves[3], curves[11])):
        prev = fit_curve(a, specs)
        for step in range(1, 51):
            t = step / 50
            fit = fit_curve((1 - t) * a + t * b, specs, previous=prev)
            for x, y in zip(prev.bands, fit.bands):
                assert x.type == y.type
                if x.type != "off":
                    assert abs(np.log2(y.freq_hz / x.freq_hz)) < 1.0
            assert fit.rms_error_db < 0.5
            prev = fit


def test_warm_start_with_nothing_placed():
    specs = eight_band()
    flat = fit_curve(np.zeros(40), specs)
    assert all(abs(b.gain_db) < 1e-6 for b in flat.bands)
    from dataclasses import replace
    off = replace(flat, bands=tuple(BandSetting("off", 1000.0) for _ in specs))
    again = fit_curve(np.full(40, 0.001), specs, previous=off)
    assert [b.type for b in again.bands] == ["off"] * 8
    assert again.rms_error_db == pytest.approx(0.001)


def test_many_bells_penalty_rows_match_the_plain_loop():
    # with > 28 bell pairs the candidate pairs are found with numpy first: same rows as the loop
    from bridge.fit import _cancel_rows, _Model, _Problem
    specs = [BandSpec(f"b{i}", ("bell",), (20.0, 20000.0), (-15.0, 15.0), (0.18, 6.0))
             for i in range(12)]
    prob = _Problem(_word_curves(2)[1], specs, 48000.0)
    kinds = np.zeros(12, dtype=int)
    model = _Model(prob, kinds, np.arange(12))
    rng = np.random.default_rng(3)
    x = np.concatenate([np.log(rng.uniform(200.0, 800.0, 12)), rng.uniform(-6, 6, 12),
                        np.zeros(12)])
    fast = model._rows(x)
    assert fast  # some opposite pairs are close
    slow = _cancel_rows(x.tolist(), model.k, model.st.pairs)  # every pair, no numpy prefilter
    assert len(fast) == len(slow)
    for (r1, e1), (r2, e2) in zip(fast, slow):
        assert r1 == pytest.approx(r2) and e1 == pytest.approx(e2)


def test_warm_refit_stays_in_its_trust_region():
    """However far the target jumps, a warm refit moves no band more than WARM_MAX_STEP_OCT."""
    from bridge.fit import WARM_MAX_STEP_OCT

    specs = [BandSpec("ls", ("low_shelf",), (20, 20000), (-15, 15), (0.3, 3)),
             BandSpec("b1", ("bell",), (20, 20000), (-15, 15), (0.18, 6)),
             BandSpec("b2", ("bell",), (20, 20000), (-15, 15), (0.18, 6)),
             BandSpec("hs", ("high_shelf",), (20, 20000), (-15, 15), (0.3, 3))]
    a = 4.0 * np.sin(np.linspace(0, 3, 40))
    first = fit_curve(a, specs)
    second = fit_curve(-a, specs, previous=first)
    for x, y in zip(first.bands, second.bands):
        if x.type != "off" and y.type != "off":
            assert abs(np.log2(y.freq_hz / x.freq_hz)) <= WARM_MAX_STEP_OCT + 1e-9


def _kkt(a, b, lo, hi, x):
    """Largest violation of the bounded LS optimality conditions at x (projected gradient)."""
    g = a.T @ (a @ x - b)
    return float(np.max(np.abs(np.where(x <= lo, np.minimum(g, 0), np.where(x >= hi, np.maximum(g, 0), g)))))


def test_bounded_lstsq_is_optimal_and_agrees_with_scipy():
    from scipy.optimize import lsq_linear

    from bridge.fit import bounded_lstsq
    rng = np.random.default_rng(11)
    agreed = 0
    for trial in range(300):
        n = int(rng.integers(1, 32))
        a = rng.normal(size=(n + int(rng.integers(0, 60)), n))
        if trial % 3 == 0 and n > 1:  # overlapping columns, as neighbouring graphic bands are
            a = a @ (np.eye(n) + 0.9 * np.eye(n, k=1))
        b = rng.normal(size=a.shape[0]) * rng.uniform(0.1, 10.0)
        lo, hi = -rng.uniform(0.0, 1.0, n), rng.uniform(0.0, 1.0, n)
        x0 = None if trial % 2 else np.clip(rng.normal(size=n), lo, hi)
        x = bounded_lstsq(a, b, lo, hi, x0)
        assert x is not None and np.all(x >= lo) and np.all(x <= hi)
        assert _kkt(a, b, lo, hi, x) <= 1e-9 * max(1.0, float(np.abs(a.T @ b).max()))
        ref = lsq_linear(a, b, bounds=(lo, hi), method="bvls", tol=1e-14).x
        if _kkt(a, b, lo, hi, ref) <= 1e-9:  # scipy converged: the same (unique) minimiser
            assert np.allclose(x, ref, atol=1e-8)
            agreed += 1
        assert np.sum((a @ x - b) ** 2) <= np.sum((a @ ref - b) ** 2) * (1 + 1e-12) + 1e-12
    assert agreed > 250
    pinned = bounded_lstsq(np.eye(3), np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.2, -1.0]),
                           np.array([0.5, 0.2, 2.0]))
    assert pinned.tolist() == pytest.approx([0.5, 0.2, 1.0])


def test_graphic_fit_falls_back_to_scipy_when_the_active_set_does_not_settle(monkeypatch):
    import bridge.fit as F
    specs = [BandSpec(f"g{i}", ("bell",), gain_db=(-6.0, 6.0), fixed_freq_hz=float(f), fixed_q=1.4)
             for i, f in enumerate([63, 250, 1000, 4000, 16000])]
    target = 9.0 * np.cos(np.linspace(0, 2 * np.pi, 40))
    ours = fit_curve(target, specs)
    monkeypatch.setattr(F, "bounded_lstsq", lambda *args, **kw: None)
    theirs = fit_curve(target, specs)
    for x, y in zip(ours.bands, theirs.bands):
        assert x.gain_db == pytest.approx(y.gain_db, abs=1e-6)
