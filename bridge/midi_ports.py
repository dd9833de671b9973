"""Finding and opening MIDI ports, for the MIDI input and the MIDI CC target.

On mido's rtmidi backend (ALSA or JACK) one python-rtmidi client per direction does the listing
and the traffic (`RtMidiPorts`). mido itself opens a client per port and another per listing:
under JACK a listing that way took 49-62 ms and stalled another Python thread for 16-21 ms,
against 0.2-0.4 ms on a client kept open, where that thread's longest gap stays 0.3-0.5 ms, its
own tick (three runs of `bench/midi_listing.py`, which prints both; the MIDI CC target re-checks
its port once a second). Every JACK client is also a thread woken each
period, and one that is late is an xrun of the whole graph. Other mido backends use mido's own
ports (`MidoPorts`, https://mido.readthedocs.io/en/stable/ports/index.html).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

log = logging.getLogger("eqbridge.midi")

RTMIDI = "mido.backends.rtmidi"
CLIENT_NAMES = {False: "eqbridge", True: "eqbridge-out"}
"""The JACK/ALSA client name of each direction (output: True), as a user sees it in the graph."""


class RtMidiPorts:
    """One python-rtmidi client that lists the other side's ports and opens one of them.

    An input client's filter drops sysex, clock and active sensing before Python (a surface's
    24-per-beat clock would otherwise take the GIL on JACK's thread for nothing)."""

    def __init__(self, api_name: str = "", *, output: bool = False) -> None:
        import rtmidi
        api = getattr(rtmidi, f"API_{api_name}", rtmidi.API_UNSPECIFIED) if api_name else rtmidi.API_UNSPECIFIED
        self.output = output
        self._rt = (rtmidi.MidiOut if output else rtmidi.MidiIn)(api, name=CLIENT_NAMES[output])
        if not output:
            self._rt.ignore_types(sysex=True, timing=True, active_sense=True)

    def names(self) -> list[str]:
        return list(self._rt.get_ports())

    def open(self, name: str, callback: Callable[[Any], None] | None = None) -> "RtMidiPorts":
        """Open `name` (as `names()` gives it); an input's `callback` gets mido messages.
        Returns the open port: this object, whose `close()` closes the port, not the client."""
        self._rt.open_port(self.names().index(name), name="out" if self.output else "in")
        if callback is not None:
            self._rt.set_callback(_relay(callback))
        return self

    def send(self, msg: Any) -> None:
        """Send a mido message on the open output port."""
        self._rt.send_message(msg.bytes())

    def close(self) -> None:
        if not self.output:
            self._rt.cancel_callback()
        self._rt.close_port()

    def delete(self) -> None:
        self.close()
        self._rt.delete()


def _relay(callback: Callable[[Any], None]) -> Callable[[tuple, Any], None]:
    """python-rtmidi's (bytes, delta) events as mido messages."""
    import mido

    def relay(event: tuple, _data: Any) -> None:
        try:
            msg = mido.Message.from_bytes(event[0])
        except ValueError:  # not a complete message: nothing a knob could use
            return
        callback(msg)

    return relay


class MidoPorts:
    """Any other mido backend: mido's own listing and ports (a port per open)."""

    def __init__(self, backend_name: str | None, *, output: bool = False) -> None:
        import mido
        self.output = output
        self._backend = mido.Backend(backend_name) if backend_name else mido.Backend()

    def names(self) -> list[str]:
        be = self._backend
        return list(be.get_output_names() if self.output else be.get_input_names())

    def open(self, name: str, callback: Callable[[Any], None] | None = None) -> Any:
        if self.output:
            return self._backend.open_output(name)
        return self._backend.open_input(name, callback=callback)

    def delete(self) -> None:
        pass


class MidiNotConnected(RuntimeError):
    pass


RECHECK_S = 1.0
"""How often an open output port is looked for in the port list (unplug detection)."""


class OutputPort:
    """An output port found by name substring and kept open: re-found after an unplug.

    Listing ports costs a system call round (and under JACK a server query), so an open port is
    re-checked against the port list at most every RECHECK_S seconds, or at once after a send
    failed; a send in between goes straight out. `opens` counts the times a port was opened (a
    device that came back may have forgotten what it was sent)."""

    def __init__(self, substring: str, backend: str | None = None) -> None:
        self.substring = substring
        self.backend_name = backend
        self.name: str | None = None
        self.opens = 0
        self._ports: RtMidiPorts | MidoPorts | None = None
        self._port: Any = None
        self._checked = -1e9  # monotonic time the open port was last found in the port list

    def port(self) -> Any:
        """The open port (has `send(mido message)`); raises MidiNotConnected when none matches."""
        now = time.monotonic()
        if self._port is not None and now - self._checked < RECHECK_S:
            return self._port
        if self._ports is None:
            self._ports = midi_ports(self.backend_name, output=True)
        self._checked = now
        names = self._ports.names()
        if self._port is not None:
            if self.name in names:
                return self._port
            self.drop()
        for name in names:
            if self.substring.lower() in name.lower():
                self._port, self.name = self._ports.open(name), name
                self.opens += 1
                log.info("MIDI out: opened %r", name)
                return self._port
        raise MidiNotConnected(f"no MIDI output port matching {self.substring!r}")

    def send(self, msgs: list[Any]) -> None:
        """Send mido messages in order; a failure drops the port (unplugged? the next send lists
        the ports and reopens) and raises."""
        port = self.port()
        try:
            for m in msgs:
                port.send(m)
        except Exception:
            self.drop()
            raise

    def drop(self) -> None:
        """Close the port; the client stays for the next listing."""
        port, self._port, self.name = self._port, None, None
        if port is not None:
            port.close()

    def close(self) -> None:
        self.drop()
        if self._ports is not None:
            self._ports.delete()
            self._ports = None


def midi_ports(backend_name: str | None, *, output: bool = False) -> RtMidiPorts | MidoPorts:
    """The ports of one direction on a mido backend ("mido.backends.rtmidi/UNIX_JACK", ...;
    None: $MIDO_BACKEND, else mido's default, rtmidi)."""
    name = backend_name or os.environ.get("MIDO_BACKEND") or RTMIDI
    module, _, api_name = name.partition("/")
    if module == RTMIDI:
        return RtMidiPorts(api_name, output=output)
    return MidoPorts(backend_name, output=output)
