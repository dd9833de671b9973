"""MIDI in: control-surface knobs (7-bit CC, 14-bit CC pairs, NRPN) mapped to amount and macros.

`MidiDecoder` is pure: feed it mido messages, get (control, value 0..1) back. `MidiInput` finds a
port by name substring, opens it with a callback and polls the port list: it starts fine before
the device exists, notices when the device goes away and reopens it when it returns (on rtmidi
one client lists and listens: `bridge.midi_ports`).

Encodings (MIDI 1.0 spec): a 14-bit CC pair is MSB on CC n (0..31) and LSB on CC n+32; the value
is emitted when the LSB arrives (devices send MSB then LSB). NRPN selects a parameter with CC 99
(MSB) and CC 98 (LSB), then sends data entry CC 6 (MSB) and CC 38 (LSB); a 14-bit NRPN binding
emits on CC 38, a 7-bit one on CC 6.

Endless encoders send relative CCs: each message is a signed number of ticks (bigger when turned
fast), added to the knob's current value by the session (`Event.relative`), so ticks compose in
order with OSC moves and undo. The three encodings in use, as REAPER's MIDI learn names them
("Relative 1/2/3", described in https://forum.cockos.com/project.php?issueid=4576):
  twos   (Relative 1): 1..64 up, 127..65 down (two's complement: 127 is -1)
  offset (Relative 2): value - 64 (65 is +1, 63 is -1)
  sign   (Relative 3): 1..63 up, 65..127 down (bit 6 is the sign: 65 is -1)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from bridge.midi_ports import MidoPorts, RtMidiPorts, midi_ports
from bridge.session import Event

log = logging.getLogger("eqbridge.midi")


@dataclass(frozen=True)
class MidiBinding:
    """One knob: `control` is "amount" or "macro/<n>"; `kind` is cc, cc14 or nrpn."""

    control: str
    kind: str
    number: int
    channel: int | None = None  # 1..16, None = any
    bits: int = 0  # 0: the kind's own (cc 7, cc14 14, nrpn 14); nrpn may be 7
    relative: str | None = None  # cc only: an endless encoder's encoding (RELATIVE_ENCODINGS; config checks)
    step: float = 1.0 / 127.0  # relative only: the change per tick, in the knob's 0..1 range
    pickup: bool = False  # absolute only: soft takeover (bridge.pickup), for pots that show no value

    @property
    def name(self) -> str:
        """How the binding is told apart (pickup state, status): e.g. "macro/1 cc14 16 ch any"."""
        return f"{self.control} {self.kind} {self.number} ch {self.channel or 'any'}"

    @property
    def resolution(self) -> int:
        return self.bits or (7 if self.kind == "cc" else 14)

    def wire(self, value: float) -> int:
        """A knob value 0..1 as this binding carries it (0..127, or 0..16383 at 14 bits); a
        relative binding's LED ring is shown the value as an absolute 7-bit CC."""
        return unit_to_wire(value, 16383 if self.resolution == 14 and self.relative is None else 127)

    def messages(self, wire: int) -> list[tuple[int, int, int]]:
        """The (channel 1..16, cc, value) messages that show `wire` on the surface: the encoding
        the decoder reads (module docstring), on the binding's channel (1 when it takes any)."""
        ch = self.channel or 1
        if self.kind == "cc":
            return [(ch, self.number, wire)]
        if self.kind == "cc14":
            return [(ch, self.number, wire >> 7), (ch, self.number + 32, wire & 127)]
        select = [(ch, 99, self.number >> 7), (ch, 98, self.number & 127)]
        if self.resolution == 7:
            return select + [(ch, 6, wire)]
        return select + [(ch, 6, wire >> 7), (ch, 38, wire & 127)]

    def event(self, value: float, t_in: float) -> Event:
        """`value`: the knob's new value 0..1, or for a relative binding the change to add."""
        rel = self.relative is not None
        pickup = self.name if self.pickup else None
        if self.control == "amount":
            return Event("amount", (value,), None, "midi", t_in, relative=rel, pickup=pickup)
        n = int(self.control.split("/", 1)[1])
        return Event("macro", (n, value), None, "midi", t_in, relative=rel, pickup=pickup)


def unit_to_wire(value: float, top: int) -> int:
    """A 0..1 value as a MIDI data value 0..top (127, or 16383 for a 14-bit pair), clipped: the
    inverse of the decoder's value / top."""
    return int(round(min(max(float(value), 0.0), 1.0) * top))


def relative_ticks(encoding: str, value: int) -> int:
    """The signed tick count a relative CC value carries (see the module docstring)."""
    if encoding == "twos":
        return value - 128 if value > 64 else value
    if encoding == "offset":
        return value - 64
    if encoding == "sign":
        return -(value - 64) if value > 64 else value
    raise ValueError(f"unknown relative encoding {encoding!r}: use one of {', '.join(RELATIVE_ENCODINGS)}")


RELATIVE_ENCODINGS = ("twos", "offset", "sign")


class MidiDecoder:
    """Turns control-change messages into (binding, value 0..1, or a relative binding's change).
    Keeps per-channel pair state."""

    def __init__(self, bindings: list[MidiBinding]) -> None:
        self.cc7: dict[tuple[int | None, int], MidiBinding] = {}
        self.cc14_msb: dict[tuple[int | None, int], MidiBinding] = {}
        self.cc14_lsb: dict[tuple[int | None, int], MidiBinding] = {}
        self.nrpn: dict[tuple[int | None, int], MidiBinding] = {}
        for b in bindings:
            key = (b.channel, b.number)
            if b.kind == "cc":
                self.cc7[key] = b
            elif b.kind == "cc14":
                self.cc14_msb[key] = b
                self.cc14_lsb[(b.channel, b.number + 32)] = b
            elif b.kind == "nrpn":
                self.nrpn[key] = b
            else:
                raise ValueError(f"unknown MIDI binding kind {b.kind!r}")
        self._msb: dict[tuple[int, int], int] = {}        # (channel, cc) -> last 14-bit MSB
        self._nrpn_sel: dict[int, list[int]] = {}         # channel -> [param MSB, param LSB]
        self._nrpn_msb: dict[int, int] = {}               # channel -> last data MSB

    @staticmethod
    def _find(table: dict, ch: int, number: int) -> MidiBinding | None:
        return table.get((ch, number)) or table.get((None, number))

    def feed(self, msg: Any) -> list[tuple[MidiBinding, float]]:
        if getattr(msg, "type", None) != "control_change":
            return []
        ch, cc, val = msg.channel + 1, msg.control, msg.value
        out: list[tuple[MidiBinding, float]] = []
        if self.nrpn:
            if cc == 99:
                self._nrpn_sel[ch] = [val, self._nrpn_sel.get(ch, [0, 0])[1]]
                return out
            if cc == 98:
                self._nrpn_sel[ch] = [self._nrpn_sel.get(ch, [0, 0])[0], val]
                return out
            if cc in (6, 38) and ch in self._nrpn_sel:
                sel = self._nrpn_sel[ch]
                b = self._find(self.nrpn, ch, sel[0] * 128 + sel[1])
                if b is not None:
                    if cc == 6:
                        self._nrpn_msb[ch] = val
                        if b.resolution == 7:
                            out.append((b, val / 127.0))
                    elif b.resolution == 14:
                        out.append((b, (self._nrpn_msb.get(ch, 0) * 128 + val) / 16383.0))
                    return out
        b = self._find(self.cc7, ch, cc)
        if b is not None:
            if b.relative is None:
                out.append((b, val / 127.0))
            elif ticks := relative_ticks(b.relative, val):  # 0 ticks: no move
                out.append((b, ticks * b.step))
        b = self._find(self.cc14_msb, ch, cc)
        if b is not None:
            self._msb[(ch, cc)] = val
        b = self._find(self.cc14_lsb, ch, cc)
        if b is not None:
            msb = self._msb.get((ch, cc - 32), 0)
            out.append((b, (msb * 128 + val) / 16383.0))
        return out


class MidiInput:
    """A port chosen by name substring, (re)opened by a polling thread; events go to `sink`."""

    def __init__(self, port: str, bindings: list[MidiBinding], sink: Callable[[Event], None], *,
                 backend: str | None = None, poll_interval: float = 0.5,
                 on_connect: Callable[[], None] | None = None) -> None:
        """`on_connect`: called (on the polling thread) each time the port is opened."""
        self.port_substring = port
        self.on_connect = on_connect
        self.decoder = MidiDecoder(bindings)
        self.sink = sink
        self.backend_name = backend
        self.poll_interval = poll_interval
        self.port: Any = None
        self.port_name: str | None = None
        self.connects = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ports: RtMidiPorts | MidoPorts | None = None

    def _callback(self, msg: Any) -> None:
        t_in = time.perf_counter()
        self.received += 1
        try:
            for b, v in self.decoder.feed(msg):
                self.sink(b.event(v, t_in))
        except Exception:  # a callback must never raise into rtmidi
            log.exception("MIDI message %s could not be handled", msg)

    def may_answer_inline(self) -> bool:
        """Asked by the sink, on the thread that read the message: may it do the answer's work
        there? Only on a thread of ours (a JACK input's queue drain; a callback runs on the system's
        MIDI thread, under JACK its real-time process thread) and when no newer message waits."""
        ports = self._ports
        return isinstance(ports, RtMidiPorts) and ports.queued and not ports.newer_waiting()

    def poll(self) -> None:
        """One look at the port list: open a matching port, or close one that went away."""
        try:
            if self._ports is None:
                self._ports = midi_ports(self.backend_name)
            listed = self._ports.names()
        except Exception as exc:
            log.debug("MIDI backend unavailable: %s", exc)
            return
        if self.port is not None and not any(self.port_name == n or self.port_name in n or n in self.port_name
                                             for n in listed):
            log.warning("MIDI in: %r went away; waiting for it to come back", self.port_name)
            self._close_port()
        if self.port is not None:
            return
        sub = self.port_substring.lower()
        for name in listed:
            if sub in name.lower():
                try:
                    self.port = self._ports.open(name, self._callback)
                except Exception as exc:
                    log.warning("MIDI in: cannot open %r: %s", name, exc)
                    return
                self.port_name = name
                self.connects += 1
                log.info("MIDI in: listening to %r", name)
                if self.on_connect is not None:
                    try:
                        self.on_connect()
                    except Exception:  # the polling thread must go on
                        log.exception("MIDI in: the on-connect call failed")
                return

    def _close_port(self) -> None:
        port, self.port, self.port_name = self.port, None, None
        if port is not None:
            try:
                port.close()
            except Exception:
                log.debug("closing MIDI port failed", exc_info=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.poll_interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="eqbridge-midi-in", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_port()
        if self._ports is not None:
            self._ports.delete()
            self._ports = None

    def describe(self) -> str:
        state = f"connected to {self.port_name!r}" if self.port_name else "waiting for the device"
        return f"MIDI in: port matching {self.port_substring!r} ({state})"
