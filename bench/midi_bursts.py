"""Several MIDI messages in one JACK cycle: does python-rtmidi's input read them right?

A controller sends a 14-bit value as two CCs and an NRPN as four, back to back: under JACK they
usually land in one cycle. jackd2's `jack_midiseq` (a C client) plays a group of four note-ons
in one frame and four note-offs 100 frames later, ten times a second. Each reader's stream is
scored against that cycle (`peers.score_note_groups`): right, a repeat of the message before, or wrong:

  jack_midi_dump       jackd2's C monitor in its own process: what JACK delivered
  rtmidi callback      python-rtmidi's callback on JACK's thread (the daemon's way until now)
  rtmidi eqbridge      bridge.midi_ports.RtMidiPorts.open with a callback: the daemon's MIDI
                       input, which under JACK drains RtMidi's queue from a thread of its own

each with this process idle and then with a busy Python thread (the GIL switch interval at the
daemon's 0.5 ms), the way the daemon's engine holds the GIL while it answers. A callback runs on
JACK's thread and takes the GIL for every message; the queue is filled in C without it.
The numbers are of this machine's non-real-time dummy JACK server, where clients are late often.

    python bench/midi_bursts.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from peers import (NOTES, GilHog, JackMidiMonitor, JackServer, end_process, note_groups_player,  # noqa: E402
                   score_note_groups)

from bridge.midi_ports import RtMidiPorts  # noqa: E402


def open_reader(name_prefix: str, mode: str, on_bytes) -> RtMidiPorts:
    """A JACK input on the first port named like `name_prefix`, handing each message's bytes to
    `on_bytes`. `mode` "callback": python-rtmidi's callback on JACK's thread (how the daemon read
    until now, the baseline); "eqbridge": `RtMidiPorts.open` with a callback, the daemon's input."""
    ports = RtMidiPorts("UNIX_JACK")
    name = next(n for n in ports.names() if n.startswith(name_prefix))
    if mode == "callback":
        ports.open(name)
        ports._rt.set_callback(lambda event, _data: on_bytes(list(event[0])))
    else:
        ports.open(name, lambda msg: on_bytes(msg.bytes()))
    return ports


def close_reader(ports: RtMidiPorts, mode: str) -> None:
    if mode == "callback":
        ports._rt.cancel_callback()
    ports.delete()


def read_rtmidi(seconds: float, mode: str) -> list[list[int]]:
    got: list[list[int]] = []
    ports = open_reader("seq:", mode, got.append)
    time.sleep(seconds)
    close_reader(ports, mode)
    return got


def read_dump(seconds: float) -> list[list[int]]:
    mon = JackMidiMonitor("bench-mon")
    time.sleep(0.3)
    subprocess.run(["jack_connect", "seq:out", "bench-mon:input"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    mon.close()
    return [m.bytes() for m in mon.messages]


def report(label: str, msgs: list[list[int]], seconds: float) -> None:
    sc = score_note_groups(msgs)
    sent = int(round(seconds * 10)) * 2 * len(NOTES)
    print(f"{label:<26} sent ~{sent:>5}  read {sc['read']:>5}  right {sc['right']:>5}  "
          f"repeats {sc['repeats']:>4}  wrong {sc['wrong']:>4}  ({100.0 * (sc['repeats'] + sc['wrong']) / max(sc['read'], 1):5.2f} % bad)",
          flush=True)


def drain_cpu(seconds: float, mode: str) -> list[float]:
    """This process's CPU use (% of one core) with an input open (`mode` as in open_reader): on a
    port that never sent anything, in the seconds after one message (0.6 s on), and on the
    sequencer's (ten groups a second)."""
    import mido

    quiet = mido.Backend(JackServer.BACKEND).open_output("bench-quiet", virtual=True)
    out = []
    for prefix, poke in (("RtMidiOut Client:bench-quiet", False), ("RtMidiOut Client:bench-quiet", True),
                         ("seq:", False)):
        ports = open_reader(prefix, mode, lambda _bytes: None)
        time.sleep(0.1)
        if poke:
            quiet.send(mido.Message("control_change", control=1, value=1))
        time.sleep(0.6)  # past the fast rate after a message
        c0, t0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        out.append(100.0 * (time.process_time() - c0) / (time.perf_counter() - t0))
        close_reader(ports, mode)
    quiet.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per reader and load (default 10)")
    args = ap.parse_args()
    jack = JackServer()
    why = jack.start()
    if why is not None:
        print(f"no JACK server: {why}")
        return 1
    seq = note_groups_player("seq")
    busy = GilHog()
    try:
        time.sleep(0.5)
        for load in (False, True):
            (busy.on.set if load else busy.on.clear)()
            tag = "busy" if load else "idle"
            report(f"jack_midi_dump ({tag})", read_dump(args.seconds), args.seconds)
            for mode in ("callback", "eqbridge"):
                report(f"rtmidi {mode} ({tag})", read_rtmidi(args.seconds, mode), args.seconds)
        busy.on.clear()
        for mode in ("callback", "eqbridge"):
            quiet, after_one, active = drain_cpu(min(args.seconds, 5.0), mode)
            print(f"CPU of this process, rtmidi {mode} input open: port never used {quiet:5.2f} %, "
                  f"0.6-{0.6 + min(args.seconds, 5.0):g} s after a message {after_one:5.2f} %, "
                  f"on the sequencer's {active:5.2f} % of a core", flush=True)
        late, by_client = jack.xruns()
        print(f"JACK: driver late {late} times; clients late: {by_client}")
    finally:
        busy.stop()
        end_process(seq, 5.0)
        jack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
