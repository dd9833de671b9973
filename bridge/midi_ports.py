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

import os
from typing import Any, Callable

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


def midi_ports(backend_name: str | None, *, output: bool = False) -> RtMidiPorts | MidoPorts:
    """The ports of one direction on a mido backend ("mido.backends.rtmidi/UNIX_JACK", ...;
    None: $MIDO_BACKEND, else mido's default, rtmidi)."""
    name = backend_name or os.environ.get("MIDO_BACKEND") or RTMIDI
    module, _, api_name = name.partition("/")
    if module == RTMIDI:
        return RtMidiPorts(api_name, output=output)
    return MidoPorts(backend_name, output=output)
