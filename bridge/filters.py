"""Magnitude responses (dB) of the digital EQ bands eqbridge fits, plus the closed-form Jacobian.

Why this file exists: the fitter needs thousands of exact, cheap magnitude evaluations of the same
biquads a plugin runs, so everything here is a closed form of the coefficient-level filter rather
than a frequency-domain simulation.

Every biquad below is the RBJ Audio EQ Cookbook design (R. Bristow-Johnson, "Cookbook formulae for
audio EQ biquad filter coefficients"), which is also what JUCE's `dsp::IIR::Coefficients::
makePeakFilter / makeLowShelf / makeHighShelf / makeHighPass / makeLowPass / makeNotch /
makeBandPass` compute (and hence pedalboard's PeakFilter / LowShelfFilter / HighShelfFilter).
The cookbook obtains each filter by the bilinear transform (BLT) of an analog prototype with the
frequency pre-warped so the analog prototype's w = 1 lands on f0. So the digital magnitude equals
the analog prototype's magnitude at the warped frequency

    W = tan(w/2) / tan(w0/2),   w = 2 pi f / fs

exactly (BLT maps the unit circle onto the jW axis). We write W^2 = v / u with

    v = sin^2(w/2),   u = tan^2(w0/2) * cos^2(w/2)

and clear denominators, so every |H|^2 is a ratio of polynomials in (u, v) that contains no
`1 - cos(w)` cancellation (the cookbook's own remark: the cos-form loses precision at low f; its
suggested fix is the phi = sin^2(w/2) form, which is what u and v are). `u - v` is computed as a
product of sines (sin^2 a - sin^2 b = sin(a-b) sin(a+b)), so notches and band centres stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bridge.bands import BAND_TYPES, BandSetting

_DB = 10.0 / np.log(10.0)  # 10 log10(x) = _DB * ln(x): dB of a power ratio
_FLOOR = 1e-30  # power floor so a notch's exact zero prints as -300 dB rather than -inf
_H = np.log(10.0) / 40.0  # d ln(A) / d gain_db, A = 10^(gain/40) (RBJ cookbook "A")

CUT_SLOPES_DB_OCT: tuple[int, ...] = (6, 12, 18, 24, 36, 48, 72, 96)


# --------------------------------------------------------------------------------------------
# Q <-> bandwidth (RBJ cookbook)
# --------------------------------------------------------------------------------------------

def q_from_octaves(bw_oct: float | np.ndarray, f0_hz: float | None = None,
                   sample_rate: float = 48000.0) -> float | np.ndarray:
    """RBJ Q of a bandwidth in octaves, as plugins that show "BW" convert it.

    RBJ cookbook: 1/Q = 2 sinh(ln(2)/2 * BW * w0/sin(w0)) in the digital domain; with f0_hz=None
    the analog relation (w0/sin w0 -> 1), i.e. Q = 2^(BW/2) / (2^BW - 1), which is what most
    plugin UIs use.
    """
    bw = np.asarray(bw_oct, dtype=np.float64)
    warp = 1.0 if f0_hz is None else _w_over_sin(2 * np.pi * f0_hz / sample_rate)
    q = 1.0 / (2.0 * np.sinh(np.log(2.0) / 2.0 * bw * warp))
    return float(q) if q.ndim == 0 else q


def octaves_from_q(q: float | np.ndarray, f0_hz: float | None = None,
                   sample_rate: float = 48000.0) -> float | np.ndarray:
    """Bandwidth in octaves of an RBJ Q: the inverse of `q_from_octaves` (RBJ cookbook)."""
    qq = np.asarray(q, dtype=np.float64)
    warp = 1.0 if f0_hz is None else _w_over_sin(2 * np.pi * f0_hz / sample_rate)
    bw = 2.0 / np.log(2.0) * np.arcsinh(1.0 / (2.0 * qq)) / warp
    return float(bw) if bw.ndim == 0 else bw


def q_from_proportional(q_resonator: float | np.ndarray, gain_db: float | np.ndarray) -> float | np.ndarray:
    """RBJ Q of a proportional-Q ("variable-Q") bell whose knob sets the Q of a fixed resonator.

    A conventional analog bell boosts by adding a band-pass of fixed Q0 to the dry signal, and cuts
    with the same band-pass in the feedback path (the "conventional" design of Rane Note 101, whose
    -3 dB bandwidth exceeds an octave at modest gain and narrows toward the nominal width at full
    boost; the Midas XL8 manual describes the same). Matching its transfer
    function (s^2 + s(1+k)/Q0 + 1) / (s^2 + s/Q0 + 1) to the RBJ cookbook's peaking prototype
    (s^2 + s A/Q + 1) / (s^2 + s/(A Q) + 1) gives Q = Q0 / A for boosts and Q = Q0 A for cuts,
    i.e. Q = Q0 * 10^(-|gain|/40): the resonator's poles (boost) or zeros (cut) stay put, and in
    RBJ's mid-gain terms the bell widens as the gain grows.
    """
    q = np.asarray(q_resonator, dtype=np.float64) * 10.0 ** (-np.abs(np.asarray(gain_db, dtype=np.float64)) / 40.0)
    return float(q) if q.ndim == 0 else q


def proportional_from_q(q: float | np.ndarray, gain_db: float | np.ndarray) -> float | np.ndarray:
    """The resonator Q a proportional-Q plugin shows for an RBJ Q (inverse of q_from_proportional)."""
    q0 = np.asarray(q, dtype=np.float64) * 10.0 ** (np.abs(np.asarray(gain_db, dtype=np.float64)) / 40.0)
    return float(q0) if q0.ndim == 0 else q0


def _w_over_sin(w0: float | np.ndarray) -> float | np.ndarray:
    """w0 / sin(w0), the RBJ digital-bandwidth correction (and d ln tan(w0/2) / d ln f0)."""
    return w0 / np.sin(w0)


# --------------------------------------------------------------------------------------------
# Helpers shared by all band types
# --------------------------------------------------------------------------------------------

def _uv(freqs_hz: np.ndarray, f0_hz: float, sample_rate: float):
    """(u, v, u - v) of the module docstring, for one centre frequency."""
    half = np.pi * np.asarray(freqs_hz, dtype=np.float64) / sample_rate  # w/2
    half0 = np.pi * f0_hz / sample_rate  # w0/2
    c0 = np.cos(half0)
    v = np.sin(half) ** 2
    u = (np.tan(half0) * np.cos(half)) ** 2
    # u - v = (sin^2(w0/2) cos^2(w/2) - cos^2(w0/2) sin^2(w/2)) / cos^2(w0/2)
    #       = sin(w0/2 - w/2) sin(w0/2 + w/2) / cos^2(w0/2)     (exact, no cancellation)
    d = np.sin(half0 - half) * np.sin(half0 + half) / (c0 * c0)
    return u, v, d


def _clamp_f0(f0_hz: float, sample_rate: float) -> float:
    """Keep f0 strictly inside (0, Nyquist); JUCE clamps f0 >= 2 Hz the same way."""
    return float(min(max(f0_hz, 2.0), 0.4999 * sample_rate))


def _db(power: np.ndarray) -> np.ndarray:
    return _DB * np.log(np.maximum(power, _FLOOR))


# --------------------------------------------------------------------------------------------
# Single-biquad magnitudes, |H|^2 in (u, v) form (analog prototypes from the RBJ cookbook)
# --------------------------------------------------------------------------------------------

def _bell_pow(u, v, d, gain_db, q):
    # RBJ peakingEQ: H(s) = (s^2 + s A/Q + 1) / (s^2 + s/(A Q) + 1), A = 10^(gain/40).
    a = 10.0 ** (gain_db / 40.0)
    uv = u * v
    d2 = d * d
    return (d2 + (a / q) ** 2 * uv) / (d2 + (1.0 / (a * q)) ** 2 * uv)


def _low_shelf_pow(u, v, gain_db, q):
    # RBJ lowShelf: H(s) = A (s^2 + (sqrt(A)/Q) s + A) / (A s^2 + (sqrt(A)/Q) s + 1).
    a = 10.0 ** (gain_db / 40.0)
    m = a / (q * q) * u * v
    return a * a * ((a * u - v) ** 2 + m) / ((u - a * v) ** 2 + m)


def _high_shelf_pow(u, v, gain_db, q):
    # RBJ highShelf: H(s) = A (A s^2 + (sqrt(A)/Q) s + 1) / (s^2 + (sqrt(A)/Q) s + A).
    a = 10.0 ** (gain_db / 40.0)
    m = a / (q * q) * u * v
    return a * a * ((u - a * v) ** 2 + m) / ((a * u - v) ** 2 + m)


def _hp2_pow(u, v, d, q):
    # RBJ HPF: H(s) = s^2 / (s^2 + s/Q + 1).
    return v * v / (d * d + u * v / (q * q))


def _lp2_pow(u, v, d, q):
    # RBJ LPF: H(s) = 1 / (s^2 + s/Q + 1).
    return u * u / (d * d + u * v / (q * q))


def _hp1_pow(u, v):
    # First-order high-pass H(s) = s / (s + 1) through the BLT (JUCE makeFirstOrderHighPass).
    return v / (u + v)


def _lp1_pow(u, v):
    # First-order low-pass H(s) = 1 / (s + 1) through the BLT (JUCE makeFirstOrderLowPass).
    return u / (u + v)


def butterworth_qs(order: int) -> tuple[float, ...]:
    """Q of each second-order section of an order-`order` Butterworth filter (lowest Q first).

    Poles of a Butterworth filter sit at angles theta_k = pi (2k + 1) / (2n) from the negative real
    axis pairs; a section's Q = 1 / (2 cos theta_k) (e.g. Zolzer, DAFX, ch. 2). Odd orders add one
    first-order section, not listed.
    """
    return tuple(sorted(1.0 / (2.0 * np.cos(np.pi * (2 * k + 1) / (2 * order)))
                        for k in range(order // 2)))


def _cut_pow(kind: str, u, v, d, q, slope_db_oct: int):
    """Cascade for a low/high cut: slope/6 = Butterworth order.

    12 dB/oct is one RBJ HPF/LPF with the band's own Q (as JUCE/pedalboard-style plugins do).
    Steeper slopes are Butterworth cascades (what "24/48 dB/oct" means in most plugins); there the
    band's Q scales every section's Q by q / 0.7071 so the default Q gives a pure Butterworth.
    """
    if slope_db_oct not in CUT_SLOPES_DB_OCT:
        raise ValueError(f"cut slope must be one of {CUT_SLOPES_DB_OCT} dB/oct, got {slope_db_oct}")
    order = slope_db_oct // 6
    hp = kind == "low_cut"
    if order == 2:
        return _hp2_pow(u, v, d, q) if hp else _lp2_pow(u, v, d, q)
    scale = q / np.sqrt(0.5)
    p = np.ones(np.broadcast(u, v).shape)
    for qk in butterworth_qs(order):
        p = p * (_hp2_pow(u, v, d, qk * scale) if hp else _lp2_pow(u, v, d, qk * scale))
    if order % 2:
        p = p * (_hp1_pow(u, v) if hp else _lp1_pow(u, v))
    return p


def _tilt_pow(u, v, gain_db):
    # First-order tilt ("tilt shelf"): H(s) = (g s + 1) / (s + g), g = 10^(gain/40), through the BLT.
    # It is the first-order shelf of Zolzer (DAFX, ch. 2, "shelving filters") with its two corner
    # frequencies placed symmetrically (in log f) about the pivot f0, normalised so |H(f0)| = 1:
    # -gain/2 dB at DC, +gain/2 dB at Nyquist, 0 dB at the pivot ("gain" is the total tilt).
    g2 = 10.0 ** (gain_db / 20.0)
    return (g2 * v + u) / (v + g2 * u)


def band_response_db(setting: BandSetting, freqs_hz: np.ndarray | Sequence[float],
                     sample_rate: float = 48000.0) -> np.ndarray:
    """Magnitude response in dB of one band at `freqs_hz` (exact for the RBJ/JUCE biquads).

    Types and their sources (module docstring for the (u, v) form):
    bell/low_shelf/high_shelf/notch/band_pass: RBJ cookbook (band_pass = constant 0 dB peak gain);
    low_cut/high_cut: RBJ HPF/LPF (12 dB/oct) or Butterworth cascades (`_cut_pow`);
    tilt: first-order tilt shelf about freq_hz (`_tilt_pow`); off: 0 dB.
    """
    f = np.asarray(freqs_hz, dtype=np.float64)
    t = setting.type
    if t == "off":
        return np.zeros_like(f)
    if t not in BAND_TYPES:
        raise ValueError(f"unknown band type {t!r}; expected one of {BAND_TYPES}")
    f0 = _clamp_f0(setting.freq_hz, sample_rate)
    q = float(setting.q)
    if q <= 0:
        raise ValueError(f"Q must be > 0, got {q}")
    u, v, d = _uv(f, f0, sample_rate)
    if t == "bell":
        p = _bell_pow(u, v, d, setting.gain_db, q)
    elif t == "low_shelf":
        p = _low_shelf_pow(u, v, setting.gain_db, q)
    elif t == "high_shelf":
        p = _high_shelf_pow(u, v, setting.gain_db, q)
    elif t in ("low_cut", "high_cut"):
        p = _cut_pow(t, u, v, d, q, int(setting.slope_db_oct))
    elif t == "notch":
        # RBJ notch: H(s) = (s^2 + 1) / (s^2 + s/Q + 1).
        p = d * d / (d * d + u * v / (q * q))
    elif t == "band_pass":
        # RBJ BPF, constant 0 dB peak gain: H(s) = (s/Q) / (s^2 + s/Q + 1).
        p = (u * v / (q * q)) / (d * d + u * v / (q * q))
    else:  # tilt
        p = _tilt_pow(u, v, setting.gain_db)
    return _db(p)


def response_db(settings: Sequence[BandSetting], freqs_hz: np.ndarray | Sequence[float],
                sample_rate: float = 48000.0) -> np.ndarray:
    """Summed dB response of bands in series (dB of a cascade adds)."""
    f = np.asarray(freqs_hz, dtype=np.float64)
    out = np.zeros_like(f)
    for s in settings:
        out += band_response_db(s, f, sample_rate)
    return out


# --------------------------------------------------------------------------------------------
# Batched bells and shelves with the closed-form Jacobian (for the fitter)
# --------------------------------------------------------------------------------------------
#
# Bell, low shelf and high shelf share one form (from the prototypes above):
#   |H|^2 = e^K * N / D,  N = (an u - bn v)^2 + cn u v,  D = (ad u - bd v)^2 + cd u v
# bell:       an = bn = ad = bd = 1,   cn = A^2/Q^2,  cd = 1/(A^2 Q^2),  K = 0
# low shelf:  an = A, bn = 1, ad = 1, bd = A,  cn = cd = A/Q^2,  K = 2 ln A
# high shelf: an = 1, bn = A, ad = A, bd = 1,  cn = cd = A/Q^2,  K = 2 ln A
# so one set of array operations evaluates a mixed set of bands, and the derivatives follow by the
# chain rule through (an, bn, cn, ad, bd, cd, K). Frequency enters only through u = tan^2(w0/2)
# cos^2(w/2), with d u / d ln f0 = 2 u w0 / sin(w0).

KIND_BELL, KIND_LOW_SHELF, KIND_HIGH_SHELF = 0, 1, 2
KIND_CODES: dict[str, int] = {"bell": KIND_BELL, "low_shelf": KIND_LOW_SHELF,
                              "high_shelf": KIND_HIGH_SHELF}


class PeqGrid:
    """Per-frequency constants of an evaluation grid (computed once, reused by every evaluation)."""

    __slots__ = ("freqs_hz", "sample_rate", "half", "v", "cos2")

    def __init__(self, freqs_hz: np.ndarray | Sequence[float], sample_rate: float = 48000.0):
        self.freqs_hz = np.asarray(freqs_hz, dtype=np.float64)
        self.sample_rate = float(sample_rate)
        self.half = np.pi * self.freqs_hz / self.sample_rate  # w/2
        self.v = np.sin(self.half) ** 2
        self.cos2 = np.cos(self.half) ** 2


def peq_db_and_grad(kinds: np.ndarray, freqs_hz: np.ndarray, gains_db: np.ndarray,
                    qs: np.ndarray, grid: PeqGrid, want_grad: bool = True):
    """dB responses of bells/shelves (one row per band) and their closed-form derivatives.

    kinds: int codes (KIND_BELL, KIND_LOW_SHELF, KIND_HIGH_SHELF), shape (nb,); freqs/gains/qs
    shape (nb,). Returns (db, d_dlnf, d_dgain, d_dlnq), each (nb, npts); derivatives are w.r.t.
    natural-log frequency, gain in dB and natural-log Q (None when want_grad is False).
    """
    kinds = np.asarray(kinds)
    nb = kinds.shape[0]
    sr = grid.sample_rate
    half0 = np.pi * np.clip(np.asarray(freqs_hz, dtype=np.float64), 2.0, 0.4999 * sr) / sr
    ln_a = _H * np.asarray(gains_db, dtype=np.float64)  # ln A, A = 10^(g/40)
    ln_q = np.log(np.asarray(qs, dtype=np.float64))
    bell = kinds == KIND_BELL
    low = kinds == KIND_LOW_SHELF
    high = ~(bell | low)
    # Numerator rows stacked over denominator rows, so N and D cost one array operation each step.
    # alpha/beta are 1 or A: masks say which (low shelf: alpha_N = A, beta_D = A; high: the others).
    m_alpha = np.concatenate([low, high])
    m_beta = np.concatenate([high, low])
    # c = A^e / Q^2 with e = (2, -2) for bells and (1, 1) for shelves
    e = np.concatenate([np.where(bell, 2.0, 1.0), np.where(bell, -2.0, 1.0)])
    ln_a2 = np.concatenate([ln_a, ln_a])
    a2 = np.exp(ln_a2)
    alpha = np.where(m_alpha, a2, 1.0)[:, None]
    beta = np.where(m_beta, a2, 1.0)[:, None]
    c = np.exp(e * ln_a2 - 2.0 * np.concatenate([ln_q, ln_q]))[:, None]

    # u - v only cancels where f ~ f0, where the c*u*v term dominates, so the plain difference
    # keeps full relative precision of |H| (the 1 - cos(w) loss is avoided by using v = sin^2).
    u1 = (np.tan(half0) ** 2)[:, None] * grid.cos2
    u = np.concatenate([u1, u1])
    v = grid.v
    cuv = c * (u * v)
    p = alpha * u - beta * v
    x = p * p + cuv
    k2 = np.where(bell, 0.0, 2.0)[:, None]  # K = 2 ln A for shelves, as a multiple of ln A
    db = _DB * (k2 * ln_a[:, None] + np.log(x[:nb] / x[nb:]))
    if not want_grad:
        return db, None, None, None
    inv = 1.0 / x
    # d/d ln f0: only u moves, du/dlnf0 = 2 u w0/sin(w0); dX/du = 2 P alpha + c v.
    t = (2.0 * p * alpha + c * v) * inv
    d_lnf = (_DB * 4.0 * half0 / np.sin(2.0 * half0))[:, None] * u1 * (t[:nb] - t[nb:])
    # d/d gain = _DB * h * (dK/dlnA + dN/N - dD/D), dX/dlnA = 2 P (da u - db v) + e c u v with
    # da = A where alpha = A (else 0), likewise db; dK/dlnA = 2 for shelves.
    da = np.where(m_alpha, a2, 0.0)[:, None]
    dbeta = np.where(m_beta, a2, 0.0)[:, None]
    t = (2.0 * p * (da * u - dbeta * v) + e[:, None] * cuv) * inv
    d_g = (_DB * _H) * (k2 + t[:nb] - t[nb:])
    # d/d ln q: dc = -2 c for every kind.
    t = cuv * inv
    d_q = (-2.0 * _DB) * (t[:nb] - t[nb:])
    return db, d_lnf, d_g, d_q
