"""Bridge latency and flood benchmark, over real loopback UDP (and JACK MIDI when available).

Runs `eqbridge serve` as its own process against the stand-in REAPER peer (tests/peers.py) and
measures, from the moment a message is handed to the kernel (built beforehand: building it is
the sender's time, not the daemon's) to the moment the last parameter message of the daemon's
answer to it arrives at the stand-in REAPER's socket (the kernel's SO_TIMESTAMPNS arrival stamp,
so the peer's own Python parsing is not counted):
  - phrase in  (/eqbridge/text, distinct phrases, so neither cache helps)   target p99 <= 5 ms
    Its baseline: a second daemon whose fitter runs its numpy loop (EQBRIDGE_FIT_BACKEND=numpy)
    rather than the compiled one (bridge/_lmcore.c), given the same phrases afterwards.
  - knob in over OSC (/eqbridge/macro/1)                                    target p99 <= 1 ms
  - knob in over MIDI (CC 7 -> amount, through a private JACK server)       target p99 <= 1 ms
The phrase and OSC stages run on a daemon without a MIDI input, before the private JACK server
starts (its dummy driver and the daemon's JACK client wake every period, load on one of this
machine's 2 cores that the OSC path does not carry); the MIDI stage and the flood then run on a
second daemon with a MIDI input over JACK, so the RSS figure counts the MIDI client.
Before the OSC knob stages, the floor: /eqbridge/ping -> /eqbridge/pong paced like the jumps, and
again like the turn (one wake-up of the daemon and one datagram back), the least any answer
costs on this machine. MIDI's floor is measured on the same events: a JACK client of the
bench's, in a quiet process of its own, listens to the surface's port beside the daemon, and each
answer's share beyond its event's floor is printed too. JACK delivers MIDI once a period
(--jack-period, 64 frames = 1.33 ms at 48 kHz by default, as tests/peers.py runs it), so that
floor alone can exceed 1 ms.
The OSC knob stages run again against a second daemon with `knob_answers: refit` (a warm refit per
move, how knobs were answered before the tangent): the baseline, side by side.
Knobs are measured twice: as isolated jumps (paced far apart, so each one lands on an idle,
cold daemon) and as a turn (small steps every SWEEP_PERIOD_S, the way a hand moves a knob).
A knob is answered from the fit's tangent, then polished by a warm refit once the knobs rest
(bridge.daemon.SETTLE_AFTER_S): the answer is the first flush of parameter messages, "polished"
the last; both are reported, with the ERB-weighted RMS error of each against the target.
Events are paced (the next is sent after the previous one's output, polish included, has arrived
and the REAPER target's interval has passed), so the rate limiter never delays a measured event;
in a turn, a polish between two moves does not either (a polish is sent as background).
With `--rested N`, N more MIDI jumps follow, each after RESTED_S of quiet: a first touch, which
the input's drain thread (bridge.midi_ports) picks up at its slowest rate.
Then a flood: 10 s at 10 000 messages/s of /eqbridge/macro/1; reports the daemon's peak RSS
(VmHWM), that it still answers, and that its final state equals the last message sent.

    python bench/bridge_latency.py [--events 1000] [--flood-seconds 10] [--rate 10000] [--mapping NAME]
                                   [--reaper-per-message] [--no-midi] [--jack-period N] [--rested N]
                                   [--only STAGE ...]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from bridge.midi_ports import JACK_DRAIN_S  # noqa: E402
from peers import JackServer, ReaperPeer, UdpPeer, build, free_port  # noqa: E402

INTERVAL_MS = 10.0  # REAPER target default
FLUSH_GAP_S = 0.005  # one flush arrives within ~1 ms; the next comes >= INTERVAL_MS later
SWEEP_PERIOD_S = 0.02  # a knob turned at 50 moves/s (the REAPER target sends at most every 10 ms)
KNOB_QUIET_S = 0.08  # wait this long for a knob's polish (SETTLE_AFTER_S = 30 ms) to arrive
WORDS = ["warm", "bright", "muddy", "boomy", "airy", "harsh", "thin", "full", "dark", "crisp",
         "tinny", "punchy", "smooth", "nasal", "boxy", "clear", "heavy", "soft", "sharp", "mellow"]
MODS = ["", "a bit ", "more ", "less ", "very ", "slightly ", "much less ", "a little more ", "not so ", "really "]


def phrases(n: int) -> list[str]:
    out = []
    for m1 in MODS:
        for w1 in WORDS:
            for m2 in MODS:
                for w2 in WORDS:
                    if w1 != w2:
                        out.append(f"{m1}{w1}, {m2}{w2}")
    rng = np.random.default_rng(5)
    rng.shuffle(out)
    return out[:n]


def first_flush_end(arrivals_ns: np.ndarray) -> int:
    """Arrival of the last message of the first flush: a flush arrives within FLUSH_GAP_S, the
    next one (a polish, rate-limited) later."""
    return int(arrivals_ns[arrivals_ns - arrivals_ns.min() < int(FLUSH_GAP_S * 1e9)].max())


def rss_mb(pid: int) -> tuple[float, float]:
    cur = peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            cur = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cur, peak


def rss_shmem_mb(pid: int) -> float:
    """Shared memory counted in RSS: a JACK client maps the server's shared segments (~100 MB),
    which belong to jackd and every JACK client alike, not to the daemon."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssShmem:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Rig:
    def __init__(self, mapping: str, midi: str | None, bundle: bool = True, knob_answers: str = "tangent",
                 fit_backend: str | None = None) -> None:
        self.reaper = ReaperPeer()
        self.client = UdpPeer()
        self.port = free_port()
        self.dest = ("127.0.0.1", self.port)
        self.tmp = tempfile.TemporaryDirectory()
        cfg = {"osc": {"port": self.port, "feedback": [f"127.0.0.1:{self.client.port}"]},
               "targets": [{"name": "bench", "daw": "reaper", "port": self.reaper.port, "mapping": mapping,
                            "min_interval_ms": INTERVAL_MS, "osc_bundle": bundle}]}
        cfg["knob_answers"] = knob_answers
        if midi:
            cfg["midi"] = {"input": "eqb-bench-surface", "backend": JackServer.BACKEND,
                           "map": [{"control": "amount", "cc": 7}]}
        cpath = Path(self.tmp.name) / "bench.yaml"
        import yaml
        cpath.write_text(yaml.safe_dump(cfg))
        env = dict(os.environ, XDG_DATA_HOME=str(Path(self.tmp.name) / "xdg"), PYTHONPATH=str(ROOT))
        if fit_backend:
            env["EQBRIDGE_FIT_BACKEND"] = fit_backend
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(cpath),
                                      "--log-level", "warning"], env=env, cwd=self.tmp.name,
                                     stderr=subprocess.PIPE, text=True)
        for _ in range(600):
            self.client.send(self.dest, "/eqbridge/ping")
            if self.client.wait_address("/eqbridge/pong", timeout=0.1):
                self.client.send(self.dest, "/eqbridge/text", "warm")  # a phrase for the knobs to move
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"eqbridge serve exited: {self.proc.stderr.read()[-2000:]}")
        raise SystemExit("eqbridge serve did not answer pings")

    @classmethod
    def for_args(cls, a: argparse.Namespace, midi: str | None = None, **kw) -> Rig:
        """A rig as the command line asks (mapping, OSC bundles or not)."""
        return cls(a.mapping, midi, bundle=not a.reaper_per_message, **kw)

    def describe(self, inputs: str) -> None:
        st = self.status()
        print(f"daemon: model {st['model']}, fit {st['fit']} ({st['fit_backend']} loop), "
              f"target {st['target']['describe']}; {inputs}")

    def status(self) -> dict:
        n = len(self.client.wait_address("/eqbridge/status", n=0, timeout=0))
        self.client.send(self.dest, "/eqbridge/status")
        return json.loads(self.client.wait_address("/eqbridge/status", n=n + 1, timeout=30)[-1].args[0])

    def measure(self, send, timeout: float = 30.0, quiet: float = 0.02) -> tuple[float, float] | None:
        """Send one event; wait for its /eqbridge/params reply (the daemon has submitted the output)
        and for the REAPER peer to have been quiet for `quiet` s; return ms to the last message of
        the first flush (the answer) and ms to the last message (the answer or its polish)."""
        n_params = len(self.client.wait_address("/eqbridge/params", n=0, timeout=0))
        n_reaper = self.reaper.count
        t0_ns = time.time_ns()
        send()
        if len(self.client.wait_address("/eqbridge/params", n=n_params + 1, timeout=timeout)) <= n_params:
            return None  # lost on the way in (MIDI under JACK: see tests/test_midi.py)
        # the output flushes right after the submit: wait until the REAPER peer is quiet again
        last_n, last_change = -1, time.perf_counter()
        while True:
            with self.reaper.cond:
                self.reaper.cond.wait(timeout=0.02)
                n = self.reaper.count
            if n != last_n:
                last_n, last_change = n, time.perf_counter()
            elif time.perf_counter() - last_change > quiet:
                break
        new = self.reaper.received[n_reaper:] if self.reaper.keep else []
        if not new:
            return None
        time.sleep(INTERVAL_MS / 1000)
        arrivals = np.array([m.t_arrival_ns for m in new], dtype=np.int64)
        return (first_flush_end(arrivals) - t0_ns) / 1e6, (int(arrivals.max()) - t0_ns) / 1e6

    def sweep(self, send_move, n: int, period_s: float = SWEEP_PERIOD_S,
              jitter_s: float = 0.0) -> list[tuple[int, float | None]]:
        """Turn a knob: `send_move(i)` n times, one every period_s (longer than the REAPER
        interval, so the rate limiter never holds a move back), each delayed by a random
        0..jitter_s (a hand is not locked to an audio clock: without it a MIDI turn at 20 ms, 15
        JACK periods of 64 frames, would meet JACK's cycle at one phase all along). Returns, per
        move, its send time (time.time_ns()) and its answer latency (ms from its send to the last
        message of the first flush before the next move), None when it changed no parameter."""
        n_reaper = len(self.reaper.received)
        offsets = np.random.default_rng(7).uniform(0.0, jitter_s, n)
        sends = []
        t_start = time.perf_counter()
        for i in range(n):
            # sleep, never spin: a busy bench would take a core from the daemon and hold the
            # GIL from its own MIDI-floor callback (pacing is not precise to the microsecond)
            time.sleep(max(t_start + i * period_s + offsets[i] - time.perf_counter(), 0.0))
            sends.append(time.time_ns())
            send_move(i)
        time.sleep(0.2)  # the polish after the last move arrives outside its window
        arrivals = np.array([m.t_arrival_ns for m in self.reaper.received[n_reaper:]], dtype=np.int64)
        moves: list[tuple[int, float | None]] = []
        for t0, t_next in zip(sends, sends[1:] + [sends[-1] + int(period_s * 1e9)]):
            mine = arrivals[(arrivals >= t0) & (arrivals < t_next)]
            # the answer is the first flush; a polish may follow inside the window
            moves.append((t0, (first_flush_end(mine) - t0) / 1e6 if mine.size else None))
        return moves

    def close(self) -> int:
        """SIGTERM the daemon and wait for it; one that has not exited within 30 s is reported and
        killed (its exit code is then the kill's), never left running."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print("daemon: still running 30 s after SIGTERM; killed")
            self.proc.kill()
            self.proc.wait()
        self.reaper.close()
        self.client.close()
        return self.proc.returncode


def answered(moves: list[tuple[int, float | None]]) -> tuple[list[float], int]:
    """A sweep's answer latencies, and how many moves had none (`Rig.sweep`)."""
    lat = [x for _, x in moves if x is not None]
    return lat, len(moves) - len(lat)


def floor_and_share(answers: list[float | None], floors: list[float | None]) -> tuple[list[float], list[float]]:
    """Per event: the floors seen, and answer minus floor where the event has both (ms)."""
    return ([f for f in floors if f is not None],
            [x - f for x, f in zip(answers, floors) if x is not None and f is not None])


def knob_errors(rig: Rig) -> str:
    st = rig.status()
    e, inline = st["knob_answers"], st["inline_answers"]
    err = e.get("rms_error_db") or {}
    on_midi = inline.get("midi", {}).get("knob", 0)
    return (f"   answered from the tangent {e['tangent']} ({inline['osc']['knob']} on the OSC thread, {on_midi} "
            f"on the MIDI drain thread), by a refit "
            f"{e['refit']}; sent first, from the message read to the last send: {e.get('sent_first_ms')}; "
            f"RMS error vs target: "
            f"answer p50 {err.get('tangent_p50')} / p99 {err.get('tangent_p99')} dB, polished p50 "
            f"{err.get('polished_p50')} / p99 {err.get('polished_p99')} dB (n={err.get('n')})")


def wake_floor(rig: Rig, events: int, gap_s: float = 0.09) -> str:
    """/eqbridge/ping -> /eqbridge/pong, paced like the knob jumps: from the send to the pong's
    kernel arrival stamp at the client. The daemon's OSC thread wakes, parses and sends one
    datagram: the least any answer costs on this machine (its tail is the machine's, not ours)."""
    ping = build("/eqbridge/ping")
    lat = []
    for _ in range(events):
        time.sleep(gap_s)
        n = len(rig.client.wait_address("/eqbridge/pong", n=0, timeout=0))
        t0 = time.time_ns()
        rig.client.sock.sendto(ping, rig.dest)
        got = rig.client.wait_address("/eqbridge/pong", n=n + 1, timeout=5)
        if len(got) > n:
            lat.append((got[-1].t_arrival_ns - t0) / 1e6)
    return pct(lat) if lat else "no pong"


def osc_knob_stage(rig: Rig, events: int, label: str) -> None:
    """Isolated jumps of /eqbridge/macro/1, then a turn; prints both figures."""
    lat, pol = [], []
    for i in range(events):
        dgram = build("/eqbridge/macro/1", 0.2 + 0.6 * ((i * 37) % 100) / 100)
        ms = rig.measure(lambda: rig.client.sock.sendto(dgram, rig.dest), quiet=KNOB_QUIET_S)
        if ms is not None:
            lat.append(ms[0])
            pol.append(ms[1])
    jumps = pct(lat) if lat else "no output"
    print(f"{label}OSC knob -> answer     {jumps}   target p99 <= 1 ms")
    if pol:
        print(f"{label}OSC knob -> polished   {pct(pol)}")
    print(f"   inside the daemon (last 2000 events): {rig.status()['latency_ms']}")
    print(knob_errors(rig))
    turn = [build("/eqbridge/macro/1", 0.3 + 0.005 * (i % 80 if (i // 80) % 2 == 0 else 80 - i % 80))
            for i in range(events)]
    tl, silent = answered(rig.sweep(lambda i: rig.client.sock.sendto(turn[i], rig.dest), events))
    turned = pct(tl) if tl else "no output"
    print(f"{label}OSC knob turned (steps of 0.005 every {SWEEP_PERIOD_S * 1000:.0f} ms) -> answer "
          f"{turned}, {silent} moves changed nothing   target p99 <= 1 ms")


class MidiFloor:
    """A JACK client of the bench's own on the surface's port, beside the daemon's, in a quiet
    process of its own (in the bench's process its callback would wait for the bench's GIL): when
    each CC reaches a Python callback in another process (JACK delivers MIDI once a period; then
    that client's wake-up), the least a MIDI answer can cost here, measured on the same events."""

    def __init__(self, port_substring: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--midi-floor-client", port_substring],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the MIDI floor client did not start")
        self.arrivals: list[int] = []
        self.error: str | None = None

    def collect(self) -> None:
        """Stop the client and read when each message reached it (time.time_ns()). A client that
        died (JACK drops one that keeps missing its cycles) leaves no arrivals and says so."""
        out, _ = self.proc.communicate(timeout=30)
        try:
            self.arrivals = json.loads(out)
        except json.JSONDecodeError:
            self.error = f"the floor client ended early (exit code {self.proc.returncode})"

    def after(self, t0_ns: int, window_s: float) -> float | None:
        """ms from t0 to the first arrival within window_s of it (None: not seen)."""
        i = bisect.bisect_left(self.arrivals, t0_ns)  # stamped in order of arrival
        if i == len(self.arrivals) or self.arrivals[i] >= t0_ns + int(window_s * 1e9):
            return None
        return (self.arrivals[i] - t0_ns) / 1e6


def midi_floor_client(port_substring: str) -> int:
    """The MidiFloor process: listen to the matching port, stamp each message, and print the
    stamps (JSON) once stdin closes."""
    import mido
    be = mido.Backend(JackServer.BACKEND)
    arrivals: list[int] = []
    port = be.open_input(next(n for n in be.get_input_names() if port_substring in n),
                         callback=lambda msg: arrivals.append(time.time_ns()))
    print("ready", flush=True)
    sys.stdin.read()
    port.close()
    print(json.dumps(arrivals), flush=True)
    return 0


RESTED_S = JACK_DRAIN_S[-2][0] + 0.5
"""The quiet before each rested MIDI jump: beyond the last of the input's drain tiers, where it
looks at RtMidi's queue least often (bridge.midi_ports.JACK_DRAIN_S)."""


def midi_knob_stage(rig: Rig, events: int, jack: JackServer, rested: int = 0) -> None:
    """Isolated jumps of CC 7 (-> amount) through JACK, then a turn, each beside the transport's
    floor on the same event and the daemon's share (answer minus floor, event by event). Every
    event is sent at a random phase of JACK's period: the bench's own waits (the polish timer,
    its quiet windows) are whole numbers of half periods, and would otherwise send each jump at
    much the same phase of JACK's cycle, as a hand does not."""
    import mido
    jack_period_s = jack.period_s
    log_from = len(jack.read_log())
    be = mido.Backend(JackServer.BACKEND)
    surface = be.open_output("eqb-bench-surface", virtual=True)
    for _ in range(200):
        if "connected" in (rig.status().get("midi") or ""):
            break
        time.sleep(0.05)
    floor = MidiFloor("eqb-bench-surface")
    time.sleep(0.2)
    jumps: list[tuple[int, tuple[float, float] | None]] = []  # (send time, measure()) per event
    lost_in_a_row = 0
    phases = np.random.default_rng(8).uniform(0.0, jack_period_s, events)
    for i in range(events):
        if lost_in_a_row >= 20:
            print("MIDI: 20 events in a row lost; stopping")
            break
        cc = mido.Message("control_change", control=7, value=20 + (i * 37) % 100)
        sent: list[int] = []
        time.sleep(phases[i])
        ms = rig.measure(lambda: (sent.append(time.time_ns()), surface.send(cc)), timeout=2.0, quiet=KNOB_QUIET_S)
        jumps.append((sent[0], ms))
        lost_in_a_row = 0 if ms is not None else lost_in_a_row + 1
    turn = [mido.Message("control_change", control=7, value=40 + (i % 60 if (i // 60) % 2 == 0 else 60 - i % 60))
            for i in range(events)]
    moves = rig.sweep(lambda i: surface.send(turn[i]), events, jitter_s=jack_period_s)
    rested_jumps: list[tuple[int, tuple[float, float] | None]] = []
    for i in range(rested):  # a first touch after the hand has left the controller alone a while
        time.sleep(RESTED_S + phases[i % events])
        cc = mido.Message("control_change", control=7, value=20 + (i * 53) % 100)
        sent = []
        ms = rig.measure(lambda: (sent.append(time.time_ns()), surface.send(cc)), timeout=2.0, quiet=KNOB_QUIET_S)
        rested_jumps.append((sent[0], ms))
    surface.close()
    floor.collect()
    lat = [ms[0] for _, ms in jumps if ms is not None]
    pol = [ms[1] for _, ms in jumps if ms is not None]
    fl, share = floor_and_share([ms and ms[0] for _, ms in jumps], [floor.after(t0, 0.05) for t0, _ in jumps])
    tfl, tshare = floor_and_share([x for _, x in moves], [floor.after(t0, SWEEP_PERIOD_S - jack_period_s) for t0, _ in moves])
    got, silent = answered(moves)
    jumps_s = (pct(lat) if lat else "no output") + f", lost {events - len(lat)}"
    turned = pct(got) if got else "no output"
    print(f"MIDI floor (a separate JACK client in a process of its own, on the same port, same events) "
          f"{pct(fl) if fl else 'none'}{f' ({floor.error})' if floor.error else ''}")
    print(f"MIDI knob -> answer    {jumps_s}   target p99 <= 1 ms")
    print(f"   the daemon's share (answer minus floor, per event) {pct(share) if share else 'none'}")
    if pol:
        print(f"MIDI knob -> polished  {pct(pol)}")
    print(f"MIDI floor during the turn {pct(tfl) if tfl else 'none'}")
    print(f"MIDI knob turned (CC steps of 1 every {SWEEP_PERIOD_S * 1000:.0f} ms + 0..{jack_period_s * 1000:.2f} ms) "
          f"-> answer "
          f"{turned}, {silent} moves lost or changed nothing   target p99 <= 1 ms")
    print(f"   the daemon's share (answer minus floor, per move) {pct(tshare) if tshare else 'none'}")
    if rested:
        rlat = [ms[0] for _, ms in rested_jumps if ms is not None]
        rfl, rshare = floor_and_share([ms and ms[0] for _, ms in rested_jumps],
                                      [floor.after(t0, 0.05) for t0, _ in rested_jumps])
        print(f"MIDI knob after {RESTED_S:.1f} s of rest -> answer {pct(rlat) if rlat else 'no output'}, "
              f"lost {rested - len(rlat)}; floor {pct(rfl) if rfl else 'none'}")
        print(f"   the daemon's share (answer minus floor, per event) {pct(rshare) if rshare else 'none'}")
    print(knob_errors(rig))
    driver_late, late = jack.xruns(log_from)
    print(f"JACK during the MIDI stage: the driver's cycle late {driver_late} times; clients not finished in "
          f"time (an xrun each): {late or 'none'} (the daemon's client is 'eqbridge', the floor's "
          f"'RtMidiIn Client', the surface 'RtMidiOut Client')")


def phrase_stage(rig: Rig, a: argparse.Namespace) -> None:
    """Distinct phrases to the daemon, then the same to a baseline daemon whose fitter runs its
    numpy loop (started afterwards: its idle work would otherwise share the 2 cores), each
    measured to the last parameter message at its own stand-in REAPER."""
    lat: dict[str, list[float]] = {"now": [], "base": []}
    for key in lat:
        r = rig if key == "now" else Rig.for_args(a, fit_backend="numpy")
        try:
            for ph in phrases(a.events):
                dgram = build("/eqbridge/text", ph)
                ms = r.measure(lambda: r.client.sock.sendto(dgram, r.dest))
                if ms is not None:
                    lat[key].append(ms[1])
            st = r.status()
            inside = f"inside the daemon (received -> values handed to the target): {st['latency_ms']}"
            if key == "now":
                print(f"phrase -> last param   {pct(lat['now'])}   target p99 <= 5 ms")
                print(f"   {inside}; answered on the OSC thread: {st['inline_answers']['osc']['phrase']}")
            else:
                print(f"   baseline, {st['fit_backend']} loop: {pct(lat['base'])}; {inside}")
        finally:
            if r is not rig:
                r.close()


def pct(xs: list[float]) -> str:
    a = np.asarray(xs)
    return f"p50 {np.percentile(a, 50):6.3f} ms  p99 {np.percentile(a, 99):6.3f} ms  max {a.max():6.2f} ms  (n={len(a)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--flood-seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--mapping", default="reaper-reaeq")
    ap.add_argument("--no-midi", action="store_true")
    ap.add_argument("--jack-period", type=int, default=64,
                    help="frames per period of the private JACK server (at 48 kHz; 64 = 1.33 ms)")
    ap.add_argument("--reaper-per-message", action="store_true",
                    help="the REAPER target sends one datagram per parameter (config osc_bundle: false), "
                         "not the default OSC bundles")
    ap.add_argument("--only", choices=("phrase", "osc", "midi", "flood"), action="append",
                    help="run only these stages (repeatable)")
    ap.add_argument("--rested", type=int, default=0, metavar="N",
                    help=f"after the MIDI turn, N jumps each after {RESTED_S:.1f} s without MIDI (the drain "
                         f"thread's slowest tier; {RESTED_S:.1f} s each, so not by default)")
    ap.add_argument("--midi-floor-client", metavar="PORT", help=argparse.SUPPRESS)  # MidiFloor's process
    a = ap.parse_args()
    if a.midi_floor_client:
        return midi_floor_client(a.midi_floor_client)

    stages = set(a.only or ("phrase", "osc", "midi", "flood"))
    jack = None
    midi_reason = "disabled (--no-midi)" if a.no_midi else "not asked for (--only)"
    # Phrases and OSC knobs first, on a daemon without MIDI and before the private JACK server
    # starts: its dummy driver wakes every period on one of this machine's 2 cores, and the
    # daemon's JACK client and drain thread with it, which is load the OSC path does not have.
    rig = Rig.for_args(a) if stages & {"phrase", "osc"} else None
    try:
        if rig is not None:
            rig.describe("no MIDI input, no JACK server running")
        if "phrase" in stages:
            phrase_stage(rig, a)
        # OSC knob, then the same with a warm refit per move (knob_answers: refit) as the baseline
        if "osc" in stages:
            print(f"floor: ping -> pong, paced as the jumps {wake_floor(rig, a.events)}")
            print(f"floor: ping -> pong, paced as the turn (every {SWEEP_PERIOD_S * 1000:.0f} ms) "
                  f"{wake_floor(rig, a.events, SWEEP_PERIOD_S)}")
            osc_knob_stage(rig, a.events, "")
            base = Rig.for_args(a, knob_answers="refit")
            try:
                base.status()
                osc_knob_stage(base, a.events, "baseline, a refit per move: ")
            finally:
                base.close()
    finally:
        if rig is not None:
            print(f"daemon exit code after SIGTERM: {rig.close()}")
    if not stages & {"midi", "flood"}:
        return 0
    # MIDI knobs and the flood: a daemon with a MIDI input, JACK running (its RSS counts the client)
    if not a.no_midi and "midi" in stages:
        jack = JackServer(period=a.jack_period)
        midi_reason = jack.start()
        if midi_reason is not None:
            jack = None
    rig = Rig.for_args(a, "jack" if jack else None)
    try:
        rig.describe(f"MIDI input {'over JACK' if jack else 'none'}")
        if jack is not None and "midi" in stages:
            midi_knob_stage(rig, a.events, jack, a.rested)
        else:
            print(f"MIDI knob: skipped ({midi_reason})")
        if "flood" not in stages:
            return 0
        # flood
        rig.reaper.keep = False
        rig.reaper.received.clear()
        rng = np.random.default_rng(1)
        n_total = int(a.flood_seconds * a.rate)
        values = np.round(rng.uniform(0, 1, n_total), 4)
        dgrams = [build("/eqbridge/macro/1", float(v)) for v in values[:1000]]
        sock = rig.client.sock
        t0 = time.perf_counter()
        peak = 0.0
        sent = 0
        last_value = None
        while sent < n_total:
            due = int((time.perf_counter() - t0) * a.rate) + 1
            while sent < min(due, n_total):
                v = float(values[sent])
                sock.sendto(dgrams[sent % 1000] if sent < n_total - 1 else build("/eqbridge/macro/1", v), rig.dest)
                last_value = float(values[sent % 1000]) if sent < n_total - 1 else v
                sent += 1
            if sent % 5000 == 0:
                peak = max(peak, rss_mb(rig.proc.pid)[1])
            time.sleep(0.0005)
        elapsed = time.perf_counter() - t0
        st = rig.status()
        cur, hwm = rss_mb(rig.proc.pid)
        final_ok = abs(st["macros"][0] - np.float32(last_value)) < 1e-6
        print(f"flood: {sent} messages in {elapsed:.2f} s ({sent / elapsed:,.0f}/s); daemon counters "
              f"received {st['osc']['received']} accepted {st['osc']['accepted']} queue dropped {st['queue']['dropped']}; "
              f"renders {st['queue']['renders']}")
        print(f"flood: final macro 1 = {st['macros'][0]:.6f}, last sent = {last_value:.6f} -> "
              f"{'EQUAL' if final_ok else 'DIFFERENT'}; still answers: yes")
        shm = rss_shmem_mb(rig.proc.pid)
        print(f"daemon RSS now {cur:.0f} MB, peak (VmHWM) {max(hwm, peak):.0f} MB, of which shared memory "
              f"{shm:.0f} MB (JACK's segments when MIDI is on); without it {cur - shm:.0f} MB   target <= 150 MB")
    finally:
        rc = rig.close()
        if jack is not None:
            jack.stop()
    print(f"daemon exit code after SIGTERM: {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
