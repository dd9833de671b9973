"""Soft takeover (bridge.pickup): a pot moves the knob only once it has reached the knob's value."""

from bridge.pickup import PICKUP_TOLERANCE, Pickup


def test_a_pot_away_from_the_knob_waits_until_it_passes_the_value():
    p = Pickup()
    knob = 0.5  # a phrase has just reset it; the pot sits at 0.9
    assert not p.accept("m1", 0.9, knob) and p.waiting("m1", knob)
    assert not p.accept("m1", 0.7, knob)
    assert p.accept("m1", 0.45, knob)  # passed 0.5 between two messages: in control
    knob = 0.45
    assert not p.waiting("m1", knob)
    assert p.accept("m1", 0.9, knob)  # in control, even a big step follows


def test_close_enough_takes_over_and_another_move_hands_control_back():
    p = Pickup()
    assert p.accept("amount", 0.5 + PICKUP_TOLERANCE * 0.9, 0.5)  # within a step and a half
    knob = 0.5 + PICKUP_TOLERANCE * 0.9
    assert p.accept("amount", 0.2, knob)
    knob = 0.6  # an undo or an OSC move put it elsewhere: the pot must pick it up again
    assert not p.accept("amount", 0.25, knob) and p.waiting("amount", knob)
    assert p.accept("amount", 0.6 - PICKUP_TOLERANCE, knob)
    # bindings are independent
    assert not p.accept("macro/2", 0.0, 0.5)
    assert not p.waiting("macro/3", 0.5)  # never sent anything: nothing to wait for
