"""`eqbridge train`: rebuild every shipped model file from the vendored data."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="rebuild the shipped model files from models/data (needs the [train] extra)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the models folder)")
    p.add_argument("--skip-export", action="store_true", help="reuse the exported encoder; refit the head only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bridge.errors import EqBridgeError

    try:
        from bridge.train.pipeline import run_train
    except ImportError as exc:
        raise EqBridgeError(f"training needs the [train] extra ({exc}); pip install -e '.[train]'") from exc
    run_train(args.out, export=not args.skip_export)
    return 0
