"""Words and phrases: cleaning, inflection variants, and the modifier grammar.

A phrase is split into clauses ("warmer, less muddy", "bright but less harsh", "más oscuro y
un poco suave"); each clause is a descriptor with a signed weight built from its modifiers.
The model answers each descriptor and adds the weighted curves, so phrases compose instead of
being embedded whole (an embedding of "less warm" is close to "warm").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from bridge.errors import PhraseError

MAX_PHRASE_CHARS = 200
"""Longest phrase accepted: a DAW text box or OSC string longer than this is not a description."""

# Modifiers: a word sequence -> factor on the descriptor's curve. Longest match wins.
# English and Spanish; "less"/"menos"/"not"/"no" invert, hedges scale down, intensifiers up.
MODIFIERS: dict[tuple[str, ...], float] = {
    ("not",): -1.0, ("no",): -1.0, ("less",): -1.0, ("fewer",): -1.0, ("without",): -1.0,
    ("not", "so"): -0.5, ("not", "as"): -0.5, ("not", "too"): -0.5,
    ("a", "bit"): 0.5, ("a", "little"): 0.5, ("a", "little", "bit"): 0.4, ("a", "touch"): 0.4,
    ("slightly",): 0.5, ("somewhat",): 0.6, ("kind", "of"): 0.6, ("kinda",): 0.6, ("sort", "of"): 0.6,
    ("a", "tad"): 0.4, ("barely",): 0.25, ("mildly",): 0.5, ("subtly",): 0.4, ("subtle",): 0.4,
    ("more",): 1.0, ("very",): 1.5, ("much",): 1.5, ("really",): 1.5, ("way",): 1.5,
    ("a", "lot"): 1.5, ("lots",): 1.5, ("super",): 1.75, ("extremely",): 2.0, ("too",): 1.25,
    ("quite",): 1.25, ("pretty",): 1.1, ("so",): 1.25, ("even",): 1.25, ("lot",): 1.5,
    ("totally",): 1.75, ("completely",): 1.75, ("heavily",): 1.75, ("strongly",): 1.75,
    ("make", "it"): 1.0, ("sound",): 1.0, ("sounding",): 1.0, ("it",): 1.0, ("bit",): 0.5,
    ("add",): 1.0, ("some",): 0.75, ("remove",): -1.0, ("cut",): -1.0, ("reduce",): -1.0,
    ("less", "of"): -1.0, ("more", "of"): 1.0, ("the",): 1.0, ("a",): 1.0, ("an",): 1.0,
    # Spanish
    ("más",): 1.0, ("menos",): -1.0, ("un", "poco"): 0.5, ("un", "poquito"): 0.4, ("poco",): 0.5,
    ("muy",): 1.5, ("mucho",): 1.5, ("mucha",): 1.5, ("muchísimo",): 2.0, ("bastante",): 1.25,
    ("demasiado",): 1.25, ("ligeramente",): 0.5, ("algo",): 0.6, ("sin",): -1.0, ("nada",): -1.0,
    ("un", "poco", "más"): 0.5, ("un", "poco", "menos"): -0.5, ("lo",): 1.0, ("el",): 1.0,
    ("la",): 1.0, ("un",): 1.0, ("una",): 1.0, ("sonido",): 1.0, ("tan",): 1.25,
}
_MAX_MODIFIER_WORDS = max(len(k) for k in MODIFIERS)

# Clause separators: "," ";" "/" "+" "&" and the conjunctions. "but" starts a contrast: a clause
# after it keeps its own modifiers ("bright but less harsh").
_SPLIT_RE = re.compile(r"\s*(?:[,;/+&]|\band\b|\bbut\b|\bwith\b|\bplus\b|\by\b|\be\b|\bpero\b|\bcon\b)\s*")
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)

# Spanish descriptors that the crowd data lacks or has too little of: an English timbre word
# with the same meaning (hand-made from standard dictionaries; audio senses, not literal ones).
SPANISH_TO_ENGLISH: dict[str, str] = {
    "cálido": "warm", "calido": "warm", "cálida": "warm", "caliente": "hot", "templado": "warm",
    "brillante": "bright", "brillo": "bright", "luminoso": "bright", "claro": "clear", "clara": "clear",
    "oscuro": "dark", "oscura": "dark", "sombrío": "dark", "opaco": "dull", "apagado": "dull",
    "suave": "soft", "blando": "soft", "duro": "hard", "dura": "hard", "áspero": "harsh",
    "aspero": "harsh", "estridente": "shrill", "chillón": "shrill", "chillon": "shrill",
    "agudo": "sharp", "aguda": "sharp", "grave": "deep", "profundo": "deep", "profunda": "deep",
    "pesado": "heavy", "pesada": "heavy", "ligero": "light", "ligera": "light", "liviano": "light",
    "tranquilo": "calm", "tranquila": "calm", "calmado": "calm", "sereno": "serene",
    "fuerte": "loud", "ruidoso": "noisy", "silencioso": "quiet", "bajo": "low", "alto": "loud",
    "frío": "cold", "frio": "cold", "fría": "cold", "fresco": "cool", "fresca": "cool",
    "limpio": "clean", "limpia": "clean", "sucio": "dirty", "sucia": "dirty", "turbio": "muddy",
    "embarrado": "muddy", "fangoso": "muddy", "nítido": "crisp", "nitido": "crisp",
    "crujiente": "crunchy", "metálico": "tinny", "metalico": "tinny", "hueco": "hollow",
    "vacío": "hollow", "lleno": "full", "llena": "full", "gordo": "fat", "gorda": "fat",
    "grueso": "thick", "gruesa": "thick", "delgado": "thin", "delgada": "thin", "fino": "thin",
    "fina": "thin", "aireado": "airy", "aéreo": "airy", "aereo": "airy", "aire": "airy",
    "rico": "rich", "rica": "rich", "dulce": "sweet", "triste": "sad", "alegre": "happy",
    "feliz": "happy", "agresivo": "aggressive", "agresiva": "aggressive", "amable": "gentle",
    "delicado": "delicate", "delicada": "delicate", "cristalino": "crystal", "puro": "pure",
    "seco": "dry", "seca": "dry", "húmedo": "wet", "humedo": "wet", "mojado": "wet",
    "lejano": "distant", "distante": "distant", "cercano": "close", "presente": "present",
    "presencia": "presence", "potente": "powerful", "poderoso": "powerful", "débil": "weak",
    "debil": "weak", "nasal": "nasal", "sordo": "muffled", "amortiguado": "muffled",
    "retumbante": "boomy", "estruendoso": "boomy", "cavernoso": "boomy", "enlatado": "tinny",
    "telefónico": "telephone", "chispeante": "sparkly", "brillo alto": "bright", "radiante": "bright",
    "resplandeciente": "bright", "relajante": "relaxing", "relajado": "relaxed", "melancólico": "melancholy",
    "romántico": "romantic", "suavecito": "soft", "oscurito": "dark", "cálidos": "warm",
}

_ENGLISH_STOPWORDS = frozenset({"and", "but", "the", "a", "an", "of", "with", "it", "to"})

GENERIC_NOUNS = frozenset({"sound", "sounds", "sounding", "tone", "tones", "timbre", "feel", "vibe",
                           "character", "quality", "eq", "overall", "sonido", "tono", "timbre"})
"""Words that name the thing described, not a quality of it: "a warm tone" means "warm"."""


@dataclass(frozen=True)
class Term:
    """One descriptor of a phrase and the factor its modifiers give it (negative inverts)."""

    text: str
    weight: float


def normalize_text(text: str) -> str:
    """Case-fold, unify Unicode (NFC) and whitespace; keep accents (they carry Spanish meaning)."""
    text = unicodedata.normalize("NFC", text).replace("’", "'")
    return " ".join(text.casefold().split())


def strip_accents(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


def check_phrase(phrase: object) -> str:
    """Validate a phrase and return it normalized, or raise PhraseError saying what is wrong."""
    if not isinstance(phrase, str):
        raise PhraseError(f"a phrase must be text, got {type(phrase).__name__}")
    if len(phrase) > MAX_PHRASE_CHARS:
        raise PhraseError(f"phrase is {len(phrase)} characters; the limit is {MAX_PHRASE_CHARS}")
    text = normalize_text(phrase)
    if not text:
        raise PhraseError("phrase is empty")
    letters = [c for c in text if c.isalpha()]
    if not letters:
        raise PhraseError(f"phrase {phrase!r} has no words (only punctuation, digits or symbols)")
    foreign = [c for c in letters if not _is_latin(c)]
    if foreign:
        raise PhraseError(
            f"phrase {phrase!r} uses a script eqbridge does not read ({unicodedata.name(foreign[0], '?')}); "
            "English and Spanish in Latin letters are supported"
        )
    return text


def _is_latin(c: str) -> bool:
    return unicodedata.name(c, "").startswith("LATIN")


def inflection_candidates(word: str) -> list[str]:
    """Base forms a word may be an inflection of, most specific first ("muddier" -> "muddy")."""
    out = [word]
    if word.endswith("ier") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("iest") and len(word) > 5:
        out.append(word[:-4] + "y")
    for suffix in ("er", "est", "ness", "ly", "s", "ish", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            out.append(stem)
            if len(stem) > 2 and stem[-1] == stem[-2]:
                out.append(stem[:-1])  # fatter -> fat
            out.append(stem + "e")  # wider -> wide
    if word.endswith("th") and len(word) > 4:
        out.append(word[:-2])  # warmth -> warm
    if word.endswith("a") and len(word) > 3:
        out.append(word[:-1] + "o")  # Spanish feminine -> masculine (oscura -> oscuro)
    if word.endswith(("os", "as")) and len(word) > 4:
        out.append(word[:-1])
        out.append(word[:-2] + "o")
    if word.endswith("ísimo") or word.endswith("isimo"):
        out.append(word[:-5] + "o")
    if word.endswith("ísima") or word.endswith("isima"):
        out.append(word[:-5] + "a")
    accentless = strip_accents(word)
    if accentless != word:
        out.append(accentless)
    return list(dict.fromkeys(out))


_LETTERS = "abcdefghijklmnopqrstuvwxyzáéíóúñü"


def spelling_variants(word: str) -> set[str]:
    """Every string one edit away (delete, swap, replace, insert): catches typos like "brigth".
    Only for words of 5+ letters, where one edit rarely turns one real word into another."""
    if len(word) < 5 or not word.isalpha():
        return set()
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return (deletes | swaps | replaces | inserts) - {word}


def known_form(word: str, known: Callable[[str], bool], *, base_only: bool = False) -> str | None:
    """The form of `word` that `known` accepts: the word itself (unless `base_only`), else an
    inflection or accent-free spelling of it ("warmer" -> "warm", "calido" -> "cálido")."""
    candidates = inflection_candidates(word)
    for cand in candidates[1:] if base_only else candidates:
        if known(cand):
            return cand
    return None


def parse_phrase(text: str) -> list[Term]:
    """Split a normalized phrase into weighted descriptor terms.

    Modifiers at the front of a clause multiply (e.g. "a bit less" = 0.5 x -1). A clause that is only
    modifiers ("more", "less") is dropped. Comparatives stay as written: the model resolves them.
    """
    terms: list[Term] = []
    for clause in _SPLIT_RE.split(text):
        words = _TOKEN_RE.findall(clause)
        if not words:
            continue
        weight, i = 1.0, 0
        while i < len(words):
            for n in range(min(_MAX_MODIFIER_WORDS, len(words) - i), 0, -1):
                factor = MODIFIERS.get(tuple(words[i: i + n]))
                if factor is not None and i + n < len(words):
                    weight *= factor
                    i += n
                    break
            else:
                break
        rest = [w for w in words[i:] if w not in _ENGLISH_STOPWORDS] or words[i:]
        rest = [w for w in rest if w not in GENERIC_NOUNS] or rest
        descriptor = " ".join(rest)
        if descriptor and tuple(rest) not in MODIFIERS:
            terms.append(Term(descriptor, weight))
    return terms
