"""What listing MIDI ports costs under JACK, mido's way against one client kept open.

The MIDI input polls the port list (to notice a controller plugged in or pulled out) and the
MIDI CC target re-checks its port once a second. mido's `get_output_names()` opens and closes a
python-rtmidi client per call; `bridge.midi_ports.RtMidiPorts` keeps one client and asks it.
Beside each call a Python thread ticks (a little bytecode, then a 0.1 ms sleep), the way the
daemon's OSC, engine and MIDI threads want the GIL: its longest gap across the call is how long
a listing stalls the rest of the daemon (a gap of a tick or so is no stall). Runs a private JACK server (tests/peers.JackServer).

    python bench/midi_listing.py [--calls 10]
"""

from __future__ import annotations

import argparse
import bisect
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from peers import JackServer  # noqa: E402


class Ticker:
    """A thread that wants the GIL every 0.1 ms; `ticks` are when it got it."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            sum(range(200))
            self.ticks.append(time.perf_counter())
            time.sleep(0.0001)

    def longest_gap(self, t0: float, t1: float) -> float:
        """The longest time between two ticks around or inside [t0, t1] (s)."""
        ticks = self.ticks
        i = max(bisect.bisect_left(ticks, t0) - 1, 0)
        j = min(bisect.bisect_right(ticks, t1) + 1, len(ticks))
        return max(np.diff(ticks[i:j]), default=0.0)

    def stop(self) -> None:
        self._stop = True
        self._thread.join()


def timed(list_ports, ticker: Ticker, calls: int) -> tuple[list[float], list[float]]:
    """ms per call, and the ticker's longest gap (ms) across each call."""
    took, stall = [], []
    for _ in range(calls):
        time.sleep(0.05)
        t0 = time.perf_counter()
        list_ports()
        t1 = time.perf_counter()
        time.sleep(0.005)  # a tick after the call closes its gap
        took.append((t1 - t0) * 1e3)
        stall.append(ticker.longest_gap(t0, t1) * 1e3)
    return took, stall


def span(xs: list[float]) -> str:
    return f"median {np.median(xs):7.2f} ms, max {max(xs):7.2f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10)
    a = ap.parse_args()
    jack = JackServer()
    reason = jack.start()
    if reason is not None:
        print(f"skipped: no JACK server ({reason})")
        return 0
    import mido

    from bridge.midi_ports import midi_ports

    try:
        backend = mido.Backend(JackServer.BACKEND)
        ports = midi_ports(JackServer.BACKEND, output=True)
        ticker = Ticker()
        try:
            for label, fn in (("mido get_output_names() (baseline)", backend.get_output_names),
                              ("one client kept open (RtMidiPorts)", ports.names)):
                took, stall = timed(fn, ticker, a.calls)
                print(f"{label:38s} call {span(took)};  longest stall of another thread {span(stall)}  "
                      f"(n={a.calls})")
        finally:
            ticker.stop()
            ports.delete()
    finally:
        jack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
