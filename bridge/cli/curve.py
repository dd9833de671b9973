"""`eqbridge curve`: phrases to 40-band curves, as a table, JSON lines or a plot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bridge.errors import EqBridgeError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curve", help="show the EQ curve a phrase means")
    p.add_argument("phrases", nargs="+", metavar="PHRASE")
    p.add_argument("--amount", type=float, default=None, help="0..1 (default 0.5: a typical SAFE user's size)")
    p.add_argument("--macro", action="append", default=[], metavar="N=V", type=parse_macro,
                   help="turn macro knob N to V (0..1, 0.5 = no change); repeatable")
    p.add_argument("--profile", metavar="NAME",
                   help="answer as this user's profile would (kept phrases, taught names)")
    p.add_argument("--json", action="store_true", help="one JSON object per phrase per line")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the curves on a log-frequency axis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bridge.model import TextToCurve

    model = TextToCurve()
    if args.profile:
        from bridge.profile import open_profile
        model.profile = open_profile(args.profile, create=False)
    answers, failed = [], 0
    for phrase in args.phrases:
        try:
            answers.append(model.curve(phrase, args.amount, dict(args.macro)))
        except EqBridgeError as exc:
            print(f"eqbridge curve: error: {exc}", file=sys.stderr)
            failed += 1
    for ans in answers:
        print(json.dumps(ans.to_json(), ensure_ascii=False) if args.json else format_table(ans))
    if args.plot and answers:
        plot_curves(answers, args.plot)
    return 2 if failed else 0


def parse_macro(text: str) -> tuple[int, float]:
    """"2=0.8" -> (2, 0.8); argparse turns the ValueError into a usage message."""
    knob, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected N=V (e.g. 1=0.8), got {text!r}")
    try:
        return int(knob), float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected N=V with a whole N and a number V, got {text!r}") from exc


def format_table(ans) -> str:
    how = ", ".join(f"{t.weight:+.2g}x {t.resolved} ({t.source})" for t in ans.terms)
    rows = [f"{ans.text!r}  amount {ans.amount:.2f}  = {how}"]
    for i in range(0, len(ans.freqs_hz), 8):
        rows.append("  " + "  ".join(f"{f:>6.0f} Hz {g:+5.1f}" for f, g in
                                     zip(ans.freqs_hz[i:i + 8], ans.gains_db[i:i + 8])))
    return "\n".join(rows)


def plot_curves(answers, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EqBridgeError("--plot needs matplotlib (pip install 'eqbridge[plot]')") from exc
    fig, ax = plt.subplots(figsize=(8, 4))
    for ans in answers:
        ax.semilogx(ans.freqs_hz, ans.gains_db, marker=".", label=ans.text)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="Hz", ylabel="dB", xlim=(20, 20000), title="eqbridge curves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
