"""The 40 ERB band centres that every curve in eqbridge is expressed at.

The centres are those of SocialEQ/SocialFX and Audealize (see models/data/socialfx/SOURCE.md):
evenly spaced on the ERB-rate scale of Glasberg & Moore (1990), ERB-rate = 21.4 log10(1 + 0.00437 f).
"""

from __future__ import annotations

import numpy as np

FREQS_HZ: np.ndarray = np.array(
    [20, 50, 83, 120, 161, 208, 259, 318, 383, 455, 537, 628, 729, 843, 971, 1114, 1273, 1452,
     1652, 1875, 2126, 2406, 2719, 3070, 3462, 3901, 4392, 4941, 5556, 6244, 7014, 7875, 8839,
     9917, 11124, 12474, 13984, 15675, 17566, 19682],
    dtype=np.float64,
)
N_BANDS = len(FREQS_HZ)


def erb_rate(freqs_hz: np.ndarray) -> np.ndarray:
    """ERB-rate (Cams) of frequencies in Hz, Glasberg & Moore 1990."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(freqs_hz, dtype=np.float64))


def erb_grid(n: int, lo_hz: float = 20.0, hi_hz: float = 20000.0) -> np.ndarray:
    """n frequencies evenly spaced on the ERB-rate scale between lo_hz and hi_hz."""
    e = np.linspace(erb_rate(lo_hz), erb_rate(hi_hz), n)
    return (10 ** (e / 21.4) - 1.0) / 0.00437
