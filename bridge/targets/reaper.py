"""REAPER through its OSC control surface (Preferences > Control/OSC/web > OSC).

REAPER's default pattern config (Default.ReaperOSC) has
`FX_PARAM_VALUE n/track/@/fx/@/fxparam/@/value`: normalized 0..1 floats, tracks counted from 1
(0 is the master track), FX slots and parameters from 1 in OSC addresses
(https://www.reaper.fm/sdk/osc/osc.php). Mappings give `reaper_index` as ReaScript does
(TrackFX_SetParam, 0-based), so the OSC parameter number is reaper_index + 1. REAPER's docs
warn that a surface that floods it slows the UI; the default interval here is 10 ms.
"""

from __future__ import annotations

import socket
import struct

from bridge.bands import HostParam
from bridge.targets.base import OutputTarget

DEFAULT_REAPER_PORT = 8000
"""REAPER's default OSC "local listen port" for a new OSC control surface."""
DEFAULT_MIN_INTERVAL = 0.010


def _osc_float(address: str, value: float) -> bytes:
    """A `,f` message without a builder object (this is the hot path)."""
    a = address.encode("ascii")
    a += b"\0" * (4 - len(a) % 4)
    return a + b",f\0\0" + struct.pack(">f", value)


class ReaperOscTarget(OutputTarget):
    kind = "reaper"
    inline = True

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_REAPER_PORT, *, track: int = 1,
                 fx: int = 1, min_interval: float = DEFAULT_MIN_INTERVAL, name: str | None = None) -> None:
        super().__init__(min_interval=min_interval, name=name or f"reaper:{host}:{port}/track/{track}/fx/{fx}")
        self.host, self.port, self.track, self.fx = host, int(port), int(track), int(fx)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self._prefix = f"/track/{self.track}/fx/{self.fx}/fxparam/"

    def address_for(self, p: HostParam) -> str | None:
        if p.reaper_index is None:
            return None
        return f"{self._prefix}{int(p.reaper_index) + 1}/value"

    def wire_value(self, p: HostParam) -> float | None:
        if p.reaper_index is None:
            return None
        # The value as a 32-bit OSC float: what REAPER will see, and what "changed" means.
        return struct.unpack(">f", struct.pack(">f", min(max(float(p.normalized), 0.0), 1.0)))[0]

    def _send(self, batch: list[tuple[HostParam, float]]) -> int:
        dest = (self.host, self.port)
        for p, v in batch:
            self._sock.sendto(_osc_float(self.address_for(p), v), dest)  # type: ignore[arg-type]
        return len(batch)

    def _close(self) -> None:
        self._sock.close()

    def describe(self) -> str:
        return f"REAPER OSC {self.host}:{self.port} track {self.track} fx {self.fx}"
