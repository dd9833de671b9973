"""The model card (models/README.md), written by `eqbridge train` from the numbers it measured."""

from __future__ import annotations

import csv
from pathlib import Path

from bridge.train.data import DATA_DIR


def word_pools() -> dict[str, set[str]]:
    """Published evaluation word lists (models/data/word-lists/SOURCE.md)."""
    wl = DATA_DIR / "word-lists"
    pools = {
        "Venkatesh HQ": set((wl / "venkatesh2022_hq_words.txt").read_text().split()),
        "Venkatesh HR": set((wl / "venkatesh2022_hr_words.txt").read_text().split()),
    }
    with open(wl / "llm2fx_socialfx_eval_words.csv", newline="") as fh:
        pools["LLM2Fx EQ"] = {r["word"] for r in csv.DictReader(fh) if r["fx_type"] == "eq"}
    return pools


def _cv_table(cv: dict) -> str:
    pools = list(cv["pools"])
    methods = list(cv["pools"][pools[0]])
    head = "| method | " + " | ".join(f"{p} (n={cv['pool_sizes'][p]}) r / MAE" for p in pools) + " |"
    lines = [head, "|" + "---|" * (len(pools) + 1)]
    for m in methods:
        cells = [f"{cv['pools'][p][m].r:.3f} / {cv['pools'][p][m].mae:.3f}" for p in pools]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_model_card(path: Path, report: dict) -> None:
    d, q, s = report["data"], report["int8_vs_fp32"], report["shrinkage"]
    files = "\n".join(f"| `{name}` | {size / 1e6:.3f} MB |" for name, size in report["files"].items()
                      if name != "README.md")
    enc = report.get("encoder", {})
    enc_line = ("Export check: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in enc.items()) + ".") if enc else ""
    text = f"""# eqbridge model card

Written by `eqbridge train` (bridge/train/); every number below was measured by that run.
Rebuild everything with `pip install -e '.[train]' && eqbridge train`.

## What it does
Text (a descriptor or a phrase, English or Spanish) to an EQ curve: gains in dB at the 40 ERB band
centres 20 Hz-19.7 kHz. Phrases are parsed into weighted descriptors (`bridge/text.py`: "less",
"not", "a bit", "very", "and", "but", comparatives, "más", "menos", "un poco"); each descriptor is
answered from the crowd data when known, through a Spanish-English lexicon, or by the encoder + head.

## Files
| file | size |
|---|---|
{files}

- `text-encoder.int8.onnx`, `tokenizer.json`: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0,
  see `NOTICE-all-MiniLM-L6-v2.txt`), exported to ONNX with mean pooling and L2 normalisation in the
  graph; each MatMul's input channels are rescaled SmoothQuant-style (alpha 0.8, scales from generic
  calibration phrases that are not training descriptors; exact in fp32), then the weights are
  quantised to int8 per channel (`onnxruntime.quantization.quantize_dynamic`). {enc_line}
- `head.npz`: the vocabulary (descriptor -> shrunk shape and dB size) and the head (kernel ridge).

## Data (vendored in `models/data/`, see each SOURCE.md)
- SocialFX/SocialEQ EQ: {d['socialfx_rows']} usable rows (z-scored 40-band shapes, English and Spanish).
- SAFE-DB EQ: {d['safe_rows']} usable rows, 5-band settings rendered to dB at the 40 centres with the
  RBJ/JUCE biquads at 44.1 kHz; z-scored for shape; the median dB size {d['safe_size_median_db']:.2f} dB
  (std across the 40 centres) calibrates the default amount. Junk descriptors (test, ids,
  instruments) are dropped.
- Audealize word means fill in words whose SocialFX rows are not in this copy.
- {d['words']} descriptors after cleaning and merging inflections ({d['english_words']} English, {d['spanish_words']} Spanish).
- Licences: SocialFX and SAFE-DB data carry no licence statement (research use; confirm with the
  authors before commercial redistribution); Audealize data sits in a GPL-2.0 repository. The
  derived `head.npz` inherits these caveats. eqbridge code: MIT.

## Method
- Each descriptor's target is the mean of its people's z-scored shapes (SocialFX rows weighted by
  their ratings consistency, 0.25 + 0.75 c; each source's mean weighted by sqrt(n)).
- Head: embedding of "{report.get('template', 'a {} sound')}" -> shape by weighted kernel ridge regression over the
  known English words with the smooth kernel exp((cos - 1) / T) (no hard neighbour cut-off: a kNN
  head scored about the same in CV but moved too much under int8 noise); T and the ridge strength
  chosen by word-level cross-validation ({report['head_params']}).
- Known words lean on their own data and shrink toward the head's out-of-fold prediction as their
  data gets thin: answer = n/(n+k) data + k/(n+k) head, k = {s['k']} (chosen by simulating words
  with few people; r per k: {', '.join(f'{kk}: {v:.3f}' for kk, v in s['table'].items())}).
- dB size per word: its SAFE median, shrunk the same way toward the global median.

## Cross-validated numbers (word-level 10-fold; a test word never appears in training in any spelling)
Mean Pearson r and MAE (z-score units) between predicted and held-out word-mean shapes, English words.

{_cv_table(report['cv'])}

## int8 against fp32
Embeddings of the {report['encoder_cosine']['n']} training texts, int8 against fp32: cosine mean
{report['encoder_cosine']['mean']:.4f}, 1st percentile {report['encoder_cosine']['p1']:.4f}, min {report['encoder_cosine']['min']:.4f}.
On all {q['n_words']} training descriptors, the shipped curve (data shrunk toward the head) from int8
embeddings against the same from fp32 (torch) embeddings: r min {q['min_r']:.4f} (worst: {q['worst_word']}),
mean {q['mean_r']:.4f}. The head alone (what an unseen word gets): r mean {q['head_mean_r']:.4f}, 1st
percentile {q['head_p1_r']:.4f}, min {q['head_min_r']:.4f} (the low ones are nearly flat predictions,
where r is unstable).
The head is the best-scoring setting whose shipped curves pass r >= 0.99 on every training word.

## Macro knobs (latent space)
PCA over all {d['socialfx_rows'] + d['safe_rows']} crowd shapes; held-out explained variance (5 folds by word) for
1..8 dimensions: {', '.join(f'{e:.3f}' for e in report['latent']['heldout_explained'])}. The smallest of 2-4
dimensions reaching 0.8 is used ({report['latent']['dims']}; 4 if none does). Knobs (named by the well-attested
words at each end): {'; '.join(f'{i + 1}: {n}' for i, n in enumerate(report['latent']['names']))}.
Shipped as `latent-encoder.onnx` / `latent-decoder.onnx` (MatMul + Add) and `latent-knobs.json`.

## Limits
- Most descriptors have one or two people behind them: their held-out means are noisy, which caps r.
- MiniLM is an English model; Spanish descriptors outside the data go through a small lexicon
  (`bridge/text.py`), and a Spanish word that is in neither falls back to the English encoder.
"""
    path.write_text(text, encoding="utf-8")
