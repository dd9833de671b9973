"""MIDI CC out, for any host with MIDI learn: each parameter key is bound to a channel and CC.

Values are the mapping's normalized 0..1 scaled to 0..127. The port is found by name substring
and reopened when it comes back after an unplug (on rtmidi one client lists and sends:
`bridge.midi_ports`). Unbound parameters are skipped; with no
explicit map, parameters get consecutive CCs from `first_cc` in the order they first appear.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bridge.bands import HostParam
from bridge.midi_ports import MidoPorts, RtMidiPorts, midi_ports
from bridge.targets.base import OutputTarget

log = logging.getLogger("eqbridge.targets.midi")

DEFAULT_MIN_INTERVAL = 0.005
RECHECK_S = 1.0
"""How often an open output port is looked for in the port list (unplug detection)."""


class MidiNotConnected(RuntimeError):
    pass


class MidiCcTarget(OutputTarget):
    kind = "midi"

    def __init__(self, port: str, *, cc_map: dict[str, tuple[int, int]] | None = None,
                 channel: int = 1, first_cc: int = 20, backend: str | None = None,
                 min_interval: float = DEFAULT_MIN_INTERVAL, name: str | None = None) -> None:
        super().__init__(min_interval=min_interval, name=name or f"midi:{port}")
        self.port_substring = port
        self.cc_map: dict[str, tuple[int, int]] = dict(cc_map or {})
        self.auto = cc_map is None
        self.channel, self.next_cc = int(channel), int(first_cc)
        self.backend_name = backend
        self._ports: RtMidiPorts | MidoPorts | None = None
        self._port: Any = None
        self._port_name: str | None = None
        self._checked = -1e9  # monotonic time the open port was last found in the port list

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
        return int(round(min(max(float(p.normalized), 0.0), 1.0) * 127))

    def _open(self) -> Any:
        """The open port. Listing ports costs a system call round (and under JACK a server query),
        so an open port is re-checked against the port list at most every RECHECK_S seconds, or
        at once after a send failed; a flush in between sends straight away."""
        now = time.monotonic()
        if self._port is not None and now - self._checked < RECHECK_S:
            return self._port
        if self._ports is None:
            self._ports = midi_ports(self.backend_name, output=True)
        self._checked = now
        names = self._ports.names()
        if self._port is not None:
            if self._port_name in names:
                return self._port
            self._drop_port()
        for name in names:
            if self.port_substring.lower() in name.lower():
                self._port, self._port_name = self._ports.open(name), name
                log.info("MIDI out: opened %r", name)
                return self._port
        raise MidiNotConnected(f"no MIDI output port matching {self.port_substring!r}")

    def _connect(self) -> None:
        self._open()

    def _send(self, batch: list[tuple[HostParam, int]]) -> int:
        import mido
        port = self._open()
        try:
            for p, v in batch:
                ch, cc = self.cc_map[p.key]
                port.send(mido.Message("control_change", channel=ch - 1, control=cc, value=v))
        except Exception:
            self._drop_port()  # unplugged? the next attempt lists the ports and reopens
            raise
        return len(batch)

    def _drop_port(self) -> None:
        """Close the port; the client stays for the next listing."""
        port, self._port, self._port_name = self._port, None, None
        if port is not None:
            port.close()

    def _close(self) -> None:
        self._drop_port()
        if self._ports is not None:
            self._ports.delete()
            self._ports = None

    def describe(self) -> str:
        return f"MIDI CC out to a port matching {self.port_substring!r}"
