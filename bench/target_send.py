"""What sending one answer to REAPER costs the thread that answers, by how the DAW's host is given.

A ReaperOscTarget (reaper-reaeq's 12 parameters, min_interval 0, so each change goes out inline
on the caller's thread, as the daemon's answers do) sends to a receiver in another process.
Timed: `submit()` of a change to all 12 values, paced 10 ms apart, for the host given as
127.0.0.1 and as `localhost`. Beside it, interleaved, the baseline: the same target sending each
message with `sendto((host, port))`, as it did before bridge/udp_address.py (for a name, the C
resolver ran again for every datagram: /etc/hosts here; a LAN resolver elsewhere, where a slow or
absent answer took seconds, on the answering thread).

    python bench/target_send.py [--changes 500]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.bands import HostParam  # noqa: E402
from bridge.targets.reaper import _F32, ReaperOscTarget  # noqa: E402

SINK = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
s.settimeout(10)
try:
    while True:
        s.recv(4096)
except OSError:
    pass
"""


def pct(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):6.3f} ms  p99 {np.percentile(ms, 99):6.3f} ms"


class PerDatagramLookup(ReaperOscTarget):
    """The baseline: the target as it sent before, `sendto((host, port))` for every message."""

    def _send(self, batch: list[tuple[HostParam, float]]) -> int:
        messages = [self._head(p) + _F32.pack(v) for p, v in batch]
        for m in messages:
            self._sock.sendto(m, (self.host, self.port))  # type: ignore[union-attr]
        return len(messages)


def change(i: int) -> list[HostParam]:
    return [HostParam(f"p{k}", ((i * 7 + k) % 97) / 97.0, 0.0, reaper_index=k) for k in range(12)]


def started(tgt: ReaperOscTarget) -> ReaperOscTarget:
    tgt.start()
    while not tgt.inline:  # a name is looked up on the target's thread first
        time.sleep(0.01)
    return tgt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=500)
    a = ap.parse_args()
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline())
    try:
        for host in ("127.0.0.1", "localhost"):
            ways = {"now": started(ReaperOscTarget(host, port, min_interval=0.0, name="now")),
                    "baseline": started(PerDatagramLookup(host, port, min_interval=0.0, name="baseline"))}
            ms: dict[str, list[float]] = {k: [] for k in ways}
            for i in range(a.changes):
                params = change(i)
                order = list(ways.items())
                for way, tgt in order if i % 2 else order[::-1]:  # interleaved, each first half the time
                    time.sleep(0.010)
                    t0 = time.perf_counter()
                    tgt.submit(params)
                    ms[way].append((time.perf_counter() - t0) * 1000.0)
            print(f"host {host:10s} a 12-value answer, submit() inline: now {pct(ms['now'])}   "
                  f"baseline (a lookup per datagram) {pct(ms['baseline'])}   (n={a.changes} each)")
            for tgt in ways.values():
                tgt.stop()
    finally:
        sink.kill()


if __name__ == "__main__":
    main()
