"""`eqbridge train`: rebuild every shipped model file from the vendored data, deterministically."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from bridge.model.encoder import TextEncoder
from bridge.model.files import HEAD_FILE, LATENT_KNOBS_FILE, models_dir
from bridge.text import SPANISH_TO_ENGLISH, known_form, strip_accents
from bridge.train import data as D
from bridge.train import evaluate as E
from bridge.train import head as H
from bridge.train.latent import build_latent

TEMPLATE = "a {} sound"
"""Words are embedded inside a short sentence: it puts them in their audio sense and measured
better in word-level CV than the bare word (see the model card)."""

Progress = Callable[[str], None]


class Steps:
    """A plain progress display: numbered steps with their duration."""

    def __init__(self, total: int, out: Progress):
        self.total, self.out, self.i, self.t0 = total, out, 0, time.perf_counter()

    def start(self, what: str) -> None:
        self.i += 1
        self.t0 = time.perf_counter()
        self.out(f"[{self.i}/{self.total}] {what} ...")

    def done(self, detail: str = "") -> None:
        self.out(f"      done in {time.perf_counter() - self.t0:.1f} s {detail}".rstrip())


def make_lemma(known: set[str]) -> Callable[[str], str]:
    """Map inflections onto a known base ("brighter" -> "bright"), so folds split by word family."""
    def lemma(word: str) -> str:
        return known_form(word, known.__contains__, base_only=True) or word
    return lemma


def head_text(word: str, lang: str) -> str | None:
    """What the English encoder should read for a word: Spanish goes through the lexicon, and a
    Spanish word without an entry gets no embedding (MiniLM does not read Spanish)."""
    if lang == "en":
        return word
    return SPANISH_TO_ENGLISH.get(word) or SPANISH_TO_ENGLISH.get(strip_accents(word))


def load_corpus():
    samples = D.load_socialfx() + D.load_safe()
    audealize = D.load_audealize()
    lemma = make_lemma({s.word for s in samples} | {a["word"] for a in audealize})
    table = D.merge_samples(samples, audealize, lemma)
    rows = defaultdict(list)
    for s in samples:
        rows[lemma(s.word)].append(s.shape)
    return samples, table, {w: np.stack(r) for w, r in rows.items()}


def run_train(out_dir: Path | None = None, *, export: bool = True, progress: Progress = print) -> dict:
    """Export the encoder, fit and select the head, calibrate sizes, write head.npz and the card."""
    from bridge.train.card import write_model_card

    out_dir = Path(out_dir) if out_dir else models_dir()
    steps = Steps(9 if export else 8, progress)
    report: dict = {"template": TEMPLATE}
    if export:
        from bridge.train.export_encoder import export_encoder
        steps.start("exporting all-MiniLM-L6-v2 to ONNX and quantising to int8")
        report["encoder"] = export_encoder(out_dir, progress=lambda m: progress(f"      {m}"))
        steps.done()

    steps.start("loading SocialFX, SAFE-DB and Audealize; rendering SAFE settings at the 40 ERB centres")
    samples, table, rows_by_word = load_corpus()
    report["data"] = {
        "socialfx_rows": sum(s.source == "socialfx" for s in samples),
        "safe_rows": sum(s.source == "safe" for s in samples),
        "words": len(table.words), "english_words": table.langs.count("en"),
        "spanish_words": table.langs.count("es"),
        "safe_size_median_db": float(np.median([s.size_db for s in samples if s.size_db is not None])),
    }
    steps.done(f"({len(samples)} curves, {len(table.words)} descriptors)")

    steps.start(f"embedding {len(table.words)} descriptors with the int8 encoder (template {TEMPLATE!r})")
    encoder = TextEncoder(out_dir, threads=2)
    head_texts = [head_text(w, lang) for w, lang in zip(table.words, table.langs)]
    x_all = encoder.embed_many([TEMPLATE.format(t or w) for t, w in zip(head_texts, table.words)])
    steps.done()

    en = np.array([lang == "en" for lang in table.langs])
    x, y, counts = x_all[en], table.shapes[en], table.counts[en].astype(np.float64)
    words_en = [w for w, e in zip(table.words, en) if e]
    folds = H.word_folds(len(words_en), E.N_FOLDS, E.SEED)

    steps.start("embedding the same texts with the fp32 reference (torch) for the int8 check")
    from bridge.train.export_encoder import reference_embeddings
    x_ref = reference_embeddings([TEMPLATE.format(t or w) for t, w in zip(head_texts, table.words)])
    cos = (x_all * x_ref).sum(1) / np.linalg.norm(x_all, axis=1) / np.linalg.norm(x_ref, axis=1)
    report["encoder_cosine"] = {"mean": float(cos.mean()), "p1": float(np.percentile(cos, 1)),
                                "min": float(cos.min()), "n": len(cos)}
    steps.done(f"(cosine int8 vs fp32: mean {cos.mean():.4f}, min {cos.min():.4f})")

    steps.start(f"selecting the head by {E.N_FOLDS}-fold word-level cross-validation ({len(E.HEAD_GRID)} settings)")
    ranked = E.rank_heads(x, y, counts, folds)
    steps.done(f"(best r = {ranked[0][1].r:.3f})")

    steps.start("shrinkage toward the head, dB sizes, and the int8-vs-fp32 check (r >= 0.99 on every word)")
    no_prior = np.array([t is None for t in head_texts])
    shapes_by_word = [rows_by_word.get(w, table.shapes[i:i + 1]) for i, w in enumerate(table.words)]
    prior_mean = (E.train_weights(counts) / E.train_weights(counts).sum()) @ y
    for params, score_, oof in ranked:
        final = H.fit_head(x, y, E.train_weights(counts), **params)
        oof_ref = H.cross_val_predict(E.head_fitter(params), x, y, E.train_weights(counts), folds, x_ref[en])
        prior_int8, prior_ref = final.predict(x_all), final.predict(x_ref)
        prior_int8[en], prior_ref[en] = oof, oof_ref  # English words: their out-of-fold prediction
        prior_int8[no_prior] = prior_ref[no_prior] = prior_mean  # Spanish outside the lexicon
        k, k_table = E.choose_shrinkage(shapes_by_word, prior_int8)
        check = int8_vs_fp32(table, prior_int8, prior_ref, k)
        progress(f"      {params}: CV r {score_.r:.3f}, int8 min r {check['min_r']:.4f} ({check['worst_word']})")
        if check["min_r"] >= 0.99:
            break
    report["head_params"] = params
    report["cv"] = cross_validation_report(words_en, x, y, counts, folds, oof)
    report["int8_vs_fp32"] = check
    answers = H.shrink(table.shapes, table.counts.astype(float), prior_int8, k)
    global_size = report["data"]["safe_size_median_db"]
    n_safe = np.array([sum(1 for s in samples if s.source == "safe" and s.word == w) for w in table.words], float)
    sizes = np.where(np.isnan(table.sizes_db), global_size,
                     (n_safe * np.nan_to_num(table.sizes_db) + k * global_size) / (n_safe + k))
    report["shrinkage"] = {"k": k, "table": k_table}
    steps.done(f"(head {params}, CV r = {report['cv']['pools']['n>=3']['eqbridge head'].r:.3f}, "
               f"k = {k}, int8 min r = {check['min_r']:.4f})")

    steps.start("building the macro-knob latent space (PCA, dims by held-out reconstruction)")
    groups = np.array([s.word for s in samples])
    report["latent"] = build_latent(np.stack([s.shape for s in samples]), groups, table.words, table.langs,
                                    table.shapes, table.counts, out_dir)
    (out_dir / LATENT_KNOBS_FILE).write_text(json.dumps(
        {"names": report["latent"]["names"], "spread": report["latent"]["spread"],
         "size_db": report["data"]["safe_size_median_db"]}, indent=1, ensure_ascii=False) + "\n")
    steps.done(f"({report['latent']['dims']} knobs: {', '.join(report['latent']['names'])})")

    steps.start(f"writing {HEAD_FILE} and the model card")
    np.savez_compressed(
        out_dir / HEAD_FILE, template=np.array(TEMPLATE), words=np.array(table.words),
        langs=np.array(table.langs), counts=table.counts, answers=answers.astype(np.float32),
        sizes_db=sizes.astype(np.float32), global_size_db=np.float32(global_size),
        keys=final.keys, coef=final.coef, bias=final.bias, temperature=np.float64(final.temperature),
        params=np.array(json.dumps(params)),
    )
    report["files"] = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
    write_model_card(out_dir / "README.md", report)
    steps.done()
    return report


def cross_validation_report(words, x, y, counts, folds, oof) -> dict:
    """Scores of the chosen head and the baselines on every word pool (same folds)."""
    from bridge.train.card import word_pools

    pools = {"all": np.ones(len(words), bool), "n>=3": counts >= 3}
    for name, pool in word_pools().items():
        pools[name] = np.array([w in pool for w in words])
    base = E.baseline_scores(x, y, counts, folds, pools)
    table = {p: {"eqbridge head": E.score("eqbridge head", oof, y, m), **{b: base[b][p] for b in base}}
             for p, m in pools.items()}
    return {"pools": table, "pool_sizes": {p: int(m.sum()) for p, m in pools.items()}}


def int8_vs_fp32(table: D.WordTable, prior_int8: np.ndarray, prior_fp32: np.ndarray, k: float) -> dict:
    """The shipped curve of every training word (its data shrunk toward the head) from int8
    embeddings against the same from the fp32 reference model; and the head alone."""
    n = table.counts.astype(float)
    r_answer = H.rowwise_pearson(H.shrink(table.shapes, n, prior_int8, k), H.shrink(table.shapes, n, prior_fp32, k))
    r_head = H.rowwise_pearson(prior_int8, prior_fp32)
    return {"min_r": float(r_answer.min()), "mean_r": float(r_answer.mean()),
            "worst_word": table.words[int(r_answer.argmin())],
            "head_min_r": float(r_head.min()), "head_p1_r": float(np.percentile(r_head, 1)),
            "head_mean_r": float(r_head.mean()), "n_words": len(table.words)}
