"""Does the profile learn a user's meaning? Simulated users from individual SocialFX sessions.

Each SocialFX row of an English word with >= 5 rows is one "user" with their own curve for that
word. The crowd answer for that user is the mean shape of the word's OTHER rows (the session held
out), so the crowd never saw the user. The user then keeps k = 0, 1, 3, 5 paraphrases (in order:
"W sound", "a bit W", "W tone", "more W", "very W"), each kept as their own curve at the size the
phrase asks for (0.5x for "a bit", 1.5x for "very": what turning the knobs from the answer gives),
into a real SQLite profile. Then they ask for "W"; we report the mean Pearson r between the
personalized answer and the user's own curve, beside the crowd's r. Also shown: the shipped
model's answer (TextToCurve, which WAS trained with every session, so it flatters the crowd).

A second, harder run keeps the user's curve under the 5 known English words nearest to W in
embedding space instead (other words, e.g. a user's own "warm" kept as "hot", "cozy", ...), so
only the embedding neighbourhood carries it over to W.

The users that matter are those whose meaning differs from the crowd: the table also reports
users whose own curve correlates below 0.5 with the held-out crowd.

Run: python bench/personalization.py
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from bridge.model import TextToCurve
from bridge.personalize import personalize
from bridge.profile import ProfileStore
from bridge.text import parse_phrase
from bridge.train.data import load_socialfx, zscore

MIN_ROWS = 5
KS = (0, 1, 3, 5)
PARAPHRASES = ("{} sound", "a bit {}", "{} tone", "more {}", "very {}")
"""Same descriptor, other wording (the grammar reduces all of these to W)."""
NEIGHBOURS = "neighbours"
"""Harder: the user keeps their curve under the 5 known English words nearest to W in embedding
space (W itself excluded), then asks for W: only the embedding neighbourhood can carry it over."""
SIZE_DB = 3.0  # a typical dB std of an answer at the default amount; r does not depend on it


def r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def main() -> None:
    for title, paraphrases in (("paraphrases (modifiers + 'W sound', 'W tone')", PARAPHRASES),
                               ("harder: the 5 nearest other words in embedding space", NEIGHBOURS)):
        print(f"== keeps of {title}")
        run(paraphrases)
        print()


def run(paraphrases: tuple[str, ...]) -> None:
    samples = [s for s in load_socialfx() if s.lang == "en"]
    by_word: dict[str, list] = defaultdict(list)
    for s in samples:
        by_word[s.word].append(s)
    words = sorted(w for w, rows in by_word.items() if len(rows) >= MIN_ROWS)
    model = TextToCurve()
    embed = lru_cache(maxsize=None)(model.phrase_embedding)
    vocab = [w for w, lang in zip(model.head.words, model.head.langs)
             if lang == "en" and embed(w) is not None]  # a few vocabulary words are modifiers ("more")
    vocab_emb = np.stack([embed(w) for w in vocab])

    def kept_phrases(word: str) -> list[str]:
        if paraphrases != NEIGHBOURS:
            return [p.format(word) for p in paraphrases]
        order = np.argsort(-(vocab_emb @ embed(word)))
        return [vocab[j] for j in order if vocab[j] != word][:max(KS)]

    results = defaultdict(list)  # key -> list of r per user
    weights = defaultdict(list)
    differs = []
    with tempfile.TemporaryDirectory() as tmp, ProfileStore(Path(tmp) / "bench.sqlite3") as store:
        for word in words:
            rows = by_word[word]
            shipped = model.curve(word).gains_db
            for i, user in enumerate(rows):
                others = np.array([s.shape * s.weight for j, s in enumerate(rows) if j != i])
                crowd = zscore(others.sum(axis=0)) * SIZE_DB
                mine = user.shape  # z-scored
                differs.append(r(crowd, mine) < 0.5)
                results["shipped"].append(r(shipped, mine))
                store.forget()
                kept, phrases = 0, kept_phrases(word)
                for k in KS:
                    while kept < k:
                        phrase = phrases[kept]
                        size = abs(parse_phrase(phrase)[0].weight)
                        store.keep(phrase, embed(phrase), mine * SIZE_DB * size, 0.5, "bench")
                        kept += 1
                    answer, why = personalize(word, embed(word), crowd, store)
                    results[k].append(r(answer, mine))
                    w = 0.0 if "pulled" not in why else float(why.split("pulled ")[1].split("%")[0]) / 100
                    weights[k].append(w)

    differs = np.array(differs)
    n = len(differs)
    print(f"SocialFX English words with >= {MIN_ROWS} rows: {len(words)}; users (sessions): {n}, "
          f"of which {differs.sum()} differ from the held-out crowd (r < 0.5)")
    print(f"{'answer':<34}{'all users':>12}{'differing':>12}{'mean pull w':>14}")
    print(f"{'shipped model (saw the user)':<34}{np.mean(results['shipped']):>12.3f}"
          f"{np.mean(np.array(results['shipped'])[differs]):>12.3f}")
    for k in KS:
        vals = np.array(results[k])
        label = "crowd, user held out (k = 0)" if k == 0 else f"after {k} keep{'s' if k > 1 else ''} of paraphrases"
        print(f"{label:<34}{vals.mean():>12.3f}{vals[differs].mean():>12.3f}{np.mean(weights[k]):>14.2f}")
    gain3 = np.mean(results[3]) - np.mean(results[0])
    print(f"\ngain in mean r after 3 keeps: {gain3:+.3f} (target +0.2); "
          f"differing users: {np.mean(np.array(results[3])[differs]) - np.mean(np.array(results[0])[differs]):+.3f}")


if __name__ == "__main__":
    main()
