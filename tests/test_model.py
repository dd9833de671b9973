"""The shipped text -> curve model: shapes, composition, calibration, Spanish, bad input, the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bridge.erb import FREQS_HZ
from bridge.errors import PhraseError
from bridge.model import TextToCurve
from bridge.train import data as D


@pytest.fixture(scope="module")
def model():
    return TextToCurve()


def r(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_units_and_shape(model):
    ans = model.curve("warm")
    assert ans.gains_db.shape == (40,) and np.allclose(ans.freqs_hz, FREQS_HZ)
    assert np.all(np.isfinite(ans.gains_db))
    # a typical word moves a few dB at the default amount, as SAFE users set them
    assert 1.0 < np.ptp(ans.gains_db) < 20.0


def test_less_and_not_invert(model):
    warm = model.curve("warm").gains_db
    assert np.allclose(model.curve("less warm").gains_db, -warm)
    assert np.allclose(model.curve("not warm").gains_db, -warm)


def test_amount_scales_monotonically(model):
    sizes = [np.abs(model.curve("bright", a).gains_db).max() for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert sizes[0] == 0.0
    assert all(b > a for a, b in zip(sizes, sizes[1:]))


def test_modifiers_scale(model):
    full = model.curve("harsh").gains_db
    assert np.allclose(model.curve("a bit harsh").gains_db, 0.5 * full)
    assert np.allclose(model.curve("very harsh").gains_db, 1.5 * full)


def test_and_adds_but_less_subtracts(model):
    a, b = model.curve("bright").gains_db, model.curve("boomy").gains_db
    assert np.allclose(model.curve("bright and boomy").gains_db, a + b)
    assert np.allclose(model.curve("bright but less boomy").gains_db, a - b)


def test_comparative_is_the_base_word(model):
    assert np.allclose(model.curve("warmer").gains_db, model.curve("warm").gains_db)
    assert np.allclose(model.curve("brighter").gains_db, model.curve("bright").gains_db)


def test_typos_find_the_known_word(model):
    assert model.curve("brigth").terms[0].resolved == "bright"
    assert model.curve("harssh").terms[0].resolved == "harsh"


def test_known_word_lands_close_to_its_data_mean(model):
    samples = D.load_socialfx() + D.load_safe()
    for word in ("warm", "bright", "harsh", "soft"):
        mean = np.mean([s.shape for s in samples if s.word == word], axis=0)
        assert r(model.curve(word).gains_db, mean) > 0.9, word


@pytest.mark.parametrize("es,en", [("suave", "soft"), ("pesado", "heavy"), ("tranquilo", "calm")])
def test_spanish_answers_like_english(model, es, en):
    assert r(model.curve(es).gains_db, model.curve(en).gains_db) >= 0.9


def test_unseen_spanish_word_goes_through_the_lexicon(model):
    ans = model.curve("más sombrío")
    assert ans.terms[0].source == "lexicon:dark"
    assert np.allclose(ans.gains_db, model.curve("dark").gains_db)


def test_spanish_gender_and_accents_find_the_data_word(model):
    assert model.curve("oscura").terms[0].resolved == "oscuro"
    assert model.curve("calido").terms[0].resolved == "cálido"


def test_unseen_words_answer_through_the_encoder(model):
    ans = model.curve("silky")
    assert ans.terms[0].source == "model" and np.ptp(ans.gains_db) > 0.1


def test_deterministic(model):
    fresh = TextToCurve()
    for phrase in ("warm", "silky shimmer", "más oscuro"):
        assert np.array_equal(model.curve(phrase).gains_db, fresh.curve(phrase).gains_db)


@pytest.mark.parametrize("bad", ["", "  ", "?!", "🎸", "x" * 500, "温暖", "less", None])
def test_bad_input_raises_phrase_error(model, bad):
    with pytest.raises(PhraseError):
        model.curve(bad)


@pytest.mark.parametrize("amount", [-0.1, 1.5, float("nan"), "loud"])
def test_bad_amount_raises_phrase_error(model, amount):
    with pytest.raises(PhraseError):
        model.curve("warm", amount)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=120)


def test_cli_json_lines():
    out = run_cli("curve", "--json", "warm", "a bit less harsh")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["text"] for line in lines] == ["warm", "a bit less harsh"]
    assert all(len(line["freqs_hz"]) == 40 and len(line["gains_db"]) == 40 for line in lines)


@pytest.mark.parametrize("bad", ["", "   ", "🎸🎸", "x" * 300, "тёплый"])
def test_cli_bad_input_is_a_message_not_a_traceback(bad):
    out = run_cli("curve", bad)
    assert out.returncode != 0
    assert "error:" in out.stderr and "Traceback" not in out.stderr


def test_cli_plot(tmp_path):
    png = tmp_path / "c.png"
    out = run_cli("curve", "--plot", str(png), "warm", "bright")
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"
