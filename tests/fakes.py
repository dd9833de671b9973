"""Small stand-ins for the model, a mapping and the fitter, for tests that must not need them.

They follow the interfaces of bridge.model.TextToCurve, bridge.mapping.Mapping and
bridge.fit.fit_curve closely enough for the daemon: tests with the real modules live beside these.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from bridge.bands import BandSetting, HostParam
from bridge.erb import FREQS_HZ
from bridge.errors import PhraseError
from bridge.model.curve import DEFAULT_AMOUNT, MAX_GAIN_DB


@dataclass(frozen=True)
class FakeAnswer:
    text: str
    amount: float
    freqs_hz: np.ndarray
    gains_db: np.ndarray


class FakeModel:
    """A deterministic phrase -> curve: a smooth bump placed by the phrase's checksum."""

    DEFAULT_AMOUNT = DEFAULT_AMOUNT
    MAX_GAIN_DB = MAX_GAIN_DB

    def __init__(self) -> None:
        self.calls = 0

    def curve(self, phrase: str, amount: float | None = None) -> FakeAnswer:
        self.calls += 1
        amount = DEFAULT_AMOUNT if amount is None else float(amount)
        words = phrase.strip()
        if not words or not any(c.isalpha() for c in words) or len(words) > 200:
            raise PhraseError(f"cannot describe a sound with {phrase[:40]!r}")
        h = zlib.crc32(words.encode("utf-8"))
        centre = 6 + h % 28
        size = 2.0 + (h >> 8) % 7
        sign = 1.0 if (h >> 16) & 1 else -1.0
        x = np.arange(40)
        total = sign * size * np.exp(-0.5 * ((x - centre) / 4.0) ** 2)
        gains = np.clip(total * (amount / DEFAULT_AMOUNT), -MAX_GAIN_DB, MAX_GAIN_DB)
        return FakeAnswer(phrase, amount, FREQS_HZ.copy(), gains)


BAND_FREQS = (100.0, 400.0, 1600.0, 6400.0)


@dataclass(frozen=True)
class FakeFit:
    bands: tuple[BandSetting, ...]
    predicted_db: np.ndarray
    rms_error_db: float


class FakeMapping:
    name = "fake4"
    bands = BAND_FREQS

    def host_params(self, settings) -> list[HostParam]:
        out = []
        for i, b in enumerate(settings):
            out.append(HostParam(f"band{i + 1}.gain", (b.gain_db + 15.0) / 30.0, b.gain_db,
                                 reaper_index=3 * i, live_name=f"{i + 1} Gain A"))
            out.append(HostParam(f"band{i + 1}.freq", float(np.log(b.freq_hz / 20.0) / np.log(1000.0)),
                                 b.freq_hz, reaper_index=3 * i + 1, live_name=f"{i + 1} Frequency A"))
        return out


def fake_fit(target_db, mapping, *, previous=None) -> FakeFit:
    target = np.asarray(target_db, dtype=float)
    bands = []
    for f in BAND_FREQS:
        g = float(np.clip(np.interp(np.log(f), np.log(FREQS_HZ), target), -15.0, 15.0))
        bands.append(BandSetting("bell", f, round(g, 3), 1.0))
    pred = np.interp(np.log(FREQS_HZ), np.log(BAND_FREQS), [b.gain_db for b in bands])
    return FakeFit(tuple(bands), pred, float(np.sqrt(np.mean((pred - target) ** 2))))


def fake_load_mapping(name: str):
    from bridge.errors import MappingError

    if name not in ("fake4", "reaeq"):
        raise MappingError(f"unknown mapping {name!r}")
    return FakeMapping()


def live_params():
    """The Live device the fake mapping drives, for the AbletonOSC stand-in."""
    from peers import LiveParam

    ps = [LiveParam("Device On", 0.0, 1.0, 1.0)]
    for i in range(4):
        ps.append(LiveParam(f"{i + 1} Frequency A", 10.0, 22000.0, 1000.0))
        ps.append(LiveParam(f"{i + 1} Gain A", -15.0, 15.0, 0.0))
        ps.append(LiveParam(f"{i + 1} Resonance A", 0.1, 18.0, 0.71))
    return ps
