"""Session state: one state per target (phrase, amount, macros, undo/redo history, bypass).

Pure state, no sockets and no threads: the daemon's engine thread is the only caller. Inputs
(OSC, MIDI) become `Event`s; the engine drains a burst of them, `coalesce`s it (the latest phrase
wins), applies each to the `Session`, and renders the active target's curve once per burst.

Macros are a placeholder until the latent-knob issue gives them their final meaning: macro 1
tilts the curve, 2 moves the lows, 3 the highs. Each is a smooth curve in dB added to the
phrase's curve; 0.5 is neutral and 0 / 1 move the curve by -/+ MACRO_RANGE_DB at the extreme.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import numpy as np

from bridge.erb import FREQS_HZ, N_BANDS

MACRO_NAMES: tuple[str, ...] = ("tilt", "low", "high")
"""Placeholder meaning of macro 1, 2, 3 (see the module docstring)."""

NEUTRAL = 0.5
DEFAULT_AMOUNT = 0.5
MACRO_RANGE_DB = 6.0
HISTORY_LIMIT = 200
"""Undo steps kept per target; older ones are forgotten."""

CONTINUOUS = ("amount", "macro")
"""Event kinds that are knob moves: consecutive moves of the same knob make one undo step."""


@dataclass(frozen=True)
class Event:
    """One input, from any source: `kind` is the action, `args` its validated arguments.

    `reply_to` is the OSC sender (host, port) that should hear about the result, or None (MIDI).
    `t_in` is time.perf_counter() at reception (for latency figures and logs).
    """

    kind: str
    args: tuple = ()
    reply_to: tuple[str, int] | None = None
    source: str = "osc"
    t_in: float = 0.0


@dataclass(frozen=True)
class Knobs:
    """What the user asked for on one target: everything undo/redo restores."""

    phrase: str | None = None
    amount: float = DEFAULT_AMOUNT
    macros: tuple[float, ...] = (NEUTRAL,) * len(MACRO_NAMES)

    def to_json(self) -> dict:
        return {"phrase": self.phrase, "amount": self.amount, "macros": list(self.macros)}

    @staticmethod
    def from_json(d: dict) -> "Knobs":
        macros = tuple(float(m) for m in d.get("macros", ()))
        if len(macros) != len(MACRO_NAMES):
            macros = (NEUTRAL,) * len(MACRO_NAMES)
        phrase = d.get("phrase")
        return Knobs(phrase if isinstance(phrase, str) and phrase else None,
                     float(d.get("amount", DEFAULT_AMOUNT)), macros)


def _smoothstep_log(freqs: np.ndarray, corner_hz: float, octaves_wide: float = 1.0) -> np.ndarray:
    """0 below the corner, 1 above, a logistic over about `octaves_wide` octaves (log frequency)."""
    x = np.log2(freqs / corner_hz) / octaves_wide
    return 1.0 / (1.0 + np.exp(-4.0 * x))


_TILT = np.clip(np.log2(FREQS_HZ / 1000.0) / np.log2(20000.0 / 1000.0), -1.0, 1.0)
_LOW = 1.0 - _smoothstep_log(FREQS_HZ, 250.0)
_HIGH = _smoothstep_log(FREQS_HZ, 4000.0)
MACRO_SHAPES: tuple[np.ndarray, ...] = (_TILT, _LOW, _HIGH)
"""Unit curves of the placeholder macros (tilt around 1 kHz, low shelf at 250 Hz, high at 4 kHz)."""


def macro_curve(macros: Iterable[float]) -> np.ndarray:
    """The dB curve the macros add: sum of each macro's shape times (m - 0.5) * 2 * MACRO_RANGE_DB."""
    out = np.zeros(N_BANDS)
    for m, shape in zip(macros, MACRO_SHAPES):
        if m != NEUTRAL:
            out += (2.0 * (m - NEUTRAL) * MACRO_RANGE_DB) * shape
    return out


class PhraseCurves:
    """Curves for phrases at an amount, from a model with `.curve(phrase, amount)`; small cache.

    The model scales a phrase's curve linearly with the amount and clips at its MAX_GAIN_DB. When
    the curve at the default amount is unclipped, other amounts are the same product the model
    computes (bit for bit), so turning the amount knob costs a multiply, not a model call.
    """

    def __init__(self, model: Any, *, default_amount: float | None = None,
                 max_gain_db: float | None = None, cache_size: int = 64) -> None:
        self.model = model
        self.default_amount = default_amount
        self.max_gain_db = max_gain_db
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size

    def _at_default(self, phrase: str) -> np.ndarray:
        g = self._cache.get(phrase)
        if g is None:
            g = np.asarray(self.model.curve(phrase, self.default_amount).gains_db, dtype=np.float64)
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[phrase] = g
        return g

    def check(self, phrase: str) -> None:
        """Raise the model's PhraseError now if the phrase cannot be answered."""
        if self.default_amount is None:
            self.model.curve(phrase, None)
        else:
            self._at_default(phrase)

    def gains(self, phrase: str, amount: float) -> np.ndarray:
        if self.default_amount is None or self.max_gain_db is None:
            return np.asarray(self.model.curve(phrase, amount).gains_db, dtype=np.float64)
        g = self._at_default(phrase)
        if amount == self.default_amount:
            return g
        if float(np.max(np.abs(g))) < self.max_gain_db:
            scaled = g * (amount / self.default_amount)
            if float(np.max(np.abs(scaled))) < self.max_gain_db:
                return scaled
        return np.asarray(self.model.curve(phrase, amount).gains_db, dtype=np.float64)


@dataclass
class TargetState:
    """One target's knobs with its undo history, bypass flag and the last render."""

    knobs: Knobs = field(default_factory=Knobs)
    history: list[Knobs] = field(default_factory=lambda: [Knobs()])
    position: int = 0
    bypass: bool = False
    last_control: str | None = None
    fit: Any = None  # the previous Fit, for warm starts
    curve: np.ndarray | None = None

    def commit(self, knobs: Knobs, control: str | None) -> bool:
        """Make `knobs` current; one undo step, merged with the last one for the same knob."""
        if knobs == self.knobs:
            return False
        del self.history[self.position + 1:]
        if control is not None and control == self.last_control and self.position > 0:
            self.history[self.position] = knobs
        else:
            self.history.append(knobs)
            if len(self.history) > HISTORY_LIMIT:
                del self.history[0]
            self.position = len(self.history) - 1
        self.knobs = knobs
        self.last_control = control
        return True

    def undo(self) -> bool:
        if self.position == 0:
            return False
        self.position -= 1
        self.knobs = self.history[self.position]
        self.last_control = None
        return True

    def redo(self) -> bool:
        if self.position >= len(self.history) - 1:
            return False
        self.position += 1
        self.knobs = self.history[self.position]
        self.last_control = None
        return True

    def to_json(self) -> dict:
        return {"history": [k.to_json() for k in self.history], "position": self.position,
                "bypass": self.bypass}

    @staticmethod
    def from_json(d: dict) -> "TargetState":
        hist = [Knobs.from_json(k) for k in d.get("history", [])][-HISTORY_LIMIT:] or [Knobs()]
        pos = min(max(int(d.get("position", len(hist) - 1)), 0), len(hist) - 1)
        return TargetState(knobs=hist[pos], history=hist, position=pos, bypass=bool(d.get("bypass")))


class SessionError(ValueError):
    """An event that cannot be applied (reported back to its sender as /eqbridge/error)."""


def coalesce(events: list[Event]) -> list[Event]:
    """Latest wins: of several phrases in one burst only the last is kept (earlier ones are stale).

    Knob moves are cheap and stay in order (they only set numbers); the render that follows the
    burst happens once whatever it holds.
    """
    last_text = max((i for i, e in enumerate(events) if e.kind == "text"), default=-1)
    return [e for i, e in enumerate(events) if e.kind != "text" or i == last_text]


class Session:
    """All targets' states, the active target's key, and the rules that change them."""

    def __init__(self, check_phrase: Callable[[str], None] | None = None) -> None:
        self.states: dict[str, TargetState] = {}
        self.active: str | None = None
        self._check_phrase = check_phrase

    def select(self, key: str) -> TargetState:
        self.active = key
        return self.states.setdefault(key, TargetState())

    @property
    def state(self) -> TargetState:
        if self.active is None:
            raise SessionError("no target selected")
        return self.states.setdefault(self.active, TargetState())

    def apply(self, ev: Event) -> bool:
        """Apply one event to the active target. Returns True when what should be sent changed."""
        st = self.state
        k = st.knobs
        kind = ev.kind
        if kind == "text":
            phrase = str(ev.args[0]).strip()
            if not phrase:
                raise SessionError("empty phrase")
            if self._check_phrase is not None:
                self._check_phrase(phrase)  # raises PhraseError
            return st.commit(replace(k, phrase=phrase), None)
        if kind == "amount":
            return st.commit(replace(k, amount=float(ev.args[0])), "amount")
        if kind == "macro":
            n, v = int(ev.args[0]), float(ev.args[1])
            if not 1 <= n <= len(MACRO_NAMES):
                raise SessionError(f"macro must be 1..{len(MACRO_NAMES)}, got {n}")
            macros = list(k.macros)
            macros[n - 1] = v
            return st.commit(replace(k, macros=tuple(macros)), f"macro/{n}")
        if kind == "undo":
            return st.undo()
        if kind == "redo":
            return st.redo()
        if kind == "reset":
            return st.commit(Knobs(), None)
        if kind == "bypass":
            flag = bool(ev.args[0])
            changed = flag != st.bypass
            st.bypass = flag
            return changed
        raise SessionError(f"event {kind!r} is not a session change")

    def target_curve(self, curves: PhraseCurves | None) -> np.ndarray:
        """The active target's curve in dB at the 40 centres (flat when bypassed or empty)."""
        st = self.state
        k = st.knobs
        if st.bypass:
            return np.zeros(N_BANDS)
        if k.phrase is not None and curves is not None:
            base = curves.gains(k.phrase, k.amount)
        else:
            base = np.zeros(N_BANDS)
        if any(m != NEUTRAL for m in k.macros):
            base = base + macro_curve(k.macros)
        return base

    def to_json(self) -> dict:
        return {"active": self.active, "targets": {k: s.to_json() for k, s in self.states.items()}}

    def load_json(self, d: dict) -> None:
        for key, sd in (d.get("targets") or {}).items():
            if isinstance(sd, dict):
                try:
                    self.states[str(key)] = TargetState.from_json(sd)
                except (TypeError, ValueError):
                    continue


def finite_unit(x: float) -> bool:
    return math.isfinite(x) and 0.0 <= x <= 1.0
