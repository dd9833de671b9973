"""MIDI CC out, for any host with MIDI learn: each parameter key is bound to a channel and CC.

Values are the mapping's normalized 0..1 scaled to 0..127. The port is found by name substring
and reopened when it comes back after an unplug (on rtmidi one client lists and sends:
`bridge.midi_ports`). Unbound parameters are skipped; with no
explicit map, parameters get consecutive CCs from `first_cc` in the order they first appear.
"""

from __future__ import annotations

from typing import Any

from bridge.bands import HostParam
from bridge.midi_in import unit_to_wire
from bridge.midi_ports import OutputPort
from bridge.targets.base import OutputTarget

DEFAULT_MIN_INTERVAL = 0.005


class MidiCcTarget(OutputTarget):
    kind = "midi"

    def __init__(self, port: str, *, cc_map: dict[str, tuple[int, int]] | None = None,
                 channel: int = 1, first_cc: int = 20, backend: str | None = None,
                 min_interval: float = DEFAULT_MIN_INTERVAL, name: str | None = None) -> None:
        super().__init__(min_interval=min_interval, name=name or f"midi:{port}")
        self.cc_map: dict[str, tuple[int, int]] = dict(cc_map or {})
        self.auto = cc_map is None
        self.channel, self.next_cc = int(channel), int(first_cc)
        self.port = OutputPort(port, backend)

    def binding(self, key: str) -> tuple[int, int] | None:
        b = self.cc_map.get(key)
        if b is None and self.auto and self.next_cc < 120:
            b = (self.channel, self.next_cc)
            self.cc_map[key] = b
            self.next_cc += 1
        return b

    def wire_value(self, p: HostParam) -> int | None:
        if self.binding(p.key) is None:
            return None
        return unit_to_wire(p.normalized, 127)

    def _connect(self) -> None:
        self.port.port()

    def _send(self, batch: list[tuple[HostParam, Any]]) -> int:
        self.port.send_cc([(*self.cc_map[p.key], v) for p, v in batch])
        return len(batch)

    def _close(self) -> None:
        self.port.close()

    def describe(self) -> str:
        return f"MIDI CC out to a port matching {self.port.substring!r}"
