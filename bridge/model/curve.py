"""Text to curve: the runtime model. Load once, answer many phrases in about a millisecond.

A phrase is parsed into weighted descriptors (bridge.text). Each descriptor is answered from
the crowd data when the vocabulary knows it (shrunk toward the head's prediction when its data
is thin), through the Spanish lexicon, or through the text encoder and the head when unseen.
The weighted shapes are summed and scaled to dB by the descriptor's calibrated size and the amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from bridge.erb import FREQS_HZ
from bridge.errors import ModelFileError, PhraseError
from bridge.model.encoder import TextEncoder
from bridge.model.files import HEAD_FILE, models_dir
from bridge.model.latent import MacroKnobs
from bridge.personalize import personalize, phrase_embedding, taught_curve
from bridge.profile import ProfileStore
from bridge.text import (SPANISH_TO_ENGLISH, check_phrase, known_form, parse_phrase,
                         spelling_variants, strip_accents)

DEFAULT_AMOUNT = 0.5
"""At the default amount a descriptor moves as much as a typical SAFE-DB user set it (a few dB)."""

MAX_GAIN_DB = 24.0
"""Curves are clipped here: stacking many intensifiers must not ask a plugin for absurd gains."""


@dataclass(frozen=True)
class TermAnswer:
    """How one descriptor of a phrase was answered (for explanations and tests)."""

    text: str
    weight: float
    resolved: str
    source: str  # "data", "model", or "lexicon:<english word>"


@dataclass(frozen=True)
class CurveAnswer:
    """A curve for a phrase: gains in dB at the 40 ERB centres, and the shape before scaling."""

    text: str
    amount: float
    freqs_hz: np.ndarray
    gains_db: np.ndarray
    terms: tuple[TermAnswer, ...]
    personal: str = "crowd"  # why the answer is what it is: the crowd's, or bent toward the user

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "amount": self.amount,
            "freqs_hz": [float(f) for f in self.freqs_hz],
            "gains_db": [round(float(g), 4) for g in self.gains_db],
            "terms": [t.__dict__ for t in self.terms],
            "personal": self.personal,
        }


class Head:
    """The trained head and vocabulary from models/head.npz (written by `eqbridge train`)."""

    def __init__(self, path: Path):
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"cannot read {path}: {exc}; run `eqbridge train`") from exc
        self.template = str(z["template"])
        self.words = [str(w) for w in z["words"]]
        self.langs = [str(x) for x in z["langs"]]
        self.index = {w: i for i, w in enumerate(self.words)}
        for w, i in list(self.index.items()):  # "calido" finds "cálido"; exact spellings win
            self.index.setdefault(strip_accents(w), i)
        self.counts = z["counts"]
        self.answers = z["answers"].astype(np.float64)  # (n, 40) shrunk shapes per known word
        self.sizes_db = z["sizes_db"].astype(np.float64)  # (n,) calibrated dB size per known word
        self.global_size_db = float(z["global_size_db"])
        self.keys, self.coef, self.bias = z["keys"], z["coef"], z["bias"]
        self.temperature = float(z["temperature"])

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """Shape for one embedding: kernel ridge over the known words (see bridge.train.head)."""
        kernel = np.exp((self.keys @ emb - 1.0) / self.temperature)
        return (kernel @ self.coef + self.bias).astype(np.float64)


class TextToCurve:
    """The one entry point from words to curves. Thread-compatible, not thread-safe (cache)."""

    def __init__(self, models_path: Path | str | None = None, *, threads: int = 1,
                 profile: ProfileStore | None = None):
        self.root = Path(models_path) if models_path else models_dir()
        self.head = Head(self.root / HEAD_FILE)
        self.encoder = TextEncoder(self.root, threads=threads)
        self._knobs: MacroKnobs | None = None
        self._descriptor = lru_cache(maxsize=4096)(self._descriptor_uncached)
        self._embed = lru_cache(maxsize=4096)(lambda d: self.encoder.embed(self.head.template.format(d)))
        self.profile = profile
        """The user's preference store: taught names work as words, kept phrases bend answers."""

    def known(self, word: str) -> bool:
        return word in self.head.index

    @property
    def knobs(self) -> MacroKnobs:
        """The macro knobs, loaded on first use (the daemon needs them; `curve` mostly does not)."""
        if self._knobs is None:
            self._knobs = MacroKnobs(self.root)
        return self._knobs

    def curve(self, phrase: str, amount: float | None = None,
              macros: Mapping[int, float] | None = None) -> CurveAnswer:
        """The curve for a phrase, with macro knobs (1-based, 0.5 = no change) turned relative to it.
        Raises PhraseError on input that is not a description."""
        amount = DEFAULT_AMOUNT if amount is None else _check_amount(amount)
        text = check_phrase(phrase)
        terms = parse_phrase(text)
        if not terms:
            raise PhraseError(f"phrase {phrase!r} has modifiers but no descriptor (e.g. 'less warm')")
        total = np.zeros(len(FREQS_HZ))
        answers = []
        for term in terms:
            taught = taught_curve(term, self.profile)
            if taught is not None:
                gains, resolved, source = taught, term.text, "taught"
            else:
                gains, resolved, source = self._descriptor(term.text)
            total += term.weight * gains
            answers.append(TermAnswer(term.text, term.weight, resolved, source))
        gains_db = total * (amount / DEFAULT_AMOUNT)
        why = "crowd"
        if self.profile is not None and self.profile.has_kept():
            gains_db, why = personalize(text, self.phrase_embedding(text), gains_db, self.profile,
                                        scale=amount / DEFAULT_AMOUNT)
        if macros:
            gains_db = self.knobs.apply(gains_db, macros)
        gains_db = np.clip(gains_db, -MAX_GAIN_DB, MAX_GAIN_DB)
        return CurveAnswer(phrase, amount, FREQS_HZ.copy(), gains_db, tuple(answers), why)

    def phrase_embedding(self, phrase: str) -> np.ndarray | None:
        """What a phrase is stored and compared under in the profile (signed sum of its descriptors)."""
        return phrase_embedding(check_phrase(phrase), self._embed)

    def _descriptor_uncached(self, descriptor: str) -> tuple[np.ndarray, str, str]:
        """Known word (or inflection) -> its data; Spanish lexicon -> the English word; a typo of a
        known word -> that word; several known words -> their mean; otherwise the encoder + head."""
        word = self._vocabulary_form(descriptor)
        if word is not None:
            return self._known(word)
        english = self._spanish(descriptor)
        if english is not None:
            gains, resolved, _ = self._descriptor(english)
            return gains, resolved, f"lexicon:{english}"
        typo = self._typo_of(descriptor)
        if typo is not None:
            return self._known(typo)
        parts = descriptor.split()
        if len(parts) > 1 and all(self._vocabulary_form(p) for p in parts):
            curves = [self._descriptor(p)[0] for p in parts]
            return np.mean(curves, axis=0), descriptor, "data"
        emb = self.encoder.embed(self.head.template.format(descriptor))
        return self.head.predict(emb) * self.head.global_size_db, descriptor, "model"

    def _known(self, word: str) -> tuple[np.ndarray, str, str]:
        i = self.head.index[word]
        return self.head.answers[i] * self.head.sizes_db[i], self.head.words[i], "data"

    def _vocabulary_form(self, word: str) -> str | None:
        """The known word `word` is a form of (itself, an inflection, an accent-free spelling)."""
        return known_form(word, self.head.index.__contains__)

    def _typo_of(self, word: str) -> str | None:
        """A known word one edit away (5+ letters), the best-attested if several."""
        typos = [c for c in spelling_variants(word) if c in self.head.index]
        return max(typos, key=lambda c: (self.head.counts[self.head.index[c]], c)) if typos else None

    @staticmethod
    def _spanish(word: str) -> str | None:
        form = known_form(word, SPANISH_TO_ENGLISH.__contains__)
        return None if form is None else SPANISH_TO_ENGLISH[form]


def _check_amount(amount: object) -> float:
    try:
        value = float(amount)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise PhraseError(f"amount must be a number in 0..1, got {amount!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise PhraseError(f"amount must be in 0..1, got {value}")
    return value


__all__ = ["CurveAnswer", "TermAnswer", "TextToCurve", "DEFAULT_AMOUNT"]
