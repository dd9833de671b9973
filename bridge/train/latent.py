"""The macro-knob space: PCA over every crowd curve, chosen by held-out reconstruction, shipped as ONNX.

PCA was chosen over a small VAE because the curves are smooth 40-d vectors whose first few linear
components already carry most of the variance held-out (see the model card), and a linear space
makes knob moves exactly additive, so turning one knob never bends another's meaning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge.erb import N_BANDS
from bridge.model.files import LATENT_DECODER_FILE, LATENT_ENCODER_FILE

MAX_DIMS = 8
KNOB_DIMS = (2, 3, 4)
EXPLAINED_TARGET = 0.8
"""The smallest dimension count in KNOB_DIMS whose held-out explained variance reaches this wins."""


def fit_pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, components (dims x 40, rows unit-norm, sign fixed so the top band is positive-ish)
    and the std of each component's scores."""
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:dims]
    comps = comps * np.where(comps[:, -8:].sum(1, keepdims=True) < 0, -1.0, 1.0)  # + = more treble
    scores = (x - mean) @ comps.T
    return mean, comps, scores.std(0)


def heldout_explained(x: np.ndarray, groups: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Held-out explained variance for 1..MAX_DIMS components, folds by word (group)."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    fold_of = dict(zip(uniq, rng.permutation(np.arange(len(uniq)) % n_folds)))
    folds = np.array([fold_of[g] for g in groups])
    resid = np.zeros(MAX_DIMS)
    total = 0.0
    for f in range(n_folds):
        tr, te = x[folds != f], x[folds == f]
        mean, comps, _ = fit_pca(tr, MAX_DIMS)
        c = te - mean
        total += float((c ** 2).sum())
        for d in range(1, MAX_DIMS + 1):
            rec = (c @ comps[:d].T) @ comps[:d]
            resid[d - 1] += float(((c - rec) ** 2).sum())
    return 1.0 - resid / total


def knob_names(comps: np.ndarray, mean: np.ndarray, words: list[str], langs: list[str],
               shapes: np.ndarray, counts: np.ndarray, min_count: int = 5) -> list[str]:
    """Name each knob by the well-attested English words at its two ends ("dark <-> bright")."""
    ok = (counts >= min_count) & np.array([lang == "en" for lang in langs])
    w = [word for word, keep in zip(words, ok) if keep]
    proj = (shapes[ok] - mean) @ comps.T
    names = []
    for i in range(comps.shape[0]):
        order = np.argsort(proj[:, i])
        lo = next(w[j] for j in order if all(w[j] not in n for n in names))
        hi = next(w[j] for j in order[::-1] if all(w[j] not in n for n in names) and w[j] != lo)
        names.append(f"{lo} <-> {hi}")
    return names


def _linear_onnx(weight: np.ndarray, bias: np.ndarray, in_name: str, out_name: str, path: Path) -> None:
    """y = x @ weight + bias as a one-node-pair ONNX graph (dynamic batch)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(weight.astype(np.float32), "W")
    b = numpy_helper.from_array(bias.astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", [in_name, "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], [out_name])],
        path.stem,
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", weight.shape[0]])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", weight.shape[1]])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="eqbridge")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def build_latent(samples_x: np.ndarray, groups: np.ndarray, words: list[str], langs: list[str],
                 shapes: np.ndarray, counts: np.ndarray, out_dir: Path) -> dict:
    """Choose the dimension count, fit on all curves, write encoder/decoder ONNX; return a report."""
    explained = heldout_explained(samples_x, groups)
    dims = next((d for d in KNOB_DIMS if explained[d - 1] >= EXPLAINED_TARGET), KNOB_DIMS[-1])
    mean, comps, spread = fit_pca(samples_x, dims)
    names = knob_names(comps, mean, words, langs, shapes, counts)
    # encoder: z = (x - mean) @ C^T  == x @ C^T + (-mean @ C^T); decoder: x = z @ C + mean
    _linear_onnx(comps.T, -mean @ comps.T, "shape", "z", out_dir / LATENT_ENCODER_FILE)
    _linear_onnx(comps, mean, "z", "shape", out_dir / LATENT_DECODER_FILE)
    assert comps.shape[1] == N_BANDS
    return {"dims": dims, "heldout_explained": [float(e) for e in explained], "names": names,
            "spread": [float(s) for s in spread]}
