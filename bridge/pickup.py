"""Soft takeover ("pickup") for absolute knobs that cannot show a value: plain pots and faders.

A new phrase puts the macros back to 0.5, an undo moves the amount; a pot on the controller still
sits where the hand left it, say at 0.9. Without pickup the first touch makes the knob jump from
0.5 to 0.9 and the EQ with it. With pickup (a binding's `pickup: true`) the pot's moves are
ignored until it reaches the knob's value: when it comes within PICKUP_TOLERANCE of it, or passes
it between two messages. From then on it is in control, until something else moves the knob.
REAPER calls this "soft takeover" in its MIDI learn. A controller with motor faders or LED rings
does not need it: `midi.feedback` shows it the value instead.

Pure state, no I/O: the daemon's engine asks `Pickup.accept` before applying a pickup binding's
move (`Event.pickup` names the binding).
"""

from __future__ import annotations

PICKUP_TOLERANCE = 1.5 / 127.0
"""Close enough to take over: a 7-bit step and a half (a pot's value jitters by one step)."""


class Pickup:
    """Per binding: the last value its pot sent, and the knob value it set last (in control while
    the knob still has that value)."""

    def __init__(self, tolerance: float = PICKUP_TOLERANCE) -> None:
        self.tolerance = tolerance
        self._pot: dict[str, float] = {}  # binding -> the pot's last value
        self._set: dict[str, float] = {}  # binding -> the knob value it set last

    def would_accept(self, binding: str, value: float, knob: float) -> bool:
        """What `accept` would answer, changing nothing (the daemon's knob-first path asks)."""
        before = self._pot.get(binding)
        in_control = self._set.get(binding) == knob
        passed = before is not None and (before - knob) * (value - knob) <= 0.0
        return in_control or passed or abs(value - knob) <= self.tolerance

    def accept(self, binding: str, value: float, knob: float) -> bool:
        """The pot of `binding` moved to `value` while the knob is at `knob`: may it move the knob?"""
        ok = self.would_accept(binding, value, knob)
        self._pot[binding] = value
        if ok:
            self._set[binding] = value
        return ok

    def waiting(self, binding: str, knob: float) -> bool:
        """True when `binding`'s pot is not in control of a knob now at `knob` (for status)."""
        return binding in self._pot and self._set.get(binding) != knob
