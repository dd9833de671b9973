"""`eqbridge fit`: phrases to settings of a real plugin's bands, with host values and (--verify) a render."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from bridge.errors import EqBridgeError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit a phrase's curve onto a plugin's bands")
    p.add_argument("phrases", nargs="+", metavar="PHRASE")
    add_target_args(p)
    p.add_argument("--verify", action="store_true", help="render the fit through pedalboard and measure it")
    p.add_argument("--json", action="store_true", help="one JSON object per phrase per line")
    p.set_defaults(func=run)


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mapping", required=True, metavar="NAME|PATH", help="a mapping in mappings/ or a YAML file")
    p.add_argument("--amount", type=float, default=None, help="0..1 (default 0.5)")


@dataclass(frozen=True)
class PhraseFit:
    """A phrase's curve and its fit onto one mapping (what fit and render print)."""

    text: str
    mapping: object
    fit: object


def fit_phrases(phrases: list[str], mapping_name: str, amount: float | None):
    """Yield (phrase, PhraseFit or EqBridgeError): one bad phrase does not stop the others."""
    from bridge.fit import fit_curve
    from bridge.mapping import load_mapping
    from bridge.model import TextToCurve

    mapping = load_mapping(mapping_name)
    model = TextToCurve()
    for phrase in phrases:
        try:
            curve = model.curve(phrase, amount)
            yield phrase, PhraseFit(phrase, mapping, fit_curve(curve.gains_db, mapping))
        except EqBridgeError as exc:
            yield phrase, exc


def fit_json(pf: PhraseFit, verify: bool) -> dict:
    host = pf.mapping.host_params(pf.fit.bands)
    bands = []
    for spec, s in zip(pf.mapping.bands, pf.fit.bands):
        prefix = f"{spec.name}."
        bands.append({
            "name": spec.name, "type": s.type, "freq_hz": round(s.freq_hz, 3), "gain_db": round(s.gain_db, 4),
            "q": round(s.q, 5), **({"slope_db_oct": s.slope_db_oct} if s.type in ("low_cut", "high_cut") else {}),
            "host": {h.key[len(prefix):]: host_value(h) for h in host if h.key.startswith(prefix)},
        })
    out = {"text": pf.text, "mapping": pf.mapping.name, "bands": bands,
           "host_globals": {h.key: host_value(h) for h in host if h.key.startswith("global.")},
           "rms_error_db": round(pf.fit.rms_error_db, 4), "max_error_db": round(pf.fit.max_error_db, 4)}
    if verify:
        out.update(verify_fit(pf))
    return out


def host_value(h) -> dict:
    addr = {"reaper_index": h.reaper_index, "live_name": h.live_name, "vst3_name": h.vst3_name}
    return {"normalized": round(h.normalized, 6), "native": round(h.native, 6),
            **{k: v for k, v in addr.items() if v is not None}}


def verify_fit(pf: PhraseFit) -> dict:
    """Render the fitted settings through pedalboard (the real plugin when installed) and measure."""
    from bridge.errors import PluginError
    from bridge.fit import weighted_rms_db
    from bridge.verify import backend_for, render_settings_db

    try:
        backend = backend_for(pf.mapping)
    except PluginError as exc:  # e.g. ReaEQ outside REAPER with unverified band maths
        return {"verified_with": None, "verify_error": str(exc)}
    measured = render_settings_db(pf.fit.bands, pf.mapping, pf.fit.freqs_hz, pf.mapping.sample_rate, backend)
    return {"verified_with": backend,
            "verified_rms_error_db": round(weighted_rms_db(measured - pf.fit.target_db, pf.fit.freqs_hz), 4),
            "render_vs_prediction_db": round(float(np.max(np.abs(measured - pf.fit.predicted_db))), 4),
            "measured_db": [round(float(v), 3) for v in measured]}


def run(args: argparse.Namespace) -> int:
    failed = 0
    for phrase, result in fit_phrases(args.phrases, args.mapping, args.amount):
        if isinstance(result, EqBridgeError):
            print(f"eqbridge fit: error: {phrase!r}: {result}", file=sys.stderr)
            failed += 1
            continue
        data = fit_json(result, args.verify)
        print(json.dumps(data, ensure_ascii=False) if args.json else format_fit(data))
    return 2 if failed else 0


def format_fit(d: dict) -> str:
    lines = [f"{d['text']!r} on {d['mapping']}: RMS error {d['rms_error_db']:.2f} dB, max {d['max_error_db']:.2f} dB"]
    if d.get("verify_error"):
        lines.append(f"  not verified: {d['verify_error']}")
    if "verified_rms_error_db" in d:
        lines.append(f"  rendered ({d['verified_with']}): RMS vs target {d['verified_rms_error_db']:.2f} dB, "
                     f"max vs prediction {d['render_vs_prediction_db']:.3f} dB")
    for b in d["bands"]:
        if b["type"] == "off":
            lines.append(f"  {b['name']:<8} off")
        else:
            lines.append(f"  {b['name']:<8} {b['type']:<10} {b['freq_hz']:>8.1f} Hz {b['gain_db']:+6.2f} dB  Q {b['q']:.2f}")
    return "\n".join(lines)
