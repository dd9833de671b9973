"""Mappings: every shipped file validates, conversions round-trip, limits clip, errors locate."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from bridge.bands import BandSetting, BandSpec, HostParam
from bridge.errors import MappingError
from bridge.mapping import Conversion, list_mappings, load_mapping, mapping_from_text

SHIPPED = ["reaper-reaeq", "ableton-eq-eight", "lsp-para-x16", "fabfilter-pro-q3", "tdr-nova",
           "graphic-31", "pedalboard"]


def test_every_named_mapping_ships():
    assert set(SHIPPED) <= set(list_mappings())


@pytest.mark.parametrize("name", list_mappings())
def test_every_shipped_mapping_validates(name):
    m = load_mapping(name)
    assert m.name == name and m.display_name and m.sources
    assert m.bands and all(isinstance(b, BandSpec) for b in m.bands)
    assert len(m.bands) == len(m.band_params)
    params = m.host_params([])
    assert all(isinstance(p, HostParam) and 0.0 <= p.normalized <= 1.0 for p in params)
    assert len({p.key for p in params}) == len(params)


def test_band_counts_and_addresses():
    assert len(load_mapping("lsp-para-x16").bands) == 16
    assert len(load_mapping("ableton-eq-eight").bands) == 8
    assert len(load_mapping("graphic-31").bands) == 31
    r = load_mapping("reaper-reaeq")
    assert [b.types for b in r.bands] == [("low_shelf",), ("bell",), ("bell",), ("high_shelf",)]
    idx = {p.key: p.reaper_index for p in r.host_params([BandSetting("low_shelf", 100, 3, 0.7)])}
    assert idx == {f"band{b + 1}.{role}": 3 * b + k for b in range(4)
                   for k, role in enumerate(("freq", "gain", "q"))}
    a = load_mapping("ableton-eq-eight").host_params([BandSetting("bell", 1000, 3, 1.0)])
    names = {p.key: p.live_name for p in a}
    assert names["band1.freq"] == "1 Frequency A" and names["band1.gain"] == "1 Gain A"
    assert names["band1.q"] == "1 Resonance A" and names["band1.type"] == "1 Filter Type A"
    assert names["band8.enable"] == "8 Filter On A"


def _random_setting(spec: BandSpec, rng: random.Random) -> BandSetting:
    t = rng.choice(spec.types)
    f = spec.fixed_freq_hz or math.exp(rng.uniform(*map(math.log, spec.freq_hz)))
    g = rng.uniform(*spec.gain_db) if t not in ("low_cut", "high_cut", "notch", "band_pass") else 0.0
    q = spec.fixed_q or math.exp(rng.uniform(*map(math.log, spec.q)))
    return BandSetting(t, f, g, q, rng.choice(spec.slopes_db_oct))


@pytest.mark.parametrize("name", list_mappings())
def test_host_real_host_round_trip(name):
    m = load_mapping(name)
    rng = random.Random(7)
    for _ in range(20):
        settings = [_random_setting(s, rng) for s in m.bands]
        if rng.random() < 0.5:
            settings[rng.randrange(len(settings))] = BandSetting("off", 1000.0)
        host = {p.key: p.normalized for p in m.host_params(settings)}
        back = m.settings_from_host(host)
        host2 = {p.key: p.normalized for p in m.host_params(back)}
        assert host2.keys() == host.keys()
        for k in host:
            assert host2[k] == pytest.approx(host[k], abs=1e-6), k
        for s, b in zip(settings, back):
            if s.type == "off":
                continue
            assert b.type == s.type
            assert b.freq_hz == pytest.approx(s.freq_hz, rel=1e-6)
            assert b.q == pytest.approx(s.q, rel=1e-6)
            if s.type in ("bell", "low_shelf", "high_shelf"):
                assert b.gain_db == pytest.approx(s.gain_db, abs=1e-6)


@pytest.mark.parametrize("conv", [
    Conversion("linear", -36, 36), Conversion("exponential", 10, 24000), Conversion("db", None, 24),
    Conversion("db", -60, 12), Conversion("reaper_freq"),
    Conversion("table", points=((0.1, -12.0), (0.5, 0.0), (0.99, 12.0))),
    Conversion("table", points=((0.0, 10.0), (1.0, 0.5))),
])
def test_conversions_round_trip(conv):
    lo, hi = conv.native_range()
    for i in range(101):
        x = i / 100
        nat = conv.to_native(x)
        if math.isinf(nat) or not (lo <= nat <= hi):
            continue
        x2 = conv.to_normalized(nat)
        assert conv.to_native(x2) == pytest.approx(nat, rel=1e-9, abs=1e-9)


def test_reaper_freq_formula():
    c = Conversion("reaper_freq")
    assert c.to_native(0) == pytest.approx(20) and c.to_native(1) == pytest.approx(24000)
    assert c.to_normalized(1000) == pytest.approx(math.log((980 / 23980) / 0.0025 + 1) / math.log(401))


def test_lsp_conversions_match_measured_plugin_points():
    p = {h.key: h for h in load_mapping("lsp-para-x16").host_params([BandSetting("bell", 1000, 12, 10)])}
    assert p["band1.freq"].normalized == pytest.approx(0.591679, abs=1e-5)
    assert p["band1.gain"].normalized == pytest.approx(0.666664, abs=1e-4)
    assert p["band1.q"].normalized == pytest.approx(0.1, abs=1e-6)
    assert p["band1.type"].normalized == pytest.approx(1 / 11)


def test_limits_clip_and_unsupported_types_raise():
    m = load_mapping("ableton-eq-eight")
    p = {h.key: h for h in m.host_params([BandSetting("bell", 5.0, 40.0, 100.0)])}
    assert p["band1.freq"].native == pytest.approx(10.0) and p["band1.freq"].normalized == 0.0
    assert p["band1.gain"].native == pytest.approx(15.0) and p["band1.gain"].normalized == 1.0
    assert p["band1.q"].native == pytest.approx(18.0)
    with pytest.raises(MappingError, match="tilt"):
        m.host_params([BandSetting("tilt", 1000, 3)])
    with pytest.raises(MappingError, match="settings for 8 bands"):
        m.host_params([BandSetting("bell", 1000)] * 9)
    # host values outside 0..1 are clipped too
    s = m.settings_from_host({"band1.enable": 1.0, "band1.type": 3 / 7, "band1.freq": 1.7,
                              "band1.gain": -0.5})
    assert s[0].freq_hz == pytest.approx(22000) and s[0].gain_db == pytest.approx(-15)


def test_off_uses_enable_else_type_else_gain():
    a = {h.key: h for h in load_mapping("ableton-eq-eight").host_params([BandSetting("off", 1000)])}
    assert a["band1.enable"].normalized == 0.0 and "band1.freq" not in a
    lsp = {h.key: h for h in load_mapping("lsp-para-x16").host_params([BandSetting("off", 1000)])}
    assert lsp["band1.type"].normalized == 0.0 and "band1.gain" not in lsp
    g = {h.key: h for h in load_mapping("graphic-31").host_params([BandSetting("off", 20)])}
    assert g["band1.gain"].native == 0.0 and g["band1.gain"].normalized == pytest.approx(0.5)


def test_ableton_cut_slopes_choose_the_option():
    m = load_mapping("ableton-eq-eight")
    hp = {h.key: h for h in m.host_params([BandSetting("low_cut", 80, 0, 0.7, 48),
                                           BandSetting("high_cut", 9000, 0, 0.7, 12)])}
    assert hp["band1.type"].native == 0 and hp["band2.type"].native == 6
    back = m.settings_from_host({h: v.normalized for h, v in hp.items()})
    assert (back[0].type, back[0].slope_db_oct) == ("low_cut", 48)
    assert (back[1].type, back[1].slope_db_oct) == ("high_cut", 12)


# ---------------------------------------------------------------- errors name file, line, field

GOOD = """\
schema: 1
plugin:
  display_name: Test EQ
sample_rate: 48000
sources: [test]
bands:
  - name: b1
    types: [bell]
    params:
      freq: {conversion: {kind: exponential, lo: 20, hi: 20000}}
      gain: {conversion: {kind: linear, lo: -12, hi: 12}}
      q: {conversion: {kind: exponential, lo: 0.1, hi: 10}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "broken.yaml"
    p.write_text(text)
    return p


def test_good_text_loads(tmp_path):
    m = load_mapping(_write(tmp_path, GOOD))
    assert m.name == "broken" and m.bands[0].freq_hz == (20.0, 20000.0)


def test_syntax_error_names_file_and_line(tmp_path):
    p = _write(tmp_path, GOOD.replace("types: [bell]", "types: [bell"))
    with pytest.raises(MappingError) as e:
        load_mapping(p)
    msg = str(e.value)
    assert str(p) in msg and "syntax" in msg.lower()
    assert any(f":{n}:" in msg for n in (8, 9, 10))


def test_missing_field_names_file_line_and_field(tmp_path):
    p = _write(tmp_path, GOOD.replace("sample_rate: 48000\n", ""))
    with pytest.raises(MappingError, match=r"broken\.yaml:1: sample_rate: missing required field"):
        load_mapping(p)
    p = _write(tmp_path, GOOD.replace("    types: [bell]\n", ""))
    with pytest.raises(MappingError, match=r"broken\.yaml:7: bands\[0\]\.types: missing"):
        load_mapping(p)


def test_wrong_type_names_file_line_and_field(tmp_path):
    p = _write(tmp_path, GOOD.replace("hi: 12}", "hi: twelve}"))
    with pytest.raises(MappingError, match=r"broken\.yaml:11: bands\[0\]\.params\.gain\.conversion\.hi: "
                                           r"expected float, got str"):
        load_mapping(p)
    p = _write(tmp_path, GOOD.replace("sample_rate: 48000", "sample_rate: fast"))
    with pytest.raises(MappingError, match=r":4: sample_rate: expected float"):
        load_mapping(p)


def test_semantic_errors_are_located(tmp_path):
    cases = {
        "types: [bell]": ("types: [wobble]", r":8: bands\[0\]\.types\[0\]: unknown band type"),
        "kind: linear": ("kind: lin", r":11: bands\[0\]\.params\.gain\.conversion\.kind: unknown kind"),
        "schema: 1": ("schema: 2", r":1: schema: unsupported schema"),
        "      q: {": ("      width: {", r":12: bands\[0\]\.params\.width: unknown role"),
    }
    for old, (new, pattern) in cases.items():
        with pytest.raises(MappingError, match=pattern):
            mapping_from_text(GOOD.replace(old, new), tmp_path / "x.yaml")


def test_unknown_name_lists_known_mappings():
    with pytest.raises(MappingError) as e:
        load_mapping("no-such-eq")
    msg = str(e.value)
    assert "no-such-eq" in msg and "lsp-para-x16" in msg and "reaper-reaeq" in msg


def test_env_var_overrides_mappings_dir(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text(GOOD)
    monkeypatch.setenv("EQBRIDGE_MAPPINGS_DIR", str(tmp_path))
    assert list_mappings() == ["mine"]
    assert load_mapping("mine").display_name == "Test EQ"


@pytest.mark.parametrize("name", list_mappings())
def test_compiled_host_params_equal_the_reference(name):
    """host_params runs precompiled per-band closures; they must give exactly the same values."""
    m = load_mapping(name)
    rng = random.Random(7)
    cases = [[], [BandSetting("off", 1000.0)] * len(m.bands)]
    for _ in range(60):
        settings = []
        for spec in m.bands:
            r = rng.random()
            if r < 0.15:
                settings.append(BandSetting("off", 1000.0))
            elif r < 0.25:  # out of range on purpose: clipping must match too
                settings.append(BandSetting(rng.choice(spec.types), rng.uniform(1, 40000),
                                            rng.uniform(-40, 40), rng.uniform(0.01, 50),
                                            rng.choice((6, 12, 18, 24, 36, 48, 96))))
            else:
                settings.append(_random_setting(spec, rng))
        cases.append(settings[:rng.randint(0, len(settings))] if rng.random() < 0.2 else settings)
    for settings in cases:
        assert m.host_params(settings) == m.host_params_reference(settings)
    with pytest.raises(MappingError):
        m.host_params([BandSetting("bell", 1000)] * (len(m.bands) + 1))


PROPORTIONAL_Q_YAML = """
schema: 1
plugin: {display_name: PropQ, vst3_name: PropQ}
sample_rate: 48000
sources: ["a test: a bell whose Q knob is proportional-Q"]
response: rbj
bands:
  - name: b1
    types: [bell]
    params:
      freq: {conversion: {kind: exponential, lo: 20, hi: 20000}, vst3_name: F}
      gain: {conversion: {kind: linear, lo: -15, hi: 15}, vst3_name: G}
      q:    {conversion: {kind: linear, lo: 0.1, hi: 10}, unit: proportional_q, vst3_name: Q}
"""


def test_proportional_q_unit_round_trips_through_the_gain():
    """A proportional-Q knob shows the resonator Q: the host value depends on the band's gain."""
    from bridge.filters import proportional_from_q
    from bridge.mapping import mapping_from_text

    m = mapping_from_text(PROPORTIONAL_Q_YAML, "propq.yaml")
    host = {h.key: h for h in m.host_params([BandSetting("bell", 1000.0, 12.0, 1.0)])}
    assert host["b1.q"].native == pytest.approx(proportional_from_q(1.0, 12.0))
    back = m.settings_from_host({k: h.normalized for k, h in host.items()})[0]
    assert back.q == pytest.approx(1.0, rel=1e-6) and back.gain_db == pytest.approx(12.0, rel=1e-6)
