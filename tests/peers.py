"""Stand-in peers over real loopback UDP: a REAPER OSC surface, AbletonOSC, and an OSC client.

They implement the documented addresses the bridge uses and record everything that arrives:
- REAPER (https://www.reaper.fm/sdk/osc/osc.php, Default.ReaperOSC):
  `/track/@/fx/@/fxparam/@/value ,f` normalized 0..1 (1-based track, FX and parameter numbers).
- AbletonOSC (https://github.com/ideoforms/AbletonOSC, abletonosc/device.py): listens on a port,
  answers at the sender's IP on the response port (11001 in Live), `/live/device/get/parameters/
  name|min|max|value`, `/live/device/get/parameter/value_string`, `/live/device/set/parameter/value`.
"""

from __future__ import annotations

import re
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from pythonosc.osc_message import OscMessage
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder


def build(address: str, *args: Any) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, bool):
            b.add_arg(a)
        elif isinstance(a, int):
            b.add_arg(a, "i")
        elif isinstance(a, float):
            b.add_arg(a, "f")
        else:
            b.add_arg(a)
    return b.build().dgram


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
"""Linux's value (asm-generic/socket.h) where Python does not export the name (3.11)."""


UNREACHABLE = ("255.255.255.255", 9)
"""A DAW host no datagram can be sent to: sendto the broadcast address without SO_BROADCAST
fails at once (EACCES), with no DNS or network involved."""


class FakeNames:
    """A stand-in DNS: `socket.getaddrinfo` for the names in `answers` (each lookup takes the next
    address; the last one repeats), IP literals as the real one does. A name's lookup waits for
    `gate` (a slow LAN resolver) and is recorded with the thread that made it. Install with
    `monkeypatch.setattr(socket, "getaddrinfo", names.getaddrinfo)`. (A `sendto` given a name
    resolves in C, past this: a target that did that never reaches the stand-in.)"""

    def __init__(self, answers: dict[str, list[str]], real: Callable = socket.getaddrinfo) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.real = real
        self.gate = threading.Event()
        self.gate.set()
        self.lookups: list[tuple[str, str]] = []  # (name, thread name)

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        if host not in self.answers:
            return self.real(host, port, family, type, proto, flags)
        if flags & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        self.lookups.append((host, threading.current_thread().name))
        self.gate.wait(10.0)
        todo = self.answers[host]
        ip = todo.pop(0) if len(todo) > 1 else todo[0]
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", (ip, int(port)))]


def free_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `pred` every 10 ms until it holds or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@dataclass
class Received:
    address: str
    args: list
    t: float  # perf_counter when the peer's thread read it
    sender: tuple
    t_arrival_ns: int = 0  # CLOCK_REALTIME when the datagram reached the socket (the kernel's
    # SO_TIMESTAMPNS stamp; where there is none, when this thread read it)


class UdpPeer:
    """A UDP socket on 127.0.0.1 with a receive thread; subclasses react to messages."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", port))
        # the kernel stamps each datagram on arrival: latency figures then do not include the
        # time this Python thread takes to get to it (a burst is read one message at a time)
        if SO_TIMESTAMPNS is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.addr = ("127.0.0.1", self.port)
        self.received: list[Received] = []
        self.cond = threading.Condition()
        self._closing = False
        self.keep = True  # set False to count without storing (floods)
        self.count = 0  # messages
        self.datagrams = 0
        self.on_receive: Callable[[Received], None] | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._closing:
            try:
                data, anc, _, sender = self.sock.recvmsg(65535, 64)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.perf_counter()
            tk = time.time_ns()
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    tk = sec * 1_000_000_000 + nsec
            try:  # a bundle's messages arrive together (OSC 1.0: all or none)
                rs = [Received(address, params, t, sender, tk) for address, params in self.parse(data)]
            except Exception:
                rs = [Received("<unparsable>", [data], t, sender, tk)]
            for r in rs:
                self.handle(r)
                if self.on_receive is not None:
                    self.on_receive(r)
            with self.cond:
                self.count += len(rs)
                self.datagrams += 1
                if self.keep:
                    self.received.extend(rs)
                self.cond.notify_all()

    def parse(self, data: bytes) -> list[tuple[str, list]]:
        """The messages in one datagram (python-osc: a message or nested bundles)."""
        return [(m.message.address, list(m.message.params)) for m in OscPacket(data).messages]

    def handle(self, r: Received) -> None:
        pass

    def send(self, dest: tuple, address: str, *args: Any) -> None:
        self.sock.sendto(build(address, *args), dest)

    def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.received), timeout=timeout)

    def wait_address(self, address: str, n: int = 1, timeout: float = 10.0) -> list[Received]:
        self.wait_for(lambda rs: sum(r.address == address for r in rs) >= n, timeout)
        return [r for r in self.received if r.address == address]

    def clear(self) -> None:
        with self.cond:
            self.received.clear()

    def close(self) -> None:
        self._closing = True
        self.thread.join(timeout=2)
        self.sock.close()


_FXPARAM = re.compile(r"^/track/(\d+)/fx/(\d+)/fxparam/(\d+)/value$")
_FXEQ = re.compile(r"^/track/(\d+)/fxeq/band/(\d+)/(freq/hz|gain/db|q/oct)$")


REAPER_MAX_PACKET, REAPER_MAX_MESSAGE = 32768, 1024
"""MAX_PACKET_SIZE and MAX_OSC_MSG_LEN of REAPER's OSC surface (justinfrankel/reaper-sdk,
reaper-plugins/reaper_csurf/osc.h)."""


def reaper_reads(data: bytes) -> list[bytes]:
    """The messages REAPER's OSC surface takes from one datagram, walked as its OscGetInput does
    (justinfrankel/reaper-sdk, reaper-plugins/reaper_csurf/osc.cpp): the receive thread queues
    the datagram behind its big-endian length, so a bundle's elements (each a big-endian size and
    its bytes) read as consecutive messages once "#bundle" and the time tag are skipped. It stops
    at the first size out of range or message over REAPER_MAX_MESSAGE bytes, and only the first
    level of a bundle is read this way (a nested bundle's own elements are not)."""
    q, pos, out = struct.pack(">i", len(data)) + data, 0, []
    while len(q) - pos >= 4:
        n = struct.unpack_from(">i", q, pos)[0]
        pos += 4
        if n <= 0 or n > REAPER_MAX_PACKET or n > len(q) - pos:
            break
        if len(q) - pos > 20 and q[pos:q.find(b"\0", pos)] == b"#bundle":  # strcmp(.., "#bundle")
            pos += 16
            n = struct.unpack_from(">i", q, pos)[0]
            pos += 4
            if n <= 0 or n > len(q) - pos:
                break
        if n > REAPER_MAX_MESSAGE:
            break
        out.append(q[pos:pos + n])
        pos += n
    return out


class ReaperPeer(UdpPeer):
    """REAPER's OSC surface: keeps the value of every FX parameter it was sent."""

    def __init__(self, port: int = 0) -> None:
        self.params: dict[tuple[int, int, int], float] = {}
        self.eq: dict[tuple[int, int, str], float] = {}  # (track, band, "freq/hz"|...) -> real value
        self.unknown: list[Received] = []
        super().__init__(port)

    def parse(self, data: bytes) -> list[tuple[str, list]]:
        """The messages REAPER takes from one datagram (`reaper_reads`), each parsed alone."""
        return [(m.address, list(m.params)) for m in map(OscMessage, reaper_reads(data))]

    def handle(self, r: Received) -> None:
        m = _FXPARAM.match(r.address)
        e = None if m else _FXEQ.match(r.address)
        if m and len(r.args) == 1 and isinstance(r.args[0], float):
            self.params[(int(m[1]), int(m[2]), int(m[3]))] = r.args[0]
        elif e and len(r.args) == 1 and isinstance(r.args[0], float):
            self.eq[(int(e[1]), int(e[2]), e[3])] = r.args[0]  # Default.ReaperOSC FX_EQ_BAND_*
        else:
            self.unknown.append(r)

    def fxeq_messages(self) -> list[tuple[str, float]]:
        return [(r.address, r.args[0]) for r in self.received if _FXEQ.match(r.address)]

    def fxparam_messages(self) -> list[tuple[str, float]]:
        return [(r.address, r.args[0]) for r in self.received if _FXPARAM.match(r.address)]

    # ---- REAPER's feedback to its surface's device port (Default.ReaperOSC TRACK_SELECT, FX_NAME)
    def feed_back(self, dest: tuple[str, int], messages: list[tuple[str, Any]]) -> None:
        """Send feedback messages as REAPER does: in one bundle, b-type values as floats."""
        bundle = OscBundleBuilder(IMMEDIATELY)
        for address, value in messages:
            m = OscMessageBuilder(address)
            m.add_arg(value)
            bundle.add_content(m.build())
        self.sock.sendto(bundle.build().dgram, dest)

    def feed_back_fx(self, dest: tuple[str, int], track: int, names: list[str], slots: int = 8) -> None:
        """A track's FX slot names (DEVICE_FX_COUNT slots; an empty slot's name is empty)."""
        self.feed_back(dest, [(f"/track/{track}/fx/{i}/name", names[i - 1] if i <= len(names) else "")
                              for i in range(1, slots + 1)])

    def feed_back_select(self, dest: tuple[str, int], track: int, was: int | None = None) -> None:
        """The user clicks `track` (and `was` loses its selection)."""
        msgs = [] if was is None else [(f"/track/{was}/select", 0.0)]
        self.feed_back(dest, msgs + [(f"/track/{track}/select", 1.0)])


@dataclass
class LiveParam:
    name: str
    min: float
    max: float
    value: float = 0.0


def eq_eight_display(p: LiveParam) -> str:
    """What Live's EQ Eight shows for a value: "120 Hz", "1.00 kHz", "-3.0 dB", "0.71"."""
    if "Frequency" in p.name:
        return f"{p.value:.0f} Hz" if p.value < 1000 else f"{p.value / 1000:.2f} kHz"
    if "Gain" in p.name:
        return f"{p.value:.1f} dB"
    return f"{p.value:.2f}"


def frequencies_shown_in(unit: str) -> Callable[[LiveParam], str]:
    """A Live that lies: frequencies shown with `unit` (e.g. "dB"), everything else as EQ Eight does."""
    def display(p: LiveParam) -> str:
        return f"{p.value:.1f} {unit}" if "Frequency" in p.name else eq_eight_display(p)
    return display


class AbletonPeer(UdpPeer):
    """AbletonOSC: devices[(track, device)] = [LiveParam...]; replies go to (sender IP, reply_port).

    `display(param)` makes the value_string reply (None: no reply, like an AbletonOSC without it).
    """

    def __init__(self, devices: dict[tuple[int, int], list[LiveParam]], reply_port: int, port: int = 0,
                 display: Callable[[LiveParam], str | None] = eq_eight_display) -> None:
        self.devices = devices
        self.reply_port = reply_port
        self.display = display
        self.sets: list[tuple[int, int, int, float]] = []
        super().__init__(port)

    def handle(self, r: Received) -> None:
        a = r.args
        dest = (r.sender[0], self.reply_port)
        if len(a) < 2 or (a[0], a[1]) not in self.devices:
            self.send(dest, "/live/error", "no such device")
            return
        params = self.devices[(a[0], a[1])]
        base = r.address
        if base.startswith("/live/device/get/parameters/"):
            what = base.rsplit("/", 1)[1]
            vals = [getattr(p, what) for p in params]
            self.send(dest, base, a[0], a[1], *vals)
        elif base == "/live/device/get/parameter/value":
            self.send(dest, base, a[0], a[1], int(a[2]), float(params[int(a[2])].value))
        elif base == "/live/device/get/parameter/value_string":  # track device param string
            shown = self.display(params[int(a[2])])
            if shown is not None:
                self.send(dest, base, a[0], a[1], int(a[2]), shown)
        elif base == "/live/device/set/parameter/value":
            i, v = int(a[2]), float(a[3])
            params[i].value = v
            self.sets.append((a[0], a[1], i, v))


class JackServer:
    """A private JACK server with the dummy driver, for real MIDI between mido ports (UNIX_JACK).

    `JACK_NO_AUDIO_RESERVATION=1 jackd --no-realtime -n NAME -d dummy -r 48000 -p PERIOD` (64
    frames unless asked: 1.33 ms, and JACK delivers MIDI once a period); clients in this process
    find it through JACK_DEFAULT_SERVER. `start()` returns None with the reason when
    no server can start (no jackd, no shared memory, ...), so tests can skip with it.
    """

    BACKEND = "mido.backends.rtmidi/UNIX_JACK"
    RATE = 48000

    def __init__(self, period: int = 64) -> None:
        import os
        self.name = f"eqbridge-test-{os.getpid()}"
        self.period = int(period)
        self.proc = None
        self.log = ""

    @property
    def period_s(self) -> float:
        """One period: JACK delivers MIDI once per period."""
        return self.period / self.RATE

    def start(self, wait_s: float = 30.0) -> str | None:
        import os
        import shutil
        import subprocess
        import tempfile

        jackd = shutil.which("jackd")
        if jackd is None:
            return "jackd is not installed (apt-get install -y jackd2)"
        try:
            import mido
            import rtmidi
            if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
                return "python-rtmidi was built without JACK support"
        except Exception as exc:
            return f"mido/python-rtmidi unavailable: {exc}"
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        self._logf = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([jackd, "--no-realtime", "-n", self.name, "-d", "dummy", "-r", str(self.RATE),
                                      "-p", str(self.period)], env=env, stdout=self._logf, stderr=subprocess.STDOUT)
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ["JACK_NO_START_SERVER"] = "1"
        be = mido.Backend(self.BACKEND)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"jackd exited with {self.proc.returncode}: {self.read_log()[-500:]}"
            try:
                port = be.open_output("eqbridge-probe", virtual=True)
                port.close()
                return None
            except Exception:
                time.sleep(0.1)
        self.stop()
        return f"jackd did not come up within {wait_s:g} s: {self.read_log()[-500:]}"

    def read_log(self) -> str:
        """What jackd has printed so far."""
        self._logf.seek(0)
        return self._logf.read()

    def xruns(self, since: int = 0) -> tuple[int, dict[str, int]]:
        """jackd's log from character `since` on: how often the driver's own cycle was late
        ("XRun = N usec") and, per client, how often a cycle ended with it not finished (an xrun
        of the graph: that client's MIDI and audio for the cycle are lost)."""
        text = self.read_log()[since:]
        late: dict[str, int] = {}
        for line in text.splitlines():
            if "was not finished" in line and "client = " in line:
                client = line.split("client = ", 1)[1].split(" was not finished", 1)[0]
                late[client] = late.get(client, 0) + 1
        return sum("XRun" in line and "usec" in line for line in text.splitlines()), late

    def stop(self) -> None:
        import os
        if self.proc is not None:
            end_process(self.proc, 10.0)
        os.environ.pop("JACK_DEFAULT_SERVER", None)
        os.environ.pop("JACK_NO_START_SERVER", None)


class JackMidiMonitor:
    """A stand-in controller's MIDI input: jackd2's own `jack_midi_dump CLIENT` (port
    CLIENT:input), read line by line into mido messages (`messages`, in arrival order). A C client
    in its own process, so what it shows does not depend on python-rtmidi's input or on this
    process's GIL."""

    def __init__(self, client: str) -> None:
        import shutil
        import subprocess
        import threading

        exe, stdbuf = shutil.which("jack_midi_dump"), shutil.which("stdbuf")
        if exe is None or stdbuf is None:
            raise RuntimeError("jack_midi_dump (Debian package jackd2) and stdbuf (coreutils) are needed")
        self.client = client
        self.messages: list = []
        # stdbuf: a line at a time through the pipe, not in 4 kB blocks
        self.proc = subprocess.Popen([stdbuf, "-oL", exe, client], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import mido
        for line in self.proc.stdout:  # "   12: b0 07 40 control change (channel  0): ..." (frame: bytes)
            head, sep, rest = line.partition(":")
            if not sep or not head.strip().isdigit():
                continue
            hexbytes = []
            for tok in rest.split():
                if len(tok) != 2:
                    break
                try:
                    hexbytes.append(int(tok, 16))
                except ValueError:
                    break
            try:
                self.messages.append(mido.Message.from_bytes(hexbytes))
            except ValueError:
                continue

    def close(self) -> None:
        end_process(self.proc, 5.0)
        self._thread.join(timeout=2)


def end_process(proc, timeout: float) -> None:
    """Terminate a child process, killing it if it has not ended within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except Exception:
            proc.kill()
            proc.wait()


NOTES = (60, 62, 64, 65)
NOTE_GROUPS = [[0x90, n, 64] for n in NOTES] + [[0x80, n, 64] for n in NOTES]
"""One loop of `note_groups_player`: a group of note-ons in one frame, then of note-offs."""


def note_groups_player(client: str):
    """jackd2's `jack_midiseq CLIENT` (port CLIENT:out), a C client: the NOTES as note-ons in one
    frame and note-offs 100 frames later, ten times a second at 48 kHz. Several messages in one
    JACK cycle, as a controller's 14-bit pair or NRPN arrive. Returns the process."""
    import shutil
    import subprocess

    exe = shutil.which("jack_midiseq")
    if exe is None:
        raise RuntimeError("jack_midiseq is not installed (Debian package jackd2)")
    return subprocess.Popen([exe, client, "4800", *[str(x) for n in NOTES for x in (0, n, 100)]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def score_note_groups(msgs: list[list[int]]) -> dict[str, int]:
    """A stream read from `note_groups_player`, scored without timing: a message is right when it
    follows its predecessor as NOTE_GROUPS says or starts a group (after a group was lost); a
    repeat equals its predecessor; anything else is wrong."""
    starts = (NOTE_GROUPS[0], NOTE_GROUPS[len(NOTES)])
    out = {"read": len(msgs), "right": 0, "repeats": 0, "wrong": 0}
    prev = None
    for m in msgs:
        if prev is not None and m == prev:
            out["repeats"] += 1
        elif m in starts or (prev in NOTE_GROUPS
                             and m == NOTE_GROUPS[(NOTE_GROUPS.index(prev) + 1) % len(NOTE_GROUPS)]):
            out["right"] += 1
        else:
            out["wrong"] += 1
        prev = m
    return out


class GilHog:
    """A thread that wants the GIL all the time (a little bytecode at a time) while `on` is set,
    the way the daemon's engine holds it while it answers; with the switch interval at the
    daemon's 0.5 ms while on. Use as a context manager (on inside) or set `on` by hand."""

    def __init__(self) -> None:
        self.on = threading.Event()
        self._stop = False
        self._switch = sys.getswitchinterval()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        sys.setswitchinterval(0.0005)

    def _run(self) -> None:
        while not self._stop:
            if self.on.is_set():
                sum(range(500))
            else:
                time.sleep(0.005)

    def stop(self) -> None:
        self._stop = True
        self._thread.join()
        sys.setswitchinterval(self._switch)

    def __enter__(self) -> "GilHog":
        self.on.set()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
