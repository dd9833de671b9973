"""OSC in: the address table, argument checks, and a UDP server that never dies on bad input.

The address space lives in ONE place, `build_addresses(macro_names)`, generated from lists (one
`/eqbridge/macro/<n>` and `/eqbridge/macro/<n>/name` per latent knob, named from the data) the way AbletonOSC builds its table from property lists
(https://github.com/ideoforms/AbletonOSC, abletonosc/device.py). `docs/osc.md` is rendered from
it by `render_markdown()` (with the shipped knob names, `ADDRESSES`) and a test keeps the two
equal. The daemon builds its server's table from the knobs its model actually has.

python-osc (https://python-osc.readthedocs.io/en/latest/server.html) gives us the `Dispatcher`
that maps addresses to handlers. Its server hands the datagram to `OscMessage`, which raises
ParseError on truncated packets but UnicodeDecodeError on non-UTF-8 strings and may run a timed
bundle late by sleeping; so `OscServer` reads the socket in its own loop, parses each datagram
itself, catches everything, replies `/eqbridge/error ,s` to the sender, ignores bundle time tags
and only then asks the dispatcher for handlers. Valid messages become `bridge.session.Event`s
handed to a sink (the daemon's queue); `/eqbridge/ping` and `/eqbridge/macro/<n>/name` are
answered right here, so the daemon keeps answering them whatever the engine is doing.
"""

from __future__ import annotations

import logging
import math
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer

from bridge.session import CONTINUOUS, Event, shipped_macro_names

from numpy import floating as np_floating, integer as np_integer

_I32 = struct.Struct(">i")
_F32 = struct.Struct(">f")

log = logging.getLogger("eqbridge.osc")

DEFAULT_OSC_HOST = "127.0.0.1"
DEFAULT_OSC_PORT = 9031
MAX_STRING_CHARS = 1000
"""Longest string argument accepted (phrases are far shorter; the model caps them again)."""
MAX_ADDRESS_CHARS = 200
HANDLER_CACHE_SIZE = 256
PREFIX = "/eqbridge"


@dataclass(frozen=True)
class Arg:
    """One OSC argument: `kind` is unit (float 0..1), change (float -1..1), int, bool, str or any
    (int or str)."""

    name: str
    kind: str
    doc: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Address:
    """One input address: what it takes, which event it makes, what comes back."""

    path: str
    event: str
    args: tuple[Arg, ...] = ()
    doc: str = ""
    replies: str = "/eqbridge/curve, /eqbridge/params"
    fixed: tuple = ()  # arguments the address itself carries (the macro number)
    relative: bool = False  # a knob nudge: the value is added to the knob's current one

    @property
    def typetags(self) -> str:
        tags = {"unit": "f", "change": "f", "int": "i", "bool": "i", "str": "s", "any": "i|s"}
        req = "".join(tags[a.kind] for a in self.args if not a.optional)
        opt = "".join(tags[a.kind] for a in self.args if a.optional)
        return "," + req + (f"[{opt}]" if opt else "")


def build_addresses(macro_names: tuple[str, ...] | list[str] | None = None) -> tuple[Address, ...]:
    """The input table; `macro_names` are the knobs' names in order (default: the shipped ones)."""
    if macro_names is None:
        macro_names = shipped_macro_names()
    table = [
        Address(f"{PREFIX}/text", "text", (Arg("phrase", "str", "words, e.g. \"warmer, less muddy\""),),
                "A phrase: the new target curve for the active target (one undo step)."),
        Address(f"{PREFIX}/amount", "amount", (Arg("amount", "unit", "0..1"),),
                "How strongly the phrase's curve is applied (0.5 = as the crowd set it)."),
        Address(f"{PREFIX}/amount/nudge", "amount", (Arg("change", "change", "-1..1"),),
                "Add to the amount (an endless encoder, e.g. TouchOSC's); stops at 0 and 1.", relative=True),
    ]
    for n, name in enumerate(macro_names, start=1):
        table.append(Address(
            f"{PREFIX}/macro/{n}", "macro", (Arg("value", "unit", "0..1, 0.5 = no change"),),
            f"Macro knob {n} \"{name}\": moves the phrase's curve through the latent space of crowd "
            "curves, relative to it (0 and 1 = two crowd standard deviations). A new phrase "
            "starts it at 0.5.", fixed=(n,)))
        table.append(Address(
            f"{PREFIX}/macro/{n}/nudge", "macro", (Arg("change", "change", "-1..1"),),
            f"Add to macro knob {n} (an endless encoder); stops at 0 and 1.", fixed=(n,), relative=True))
        table.append(Address(
            f"{PREFIX}/macro/{n}/name", "macro_name", (), f"Ask what macro knob {n} does.",
            replies=f"{PREFIX}/macro/{n}/name ,s NAME", fixed=(n, name)))
    table += [
        Address(f"{PREFIX}/undo", "undo", (), "Step back in the active target's history. Undoing a "
                "phrase's answer is weak evidence, in the profile, that it was not what you meant."),
        Address(f"{PREFIX}/redo", "redo", (), "Step forward again."),
        Address(f"{PREFIX}/reset", "reset", (), "Flat curve, default amount, neutral macros (undoable)."),
        Address(f"{PREFIX}/keep", "keep", (),
                "This is what I meant: store the phrase with its answer and the curve now dialled in "
                "(after knobs and amount) in the user's profile; the phrase comes back so later.",
                replies=f"{PREFIX}/kept ,s PHRASE (after the store committed)"),
        Address(f"{PREFIX}/teach", "teach", (Arg("name", "str", "e.g. \"my vocal air\" (one descriptor, "
                                                 "no 'and'/'but'/'less')"),),
                "Name the current sound: the name then works as a word, inside phrases too.",
                replies=f"{PREFIX}/taught ,s NAME"),
        Address(f"{PREFIX}/bypass", "bypass", (Arg("on", "bool", "1 = send a flat EQ, 0 = back"),),
                "Bypass: the EQ is set flat; the phrase and knobs are kept."),
        Address(f"{PREFIX}/target", "target",
                (Arg("name_or_daw", "str", "a configured target name, or reaper|ableton|midi"),
                 Arg("track", "int", "REAPER: 1-based track (0 = master); Live: 0-based", True),
                 Arg("fx", "int", "REAPER: 1-based FX slot; Live: 0-based device", True),
                 Arg("mapping", "str", "mapping name or path", True)),
                "Choose where settings go at run time; each target keeps its own state.",
                replies="/eqbridge/status, /eqbridge/curve, /eqbridge/params"),
        Address(f"{PREFIX}/get", "get", (), "Send everything a layout shows: the curve, the params, every knob's "
                "value and every macro's name (e.g. when a TouchOSC layout loads).",
                replies="/eqbridge/curve, /eqbridge/params, /eqbridge/amount, /eqbridge/macro/<n>, "
                        "/eqbridge/macro/<n>/name"),
        Address(f"{PREFIX}/status", "status", (), "Daemon and target state as JSON.",
                replies="/eqbridge/status ,s JSON"),
        Address(f"{PREFIX}/ping", "ping", (), "Liveness check, answered by the OSC thread itself.",
                replies="/eqbridge/pong"),
    ]
    return tuple(table)


ADDRESSES: tuple[Address, ...] = build_addresses()
BY_PATH: dict[str, Address] = {a.path: a for a in ADDRESSES}

REPLIES: tuple[tuple[str, str, str], ...] = (
    (f"{PREFIX}/curve", ",f x40", "Gains in dB at the 40 ERB centres (20 Hz .. 19.7 kHz) now asked of the EQ."),
    (f"{PREFIX}/params", ",sf...", "Pairs of parameter key and normalized value (0..1) now set on the target."),
    (f"{PREFIX}/amount", ",f", "The amount now, when it differs from what this client last sent or was "
                               "sent (a phrase, undo, a nudge, another surface moved it): a fader follows."),
    (f"{PREFIX}/macro/<n>", ",f", "Macro knob n now, on the same rule (a new phrase puts the macros back to 0.5)."),
    (f"{PREFIX}/error", ",s", "A human-readable reason a message was refused, or why the EQ did not get a change "
                              "(its target cannot be reached; sent before that change's curve)."),
    (f"{PREFIX}/pong", ",", "Answer to /eqbridge/ping."),
    (f"{PREFIX}/status", ",s", "JSON: version, target, phrase, amount, macros and their names, bypass, "
                                "history, profile (and its error), counters."),
    (f"{PREFIX}/macro/<n>/name", ",s", "What macro knob n does (the answer to /eqbridge/macro/<n>/name)."),
    (f"{PREFIX}/kept", ",s", "The phrase just kept; sent only once it is durably in the profile."),
    (f"{PREFIX}/taught", ",s", "The name just taught, as stored (the descriptor phrases will use)."),
)


def knob_table(addresses: Iterable[Address]) -> dict[bytes, tuple[str, tuple]]:
    """The encoded address and `,f` type tag of every one-float knob address (amount, macros)
    -> (event kind, fixed arguments): a datagram is such a message exactly when it is one of
    these prefixes followed by four bytes."""
    return {build_message(a.path, [0.0])[:-4]: (a.event, a.fixed[:1])
            for a in addresses
            if a.event in CONTINUOUS and not a.relative and [x.kind for x in a.args] == ["unit"]}


def decode_knob(data: bytes, table: dict[bytes, tuple[str, tuple]]) -> tuple[str, tuple] | None:
    """(event kind, arguments) of a knob message with a value in 0..1, read straight from the
    bytes; None for anything else, which then takes the full parse and its error replies. Knob
    moves are most of the traffic and the answer's latency starts here: this is a dict lookup
    and one struct call instead of python-osc's message object and our argument checks (the
    same value: an OSC float is a big-endian IEEE 754 float32, OSC 1.0 spec)."""
    hit = table.get(data[:-4])
    if hit is None:
        return None
    v = _F32.unpack_from(data, len(data) - 4)[0]
    if not 0.0 <= v <= 1.0:  # NaN fails too
        return None
    return hit[0], hit[1] + (v,)


class ArgError(ValueError):
    """Arguments that do not fit an address (reported as /eqbridge/error)."""


def check_args(addr: Address, values: list[Any]) -> tuple:
    """Validate and convert OSC arguments for `addr`; raise ArgError with a readable reason."""
    required = [a for a in addr.args if not a.optional]
    if not len(required) <= len(values) <= len(addr.args):
        want = len(required) if len(required) == len(addr.args) else f"{len(required)}..{len(addr.args)}"
        raise ArgError(f"{addr.path} takes {want} argument(s) (type tags '{addr.typetags}'), got {len(values)}")
    out = []
    for spec, v in zip(addr.args, values):
        out.append(_convert(addr.path, spec, v))
    return tuple(out)


def _convert(path: str, spec: Arg, v: Any) -> Any:
    kind = spec.kind
    if kind == "str" or (kind == "any" and isinstance(v, str)):
        if not isinstance(v, str):
            raise ArgError(f"{path}: {spec.name} must be a string, got {type(v).__name__}")
        if len(v) > MAX_STRING_CHARS:
            raise ArgError(f"{path}: {spec.name} is {len(v)} characters; at most {MAX_STRING_CHARS}")
        return v
    if isinstance(v, bool):
        if kind in ("bool", "int", "any"):
            return int(v)
        raise ArgError(f"{path}: {spec.name} must be a number, got a boolean")
    if not isinstance(v, (int, float)):
        raise ArgError(f"{path}: {spec.name} must be a number, got {type(v).__name__}")
    x = float(v)
    if not math.isfinite(x):
        raise ArgError(f"{path}: {spec.name} must be finite, got {v}")
    if kind in ("unit", "change"):
        lo = 0.0 if kind == "unit" else -1.0
        if not lo <= x <= 1.0:
            raise ArgError(f"{path}: {spec.name} must be in {lo:g}..1, got {x:g}")
        return x
    if kind in ("int", "any", "bool"):
        if x != int(x) or abs(x) > 2**31:
            raise ArgError(f"{path}: {spec.name} must be a whole number, got {x:g}")
        return int(x) if kind != "bool" else int(x != 0)
    raise ArgError(f"{path}: unknown argument kind {kind}")


def _osc_string(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def build_message(address: str, args: Iterable[Any] = ()) -> bytes:
    """Encode an OSC message (ints ,i  floats ,f  anything else ,s). A few struct calls: the
    feedback after every change is built on the engine thread, so this stays cheap (python-osc's
    builder parses what it built again, ~150 us for 40 floats)."""
    tags = [","]
    data = []
    for a in args:
        if isinstance(a, bool) or isinstance(a, (int, np_integer)):
            tags.append("i")
            data.append(_I32.pack(int(a)))
        elif isinstance(a, (float, np_floating)):
            tags.append("f")
            data.append(_F32.pack(float(a)))
        else:
            tags.append("s")
            data.append(_osc_string(str(a).encode("utf-8")))
    return _osc_string(address.encode("utf-8")) + _osc_string("".join(tags).encode("ascii")) + b"".join(data)


class _LogLimiter:
    """At most one warning per `every` seconds; the rest are counted and summarized."""

    def __init__(self, logger: logging.Logger, every: float = 1.0) -> None:
        self.logger, self.every, self.last, self.suppressed = logger, every, 0.0, 0

    def warn(self, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            if self.suppressed:
                self.logger.warning("(%d similar messages suppressed)", self.suppressed)
            self.logger.warning(fmt, *args)
            self.last, self.suppressed = now, 0
        else:
            self.suppressed += 1


@dataclass
class Counters:
    received: int = 0
    accepted: int = 0
    malformed: int = 0
    rejected: int = 0
    unknown: int = 0
    denied: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


class OscServer(BlockingOSCUDPServer):
    """UDP OSC server: dispatcher for routing, our own parsing and error replies around it."""

    max_packet_size = 65535  # socketserver's default (8192) would truncate a 60 kB datagram

    def __init__(self, host: str, port: int, sink: Callable[[Event], None], *,
                 allow: Iterable[str] = (), reply_errors: bool = True,
                 addresses: tuple[Address, ...] | None = None) -> None:
        self.sink = sink
        self.allow = frozenset(allow)
        self.reply_errors = reply_errors
        self.counters = Counters()
        self._warn = _LogLimiter(log)
        self.addresses = ADDRESSES if addresses is None else tuple(addresses)
        self._handlers: dict[str, list] = {}  # address -> matched handlers (known addresses only)
        self._knobs = knob_table(self.addresses)
        super().__init__((host, port), build_dispatcher(self), bind_and_activate=True)
        try:  # room for bursts (a fader sweep, a flood) while the engine catches up
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        self._thread: threading.Thread | None = None
        self._running = False

    # ---- checks (socketserver's names)
    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.allow and client_address[0] not in self.allow:
            self.counters.denied += 1
            self._warn.warn("OSC from %s dropped: not in the allow-list", client_address[0])
            return False
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:  # never print tracebacks
        log.exception("OSC handler failed for a datagram from %s", client_address)

    # ---- our parsing
    def handle_datagram(self, data: bytes, client: tuple[str, int]) -> None:
        self.counters.received += 1
        t_in = time.perf_counter()
        knob = decode_knob(data, self._knobs)
        if knob is not None:
            self.counters.accepted += 1
            self.sink(Event(knob[0], knob[1], client, "osc", t_in))
            return
        try:
            if not data.startswith((b"/", b"#bundle")):
                raise ValueError("not an OSC message or bundle")
            messages = [tm.message for tm in OscPacket(data).messages]
        except Exception as exc:  # ParseError, UnicodeDecodeError, struct.error, IndexError, ...
            self.counters.malformed += 1
            reason = f"malformed OSC packet ({len(data)} bytes): {type(exc).__name__}: {str(exc)[:120]}"
            self._warn.warn("%s from %s", reason, client)
            self.reply_error(client, reason)
            return
        for msg in messages:
            self._dispatch(msg, client, t_in)

    def _dispatch(self, msg: Any, client: tuple[str, int], t_in: float) -> None:
        address = msg.address
        if len(address) > MAX_ADDRESS_CHARS:
            self.counters.unknown += 1
            self.reply_error(client, f"address too long ({len(address)} characters)")
            return
        handlers = self._handlers.get(address)
        if handlers is None:
            try:
                handlers = list(self.dispatcher.handlers_for_address(address))
            except Exception as exc:
                handlers = []
                log.debug("address match failed for %r: %s", address, exc)
            if handlers and len(self._handlers) < HANDLER_CACHE_SIZE:
                self._handlers[address] = handlers  # python-osc matches every pattern each time
        if not handlers:
            self.counters.unknown += 1
            self._warn.warn("unknown OSC address %r from %s", address[:80], client)
            self.reply_error(client, f"unknown address {address[:80]}; see docs/osc.md")
            return
        for h in handlers:
            h.callback(client, address, h.args, t_in, *msg.params)

    def on_message(self, addr: Address, client: tuple[str, int], t_in: float, values: list) -> None:
        try:
            args = addr.fixed[:1] + check_args(addr, values)
        except ArgError as exc:
            self.counters.rejected += 1
            self._warn.warn("%s (from %s)", exc, client)
            self.reply_error(client, str(exc))
            return
        self.counters.accepted += 1
        if addr.event == "ping":
            self.send(client, f"{PREFIX}/pong")
            return
        if addr.event == "macro_name":
            self.send(client, addr.path, [addr.fixed[1]])
            return
        self.sink(Event(addr.event, args, client, "osc", t_in, relative=addr.relative))

    # ---- replies
    def send(self, client: tuple[str, int], address: str, args: Iterable[Any] = ()) -> None:
        self.send_dgram(client, build_message(address, args))

    def send_dgram(self, client: tuple[str, int], dgram: bytes) -> None:
        try:
            self.socket.sendto(dgram, client)
        except OSError as exc:
            self._warn.warn("cannot reply to %s: %s", client, exc)

    def reply_error(self, client: tuple[str, int] | None, reason: str) -> None:
        if client is not None and self.reply_errors:
            self.send(client, f"{PREFIX}/error", [reason[:500]])

    def pending(self) -> bool:
        """True when more datagrams are waiting to be read (a burst is arriving)."""
        try:
            return bool(select.select([self.socket], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    # ---- life cycle
    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._read_loop, name="eqbridge-osc-in", daemon=True)
        self._thread.start()

    def _read_loop(self, poll_interval: float = 0.2) -> None:
        """Read datagrams in a tight loop. socketserver's serve_forever costs a select() and a
        handler object per datagram, which under a 10 000 message/s flood is more than the
        parsing and lets the kernel drop datagrams (the last one among them)."""
        sock = self.socket
        sock.settimeout(poll_interval)
        size = self.max_packet_size
        while self._running:
            try:
                data, client = sock.recvfrom(size)
            except (socket.timeout, InterruptedError):
                continue
            except OSError:
                if not self._running:
                    return
                log.debug("OSC receive failed", exc_info=True)
                continue
            if not self.verify_request(data, client):
                continue
            try:
                self.handle_datagram(data, client)
            except Exception:
                self.handle_error(data, client)

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.server_close()


def build_dispatcher(server: OscServer) -> Dispatcher:
    """One python-osc Dispatcher entry per row of ADDRESSES; the row rides along as fixed args."""
    d = Dispatcher()

    def handler(client: tuple[str, int], address: str, fixed: list, t_in: float, *values: Any) -> None:
        server.on_message(fixed[0], client, t_in, list(values))

    for addr in server.addresses:
        d.map(addr.path, handler, addr, needs_reply_address=True)
    return d


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown() -> str:
    """docs/osc.md, generated from ADDRESSES and REPLIES."""
    lines = [
        "# eqbridge OSC address table",
        "",
        "<!-- Generated by `python -m bridge.osc_in > docs/osc.md` from bridge/osc_in.py; do not edit. -->",
        "",
        f"`eqbridge serve` listens for OSC over UDP on {DEFAULT_OSC_HOST}:{DEFAULT_OSC_PORT} by default",
        "(`--osc-port`, or `osc.host`/`osc.port`/`osc.allow` in the config). Numbers may be sent as",
        "int or float. Every change is answered to its sender (and to the configured feedback",
        "clients) with `/eqbridge/curve` and `/eqbridge/params`, and with the knobs' values where they",
        "differ from what that client shows; a refused message is answered with",
        "`/eqbridge/error ,s reason`, and so is a change the EQ did not get (its target cannot be",
        "reached; the values are kept and sent again). Bundles are accepted; their time tags are",
        "ignored (run now).",
        "A burst of messages is coalesced: the latest phrase wins and the EQ is set once.",
        "",
        "## Input",
        "",
        "| Address | Type tags | Arguments | What it does | Replies |",
        "|---|---|---|---|---|",
    ]
    for a in ADDRESSES:
        args = "; ".join(f"`{x.name}`{' (optional)' if x.optional else ''}: {x.doc}" for x in a.args) or "-"
        lines.append(f"| `{a.path}` | `{_md(a.typetags)}` | {_md(args)} | {_md(a.doc)} | {a.replies} |")
    lines += ["", "## Output (to the sender and feedback clients)", "",
              "| Address | Type tags | Meaning |", "|---|---|---|"]
    for path, tags, doc in REPLIES:
        lines.append(f"| `{path}` | `{tags}` | {_md(doc)} |")
    lines += [
        "",
        "## Examples",
        "",
        "```sh",
        "eqbridge send \"warmer, less muddy\"     # /eqbridge/text",
        "eqbridge send --amount 0.7              # /eqbridge/amount",
        "eqbridge send --macro 1 0.8             # /eqbridge/macro/1",
        "eqbridge send --macro-name 1            # /eqbridge/macro/1/name -> the knob's name",
        "eqbridge send --keep                    # /eqbridge/keep -> /eqbridge/kept",
        "eqbridge send --teach \"my vocal air\"   # /eqbridge/teach -> /eqbridge/taught",
        "eqbridge send --undo                    # /eqbridge/undo",
        "eqbridge send --target reaper 2 1 reaper-reaeq  # /eqbridge/target",
        "eqbridge send --ping                    # /eqbridge/ping -> /eqbridge/pong",
        "```",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
