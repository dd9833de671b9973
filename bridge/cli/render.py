"""`eqbridge render`: apply a phrase's fit to an audio file through pedalboard (the real plugin if installed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bridge.cli.fit import add_target_args, fit_phrases, verify_fit
from bridge.errors import EqBridgeError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="EQ an audio file with the fit of a phrase")
    p.add_argument("infile", type=Path, metavar="IN.wav")
    p.add_argument("outfile", type=Path, metavar="OUT.wav")
    p.add_argument("phrase", metavar="PHRASE")
    add_target_args(p)
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="target, fitted prediction and measured render")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pedalboard.io import AudioFile

    from bridge.verify import backend_for, render_audio

    (_, result), = fit_phrases([args.phrase], args.mapping, args.amount)
    if isinstance(result, EqBridgeError):
        raise result
    try:
        with AudioFile(str(args.infile)) as f:
            audio, sr = f.read(f.frames), f.samplerate
    except (OSError, ValueError, RuntimeError) as exc:
        raise EqBridgeError(f"cannot read {args.infile}: {exc}") from exc
    out = render_audio(audio, sr, result.fit.bands, result.mapping, backend_for(result.mapping))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    try:
        with AudioFile(str(args.outfile), "w", sr, out.shape[0]) as f:
            f.write(out)
    except (OSError, ValueError, RuntimeError) as exc:
        raise EqBridgeError(f"cannot write {args.outfile}: {exc}") from exc
    print(f"wrote {args.outfile} ({out.shape[-1] / sr:.2f} s, peak {20 * np.log10(max(peak, 1e-9)):+.1f} dBFS); "
          f"fit RMS error {result.fit.rms_error_db:.2f} dB on {result.mapping.name}")
    if args.plot:
        verified = verify_fit(result)
        if verified["verified_with"] is None:
            raise EqBridgeError(f"cannot plot the render: {verified['verify_error']}")
        plot_fit(result, verified, args.plot)
    return 0


def plot_fit(result, verified: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EqBridgeError("--plot needs matplotlib (pip install 'eqbridge[plot]')") from exc
    fit = result.fit
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.semilogx(fit.freqs_hz, fit.target_db, "k.-", label="target")
    ax.semilogx(fit.freqs_hz, fit.predicted_db, label=f"fit ({result.mapping.name})")
    ax.semilogx(fit.freqs_hz, verified["measured_db"], "--", label=f"rendered ({verified['verified_with']})")
    ax.set(xlabel="Hz", ylabel="dB", xlim=(20, 20000), title=repr(result.text))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
