"""Plain values shared by filters, mappings and the fitter: what a band can be and what it is set to."""

from __future__ import annotations

from dataclasses import dataclass, field

# The band types eqbridge speaks; mappings say which of these each plugin band offers.
BAND_TYPES: tuple[str, ...] = (
    "bell", "low_shelf", "high_shelf", "low_cut", "high_cut", "notch", "band_pass", "tilt", "off",
)


@dataclass(frozen=True)
class BandSetting:
    """One band as set: real units. `q` is the RBJ-cookbook Q; `slope_db_oct` only for cuts."""

    type: str
    freq_hz: float
    gain_db: float = 0.0
    q: float = 0.7071
    slope_db_oct: int = 12


@dataclass(frozen=True)
class BandSpec:
    """What one band of a plugin can do, in real units (the mapping converts to host values).

    `q` is the range of RBJ Q the band reaches; `fixed_freq_hz` marks graphic-EQ bands whose
    centre cannot move; `slopes_db_oct` lists the cut slopes the band offers.
    """

    name: str
    types: tuple[str, ...]
    freq_hz: tuple[float, float] = (20.0, 20000.0)
    gain_db: tuple[float, float] = (-15.0, 15.0)
    q: tuple[float, float] = (0.1, 10.0)
    fixed_freq_hz: float | None = None
    fixed_q: float | None = None
    slopes_db_oct: tuple[int, ...] = (12,)
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class HostParam:
    """One plugin parameter value as the hosts address it (what a target sends).

    `normalized` is the 0..1 value (REAPER fxparam, VST3 raw value, MIDI CC scale); `native` is the
    value in the plugin's own display unit (what AbletonOSC sets for a Live device).
    """

    key: str
    normalized: float
    native: float
    reaper_index: int | None = None
    live_name: str | None = None
    vst3_name: str | None = None
