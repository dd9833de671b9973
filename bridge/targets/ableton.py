"""Ableton Live through AbletonOSC (https://github.com/ideoforms/AbletonOSC).

AbletonOSC listens on UDP 11000 and answers on 11001 at the sender's IP (its osc_server.py).
Parameters are set in Live's native ranges with
`/live/device/set/parameter/value track device param value` (track, device and param 0-based).
The parameter index is looked up by name: `/live/device/get/parameters/name track device`
answers `track device name0 name1 ...`; `.../parameters/min` and `.../max` give each
parameter's range, which we clamp to. AbletonOSC runs on Live's ~100 ms tick, so the default
interval between flushes is 100 ms; a burst in between is coalesced (the latest value wins).
`query_value_strings()` asks `/live/device/get/parameter/value_string` to confirm units.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from typing import Any

from pythonosc.osc_message import OscMessage

from bridge.bands import HostParam
from bridge.osc_in import build_message
from bridge.targets.base import OutputTarget

log = logging.getLogger("eqbridge.targets.ableton")

DEFAULT_ABLETON_PORT = 11000
DEFAULT_REPLY_PORT = 11001
DEFAULT_MIN_INTERVAL = 0.100


def _f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", float(x)))[0]


class AbletonLookupError(RuntimeError):
    pass


class AbletonOscTarget(OutputTarget):
    kind = "ableton"

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_ABLETON_PORT, *, track: int = 0,
                 device: int = 0, reply_port: int = DEFAULT_REPLY_PORT, reply_host: str | None = None,
                 min_interval: float = DEFAULT_MIN_INTERVAL, lookup_timeout: float = 2.0,
                 name: str | None = None) -> None:
        super().__init__(min_interval=min_interval,
                         name=name or f"ableton:{host}:{port}/track/{track}/device/{device}")
        self.host, self.port, self.track, self.device = host, int(port), int(track), int(device)
        self.lookup_timeout = lookup_timeout
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind_host = reply_host or ("127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0")
        self._sock.bind((bind_host, int(reply_port)))
        self.reply_port = self._sock.getsockname()[1]
        self._sock.settimeout(0.2)
        self.names: list[str] | None = None
        self.mins: list[float] | None = None
        self.maxs: list[float] | None = None
        self.value_strings: dict[int, str] = {}
        self._got = threading.Condition()
        self._closing = False
        self._warned: set[str] = set()
        self._rx = threading.Thread(target=self._receive, name="eqbridge-ableton-rx", daemon=True)
        self._rx.start()

    # ---- replies from AbletonOSC
    def _receive(self) -> None:
        while not self._closing:
            try:
                data, _ = self._sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
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
            self._got.notify_all()

    def _query(self, address: str, *args: Any) -> None:
        self._sock.sendto(build_message(address, [self.track, self.device, *args]), (self.host, self.port))

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

    def query_value_strings(self, indices: list[int], timeout: float = 1.0) -> dict[int, str]:
        """Live's display strings (e.g. "2.50 kHz") for parameters, to confirm units."""
        for i in indices:
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

    # ---- OutputTarget
    def wire_value(self, p: HostParam) -> float | None:
        if p.live_name is None:
            return None
        return _f32(p.native)

    def _connect(self) -> None:
        self.lookup()

    def _send(self, batch: list[tuple[HostParam, float]]) -> int:
        self.lookup()
        n = 0
        dest = (self.host, self.port)
        for p, v in batch:
            i = self.index_of(p.live_name)  # type: ignore[arg-type]
            if i is None:
                continue
            if self.mins and self.maxs and i < len(self.mins) and i < len(self.maxs):
                v = _f32(min(max(v, self.mins[i]), self.maxs[i]))
            self._sock.sendto(build_message("/live/device/set/parameter/value",
                                            [self.track, self.device, i, float(v)]), dest)
            n += 1
        return n

    def _close(self) -> None:
        self._closing = True
        self._rx.join(timeout=1)
        self._sock.close()

    def describe(self) -> str:
        return (f"AbletonOSC {self.host}:{self.port} (replies on {self.reply_port}) "
                f"track {self.track} device {self.device}")
