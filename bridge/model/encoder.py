"""Runtime text encoder: phrase -> 384-d unit vector with the shipped int8 ONNX MiniLM.

Runtime path only: imports onnxruntime, tokenizers and numpy, never torch or transformers (those
are training extras; `bridge.train.export_encoder` builds the files this class reads).

Choices, and why:
- The ONNX graph does mean pooling + L2 normalisation itself, so the output is already the
  sentence embedding and there is no numeric code here to drift from the training export.
- Single phrases are tokenised with no padding: the shipped tokenizer.json pads to 128 tokens,
  which costs ~12 ms per phrase instead of ~1 ms. Truncation stays on at 128 tokens (what the
  export was checked with; long text is cut, never an error).
- `embed_many` does NOT pad and batch: dynamic int8 quantisation uses one activation scale per
  tensor, so a phrase's embedding would depend on its batch-mates and on the padding (cosine
  down to 0.95 vs the phrase alone). It runs phrases one by one, identical to `embed`.
- onnxruntime: `threads` intra-op threads (default 1: one phrase is ~1 ms, more threads mostly
  add start-up and contention), one inter-op thread and sequential execution (the graph is a
  straight chain), and all graph optimisations (fusions make the int8 graph noticeably faster).
- The models directory is `EQBRIDGE_MODELS_DIR` if set (needed when installed non-editable,
  where the package sits apart from the repo), else the repo's `models/` folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge.errors import ModelFileError

from bridge.model.files import ENCODER_FILE, TOKENIZER_FILE, models_dir

MAX_TOKENS = 128
DIM = 384


class TextEncoder:
    """all-MiniLM-L6-v2 (int8 ONNX) sentence encoder; `embed` returns unit-norm float32 (384,)."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir) if model_dir is not None else models_dir()
        onnx_path = self.model_dir / ENCODER_FILE
        tok_path = self.model_dir / TOKENIZER_FILE
        for p in (onnx_path, tok_path):
            if not p.is_file():
                raise ModelFileError(
                    f"text encoder file missing: {p} (run `eqbridge train` to build it, "
                    f"or set EQBRIDGE_MODELS_DIR to the folder that holds it)"
                )
        try:
            self._tok = Tokenizer.from_file(str(tok_path))
            self._tok.no_padding()
            self._tok.enable_truncation(MAX_TOKENS)

            so = ort.SessionOptions()
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        except ModelFileError:
            raise
        except Exception as exc:  # corrupt / unreadable files
            raise ModelFileError(
                f"cannot load text encoder from {self.model_dir}: {exc} (run `eqbridge train`)"
            ) from exc

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self._sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def embed(self, text: str) -> np.ndarray:
        """Embedding of one phrase: float32 (384,), unit L2 norm."""
        enc = self._tok.encode(text)
        ids = np.asarray([enc.ids], dtype=np.int64)
        mask = np.asarray([enc.attention_mask], dtype=np.int64)
        return self._run(ids, mask)[0]

    def embed_many(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of many phrases: float32 (n, 384), in input order, identical to `embed`.

        Phrases run one at a time on purpose: the int8 graph quantises activations dynamically
        with ONE scale per tensor, so in a padded batch each phrase's embedding depends on the
        other phrases and on the padding (measured: cosine down to 0.95 vs the same phrase alone,
        worse than the int8-vs-fp32 error). Unpadded single runs are ~1 ms each, so the training
        features and the runtime features stay bit-identical at little cost. `batch_size` is
        accepted for API compatibility and only bounds the tokeniser's batch call.
        """
        texts = list(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        step = max(1, int(batch_size))
        for i in range(0, len(texts), step):
            for j, enc in enumerate(self._tok.encode_batch(texts[i:i + step])):
                ids = np.asarray([enc.ids], dtype=np.int64)
                mask = np.asarray([enc.attention_mask], dtype=np.int64)
                out[i + j] = self._run(ids, mask)[0]
        return out
