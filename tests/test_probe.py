"""map-plugin: a mapping drafted from the real LSP x8 plugin (not from its shipped mapping)."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.bands import BandSetting as B
from bridge.mapping import load_mapping, mapping_from_dict


@pytest.fixture(scope="module")
def probed():
    from bridge.verify import find_vst3
    bundle = find_vst3(load_mapping("lsp-para-x16"))
    if bundle is None:
        pytest.skip("LSP VST3 bundle not found (EQBRIDGE_VST3_PATH or shared/tools/install-lsp-vst3.sh)")
    from bridge.probe import map_plugin
    return map_plugin(bundle, "Parametric Equalizer x8 Mono")


def test_probe_finds_bands_types_and_curves(probed):
    m = mapping_from_dict(probed)
    assert len(m.bands) == 8 and m.response == "rbj"
    assert {"bell", "low_shelf", "high_shelf", "low_cut", "high_cut"} <= set(m.bands[0].types)
    conv = {p.role: p.conversion for p in m.band_params[0].params}
    assert conv["freq"].kind == "exponential" and conv["freq"].native_range() == pytest.approx((10, 24000))
    assert conv["gain"].kind == "linear" and conv["gain"].native_range() == pytest.approx((-36, 36))
    consts = dict(m.band_params[0].constants)
    assert any(c.value == "APO (DR)" for c in consts.values())


def test_probed_mapping_renders_like_rbj(probed, tmp_path):
    import yaml

    from bridge.filters import response_db
    from bridge.mapping import load_mapping as load
    from bridge.verify import render_settings_db
    f = tmp_path / "lsp-x8-mono.yaml"
    f.write_text(yaml.safe_dump(probed, sort_keys=False))
    m = load(f)
    s = [B("low_shelf", 120, 4, 0.7071), B("bell", 900, -5, 1.5), B("high_shelf", 7000, 3, 0.7071)]
    freqs = np.geomspace(25, 18000, 40)
    got = render_settings_db(s, m, freqs, 48000)
    assert np.max(np.abs(got - response_db(s, freqs, 48000))) < 0.3
