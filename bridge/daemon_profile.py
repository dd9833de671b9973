"""The daemon's link to the user's profile (bridge.profile): open it, write to it off the engine.

`ProfileLink.open()` opens `<state dir>/profiles/<name>.sqlite3` (or `$EQBRIDGE_PROFILE_DIR`). A
profile that cannot be used (corrupt, a newer schema, a bad name) is never touched: the daemon
runs without personalisation and `/eqbridge/status` carries the reason (`profile.error`).

Writes go through ONE writer thread with a bounded queue, so the engine thread never waits for
an fsync (the store commits with `synchronous=FULL`):
- keep / teach / undo are queued by the engine with everything already computed (phrase,
  embedding, answer, final curve...); the writer commits, tells the engine the profile changed
  (`on_changed`: the engine drops cached answers) and only then replies `/eqbridge/kept ,s` or
  `/eqbridge/taught ,s` = acknowledged and durable. A failed write replies `/eqbridge/error`.
- answers (`record_answer`, context only) are dropped, and counted, when the queue is full.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bridge.errors import EqBridgeError, ProfileError

log = logging.getLogger("eqbridge.profile")

QUEUE_LIMIT = 256
"""Profile writes waiting for the writer thread; beyond this answers are dropped, keeps refused."""


def profile_location(name: str, data_dir: Path) -> Path:
    """Where the daemon's profile lives: $EQBRIDGE_PROFILE_DIR/<name>.sqlite3, else
    <data_dir>/profiles/<name>.sqlite3 (raises ProfileError on a bad name or a relative env path)."""
    from bridge.profile import profile_path, profiles_dir

    directory = profiles_dir() if os.environ.get("EQBRIDGE_PROFILE_DIR") else Path(data_dir) / "profiles"
    return profile_path(name, directory)


@dataclass
class _Job:
    kind: str  # answer | keep | teach | undo
    kwargs: dict
    reply_to: tuple[str, int] | None = None
    after: Any = None  # passed to on_changed once committed (the engine's fold-in for a keep)


class ProfileLink:
    """Owns the ProfileStore (or the reason there is none) and the writer thread."""

    def __init__(self, name: str | None, data_dir: Path, *,
                 send: Callable[[tuple[str, int], str, list], None],
                 on_changed: Callable[[str, Any], None]) -> None:
        self.name = name
        self.data_dir = Path(data_dir)
        self.path: Path | None = None
        self.store: Any = None
        self.error: str | None = None if name else "disabled"
        self._send = send
        self._on_changed = on_changed
        self._q: queue.Queue[_Job | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self.dropped_answers = 0
        self.written = 0
        self.failed = 0

    # ------------------------------------------------------------------ life cycle
    def open(self) -> None:
        if not self.name:
            return
        try:
            from bridge.profile import ProfileStore

            self.path = profile_location(self.name, self.data_dir)
            self.store = ProfileStore(self.path)
        except (ProfileError, EqBridgeError) as exc:
            self.error = str(exc)
            log.error("profile %r unusable, running without personalisation: %s", self.name, exc)
            return
        except Exception as exc:  # e.g. sqlite3 missing: still never fatal for the daemon
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("profile %r unusable, running without personalisation: %s", self.name, self.error)
            return
        self.error = None
        log.info("profile %r: %s", self.name, self.path)
        self._thread = threading.Thread(target=self._run, name="eqbridge-profile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the queued writes (up to 10 s), then close the store."""
        if self._thread is not None:
            try:
                self._q.put(None, timeout=5)
            except queue.Full:
                pass
            self._thread.join(timeout=10)
            self._thread = None
        if self.store is not None:
            self.store.close()

    @property
    def ready(self) -> bool:
        return self.store is not None and self._thread is not None

    def require(self) -> None:
        if not self.ready:
            raise ProfileError(f"no profile in use: {self.error or 'not open'}")

    # ------------------------------------------------------------------ requests (engine thread)
    def keep(self, reply_to: tuple[str, int] | None, after: Any, **kw: Any) -> None:
        self._put(_Job("keep", kw, reply_to, after))

    def teach(self, reply_to: tuple[str, int] | None, name: str, curve: Any) -> None:
        from bridge.profile import taught_key

        self.require()
        taught_key(name)  # a bad name is refused now, with the reason
        self._put(_Job("teach", {"name": name, "curve": curve}, reply_to))

    def undo(self, **kw: Any) -> None:
        if self.ready:
            try:
                self._q.put_nowait(_Job("undo", kw))
            except queue.Full:
                self.dropped_answers += 1

    def record_answer(self, **kw: Any) -> None:
        if self.ready:
            try:
                self._q.put_nowait(_Job("answer", kw))
            except queue.Full:
                self.dropped_answers += 1

    def _put(self, job: _Job) -> None:
        self.require()
        try:
            self._q.put_nowait(job)
        except queue.Full:
            raise ProfileError("the profile is busy (too many writes waiting); try again") from None

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            try:
                self._write(job)
            except Exception as exc:  # ProfileError, a disk error...: report, keep running
                self.failed += 1
                log.warning("profile %s failed: %s", job.kind, exc)
                if job.reply_to is not None:
                    self._send(job.reply_to, "/eqbridge/error", [f"profile {job.kind} failed: {exc}"[:500]])

    def _write(self, job: _Job) -> None:
        store, kw = self.store, job.kwargs
        if job.kind == "answer":
            store.record_answer(**kw)
        elif job.kind == "undo":
            store.undo(**kw)
        elif job.kind == "keep":
            store.keep(**kw)  # returns once committed and fsynced
        elif job.kind == "teach":
            kw = dict(kw, name=store.teach(kw["name"], kw["curve"]))
        self.written += 1
        if job.kind != "answer":
            self._on_changed(job.kind, job.after)  # before the ack: later phrases see the change
        if job.reply_to is not None:
            if job.kind == "keep":
                self._send(job.reply_to, "/eqbridge/kept", [kw["phrase"]])
            elif job.kind == "teach":
                self._send(job.reply_to, "/eqbridge/taught", [kw["name"]])

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "path": None if self.path is None else str(self.path),
                               "error": self.error}
        if self.store is not None and not self.store.closed:
            try:
                out["kept"] = len(self.store.kept_phrases())
                out["taught"] = sorted(self.store.taught_names())
            except EqBridgeError as exc:
                out["error"] = str(exc)
            out.update(written=self.written, failed=self.failed, dropped=self.dropped_answers,
                       waiting=self._q.qsize())
        return out
