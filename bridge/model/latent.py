"""Macro knobs: move a curve through the latent space of crowd curves (built by `eqbridge train`).

Knobs are 1-based and relative: 0.5 leaves the curve as it is; 0 and 1 move the latent coordinate
by two standard deviations of the crowd's curves along that direction, scaled to dB by the same
typical size the words use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from bridge.errors import EqBridgeError, ModelFileError
from bridge.model.files import LATENT_DECODER_FILE, LATENT_ENCODER_FILE, LATENT_KNOBS_FILE, models_dir

KNOB_SPAN_STD = 2.0
"""A knob at 0 or 1 moves its coordinate this many crowd standard deviations."""


class MacroKnobs:
    """The shipped latent encoder/decoder (ONNX) and each knob's name and spread."""

    def __init__(self, models_path: Path | str | None = None):
        import onnxruntime as ort

        root = Path(models_path) if models_path else models_dir()
        try:
            meta = json.loads((root / LATENT_KNOBS_FILE).read_text(encoding="utf-8"))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._enc = ort.InferenceSession(str(root / LATENT_ENCODER_FILE), opts, providers=["CPUExecutionProvider"])
            self._dec = ort.InferenceSession(str(root / LATENT_DECODER_FILE), opts, providers=["CPUExecutionProvider"])
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"latent knob files in {root} unreadable ({exc}); run `eqbridge train`") from exc
        self.names: list[str] = list(meta["names"])
        self.spread = np.asarray(meta["spread"], dtype=np.float64)
        self.size_db = float(meta["size_db"])

    @property
    def count(self) -> int:
        return len(self.names)

    def name(self, knob: int) -> str:
        self._check(knob)
        return self.names[knob - 1]

    def encode(self, gains_db: np.ndarray) -> np.ndarray:
        x = (np.asarray(gains_db, np.float32) / self.size_db)[None]
        return self._enc.run(None, {"shape": x})[0][0].astype(np.float64)

    def decode(self, z: np.ndarray) -> np.ndarray:
        out = self._dec.run(None, {"z": np.asarray(z, np.float32)[None]})[0][0]
        return out.astype(np.float64) * self.size_db

    def apply(self, gains_db: np.ndarray, knobs: Mapping[int, float]) -> np.ndarray:
        """The curve with knobs turned (values 0..1, 0.5 = no change), relative to `gains_db`."""
        delta = np.zeros(self.count)
        for knob, value in knobs.items():
            self._check(knob)
            v = float(value)
            if not 0.0 <= v <= 1.0:
                raise EqBridgeError(f"macro {knob} must be in 0..1, got {value!r}")
            delta[knob - 1] = (v - 0.5) * 2.0 * KNOB_SPAN_STD * self.spread[knob - 1]
        if not delta.any():
            return np.asarray(gains_db, dtype=np.float64).copy()
        z = self.encode(gains_db)
        return np.asarray(gains_db, np.float64) + self.decode(z + delta) - self.decode(z)

    def _check(self, knob: int) -> None:
        if not isinstance(knob, (int, np.integer)) or not 1 <= knob <= self.count:
            raise EqBridgeError(f"macro knob must be 1..{self.count}, got {knob!r}")
