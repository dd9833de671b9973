"""`eqbridge map-plugin`: draft a mapping for an installed VST3 EQ by asking the plugin itself.

Why this file exists: hand-written mappings go stale and most EQs are not shipped with one. The
plugin already knows its parameter names, ranges and text conversions; this module reads them,
groups parameters into bands by the number in their names, fits each numeric parameter's host
curve (linear, exponential, else a measured table), recognises band types in choice lists, and
checks the result by rendering a bell through the plugin against the RBJ cookbook. Per-band
choice parameters that are not the type (e.g. a filter "mode") are tried option by option; the one
whose bell matches RBJ best is kept as a constant, so the mapping can claim `response: rbj`.
The output is a dict `bridge.mapping.mapping_from_dict` accepts (dump it with yaml.safe_dump).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bridge.errors import PluginError

_ROLE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("type", ("type", "shape", "filter type")),
    ("enable", ("enable", "active", " on", "used")),
    ("freq", ("freq", "frequency", "hz")),
    ("gain", ("gain", "boost", "level")),
    ("q", ("quality", " q", "resonance")),
    ("width", ("width", "bandwidth", "bw")),
    ("slope", ("slope",)),
)
_TYPE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("off", ("off",)),
    ("bell", ("bell", "peak", "peaking")),
    ("low_shelf", ("lo-shelf", "low shelf", "lowshelf", "low-shelf", "lo shelf")),
    ("high_shelf", ("hi-shelf", "high shelf", "highshelf", "high-shelf", "hi shelf")),
    ("low_cut", ("hi-pass", "high pass", "highpass", "low cut", "lowcut", "hpf")),
    ("high_cut", ("lo-pass", "low pass", "lowpass", "high cut", "highcut", "lpf")),
    ("notch", ("notch",)),
)


def _role(name: str) -> str | None:
    """Role of a parameter from its name (None when it is not an EQ band control)."""
    n = " " + re.sub(r"\d+", " ", name.lower()) + " "
    for role, words in _ROLE_WORDS:
        if any(w in n for w in words):
            return role
    return None


def _band_number(name: str) -> int | None:
    nums = re.findall(r"\d+", name)
    return int(nums[-1]) if nums else None


def _is_choice(p) -> bool:
    vals = p.valid_values
    return bool(vals) and isinstance(vals[0], str)


def _fit_conversion(p) -> dict[str, Any]:
    """Host curve of a numeric parameter, from the plugin's own text -> raw conversion."""
    lo, hi = float(p.range[0]), float(p.range[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo == hi:
        raise PluginError(f"{p.name}: no finite range {p.range}")
    grid = np.geomspace(lo, hi, 9) if lo > 0 else np.linspace(lo, hi, 9)
    raw = np.array([p.get_raw_value_for_text(f"{v:.6g}") for v in grid])
    lin = (grid - lo) / (hi - lo)
    if np.max(np.abs(raw - lin)) < 2e-3:
        return {"kind": "linear", "lo": lo, "hi": hi}
    if lo > 0 and np.max(np.abs(raw - np.log(grid / lo) / np.log(hi / lo))) < 2e-3:
        return {"kind": "exponential", "lo": lo, "hi": hi}
    order = np.argsort(raw)
    pts = [[float(raw[i]), float(grid[i])] for i in order]
    return {"kind": "table", "points": pts}


def _type_map(options: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for t, words in _TYPE_WORDS:
        for o in options:
            if o.lower().strip() in words or any(w == o.lower().strip() for w in words):
                out.setdefault(t, o)
    return out


def map_plugin(path: str | Path, plugin_name: str | None = None, verify: bool = True,
               sample_rate: float = 48000.0) -> dict[str, Any]:
    """A mapping dict (schema 1) for the VST3 at path, built from the plugin's own parameters."""
    import pedalboard
    try:
        plugin = pedalboard.load_plugin(str(path), plugin_name=plugin_name)
    except Exception as e:  # noqa: BLE001
        raise PluginError(f"cannot load {plugin_name or path}: {e}") from None
    name = plugin_name or getattr(plugin, "name", Path(path).stem)
    bands: dict[int, dict[str, Any]] = defaultdict(dict)
    extras: dict[int, dict[str, Any]] = defaultdict(dict)
    for p in plugin.parameters.values():
        num, role = _band_number(p.name), _role(p.name)
        if num is None:
            continue
        if role is None or role in bands[num]:
            if _is_choice(p) and len(p.valid_values) <= 8:
                extras[num][p.name] = p
            continue
        bands[num][role] = p
    band_list: list[dict[str, Any]] = []
    for num in sorted(bands):
        b = bands[num]
        if "freq" not in b or "gain" not in b:
            continue
        params: dict[str, Any] = {}
        types = ["bell"]
        for role in ("freq", "gain"):
            params[role] = {"vst3_name": b[role].name, "conversion": _fit_conversion(b[role])}
        if "q" in b and not _is_choice(b["q"]):
            conv = _fit_conversion(b["q"])
            params["q"] = {"vst3_name": b["q"].name, "conversion": conv, "unit": "rbj_q"}
        elif "width" in b and not _is_choice(b["width"]):
            params["q"] = {"vst3_name": b["width"].name, "conversion": _fit_conversion(b["width"]),
                           "unit": "octaves"}
        if "type" in b and _is_choice(b["type"]):
            opts = list(b["type"].valid_values)
            tmap = _type_map(opts)
            types = [t for t in tmap if t != "off"] or ["bell"]
            params["type"] = {"vst3_name": b["type"].name,
                              "conversion": {"kind": "choice", "options": opts}, "map": tmap}
        if "enable" in b and not _is_choice(b["enable"]):
            params["enable"] = {"vst3_name": b["enable"].name, "conversion": {"kind": "toggle"}}
        band = {"name": f"band{len(band_list) + 1}", "types": types, "params": params}
        lo_q = band_q_range(params)
        if lo_q:
            band["q"] = lo_q
        for cut in ("low_cut", "high_cut"):
            if cut in types:
                band["slopes_db_oct"] = [12]
        band["_extras"] = {k: list(v.valid_values) for k, v in extras[num].items()}
        band_list.append(band)
    if not band_list:
        raise PluginError(f"{name}: found no numbered frequency + gain parameters; not an EQ?")
    doc: dict[str, Any] = {
        "schema": 1,
        "plugin": {"display_name": str(name), "vst3_name": str(name)},
        "sample_rate": float(sample_rate),
        "q_convention": "rbj_q",
        "response": "unknown",
        "verified": False,
        "sources": [f"generated by bridge.probe.map_plugin from {path} (parameter names, ranges "
                    f"and get_raw_value_for_text of the plugin itself)"],
        "bands": band_list,
    }
    if verify:
        _choose_constants_by_rendering(doc, plugin, path, sample_rate)
    for b in doc["bands"]:
        b.pop("_extras", None)
    return doc


def band_q_range(params: dict[str, Any]) -> list[float] | None:
    """A usable RBJ Q range for a band whose Q param starts at 0 (the loader needs Q > 0)."""
    q = params.get("q")
    if not q or q["unit"] != "rbj_q":
        return None
    c = q["conversion"]
    lo = c.get("lo", c.get("points", [[0, 0]])[0][1])
    hi = c.get("hi", c.get("points", [[0, 0]])[-1][1])
    return [max(float(lo), 0.1), float(hi)] if hi > 0.1 else None


def _choose_constants_by_rendering(doc: dict, plugin, path, sample_rate: float) -> None:
    """Try each option of per-band extra choice params; keep the one whose bell matches RBJ."""
    from bridge.bands import BandSetting
    from bridge.filters import response_db
    from bridge.mapping import mapping_from_dict
    from bridge.verify import _plugin_process, apply_to_plugin, magnitude_db

    freqs = np.geomspace(30, 16000, 30)
    test = [BandSetting("bell", 1000.0, 6.0, 2.0)]
    want = response_db(test, freqs, sample_rate)

    def err(d: dict) -> float:
        m = mapping_from_dict({**d, "bands": [{k: v for k, v in b.items() if k != "_extras"}
                                              for b in d["bands"]]})
        off = [BandSetting("off", 1000.0)] * (len(m.bands) - 1)
        apply_to_plugin(plugin, m, test + off)
        x = np.zeros(int(sample_rate), np.float32)
        x[0] = 1
        ir = _plugin_process(plugin, x, sample_rate)
        return float(np.max(np.abs(magnitude_db(ir, freqs, sample_rate) - want)))

    best = err(doc)
    extras = doc["bands"][0].get("_extras", {})
    for pname, options in extras.items():
        generic = re.sub(r"\d+", "{i}", pname)
        for opt in options:
            trial = {**doc, "bands": []}
            for i, b in enumerate(doc["bands"]):
                nb = dict(b)
                real = next((k for k in b.get("_extras", {}) if re.sub(r"\d+", "{i}", k) == generic),
                            None)
                if real is not None:
                    nb["constants"] = {**b.get("constants", {}), re.sub(r"\W+", "_", generic
                                       .replace("{i}", "").strip().lower()).strip("_"): {
                        "vst3_name": real, "conversion": {"kind": "choice",
                                                          "options": b["_extras"][real]},
                        "value": opt}}
                trial["bands"].append(nb)
            e = err(trial)
            if e < best - 1e-6:
                best, doc["bands"] = e, trial["bands"]
    if best < 0.3:
        doc["response"] = "rbj"
        doc["sources"].append(f"verified by rendering: a 1 kHz +6 dB Q 2 bell is within {best:.3f} dB"
                              f" of the RBJ cookbook")
    doc["notes"] = f"probe: bell render max error vs RBJ {best:.3f} dB"
