"""`eqbridge fit`, `render` and `map-plugin` as a user runs them: real processes, real renders."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bridge.bands import BAND_TYPES
from bridge.fit import fit_curve
from bridge.mapping import load_mapping
from bridge.model import TextToCurve

OUT_TYPES = set(BAND_TYPES) - {"tilt"}


def eqbridge(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=timeout)


def test_fit_json_has_the_documented_fields_and_verifies_by_render():
    out = eqbridge("fit", "--json", "--verify", "--mapping", "pedalboard", "warm", "a bit less harsh")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["warm", "a bit less harsh"]
    for r in rows:
        assert r["mapping"] == "pedalboard"
        assert {b["type"] for b in r["bands"]} <= OUT_TYPES
        assert all({"freq_hz", "gain_db", "q", "host"} <= set(b) for b in r["bands"])
        assert r["rms_error_db"] < 0.5 and r["max_error_db"] >= r["rms_error_db"]
        assert r["render_vs_prediction_db"] <= 0.3
        assert abs(r["verified_rms_error_db"] - r["rms_error_db"]) < 0.3


def test_fit_json_equals_the_python_fit():
    out = eqbridge("fit", "--json", "--mapping", "reaper-reaeq", "--amount", "0.7", "bright")
    row = json.loads(out.stdout)
    mapping = load_mapping("reaper-reaeq")
    fit = fit_curve(TextToCurve().curve("bright", 0.7).gains_db, mapping)
    assert [b["freq_hz"] for b in row["bands"]] == pytest.approx([b.freq_hz for b in fit.bands], abs=1e-2)
    host = {h.key: h.normalized for h in mapping.host_params(fit.bands)}
    got = {f"{b['name']}.{k}": v["normalized"] for b in row["bands"] for k, v in b["host"].items()}
    assert got == pytest.approx(host, abs=1e-5)


@pytest.mark.parametrize("args,needle", [
    (["--mapping", "no-such-eq", "warm"], "no-such-eq"),
    (["--mapping", "pedalboard", ""], "empty"),
    (["--mapping", "pedalboard", "--amount", "3", "warm"], "amount"),
])
def test_fit_errors_are_messages(args, needle):
    out = eqbridge("fit", *args)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr


def test_fit_broken_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbands: [\n")
    out = eqbridge("fit", "--mapping", str(bad), "warm")
    assert out.returncode == 2 and "bad.yaml" in out.stderr and "Traceback" not in out.stderr


def test_render_applies_the_fit_to_audio(tmp_path):
    from pedalboard.io import AudioFile

    sr = 48000
    impulse = np.zeros((1, sr), np.float32)
    impulse[0, 100] = 0.5
    src, dst, png = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "fit.png"
    with AudioFile(str(src), "w", sr, 1, bit_depth=32) as f:
        f.write(impulse)
    out = eqbridge("render", str(src), str(dst), "bright", "--mapping", "pedalboard", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    with AudioFile(str(dst)) as f:
        y = f.read(f.frames)[0]
    fit = fit_curve(TextToCurve().curve("bright").gains_db, load_mapping("pedalboard"))
    spec = np.abs(np.fft.rfft(y / 0.5))
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    measured = 20 * np.log10(np.interp(fit.freqs_hz, freqs, spec))
    assert np.max(np.abs(measured - fit.predicted_db)) < 0.3
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_render_missing_input_is_a_message(tmp_path):
    out = eqbridge("render", str(tmp_path / "nope.wav"), str(tmp_path / "o.wav"), "warm", "--mapping", "pedalboard")
    assert out.returncode == 2 and "nope.wav" in out.stderr and "Traceback" not in out.stderr


def _lsp_bundle():
    from bridge.verify import find_vst3
    return find_vst3(load_mapping("lsp-para-x16"))


def test_map_plugin_writes_a_loadable_mapping(tmp_path):
    bundle = _lsp_bundle()
    if bundle is None:
        pytest.skip("LSP VST3 not installed (EQBRIDGE_VST3_PATH or ../shared/tools/install-lsp-vst3.sh)")
    out_file = tmp_path / "x8.yaml"
    out = eqbridge("map-plugin", str(bundle), "--name", "Parametric Equalizer x8 Stereo", "-o", str(out_file), timeout=300)
    assert out.returncode == 0, out.stderr
    mapping = load_mapping(out_file)
    assert len(mapping.bands) == 8
    fit = eqbridge("fit", "--json", "--verify", "--mapping", str(out_file), "warm", timeout=300)
    row = json.loads(fit.stdout)
    assert row["verified_with"] == "vst3" and row["render_vs_prediction_db"] <= 0.3


def test_map_plugin_refuses_a_non_eq(tmp_path):
    bundle = _lsp_bundle()
    if bundle is None:
        pytest.skip("LSP VST3 not installed (EQBRIDGE_VST3_PATH or ../shared/tools/install-lsp-vst3.sh)")
    out = eqbridge("map-plugin", str(bundle), "--name", "Compressor Mono", "-o", str(tmp_path / "c.yaml"), timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr and not (tmp_path / "c.yaml").exists()
