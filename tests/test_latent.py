"""Macro knobs: the shipped latent space (ONNX) moves curves relative to the answer, smoothly."""

import numpy as np
import pytest

from bridge.errors import EqBridgeError
from bridge.model import TextToCurve


@pytest.fixture(scope="module")
def model():
    return TextToCurve()


def test_knobs_have_data_derived_names(model):
    knobs = model.knobs
    assert 2 <= knobs.count <= 4
    assert all("<->" in knobs.name(i) for i in range(1, knobs.count + 1))


def test_half_is_no_change(model):
    warm = model.curve("warm").gains_db
    assert np.allclose(model.curve("warm", macros={1: 0.5, 2: 0.5}).gains_db, warm)


def test_decoder_inverts_encoder_on_the_latent_span(model):
    k = model.knobs
    z = np.arange(1.0, k.count + 1)
    assert np.allclose(k.encode(k.decode(z)), z, atol=1e-4)


def test_a_sweep_is_smooth_and_monotonic_along_its_direction(model):
    k = model.knobs
    curves = [model.curve("warm", macros={1: v}).gains_db for v in np.linspace(0, 1, 21)]
    coords = [k.encode(c)[0] for c in curves]
    steps = np.diff(coords)
    assert np.all(steps > 0) and np.allclose(steps, steps[0], rtol=1e-3)
    jumps = [np.abs(b - a).max() for a, b in zip(curves, curves[1:])]
    assert max(jumps) < 1.0  # no band moves more than 1 dB per 5 % of knob travel


@pytest.mark.parametrize("macros", [{0: 0.5}, {9: 0.5}, {1: 1.5}, {1: -0.1}])
def test_bad_knobs_raise(model, macros):
    with pytest.raises(EqBridgeError):
        model.curve("warm", macros=macros)
