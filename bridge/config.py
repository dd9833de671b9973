"""The daemon's configuration: YAML in, validated dataclasses out, clear errors.

Everything has a default, so `eqbridge serve` runs with no file: OSC in on 127.0.0.1:9031 and
one target, REAPER's OSC surface on 127.0.0.1:8000, track 1, FX 1, mapping `reaper-reaeq`.

```yaml
osc:
  host: 127.0.0.1          # other interfaces only with an allow-list
  port: 9031
  allow: [192.168.1.20]    # senders accepted when host is not loopback
  feedback: ["127.0.0.1:9032"]   # also hear /eqbridge/curve and /eqbridge/params
targets:                   # the first is active at start; /eqbridge/target NAME switches
  - name: vocal
    daw: reaper            # reaper | ableton | midi
    host: 127.0.0.1
    port: 8000
    track: 2
    fx: 1
    mapping: reaper-reaeq
    min_interval_ms: 10    # answers at most once per interval; a polish yields to them (bridge/targets/base.py)
    reaper_units: normalized   # or real: ReaEQ's /track/T/fxeq/... addresses in Hz / dB / octaves
    osc_bundle: true       # default; false: one datagram per parameter (see bridge/targets/reaper.py)
    follow_fx: ReaEQ       # optional: drive the first FX named like this on the track selected in REAPER
    feedback_port: 9000    # with follow_fx: REAPER's surface "device port" (it sends its feedback there)
  - name: live
    daw: ableton
    port: 11000
    reply_port: 11001
    track: 0
    fx: 0                  # the device index in Live
    mapping: eq_eight
  - name: synth
    daw: midi
    port_name: "Synth"     # MIDI output port name substring
    cc_map: {band1.gain: [1, 20]}   # parameter key -> [channel, cc]; omitted: auto from cc 20
midi:
  input: "nanoKONTROL"     # MIDI input port name substring
  backend: null            # e.g. mido.backends.rtmidi/UNIX_JACK
  feedback: "nanoKONTROL"  # optional: output port substring; the knobs' values go back (LED rings, motor faders)
  map:
    - {control: amount, cc: 7, channel: 1, pickup: true}   # a pot: moves once it reaches the value
    - {control: macro/1, cc14: 16}       # MSB on CC 16, LSB on CC 48
    - {control: macro/2, nrpn: 300, bits: 14}
    - {control: macro/3, cc: 21, relative: twos, step: 0.01}   # an endless encoder (twos|offset|sign)
state_dir: null            # default: $XDG_DATA_HOME/eqbridge or ~/.local/share/eqbridge
profile: default           # the user's preferences: <state_dir>/profiles/<profile>.sqlite3
knob_answers: tangent      # or refit: a warm refit per knob move (slower; for comparison)
                           # ($EQBRIDGE_PROFILE_DIR replaces <state_dir>/profiles)
```
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError, EqBridgeError
from bridge.midi_in import RELATIVE_ENCODINGS, MidiBinding
from bridge.osc_in import DEFAULT_OSC_HOST, DEFAULT_OSC_PORT
from bridge.session import MAX_MACROS
from bridge.targets.reaper_feedback import DEFAULT_FEEDBACK_PORT
from bridge.udp_address import port_number

DAWS = ("reaper", "ableton", "midi")
DEFAULT_MAPPING = "reaper-reaeq"
DEFAULT_PORTS = {"reaper": 8000, "ableton": 11000}
KNOB_ANSWERS = ("tangent", "refit")
DEFAULT_INTERVAL_MS = {"reaper": 10.0, "ableton": 100.0, "midi": 5.0}


@dataclass(frozen=True)
class TargetSpec:
    """Where settings go: a DAW connection, a track, an FX slot (Live: device) and a mapping."""

    name: str
    daw: str = "reaper"
    host: str = "127.0.0.1"
    port: int = 8000
    track: int = 1
    fx: int = 1
    mapping: str = DEFAULT_MAPPING
    min_interval_ms: float = 10.0
    reply_port: int = 11001
    port_name: str = ""
    cc_map: tuple[tuple[str, int, int], ...] | None = None
    backend: str | None = None
    reaper_units: str = "normalized"
    """REAPER only: "normalized" (fxparam 0..1) or "real" (ReaEQ's fxeq Hz / dB / octaves)."""
    osc_bundle: bool = True
    """REAPER only: send each flush as OSC bundles (False: one datagram per parameter)."""
    follow_fx: str | None = None
    """REAPER only: drive the first FX whose name holds this on REAPER's selected track, read from
    the surface's feedback (bridge/targets/reaper_feedback.py); track and fx are where it starts."""
    feedback_port: int = DEFAULT_FEEDBACK_PORT
    """REAPER only, with follow_fx: the surface's "device port", where REAPER sends its feedback."""

    @property
    def key(self) -> str:
        """Identifies the state kept for this target (history follows the track and slot)."""
        where = self.port_name if self.daw == "midi" else f"{self.host}:{self.port}"
        return f"{self.daw}://{where}/{self.track}/{self.fx}/{self.mapping}"

    def describe(self) -> str:
        if self.daw == "midi":
            return f"{self.name}: MIDI CC out to a port matching {self.port_name!r}, mapping {self.mapping}"
        slot = "device" if self.daw == "ableton" else "fx"
        return (f"{self.name}: {self.daw} at {self.host}:{self.port}, track {self.track}, "
                f"{slot} {self.fx}, mapping {self.mapping}, every >= {self.min_interval_ms:g} ms"
                + (", real units (fxeq)" if self.reaper_units == "real" else "")
                + ((", OSC bundles" if self.osc_bundle else ", one datagram per parameter")
                   if self.daw == "reaper" else "")
                + (f", follows REAPER's selected track to its FX matching {self.follow_fx!r} (feedback on "
                   f"port {self.feedback_port})" if self.follow_fx else ""))


@dataclass(frozen=True)
class Config:
    osc_host: str = DEFAULT_OSC_HOST
    osc_port: int = DEFAULT_OSC_PORT
    allow: tuple[str, ...] = ()
    feedback: tuple[tuple[str, int], ...] = ()
    targets: tuple[TargetSpec, ...] = field(default_factory=lambda: (default_target("reaper"),))
    midi_input: str | None = None
    midi_backend: str | None = None
    midi_map: tuple[MidiBinding, ...] = ()
    midi_feedback: str | None = None  # output port substring: the knobs' values back to the controller
    state_dir: Path | None = None
    profile: str = "default"
    knob_answers: str = "tangent"
    """How knob moves are answered: "tangent" (first order at once, polished when the knobs rest)
    or "refit" (a warm refit per move: slower; the benchmark's baseline)."""
    source: str = "defaults"

    def data_dir(self) -> Path:
        return self.state_dir or default_state_dir()


def default_state_dir() -> Path:
    """$XDG_DATA_HOME/eqbridge, else ~/.local/share/eqbridge (never the working directory)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "eqbridge"


def default_target(daw: str, name: str | None = None, **kw: Any) -> TargetSpec:
    track, fx = (0, 0) if daw == "ableton" else (1, 1)
    base = dict(name=name or daw, daw=daw, port=DEFAULT_PORTS.get(daw, 0), track=track, fx=fx,
                min_interval_ms=DEFAULT_INTERVAL_MS[daw])
    base.update({k: v for k, v in kw.items() if v is not None})
    return TargetSpec(**base)


def parse_host_port(text: str, where: str, default_port: int | None = None) -> tuple[str, int]:
    """'HOST:PORT', ':PORT', 'PORT' or 'HOST' (with a default port); IPv6 as [addr]:port."""
    s = str(text).strip()
    host, port_s = "127.0.0.1", ""
    if s.startswith("["):
        end = s.find("]")
        host, port_s = s[1:end], s[end + 2:]
    elif s.count(":") == 1:
        host, port_s = s.split(":")
        host = host or "127.0.0.1"
    elif s.isdigit():
        port_s = s
    else:
        host = s
    if not port_s:
        if default_port is None:
            raise ConfigError(f"{where}: {text!r} needs a port (HOST:PORT)")
        return host, default_port
    return host, port_number(port_s, where)


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise ConfigError(f"{where}: must be a whole number, got {v!r}")
    if not lo <= int(v) <= hi:
        raise ConfigError(f"{where}: must be {lo}..{hi}, got {int(v)}")
    return int(v)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {v!r}")
    return v.strip()


def _check_keys(d: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: must be a mapping (key: value), got {type(d).__name__}")
    unknown = sorted(set(map(str, d)) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return d


def _target(d: Any, i: int) -> TargetSpec:
    where = f"targets[{i}]"
    _check_keys(d, {"name", "daw", "host", "port", "track", "fx", "device", "mapping", "min_interval_ms",
                    "reply_port", "port_name", "cc_map", "backend", "reaper_units", "osc_bundle", "follow_fx",
                    "feedback_port"}, where)
    daw = d.get("daw", "reaper")
    if daw not in DAWS:
        raise ConfigError(f"{where}.daw: must be one of {', '.join(DAWS)}, got {daw!r}")
    kw: dict[str, Any] = {}
    if "host" in d:
        kw["host"] = _str(d["host"], f"{where}.host")
    if "port" in d:
        kw["port"] = port_number(d["port"], f"{where}.port")
    lo = 0
    if "track" in d:
        kw["track"] = _int(d["track"], f"{where}.track", lo, 100000)
    fx = d.get("fx", d.get("device"))
    if fx is not None:
        kw["fx"] = _int(fx, f"{where}.fx", 0 if daw == "ableton" else 1, 100000)
    if "mapping" in d:
        kw["mapping"] = _str(d["mapping"], f"{where}.mapping")
    if "min_interval_ms" in d:
        v = d["min_interval_ms"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 10000:
            raise ConfigError(f"{where}.min_interval_ms: must be a number 0..10000, got {v!r}")
        kw["min_interval_ms"] = float(v)
    if "reply_port" in d:
        kw["reply_port"] = port_number(d["reply_port"], f"{where}.reply_port")
    if "reaper_units" in d:
        if daw != "reaper" or d["reaper_units"] not in ("normalized", "real"):
            raise ConfigError(f"{where}.reaper_units: normalized or real, for daw: reaper only; got {d['reaper_units']!r}")
        kw["reaper_units"] = d["reaper_units"]
    if "osc_bundle" in d:
        if daw != "reaper" or not isinstance(d["osc_bundle"], bool):
            raise ConfigError(f"{where}.osc_bundle: true or false, for daw: reaper only; got {d['osc_bundle']!r}")
        kw["osc_bundle"] = d["osc_bundle"]
    for key in ("follow_fx", "feedback_port"):
        if key in d and daw != "reaper":
            raise ConfigError(f"{where}.{key}: for daw: reaper only (REAPER's surface feedback)")
    if d.get("follow_fx") is not None:
        kw["follow_fx"] = _str(d["follow_fx"], f"{where}.follow_fx")
    if "feedback_port" in d:
        kw["feedback_port"] = port_number(d["feedback_port"], f"{where}.feedback_port")
    if "backend" in d and d["backend"] is not None:
        kw["backend"] = _str(d["backend"], f"{where}.backend")
    if daw == "midi":
        kw["port_name"] = _str(d.get("port_name"), f"{where}.port_name")
        if d.get("cc_map") is not None:
            cm = d["cc_map"]
            if not isinstance(cm, dict):
                raise ConfigError(f"{where}.cc_map: must map parameter keys to [channel, cc]")
            rows = []
            for k, v in cm.items():
                if not (isinstance(v, (list, tuple)) and len(v) == 2):
                    raise ConfigError(f"{where}.cc_map.{k}: must be [channel, cc], got {v!r}")
                rows.append((str(k), _int(v[0], f"{where}.cc_map.{k}[0] (channel)", 1, 16),
                             _int(v[1], f"{where}.cc_map.{k}[1] (cc)", 0, 127)))
            kw["cc_map"] = tuple(rows)
    name = _str(d.get("name", f"{daw}{i + 1}" if i else daw), f"{where}.name")
    return default_target(daw, name, **kw)


def _binding(d: Any, i: int) -> MidiBinding:
    where = f"midi.map[{i}]"
    _check_keys(d, {"control", "cc", "cc14", "nrpn", "channel", "bits", "relative", "step", "pickup"}, where)
    control = _str(d.get("control"), f"{where}.control")
    controls = ["amount"] + [f"macro/{n}" for n in range(1, MAX_MACROS + 1)]
    if control not in controls:  # the model says how many knobs there are; more are refused at run time
        raise ConfigError(f"{where}.control: must be amount or macro/1..macro/{MAX_MACROS}, got {control!r}")
    kinds = [k for k in ("cc", "cc14", "nrpn") if k in d]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of cc, cc14 or nrpn")
    kind = kinds[0]
    hi = {"cc": 127, "cc14": 31, "nrpn": 16383}[kind]
    number = _int(d[kind], f"{where}.{kind}", 0, hi)
    channel = None if d.get("channel") is None else _int(d["channel"], f"{where}.channel", 1, 16)
    bits = {"cc": 7, "cc14": 14, "nrpn": 14}[kind]
    if "bits" in d:
        if kind != "nrpn" or d["bits"] not in (7, 14):
            raise ConfigError(f"{where}.bits: only for nrpn, 7 or 14")
        bits = d["bits"]
    relative = d.get("relative")
    if relative is not None and (kind != "cc" or relative not in RELATIVE_ENCODINGS):
        raise ConfigError(f"{where}.relative: only for cc, one of {', '.join(RELATIVE_ENCODINGS)}; got {relative!r}")
    pickup = d.get("pickup", False)
    if not isinstance(pickup, bool) or (pickup and relative is not None):
        raise ConfigError(f"{where}.pickup: true or false, and only for an absolute knob (not relative); got {pickup!r}")
    if "step" not in d:
        return MidiBinding(control, kind, number, channel, bits, relative, pickup=pickup)
    if relative is None:
        raise ConfigError(f"{where}.step: only with relative (an endless encoder's change per tick)")
    step = d["step"]
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= 1:
        raise ConfigError(f"{where}.step: a number in (0, 1], the change per tick; got {step!r}")
    return MidiBinding(control, kind, number, channel, bits, relative, float(step))


def config_from_dict(data: Any, source: str = "<dict>") -> Config:
    if data is None:
        data = {}
    _check_keys(data, {"osc", "targets", "midi", "state_dir", "profile", "knob_answers"}, source)
    kw: dict[str, Any] = {"source": source}
    osc = _check_keys(data.get("osc") or {}, {"host", "port", "allow", "feedback"}, "osc")
    if "host" in osc:
        kw["osc_host"] = _str(osc["host"], "osc.host")
    if "port" in osc:
        kw["osc_port"] = port_number(osc["port"], "osc.port")
    allow = osc.get("allow") or []
    if not isinstance(allow, list):
        raise ConfigError("osc.allow: must be a list of IP addresses")
    for a in allow:
        try:
            ipaddress.ip_address(str(a))
        except ValueError:
            raise ConfigError(f"osc.allow: {a!r} is not an IP address") from None
    kw["allow"] = tuple(str(a) for a in allow)
    fb = osc.get("feedback") or []
    if not isinstance(fb, list):
        raise ConfigError("osc.feedback: must be a list of HOST:PORT")
    kw["feedback"] = tuple(parse_host_port(x, "osc.feedback") for x in fb)
    if "targets" in data:
        ts = data["targets"]
        if not isinstance(ts, list) or not ts:
            raise ConfigError("targets: must be a non-empty list")
        targets = tuple(_target(t, i) for i, t in enumerate(ts))
        names = [t.name for t in targets]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"targets: duplicate name(s) {', '.join(sorted(dup))}")
        kw["targets"] = targets
    midi = _check_keys(data.get("midi") or {}, {"input", "backend", "map", "feedback"}, "midi")
    if midi.get("input") is not None:
        kw["midi_input"] = _str(midi["input"], "midi.input")
    if midi.get("backend") is not None:
        kw["midi_backend"] = _str(midi["backend"], "midi.backend")
    mp = midi.get("map") or []
    if not isinstance(mp, list):
        raise ConfigError("midi.map: must be a list of bindings")
    kw["midi_map"] = tuple(_binding(b, i) for i, b in enumerate(mp))
    if kw["midi_map"] and not kw.get("midi_input"):
        raise ConfigError("midi.map: also set midi.input (the port name substring)")
    if midi.get("feedback") is not None:
        kw["midi_feedback"] = _str(midi["feedback"], "midi.feedback")
        if not kw["midi_map"]:
            raise ConfigError("midi.feedback: also give midi.map (the bindings whose values it shows)")
    if data.get("state_dir") is not None:
        p = Path(os.path.expanduser(_str(data["state_dir"], "state_dir")))
        if not p.is_absolute():
            raise ConfigError("state_dir: must be an absolute path (state never goes in the working directory)")
        kw["state_dir"] = p
    if data.get("profile") is not None:
        kw["profile"] = _profile_name(data["profile"], "profile")
    if "knob_answers" in data:
        if data["knob_answers"] not in KNOB_ANSWERS:
            raise ConfigError(f"knob_answers: one of {', '.join(KNOB_ANSWERS)}, got {data['knob_answers']!r}")
        kw["knob_answers"] = data["knob_answers"]
    cfg = Config(**kw)
    check_network(cfg)
    return cfg


def _profile_name(v: Any, where: str) -> str:
    from bridge.profile import check_profile_name

    try:
        return check_profile_name(v)
    except EqBridgeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_network(cfg: Config) -> None:
    try:
        loopback = ipaddress.ip_address(cfg.osc_host).is_loopback
    except ValueError:
        loopback = cfg.osc_host == "localhost"
    if not loopback and not cfg.allow:
        raise ConfigError(f"osc.host {cfg.osc_host} is not loopback: list the senders allowed in osc.allow")


def load_config(path: str | os.PathLike | None) -> Config:
    """Read and validate a YAML config; None means the defaults."""
    if path is None:
        return Config()
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return config_from_dict(data, str(p))


def with_overrides(cfg: Config, *, osc_host: str | None = None, osc_port: int | None = None,
                   reaper: str | None = None, ableton: str | None = None, track: int | None = None,
                   fx: int | None = None, mapping: str | None = None,
                   feedback: list[str] | None = None, midi_input: str | None = None,
                   midi_backend: str | None = None, midi_feedback: str | None = None,
                   profile: str | None = None,
                   reaper_real_units: bool = False, reaper_per_message: bool = False,
                   reaper_follow: str | None = None) -> Config:
    """Apply command-line flags: --reaper/--ableton replace the targets; --track/--fx/--mapping
    change the targets given by flags, or the first configured target when none are."""
    kw: dict[str, Any] = {}
    if osc_host is not None:
        kw["osc_host"] = osc_host
    if osc_port is not None:
        kw["osc_port"] = port_number(osc_port, "--osc-port")
    over = {k: v for k, v in (("track", track), ("fx", fx), ("mapping", mapping)) if v is not None}
    flagged = []
    if reaper:
        h, p = parse_host_port(reaper, "--reaper", DEFAULT_PORTS["reaper"])
        flagged.append(default_target("reaper", host=h, port=p, **over))
    if ableton:
        h, p = parse_host_port(ableton, "--ableton", DEFAULT_PORTS["ableton"])
        flagged.append(default_target("ableton", host=h, port=p, **over))
    if flagged:
        kw["targets"] = tuple(flagged)
    elif over:
        kw["targets"] = (replace(cfg.targets[0], **over),) + cfg.targets[1:]
    # --reaper-real-units (ReaEQ's fxeq addresses), --reaper-per-message (no OSC bundles),
    # --reaper-follow FX (the selected track's FX): for every REAPER target
    follow = None if reaper_follow is None else _str(reaper_follow, "--reaper-follow")
    reaper_wide = {k: v for k, v in (("reaper_units", "real" if reaper_real_units else None),
                                     ("osc_bundle", False if reaper_per_message else None), ("follow_fx", follow))
                   if v is not None}
    if reaper_wide:
        kw["targets"] = tuple(replace(t, **reaper_wide) if t.daw == "reaper" else t
                              for t in kw.get("targets", cfg.targets))
    if feedback:
        kw["feedback"] = cfg.feedback + tuple(parse_host_port(f, "--feedback") for f in feedback)
    if midi_input:
        kw["midi_input"] = midi_input
    if midi_backend:
        kw["midi_backend"] = midi_backend
    if midi_feedback:
        if not cfg.midi_map:
            raise ConfigError("--midi-feedback: the config file's midi.map gives the bindings whose values it shows")
        kw["midi_feedback"] = midi_feedback
    if profile is not None:
        kw["profile"] = _profile_name(profile, "--profile")
    out = replace(cfg, **kw)
    check_network(out)
    return out
