"""Word-level k-fold cross-validation of the text -> shape head, beside its baselines.

Prints mean Pearson r and MAE between predicted and held-out word-mean shapes for: the chosen
head, the global mean curve, the nearest known word, and ridge on the same embeddings; on all
English words, on words with >= 3 people, and on the Venkatesh 2022 HQ/HR and LLM2Fx word pools.
Also the Spanish/English agreement of the shipped answers.  Run: python bench/model_quality.py
"""

from __future__ import annotations

import json

import numpy as np

from bridge.model import TextToCurve
from bridge.model.encoder import TextEncoder
from bridge.model.files import HEAD_FILE, models_dir
from bridge.train import evaluate as E
from bridge.train import head as H
from bridge.train.pipeline import TEMPLATE, cross_validation_report, load_corpus

SPANISH_PAIRS = [("suave", "soft"), ("pesado", "heavy"), ("tranquilo", "calm"), ("fuerte", "loud"),
                 ("oscuro", "dark"), ("frío", "cold"), ("caliente", "hot"), ("brillante", "bright"),
                 ("cálido", "warm"), ("áspero", "harsh"), ("turbio", "muddy"), ("nítido", "crisp")]


def main() -> None:
    _, table, _ = load_corpus()
    en = np.array([lang == "en" for lang in table.langs])
    words = [w for w, e in zip(table.words, en) if e]
    x = TextEncoder(models_dir(), threads=2).embed_many([TEMPLATE.format(w) for w in words])
    y, counts = table.shapes[en], table.counts[en].astype(float)
    folds = H.word_folds(len(words), E.N_FOLDS, E.SEED)
    ranked = E.rank_heads(x, y, counts, folds)
    shipped = json.loads(str(np.load(models_dir() / HEAD_FILE)["params"]))
    oof = next(o for p, _, o in ranked if p == shipped)
    cv = cross_validation_report(words, x, y, counts, folds, oof)
    print(f"best head in the grid: {ranked[0][0]}, r on words with >= 3 people {ranked[0][1].r:.3f}")
    print(f"word-level {E.N_FOLDS}-fold CV of the shipped head {shipped} (best that passes the int8 check)")
    print(f"{'pool':<14}{'n':>5}  " + "".join(f"{m:>22}" for m in cv["pools"]["all"]))
    for pool, scores in cv["pools"].items():
        cells = "".join(f"{f'r {s.r:.3f} / MAE {s.mae:.3f}':>22}" for s in scores.values())
        print(f"{pool:<14}{cv['pool_sizes'][pool]:>5}  {cells}")
    model = TextToCurve()
    print("\nSpanish vs English answers (shipped model), Pearson r:")
    for es, eng in SPANISH_PAIRS:
        a, b = model.curve(es).gains_db, model.curve(eng).gains_db
        src = model.curve(es).terms[0].source
        print(f"  {es:>10} / {eng:<8} r = {np.corrcoef(a, b)[0, 1]:+.3f}   ({src})")


if __name__ == "__main__":
    main()
