"""Finding and opening MIDI ports, for the MIDI input and the MIDI CC target.

On mido's rtmidi backend (ALSA or JACK) one python-rtmidi client per direction does the listing
and the traffic (`RtMidiPorts`). mido itself opens a client per port and another per listing:
under JACK a listing that way took 49-62 ms and stalled another Python thread for 16-21 ms,
against 0.2-0.4 ms on a client kept open, where that thread's longest gap stays 0.3-0.5 ms, its
own tick (three runs of `bench/midi_listing.py`, which prints both; the MIDI CC target re-checks
its port once a second). Every JACK client is also a thread woken each
period, and one that is late is an xrun of the whole graph. Other mido backends use mido's own
ports (`MidoPorts`, https://mido.readthedocs.io/en/stable/ports/index.html).

Under JACK an input is read from python-rtmidi's queue by a thread of ours, not by a callback. A
callback runs on JACK's process thread and takes the GIL for every message; when several arrive in
one cycle (a 14-bit pair, an NRPN) while another thread holds the GIL (the engine answering the
move before), JACK's thread is late for the cycle and reads events from a buffer that has moved on:
`bench/midi_bursts.py` (groups of four in one frame, a thread holding the GIL) read 1.6-5.0 % of
such messages as repeats or wrong ones that way in five runs, none from the queue, which RtMidi
fills in C without the GIL, and none at jackd2's own monitor. (In one of three runs of the test of
it with the callback, nothing was read at all.) The thread drains the queue every 0.2 to 2 ms,
faster the more recent the last message (JACK_DRAIN_S). Being ours, the thread may do an answer's
work: the daemon answers a lone knob move on it, as it does an OSC one on the OSC thread
(`newer_waiting`). Its cost, in the same bench (two runs; the callback's figures are the JACK
client's own thread and the bench's), with a last tier of 5 ms then: this process at 3.5-3.8 % of a
core on a port never used (idle figures for the tiers now: JACK_DRAIN_S), 5.6-6.0 % in the 10 s
after a message and 10.0-10.3 % while messages come in, against 2.5-3.2 % with the callback; the
daemon's share of a knob's way in rose by 0.03-0.14 ms at p50 and 0.2-0.3 ms at p99
(`bench/bridge_latency.py --only midi`, two runs each way, interleaved).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable

log = logging.getLogger("eqbridge.midi")

RTMIDI = "mido.backends.rtmidi"
CLIENT_NAMES = {False: "eqbridge", True: "eqbridge-out"}
"""The JACK/ALSA client name of each direction (output: True), as a user sees it in the graph."""
JACK_DRAIN_S = ((0.5, 0.0002), (10.0, 0.001), (float("inf"), 0.002))
"""How often a JACK input's queue is drained (module docstring), by the time since its last
message: every 0.2 ms within 0.5 s (a knob being turned: the rest of a gesture waits little),
every 1 ms within 10 s, every 2 ms after (a daemon left alone wakes 500 times a second; the
first message after a long rest waits up to 2 ms, the rest of its gesture 0.2 ms).
The last tier was 5 ms. `bench/bridge_latency.py --only midi --events 200 --rested 20`: the
daemon's share of a jump after 10.5 s of quiet was p50 2.87 / max 5.87 ms at 5 ms and 1.84 /
2.57 ms at 2 ms, against 0.73 / 2.22 and 0.80 / 2.30 ms for jumps about 0.1 s apart in the same
runs. An idle port costs this process 4.39 % of a core at 2 ms against 2.52 % with the callback
(`bench/midi_bursts.py --seconds 3`, which prints both). Against the other tiers, three interleaved
rounds of 5 s of a throwaway script gave 4.44-4.79 % at 5 ms, 4.51-5.46 % at 2 ms and 4.86-6.65 %
at 1 ms: waking a sleeping Python thread costs tens of microseconds on this VM."""


READ_AHEAD = 1024
"""At most this many messages are held beyond RtMidi's own queue (of 1024 by default), so a flood
the daemon cannot keep up with is dropped, not buffered without bound."""


def drain_interval(quiet_s: float) -> float:
    """The drain thread's sleep after `quiet_s` seconds without a message (JACK_DRAIN_S)."""
    return next(sleep for within, sleep in JACK_DRAIN_S if quiet_s < within)


class RtMidiPorts:
    """One python-rtmidi client that lists the other side's ports and opens one of them.

    An input client's filter drops sysex, clock and active sensing before Python (a surface's
    24-per-beat clock would otherwise take the GIL on JACK's thread for nothing)."""

    def __init__(self, api_name: str = "", *, output: bool = False) -> None:
        import rtmidi
        api = getattr(rtmidi, f"API_{api_name}", rtmidi.API_UNSPECIFIED) if api_name else rtmidi.API_UNSPECIFIED
        self.output = output
        self._rt = (rtmidi.MidiOut if output else rtmidi.MidiIn)(api, name=CLIENT_NAMES[output])
        self.queued = not output and self._rt.get_current_api() == rtmidi.API_UNIX_JACK
        """Input read from the queue by `_drain` (JACK), not by a callback on JACK's thread."""
        self._draining: threading.Event | None = None  # set to stop the drain thread
        self._ahead: deque[tuple] = deque()  # read from RtMidi's queue, not yet relayed
        self._drain_thread: threading.Thread | None = None
        if not output:
            self._rt.ignore_types(sysex=True, timing=True, active_sense=True)

    def names(self) -> list[str]:
        return list(self._rt.get_ports())

    def open(self, name: str, callback: Callable[[Any], None] | None = None) -> "RtMidiPorts":
        """Open `name` (as `names()` gives it); an input's `callback` gets mido messages.
        Returns the open port: this object, whose `close()` closes the port, not the client."""
        self._rt.open_port(self.names().index(name), name="out" if self.output else "in")
        if callback is not None and self.queued:
            self._draining = threading.Event()
            self._drain_thread = threading.Thread(target=self._drain, args=(_relay(callback), self._draining),
                                                  name="eqbridge-midi-queue", daemon=True)
            self._drain_thread.start()
        elif callback is not None:
            self._rt.set_callback(_relay(callback))
        return self

    def newer_waiting(self) -> bool:
        """On the drain thread, while it relays a message: True when newer ones were read from the
        queue with it (the daemon then leaves the answer to its engine, which coalesces them)."""
        return bool(self._ahead)

    def _drain(self, relay: Callable[[tuple, Any], None], stop: threading.Event) -> None:
        get, ahead = self._rt.get_message, self._ahead
        last = -1e9  # monotonic time of the last message
        failure = ""  # the last failure logged: a lasting one is logged once, not every rest
        while not stop.is_set():
            try:
                while True:  # read ahead before each relay, so newer_waiting() knows what came since
                    while len(ahead) < READ_AHEAD and (event := get()) is not None:
                        ahead.append(event)
                    if not ahead:
                        break
                    relay(ahead.popleft(), None)
                    last = time.monotonic()
                failure = ""
            except Exception as exc:  # this thread is the MIDI input: it must go on
                if repr(exc) != failure:
                    failure = repr(exc)
                    log.exception("MIDI in: reading RtMidi's queue failed")
            time.sleep(drain_interval(time.monotonic() - last))

    def send(self, msg: Any) -> None:
        """Send a mido message on the open output port."""
        self._rt.send_message(msg.bytes())

    def close(self) -> None:
        if self._draining is not None:
            self._draining.set()
            self._drain_thread.join()  # it ends within one rest (<= 2 ms); the port must not close under it
            self._draining = self._drain_thread = None
            self._ahead.clear()
        elif not self.output:
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

    def send_cc(self, ccs: list[tuple[int, int, int]]) -> None:
        """Send (channel 1..16, controller, value) control changes in order; a failure drops the
        port (unplugged? the next send lists the ports and reopens) and raises."""
        import mido
        port = self.port()
        try:
            for ch, cc, value in ccs:
                port.send(mido.Message("control_change", channel=ch - 1, control=cc, value=value))
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
