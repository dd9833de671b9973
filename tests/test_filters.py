"""Filter maths against scipy (exact RBJ coefficients) and pedalboard (JUCE) renders."""

import numpy as np
import pytest
import scipy.signal as ss

from bridge.bands import BandSetting
from bridge.erb import FREQS_HZ
from bridge.filters import (PeqGrid, band_response_db, butterworth_qs, octaves_from_q,
                            peq_db_and_grad, q_from_octaves, response_db)

FS = 48000.0


def _rbj(t, f0, g, q):
    """Direct-form RBJ cookbook coefficients (b, a), the cos-form reference."""
    a_ = 10 ** (g / 40)
    w0 = 2 * np.pi * f0 / FS
    al = np.sin(w0) / (2 * q)
    c = np.cos(w0)
    sa = 2 * np.sqrt(a_) * al
    if t == "bell":
        return [1 + al * a_, -2 * c, 1 - al * a_], [1 + al / a_, -2 * c, 1 - al / a_]
    if t == "low_shelf":
        return ([a_ * ((a_ + 1) - (a_ - 1) * c + sa), 2 * a_ * ((a_ - 1) - (a_ + 1) * c),
                 a_ * ((a_ + 1) - (a_ - 1) * c - sa)],
                [(a_ + 1) + (a_ - 1) * c + sa, -2 * ((a_ - 1) + (a_ + 1) * c),
                 (a_ + 1) + (a_ - 1) * c - sa])
    if t == "high_shelf":
        return ([a_ * ((a_ + 1) + (a_ - 1) * c + sa), -2 * a_ * ((a_ - 1) + (a_ + 1) * c),
                 a_ * ((a_ + 1) + (a_ - 1) * c - sa)],
                [(a_ + 1) - (a_ - 1) * c + sa, 2 * ((a_ - 1) - (a_ + 1) * c),
                 (a_ + 1) - (a_ - 1) * c - sa])
    den = [1 + al, -2 * c, 1 - al]
    if t == "low_cut":
        return [(1 + c) / 2, -(1 + c), (1 + c) / 2], den
    if t == "high_cut":
        return [(1 - c) / 2, 1 - c, (1 - c) / 2], den
    if t == "notch":
        return [1, -2 * c, 1], den
    if t == "band_pass":
        return [al, 0, -al], den
    raise ValueError(t)


CASES = [(60.0, 6.0, 0.7), (1000.0, -12.0, 3.0), (12000.0, 9.0, 0.3), (250.0, 15.0, 6.0),
         (440.0, -3.0, 0.18)]


@pytest.mark.parametrize("kind", ["bell", "low_shelf", "high_shelf", "low_cut", "high_cut",
                                  "notch", "band_pass"])
@pytest.mark.parametrize("f0,g,q", CASES)
def test_matches_rbj_coefficients(kind, f0, g, q):
    f = np.geomspace(20, 20000, 200)
    b, a = _rbj(kind, f0, g, q)
    _, h = ss.freqz(b, a, worN=f, fs=FS)
    ref = 20 * np.log10(np.abs(h))
    got = band_response_db(BandSetting(kind, f0, g, q), f, FS)
    ok = ref > -120  # the notch's exact zero
    assert np.max(np.abs(got - ref)[ok]) < 1e-6


def _render_db(plugin):
    pedalboard = pytest.importorskip("pedalboard")
    n = 2 ** 16
    imp = np.zeros((1, n), np.float32)
    imp[0, 0] = 1.0
    y = pedalboard.Pedalboard([plugin])(imp, FS, reset=True)[0].astype(np.float64)
    mag = 20 * np.log10(np.abs(np.fft.rfft(y)))
    return np.interp(FREQS_HZ, np.fft.rfftfreq(n, 1 / FS), mag)


PB_CASES = [(100.0, 6.0, 0.7), (1000.0, -12.0, 3.0), (8000.0, 9.0, 0.3), (300.0, 15.0, 6.0),
            (2500.0, -6.0, 0.18), (60.0, -9.0, 1.0)]


@pytest.mark.parametrize("kind", ["bell", "low_shelf", "high_shelf"])
@pytest.mark.parametrize("f0,g,q", PB_CASES)
def test_matches_pedalboard_render(kind, f0, g, q):
    pedalboard = pytest.importorskip("pedalboard")
    cls = {"bell": pedalboard.PeakFilter, "low_shelf": pedalboard.LowShelfFilter,
           "high_shelf": pedalboard.HighShelfFilter}[kind]
    rendered = _render_db(cls(cutoff_frequency_hz=f0, gain_db=g, q=q))
    ours = band_response_db(BandSetting(kind, f0, g, q), FREQS_HZ, FS)
    assert np.max(np.abs(rendered - ours)) < 0.05


@pytest.mark.parametrize("slope", [12, 24, 48])
def test_cut_slopes(slope):
    # far below/above the corner, each octave adds order * 20 log10(2) dB (the "6 dB" per order)
    per_oct = slope / 6 * 20 * np.log10(2.0)
    lo = band_response_db(BandSetting("low_cut", 2000.0, q=0.7071, slope_db_oct=slope),
                          [100.0, 200.0], FS)
    assert abs((lo[1] - lo[0]) - per_oct) < 0.05
    hi = band_response_db(BandSetting("high_cut", 200.0, q=0.7071, slope_db_oct=slope),
                          [2000.0, 4000.0], FS)
    # the bilinear transform's zero at Nyquist steepens a digital low-pass slightly
    assert per_oct - 0.05 < hi[0] - hi[1] < per_oct * 1.05
    # a Butterworth cascade is -3 dB at the corner
    at = band_response_db(BandSetting("low_cut", 1000.0, q=0.7071, slope_db_oct=slope),
                          [1000.0], FS)
    assert abs(at[0] + 3.0103) < 0.01


def test_butterworth_qs():
    assert np.allclose(butterworth_qs(2), [np.sqrt(0.5)])
    assert np.allclose(butterworth_qs(4), [0.5412, 1.3066], atol=1e-4)


def test_tilt_and_off():
    f = np.array([20.0, 1000.0, 20000.0])
    t = band_response_db(BandSetting("tilt", 1000.0, 6.0), f, FS)
    assert abs(t[1]) < 1e-9 and t[0] < -2.0 and t[2] > 2.0 and t[0] > -3.0 and t[2] < 3.01
    assert np.all(band_response_db(BandSetting("off", 1000.0, 6.0), f, FS) == 0.0)


def test_response_sums():
    bands = [BandSetting("bell", 500.0, 3.0, 1.0), BandSetting("high_shelf", 5000.0, -4.0, 0.7)]
    total = response_db(bands, FREQS_HZ, FS)
    assert np.allclose(total, sum(band_response_db(b, FREQS_HZ, FS) for b in bands))


def test_q_octave_roundtrip():
    assert abs(q_from_octaves(1.0) - 1.4142) < 1e-4  # the classic 1 octave = Q 1.414
    bw = np.array([0.1, 0.5, 1.0, 2.0, 3.0])
    assert np.allclose(octaves_from_q(q_from_octaves(bw)), bw)
    assert np.allclose(octaves_from_q(q_from_octaves(bw, 5000.0), 5000.0), bw)


def test_low_frequency_precision():
    # a 20 Hz bell at 48 kHz: the cos-form loses digits here, the sin^2 form must not
    got = band_response_db(BandSetting("bell", 20.0, 6.0, 2.0), [20.0], FS)
    assert abs(got[0] - 6.0) < 1e-9


def test_jacobian_matches_finite_differences():
    grid = PeqGrid(np.geomspace(20, 20000, 50), FS)
    kinds = np.array([0, 1, 2, 0])
    f = np.array([300.0, 80.0, 9000.0, 20.0])
    g = np.array([5.0, -7.0, 3.0, -12.0])
    q = np.array([0.5, 1.0, 4.0, 2.0])
    db, d_f, d_g, d_q = peq_db_and_grad(kinds, f, g, q, grid)
    names = {0: "bell", 1: "low_shelf", 2: "high_shelf"}
    for i in range(4):
        ref = band_response_db(BandSetting(names[kinds[i]], f[i], g[i], q[i]), grid.freqs_hz, FS)
        assert np.allclose(db[i], ref, atol=1e-9)
    eps = 1e-6
    for base, d, mult in ((f, d_f, True), (g, d_g, False), (q, d_q, True)):
        moved = base * np.exp(eps) if mult else base + eps
        args = {"f": f, "g": g, "q": q}
        key = "f" if base is f else "g" if base is g else "q"
        args[key] = moved
        db2 = peq_db_and_grad(kinds, args["f"], args["g"], args["q"], grid, want_grad=False)[0]
        assert np.allclose((db2 - db) / eps, d, atol=1e-3 * max(1.0, np.abs(d).max()))


def test_proportional_q_keeps_the_resonator_fixed():
    """A proportional-Q bell's poles (boost) or zeros (cut) do not move with gain (RBJ algebra)."""
    from bridge.filters import proportional_from_q, q_from_proportional

    w0 = 2 * np.pi * 1000.0 / 48000.0

    def rbj_alpha_over(a_pow, gain_db, q):  # alpha * A**a_pow: the coefficient that holds the Q
        A = 10 ** (gain_db / 40)
        return np.sin(w0) / (2 * q) * A ** a_pow

    q0 = 2.0
    boosts = [rbj_alpha_over(-1, g, q_from_proportional(q0, g)) for g in (1.0, 6.0, 12.0)]
    cuts = [rbj_alpha_over(1, g, q_from_proportional(q0, g)) for g in (-1.0, -6.0, -12.0)]
    assert np.allclose(boosts, boosts[0]) and np.allclose(cuts, cuts[0])
    assert q_from_proportional(q0, 0.0) == q0
    assert proportional_from_q(q_from_proportional(q0, 9.0), 9.0) == pytest.approx(q0)
    # measured at mid-gain (RBJ's definition) the fixed resonator's bell widens as gain grows
    assert q_from_proportional(q0, 3.0) > q_from_proportional(q0, 12.0)
