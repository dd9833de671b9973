"""Ableton Live through AbletonOSC (https://github.com/ideoforms/AbletonOSC).

AbletonOSC listens on UDP 11000 and answers on 11001 at the sender's IP (its osc_server.py).
Parameters are set in Live's native ranges with
`/live/device/set/parameter/value track device param value` (track, device and param 0-based).
The parameter index is looked up by name: `/live/device/get/parameters/name track device`
answers `track device name0 name1 ...`; `.../parameters/min` and `.../max` give each
parameter's range, which we clamp to. AbletonOSC runs on Live's ~100 ms tick, so the default
interval between flushes is 100 ms; a burst in between is coalesced (the latest value wins).

Units are confirmed once, on the sender thread, as soon as the names are known and we know which
parameters are frequencies and gains (from `units`, else from the first flush's keys): one of
each is read back with `/live/device/get/parameter/value` and `.../value_string` (AbletonOSC
README, Device API: replies `track device param value|string`). Live's display ("1.00 kHz",
"-3.0 dB") must show the mapping's unit, and the raw value in that unit. A mismatch is logged and
stays in `last_error`; no reply within `units_timeout` is only noted in `units_status`.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import struct
import threading
from typing import Any

from pythonosc.osc_message import OscMessage

from bridge.bands import HostParam
from bridge.osc_in import build_message
from bridge.targets.base import OutputTarget
from bridge.targets.replies import datagrams, listen_host
from bridge.udp_address import PeerAddress

log = logging.getLogger("eqbridge.targets.ableton")

DEFAULT_ABLETON_PORT = 11000
DEFAULT_REPLY_PORT = 11001
DEFAULT_MIN_INTERVAL = 0.100
DEFAULT_UNITS_TIMEOUT = 1.0
"""Seconds to wait for value_string replies; AbletonOSC answers on Live's ~100 ms tick."""

ROLE_UNITS = {"freq": "Hz", "gain": "dB"}
"""A role's native unit when the mapping states none (mappings/README.md: keys are "<band>.<role>")."""
CHECKED_UNITS = ("Hz", "dB")
DISPLAY_REL_TOL, DISPLAY_ABS_TOL = 0.02, 0.06
"""Live rounds its display ("1.00 kHz", "-3.0 dB"): a shown number this close to the raw value agrees."""

_UNIT_BASE = {"hz": ("Hz", 1.0), "khz": ("Hz", 1000.0), "k": ("Hz", 1000.0), "db": ("dB", 1.0)}
_DISPLAY = re.compile(r"^\s*([+-]?(?:inf|\d+(?:\.\d*)?|\.\d+))\s*(\S*)\s*$", re.IGNORECASE)


def _f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", float(x)))[0]


def unit_base(unit: str) -> tuple[str, float]:
    """("kHz") -> ("Hz", 1000.0): the unit values are compared in and the factor into it, so a
    display that switches from Hz to kHz at 1 kHz compares as one number."""
    u = unit.strip()
    return _UNIT_BASE.get(u.lower(), (u, 1.0))


def parse_display(text: str) -> tuple[float | None, str]:
    """Live's display string as (number, base unit): "1.00 kHz" -> (1000.0, "Hz"),
    "-inf dB" -> (-inf, "dB"), "0.71" -> (0.71, ""); text without a number -> (None, text)."""
    m = _DISPLAY.match(text.replace("\u2212", "-").replace(",", "."))
    if m is None:
        return None, text.strip()
    base, scale = unit_base(m.group(2))
    return float(m.group(1)) * scale, base


def unit_problem(name: str, shown: str, unit: str, raw: float | None) -> str | None:
    """Why Live's display `shown` of parameter `name` disagrees with the mapping's native `unit`,
    or None. The unit must match; with Live's raw value known, the number shown must be that value
    in the unit (a frequency exposed as 0..1 shows "1.00 kHz" for 0.5, not "0.50 Hz")."""
    value, got = parse_display(shown)
    want_unit, scale = unit_base(unit)
    if got.lower() != want_unit.lower():
        return f"{name}: Live shows {shown!r}, the mapping expects {unit}"
    if value is None or raw is None or math.isinf(value) or math.isinf(raw):
        return None  # "-inf dB" and friends: the unit is all we can compare
    want = raw * scale
    if abs(value - want) <= DISPLAY_REL_TOL * abs(want) + DISPLAY_ABS_TOL:
        return None
    return f"{name}: Live shows {shown!r} for value {raw:g}, the mapping expects {want:g} {want_unit}"


def units_from_mapping(mapping: Any) -> dict[str, str]:
    """Live name -> native unit of each frequency and gain parameter, as `mapping` states it
    (a conversion without a unit falls back to its role's: Hz for freq, dB for gain)."""
    out: dict[str, str] = {}
    for bp in getattr(mapping, "band_params", ()):
        for p in bp.params:
            if p.live_name and p.role in ROLE_UNITS:
                out[p.live_name] = p.conversion.unit or ROLE_UNITS[p.role]
    return out


class AbletonLookupError(RuntimeError):
    pass


class AbletonOscTarget(OutputTarget):
    kind = "ableton"

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_ABLETON_PORT, *, track: int = 0,
                 device: int = 0, reply_port: int = DEFAULT_REPLY_PORT, reply_host: str | None = None,
                 min_interval: float = DEFAULT_MIN_INTERVAL, lookup_timeout: float = 2.0,
                 units: dict[str, str] | None = None, units_timeout: float = DEFAULT_UNITS_TIMEOUT,
                 name: str | None = None) -> None:
        super().__init__(min_interval=min_interval,
                         name=name or f"ableton:{host}:{port}/track/{track}/device/{device}")
        self.host, self.port, self.track, self.device = host, int(port), int(track), int(device)
        self.lookup_timeout = lookup_timeout
        self._peer: PeerAddress | None = None  # made at the first send, on the sender thread
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((reply_host or listen_host(host), int(reply_port)))
        self.reply_port = self._sock.getsockname()[1]
        self._sock.settimeout(0.2)
        self.names: list[str] | None = None
        self.mins: list[float] | None = None
        self.maxs: list[float] | None = None
        self.value_strings: dict[int, str] = {}
        self.values: dict[int, float] = {}
        self.units = dict(units or {})  # Live name -> the mapping's native unit (units_from_mapping)
        self.units_timeout = units_timeout
        self.units_status: str | None = None  # "units confirmed: ...", "units mismatch: ...", ...
        self._units_error: str | None = None
        self._units_done = False
        self._expected: dict[int, tuple[str, str]] = {}  # param index -> (Live name, unit), learned
        self._sent: dict[int, float] = {}
        self._got = threading.Condition()
        self._closing = False
        self._warned: set[str] = set()
        self._rx = threading.Thread(target=self._receive, name="eqbridge-ableton-rx", daemon=True)
        self._rx.start()

    # ---- replies from AbletonOSC
    def _receive(self) -> None:
        for data, _ in datagrams(self._sock, lambda: self._closing):
            try:
                msg = OscMessage(data)
                self._on_reply(msg.address, msg.params)
            except Exception as exc:
                log.debug("unreadable reply from AbletonOSC: %s", exc)

    def _on_reply(self, address: str, params: list[Any]) -> None:
        if len(params) < 2 or params[0] != self.track or params[1] != self.device:
            if address == "/live/error":
                log.warning("AbletonOSC error: %s", params)
            return
        rest = list(params[2:])
        with self._got:
            if address == "/live/device/get/parameters/name":
                self.names = [str(x) for x in rest]
            elif address == "/live/device/get/parameters/min":
                self.mins = [float(x) for x in rest]
            elif address == "/live/device/get/parameters/max":
                self.maxs = [float(x) for x in rest]
            elif address == "/live/device/get/parameter/value_string" and len(rest) >= 2:
                self.value_strings[int(rest[0])] = str(rest[1])
            elif address == "/live/device/get/parameter/value" and len(rest) >= 2:
                self.values[int(rest[0])] = float(rest[1])
            self._got.notify_all()

    def _sendto(self, address: str, args: list[Any]) -> None:
        """Send one message to AbletonOSC. Only on the sender thread: a host name is looked up
        at the first send, and again after a failed one (bridge/udp_address.py)."""
        if self._peer is None:
            self._peer = PeerAddress(self.host, self.port, socket.AF_INET)
        try:
            self._sock.sendto(build_message(address, args), self._peer.sockaddr or self._peer.resolve()[1])
        except OSError:
            self._peer.forget()
            raise

    def _query(self, address: str, *args: Any) -> None:
        self._sendto(address, [self.track, self.device, *args])

    def lookup(self) -> None:
        """Ask Live for the device's parameter names and ranges; wait for the answers."""
        with self._got:
            if self.names is not None and self.mins is not None and self.maxs is not None:
                return
        for what in ("name", "min", "max"):
            self._query(f"/live/device/get/parameters/{what}")
        with self._got:
            ok = self._got.wait_for(lambda: self.names is not None and self.mins is not None
                                    and self.maxs is not None, timeout=self.lookup_timeout)
        if not ok:
            raise AbletonLookupError(
                f"no answer from AbletonOSC at {self.host}:{self.port} (replies expected on port "
                f"{self.reply_port}) for track {self.track} device {self.device}")
        log.info("AbletonOSC device %d/%d: %d parameters", self.track, self.device, len(self.names or []))

    def query_value_strings(self, indices: list[int], timeout: float = 1.0, *,
                            values: bool = False) -> dict[int, str]:
        """Live's display strings (e.g. "2.50 kHz") for parameters, to confirm units.

        Earlier answers are dropped first, so only a reply to this question counts. With `values`,
        the raw values are asked just before (AbletonOSC answers in order) into `self.values`.
        """
        with self._got:
            for i in indices:
                self.value_strings.pop(i, None)
                if values:
                    self.values.pop(i, None)
        for i in indices:
            if values:
                self._query("/live/device/get/parameter/value", int(i))
            # AbletonOSC README, Device API: /live/device/get/parameter/value_string
            # track_id device_id parameter_id -> track_id device_id parameter_id value_string
            self._query("/live/device/get/parameter/value_string", int(i))
        with self._got:
            self._got.wait_for(lambda: all(i in self.value_strings for i in indices), timeout=timeout)
            return {i: self.value_strings[i] for i in indices if i in self.value_strings}

    def index_of(self, live_name: str) -> int | None:
        names = self.names or []
        try:
            return names.index(live_name)
        except ValueError:
            if live_name not in self._warned:
                self._warned.add(live_name)
                log.warning("Live device %d/%d has no parameter named %r", self.track, self.device, live_name)
            return None

    # ---- units check
    def _unit_picks(self) -> list[tuple[int, str, str]]:
        """The lowest-index frequency and gain parameters, (index, Live name, unit): one of each
        is enough to catch a device whose values are not in the units the mapping assumes."""
        names = self.names or []
        want = dict(self._expected)
        want.update({names.index(n): (n, u) for n, u in self.units.items() if n in names})
        picks: dict[str, tuple[int, str, str]] = {}
        for i in sorted(want):
            name, unit = want[i]
            base = unit_base(unit)[0]
            if base in CHECKED_UNITS:
                picks.setdefault(base, (i, name, unit))
        return sorted(picks.values())

    def _check_units_once(self) -> None:
        """Confirm units once, when there is something to check. Never raises: a failed check
        must not fail the flush it follows (the base class would resend the batch)."""
        if self._units_done or self.names is None:
            return
        picks = self._unit_picks()
        if not picks:
            return
        self._units_done = True
        try:
            self._check_units(picks)
        except Exception as exc:
            self.units_status = f"units not confirmed (check failed: {exc})"
            log.warning("%s: %s", self.name, self.units_status)

    def _check_units(self, picks: list[tuple[int, str, str]]) -> None:
        """Read back what Live shows for `picks` and compare with the mapping's units."""
        shown = self.query_value_strings([i for i, _, _ in picks], self.units_timeout, values=True)
        problems, confirmed, missing = [], [], []
        for i, name, unit in picks:
            if i not in shown:
                missing.append(name)
                continue
            with self._got:
                raw = self.values.get(i, self._sent.get(i))
            why = unit_problem(name, shown[i], unit, raw)
            if why:
                problems.append(why)
            else:
                confirmed.append(f"{name} = {shown[i]!r}")
        if problems:
            self._units_error = self.units_status = "units mismatch: " + "; ".join(problems)
            log.warning("%s: %s", self.name, self.units_status)
            return
        if not confirmed:
            self.units_status = "units not confirmed (no value_string reply)"
        elif missing:
            self.units_status = (f"units confirmed: {', '.join(confirmed)}; not confirmed (no "
                                 f"value_string reply): {', '.join(missing)}")
        else:
            self.units_status = "units confirmed: " + ", ".join(confirmed)
        log.info("%s: %s", self.name, self.units_status)

    @property
    def last_error(self) -> str | None:  # type: ignore[override]
        """A send failure, else a unit mismatch: the base class clears send errors after every
        good flush, but a mismatch must stay in the status until the target is rebuilt."""
        return getattr(self, "_send_error", None) or getattr(self, "_units_error", None)

    @last_error.setter
    def last_error(self, value: str | None) -> None:
        self._send_error = value

    def send_failure(self) -> str | None:
        return getattr(self, "_send_error", None)  # not a unit mismatch: those values did go out

    # ---- OutputTarget
    def wire_value(self, p: HostParam) -> float | None:
        if p.live_name is None:
            return None
        return _f32(p.native)

    def _connect(self) -> None:
        self.lookup()
        self._check_units_once()  # only with `units` given; else after the first flush

    def _send(self, batch: list[tuple[HostParam, float]]) -> int:
        self.lookup()
        n = 0
        for p, v in batch:
            i = self.index_of(p.live_name)  # type: ignore[arg-type]
            if i is None:
                continue
            if self.mins and self.maxs and i < len(self.mins) and i < len(self.maxs):
                v = _f32(min(max(v, self.mins[i]), self.maxs[i]))
            self._sendto("/live/device/set/parameter/value", [self.track, self.device, i, float(v)])
            n += 1
            self._note_sent(p, i, v)
        self._check_units_once()
        return n

    def _note_sent(self, p: HostParam, i: int, v: float) -> None:
        """Remember what a parameter was set to and, from its key's role, which unit it is in."""
        if self._units_done:
            return
        with self._got:
            self._sent[i] = v
        unit = self.units.get(p.live_name or "") or ROLE_UNITS.get(p.key.rsplit(".", 1)[-1])
        if unit:
            self._expected[i] = (p.live_name or "", unit)

    def _close(self) -> None:
        self._closing = True
        self._rx.join(timeout=1)
        self._sock.close()

    def describe(self) -> str:
        units = f"; {self.units_status}" if self.units_status else ""
        return (f"AbletonOSC {self.host}:{self.port} (replies on {self.reply_port}) "
                f"track {self.track} device {self.device}{units}")
