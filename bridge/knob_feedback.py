"""Knob feedback: what each control surface shows, so the knobs' values go back only where they differ.

A surface's faders and LED rings should follow the knobs when something other than the surface
moves them: a phrase (macros back to 0.5), undo and redo, reset, a target switch, another surface,
an endless encoder (which knows no value of its own). Echoing a move back to the surface that
made it is noise at best, and a motor fader fighting the hand at worst. So for each surface
`ShownKnobs` keeps the value it is known to show: the last one it sent (`heard`) or was sent
(`changes`), and only the differences go out.

Pure state, no sockets: the daemon keeps one for its OSC clients (`/eqbridge/amount`,
`/eqbridge/macro/<n>` with the input addresses, as TouchOSC-style layouts expect) and the MIDI
feedback keeps what it sent through its target's change detection (`bridge.midi_feedback`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable, Sequence

from bridge.session import Knobs

SURFACE_LIMIT = 64
"""Surfaces remembered (least recently heard from first out): one-shot senders such as `eqbridge
send` come from a new port each time, so an endless list would grow with every call."""


def knob_values(k: Knobs) -> tuple[float, ...]:
    """The knobs as the surfaces see them: the amount, then macro 1..n."""
    return (float(k.amount), *(float(m) for m in k.macros))


def knob_control(index: int) -> str:
    """A knob's name in `knob_values` order, as MIDI bindings and OSC addresses say it."""
    return "amount" if index == 0 else f"macro/{index}"


def knob_index(kind: str, args: tuple) -> int:
    """Which of `knob_values` a knob move (Event kind "amount" or "macro", its args) moves."""
    return 0 if kind == "amount" else int(args[0])


def by_control(values: Sequence[float]) -> dict[str, float]:
    """`knob_values` keyed by `knob_control` ("amount", "macro/1", ...), as bindings name them."""
    return {knob_control(i): float(v) for i, v in enumerate(values)}


class ShownKnobs:
    """Per surface (any hashable, e.g. an OSC sender's (host, port)): the knob values it shows."""

    def __init__(self, limit: int = SURFACE_LIMIT) -> None:
        self.limit = limit
        self._shown: OrderedDict[Hashable, dict[int, float]] = OrderedDict()

    def _of(self, surface: Hashable) -> dict[int, float]:
        shown = self._shown.get(surface)
        if shown is None:
            shown = self._shown[surface] = {}
            while len(self._shown) > self.limit:
                self._shown.popitem(last=False)
        else:
            self._shown.move_to_end(surface)
        return shown

    def heard(self, surface: Hashable, index: int, value: float) -> None:
        """`surface` set knob `index` to `value` itself: it shows that value."""
        self._of(surface)[index] = float(value)

    def changes(self, surface: Hashable, values: Sequence[float]) -> list[tuple[int, float]]:
        """The (index, value) pairs `surface` must be sent to show `values`; it is then taken to
        show them."""
        shown = self._of(surface)
        out = [(i, float(v)) for i, v in enumerate(values) if shown.get(i) != float(v)]
        shown.update(out)
        return out

    def forget(self, surface: Hashable) -> None:
        """`surface` may show anything now (it came back, it asked for everything): send all next time."""
        self._shown.pop(surface, None)
