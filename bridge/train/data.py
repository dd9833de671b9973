"""The vendored crowd data, merged into one parameter language: shapes at the 40 ERB centres.

- SocialFX/SocialEQ rows are already z-scored 40-band shapes (mind the header bug: 44 fields,
  43 names; see models/data/socialfx/SOURCE.md).
- SAFE-DB rows are 5-band parametric settings; they are rendered to dB at the same 40 centres
  with the RBJ/JUCE biquads the SAFE plugin used, z-scored for shape and their dB size kept.
- Audealize word means fill in words whose SocialFX rows are not in this copy.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.bands import BandSetting
from bridge.erb import FREQS_HZ, N_BANDS
from bridge.filters import response_db
from bridge.text import normalize_text

DATA_DIR = Path(__file__).resolve().parents[2] / "models" / "data"

SAFE_SAMPLE_RATE = 44100.0
"""The SAFE plugin ran in the user's DAW; 44.1 kHz is the common rate (not recorded in the data)."""

# Descriptors that name no timbre: tests, instruments, sources, placeholders (SAFE SOURCE.md notes
# rows 1681-1700 are mostly junk or instrument labels, and "test" has 181 rows).
JUNK_WORDS = frozenset("""
test testing default preset eq none bass1 guitar guitars bass drum drums kick snare hat hats hihat
vocal vocals vox voice piano keys synth pad organ sax trumpet horn strings violin cello mix master
radio phone re27 box kickclean bastard jammy music musica música piano hello hola yo good bad nice
dog perro game cool hero table tennis morning camino cambio practica videojuego madre lago arbol
árbol centro vehiculo vehículo deporte guerra cielo siempre pelota basketball rock love
""".split())

_JUNK_RE = re.compile(r"\d|_|\(|\)|\bmy\b|\bfor\b|^.$")


@dataclass(frozen=True)
class Sample:
    """One person's curve for one descriptor."""

    word: str
    lang: str  # "en" or "es"
    source: str  # "socialfx", "safe", "audealize"
    shape: np.ndarray  # (40,) z-scored
    size_db: float | None  # std of the dB curve across the 40 centres (SAFE only)
    weight: float
    session: int  # row index within its source: a stand-in for "one user"


def clean_descriptor(raw: str) -> str | None:
    """A descriptor as a vocabulary key, or None when it names no timbre."""
    text = normalize_text(raw).strip(" .,!?;:'\"-")
    text = re.sub(r"\s*[,+&/]\s*|\s+and\s+", " ", text).strip()
    if not text or _JUNK_RE.search(text) or len(text.split()) > 3:
        return None
    if text in JUNK_WORDS or any(w in JUNK_WORDS for w in text.split()):
        return None
    return text


def zscore(curve: np.ndarray) -> np.ndarray:
    curve = np.asarray(curve, dtype=np.float64)
    sd = curve.std(axis=-1, keepdims=True)
    return (curve - curve.mean(axis=-1, keepdims=True)) / np.where(sd > 1e-9, sd, 1.0)


def load_socialfx(path: Path | None = None) -> list[Sample]:
    """SocialFX EQ rows. The header has 43 names for 44 fields: field 1 is the word, 2 the language."""
    path = path or DATA_DIR / "socialfx" / "eq_contributions.csv"
    out: list[Sample] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for i, row in enumerate(reader):
            if len(row) != 4 + N_BANDS:
                continue
            word = clean_descriptor(row[0])
            if word is None:
                continue
            lang = "es" if row[1].startswith("Espa") else "en"
            consistency = float(row[3])
            shape = zscore(np.array(row[4:], dtype=np.float64))
            out.append(Sample(word, lang, "socialfx", shape, None, 0.25 + 0.75 * consistency, i))
    return out


def safe_settings(row: list[str]) -> list[BandSetting]:
    """The 5 bands of a SAFE EQ row (columns 5-17, see SAFE SOURCE.md); shelves have Q 0.71."""
    v = [float(x) for x in row[5:18]]
    return [
        BandSetting("low_shelf", v[1], v[0], 0.71),
        BandSetting("bell", v[3], v[2], v[4]),
        BandSetting("bell", v[6], v[5], v[7]),
        BandSetting("bell", v[9], v[8], v[10]),
        BandSetting("high_shelf", v[12], v[11], 0.71),
    ]


def load_safe(path: Path | None = None) -> list[Sample]:
    """SAFE-DB EQ rows rendered to dB at the 40 ERB centres (no header row in the CSV)."""
    path = path or DATA_DIR / "safe-db" / "SAFEEqualiserUserData.csv"
    out: list[Sample] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh)):
            word = clean_descriptor(row[1]) if len(row) >= 18 else None
            if word is None:
                continue
            try:
                settings = safe_settings(row)
            except ValueError:
                continue
            db = response_db(settings, FREQS_HZ, SAFE_SAMPLE_RATE)
            size = float(db.std())
            if size < 0.05:  # a flat setting says nothing about the word
                continue
            out.append(Sample(word, "en", "safe", zscore(db), size, 1.0, i))
    return out


def load_audealize(path: Path | None = None) -> list[dict]:
    """Audealize word means: {"word", "lang", "shape", "agreement", "num"} (shape not z-scored)."""
    path = path or DATA_DIR / "audealize" / "eqdescriptors.json"
    out = []
    for entry in json.loads(Path(path).read_text(encoding="utf-8")):
        word = clean_descriptor(entry["word"])
        if word is None:
            continue
        out.append({
            "word": word, "lang": "es" if entry["lang"].startswith("Espa") else "en",
            "shape": np.array(entry["settings"], dtype=np.float64),
            "agreement": float(entry["agreement"]), "num": int(entry["num"]),
        })
    return out


@dataclass(frozen=True)
class WordTable:
    """Per-descriptor means: the training targets of the head and the lookup table at run time."""

    words: list[str]
    langs: list[str]
    shapes: np.ndarray  # (n, 40) weighted mean of z-scored sample shapes (not re-normalized)
    counts: np.ndarray  # (n,) number of samples behind each mean
    sizes_db: np.ndarray  # (n,) median dB size where SAFE rows exist, else NaN


def merge_samples(samples: list[Sample], audealize: list[dict] | None = None,
                  lemma=None) -> WordTable:
    """Group samples by descriptor (after `lemma`, e.g. "brighter" -> "bright") into a WordTable.

    Each source's mean counts with weight sqrt(n) so SAFE's 500 "warm" rows do not drown the
    SocialFX crowd; Audealize means fill in only words with no rows here.
    """
    lemma = lemma or (lambda w: w)
    by_word: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_word[lemma(s.word)].append(s)
    words, langs, shapes, counts, sizes = [], [], [], [], []
    for word in sorted(by_word):
        group = by_word[word]
        mean, total = np.zeros(N_BANDS), 0.0
        for source in ("socialfx", "safe"):
            rows = [s for s in group if s.source == source]
            if not rows:
                continue
            w = np.array([s.weight for s in rows])
            src_mean = (w[:, None] * np.stack([s.shape for s in rows])).sum(0) / w.sum()
            mean += np.sqrt(len(rows)) * src_mean
            total += np.sqrt(len(rows))
        safe_sizes = [s.size_db for s in group if s.size_db is not None]
        words.append(word)
        langs.append("es" if sum(s.lang == "es" for s in group) * 2 > len(group) else "en")
        shapes.append(mean / total)
        counts.append(len(group))
        sizes.append(float(np.median(safe_sizes)) if safe_sizes else np.nan)
    for entry in audealize or []:
        word = lemma(entry["word"])
        if word in by_word or word in words:
            continue
        words.append(word)
        langs.append(entry["lang"])
        shapes.append(entry["shape"])
        counts.append(max(1, entry["num"] // 2))
        sizes.append(np.nan)
    return WordTable(words, langs, np.array(shapes), np.array(counts, dtype=np.int64), np.array(sizes))
