"""The shipped int8 text encoder (bridge.model.encoder): shape, norm, determinism, semantics, imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridge.errors import ModelFileError
from bridge.model.encoder import DIM, TextEncoder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def enc() -> TextEncoder:
    return TextEncoder()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_shape_dtype_and_unit_norm(enc):
    v = enc.embed("a bit brighter")
    assert v.shape == (DIM,) == (384,)
    assert v.dtype == np.float32
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4


def test_deterministic(enc):
    a = enc.embed("warm and airy")
    b = enc.embed("warm and airy")
    assert np.array_equal(a, b)


def test_batch_equals_single(enc):
    texts = ["warm", "bright", "muddy", "harsh", "airy", "a bit brighter", "más cálido",
             "make the vocal sit better in the mix", ""]
    many = enc.embed_many(texts, batch_size=4)
    assert many.shape == (len(texts), 384)
    assert many.dtype == np.float32
    single = np.stack([enc.embed(t) for t in texts])
    assert np.allclose(many, single, atol=1e-4)
    assert enc.embed_many([]).shape == (0, 384)


def test_related_words_closer_than_unrelated(enc):
    warm, warmth, spreadsheet = (enc.embed(t) for t in ("warm", "warmth", "spreadsheet"))
    assert _cos(warm, warmth) > _cos(warm, spreadsheet)
    bright, brighter, banana = (enc.embed(t) for t in ("bright", "a bit brighter", "banana"))
    assert _cos(bright, brighter) > _cos(bright, banana)


def test_long_text_is_truncated_not_an_error(enc):
    v = enc.embed("warm " * 1000)
    assert v.shape == (384,) and np.isfinite(v).all()


def test_missing_files_raise_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="eqbridge train"):
        TextEncoder(tmp_path)


def test_env_var_sets_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EQBRIDGE_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelFileError, match=str(tmp_path)):
        TextEncoder()


def test_runtime_import_does_not_load_torch():
    code = (
        "import sys\n"
        "import bridge.model.encoder as m\n"
        "m.TextEncoder().embed('warm')\n"
        "bad = [k for k in ('torch', 'transformers') if k in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("EQBRIDGE_MODELS_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"runtime import loaded: {out.stdout.strip()}"
