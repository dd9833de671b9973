"""Where the shipped model files live and what they are called (one place for every name)."""

from __future__ import annotations

import os
from pathlib import Path

ENCODER_FILE = "text-encoder.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
HEAD_FILE = "head.npz"
LATENT_ENCODER_FILE = "latent-encoder.onnx"
LATENT_DECODER_FILE = "latent-decoder.onnx"


def models_dir() -> Path:
    """EQBRIDGE_MODELS_DIR if set, else the repository's models/ folder."""
    env = os.environ.get("EQBRIDGE_MODELS_DIR")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "models"
LATENT_KNOBS_FILE = "latent-knobs.json"
