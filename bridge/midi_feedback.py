"""MIDI feedback: the knobs' values back to the controller, for LED rings and motor faders.

When a phrase puts the macros back to 0.5, an undo moves the amount, or an endless encoder
nudges a knob, the controller should show it. For every `midi.map` binding the feedback sends
the knob's value in the binding's own encoding (`MidiBinding.messages`: a 7-bit CC, a 14-bit
pair, an NRPN); an endless encoder's ring gets the value as an absolute CC on its number, which
is what controllers with LED rings take (their relative mode sends ticks and shows values).

It is an `OutputTarget`, so what the surface shows is its change detection: a value goes out
only where it differs from the last one sent, or from the one the controller itself sent
(`heard`: a knob turned by hand is never echoed, so a motor fader does not fight the hand).
Bursts coalesce and a sender thread does the port I/O, off the answer's path. The port is found
by name substring like the input; when it is (re)opened, or the input reconnects (`refresh`),
everything is sent again: a controller that was unplugged has forgotten what it showed.
"""

from __future__ import annotations

from typing import Any, Sequence

from bridge.bands import HostParam
from bridge.knob_feedback import by_control
from bridge.midi_in import MidiBinding
from bridge.midi_ports import OutputPort
from bridge.targets.base import OutputTarget
from bridge.targets.midi_out import DEFAULT_MIN_INTERVAL


class MidiFeedback(OutputTarget):
    kind = "midi-feedback"

    def __init__(self, port: str, bindings: Sequence[MidiBinding], *, backend: str | None = None,
                 min_interval: float = DEFAULT_MIN_INTERVAL) -> None:
        super().__init__(min_interval=min_interval, name=f"midi-feedback:{port}")
        self.bindings = tuple(bindings)
        self.port = OutputPort(port, backend)
        self._values: tuple[float, ...] = ()  # the knobs last shown (amount, macro 1..n)
        self._opens = 0  # port.opens at the last send: a port opened since shows nothing we know
        self._reopen = False  # the controller came back: its old connection is gone, open anew

    def _params(self, values: Sequence[float]) -> list[HostParam]:
        """One HostParam per binding (key: its index) whose knob exists; normalized = the value."""
        controls = by_control(values)
        return [HostParam(str(i), controls[b.control], controls[b.control])
                for i, b in enumerate(self.bindings) if b.control in controls]

    def show(self, values: Sequence[float]) -> int:
        """Show the knobs (amount, macro 1..n: `knob_values`); returns how many bindings change."""
        self._values = tuple(values)
        return self.submit(self._params(values))

    def heard(self, control: str, value: float) -> None:
        """The controller set `control` to `value` itself: its absolute bindings show that."""
        for i, b in enumerate(self.bindings):
            if b.control == control and b.relative is None:
                self.already_has(str(i), b.wire(value))

    def refresh(self) -> None:
        """Reconnect and send everything again: the controller came back (its input reconnected),
        its port may be a new one under the old name, and it shows nothing we know."""
        self._reopen = True
        self._show_all()

    def _show_all(self) -> None:
        """Send every binding's value again, changed or not."""
        self.forget()
        if self._values:
            self.submit(self._params(self._values))

    def wire_value(self, p: HostParam) -> int:
        return self.bindings[int(p.key)].wire(p.normalized)

    def _connect(self) -> None:
        self.port.port()

    def _send(self, batch: list[tuple[HostParam, Any]]) -> int:
        if self._reopen:
            self._reopen = False
            self.port.drop()
        ccs = [m for p, wire in batch for m in self.bindings[int(p.key)].messages(wire)]
        self.port.send_cc(ccs)  # opens the port when there is none
        if self.port.opens != self._opens:  # a port new to us: the rest follows in the next flush
            self._opens = self.port.opens
            self._show_all()
        return len(ccs)

    def _close(self) -> None:
        self.port.close()

    def describe(self) -> str:
        state = f"connected to {self.port.name!r}" if self.port.name else "waiting for the device"
        return f"MIDI feedback: port matching {self.port.substring!r} ({state})"
