"""Proof by rendering: pedalboard built-ins and the real LSP plugin against the RBJ maths."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.bands import BandSetting as B
from bridge.errors import PluginError
from bridge.mapping import load_mapping
from bridge.verify import find_vst3, magnitude_db, render_audio, render_settings_db

FREQS = np.geomspace(25, 18000, 40)
SR = 48000


def rbj_bell_db(f0, gain_db, q, freqs, sr=SR):
    """RBJ cookbook peaking EQ magnitude, computed inline (independent of bridge.filters)."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0 / sr
    al = np.sin(w0) / (2 * q)
    b = np.array([1 + al * a, -2 * np.cos(w0), 1 - al * a])
    den = np.array([1 + al / a, -2 * np.cos(w0), 1 - al / a])
    z = np.exp(-1j * 2 * np.pi * np.asarray(freqs) / sr)
    h = (b[0] + b[1] * z + b[2] * z * z) / (den[0] + den[1] * z + den[2] * z * z)
    return 20 * np.log10(np.abs(h))


def test_pedalboard_bell_matches_inline_rbj():
    m = load_mapping("pedalboard")
    s = [B("off", 100)] + [B("bell", 1000, 6, 2.0)] + [B("off", 100)] * 6
    got = render_settings_db(s, m, FREQS, SR)
    assert np.max(np.abs(got - rbj_bell_db(1000, 6, 2.0, FREQS))) < 0.05


def test_pedalboard_chain_matches_filters_response():
    response_db = pytest.importorskip("bridge.filters").response_db
    m = load_mapping("pedalboard")
    s = [B("low_shelf", 120, 4, 0.7071), B("bell", 400, -5, 1.4), B("bell", 2500, 3, 0.8),
         B("off", 1000), B("bell", 6000, -2, 4.0), B("off", 1000), B("off", 1000),
         B("high_shelf", 9000, 3, 0.7071)]
    assert np.max(np.abs(render_settings_db(s, m, FREQS, SR) - response_db(s, FREQS, SR))) < 0.05
    cuts = [B("low_cut", 80, 0, 0.7071, 6)] + [B("off", 1000)] * 6 + [B("high_cut", 12000, 0, 0.7071, 6)]
    assert np.max(np.abs(render_settings_db(cuts, m, FREQS, SR) - response_db(cuts, FREQS, SR))) < 0.05


def test_builtin_render_of_graphic_eq_matches_rbj():
    response_db = pytest.importorskip("bridge.filters").response_db
    m = load_mapping("graphic-31")
    gains = np.linspace(-10, 10, 31) * np.sin(np.arange(31))
    s = [B("bell", b.fixed_freq_hz, float(g), b.fixed_q) for b, g in zip(m.bands, gains)]
    # pedalboard's JUCE biquads run in float32: Q 4.3 bells at 20-50 Hz land ~0.1 dB off there
    assert np.max(np.abs(render_settings_db(s, m, FREQS, SR) - response_db(s, FREQS, SR))) < 0.15


def test_scipy_rbj_fallback_for_types_pedalboard_lacks():
    response_db = pytest.importorskip("bridge.filters").response_db
    m = load_mapping("lsp-para-x16")
    s = [B("notch", 3000, 0, 4.0), B("low_cut", 60, 0, 0.7071, 12), B("high_cut", 15000, 0, 1.0, 12)]
    got = render_settings_db(s, m, FREQS, SR, backend="builtin")
    want = response_db(s, FREQS, SR)
    ok = want > -60  # the notch's exact zero is not resolvable on a finite grid
    assert np.max(np.abs(got[ok] - want[ok])) < 0.05


def test_unverified_mapping_without_plugin_refuses_to_render():
    with pytest.raises(PluginError, match="unverified"):
        render_settings_db([B("bell", 1000, 3, 1.0)], load_mapping("ableton-eq-eight"), FREQS)


def test_render_audio_applies_settings():
    m = load_mapping("pedalboard")
    t = np.arange(SR) / SR
    x = (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y = render_audio(x, SR, [B("off", 1), B("bell", 1000, 12, 1.0)], m)
    gain = 20 * np.log10(np.std(y[SR // 2:]) / np.std(x[SR // 2:]))
    assert gain == pytest.approx(12, abs=0.1)


def test_magnitude_of_a_unit_impulse_is_flat():
    ir = np.zeros(4096)
    ir[0] = 1
    assert np.allclose(magnitude_db(ir, FREQS, SR), 0, atol=1e-9)


# ---------------------------------------------------------------- the real LSP plugin

@pytest.fixture(scope="module")
def lsp():
    m = load_mapping("lsp-para-x16")
    if find_vst3(m) is None:
        pytest.skip("LSP 'Parametric Equalizer x16 Stereo' VST3 not found (set EQBRIDGE_VST3_PATH, or "
                    "run shared/tools/install-lsp-vst3.sh -> /opt/lsp-vst3/lsp-plugins.vst3)")
    return m


@pytest.mark.parametrize("settings", [
    [B("bell", 1000, 6, 2.0)],
    [B("bell", 250, -9, 0.7)],
    [B("low_shelf", 150, 5, 0.7071)],
    [B("high_shelf", 5000, -6, 0.9)],
    [B("low_shelf", 100, -4, 0.7071), B("bell", 700, 3, 1.5), B("bell", 3000, -5, 4.0),
     B("high_shelf", 10000, 4, 0.7071)],
], ids=["bell+6", "bell-9", "lowshelf", "highshelf", "four-bands"])
def test_lsp_plugin_matches_rbj_within_0_3_db(lsp, settings):
    response_db = pytest.importorskip("bridge.filters").response_db
    got = render_settings_db(settings, lsp, FREQS, SR)
    assert np.max(np.abs(got - response_db(settings, FREQS, SR))) < 0.3


def test_lsp_plugin_bell_matches_inline_rbj(lsp):
    got = render_settings_db([B("bell", 1000, 6, 2.0)], lsp, FREQS, SR)
    assert np.max(np.abs(got - rbj_bell_db(1000, 6, 2.0, FREQS))) < 0.3


def test_lsp_mapping_conversions_equal_the_plugins_own(lsp):
    """Our normalized values equal what the plugin's text parser gives for the native value."""
    from bridge.verify import load_plugin
    plugin = load_plugin(lsp)
    by_name = {p.name: p for p in plugin.parameters.values()}
    s = [B("bell", 1234.5, -7.25, 3.3), B("low_cut", 45, 0, 0.9), B("high_shelf", 8000, 2.5, 0.6)]
    for hp in lsp.host_params(s):
        p = by_name[hp.vst3_name]
        text = p.valid_values[int(hp.native)] if isinstance(p.valid_values[0], str) and \
            not isinstance(p.valid_values[0], bool) else f"{hp.native:.6f}"
        if isinstance(p.valid_values[0], bool):
            continue
        assert p.get_raw_value_for_text(str(text)) == pytest.approx(hp.normalized, abs=1e-4), hp.key
