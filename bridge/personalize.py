"""Bend the crowd's answer toward one user's meaning, from what they kept (bridge.profile).

Pure functions over a ProfileStore's in-memory index (no disk reads on the hot path):

1. A phrase the user kept comes back exactly as they kept it (its latest keep), unless undos
   since that keep have used up its evidence.
2. Otherwise, kept phrases similar in meaning pull the crowd curve toward the user's versions:

       a_i  = ((s_i - T) / (1 - T)) ** P * n_i        for neighbours with cosine s_i > T
       mine = sum_i a_i * kept_i / sum_i a_i          (the user's nearby curves, weighted)
       w    = sum_i a_i / (sum_i a_i + C)             (0 = crowd, -> 1 as evidence grows)
       out  = (1 - w) * crowd + w * mine

   n_i is the phrase's evidence: its number of keeps minus UNDO_WEIGHT (0.5) per undo since its
   latest keep. One keep of a near-identical phrase gives w = 1 / (1 + C) = 0.5; three give 0.75.
   Similarity is rescaled above the threshold so that a barely-similar phrase adds almost nothing.

3. Taught names ("my vocal air") are curves the user named; `taught_curve` answers a descriptor
   that is a taught name, so TextToCurve can use it as a word inside phrases.

Curves are blended as dB curves, as kept (at the amount the user kept them): a kept "a bit warm"
pulls "warm" toward its own size too. That is the simple, explainable choice; see the report.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from bridge.errors import EqBridgeError
from bridge.profile import ProfileStore, taught_key
from bridge.text import parse_phrase

SIMILARITY_THRESHOLD = 0.7
"""Cosine at or below which a kept phrase says nothing about this one. MiniLM puts unrelated timbre
words at 0.2-0.45 and some antonyms high (warm/cold 0.76), so the bar is high and similarity is
rescaled above it: warm/cold adds 4% of a keep, warm/warmer 44%, an identical descriptor 100%."""
SIMILARITY_POWER = 2.0
PRIOR_STRENGTH = 1.0
"""C: how many perfectly similar keeps it takes to move the answer halfway to the user's version."""
MAX_NEIGHBOURS = 8


def personalize(phrase_norm: str, embedding: Any, crowd_curve: Any, store: ProfileStore | None, *,
                threshold: float = SIMILARITY_THRESHOLD, power: float = SIMILARITY_POWER,
                prior: float = PRIOR_STRENGTH, k: int = MAX_NEIGHBOURS,
                scale: float = 1.0) -> tuple[np.ndarray, str]:
    """The user's version of the crowd curve for a phrase, and one line saying why.

    A kept curve is the user's answer at the default amount (keeping folds the knobs in);
    `scale` (amount asked / default amount) lets the amount knob still work on it."""
    crowd = np.asarray(crowd_curve, dtype=np.float64).copy()
    if store is None:
        return crowd, "crowd (no profile)"
    entry = store.kept_entry(phrase_norm)
    if entry is not None and entry.evidence > 0:
        return entry.curve * scale, f"kept by you ({_times(entry.keeps)}" + (
            f", undone {entry.undos}x since)" if entry.undos else ")")
    if embedding is None:
        return crowd, "crowd (no embedding to compare with your kept phrases)"
    phrase = entry.phrase if entry is not None else None
    used = []
    for other, sim, curve, evidence in store.neighbours(embedding, k + 1):
        if other == phrase or sim <= threshold or evidence <= 0:
            continue
        a = ((min(sim, 1.0) - threshold) / (1.0 - threshold)) ** power * evidence
        used.append((other, sim, curve, evidence, a))
        if len(used) == k:
            break
    total = sum(u[4] for u in used)
    if not used or total <= 0:
        return crowd, "crowd (you kept nothing similar)"
    mine = sum(u[4] * u[2] for u in used) / total
    w = total / (total + prior)
    out = (1.0 - w) * crowd + w * mine
    top = ", ".join(f"{u[0]!r} (similarity {u[1]:.2f}, {_times(u[3])})" for u in used[:3])
    more = f" and {len(used) - 3} more" if len(used) > 3 else ""
    return out, f"crowd pulled {w:.0%} toward your {top}{more}"


def phrase_embedding(phrase_norm: str, embed: Callable[[str], np.ndarray]) -> np.ndarray | None:
    """The embedding a phrase is stored and compared under: the signed sum of its descriptors'
    embeddings, unit norm. Modifier sizes drop out ("a bit warm", "more warm" and "warm" coincide)
    and signs stay ("less warm" is the opposite of "warm", where embedding the text whole would put
    them at cosine 0.77). `embed` is e.g. TextToCurve().encoder.embed. None if no descriptor."""
    terms = parse_phrase(phrase_norm)
    if not terms:
        return None
    total = sum(np.sign(t.weight) * np.asarray(embed(t.text), dtype=np.float64) for t in terms)
    norm = float(np.linalg.norm(total))
    return (total / norm).astype(np.float32) if norm > 1e-6 else None


def personal_weight(similarities_and_evidence: list[tuple[float, float]], *,
                    threshold: float = SIMILARITY_THRESHOLD, power: float = SIMILARITY_POWER,
                    prior: float = PRIOR_STRENGTH) -> float:
    """w for given (cosine, evidence) pairs: the same formula personalize uses (for tests, docs)."""
    total = sum(((min(s, 1.0) - threshold) / (1.0 - threshold)) ** power * n
                for s, n in similarities_and_evidence if s > threshold and n > 0)
    return total / (total + prior) if total > 0 else 0.0


def taught_curve(term: Any, store: ProfileStore | None) -> np.ndarray | None:
    """The curve the user taught under this descriptor's name, or None.

    `term` is a bridge.text.Term (its .text is used) or a string. Cheap: a set lookup on the
    store's cached names; the caller applies the term's weight and the amount as for any word.
    """
    if store is None:
        return None
    text = getattr(term, "text", term)
    if not isinstance(text, str):
        return None
    names = store.taught_names()
    if not names:
        return None
    if text not in names:
        try:
            text = taught_key(text)
        except EqBridgeError:
            return None
        if text not in names:
            return None
    return store.taught(text)


def _times(n: float) -> str:
    n = float(n)
    shown = int(n) if n.is_integer() else n
    return f"{shown} keep" + ("" if n == 1 else "s")


__all__ = ["personalize", "personal_weight", "phrase_embedding", "taught_curve", "SIMILARITY_THRESHOLD", "SIMILARITY_POWER",
           "PRIOR_STRENGTH"]
