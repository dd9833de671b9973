"""Config: defaults, YAML, flags, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import (Config, ConfigError, config_from_dict, default_state_dir, default_target,
                           load_config, parse_host_port, with_overrides)


def test_defaults_need_no_file():
    cfg = load_config(None)
    assert cfg.osc_host == "127.0.0.1" and cfg.osc_port == 9031
    t = cfg.targets[0]
    assert (t.daw, t.host, t.port, t.track, t.fx) == ("reaper", "127.0.0.1", 8000, 1, 1)


def test_state_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "eqbridge"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # not absolute: ignored per the XDG spec
    assert default_state_dir() == Path.home() / ".local" / "share" / "eqbridge"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_state_dir() == Path.home() / ".local" / "share" / "eqbridge"


def test_full_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("""
osc: {host: 0.0.0.0, port: 9100, allow: [192.168.1.20], feedback: ["127.0.0.1:9200"]}
targets:
  - {name: vocal, daw: reaper, port: 8001, track: 2, fx: 3, mapping: graphic-31, min_interval_ms: 20,
     follow_fx: ReaEQ, feedback_port: 9005}
  - {name: live, daw: ableton, track: 0, device: 1}
  - {name: synth, daw: midi, port_name: Synth, cc_map: {band1.gain: [2, 21]}}
midi:
  input: nano
  feedback: nano
  map:
    - {control: amount, cc: 7, channel: 1, pickup: true}
    - {control: macro/1, cc14: 16}
    - {control: macro/2, nrpn: 300, bits: 7}
    - {control: macro/3, cc: 21, relative: sign, step: 0.02}
state_dir: /tmp/eqb-state
""")
    cfg = load_config(p)
    assert cfg.osc_port == 9100 and cfg.allow == ("192.168.1.20",) and cfg.feedback == (("127.0.0.1", 9200),)
    assert [t.name for t in cfg.targets] == ["vocal", "live", "synth"]
    assert cfg.targets[1].port == 11000 and cfg.targets[1].fx == 1
    assert (cfg.targets[0].follow_fx, cfg.targets[0].feedback_port) == ("ReaEQ", 9005)
    assert "follows REAPER's selected track to its FX matching 'ReaEQ'" in cfg.targets[0].describe()
    assert cfg.targets[1].follow_fx is None and cfg.targets[1].feedback_port == 9000
    assert cfg.targets[2].cc_map == (("band1.gain", 2, 21),)
    assert [b.kind for b in cfg.midi_map] == ["cc", "cc14", "nrpn", "cc"] and cfg.midi_map[2].bits == 7
    assert [(b.relative, b.step) for b in cfg.midi_map[2:]] == [(None, 1 / 127), ("sign", 0.02)]
    assert cfg.midi_feedback == "nano"
    assert [b.pickup for b in cfg.midi_map] == [True, False, False, False]
    assert cfg.midi_map[0].event(0.3, 0.0).pickup == cfg.midi_map[0].name == "amount cc 7 ch 1"


@pytest.mark.parametrize("data,fragment", [
    ({"osc": {"port": 70000}}, "osc.port: must be 1..65535"),
    ({"osc": {"host": "0.0.0.0"}}, "allow"),
    ({"osc": {"allow": ["not-an-ip"]}}, "not an IP address"),
    ({"oscc": {}}, "unknown key(s) oscc"),
    ({"targets": []}, "non-empty list"),
    ({"targets": [{"daw": "cubase"}]}, "targets[0].daw: must be one of reaper, ableton, midi"),
    ({"targets": [{"track": "two"}]}, "targets[0].track: must be a whole number"),
    ({"targets": [{"fx": 0}]}, "targets[0].fx: must be 1..100000"),
    ({"targets": [{"name": "a"}, {"name": "a"}]}, "duplicate name"),
    ({"targets": [{"daw": "midi"}]}, "port_name"),
    ({"midi": {"input": "x", "map": [{"control": "volume", "cc": 7}]}}, "midi.map[0].control"),
    ({"midi": {"input": "x", "map": [{"control": "amount", "cc": 7, "nrpn": 3}]}}, "exactly one of"),
    ({"midi": {"input": "x", "map": [{"control": "amount", "cc14": 40}]}}, "cc14: must be 0..31"),
    ({"midi": {"map": [{"control": "amount", "cc": 7}]}}, "also set midi.input"),
    ({"midi": {"input": "x", "map": [{"control": "amount", "cc14": 4, "relative": "twos"}]}}, "map[0].relative: only for cc"),
    ({"midi": {"input": "x", "map": [{"control": "amount", "cc": 4, "relative": "relative1"}]}}, "one of twos, offset, sign"),
    ({"midi": {"input": "x", "map": [{"control": "amount", "cc": 4, "step": 0.1}]}}, "map[0].step: only with relative"),
    ({"midi": {"input": "x", "map": [{"control": "amount", "cc": 4, "relative": "twos", "step": 0}]}}, "a number in (0, 1]"),
    ({"midi": {"input": "x", "feedback": "x"}}, "midi.feedback: also give midi.map"),
    ({"midi": {"input": "x", "feedback": 3, "map": [{"control": "amount", "cc": 4}]}}, "midi.feedback"),
    ({"midi": {"input": "x", "map": [{"control": "amount", "cc": 4, "relative": "twos", "pickup": True}]}},
     "map[0].pickup: true or false, and only for an absolute knob"),
    ({"midi": {"input": "x", "map": [{"control": "amount", "cc": 4, "pickup": "yes"}]}}, "map[0].pickup"),
    ({"state_dir": "relative"}, "absolute"),
    ({"knob_answers": "guess"}, "knob_answers: one of tangent, refit"),
    ({"targets": [{"daw": "ableton", "osc_bundle": True}]}, "osc_bundle: true or false, for daw: reaper only"),
    ({"targets": [{"osc_bundle": "yes"}]}, "osc_bundle: true or false"),
    ({"targets": [{"daw": "ableton", "follow_fx": "EQ Eight"}]}, "targets[0].follow_fx: for daw: reaper only"),
    ({"targets": [{"follow_fx": ""}]}, "targets[0].follow_fx: must be a non-empty string"),
    ({"targets": [{"follow_fx": "ReaEQ", "feedback_port": 70000}]}, "targets[0].feedback_port: must be 1..65535"),
])
def test_errors_say_where_and_why(data, fragment):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data, "c.yaml")
    assert fragment in str(exc.value)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("osc: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_flags_override():
    cfg = with_overrides(Config(), reaper="10.0.0.5:8100", track=4, fx=2, mapping="graphic-31", osc_port=9500)
    t = cfg.targets[0]
    assert (t.host, t.port, t.track, t.fx, t.mapping) == ("10.0.0.5", 8100, 4, 2, "graphic-31")
    assert cfg.osc_port == 9500
    cfg = with_overrides(Config(), ableton="127.0.0.1")
    assert cfg.targets[0].daw == "ableton" and cfg.targets[0].port == 11000 and cfg.targets[0].track == 0
    cfg = with_overrides(Config(), track=7)
    assert cfg.targets[0].daw == "reaper" and cfg.targets[0].track == 7
    assert parse_host_port("[::1]:9000", "x") == ("::1", 9000)
    with pytest.raises(ConfigError, match="--reaper"):
        with_overrides(Config(), reaper="host:notaport")
    live = default_target("ableton", name="live")
    assert Config().targets[0].osc_bundle  # bundles unless asked otherwise
    cfg = with_overrides(Config(targets=(default_target("reaper"), live)), reaper_follow="ReaEQ",
                         reaper_per_message=True)
    assert (cfg.targets[0].follow_fx, cfg.targets[0].osc_bundle, cfg.targets[1]) == ("ReaEQ", False, live)
    with pytest.raises(ConfigError, match="--reaper-follow: must be a non-empty string"):
        with_overrides(Config(), reaper_follow=" ")
    with pytest.raises(ConfigError, match="--midi-feedback: the config file's midi.map"):
        with_overrides(Config(), midi_feedback="nano")
