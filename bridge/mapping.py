"""Plugin mappings: what each EQ's bands can do in real units, and how hosts address their knobs.

Why this file exists: the fitter works in real units (Hz, dB, RBJ Q) and the targets speak host
values (REAPER fxparam 0..1, Live parameter values, VST3 normalized values). A mapping YAML file
(schema: mappings/README.md) holds both sides and the conversions between them; this module loads
it, validates it with file/line/field errors, and converts `BandSetting`s to `HostParam`s and back.

Out-of-range policy (documented in mappings/README.md): real values outside a band's range are
clipped to the range (a fitter may ask for 25 dB on a +-15 dB EQ; the nearest reachable setting is
the useful answer); host values outside 0..1 are clipped to 0..1. A band type the band does not
offer, or more settings than bands, raises `MappingError` (no silent substitution).
"""

from __future__ import annotations

import math
import os
from bisect import bisect_left
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.filters import proportional_from_q, q_from_proportional
from bridge.bands import BAND_TYPES, BandSetting, BandSpec, HostParam
from bridge.errors import MappingError

SCHEMA_VERSION = 1
ROLES: tuple[str, ...] = ("freq", "gain", "q", "type", "enable", "slope")
CONVERSION_KINDS: tuple[str, ...] = (
    "linear", "exponential", "db", "reaper_freq", "table", "choice", "toggle", "fixed",
)
Q_UNITS: tuple[str, ...] = ("rbj_q", "octaves", "proportional_q")
RESPONSES: tuple[str, ...] = ("rbj", "unknown")
_NO_GAIN_TYPES = frozenset({"low_cut", "high_cut", "notch", "band_pass", "off"})


def mappings_dir() -> Path:
    """The folder of shipped mappings (EQBRIDGE_MAPPINGS_DIR overrides, e.g. for user mappings)."""
    env = os.environ.get("EQBRIDGE_MAPPINGS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "mappings"


def list_mappings() -> list[str]:
    """Names (file stems) of the mappings in `mappings_dir()`, sorted."""
    d = mappings_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.yaml"))


# --------------------------------------------------------------------------------------------
# Conversions: host normalized value x in 0..1 <-> native value in the plugin's display unit
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conversion:
    """How one parameter's normalized host value maps to its native (display-unit) value.

    kinds: linear (lo + x (hi - lo)); exponential (lo (hi/lo)^x); db (x linear in amplitude from
    10^(lo/20) to 10^(hi/20), native in dB; lo may be null = -inf); reaper_freq (ReaEQ:
    20 + 23980 (401^x - 1) 0.0025); table (piecewise-linear through (x, native) points, both
    strictly increasing or native strictly decreasing); choice (option i of n at x = i/(n-1),
    native = i); toggle (0/1, `invert` for bypass/mute); fixed (no host control: the band value
    is constant).
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    points: tuple[tuple[float, float], ...] = ()
    options: tuple[str, ...] = ()
    invert: bool = False
    unit: str = ""

    def native_range(self) -> tuple[float, float]:
        """(min, max) of the native value over x in 0..1."""
        a, b = self.to_native(0.0), self.to_native(1.0)
        return (min(a, b), max(a, b))

    def to_native(self, x: float) -> float:
        """Native value of normalized host value x (x clipped to 0..1)."""
        x = min(1.0, max(0.0, float(x)))
        k = self.kind
        if k == "linear":
            return self.lo + x * (self.hi - self.lo)
        if k == "exponential":
            return self.lo * (self.hi / self.lo) ** x
        if k == "db":
            a_lo = 0.0 if self.lo is None else 10 ** (self.lo / 20)
            a = a_lo + x * (10 ** (self.hi / 20) - a_lo)
            return -math.inf if a <= 0 else 20 * math.log10(a)
        if k == "reaper_freq":
            return 20.0 + 23980.0 * (401.0 ** x - 1.0) * 0.0025
        if k == "table":
            xs, ys = zip(*self.points)
            return _interp(x, xs, ys)
        if k == "choice":
            return float(round(x * (len(self.options) - 1)))
        if k == "toggle":
            on = x >= 0.5
            return float(on != self.invert)
        raise MappingError(f"conversion kind {k!r} has no host value")

    def to_normalized(self, native: float) -> float:
        """Normalized host value (0..1) of a native value (clipped to the native range)."""
        k = self.kind
        if k in ("choice", "toggle"):
            if k == "toggle":
                return float(bool(round(native)) != self.invert)
            n = len(self.options)
            i = min(n - 1, max(0, int(round(native))))
            return i / (n - 1) if n > 1 else 0.0
        lo, hi = self.native_range()
        if k == "db" and native == -math.inf:
            return 0.0
        v = min(hi, max(lo, float(native)))
        if k == "linear":
            return (v - self.lo) / (self.hi - self.lo)
        if k == "exponential":
            return math.log(v / self.lo) / math.log(self.hi / self.lo)
        if k == "db":
            a_lo = 0.0 if self.lo is None else 10 ** (self.lo / 20)
            return (10 ** (v / 20) - a_lo) / (10 ** (self.hi / 20) - a_lo)
        if k == "reaper_freq":
            return math.log((v - 20.0) / 23980.0 / 0.0025 + 1.0) / math.log(401.0)
        if k == "table":
            xs, ys = zip(*self.points)
            if ys[0] > ys[-1]:
                return _interp(v, ys[::-1], xs[::-1])
            return _interp(v, ys, xs)
        raise MappingError(f"conversion kind {k!r} has no host value")


def _interp(v: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear interpolation through increasing xs (clipped at the ends)."""
    if v <= xs[0]:
        return float(ys[0])
    for i in range(1, len(xs)):
        if v <= xs[i]:
            t = (v - xs[i - 1]) / (xs[i] - xs[i - 1])
            return float(ys[i - 1] + t * (ys[i] - ys[i - 1]))
    return float(ys[-1])


@dataclass(frozen=True)
class ParamSpec:
    """One host parameter of a band: its role, conversion and host addresses."""

    role: str
    conversion: Conversion
    reaper_index: int | None = None
    live_name: str | None = None
    vst3_name: str | None = None
    q_unit: str = "rbj_q"  # only for role "q": the native unit (RBJ Q or bandwidth in octaves)
    type_map: tuple[tuple[str, str], ...] = ()  # role "type"/"slope": (band type[/slope], option)
    value: float | str | None = None  # constants: the native value (number or option name)


@dataclass(frozen=True)
class BandParams:
    """All host parameters of one band (roles plus constants such as a filter mode)."""

    params: tuple[ParamSpec, ...]
    constants: tuple[tuple[str, ParamSpec], ...] = ()

    def get(self, role: str) -> ParamSpec | None:
        """The parameter with this role, or None when the band has none."""
        for p in self.params:
            if p.role == role:
                return p
        return None


# --------------------------------------------------------------------------------------------
# Mapping
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mapping:
    """A loaded, validated plugin mapping: band capabilities plus host-value conversions."""

    name: str
    display_name: str
    vst3_name: str | None
    reaper_fx_name: str | None
    live_device_name: str | None
    sample_rate: float
    bands: tuple[BandSpec, ...]
    band_params: tuple[BandParams, ...] = field(repr=False, default=())
    global_constants: tuple[tuple[str, ParamSpec], ...] = field(repr=False, default=())
    response: str = "unknown"
    verified: bool = False
    sources: tuple[str, ...] = field(repr=False, default=())
    osc: tuple[tuple[str, str], ...] = field(repr=False, default=())
    notes: str = field(repr=False, default="")
    path: Path | None = field(repr=False, default=None)

    # ---- real -> host --------------------------------------------------------------------
    def host_params(self, settings: Sequence[BandSetting]) -> list[HostParam]:
        """Host values for settings (one per band, in band order; missing bands are turned off).

        Real values are clipped to each band's range; an unsupported type raises MappingError.
        "off" sets the band's enable param if it has one, else gain 0 dB.
        """
        if len(settings) > len(self.bands):
            raise MappingError(f"{self.name}: {len(settings)} settings for {len(self.bands)} bands")
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self._compile()
        out: list[HostParam] = list(plan[0])
        bands = plan[1]
        n = len(settings)
        for i, band in enumerate(bands):
            out.extend(band(settings[i] if i < n else _OFF))
        return out

    def host_params_reference(self, settings: Sequence[BandSetting]) -> list[HostParam]:
        """`host_params` as first written (uncompiled): tests check the two give identical values."""
        if len(settings) > len(self.bands):
            raise MappingError(f"{self.name}: {len(settings)} settings for {len(self.bands)} bands")
        out: list[HostParam] = [self._host(f"global.{k}", p, _const_native(p))
                                for k, p in self.global_constants]
        padded = list(settings) + [BandSetting("off", 1000.0)] * (len(self.bands) - len(settings))
        for spec, bp, s in zip(self.bands, self.band_params, padded):
            out.extend(self._band_host(spec, bp, s))
        return out

    def _compile(self) -> tuple:
        """Per-band closures for `host_params` (built once per mapping): constants and switch
        values precomputed, conversions with their constant sub-expressions hoisted. Every float
        is computed by the same operations in the same order as `host_params_reference`."""
        consts = tuple(self._host(f"global.{k}", p, _const_native(p)) for k, p in self.global_constants)
        plan = (consts, tuple(_compile_band(self, spec, bp) for spec, bp in zip(self.bands, self.band_params)))
        object.__setattr__(self, "_plan", plan)  # frozen dataclass: a cache, not a field
        return plan

    def _band_host(self, spec: BandSpec, bp: BandParams, s: BandSetting) -> list[HostParam]:
        """Host values of one band's setting."""
        key = spec.name
        out = [self._host(f"{key}.{k}", p, _const_native(p)) for k, p in bp.constants]
        enable, typ = bp.get("enable"), bp.get("type")
        if s.type == "off":
            if enable is not None:
                return out + [self._host(f"{key}.enable", enable, 0.0)]
            if typ is not None and "off" in dict(typ.type_map):
                return out + [self._host(f"{key}.type", typ, _type_index(typ, "off", 12))]
            # No switch: a gain band at 0 dB (all its params sent, so the key set stays stable).
            zero_type = next((t for t in ("bell", "low_shelf", "high_shelf") if t in spec.types),
                             None)
            if zero_type is None or bp.get("gain") is None:
                raise MappingError(f"{self.name}: band {key} can be neither disabled nor zeroed")
            s = BandSetting(zero_type, _clip(s.freq_hz, spec.freq_hz), 0.0, _clip(s.q, spec.q))
        if s.type not in spec.types:
            raise MappingError(f"{self.name}: band {key} offers {list(spec.types)}, not {s.type!r}")
        slope = _nearest(spec.slopes_db_oct, s.slope_db_oct)
        if enable is not None:
            out.append(self._host(f"{key}.enable", enable, 1.0))
        if typ is not None:
            out.append(self._host(f"{key}.type", typ, _type_index(typ, s.type, slope)))
        sp = bp.get("slope")
        if sp is not None and s.type in ("low_cut", "high_cut"):
            out.append(self._host(f"{key}.slope", sp, _type_index(sp, str(slope), slope)))
        fp = bp.get("freq")
        if fp is not None:
            out.append(self._host(f"{key}.freq", fp, _clip(s.freq_hz, spec.freq_hz)))
        gp = bp.get("gain")
        g = 0.0 if s.type in _NO_GAIN_TYPES else _clip(s.gain_db, spec.gain_db)
        if gp is not None:
            out.append(self._host(f"{key}.gain", gp, g))
        qp = bp.get("q")
        if qp is not None:
            out.append(self._host(f"{key}.q", qp, _q_to_native(_clip(s.q, spec.q), qp.q_unit, g)))
        return out

    @staticmethod
    def _host(key: str, p: ParamSpec, native: float) -> HostParam:
        """HostParam of a native value (normalized via the conversion; native re-read from it)."""
        x = p.conversion.to_normalized(native)
        nat = p.conversion.to_native(x) if p.conversion.kind not in ("choice", "toggle") else native
        return HostParam(key=key, normalized=x, native=nat, reaper_index=p.reaper_index,
                         live_name=p.live_name, vst3_name=p.vst3_name)

    # ---- host -> real --------------------------------------------------------------------
    def settings_from_host(self, values: AbcMapping[str, float]) -> list[BandSetting]:
        """Band settings from normalized host values keyed like `host_params` keys.

        Missing keys take the band's fixed value or a neutral default (0 dB, Q 0.7071 or the
        band's fixed Q, first offered type), so partial read-backs still decode.
        """
        out: list[BandSetting] = []
        for spec, bp in zip(self.bands, self.band_params):
            k = spec.name

            def val(role: str) -> float | None:
                p = bp.get(role)
                if p is None or f"{k}.{role}" not in values:
                    return None
                return p.conversion.to_native(values[f"{k}.{role}"])

            en = val("enable")
            if en is not None and en < 0.5:
                out.append(BandSetting("off", spec.fixed_freq_hz or spec.freq_hz[0], 0.0))
                continue
            typ = spec.types[0] if len(spec.types) == 1 else None
            slope = spec.slopes_db_oct[0]
            ti = val("type")
            if ti is not None:
                typ, tslope = _type_from_index(bp.get("type"), int(ti))
                slope = tslope or slope
            si = val("slope")
            if si is not None:
                opt = bp.get("slope").conversion.options[int(si)]
                slope = int(next((t for t, o in bp.get("slope").type_map if o == opt), slope))
            typ = typ or spec.types[0]
            if typ == "off":
                out.append(BandSetting("off", spec.fixed_freq_hz or spec.freq_hz[0], 0.0))
                continue
            f = spec.fixed_freq_hz if spec.fixed_freq_hz is not None else val("freq")
            g = val("gain")
            q = spec.fixed_q if spec.fixed_q is not None else None
            qn = val("q")
            if q is None and qn is not None:
                g_db = float(g) if g is not None and typ not in _NO_GAIN_TYPES else 0.0
                q = _q_from_native(qn, bp.get("q").q_unit, g_db)
            out.append(BandSetting(typ, float(f if f is not None else 1000.0),
                                   float(g if g is not None and typ not in _NO_GAIN_TYPES else 0.0),
                                   float(q if q is not None else 0.7071), int(slope)))
        return out

    def param_count(self) -> int:
        """Number of host parameters a full `host_params` call emits (for targets' sanity checks)."""
        return len(self.host_params([]))


_OFF = BandSetting("off", 1000.0)


def _compile_conversion(c: Conversion):
    """(to_normalized, to_native) closures equal to the Conversion's methods, float for float."""
    k = c.kind
    if k in ("choice", "toggle", "fixed") or (k == "exponential" and not (c.lo and c.hi)):
        return c.to_normalized, c.to_native
    lo, hi = c.native_range()
    if k == "linear":
        c_lo, d = c.lo, c.hi - c.lo

        def norm(native: float) -> float:
            v = min(hi, max(lo, float(native)))
            return (v - c_lo) / d

        def nat(x: float) -> float:
            return c_lo + min(1.0, max(0.0, float(x))) * d
    elif k == "exponential":
        c_lo, ratio = c.lo, c.hi / c.lo
        log_ratio = math.log(ratio)

        def norm(native: float) -> float:
            v = min(hi, max(lo, float(native)))
            return math.log(v / c_lo) / log_ratio

        def nat(x: float) -> float:
            return c_lo * ratio ** min(1.0, max(0.0, float(x)))
    elif k == "db":
        a_lo = 0.0 if c.lo is None else 10 ** (c.lo / 20)
        span = 10 ** (c.hi / 20) - a_lo
        inf = math.inf

        def norm(native: float) -> float:
            if native == -inf:
                return 0.0
            v = min(hi, max(lo, float(native)))
            return (10 ** (v / 20) - a_lo) / span

        def nat(x: float) -> float:
            a = a_lo + min(1.0, max(0.0, float(x))) * span
            return -inf if a <= 0 else 20 * math.log10(a)
    elif k == "reaper_freq":
        log401 = math.log(401.0)

        def norm(native: float) -> float:
            v = min(hi, max(lo, float(native)))
            return math.log((v - 20.0) / 23980.0 / 0.0025 + 1.0) / log401

        def nat(x: float) -> float:
            return 20.0 + 23980.0 * (401.0 ** min(1.0, max(0.0, float(x))) - 1.0) * 0.0025
    elif k == "table":
        xs, ys = zip(*c.points)
        ixs, iys = (ys[::-1], xs[::-1]) if ys[0] > ys[-1] else (ys, xs)

        def norm(native: float) -> float:
            return _interp_bisect(min(hi, max(lo, float(native))), ixs, iys)

        def nat(x: float) -> float:
            return _interp_bisect(min(1.0, max(0.0, float(x))), xs, ys)
    else:
        return c.to_normalized, c.to_native
    return norm, nat


def _interp_bisect(v: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """`_interp` with a binary search: the same segment, the same arithmetic."""
    if v <= xs[0]:
        return float(ys[0])
    i = bisect_left(xs, v)
    if i == len(xs):
        return float(ys[-1])
    t = (v - xs[i - 1]) / (xs[i] - xs[i - 1])
    return float(ys[i - 1] + t * (ys[i] - ys[i - 1]))


_new = object.__new__


def _host_param(key: str, x: float, nat: float, ri: int | None, ln: str | None, vn: str | None) -> HostParam:
    """HostParam(key, x, nat, ri, ln, vn) without the frozen dataclass's per-field
    object.__setattr__ calls (~2 us each time; the hot path builds a dozen per knob move)."""
    hp = _new(HostParam)
    hp.__dict__.update(key=key, normalized=x, native=nat, reaper_index=ri, live_name=ln, vst3_name=vn)
    return hp


def _compile_param(key: str, p: ParamSpec):
    """A function native -> HostParam equal to `Mapping._host(key, p, native)`."""
    norm, nat = _compile_conversion(p.conversion)
    ri, ln, vn = p.reaper_index, p.live_name, p.vst3_name
    if p.conversion.kind in ("choice", "toggle"):
        def host(native: float) -> HostParam:
            return _host_param(key, norm(native), native, ri, ln, vn)
    else:
        def host(native: float) -> HostParam:
            x = norm(native)
            return _host_param(key, x, nat(x), ri, ln, vn)
    return host


def _compile_band(m: "Mapping", spec: BandSpec, bp: BandParams):
    """One band of `Mapping.host_params`: setting -> list of HostParam (see `_band_host`)."""
    key = spec.name
    consts = [m._host(f"{key}.{k}", p, _const_native(p)) for k, p in bp.constants]
    enable, typ, sp = bp.get("enable"), bp.get("type"), bp.get("slope")
    off: list[HostParam] | None = None
    if enable is not None:
        off = consts + [m._host(f"{key}.enable", enable, 0.0)]
    elif typ is not None and "off" in dict(typ.type_map):
        off = consts + [m._host(f"{key}.type", typ, _type_index(typ, "off", 12))]
    on = consts + ([m._host(f"{key}.enable", enable, 1.0)] if enable is not None else [])
    switch: dict[tuple[str, int], list[HostParam]] = {}  # (type, slope) -> type/slope params
    fp, gp, qp = bp.get("freq"), bp.get("gain"), bp.get("q")
    f_host = None if fp is None else _compile_param(f"{key}.freq", fp)
    g_host = None if gp is None else _compile_param(f"{key}.gain", gp)
    q_host = None if qp is None else _compile_param(f"{key}.q", qp)
    q_unit = None if qp is None else qp.q_unit
    types, slopes = spec.types, spec.slopes_db_oct
    f_lo, f_hi = spec.freq_hz
    g_lo, g_hi = spec.gain_db
    q_lo, q_hi = spec.q
    one_slope = slopes[0] if len(slopes) == 1 else None
    zero_type = next((t for t in ("bell", "low_shelf", "high_shelf") if t in types), None)
    if gp is None:
        zero_type = None

    def band(s: BandSetting) -> list[HostParam]:
        t = s.type
        if t == "off":
            if off is not None:
                return list(off)
            if zero_type is None:
                return m._band_host(spec, bp, s)  # raises the MappingError
            # No switch: a gain band at 0 dB (all its params sent, so the key set stays stable).
            s = BandSetting(zero_type, _clip(s.freq_hz, spec.freq_hz), 0.0, _clip(s.q, spec.q))
            t = zero_type
        if t not in types:
            return m._band_host(spec, bp, s)  # raises the MappingError
        slope = one_slope if one_slope is not None else _nearest(slopes, s.slope_db_oct)
        sw = switch.get((t, slope))
        if sw is None:
            sw = []
            if typ is not None:
                sw.append(m._host(f"{key}.type", typ, _type_index(typ, t, slope)))
            if sp is not None and t in ("low_cut", "high_cut"):
                sw.append(m._host(f"{key}.slope", sp, _type_index(sp, str(slope), slope)))
            switch[(t, slope)] = sw
        out = on + sw
        if f_host is not None:
            out.append(f_host(float(min(f_hi, max(f_lo, s.freq_hz)))))
        g = 0.0 if t in _NO_GAIN_TYPES else float(min(g_hi, max(g_lo, s.gain_db)))
        if g_host is not None:
            out.append(g_host(g))
        if q_host is not None:
            q = float(min(q_hi, max(q_lo, s.q)))
            out.append(q_host(q if q_unit == "rbj_q" else _q_to_native(q, q_unit, g)))
        return out

    return band


def _clip(v: float, rng: tuple[float, float]) -> float:
    return float(min(rng[1], max(rng[0], v)))


def _nearest(options: Sequence[int], v: int) -> int:
    return min(options, key=lambda o: (abs(o - v), o))


def _const_native(p: ParamSpec) -> float:
    """Native value of a constant param (option names resolve to their index)."""
    if isinstance(p.value, str):
        return float(p.conversion.options.index(p.value))
    return float(p.value)


def _type_index(p: ParamSpec, band_type: str, slope: int) -> float:
    """Option index for a band type (keys "type/slope" win over plain "type")."""
    m = dict(p.type_map)
    opt = m.get(f"{band_type}/{slope}", m.get(band_type))
    if opt is None:
        raise MappingError(f"no option for {band_type!r} ({slope} dB/oct)")
    return float(p.conversion.options.index(opt))


def _type_from_index(p: ParamSpec, i: int) -> tuple[str, int | None]:
    """(band type, slope or None) of a choice index; unmapped options decode as "off"."""
    opt = p.conversion.options[min(max(i, 0), len(p.conversion.options) - 1)]
    for key, o in p.type_map:
        if o == opt:
            t, _, sl = key.partition("/")
            return t, int(sl) if sl else None
    return "off", None


def _q_to_native(q: float, unit: str, gain_db: float = 0.0) -> float:
    """RBJ Q -> the param's native unit (octaves use the analog RBJ relation, as plugin UIs do;
    proportional_q is the resonator Q of a proportional-Q bell, bridge.filters.q_from_proportional)."""
    if unit == "octaves":
        return 2.0 / math.log(2.0) * math.asinh(1.0 / (2.0 * q))
    if unit == "proportional_q":
        return float(proportional_from_q(q, gain_db))
    return q


def _q_from_native(v: float, unit: str, gain_db: float = 0.0) -> float:
    """The param's native unit -> RBJ Q (inverse of `_q_to_native`)."""
    if unit == "octaves":
        return 1.0 / (2.0 * math.sinh(math.log(2.0) / 2.0 * max(v, 1e-9)))
    if unit == "proportional_q":
        return float(q_from_proportional(v, gain_db))
    return v


# --------------------------------------------------------------------------------------------
# Loading: YAML node tree (for line numbers) -> plain data + marks -> validated Mapping
# --------------------------------------------------------------------------------------------

Path_ = tuple  # a field path inside the document, e.g. ("bands", 0, "params", "freq")


class _Doc:
    """Plain data of a YAML file plus the line of every field path (for error messages)."""

    def __init__(self, file: Path, text: str):
        self.file = file
        self.lines: dict[Path_, int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            line = mark.line + 1 if mark else 1
            problem = getattr(e, "problem", None) or str(e)
            raise MappingError(f"{file}:{line}: (document): YAML syntax error: {problem}") from None
        if node is None:
            raise MappingError(f"{file}:1: (document): file is empty")
        self._ctor = yaml.constructor.SafeConstructor()
        self.data = self._plain(node, ())

    def _plain(self, node: yaml.Node, path: Path_) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = {}
            for k, v in node.value:
                key = self._ctor.construct_object(k, deep=True)
                self.lines[path + (key,)] = k.start_mark.line + 1
                out[key] = self._plain(v, path + (key,))
                self.lines[path + (key,)] = v.start_mark.line + 1 if not isinstance(
                    v, (yaml.MappingNode, yaml.SequenceNode)) else k.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._plain(v, path + (i,)) for i, v in enumerate(node.value)]
        return self._ctor.construct_object(node, deep=True)

    def fail(self, path: Path_, msg: str) -> MappingError:
        """A MappingError naming file, line and field (line of the nearest known parent)."""
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p, 1)
        name = ".".join(str(x) if not isinstance(x, int) else f"[{x}]" for x in path) or "(document)"
        name = name.replace(".[", "[")
        return MappingError(f"{self.file}:{line}: {name}: {msg}")


def _resolve(name_or_path: str | os.PathLike) -> Path:
    """A mapping name (file stem in mappings_dir()) or a path to a YAML file."""
    s = str(name_or_path)
    p = Path(s)
    if p.suffix in (".yaml", ".yml") or os.sep in s or "/" in s:
        if not p.is_file():
            raise MappingError(f"{p}: mapping file not found")
        return p
    cand = mappings_dir() / f"{s}.yaml"
    if not cand.is_file():
        known = ", ".join(list_mappings()) or "(none)"
        raise MappingError(f"unknown mapping {s!r}; known mappings in {mappings_dir()}: {known}")
    return cand


def load_mapping(name_or_path: str | os.PathLike) -> Mapping:
    """Load and validate a mapping by name (file stem in mappings/) or by path."""
    path = _resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise MappingError(f"{path}: cannot read mapping: {e}") from None
    return mapping_from_text(text, path)


def mapping_from_text(text: str, path: Path | str = "<string>") -> Mapping:
    """Validate mapping YAML text (the loader's core; also used for probe output)."""
    doc = _Doc(Path(path), text)
    return _build(doc)


def mapping_from_dict(data: dict, path: Path | str = "<dict>") -> Mapping:
    """Validate an already-parsed mapping dict (e.g. from `bridge.probe.map_plugin`)."""
    return mapping_from_text(yaml.safe_dump(data, sort_keys=False), path)


# ---- field readers -------------------------------------------------------------------------

def _get(doc: _Doc, obj: Any, path: Path_, key: str, kind: type | tuple, required: bool = True,
         default: Any = None) -> Any:
    if not isinstance(obj, dict):
        raise doc.fail(path, f"expected a mapping, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        if required:
            raise doc.fail(path + (key,), "missing required field")
        return default
    v = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        want = " or ".join(k.__name__ for k in kinds)
        raise doc.fail(path + (key,), f"expected {want}, got {type(v).__name__} {v!r}")
    return v


def _pair(doc: _Doc, obj: dict, path: Path_, key: str, default: tuple | None = None,
          positive: bool = False) -> tuple[float, float] | None:
    v = _get(doc, obj, path, key, list, required=False)
    if v is None:
        return default
    if len(v) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise doc.fail(path + (key,), f"expected [min, max] numbers, got {v!r}")
    lo, hi = float(v[0]), float(v[1])
    if lo > hi:
        raise doc.fail(path + (key,), f"min {lo} > max {hi}")
    if positive and lo <= 0:
        raise doc.fail(path + (key,), f"must be > 0, got {lo}")
    return (lo, hi)


def _check_keys(doc: _Doc, obj: dict, path: Path_, allowed: set[str]) -> None:
    for k in obj:
        if k not in allowed:
            raise doc.fail(path + (k,), f"unknown field; expected one of {sorted(allowed)}")


def _conversion(doc: _Doc, obj: Any, path: Path_, named: dict[str, Conversion]) -> Conversion:
    """A conversion: inline mapping or the name of one in the top-level `conversions`."""
    if isinstance(obj, str):
        if obj not in named:
            raise doc.fail(path, f"unknown conversion {obj!r}; defined: {sorted(named)}")
        return named[obj]
    if not isinstance(obj, dict):
        raise doc.fail(path, f"expected a conversion mapping or name, got {type(obj).__name__}")
    _check_keys(doc, obj, path, {"kind", "lo", "hi", "points", "options", "invert", "unit",
                                 "source"})
    kind = _get(doc, obj, path, "kind", str)
    if kind not in CONVERSION_KINDS:
        raise doc.fail(path + ("kind",), f"unknown kind {kind!r}; expected one of {CONVERSION_KINDS}")
    unit = _get(doc, obj, path, "unit", str, required=False, default="")
    if kind in ("linear", "exponential"):
        lo = _get(doc, obj, path, "lo", float)
        hi = _get(doc, obj, path, "hi", float)
        if lo == hi:
            raise doc.fail(path + ("hi",), "hi must differ from lo")
        if kind == "exponential" and (lo <= 0 or hi <= 0):
            raise doc.fail(path + ("lo",), "exponential needs lo, hi > 0")
        return Conversion(kind, lo, hi, unit=unit)
    if kind == "db":
        lo = _get(doc, obj, path, "lo", float, required=False)
        hi = _get(doc, obj, path, "hi", float)
        if lo is not None and lo >= hi:
            raise doc.fail(path + ("hi",), "hi must exceed lo")
        return Conversion(kind, lo, hi, unit=unit or "dB")
    if kind == "reaper_freq":
        return Conversion(kind, unit=unit or "Hz")
    if kind == "table":
        pts = _get(doc, obj, path, "points", list)
        clean: list[tuple[float, float]] = []
        for i, pt in enumerate(pts):
            if (not isinstance(pt, list) or len(pt) != 2
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pt)):
                raise doc.fail(path + ("points", i), f"expected [normalized, native], got {pt!r}")
            clean.append((float(pt[0]), float(pt[1])))
        if len(clean) < 2:
            raise doc.fail(path + ("points",), "need at least 2 points")
        xs = [p[0] for p in clean]
        ys = [p[1] for p in clean]
        if xs[0] < 0.0 or xs[-1] > 1.0:
            raise doc.fail(path + ("points",), "normalized values must lie in 0..1")
        inc_x = all(b > a for a, b in zip(xs, xs[1:]))
        mono_y = (all(b > a for a, b in zip(ys, ys[1:])) or all(b < a for a, b in zip(ys, ys[1:])))
        if not (inc_x and mono_y):
            raise doc.fail(path + ("points",), "points must be strictly monotonic in both columns")
        return Conversion(kind, points=tuple(clean), unit=unit)
    if kind == "choice":
        opts = _get(doc, obj, path, "options", list)
        if len(opts) < 2 or not all(isinstance(o, str) for o in opts) or len(set(opts)) != len(opts):
            raise doc.fail(path + ("options",), "need >= 2 distinct option names (strings)")
        return Conversion(kind, options=tuple(opts), unit=unit)
    if kind == "toggle":
        inv = _get(doc, obj, path, "invert", bool, required=False, default=False)
        return Conversion(kind, options=("off", "on"), invert=inv, unit=unit)
    return Conversion("fixed", unit=unit)


def _addr(doc: _Doc, obj: dict, path: Path_, index: int, offset: int) -> dict:
    """Host addresses of a param: {n}/{i} = band number 1-/0-based; REAPER index + offset."""
    def tmpl(key: str) -> str | None:
        v = _get(doc, obj, path, key, str, required=False)
        return None if v is None else v.replace("{n}", str(index + 1)).replace("{i}", str(index))
    ri = _get(doc, obj, path, "reaper_index", int, required=False)
    if ri is not None:
        if ri < 0:
            raise doc.fail(path + ("reaper_index",), "must be >= 0")
        ri += offset
    return {"reaper_index": ri, "live_name": tmpl("live_name"), "vst3_name": tmpl("vst3_name")}


_PARAM_KEYS = {"conversion", "reaper_index", "live_name", "vst3_name", "unit", "map", "source",
               "value", "note"}


def _param(doc: _Doc, obj: Any, path: Path_, role: str, named: dict[str, Conversion],
           index: int, offset: int, q_default: str) -> ParamSpec:
    if not isinstance(obj, dict):
        raise doc.fail(path, f"expected a mapping, got {type(obj).__name__}")
    _check_keys(doc, obj, path, _PARAM_KEYS)
    if "conversion" not in obj:
        raise doc.fail(path + ("conversion",), "missing required field")
    conv = _conversion(doc, obj["conversion"], path + ("conversion",), named)
    q_unit = "rbj_q"
    if role == "q":
        q_unit = _get(doc, obj, path, "unit", str, required=False, default=q_default)
        if q_unit not in Q_UNITS:
            raise doc.fail(path + ("unit",), f"unknown Q convention {q_unit!r}; expected {Q_UNITS}")
    type_map: tuple[tuple[str, str], ...] = ()
    if role in ("type", "slope"):
        if conv.kind != "choice":
            raise doc.fail(path + ("conversion",), f"a {role} param needs a choice conversion")
        m = _get(doc, obj, path, "map", dict)
        pairs = []
        for k, opt in m.items():
            k = str(k)
            base = k.split("/")[0]
            if role == "type" and base not in BAND_TYPES:
                raise doc.fail(path + ("map", k), f"unknown band type {base!r}; expected {BAND_TYPES}")
            if role == "slope" and not k.isdigit():
                raise doc.fail(path + ("map", k), "slope keys are dB/oct integers")
            if opt not in conv.options:
                raise doc.fail(path + ("map", k), f"option {opt!r} not in {list(conv.options)}")
            pairs.append((k, opt))
        type_map = tuple(pairs)
    value = obj.get("value")
    if role == "constant":
        if value is None:
            raise doc.fail(path + ("value",), "missing required field")
        if conv.kind == "choice" and value not in conv.options:
            raise doc.fail(path + ("value",), f"option {value!r} not in {list(conv.options)}")
    elif role in ("freq", "gain", "q") and conv.kind in ("choice", "toggle"):
        raise doc.fail(path + ("conversion",), f"a {role} param needs a numeric conversion")
    elif role == "enable" and conv.kind != "toggle":
        raise doc.fail(path + ("conversion",), "an enable param needs a toggle conversion")
    return ParamSpec(role=role, conversion=conv, q_unit=q_unit, type_map=type_map, value=value,
                     **_addr(doc, obj, path, index, offset))


_BAND_KEYS = {"name", "types", "freq_hz", "gain_db", "q", "fixed_freq_hz", "fixed_q",
              "slopes_db_oct", "params", "constants", "repeat", "reaper_stride", "note", "source",
              "fixed_freqs_hz", "first"}


def _bands(doc: _Doc, raw: list, named: dict[str, Conversion], q_default: str
           ) -> tuple[list[BandSpec], list[BandParams]]:
    specs: list[BandSpec] = []
    params: list[BandParams] = []
    for gi, group in enumerate(raw):
        gpath = ("bands", gi)
        if not isinstance(group, dict):
            raise doc.fail(gpath, f"expected a mapping, got {type(group).__name__}")
        _check_keys(doc, group, gpath, _BAND_KEYS)
        repeat = _get(doc, group, gpath, "repeat", int, required=False, default=1)
        if repeat < 1:
            raise doc.fail(gpath + ("repeat",), "must be >= 1")
        stride = _get(doc, group, gpath, "reaper_stride", int, required=False, default=0)
        first = _get(doc, group, gpath, "first", int, required=False, default=1)
        fixed_list = _get(doc, group, gpath, "fixed_freqs_hz", list, required=False)
        if fixed_list is not None and len(fixed_list) != repeat:
            raise doc.fail(gpath + ("fixed_freqs_hz",), f"needs {repeat} entries (one per band)")
        for r in range(repeat):
            specs_params = _band(doc, group, gpath, named, q_default, first + r, stride * r,
                                 None if fixed_list is None else fixed_list[r])
            specs.append(specs_params[0])
            params.append(specs_params[1])
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise doc.fail(("bands",), f"duplicate band names {sorted(dup)}")
    return specs, params


def _band(doc: _Doc, group: dict, gpath: Path_, named: dict[str, Conversion], q_default: str,
          n: int, offset: int, fixed_f: Any) -> tuple[BandSpec, BandParams]:
    """One band of a (repeat) group: n is its 1-based number in the group's numbering."""
    name_t = _get(doc, group, gpath, "name", str, required=False, default="band{n}")
    name = name_t.replace("{n}", str(n)).replace("{i}", str(n - 1))
    types = _get(doc, group, gpath, "types", list)
    for ti, t in enumerate(types):
        if t not in BAND_TYPES or t == "off":
            raise doc.fail(gpath + ("types", ti), f"unknown band type {t!r}; expected {BAND_TYPES[:-1]}")
    if not types:
        raise doc.fail(gpath + ("types",), "need at least one type")
    praw = _get(doc, group, gpath, "params", dict)
    pspecs: list[ParamSpec] = []
    for role, pobj in praw.items():
        if role not in ROLES:
            raise doc.fail(gpath + ("params", role), f"unknown role; expected one of {ROLES}")
        pspecs.append(_param(doc, pobj, gpath + ("params", role), role, named, n - 1, offset,
                             q_default))
    consts: list[tuple[str, ParamSpec]] = []
    for cname, cobj in (_get(doc, group, gpath, "constants", dict, required=False) or {}).items():
        consts.append((str(cname), _param(doc, cobj, gpath + ("constants", cname), "constant",
                                          named, n - 1, offset, q_default)))
    bp = BandParams(tuple(pspecs), tuple(consts))

    def derived(role: str, key: str, positive: bool = False) -> tuple[float, float]:
        """Range from the YAML, else from the param's conversion (native -> real units)."""
        rng = _pair(doc, group, gpath, key, default=(), positive=positive)
        if rng:
            return rng
        p = bp.get(role)
        if p is None or p.conversion.kind == "fixed":
            defaults = {"freq_hz": (20.0, 20000.0), "gain_db": (0.0, 0.0), "q": (0.7071, 0.7071)}
            return defaults[key]
        lo, hi = p.conversion.native_range()
        if role == "q":
            a, b = _q_from_native(lo, p.q_unit), _q_from_native(hi, p.q_unit)
            lo, hi = min(a, b), max(a, b)
        return (lo, hi)

    fixed_freq = fixed_f if fixed_f is not None else _get(doc, group, gpath, "fixed_freq_hz", float,
                                                          required=False)
    fixed_q = _get(doc, group, gpath, "fixed_q", float, required=False)
    freq = derived("freq", "freq_hz", positive=True)
    gain = derived("gain", "gain_db")
    q = derived("q", "q", positive=True)
    if fixed_q is not None:
        q = (fixed_q, fixed_q)
    if fixed_freq is not None:
        freq = (float(fixed_freq), float(fixed_freq))
    if fixed_freq is None and bp.get("freq") is None:
        raise doc.fail(gpath + ("params",), "band has no freq param and no fixed_freq_hz")
    if any(t not in _NO_GAIN_TYPES for t in types) and bp.get("gain") is None:
        raise doc.fail(gpath + ("params",), f"types {types} need a gain param")
    for role, rng in (("freq", freq), ("gain", gain)):
        p = bp.get(role)
        if p is not None and p.conversion.kind != "fixed":
            lo, hi = p.conversion.native_range()
            if rng[0] < lo - 1e-9 or rng[1] > hi + 1e-9:
                key = "freq_hz" if role == "freq" else "gain_db"
                raise doc.fail(gpath + (key,), f"range {list(rng)} exceeds the param's {[lo, hi]}")
    slopes = _get(doc, group, gpath, "slopes_db_oct", list, required=False, default=[12])
    from bridge.filters import CUT_SLOPES_DB_OCT  # local import: filters is heavy-ish and optional
    for si, s in enumerate(slopes):
        if s not in CUT_SLOPES_DB_OCT:
            raise doc.fail(gpath + ("slopes_db_oct", si), f"slope {s!r} not in {CUT_SLOPES_DB_OCT}")
    tp = bp.get("type")
    if tp is not None:
        mapped = {k.split("/")[0] for k, _ in tp.type_map}
        missing = [t for t in types if t not in mapped]
        if missing:
            raise doc.fail(gpath + ("params", "type", "map"), f"types {missing} have no option")
    elif len(types) > 1:
        raise doc.fail(gpath + ("params",), f"{len(types)} types but no type param")
    spec = BandSpec(name=name, types=tuple(types), freq_hz=freq, gain_db=gain, q=q,
                    fixed_freq_hz=None if fixed_freq is None else float(fixed_freq),
                    fixed_q=fixed_q, slopes_db_oct=tuple(int(s) for s in slopes))
    return spec, bp


_TOP_KEYS = {"schema", "name", "plugin", "sample_rate", "q_convention", "response", "verified",
             "sources", "notes", "conversions", "globals", "bands", "osc", "live", "reaper"}


def _build(doc: _Doc) -> Mapping:
    d = doc.data
    if not isinstance(d, dict):
        raise doc.fail((), f"expected a mapping at top level, got {type(d).__name__}")
    _check_keys(doc, d, (), _TOP_KEYS)
    schema = _get(doc, d, (), "schema", int)
    if schema != SCHEMA_VERSION:
        raise doc.fail(("schema",), f"unsupported schema {schema}; this eqbridge reads {SCHEMA_VERSION}")
    plugin = _get(doc, d, (), "plugin", dict)
    _check_keys(doc, plugin, ("plugin",), {"display_name", "vst3_name", "reaper_fx_name",
                                           "live_device_name", "vendor", "source"})
    display = _get(doc, plugin, ("plugin",), "display_name", str)
    vst3 = _get(doc, plugin, ("plugin",), "vst3_name", str, required=False)
    reaper = _get(doc, plugin, ("plugin",), "reaper_fx_name", str, required=False)
    live = _get(doc, plugin, ("plugin",), "live_device_name", str, required=False)
    sr = _get(doc, d, (), "sample_rate", float)
    if sr <= 0:
        raise doc.fail(("sample_rate",), "must be > 0")
    q_default = _get(doc, d, (), "q_convention", str, required=False, default="rbj_q")
    if q_default not in Q_UNITS:
        raise doc.fail(("q_convention",), f"unknown Q convention {q_default!r}; expected {Q_UNITS}")
    response = _get(doc, d, (), "response", str, required=False, default="unknown")
    if response not in RESPONSES:
        raise doc.fail(("response",), f"expected one of {RESPONSES}")
    verified = _get(doc, d, (), "verified", bool, required=False, default=False)
    sources = _get(doc, d, (), "sources", list)
    if not sources or not all(isinstance(s, str) for s in sources):
        raise doc.fail(("sources",), "list at least one source (string) for the mapping's facts")
    named: dict[str, Conversion] = {}
    for cname, cobj in (_get(doc, d, (), "conversions", dict, required=False) or {}).items():
        named[str(cname)] = _conversion(doc, cobj, ("conversions", cname), named)
    gconsts: list[tuple[str, ParamSpec]] = []
    for gname, gobj in (_get(doc, d, (), "globals", dict, required=False) or {}).items():
        gconsts.append((str(gname), _param(doc, gobj, ("globals", gname), "constant", named, 0, 0,
                                           q_default)))
    raw_bands = _get(doc, d, (), "bands", list)
    if not raw_bands:
        raise doc.fail(("bands",), "need at least one band")
    specs, params = _bands(doc, raw_bands, named, q_default)
    osc = _get(doc, d, (), "osc", dict, required=False, default={})
    name = _get(doc, d, (), "name", str, required=False, default=doc.file.stem)
    notes = _get(doc, d, (), "notes", str, required=False, default="")
    return Mapping(name=name, display_name=display, vst3_name=vst3, reaper_fx_name=reaper,
                   live_device_name=live, sample_rate=sr, bands=tuple(specs),
                   band_params=tuple(params), global_constants=tuple(gconsts), response=response,
                   verified=verified, sources=tuple(sources),
                   osc=tuple((str(k), str(v)) for k, v in osc.items()), notes=notes,
                   path=doc.file)
