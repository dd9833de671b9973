"""Session state: one state per target (phrase, amount, macros, undo/redo history, bypass).

Pure state, no sockets and no threads: the daemon's engine thread is the only caller. Inputs
(OSC, MIDI) become `Event`s; the engine drains a burst of them, `coalesce`s it (the latest phrase
wins), applies each to the `Session`, and renders the active target's curve once per burst.

Macros are the model's latent knobs (bridge.model.latent.MacroKnobs, `LatentMacros` here): their
count and names come from the shipped data, they are 1-based, 0.5 is no change, and they move the
phrase's curve through the space of crowd curves relative to it (`knobs.apply(curve, {n: v})`).
A new phrase starts them at 0.5 again: they refine *this* answer.

Without the latent knobs (no model loaded, or model files without them) the daemon falls back to
`PlaceholderMacros`, the fixed shapes used before the knobs existed, so a control surface still
does something: macro 1 tilts the curve, 2 moves the lows, 3 the highs, each a smooth dB curve
added to the phrase's curve (0 / 1 move it by -/+ MACRO_RANGE_DB at the extreme). Their names say
"placeholder", and /eqbridge/status reports which kind is in use and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import numpy as np

from bridge.erb import FREQS_HZ, N_BANDS
from bridge.model.curve import DEFAULT_AMOUNT, MAX_GAIN_DB

MACRO_NAMES: tuple[str, ...] = ("tilt", "low", "high")
"""Meaning of the placeholder macros 1, 2, 3 (used only without latent knobs; see the docstring)."""
MAX_MACROS = 8
"""Most macro knobs any model may have (MIDI bindings may name macro/1 .. macro/MAX_MACROS)."""

NEUTRAL = 0.5
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
    `relative`: a knob move's value is a change to add to the knob's current value (an endless
    encoder), applied in order and clipped to 0..1.
    `pickup`: the name of the pickup binding (a pot) that sent it: the move counts only once the
    pot has reached the knob's value (bridge.pickup; the daemon checks, the session does not).
    """

    kind: str
    args: tuple = ()
    reply_to: tuple[str, int] | None = None
    source: str = "osc"
    t_in: float = 0.0
    relative: bool = False
    pickup: str | None = None


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
        if not 1 <= len(macros) <= MAX_MACROS or not all(finite_unit(m) for m in macros):
            macros = (NEUTRAL,) * len(MACRO_NAMES)  # the Session fits the length to its knobs
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


class PlaceholderMacros:
    """The fixed tilt/low/high shapes: what macros do when no latent knobs are loaded."""

    kind = "placeholder"

    def __init__(self, reason: str = "no latent knobs loaded") -> None:
        self.reason = reason

    @property
    def count(self) -> int:
        return len(MACRO_NAMES)

    def name(self, n: int) -> str:
        return f"{MACRO_NAMES[n - 1]} (placeholder)"

    def apply(self, gains_db: np.ndarray, knobs: dict[int, float]) -> np.ndarray:
        values = [knobs.get(n, NEUTRAL) for n in range(1, self.count + 1)]
        return np.asarray(gains_db, dtype=np.float64) + macro_curve(values)


class LatentMacros:
    """The model's latent knobs (MacroKnobs: `.count`, `.name(n)`, `.apply(gains_db, {n: v})`)."""

    kind = "latent"
    reason = None

    def __init__(self, knobs: Any) -> None:
        self.knobs = knobs
        self.names = tuple(knobs.name(n) for n in range(1, knobs.count + 1))

    @property
    def count(self) -> int:
        return len(self.names)

    def name(self, n: int) -> str:
        return self.names[n - 1]

    def apply(self, gains_db: np.ndarray, knobs: dict[int, float]) -> np.ndarray:
        return np.asarray(self.knobs.apply(gains_db, knobs), dtype=np.float64)


def macros_for(model: Any) -> "LatentMacros | PlaceholderMacros":
    """The model's latent knobs, or the placeholder with the reason they are unavailable."""
    if model is None:
        return PlaceholderMacros("no model loaded")
    try:
        knobs = model.knobs
    except AttributeError:
        return PlaceholderMacros("the model has no latent knobs")
    except Exception as exc:  # model files without the latent knobs (ModelFileError), onnxruntime...
        return PlaceholderMacros(f"latent knobs unavailable ({type(exc).__name__}: {exc})")
    if knobs is None or not 1 <= int(getattr(knobs, "count", 0)) <= MAX_MACROS:
        return PlaceholderMacros("the model's latent knobs are missing or too many")
    return LatentMacros(knobs)


def shipped_macro_names() -> tuple[str, ...]:
    """Knob names from the shipped data (models/latent-knobs.json; a JSON read, no ONNX), for the
    generated OSC table. The placeholder names when the file is missing or unreadable."""
    import json

    try:
        from bridge.model.files import LATENT_KNOBS_FILE, models_dir
        names = json.loads((models_dir() / LATENT_KNOBS_FILE).read_text(encoding="utf-8"))["names"]
        if isinstance(names, list) and 1 <= len(names) <= MAX_MACROS and all(isinstance(n, str) for n in names):
            return tuple(names)
    except Exception:
        pass
    return tuple(f"{n} (placeholder)" for n in MACRO_NAMES)


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

    def _at_default(self, phrase: str) -> np.ndarray | None:
        """The curve at the default amount, or None when the answer is personalised (a kept phrase
        or one pulled toward the user's: not linear in the amount, so no shortcut)."""
        if phrase in self._cache:
            return self._cache[phrase]
        ans = self.model.curve(phrase, self.default_amount)
        why = getattr(ans, "personal", "crowd")
        g = (np.asarray(ans.gains_db, dtype=np.float64)
             if why == "crowd" or str(why).startswith("crowd (") else None)
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[phrase] = g
        return g

    def clear(self) -> None:
        """Forget cached answers (the user's profile changed: kept phrases answer differently)."""
        self._cache.clear()

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
        if g is None:
            return np.asarray(self.model.curve(phrase, amount).gains_db, dtype=np.float64)
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
    fit_phrase: str | None = None  # the phrase `fit` was made for
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

    def last_knob(self) -> int:
        """The knob moved last, as the knob lines number them (0 the amount, n macro n); 0 when
        the last change was not a knob (a phrase, an undo)."""
        c = self.last_control or ""
        return int(c.split("/")[1]) if c.startswith("macro/") else 0

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

    @staticmethod
    def from_json(d: dict) -> "TargetState":
        hist = [Knobs.from_json(k) for k in d.get("history", [])][-HISTORY_LIMIT:] or [Knobs()]
        pos = min(max(int(d.get("position", len(hist) - 1)), 0), len(hist) - 1)
        return TargetState(knobs=hist[pos], history=hist, position=pos, bypass=bool(d.get("bypass")))


@dataclass(frozen=True)
class SessionSnapshot:
    """What is saved of a session (`Session.snapshot`): the active key and each target's history,
    position and bypass. Taking one copies pointers only (Knobs are immutable), so the daemon takes
    it under its engine lock and serialises it outside, where no input waits on it."""

    active: str | None
    targets: tuple[tuple[str, tuple[Knobs, ...], int, bool], ...]

    def to_json(self) -> dict:
        """The saved form (`Session.load_json` / `TargetState.from_json` read it)."""
        return {"active": self.active,
                "targets": {key: {"history": [k.to_json() for k in hist], "position": pos, "bypass": bypass}
                            for key, hist, pos, bypass in self.targets}}


class SessionError(ValueError):
    """An event that cannot be applied (reported back to its sender as /eqbridge/error)."""


def _nudged(value: float, change: float) -> float:
    return min(1.0, max(0.0, value + change))


def coalesce(events: list[Event]) -> list[Event]:
    """Latest wins: of several phrases in one burst only the last is kept (earlier ones are stale).

    Knob moves are cheap and stay in order (they only set numbers); the render that follows the
    burst happens once whatever it holds.
    """
    last_text = max((i for i, e in enumerate(events) if e.kind == "text"), default=-1)
    return [e for i, e in enumerate(events) if e.kind != "text" or i == last_text]


class Session:
    """All targets' states, the active target's key, and the rules that change them.

    `macros` is what the macro knobs mean (LatentMacros from the model, else PlaceholderMacros);
    every state's knobs hold exactly `macros.count` values.
    """

    def __init__(self, check_phrase: Callable[[str], None] | None = None, macros: Any = None) -> None:
        self.states: dict[str, TargetState] = {}
        self.active: str | None = None
        self._check_phrase = check_phrase
        self.macros = macros if macros is not None else PlaceholderMacros()

    @property
    def neutral(self) -> tuple[float, ...]:
        return (NEUTRAL,) * self.macros.count

    def fit_knobs(self, k: Knobs) -> Knobs:
        """`k` with one macro value per knob (padded with 0.5, or cut), e.g. after a model change."""
        n = self.macros.count
        if len(k.macros) == n:
            return k
        return replace(k, macros=(tuple(k.macros) + self.neutral)[:n])

    def _new_state(self) -> TargetState:
        k = Knobs(macros=self.neutral)
        return TargetState(knobs=k, history=[k])

    def select(self, key: str) -> TargetState:
        self.active = key
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = self._new_state()
        return st

    @property
    def state(self) -> TargetState:
        if self.active is None:
            raise SessionError("no target selected")
        return self.select(self.active)

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
            # the macros are relative to the answer: a new answer starts them at 0.5 again
            return st.commit(replace(k, phrase=phrase, macros=self.neutral), None)
        if kind in CONTINUOUS:
            return st.commit(*self.moved_knobs(ev))
        if kind == "undo":
            return st.undo()
        if kind == "redo":
            return st.redo()
        if kind == "reset":
            return st.commit(Knobs(macros=self.neutral), None)
        if kind == "bypass":
            flag = bool(ev.args[0])
            changed = flag != st.bypass
            st.bypass = flag
            return changed
        raise SessionError(f"event {kind!r} is not a session change")

    def moved_knobs(self, ev: Event) -> tuple[Knobs, str]:
        """The active target's knobs after a knob event (amount or macro), and the control it
        moved, without applying it: the daemon answers a lone knob move before the session
        catches up. Raises SessionError for a macro the model does not have."""
        k = self.state.knobs
        if ev.kind == "amount":
            amount = _nudged(k.amount, float(ev.args[0])) if ev.relative else float(ev.args[0])
            return replace(k, amount=amount), "amount"
        if ev.kind != "macro":
            raise SessionError(f"event {ev.kind!r} is not a knob move")
        n, v = int(ev.args[0]), float(ev.args[1])
        count = self.macros.count
        if not 1 <= n <= count:
            raise SessionError(f"macro must be 1..{count}, got {n}")
        macros = list(self.fit_knobs(k).macros)
        macros[n - 1] = _nudged(macros[n - 1], v) if ev.relative else v
        return replace(k, macros=tuple(macros)), f"macro/{n}"

    def answer_curve(self, curves: PhraseCurves | None) -> np.ndarray | None:
        """The model's answer for the active phrase at its amount (before the macros), or None."""
        k = self.state.knobs
        if k.phrase is None or curves is None:
            return None
        return curves.gains(k.phrase, k.amount)

    def target_curve(self, curves: PhraseCurves | None, *, ignore_bypass: bool = False) -> np.ndarray:
        """The active target's curve in dB at the 40 centres (flat when bypassed or empty).
        `ignore_bypass`: the curve the user dialled in even while bypassed (what keep stores)."""
        st = self.state
        if st.bypass and not ignore_bypass:
            return np.zeros(N_BANDS)
        return self.curve_for(st.knobs, curves)

    def curve_for(self, k: Knobs, curves: PhraseCurves | None) -> np.ndarray:
        """The curve that knobs `k` ask for (not bypassed): the phrase's answer with the macros."""
        base = None if k.phrase is None or curves is None else curves.gains(k.phrase, k.amount)
        if base is None:
            base = np.zeros(N_BANDS)
        turned = {n: m for n, m in enumerate(k.macros[:self.macros.count], start=1) if m != NEUTRAL}
        if turned:
            limit = getattr(curves, "max_gain_db", None) or MAX_GAIN_DB
            base = np.clip(self.macros.apply(base, turned), -limit, limit)
        return base

    def snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(self.active, tuple((key, tuple(st.history), st.position, st.bypass)
                                                  for key, st in self.states.items()))

    def to_json(self) -> dict:
        return self.snapshot().to_json()

    def load_json(self, d: dict) -> None:
        for key, sd in (d.get("targets") or {}).items():
            if isinstance(sd, dict):
                try:
                    st = TargetState.from_json(sd)
                except (TypeError, ValueError):
                    continue
                st.history = [self.fit_knobs(k) for k in st.history]
                st.knobs = st.history[st.position]
                self.states[str(key)] = st


def finite_unit(x: float) -> bool:
    return math.isfinite(x) and 0.0 <= x <= 1.0
