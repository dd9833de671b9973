"""Words to curves at run time: onnxruntime + tokenizers + numpy only (never torch)."""

from bridge.model.curve import DEFAULT_AMOUNT, CurveAnswer, TermAnswer, TextToCurve

__all__ = ["DEFAULT_AMOUNT", "CurveAnswer", "TermAnswer", "TextToCurve"]
