"""REAPER through its OSC control surface (Preferences > Control/OSC/web > OSC).

REAPER's default pattern config (Default.ReaperOSC) has
`FX_PARAM_VALUE n/track/@/fx/@/fxparam/@/value`: normalized 0..1 floats, tracks counted from 1
(0 is the master track), FX slots and parameters from 1 in OSC addresses
(https://www.reaper.fm/sdk/osc/osc.php). Mappings give `reaper_index` as ReaScript does
(TrackFX_SetParam, 0-based), so the OSC parameter number is reaper_index + 1. REAPER's docs
warn that a surface that floods it slows the UI; the default interval here is 10 ms.

`units="real"` (config `reaper_units: real`, `--reaper-real-units`) sends ReaEQ's real-unit
addresses from the same Default.ReaperOSC instead: `/track/<t>/fxeq/band/<b>/freq/hz`,
`.../gain/db`, `.../q/oct` with the mapping's native values (Hz, dB, octaves), which bypasses
ReaEQ's undocumented normalized gain and bandwidth curves. REAPER applies `fxeq` to the track's
first ReaEQ (the FX slot is not part of the address). `<b>` is the band's number in the mapping
(band1 -> 1), counted from 1 like every other `@` in REAPER's patterns; UNVERIFIED against a
running REAPER here.

Each flush goes out as OSC bundles (immediate time tag) of at most MAX_DATAGRAM bytes, one
datagram for a ReaEQ's 12 values instead of twelve: one system call and one wake-up of the
receiver, about a quarter of a millisecond less per answer here (bench/bridge_latency.py,
`--reaper-per-message` for the other way). REAPER reads them: its OSC surface's receive thread
queues each datagram behind its big-endian length, so that "unpacking bundles becomes trivial",
and OscGetInput skips "#bundle" and the time tag and reads the elements (big-endian size, bytes)
as consecutive messages, each at most MAX_OSC_MSG_LEN = 1024 bytes, a datagram at most
MAX_PACKET_SIZE = 32768 (justinfrankel/reaper-sdk, reaper-plugins/reaper_csurf/osc.cpp and
osc.h; REAPER packs its own output the same way). Only the first level is read so: bundles are
never nested here. tests/peers.ReaperPeer parses datagrams by that same walk.
`bundle=False` (config `osc_bundle: false`, `serve --reaper-per-message`) sends one datagram
per parameter instead, for a receiver that cannot read bundles.

A host given by name is looked up on the target's own thread (bridge/udp_address.py); until it
is known, and again after a failed send, flushes go through that thread, not inline.
"""

from __future__ import annotations

import re
import socket
import struct

from bridge.bands import HostParam
from bridge.osc_in import build_message
from bridge.targets.base import OutputTarget
from bridge.udp_address import PeerAddress, SockAddr

DEFAULT_REAPER_PORT = 8000
"""REAPER's default OSC "local listen port" for a new OSC control surface."""
DEFAULT_MIN_INTERVAL = 0.010
UNITS = ("normalized", "real")
REAL_UNIT_SUFFIX = {"freq": "freq/hz", "gain": "gain/db", "q": "q/oct"}
"""Role -> the real-unit fxeq address ending (Default.ReaperOSC: FX_EQ_BAND_FREQ/GAIN/Q)."""
_BAND_KEY = re.compile(r"^[A-Za-z_]*?(\d+)\.(freq|gain|q)$")


_F32 = struct.Struct(">f")
MAX_DATAGRAM = 1400
"""Bundle size limit: below a typical Ethernet MTU, so a bundle to another machine is never
fragmented."""
_BUNDLE_HEAD = b"#bundle\0" + struct.pack(">Q", 1)  # OSC 1.0: time tag 1 = immediately


def osc_bundles(messages: list[bytes], max_bytes: int = MAX_DATAGRAM) -> list[bytes]:
    """Pack encoded OSC messages into as few bundles (OSC 1.0: "#bundle", time tag, then each
    element as a big-endian int32 size and its bytes) as fit in max_bytes each."""
    out: list[bytes] = []
    parts: list[bytes] = []
    size = len(_BUNDLE_HEAD)
    for m in messages:
        element = struct.pack(">i", len(m)) + m
        if parts and size + len(element) > max_bytes:
            out.append(_BUNDLE_HEAD + b"".join(parts))
            parts, size = [], len(_BUNDLE_HEAD)
        parts.append(element)
        size += len(element)
    if parts:
        out.append(_BUNDLE_HEAD + b"".join(parts))
    return out


class ReaperOscTarget(OutputTarget):
    kind = "reaper"

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_REAPER_PORT, *, track: int = 1,
                 fx: int = 1, min_interval: float = DEFAULT_MIN_INTERVAL, name: str | None = None,
                 units: str = "normalized", bundle: bool = True) -> None:
        if units not in UNITS:
            raise ValueError(f"REAPER units must be one of {UNITS}, got {units!r}")
        super().__init__(min_interval=min_interval, name=name or f"reaper:{host}:{port}/track/{track}/fx/{fx}")
        self.host, self.port, self.track, self.fx = host, int(port), int(track), int(fx)
        self.units = units
        self.bundle = bool(bundle)
        self._peer = PeerAddress(host, self.port)
        self._sock: socket.socket | None = None
        self._dest: SockAddr | None = None  # set once `_sock` can send to it
        if self._peer.numeric:
            self._open()
        self._prefix = f"/track/{self.track}/fx/{self.fx}/fxparam/"
        self._addresses: dict[str, str | None] = {}  # key -> real-unit address (None: not sendable)
        self._heads: dict[str, bytes] = {}  # key -> encoded address and ",f" tag: the hot path packs 4 bytes

    @property
    def inline(self) -> bool:  # type: ignore[override]
        """UDP to a known address never blocks; a name to look up might (module docstring)."""
        return self._dest is not None

    def _open(self) -> SockAddr:
        """The destination, resolved (may block: sender thread only), with a socket of its family;
        published as `_dest` last, so an inline flush never sees an address without its socket."""
        family, addr = self._peer.resolve()
        if self._sock is None or self._sock.family != family:
            if self._sock is not None:
                self._sock.close()
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._dest = addr
        return addr

    def _connect(self) -> None:
        self._open()

    def real_address(self, key: str) -> str | None:
        """`/track/<t>/fxeq/band/<b>/freq/hz` etc. for a mapping key such as "band2.freq"."""
        a = self._addresses.get(key, "")
        if a == "":
            m = _BAND_KEY.match(key)
            a = None if m is None else f"/track/{self.track}/fxeq/band/{int(m[1])}/{REAL_UNIT_SUFFIX[m[2]]}"
            self._addresses[key] = a
        return a

    def address_for(self, p: HostParam) -> str | None:
        if self.units == "real":
            return self.real_address(p.key)
        if p.reaper_index is None:
            return None
        return f"{self._prefix}{int(p.reaper_index) + 1}/value"

    def wire_value(self, p: HostParam) -> float | None:
        if self.units == "real":
            if self.real_address(p.key) is None:
                return None
            return _F32.unpack(_F32.pack(float(p.native)))[0]
        if p.reaper_index is None:
            return None
        # The value as a 32-bit OSC float: what REAPER will see, and what "changed" means.
        return _F32.unpack(_F32.pack(min(max(float(p.normalized), 0.0), 1.0)))[0]

    def _send(self, batch: list[tuple[HostParam, float]]) -> int:
        dest = self._dest or self._open()
        heads, pack = self._heads, _F32.pack
        messages = [(heads.get(p.key) or self._head(p)) + pack(v) for p, v in batch]
        sendto = self._sock.sendto  # type: ignore[union-attr]
        try:
            for dgram in (osc_bundles(messages) if self.bundle else messages):
                sendto(dgram, dest)
        except OSError:
            self._dest = None
            self._peer.forget()
            raise
        return len(messages)

    def _head(self, p: HostParam) -> bytes:
        """The message of `p` without its value (cached per key: a target's addresses are fixed)."""
        h = self._heads[p.key] = build_message(self.address_for(p), [0.0])[:-4]  # type: ignore[arg-type]
        return h

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def describe(self) -> str:
        units = ((", real units (fxeq)" if self.units == "real" else "")
                 + (", OSC bundles" if self.bundle else ", one datagram per parameter"))
        return f"REAPER OSC {self.host}:{self.port} track {self.track} fx {self.fx}{units}"
