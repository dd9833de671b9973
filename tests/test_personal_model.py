"""TextToCurve with a real profile file: kept phrases come back, taught names work inside phrases."""

import numpy as np
import pytest

from bridge.model import TextToCurve
from bridge.profile import ProfileStore


@pytest.fixture()
def model(tmp_path):
    m = TextToCurve()
    m.profile = ProfileStore(tmp_path / "p.sqlite3")
    yield m
    m.profile.close()


def test_kept_phrase_comes_back_as_kept_also_after_restart(model, tmp_path):
    crowd = model.curve("warm").gains_db
    mine = crowd + np.linspace(-2, 2, 40)
    model.profile.keep("warm", model.phrase_embedding("warm"), mine)
    assert np.allclose(model.curve("warm").gains_db, mine)
    model.profile.close()
    model.profile = ProfileStore(tmp_path / "p.sqlite3")
    assert np.allclose(model.curve("Warm").gains_db, mine)


def test_the_amount_knob_still_works_on_a_kept_phrase(model):
    mine = model.curve("warm").gains_db + np.linspace(-2, 2, 40)
    model.profile.keep("warm", model.phrase_embedding("warm"), mine, amount=0.7)
    assert np.allclose(model.curve("warm").gains_db, mine)  # the kept curve is the new default answer
    assert np.allclose(model.curve("warm", 0.25).gains_db, 0.5 * mine)


def test_similar_phrase_is_pulled_toward_the_kept_one(model):
    crowd = model.curve("warmer").gains_db
    mine = model.curve("warm").gains_db + 3.0 * np.sin(np.linspace(0, 6, 40))
    model.profile.keep("warm", model.phrase_embedding("warm"), mine)
    bent = model.curve("a bit warm").gains_db
    assert np.abs(bent - mine).mean() < np.abs(crowd * 0.5 - mine).mean()
    assert "toward" in model.curve("a bit warm").personal or "kept" in model.curve("a bit warm").personal


def test_taught_name_works_inside_a_phrase(model):
    air = np.linspace(0, 6, 40)
    model.profile.teach("my vocal air", air)
    ans = model.curve("my vocal air but less harsh")
    assert ans.terms[0].source == "taught"
    assert np.allclose(ans.gains_db, air - model.curve("harsh").gains_db)


def test_cli_curve_answers_with_a_profile(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from bridge.profile import open_profile

    mine = np.linspace(-3, 3, 40)
    with open_profile("me", tmp_path) as store:
        store.teach("my vocal air", mine)
    env = dict(os.environ, EQBRIDGE_PROFILE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "bridge", "curve", "--json", "--profile", "me", "my vocal air"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert np.allclose(json.loads(out.stdout)["gains_db"], mine, atol=1e-3)
    missing = subprocess.run([sys.executable, "-m", "bridge", "curve", "--profile", "nobody", "warm"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2 and "nobody" in missing.stderr and "Traceback" not in missing.stderr
