"""Session state: history, knobs, bypass, coalescing, macro curves, amount scaling."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.errors import PhraseError
from bridge.session import (HISTORY_LIMIT, MACRO_NAMES, Event, Knobs, PhraseCurves, Session,
                            SessionError, TargetState, coalesce, macro_curve)
from fakes import FakeModel


def ev(kind, *args):
    return Event(kind, tuple(args))


def new_session():
    curves = PhraseCurves(FakeModel(), default_amount=0.5, max_gain_db=24.0)
    s = Session(check_phrase=curves.check)
    s.select("t1")
    return s, curves


def test_neutral_macros_add_nothing_and_each_macro_moves_its_region():
    assert np.all(macro_curve([0.5] * len(MACRO_NAMES)) == 0)
    tilt = macro_curve([1.0, 0.5, 0.5])
    assert tilt[0] < 0 < tilt[-1]
    low = macro_curve([0.5, 1.0, 0.5])
    assert low[0] > 5 and abs(low[-1]) < 0.1
    high = macro_curve([0.5, 0.5, 0.0])
    assert high[-1] < -5 and abs(high[0]) < 0.1
    assert np.all(np.abs(np.diff(low)) < 2.0)  # smooth


def test_phrase_amount_macro_undo_redo():
    s, curves = new_session()
    assert s.apply(ev("text", "warm"))
    assert s.apply(ev("amount", 0.7))
    assert s.apply(ev("amount", 0.8))  # same knob: merged into one step
    assert s.apply(ev("macro", 1, 0.9))
    st = s.state
    assert st.knobs == Knobs("warm", 0.8, (0.9, 0.5, 0.5))
    assert len(st.history) == 4  # initial, phrase, amount, macro 1
    assert s.apply(ev("undo"))
    assert st.knobs == Knobs("warm", 0.8, (0.5, 0.5, 0.5))
    assert s.apply(ev("undo"))
    assert st.knobs == Knobs("warm", 0.5)
    assert s.apply(ev("redo"))
    assert st.knobs.amount == 0.8
    assert s.apply(ev("undo")) and s.apply(ev("undo"))
    assert not s.apply(ev("undo"))  # at the start
    assert st.knobs == Knobs()
    assert s.apply(ev("text", "bright"))  # a new branch drops the redo tail
    assert not s.apply(ev("redo"))
    assert len(st.history) == 2


def test_reset_is_undoable_and_bypass_keeps_knobs():
    s, curves = new_session()
    s.apply(ev("text", "warm"))
    s.apply(ev("reset"))
    assert s.state.knobs == Knobs()
    s.apply(ev("undo"))
    assert s.state.knobs.phrase == "warm"
    assert s.apply(ev("bypass", 1))
    assert np.all(s.target_curve(curves) == 0)
    assert not s.apply(ev("bypass", 1))
    s.apply(ev("bypass", 0))
    assert np.array_equal(s.target_curve(curves), curves.gains("warm", 0.5))


def test_bad_phrase_changes_nothing():
    s, curves = new_session()
    s.apply(ev("text", "warm"))
    with pytest.raises(PhraseError):
        s.apply(ev("text", "!!!"))
    with pytest.raises(SessionError):
        s.apply(ev("text", "   "))
    with pytest.raises(SessionError):
        s.apply(ev("macro", 9, 0.5))
    assert s.state.knobs.phrase == "warm" and len(s.state.history) == 2


def test_each_target_has_its_own_state():
    s, curves = new_session()
    s.apply(ev("text", "warm"))
    s.select("t2")
    assert s.state.knobs == Knobs()
    s.apply(ev("text", "bright"))
    s.select("t1")
    assert s.state.knobs.phrase == "warm"


def test_history_is_bounded():
    st = TargetState()
    for i in range(HISTORY_LIMIT + 50):
        st.commit(Knobs(f"p{i}"), None)
    assert len(st.history) == HISTORY_LIMIT
    assert st.knobs.phrase == f"p{HISTORY_LIMIT + 49}"


def test_coalesce_keeps_only_the_latest_phrase():
    batch = [ev("text", "a"), ev("amount", 0.1), ev("text", "b"), ev("macro", 1, 0.2), ev("text", "c")]
    out = coalesce(batch)
    assert [e.kind for e in out] == ["amount", "macro", "text"] and out[-1].args == ("c",)


def test_amount_scaling_is_exactly_the_models_answer():
    model = FakeModel()
    curves = PhraseCurves(model, default_amount=0.5, max_gain_db=24.0)
    for phrase in ("warm", "bright and airy", "less boomy"):
        for amount in (0.0, 0.13, 0.5, 0.77, 1.0):
            assert np.array_equal(curves.gains(phrase, amount), model.curve(phrase, amount).gains_db)
    calls = model.calls
    curves.gains("warm", 0.31)
    assert model.calls == calls  # a knob turn is a multiply, not a model call


def test_state_round_trips_through_json():
    s, curves = new_session()
    s.apply(ev("text", "warm"))
    s.apply(ev("macro", 2, 0.1))
    s.apply(ev("undo"))
    s2 = Session()
    s2.load_json(s.to_json())
    st = s2.states["t1"]
    assert st.knobs == s.state.knobs and st.history == s.state.history and st.position == 1


def test_a_snapshot_is_unchanged_by_later_events():
    """The daemon serialises a snapshot outside its engine lock, while events go on changing the
    session: what it writes must be the session as it was when the snapshot was taken."""
    s, _ = new_session()
    s.apply(ev("text", "warm"))
    s.apply(ev("macro", 1, 0.7))
    snap = s.snapshot()
    before = s.to_json()
    s.apply(ev("undo"))
    s.apply(ev("text", "bright"))
    s.apply(ev("bypass", 1))
    for i in range(HISTORY_LIMIT + 5):  # the history is cut at its front meanwhile
        s.apply(ev("amount", (i % 100) / 100))
    assert s.to_json() != before
    assert snap.to_json() == before


def test_last_knob_names_the_knob_moved_last():
    s, _ = new_session()
    st = s.state
    assert s.apply(ev("text", "warm")) and st.last_knob() == 0  # not a knob
    assert s.apply(ev("macro", 3, 0.6)) and st.last_knob() == 3
    assert s.apply(ev("amount", 0.7)) and st.last_knob() == 0
    assert s.apply(ev("macro", 2, 0.4)) and st.last_knob() == 2
    assert s.apply(ev("undo")) and st.last_knob() == 0  # an undo is not a knob
