"""The phrase grammar and word cleaning (pure functions, no model)."""

import pytest

from bridge.errors import PhraseError
from bridge.text import MAX_PHRASE_CHARS, check_phrase, known_form, parse_phrase


def terms(phrase):
    return [(t.text, t.weight) for t in parse_phrase(check_phrase(phrase))]


def test_clauses_and_modifiers_compose():
    assert terms("warmer, less muddy") == [("warmer", 1.0), ("muddy", -1.0)]
    assert terms("a bit brighter but less harsh") == [("brighter", 0.5), ("harsh", -1.0)]
    assert terms("a bit less boomy") == [("boomy", -0.5)]
    assert terms("very bright and not thin") == [("bright", 1.5), ("thin", -1.0)]


def test_spanish_modifiers():
    assert terms("más oscuro y un poco suave") == [("oscuro", 1.0), ("suave", 0.5)]
    assert terms("menos brillante") == [("brillante", -1.0)]


def test_case_and_whitespace_are_cleaned():
    assert terms("  WARM\t and   Bright ") == [("warm", 1.0), ("bright", 1.0)]


def test_generic_nouns_drop_out():
    assert terms("a warm tone") == [("warm", 1.0)]
    assert terms("bright sound, less muddy eq") == [("bright", 1.0), ("muddy", -1.0)]
    assert terms("tone") == [("tone", 1.0)]  # alone it is the only word there is


def test_only_modifiers_gives_no_terms():
    assert parse_phrase(check_phrase("less")) == []


def test_inflections_find_the_known_base():
    known = {"warm", "muddy", "fat", "bright"}.__contains__
    assert known_form("warmer", known) == "warm"
    assert known_form("muddier", known) == "muddy"
    assert known_form("fatter", known) == "fat"
    assert known_form("brightness", known) == "bright"
    assert known_form("bright", known, base_only=True) is None
    assert known_form("glassy", known) is None


@pytest.mark.parametrize("bad", ["", "   \t\n", "!!! ???", "🎸🔥", "12345", "x" * (MAX_PHRASE_CHARS + 1),
                                 "тёплый", "温暖", None, 42])
def test_bad_phrases_raise_a_typed_error(bad):
    with pytest.raises(PhraseError):
        check_phrase(bad)
