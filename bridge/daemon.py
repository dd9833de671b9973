"""The daemon: wires OSC in, MIDI in, the session, the model, the fitter and the targets.

Threads: the OSC server thread parses and validates datagrams (and answers pings); the MIDI input's
thread decodes knobs; a REAPER feedback listener (a target with `follow_fx`) reports where the
selected track's EQ is; all put `Event`s on one bounded queue. Whoever holds the engine lock owns
the session state: normally the engine thread, which drains the queue (a burst at a time),
coalesces it (the latest phrase wins), applies it, renders the curve once, fits it, hands the host
values to the active target (which sends only what changed, rate-limited, from its own thread) and
answers `/eqbridge/curve` and `/eqbridge/params` to the senders and the feedback clients, with the
knobs' values where a client shows others (bridge.knob_feedback), and hands the knobs to the MIDI
feedback (bridge.midi_feedback). A pickup binding's move counts once its pot has reached the knob's
value (bridge.pickup). When the queue is empty it does idle work in short units (`_idle_work`): a
polish, a tangent, a stretch of a knob's line, a due save.

Knob moves (amount, macros, and undo/redo between them) are answered from the fit's tangent
(`bridge.fit.fit_tangent`: how the fitted parameters move per unit of each knob, built while the
engine is idle), which costs microseconds instead of a refit; once the knobs rest for
SETTLE_AFTER_S a warm refit polishes the answer and sends whatever it changed. A lone OSC knob move
or phrase (nothing queued, the engine idle, no further datagram waiting) is answered on the OSC
thread itself, under the engine lock, without waking the engine thread. Bursts still go through the
queue, where they are coalesced. (MIDI always queues: its thread, the JACK queue's drain or a
backend's callback thread, must never wait for the engine.) A lone knob move, on either thread, is
sent first (`_send_knob_first`: the tangent's line for that knob, host values, the target) and the
session, the exact curve and the feedback are brought up to date after it. What the daemon loaded
at start is frozen out of the garbage collector's sight (`gc.freeze`), so a full collection inside
an answer costs microseconds, not tens of milliseconds.

The model, mapping and fit modules are imported lazily: without them the daemon still runs
(phrases are refused with a reason; knobs still shape the reported curve).
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from bridge import __version__
from bridge.config import DAWS, Config, TargetSpec, default_target
from bridge.errors import EqBridgeError
from bridge.daemon_profile import ProfileLink
from bridge.knob_feedback import ShownKnobs, by_control, knob_control, knob_index, knob_values
from bridge.pickup import Pickup
from bridge.osc_in import PREFIX, OscServer, build_addresses, build_message
from bridge.model.curve import DEFAULT_AMOUNT, MAX_GAIN_DB
from bridge.session import (CONTINUOUS, Event, PhraseCurves, Session, SessionError, SessionSnapshot, coalesce,
                            macros_for)
from bridge.targets.base import RETRY_S, OutputTarget
from bridge.udp_address import PeerAddress, resolve_all

log = logging.getLogger("eqbridge.daemon")

QUEUE_LIMIT = 50_000
"""Events waiting for the engine; beyond this new input is dropped (and counted), not buffered."""
STATE_FILE = "state.json"
SAVE_DEBOUNCE_S = 1.0
"""State is saved (temp file + os.replace) this long after the first unsaved change: a crash
loses at most the last second; a knob flood writes the file once a second, not per event."""
GIL_SWITCH_S = 0.0005
INLINE_KINDS = (*CONTINUOUS, "text")
"""What a lone message may be answered for on the input thread that read it (`Daemon._answer_inline`)."""
INLINE_GAP_S = 0.002
"""A knob move or phrase is answered on its input thread only if the previous one from the same
input came this long before (a stream is queued, so the engine coalesces it and the input thread
keeps reading)."""
SETTLE_AFTER_S = 0.03
"""A knob answer from the tangent is polished by a warm refit after the knobs rest this long."""
TANGENT_REACH = 0.05
"""Beyond this distance from the tangent's base (in knob units, on any knob) the answer is polished
after only SETTLE_FAR_AFTER_S without moves, and the tangent rebuilt there: first order is only
good nearby. (Never at once: during a stream of moves the engine stays free for the input.)"""
SETTLE_FAR_AFTER_S = 0.005
FAR_LINES_AFTER_S = 0.03
"""The turned knob's line beyond its first stretch (for jumps: a fader tapped to a new place) is
solved only once the knobs have rested this long: during a turn the first stretch answers every
small move, and the engine stays free for them."""
TANGENT_H = 0.02
"""Finite-difference step (knob units) for each knob's direction: the curve is linear in the
amount and the macros (PCA decoder) except where it clips at MAX_GAIN_DB."""
_STOP = Event("__stop__")
_WAKE = Event("__wake__")  # re-arms the engine's idle timer after an answer on another thread
_DISABLED = object()


@dataclass
class _Active:
    spec: TargetSpec
    mapping: Any
    output: OutputTarget | None
    problem: str | None = None  # why there is no output (the mapping did not load)


@dataclass
class _InlineInput:
    """An input whose own thread may answer a lone event (`Daemon._answer_inline`)."""

    may_now: Callable[[], bool]  # asked on that thread: no newer message waits there
    last_t_in: float = 0.0  # t_in of its last event that asked (the stream gap)
    answers: dict[str, int] = field(default_factory=lambda: {"knob": 0, "phrase": 0})


class _SentFirst(NamedTuple):
    """A knob move's tangent answer already handed to the target (`Daemon._send_knob_first`)."""

    knobs: Any  # session.Knobs the answer is for
    bands: tuple
    reach: float  # the largest knob move from the tangent's base
    params: list  # the host values submitted


@dataclass
class _KnobTangent:
    """A fit's tangent and what it is valid for: the target, bypass, mapping and base knobs."""

    key: tuple
    knobs: Any  # session.Knobs at the base
    tangent: Any  # bridge.fit.FitTangent, directions [amount, macro 1, ..., macro n]


class Daemon:
    """`start()`, then `stop()`; or `run_until(stop_event)`. Everything else happens in threads."""

    def __init__(self, cfg: Config, *, model: Any = None, fit_curve: Any = None,
                 load_mapping: Any = None, state_dir: Path | None = None,
                 persist: bool = True, profile: str | bool | None = None) -> None:
        """`profile`: the profile name; None = the config's when `persist`, no profile otherwise
        (persist=False touches nothing on disk); False = none."""
        self.cfg = cfg
        self.state_dir = state_dir or cfg.data_dir()
        self.persist = persist
        self._model_arg, self._fit_arg, self._mapping_arg = model, fit_curve, load_mapping
        self.model: Any = None
        self.model_error: str | None = None
        self.curves: PhraseCurves | None = None
        self.fit_curve: Callable | None = None
        self.fit_backend: str | None = None  # bridge.fit's inner loop, "c" or "numpy" (for benchmarks)
        self.fit_tangent: Callable | None = None
        self.score_settings: Callable | None = None
        self.load_mapping: Callable | None = None
        self.session = Session(check_phrase=self._check_phrase)
        self.queue: queue.Queue[Event] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._engine_lock = threading.Lock()  # held while processing events or idle work
        self._count_lock = threading.Lock()
        self._unprocessed = 0  # events queued and not yet processed
        self._inline: dict[str, _InlineInput] = {}  # by Event.source
        self.dropped = 0
        self.renders = 0
        self.latency_ms: deque[float] = deque(maxlen=2000)  # input received -> EQ values handed out
        self.osc: OscServer | None = None
        self.feedback_peers = [PeerAddress(h, p, socket.AF_INET) for h, p in cfg.feedback]
        """The configured feedback clients; a name is looked up on a thread of its own (`start`)."""
        self._stopping = threading.Event()
        self.midi: Any = None
        self.midi_feedback: Any = None  # bridge.midi_feedback.MidiFeedback, with midi.feedback
        self.followers: dict[str, Any] = {}  # target name -> ReaperFeedback (targets with follow_fx)
        self.follow_errors: dict[str, str] = {}
        self.outputs: dict[tuple, OutputTarget] = {}
        self.mappings: dict[str, Any] = {}
        self.active: _Active | None = None
        self.last_params: list = []
        self.last_bands: tuple = ()  # the band settings `last_params` came from
        self.last_fit_error: float | None = None
        self._engine: threading.Thread | None = None
        self._dirty_at: float | None = None  # monotonic time of the first unsaved change
        self.started = False
        self.t_start = time.time()
        self._answered = False
        self._answer_to: list[tuple[str, int]] = []  # the senders of the latest change
        self._tangent: _KnobTangent | None = None
        self._tangent_wanted = False
        self._line_work: deque[tuple[int, bool, float]] = deque()  # (direction, sign, up to): idle
        self._last_answer_at = 0.0  # monotonic time the EQ was last set (a render or a tangent answer)
        self._settle_at: float | None = None  # monotonic time to polish a tangent answer
        self.shown = ShownKnobs()  # the knob values each OSC client shows (bridge.knob_feedback)
        self.pickup = Pickup()  # pots with soft takeover (bridge.pickup)
        self.knob_answers = {"tangent": 0, "refit": 0}
        self.knob_error_db: deque[tuple[float, float]] = deque(maxlen=2000)  # (tangent, polished)
        self.knob_sent_ms: deque[float] = deque(maxlen=2000)  # datagram read -> values sent (sent first)
        name = (cfg.profile if persist else None) if profile is None else (profile or None)
        self.profile = ProfileLink(name, self.state_dir, send=self._send, on_changed=self._profile_changed)

    # ------------------------------------------------------------------ wiring
    def _resolve(self) -> None:
        if self._model_arg is _DISABLED or self._model_arg is False:
            self.model_error = "no model loaded"
        elif self._model_arg is not None:
            self.model = self._model_arg
        else:
            try:
                from bridge.model import TextToCurve  # lazy: onnxruntime is heavy
                self.model = TextToCurve()
            except Exception as exc:  # missing module or model files: run without phrases
                self.model_error = f"the text model is unavailable ({type(exc).__name__}: {exc})"
                log.warning("%s; phrases will be refused", self.model_error)
        if self.model is not None:
            self.curves = PhraseCurves(self.model, default_amount=DEFAULT_AMOUNT, max_gain_db=MAX_GAIN_DB)
        self.session.macros = macros_for(self.model)
        if self.session.macros.kind != "latent":
            log.warning("macro knobs: %s; using the placeholder tilt/low/high", self.session.macros.reason)
        self.fit_curve = _given_or_imported(self._fit_arg, "bridge.fit", "fit_curve", "fitting")
        fit_module = sys.modules.get("bridge.fit")  # imported when fit_curve is the real one
        if fit_module is not None and self.fit_curve is fit_module.fit_curve:
            self.fit_backend = fit_module.fit_backend()
            if self.cfg.knob_answers == "tangent":  # the tangent is of this fitter's optimum
                self.fit_tangent, self.score_settings = fit_module.fit_tangent, fit_module.score_settings
        self.load_mapping = _given_or_imported(self._mapping_arg, "bridge.mapping", "load_mapping", "mappings")

    def start(self) -> "Daemon":
        # The engine's numpy work holds the GIL in small steps; by default a waiting thread gets it
        # only after 5 ms, so the OSC thread would read one datagram per 5 ms under load (and the
        # kernel drops the rest). 0.5 ms keeps input flowing at a small switching cost.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        self._resolve()
        self.profile.open()
        if self.profile.store is not None and self.model is not None and hasattr(self.model, "profile"):
            self.model.profile = self.profile.store  # answers are personalised from now on
        self._load_state()
        spec = self.cfg.targets[0]
        try:
            self._select(spec)
        except EqBridgeError as exc:
            log.error("target %s: %s", spec.name, exc)
            self.session.select(spec.key)
            self.active = _Active(spec, None, None, f"target {spec.name}: {exc}")
        macros = self.session.macros
        self.osc = OscServer(self.cfg.osc_host, self.cfg.osc_port, self.submit, allow=self.cfg.allow,
                             addresses=build_addresses([macros.name(n) for n in range(1, macros.count + 1)]))
        self._engine = threading.Thread(target=self._run, name="eqbridge-engine", daemon=True)
        self._engine.start()
        self._answer_inline_from("osc", lambda: not self.osc.pending())
        self.osc.start()
        if self.cfg.midi_feedback:
            from bridge.midi_feedback import MidiFeedback
            self.midi_feedback = MidiFeedback(self.cfg.midi_feedback, self.cfg.midi_map, backend=self.cfg.midi_backend)
            self.midi_feedback.start()
            self.midi_feedback.show(knob_values(self.session.state.knobs))
        if self.cfg.midi_input:
            from bridge.midi_in import MidiInput
            self.midi = MidiInput(self.cfg.midi_input, list(self.cfg.midi_map), self.submit,
                                  backend=self.cfg.midi_backend,
                                  on_connect=self.midi_feedback.refresh if self.midi_feedback else None)
            self._answer_inline_from("midi", self.midi.may_answer_inline)
            self.midi.start()
        self._start_followers()
        if any(p.resolved is None for p in self.feedback_peers):
            threading.Thread(target=resolve_all, args=(self.feedback_peers, self._stopping),
                             name="eqbridge-resolve", daemon=True).start()
        # Everything loaded so far (model, tokenizer, mappings, numpy, onnxruntime) lives as long as
        # the daemon: out of the cyclic collector's sight, a full collection that took ~30 ms
        # scans only what came after (bench/answer_path.py measures both).
        gc.collect()
        gc.freeze()
        self.started = True
        log.info("eqbridge %s listening for OSC on %s:%d; target %s", __version__, self.cfg.osc_host,
                 self.osc.port, self.active.spec.describe() if self.active else "-")
        return self

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self._stopping.set()
        if self.midi is not None:
            self.midi.stop()
        if self.midi_feedback is not None:
            self.midi_feedback.stop()
        for follower in self.followers.values():
            follower.stop()
        if self.osc is not None:
            self.osc.stop()
        try:
            self.queue.put(_STOP, timeout=1)
        except queue.Full:
            pass
        if self._engine is not None:
            self._engine.join(timeout=10)
        for out in self.outputs.values():
            out.stop()
        self.profile.stop()
        if self.model is not None and getattr(self.model, "profile", None) is self.profile.store is not None:
            self.model.profile = None
        self._save_state()
        log.info("eqbridge stopped")

    def run_until(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()

    @property
    def osc_port(self) -> int:
        assert self.osc is not None
        return self.osc.port

    # ------------------------------------------------------------------ input side
    def submit(self, ev: Event) -> None:
        """Called from input threads. Never blocks: a full queue drops the event."""
        if ev.kind in INLINE_KINDS and (inp := self._inline.get(ev.source)) is not None \
                and self._answer_inline(ev, inp):
            return
        self._enqueue(ev)

    def _enqueue(self, ev: Event) -> None:
        with self._count_lock:
            self._unprocessed += 1
        try:
            self.queue.put_nowait(ev)
        except queue.Full:
            with self._count_lock:
                self._unprocessed -= 1
            self.dropped += 1

    def _answer_inline_from(self, source: str, may_now: Callable[[], bool]) -> None:
        """Let a lone event from `source` be answered on its input thread when `may_now()` (asked
        on that thread: no newer message waits there)."""
        self._inline[source] = _InlineInput(may_now)

    @property
    def inline_answers(self) -> dict[str, dict[str, int]]:
        """Per input: how many knob moves and phrases its own thread answered."""
        return {source: dict(inp.answers) for source, inp in self._inline.items()}

    def _answer_inline(self, ev: Event, inp: _InlineInput) -> bool:
        """Process a lone knob move or phrase on the input thread that read it (the OSC thread, a
        JACK input's queue drain: no hand-over to the engine thread and its wake-up); False: queue
        it. Order is kept: only when nothing older is queued or in process, and no newer message
        waits at its input (`inp.may_now`). Not in a stream (INLINE_GAP_S): there the input thread
        must keep reading, the engine coalesce."""
        gap, inp.last_t_in = ev.t_in - inp.last_t_in, ev.t_in
        if gap < INLINE_GAP_S or not self.started or not self._engine_lock.acquire(blocking=False):
            return False
        try:
            if self._unprocessed or not inp.may_now():
                return False
            timers = (self._settle_at, self._tangent_wanted)
            inp.answers["phrase" if ev.kind == "text" else "knob"] += 1
            self._process_burst([ev])
            rearm = (self._settle_at, self._tangent_wanted) != timers
        finally:
            self._engine_lock.release()
        if rearm:
            self._enqueue(_WAKE)
        return True

    def _process_burst(self, batch: list[Event]) -> None:
        """process() a burst, a lone knob move sent first (on whichever thread holds the lock);
        a failure is logged, never raised into an input or engine thread."""
        try:
            lone_knob = len(batch) == 1 and batch[0].kind in CONTINUOUS
            self.process(batch, self._send_knob_first(batch[0]) if lone_knob else None)
        except Exception:
            log.exception("engine: a burst of %d events failed", len(batch))

    def _send_knob_first(self, ev: Event) -> _SentFirst | None:
        """A lone knob move the tangent answers: its values go to the target before the session,
        the curve and the feedback are brought up to date (`process(sent=...)` does that next),
        so nothing but the answer itself stands between the datagram and the DAW. None: not
        answerable so (process() then does everything in the usual order)."""
        try:
            if ev.pickup is not None and not self._taken_over(ev, self.pickup.would_accept):
                return None
            knobs, _ = self.session.moved_knobs(ev)
            if knobs == self.session.state.knobs:
                return None
            got = self._tangent_bands(knobs)
            if got is None:
                return None
            params = self._submit_bands(got[0])
            if ev.t_in:
                self.knob_sent_ms.append((time.perf_counter() - ev.t_in) * 1000.0)
            return _SentFirst(knobs, *got, params)
        except (SessionError, EqBridgeError, ValueError) as exc:  # process() reports it to the sender
            log.debug("knob move not sent first: %s", exc)
            return None

    # ------------------------------------------------------------------ engine thread
    def _run(self) -> None:
        q = self.queue
        while True:
            try:  # wake up for idle work: a polish, a tangent, unsaved changes (debounced)
                batch = [q.get(timeout=self._idle_timeout())]
            except queue.Empty:
                self._idle_work()
                continue
            try:
                while len(batch) < QUEUE_LIMIT:
                    batch.append(q.get_nowait())
            except queue.Empty:
                pass
            stop = any(e is _STOP for e in batch)
            with self._engine_lock:
                self._process_burst([e for e in batch if e is not _STOP and e is not _WAKE])
                with self._count_lock:
                    self._unprocessed -= len(batch)
            if stop:
                return
            self._save_if_due()

    def _idle_timeout(self) -> float | None:
        due = [t for t in (self._settle_at, None if self._dirty_at is None else self._dirty_at + SAVE_DEBOUNCE_S)
               if t is not None]
        if self._tangent_wanted:
            due.append(0.0)
        elif self._line_work:
            due.append(self._line_work_due())
        return max(min(due) - time.monotonic(), 0.0) if due else None

    def _idle_work(self) -> None:
        """Runs only when the queue is empty: one polish, one tangent or one stretch of a knob's
        line, then a due save."""
        with self._engine_lock:
            try:
                if self._settle_at is not None and time.monotonic() >= self._settle_at:
                    self._settle()
                elif self._tangent_wanted:
                    self._build_tangent()
                    gc.collect(1)  # the young objects of the settle, now, not inside the next answer
                elif self._line_work:
                    self._extend_lines()
            except Exception:
                log.exception("engine: idle work failed")
                self._settle_at, self._tangent_wanted = None, False
                self._line_work.clear()
        self._save_if_due()

    def _input_waiting(self) -> bool:
        """An event is queued for the engine (idle work gives way to it)."""
        return self._unprocessed > 0

    def _line_work_due(self) -> float:
        """When the next stretch may be solved (monotonic time; 0: now): a first stretch at once,
        one further out once the knobs have rested FAR_LINES_AFTER_S."""
        return 0.0 if self._line_work[0][2] == 0.0 else self._last_answer_at + FAR_LINES_AFTER_S

    def _extend_lines(self) -> None:
        """One stretch of one knob's line (`FitTangent.extend_line`, about three small solves),
        given up after any solve once an input is queued: a move or phrase arriving meanwhile
        waits for one solve, and the stretch is solved again later."""
        if self._tangent is None:
            self._line_work.clear()
        while self._line_work and time.monotonic() >= self._line_work_due():
            j, positive, upto = self._line_work[0]
            if self._tangent.tangent.extend_line(j, positive, upto, stop=self._input_waiting):
                return
            self._line_work.popleft()

    def _save_if_due(self) -> None:
        """Save the state at most SAVE_DEBOUNCE_S after the first unsaved change (engine thread).
        The snapshot (pointer copies) is taken under the engine lock; it is serialised and written
        outside it, so a phrase or knob move meanwhile is held up by neither the JSON nor the disk."""
        with self._engine_lock:
            if self._dirty_at is None or time.monotonic() - self._dirty_at < SAVE_DEBOUNCE_S:
                return
            self._dirty_at = None
            snapshot = self.session.snapshot()
        self._write_state(snapshot)

    def process(self, batch: list[Event], sent: _SentFirst | None = None) -> None:
        """Apply one burst and send the result. Runs under the engine lock. `sent`: the burst is
        one knob move whose tangent answer was already submitted (`_send_knob_first`)."""
        if not batch:
            return
        changed = False
        replies: list[tuple[str, int]] = []
        status_to: list[tuple[str, int]] = []
        get_to: list[tuple[str, int]] = []  # /eqbridge/get: the knobs' names too (a layout's labels)
        for ev in coalesce(batch):
            try:
                if ev.kind == "status":
                    status_to.append(ev.reply_to)  # type: ignore[arg-type]
                    continue
                if ev.kind == "get":
                    self.shown.forget(ev.reply_to)  # everything again, the knobs too
                    if ev.reply_to and ev.reply_to not in get_to:
                        get_to.append(ev.reply_to)
                elif ev.kind == "target":
                    changed |= self._on_target(ev.args)
                    if ev.reply_to:
                        status_to.append(ev.reply_to)
                elif ev.kind == "follow":  # from REAPER's feedback (_start_followers), no reply
                    changed |= self._on_follow(ev.args)
                elif ev.kind in ("keep", "teach", "profile_changed"):
                    self._on_profile(ev)
                    continue
                else:
                    if ev.pickup is not None and not self._taken_over(ev, self.pickup.accept):
                        continue  # a pot on its way to the knob's value (bridge.pickup)
                    undone = self.session.state.knobs if ev.kind == "undo" else None
                    # The current phrase again counts as a change only while this run has sent
                    # nothing (after a restart the DAW never got the restored state); later it
                    # would only resend a re-fit's last-digit differences.
                    changed |= self.session.apply(ev) or (ev.kind == "text" and self._sent_nothing())
                    self._note_for_profile(ev, undone)
                    if ev.kind in CONTINUOUS and not ev.relative:
                        self._heard(ev)
                if ev.reply_to and ev.reply_to not in replies:
                    replies.append(ev.reply_to)
            except (SessionError, EqBridgeError, ValueError) as exc:
                self._error(ev, str(exc))
        if changed:
            if self._dirty_at is None:
                self._dirty_at = time.monotonic()
            self._answer_to = replies
            try:
                if sent is not None and self.session.state.knobs == sent.knobs:
                    self._record_tangent_answer(sent.bands, sent.reach, sent.params)
                    self.knob_answers["tangent"] += 1
                elif self._answer_from_tangent():
                    self.knob_answers["tangent"] += 1
                else:
                    if all(e.kind in CONTINUOUS for e in batch):
                        self.knob_answers["refit"] += 1
                    self.render()
                t_in = max((e.t_in for e in batch), default=0.0)
                if t_in:
                    self.latency_ms.append((time.perf_counter() - t_in) * 1000.0)
            except (EqBridgeError, ValueError) as exc:
                log.warning("render failed: %s", exc)
                self._tell(replies, f"could not set the EQ: {exc}")
        if replies and (undelivered := self._undelivered()) is not None:
            self._tell(replies, undelivered)  # before the curve: `eqbridge send` stops at the error
        if changed or replies:
            self._feedback(replies, to_clients=changed)
        if changed and self.midi_feedback is not None:
            self.midi_feedback.show(knob_values(self.session.state.knobs))
        macros = self.session.macros
        for r in get_to:
            for n in range(1, macros.count + 1):
                self._send(r, f"{PREFIX}/macro/{n}/name", [macros.name(n)])
        for r in status_to:
            self._send(r, f"{PREFIX}/status", [json.dumps(self.status())])
        if self._answered:
            self._record_answer()

    def _undelivered(self) -> str | None:
        """Why the EQ has not got the values just answered (None: sent, or on their way)."""
        act = self.active
        if act is None:
            return None
        if act.output is None:
            return f"{act.problem}; the EQ is not set (choose a target: /eqbridge/target)"
        why = act.output.send_failure()
        return None if why is None else _not_delivered(act.output, why)

    def _send_failed(self, output: OutputTarget, why: str) -> None:  # the target's sender thread
        """A flush of the active target failed after the answer went out: tell its senders."""
        if self.active is not None and self.active.output is output:
            self._tell(self._answer_to, _not_delivered(output, why))

    def _tell(self, clients: list[tuple[str, int]], reason: str) -> None:
        """An /eqbridge/error to each of `clients` (the senders of a change)."""
        if self.osc is not None:
            for c in clients:
                self.osc.reply_error(c, reason)

    def _sent_nothing(self) -> bool:
        """The active target has sent nothing in this run (it may have no output at all)."""
        out = self.active.output if self.active is not None else None
        return out is not None and not out.sent_messages

    def _error(self, ev: Event, reason: str) -> None:
        log.info("refused %s from %s: %s", ev.kind, ev.reply_to or ev.source, reason)
        if ev.reply_to and self.osc is not None:
            self.osc.reply_error(ev.reply_to, reason)

    # ------------------------------------------------------------------ profile (engine thread)
    def _mapping_name(self) -> str | None:
        return None if self.active is None else self.active.spec.mapping

    def _embedding(self, phrase: str) -> Any:
        embed = getattr(self.model, "phrase_embedding", None)
        try:
            return None if embed is None else embed(phrase)
        except (EqBridgeError, ValueError):
            return None

    def _on_profile(self, ev: Event) -> None:
        """keep / teach: checked and computed here, written by the profile thread, which acks.
        profile_changed (from that thread): drop cached answers; after a keep, fold the knobs in."""
        if ev.kind == "profile_changed":
            if self.curves is not None:
                self.curves.clear()
            self._tangent = None  # answers may differ now: the next move refits
            kind, after = ev.args
            if kind == "keep" and after is not None:
                key, knobs = after
                st = self.session.states.get(key)
                if st is not None and st.knobs == knobs:  # the phrase now answers the kept curve itself
                    st.knobs = st.history[st.position] = replace(knobs, macros=self.session.neutral,
                                                                 amount=DEFAULT_AMOUNT)
                    st.last_control = None
            return
        self.profile.require()
        st = self.session.state
        final = self.session.target_curve(self.curves, ignore_bypass=True)
        if ev.kind == "keep":
            k = st.knobs
            if k.phrase is None or self.curves is None:
                raise SessionError("nothing to keep: send a phrase first")
            self.profile.keep(ev.reply_to, (self.session.active, k), phrase=k.phrase,
                              embedding=self._embedding(k.phrase), final_curve=final, amount=k.amount,
                              mapping=self._mapping_name(), answer=self.session.answer_curve(self.curves))
        else:
            if not np.any(np.abs(final) > 1e-9):
                raise SessionError("nothing to teach: the current curve is flat (send a phrase first)")
            self.profile.teach(ev.reply_to, str(ev.args[0]), final)

    def _profile_changed(self, kind: str, after: Any) -> None:  # profile thread
        self.submit(Event("profile_changed", (kind, after), None, "profile"))

    def _note_for_profile(self, ev: Event, undone: Any) -> None:
        """A new phrase: record its answer after this burst. An undo that leaves a phrase: weak
        negative evidence against that phrase's answer."""
        if ev.kind == "text":
            self._answered = True
        elif undone is not None and undone.phrase and self.session.state.knobs.phrase != undone.phrase:
            self.profile.undo(phrase=undone.phrase, amount=undone.amount, mapping=self._mapping_name())

    def _record_answer(self) -> None:
        """After the burst's feedback went out: log the answer given (dropped when the queue is full)."""
        self._answered = False
        k = self.session.state.knobs
        if k.phrase is None or not self.profile.ready:
            return
        try:
            answer = self.session.answer_curve(self.curves)
            self.profile.record_answer(phrase=k.phrase, embedding=self._embedding(k.phrase), answer=answer,
                                       amount=k.amount, mapping=self._mapping_name())
        except (EqBridgeError, ValueError) as exc:
            log.debug("answer not recorded: %s", exc)

    def _check_phrase(self, phrase: str) -> None:
        if self.curves is None:
            raise SessionError(f"cannot answer phrases: {self.model_error or 'no model'}")
        self.curves.check(phrase)

    def render(self, *, polish: bool = False) -> None:
        """Curve, fit and send for the current knobs. `polish`: a refit of an answer already sent
        (its values go out as background, never holding back the next answer)."""
        st = self.session.state
        curve = self.session.target_curve(self.curves)
        st.curve = curve
        self.renders += 1
        act = self.active
        if act is None or act.mapping is None or self.fit_curve is None:
            self.last_params = []
            return
        # warm start only from the same phrase's fit (a knob or the amount moved): from an unrelated
        # phrase it would be worse than a cold fit
        previous = st.fit if st.fit_phrase == st.knobs.phrase else None
        fit = self.fit_curve(curve, act.mapping, previous=previous)
        st.fit, st.fit_phrase = fit, st.knobs.phrase
        self.last_fit_error = float(getattr(fit, "rms_error_db", float("nan")))
        self.last_params, self.last_bands = self._submit_bands(fit.bands, background=polish), tuple(fit.bands)
        self._tangent, self._settle_at = None, None
        self._tangent_wanted = self.fit_tangent is not None
        self._last_answer_at = time.monotonic()

    # ------------------------------------------------------------------ knobs from the tangent
    def _tangent_key(self) -> tuple:
        st = self.session.state
        return (self.session.active, st.bypass, id(self.active.mapping) if self.active else None)

    def _tangent_bands(self, k: Any) -> tuple[tuple, float] | None:
        """The tangent's answer for knobs `k` and how far they are from its base (the largest
        move of any knob), or None when the tangent is not for this target, bypass, mapping and
        phrase. One knob moved alone takes the tangent's line (plain Python); else the solve."""
        tan = self._tangent
        if tan is None or self.active is None or tan.key != self._tangent_key():
            return None
        b = tan.knobs
        if k.phrase != b.phrase or len(k.macros) != len(b.macros):
            return None
        theta = [k.amount - b.amount] + [m - m0 for m, m0 in zip(k.macros, b.macros)]
        moved = [j for j, t in enumerate(theta) if t != 0.0]
        bands = tan.tangent.settings_along(moved[0], theta[moved[0]]) if len(moved) == 1 else None
        if bands is None:
            bands = tan.tangent.settings(theta)
        return bands, max(map(abs, theta))

    def _submit_bands(self, bands: tuple, *, background: bool = False) -> list:
        """Host values of `bands` for the active mapping, handed to its target (sent at once
        when the target is idle; `background`: a polish, OutputTarget.submit)."""
        act = self.active
        params = list(act.mapping.host_params(bands))
        if act.output is not None:
            act.output.submit(params, background=background)
        return params

    def _answer_from_tangent(self) -> bool:
        """Answer a knob move from the tangent when it applies; False: do a full render."""
        got = self._tangent_bands(self.session.state.knobs)
        if got is None:
            return False
        self._record_tangent_answer(*got, self._submit_bands(got[0]))
        return True

    def _record_tangent_answer(self, bands: tuple, reach: float, params: list) -> None:
        """What follows a tangent answer once it is submitted: the state, the exact curve for the
        feedback, and when to polish it."""
        st = self.session.state
        self.last_params, self.last_bands = params, bands
        self.renders += 1
        st.fit, st.fit_phrase = bands, st.knobs.phrase  # the polish starts from what was sent
        st.curve = self.session.target_curve(self.curves)
        self._last_answer_at = now = time.monotonic()
        self._settle_at = now + (SETTLE_FAR_AFTER_S if reach > TANGENT_REACH else SETTLE_AFTER_S)

    def _settle(self) -> None:
        """Polish a tangent answer with a warm refit; send and report what changed."""
        self._settle_at = None
        st = self.session.state
        sent = st.fit if isinstance(st.fit, tuple) else None
        self.render(polish=True)
        act = self.active
        if sent is not None and self.score_settings is not None and act is not None and st.curve is not None:
            answered = self.score_settings(st.curve, act.mapping, sent)
            self.knob_error_db.append((answered.rms_error_db, float(self.last_fit_error or 0.0)))
        self._feedback([], to_clients=True)

    def _build_tangent(self) -> None:
        """The tangent of the current fit along the amount and every macro (idle work)."""
        self._tangent_wanted = False
        act = self.active
        st = self.session.state
        k = st.knobs
        if (self.fit_tangent is None or act is None or act.mapping is None or st.bypass
                or k.phrase is None or st.curve is None or getattr(st.fit, "bands", None) is None):
            return
        curve_for = self.session.curve_for
        dirs = []
        for n in range(len(k.macros) + 1):
            v = k.amount if n == 0 else k.macros[n - 1]
            h = TANGENT_H if v + TANGENT_H <= 1.0 else -TANGENT_H
            moved = (replace(k, amount=v + h) if n == 0 else
                     replace(k, macros=k.macros[:n - 1] + (v + h,) + k.macros[n:]))
            dirs.append((curve_for(moved, self.curves) - st.curve) / h)
        tangent = self.fit_tangent(st.fit, act.mapping, np.stack(dirs))
        self._tangent = _KnobTangent(self._tangent_key(), k, tangent)
        # then, a stretch per idle call: the first stretch of every knob's one-knob answers, both
        # ways, and for the knob last moved (the likeliest to move next) its whole range
        values = [k.amount, *k.macros]
        turned = st.last_knob()
        self._line_work = deque((j, positive, 0.0) for j in range(len(values)) for positive in (True, False))
        self._line_work.extend((turned, positive, 1.0 - values[turned] if positive else values[turned])
                               for positive in (True, False))

    def _feedback(self, replies: list[tuple[str, int]], to_clients: bool) -> None:
        if self.osc is None:
            return
        curve = self.session.state.curve
        if curve is None:
            curve = self.session.target_curve(self.curves)
        cdg = build_message(f"{PREFIX}/curve", [float(x) for x in curve])
        pargs: list[Any] = []
        for p in self.last_params:
            pargs += [str(p.key), float(p.normalized)]
        pdg = build_message(f"{PREFIX}/params", pargs)
        dests = list(replies)
        if to_clients:
            dests += [c for p in self.feedback_peers if (c := p.sockaddr) is not None and c not in dests]
        values = knob_values(self.session.state.knobs)
        for d in dests:
            self.osc.send_dgram(d, cdg)
            self.osc.send_dgram(d, pdg)
            for i, v in self.shown.changes(d, values):
                self.osc.send_dgram(d, build_message(f"{PREFIX}/{knob_control(i)}", [v]))

    def _taken_over(self, ev: Event, check: Callable[[str, float, float], bool]) -> bool:
        """May a pickup binding's move set the knob (`check`: Pickup.accept, or would_accept)?
        A knob the model does not have is left for the session to refuse."""
        i = knob_index(ev.kind, ev.args)
        values = knob_values(self.session.state.knobs)
        return i >= len(values) or check(ev.pickup, float(ev.args[-1]), values[i])

    def _heard(self, ev: Event) -> None:
        """The surface that moved a knob to a value shows it already: it is not echoed back."""
        i = knob_index(ev.kind, ev.args)
        value = knob_values(self.session.state.knobs)[i]
        if ev.reply_to:
            self.shown.heard(ev.reply_to, i, value)
        elif ev.source == "midi" and self.midi_feedback is not None:
            self.midi_feedback.heard(knob_control(i), value)

    def _send(self, dest: tuple[str, int], address: str, args: list) -> None:
        if self.osc is not None:
            self.osc.send(dest, address, args)

    # ------------------------------------------------------------------ targets
    def _on_target(self, args: tuple) -> bool:
        name = str(args[0])
        named = [t for t in self.cfg.targets if t.name == name]
        if named and len(args) == 1:
            spec = self._followed(named[0])
        elif name in DAWS:
            base = next((t for t in self.cfg.targets if t.daw == name), None) or default_target(name)
            over = dict(zip(("track", "fx", "mapping"), args[1:]))
            spec = replace(base, name=f"{name}@{over.get('track', base.track)}/{over.get('fx', base.fx)}",
                           follow_fx=None, **over)  # a place chosen by hand is not followed
        else:
            names = ", ".join(t.name for t in self.cfg.targets)
            raise SessionError(f"unknown target {name!r}: use one of {names} or reaper|ableton|midi TRACK FX [MAPPING]")
        if self.active is not None and self.active.output is not None and spec.key == self.active.spec.key:
            return False  # (a target whose mapping did not load is tried again: it may be mended)
        self._select(spec)
        return True

    def _start_followers(self) -> None:
        """A REAPER feedback listener per target with `follow_fx`; one that cannot listen (the
        port taken) is reported in the status and the target stays where it was configured."""
        from bridge.targets.reaper_feedback import ReaperFeedback
        from bridge.targets.replies import LOOPBACK, listen_host

        for spec in self.cfg.targets:
            if spec.daw != "reaper" or not spec.follow_fx:
                continue
            try:
                self.followers[spec.name] = ReaperFeedback(
                    spec.follow_fx, lambda t, f, name=spec.name: self.submit(
                        Event("follow", (name, t, f), None, "reaper-feedback", time.perf_counter())),
                    host=listen_host(spec.host), port=spec.feedback_port,
                    only_from=None if spec.host in LOOPBACK else spec.host).start()
            except OSError as exc:
                why = f"cannot listen for REAPER's feedback on port {spec.feedback_port}: {exc}"
                self.follow_errors[spec.name] = why
                log.error("target %s: %s", spec.name, why)

    def _followed(self, spec: TargetSpec) -> TargetSpec:
        """`spec` on the track and FX slot its REAPER feedback last pointed at, if it follows."""
        follower = self.followers.get(spec.name)
        where = None if follower is None else follower.where()
        return spec if where is None else replace(spec, track=where[0], fx=where[1])

    def _on_follow(self, args: tuple) -> bool:
        """REAPER's selection moved the EQ of target `name`: go there when that target is the one
        in use (after `/eqbridge/target` chose another, it waits until it is chosen again)."""
        name, track, fx = args
        act = self.active
        if act is None or act.spec.name != name or (act.spec.track, act.spec.fx) == (track, fx):
            return False
        self._select(replace(act.spec, track=track, fx=fx))
        return True

    def _select(self, spec: TargetSpec) -> None:
        mapping = self._mapping(spec.mapping)
        output = self._output(spec, mapping)
        self.session.select(spec.key)
        self.active = _Active(spec, mapping, output)
        log.info("target: %s", spec.describe())

    def _mapping(self, name: str) -> Any:
        if self.load_mapping is None:
            return None
        m = self.mappings.get(name)
        if m is None:
            m = self.load_mapping(name)  # raises MappingError with a reason
            self.mappings[name] = m
        return m

    def _output(self, spec: TargetSpec, mapping: Any = None) -> OutputTarget:
        if spec.daw == "midi":
            okey: tuple = ("midi", spec.port_name, spec.cc_map)
        else:  # Live's target checks the units the mapping states: one per mapping
            okey = (spec.daw, spec.host, spec.port, spec.track, spec.fx, spec.reaper_units, spec.osc_bundle,
                    spec.mapping if spec.daw == "ableton" else None)
        out = self.outputs.get(okey)
        if out is not None:
            return out
        interval = spec.min_interval_ms / 1000.0
        if spec.daw == "reaper":
            from bridge.targets.reaper import ReaperOscTarget
            out = ReaperOscTarget(spec.host, spec.port, track=spec.track, fx=spec.fx, min_interval=interval,
                                  units=spec.reaper_units, bundle=spec.osc_bundle)
        elif spec.daw == "ableton":
            from bridge.targets.ableton import AbletonOscTarget
            for k in [k for k, o in self.outputs.items() if k[0] == "ableton"]:
                self.outputs.pop(k).stop()  # one reply port: one Live device at a time
            from bridge.targets.ableton import units_from_mapping
            out = AbletonOscTarget(spec.host, spec.port, track=spec.track, device=spec.fx,
                                   reply_port=spec.reply_port, min_interval=interval,
                                   units=None if mapping is None else units_from_mapping(mapping) or None)
        else:
            from bridge.targets.midi_out import MidiCcTarget
            cc_map = None if spec.cc_map is None else {k: (ch, cc) for k, ch, cc in spec.cc_map}
            out = MidiCcTarget(spec.port_name, cc_map=cc_map, backend=spec.backend or self.cfg.midi_backend,
                               min_interval=interval)
        out.on_send_failure = self._send_failed
        out.start()
        self.outputs[okey] = out
        return out

    # ------------------------------------------------------------------ status and state
    def status(self) -> dict:
        st = self.session.state if self.session.active else None
        act = self.active
        return {
            "version": __version__,
            "uptime_s": round(time.time() - self.t_start, 1),
            "osc": {"host": self.cfg.osc_host, "port": self.osc.port if self.osc else self.cfg.osc_port,
                    **(self.osc.counters.to_json() if self.osc else {}),
                    "feedback": {str(p): None if p.sockaddr is None else "%s:%d" % p.sockaddr[:2]
                                 for p in self.feedback_peers}},
            "queue": {"waiting": self.queue.qsize(), "dropped": self.dropped, "renders": self.renders},
            "inline_answers": self.inline_answers,
            "latency_ms": _percentiles(self.latency_ms),
            "knob_answers": {**self.knob_answers, "rms_error_db": _error_pairs(self.knob_error_db),
                             "sent_first_ms": _percentiles(self.knob_sent_ms)},
            "model": "loaded" if self.curves is not None else (self.model_error or "none"),
            "fit": self.fit_curve is not None,
            "fit_backend": self.fit_backend,
            "target": None if act is None else {
                "name": act.spec.name, "describe": act.spec.describe(), "key": act.spec.key,
                "mapping": getattr(act.mapping, "name", None),
                "output": None if act.output is None else {
                    "sent": act.output.sent_messages, "flushes": act.output.flushes,
                    "error": act.output.last_error,
                    "units": getattr(act.output, "units_status", None)},
                "follow": self._follow_status(act.spec.name) if act.spec.follow_fx else None},
            "targets": [t.name for t in self.cfg.targets],
            "phrase": st.knobs.phrase if st else None,
            "amount": st.knobs.amount if st else None,
            "macros": list(st.knobs.macros) if st else None,
            "macro_names": [self.session.macros.name(n) for n in range(1, self.session.macros.count + 1)],
            "macro_knobs": self.session.macros.kind + (f" ({self.session.macros.reason})"
                                                       if self.session.macros.reason else ""),
            "profile": self.profile.status(),
            "bypass": st.bypass if st else None,
            "history": {"position": st.position, "length": len(st.history)} if st else None,
            "fit_rms_db": self.last_fit_error,
            "midi": self.midi.describe() if self.midi is not None else None,
            "midi_feedback": None if self.midi_feedback is None else {
                "port": self.midi_feedback.describe(), "error": self.midi_feedback.last_error},
            "midi_pickup_waiting": self._pickups_waiting(),
            "state_dir": str(self.state_dir),
        }

    def _pickups_waiting(self) -> list[str]:
        """The pickup bindings whose pot has not reached its knob's value (their moves do nothing yet)."""
        values = by_control(knob_values(self.session.state.knobs))
        return [b.name for b in self.cfg.midi_map
                if b.pickup and b.control in values and self.pickup.waiting(b.name, values[b.control])]

    def _follow_status(self, name: str) -> dict:
        follower = self.followers.get(name)
        if follower is None:
            return {"error": self.follow_errors.get(name, "not listening")}
        return follower.to_json()

    def _state_path(self) -> Path:
        return Path(self.state_dir) / STATE_FILE

    def _load_state(self) -> None:
        if not self.persist:
            return
        p = self._state_path()
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable state %s: %s", p, exc)
            return
        if isinstance(data, dict):
            self.session.load_json(data)

    def _save_state(self) -> None:
        self._write_state(self.session.snapshot())

    def _write_state(self, snapshot: SessionSnapshot) -> None:
        """Serialise and write (temp file + os.replace: a crash leaves the old file or the new
        one, never half of one)."""
        if not self.persist:
            return
        text = json.dumps(snapshot.to_json())
        p = self._state_path()
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".state-", dir=p.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, p)
        except OSError as exc:
            log.warning("could not save state to %s: %s", p, exc)


def _not_delivered(output: OutputTarget, why: str) -> str:
    return f"{output.describe()}: the values were not sent ({why}); kept and retried every {RETRY_S:g} s"


def _given_or_imported(arg: Any, module: str, name: str, what: str) -> Any:
    """An injected part (tests pass stand-ins), or `module.name` imported lazily; None when
    disabled, or when the import fails (logged: the daemon runs on, reporting curves only)."""
    if arg is not None:
        return None if arg is False or arg is _DISABLED else arg
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as exc:
        log.warning("%s unavailable (%s): curves are reported but not sent", what, exc)
        return None


def _percentiles(xs: deque) -> dict | None:
    if not xs:
        return None
    a = np.fromiter(xs, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "n": int(a.size)}


def _error_pairs(pairs: deque) -> dict | None:
    """Tangent answers against their polish: ERB-weighted RMS error to the target, p50/p99."""
    if not pairs:
        return None
    a = np.asarray(pairs, dtype=np.float64)
    q = lambda c, p: round(float(np.percentile(a[:, c], p)), 4)  # noqa: E731
    return {"tangent_p50": q(0, 50), "tangent_p99": q(0, 99), "polished_p50": q(1, 50),
            "polished_p99": q(1, 99), "n": len(a)}


def flat_curve() -> np.ndarray:
    from bridge.erb import N_BANDS
    return np.zeros(N_BANDS)
