"""What each surface shows (bridge.knob_feedback.ShownKnobs): only differences go out."""

from bridge.knob_feedback import ShownKnobs, knob_control, knob_values
from bridge.session import Knobs


def test_only_what_a_surface_does_not_show_is_sent():
    shown = ShownKnobs()
    values = knob_values(Knobs(amount=0.2, macros=(0.5, 0.7)))
    assert values == (0.2, 0.5, 0.7) and [knob_control(i) for i in range(3)] == ["amount", "macro/1", "macro/2"]
    shown.heard("a", 0, 0.2)
    assert shown.changes("a", values) == [(1, 0.5), (2, 0.7)]
    assert shown.changes("a", values) == []
    assert shown.changes("b", values) == [(0, 0.2), (1, 0.5), (2, 0.7)]
    assert shown.changes("a", (0.2, 0.5, 0.1)) == [(2, 0.1)]
    shown.forget("a")
    assert len(shown.changes("a", values)) == 3


def test_surfaces_beyond_the_limit_are_forgotten_least_recent_first():
    shown = ShownKnobs(limit=3)
    for who in ("a", "b", "c"):
        shown.changes(who, (0.5,))
    shown.heard("a", 0, 0.5)  # "a" heard from again: "b" is now the oldest
    shown.changes("d", (0.5,))
    assert shown.changes("a", (0.5,)) == [] and shown.changes("c", (0.5,)) == []
    assert shown.changes("b", (0.5,)) == [(0, 0.5)]
