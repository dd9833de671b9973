"""REAPER's OSC feedback: which track is selected and what FX it holds, to find the EQ to drive.

A REAPER OSC control surface sends its state to the "device port" (REAPER's OSC settings: Device
IP + device port; the default config's "local listen port" is where eqbridge sends). With
REAPER's default pattern config (Default.ReaperOSC, as compiled into REAPER's csurf_osc: its
`defcfg` table) the feedback used here is:
  - `TRACK_SELECT b/track/@/select`: 1 or 0 when a track is selected or deselected;
  - `FX_NAME s/track/@/fx/@/name`: the name of each FX slot of a track (empty for an empty slot).
REAPER sends them for the tracks of the surface's bank (`DEVICE_TRACK_COUNT 8`: the first 8 unless
the bank is scrolled; a custom .ReaperOSC file can raise it) and their first `DEVICE_FX_COUNT`
(8) slots, when they change and when the surface starts; numbers are the bank's, the same as the
`/track/@/fx/@/fxparam/@/value` addresses eqbridge sends. Values may come as floats, ints or
strings, one message per datagram or in bundles (REAPER packs its output into bundles).

`ReaperSurface` is the pure part (messages in, the EQ's track and slot out); `ReaperFeedback`
owns the socket and its thread and reports each new answer to a callback.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pythonosc.osc_packet import OscPacket

from bridge.targets.replies import datagrams

log = logging.getLogger("eqbridge.targets.reaper")

DEFAULT_FEEDBACK_PORT = 9000
"""REAPER's default "device port" for a new OSC control surface."""
_SELECT = re.compile(r"^/track/(\d+)/select$")
_FX_NAME = re.compile(r"^/track/(\d+)/fx/(\d+)/name$")


def _truthy(v: Any) -> bool | None:
    """REAPER's b-type argument: 1/0 as a float, an int or a string; None for anything else."""
    try:
        return float(v) >= 0.5
    except (TypeError, ValueError):
        return None


@dataclass
class ReaperSurface:
    """What REAPER's feedback has said about the selection and the FX slots (pure state)."""

    fx_match: str
    """A substring of the EQ's FX name (case-insensitive), e.g. "ReaEQ"."""
    selected: list[int] = field(default_factory=list)
    """Selected tracks, the most recently selected last."""
    fx_names: dict[tuple[int, int], str] = field(default_factory=dict)

    def feed(self, address: str, args: Iterable[Any]) -> bool:
        """Take one feedback message; True when it was one of the two this reads."""
        args = list(args)
        m = _SELECT.match(address)
        if m and args:
            on = _truthy(args[0])
            if on is None:
                return False
            track = int(m.group(1))
            if track in self.selected:
                self.selected.remove(track)
            if on:
                self.selected.append(track)
            return True
        m = _FX_NAME.match(address)
        if m and args:
            self.fx_names[(int(m.group(1)), int(m.group(2)))] = str(args[0])
            return True
        return False

    def slot_on(self, track: int) -> int | None:
        """The first FX slot on `track` whose name holds `fx_match`."""
        needle = self.fx_match.lower()
        slots = sorted(f for (t, f), name in self.fx_names.items() if t == track and needle in name.lower())
        return slots[0] if slots else None

    def where(self) -> tuple[int, int] | None:
        """(track, slot) of the EQ on the most recently selected track that has one."""
        for track in reversed(self.selected):
            slot = self.slot_on(track)
            if slot is not None:
                return track, slot
        return None

    def problem(self) -> str | None:
        """Why `where()` is None, in words (None when it is not)."""
        if self.where() is not None:
            return None
        if not self.selected:
            return "REAPER has reported no selected track yet"
        return (f"no FX matching {self.fx_match!r} on the selected track "
                f"{self.selected[-1]} (REAPER reported {self._names_on(self.selected[-1]) or 'no FX names'})")

    def _names_on(self, track: int) -> str:
        return ", ".join(repr(n) for (t, _), n in sorted(self.fx_names.items()) if t == track and n)


class ReaperFeedback:
    """Listens on REAPER's device port and calls `on_move(track, slot)` whenever the EQ to drive
    moves (another track selected, an FX added or moved). Malformed datagrams are counted and
    dropped, and so is anything not from `only_from` (REAPER's address) when it is given; the
    thread never dies on input."""

    def __init__(self, fx_match: str, on_move: Callable[[int, int], None], *,
                 host: str = "127.0.0.1", port: int = DEFAULT_FEEDBACK_PORT,
                 only_from: str | None = None) -> None:
        self.surface = ReaperSurface(fx_match)
        self.on_move = on_move
        self.only_from = None if only_from is None else socket.gethostbyname(only_from)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, int(port)))
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(0.2)
        self.host, self.port = host, self._sock.getsockname()[1]
        self.datagrams = 0
        self.unreadable = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._last: tuple[int, int] | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="eqbridge-reaper-feedback", daemon=True)

    def start(self) -> "ReaperFeedback":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing = True
        self._thread.join(timeout=2)
        self._sock.close()

    def where(self) -> tuple[int, int] | None:
        with self._lock:
            return self.surface.where()

    def to_json(self) -> dict:
        with self._lock:
            where = self.surface.where()
            return {"listening": f"{self.host}:{self.port}", "fx_match": self.surface.fx_match,
                    "selected_tracks": list(self.surface.selected),
                    "eq": None if where is None else {"track": where[0], "fx": where[1]},
                    "problem": self.surface.problem(), "datagrams": self.datagrams,
                    "unreadable": self.unreadable, "refused": self.refused}

    def feed_datagram(self, data: bytes) -> None:
        """One datagram (a message or a bundle); `on_move` when the EQ's place changed."""
        self.datagrams += 1
        try:
            messages = [(m.message.address, m.message.params) for m in OscPacket(data).messages]
        except Exception:  # python-osc raises ParseError, UnicodeDecodeError, struct.error...
            self.unreadable += 1
            log.debug("unreadable REAPER feedback datagram (%d bytes)", len(data))
            return
        with self._lock:
            for address, params in messages:
                self.surface.feed(address, params)
            where = self.surface.where()
            moved = where is not None and where != self._last
            if moved:
                self._last = where
        if moved:
            self.on_move(*where)

    def _run(self) -> None:
        for data, sender in datagrams(self._sock, lambda: self._closing):
            if self.only_from is not None and sender[0] != self.only_from:
                self.refused += 1
                continue
            try:
                self.feed_datagram(data)
            except Exception:  # on_move belongs to the daemon; its failure must not end the listener
                log.exception("REAPER feedback could not be handled")
