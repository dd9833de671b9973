"""Proof by rendering: run settings through real audio code and measure what comes out.

Why this file exists: a mapping is only as good as its conversions and its claim about the band
maths. Rendering an impulse through the real plugin (when installed) or through pedalboard's
built-in JUCE filters, and measuring the magnitude, checks both against `bridge.filters`.

Backends, in order: the mapping's VST3 when `find_vst3` finds it; else, for mappings whose band
maths is known (`response: rbj`), a pedalboard chain of PeakFilter / LowShelfFilter /
HighShelfFilter / HighpassFilter / LowpassFilter; band types pedalboard lacks (notch, band pass,
12+ dB/oct cuts, tilt) are rendered as RBJ-cookbook biquads with scipy (a second, time-domain
implementation of the cookbook, not pedalboard).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bridge.bands import BandSetting
from bridge.errors import PluginError
from bridge.mapping import Mapping

PRE_SILENCE_BLOCKS = 4  # plugins such as LSP apply parameter changes one block late
BLOCK = 512
IR_SECONDS = 1.5  # long enough for a Q 40 band at 20 Hz to ring down below -120 dB


def vst3_search_paths() -> list[Path]:
    """Where VST3 bundles are looked for: EQBRIDGE_VST3_PATH (os.pathsep list), then standard."""
    env = os.environ.get("EQBRIDGE_VST3_PATH")
    paths = [Path(p) for p in env.split(os.pathsep) if p] if env else []
    return paths + [Path("/opt/lsp-vst3/lsp-plugins.vst3"), Path("/usr/lib/vst3"),
                    Path("/usr/local/lib/vst3"), Path.home() / ".vst3"]


def find_vst3(mapping: Mapping) -> Path | None:
    """The installed bundle that holds the mapping's VST3 plugin, or None.

    A search path may be a bundle itself or a folder of bundles; a bundle qualifies when
    pedalboard lists `mapping.vst3_name` among its plugins.
    """
    if not mapping.vst3_name:
        return None
    return _find_vst3(mapping.vst3_name, tuple(str(p) for p in vst3_search_paths()))


@functools.lru_cache(maxsize=64)
def _find_vst3(vst3_name: str, search: tuple[str, ...]) -> Path | None:
    """Cached bundle scan (listing a bundle's plugins loads its binary)."""
    import pedalboard
    for p in map(Path, search):
        bundles = [p] if p.suffix == ".vst3" else sorted(p.glob("*.vst3")) if p.is_dir() else []
        for b in bundles:
            if not b.exists():
                continue
            try:
                names = pedalboard.VST3Plugin.get_plugin_names_for_file(str(b))
            except Exception:  # noqa: BLE001 - an unloadable bundle is simply not a match
                continue
            if vst3_name in names:
                return b
    return None


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------

def _rbj_sos(s: BandSetting, sr: float) -> np.ndarray:
    """Second-order sections (RBJ cookbook) for band types pedalboard has no built-in for."""
    from scipy import signal

    from bridge.filters import butterworth_qs
    w0 = 2 * np.pi * s.freq_hz / sr
    cw, sw = np.cos(w0), np.sin(w0)

    def biquad(kind: str, q: float) -> list[float]:
        al = sw / (2 * q)
        if kind == "hp":
            b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        elif kind == "lp":
            b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        elif kind == "notch":
            b = [1.0, -2 * cw, 1.0]
        else:  # band_pass, constant 0 dB peak gain
            b = [al, 0.0, -al]
        a = [1 + al, -2 * cw, 1 - al]
        return [x / a[0] for x in b] + [1.0, a[1] / a[0], a[2] / a[0]]

    t = s.type
    if t in ("notch", "band_pass"):
        return np.array([biquad("notch" if t == "notch" else "bp", s.q)])
    if t in ("low_cut", "high_cut"):
        kind = "hp" if t == "low_cut" else "lp"
        order = int(s.slope_db_oct) // 6
        qs = [s.q] if order == 2 else [qk * s.q / np.sqrt(0.5) for qk in butterworth_qs(order)]
        secs = [biquad(kind, q) for q in qs]
        if order % 2:
            z, p, k = signal.butter(1, s.freq_hz, btype="highpass" if kind == "hp" else "lowpass",
                                    fs=sr, output="zpk")
            secs.append(list(signal.zpk2sos(z, p, k)[0]))
        return np.array(secs)
    raise PluginError(f"no time-domain model for band type {t!r}")


def _builtin_process(audio: np.ndarray, sr: float, settings: Sequence[BandSetting]) -> np.ndarray:
    """Apply settings with pedalboard built-ins (and RBJ biquads where pedalboard has none)."""
    import pedalboard
    from scipy import signal
    y = np.asarray(audio, dtype=np.float32)
    for s in settings:
        t = s.type
        if t == "off":
            continue
        if t == "bell":
            fx = pedalboard.PeakFilter(cutoff_frequency_hz=s.freq_hz, gain_db=s.gain_db, q=s.q)
        elif t == "low_shelf":
            fx = pedalboard.LowShelfFilter(cutoff_frequency_hz=s.freq_hz, gain_db=s.gain_db, q=s.q)
        elif t == "high_shelf":
            fx = pedalboard.HighShelfFilter(cutoff_frequency_hz=s.freq_hz, gain_db=s.gain_db, q=s.q)
        elif t == "low_cut" and s.slope_db_oct == 6:
            fx = pedalboard.HighpassFilter(cutoff_frequency_hz=s.freq_hz)
        elif t == "high_cut" and s.slope_db_oct == 6:
            fx = pedalboard.LowpassFilter(cutoff_frequency_hz=s.freq_hz)
        else:
            y = signal.sosfilt(_rbj_sos(s, sr), y.astype(np.float64), axis=-1).astype(np.float32)
            continue
        y = fx(y, sr)
    return y


_PLUGINS: dict[tuple[str, str], object] = {}


def load_plugin(mapping: Mapping, path: Path | None = None, fresh: bool = False):
    """Load the mapping's VST3 with pedalboard (PluginError when absent or unloadable).

    Instances are cached per (bundle, plugin name): loading takes seconds, and `render_audio`
    sets every mapped parameter and resets the plugin before each render anyway.
    """
    import pedalboard
    path = path or find_vst3(mapping)
    if path is None:
        raise PluginError(f"{mapping.display_name}: VST3 {mapping.vst3_name!r} is not installed "
                          f"(searched {[str(p) for p in vst3_search_paths()]})")
    key = (str(path), str(mapping.vst3_name))
    if fresh or key not in _PLUGINS:
        try:
            _PLUGINS[key] = pedalboard.load_plugin(str(path), plugin_name=mapping.vst3_name)
        except Exception as e:  # noqa: BLE001 - pedalboard raises plain ImportError/RuntimeError
            raise PluginError(f"cannot load {mapping.vst3_name!r} from {path}: {e}") from None
    return _PLUGINS[key]


def apply_to_plugin(plugin, mapping: Mapping, settings: Sequence[BandSetting]) -> None:
    """Set a loaded plugin's parameters from settings, via raw (normalized) values.

    Parameters are found by their VST3 name (`param.name`); raw values are written directly
    (attribute assignment in pedalboard snaps to a coarse grid).
    """
    by_name = {p.name: p for p in plugin.parameters.values()}
    for hp in mapping.host_params(settings):
        if hp.vst3_name is None:
            continue
        p = by_name.get(hp.vst3_name)
        if p is None:
            raise PluginError(f"{mapping.name}: plugin has no parameter {hp.vst3_name!r}")
        p.raw_value = float(hp.normalized)


def _plugin_process(plugin, audio: np.ndarray, sr: float) -> np.ndarray:
    """Process audio after a few blocks of silence (changes land one block late), stereo-safe."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    mono = np.asarray(audio).ndim == 1
    chans = 2 if x.shape[0] == 1 else x.shape[0]
    xin = np.repeat(x, chans, axis=0) if x.shape[0] == 1 else x
    pre = PRE_SILENCE_BLOCKS * BLOCK
    buf = np.concatenate([np.zeros((chans, pre), np.float32), xin], axis=1)
    plugin.reset()
    try:
        y = plugin.process(buf, sr, buffer_size=BLOCK, reset=False)[:, pre:]
    except ValueError:  # a mono plugin refuses 2 channels
        y = plugin.process(buf[:1], sr, buffer_size=BLOCK, reset=False)[:, pre:]
    return y[0] if mono else y


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def backend_for(mapping: Mapping) -> str:
    """"vst3" when the real plugin is installed, "builtin" when the band maths is known."""
    if find_vst3(mapping) is not None:
        return "vst3"
    if mapping.response == "rbj":
        return "builtin"
    raise PluginError(f"{mapping.display_name}: plugin not installed and its band maths is "
                      f"unverified (response: {mapping.response}); nothing honest to render")


def render_audio(audio: np.ndarray, sr: float, settings: Sequence[BandSetting],
                 mapping: Mapping, backend: str | None = None) -> np.ndarray:
    """Audio (mono 1-D or channels x samples) processed with settings as the mapping's EQ would."""
    backend = backend or backend_for(mapping)
    if backend == "vst3":
        plugin = load_plugin(mapping)
        apply_to_plugin(plugin, mapping, settings)
        return _plugin_process(plugin, audio, sr)
    clipped = _clip_to_mapping(settings, mapping)
    return _builtin_process(audio, sr, clipped)


def _clip_to_mapping(settings: Sequence[BandSetting], mapping: Mapping) -> list[BandSetting]:
    """Settings as the plugin would receive them (round trip through the host conversions)."""
    values = {hp.key: hp.normalized for hp in mapping.host_params(settings)}
    return mapping.settings_from_host(values)


def impulse_response(settings: Sequence[BandSetting], mapping: Mapping, sample_rate: float = 48000,
                     seconds: float = IR_SECONDS, backend: str | None = None) -> np.ndarray:
    """The EQ's impulse response (mono, first channel)."""
    n = int(seconds * sample_rate)
    x = np.zeros(n, np.float32)
    x[0] = 1.0
    return np.asarray(render_audio(x, sample_rate, settings, mapping, backend), np.float64)


def magnitude_db(ir: np.ndarray, freqs_hz: np.ndarray | Sequence[float],
                 sample_rate: float) -> np.ndarray:
    """|FFT| of an impulse response in dB at freqs_hz, interpolated in log frequency."""
    h = np.asarray(ir, np.float64)
    nfft = 1 << int(np.ceil(np.log2(max(len(h), 2))))
    spec = np.fft.rfft(h, nfft)
    f = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    db = 20 * np.log10(np.maximum(np.abs(spec), 1e-15))
    q = np.asarray(freqs_hz, np.float64)
    return np.interp(np.log(q), np.log(f[1:]), db[1:])


def render_settings_db(settings: Sequence[BandSetting], mapping: Mapping,
                       freqs_hz: np.ndarray | Sequence[float], sample_rate: float = 48000,
                       backend: str | None = None) -> np.ndarray:
    """Measured magnitude (dB) at freqs_hz of settings rendered through the mapping's EQ."""
    ir = impulse_response(settings, mapping, sample_rate, backend=backend)
    return magnitude_db(ir, freqs_hz, sample_rate)
