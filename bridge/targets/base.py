"""The part every target shares: change detection, coalescing and rate limiting.

The engine thread calls `submit(params)`; it never blocks on I/O. A sender thread per target
wakes up, waits until `min_interval` has passed since its last flush, takes everything pending
(latest value per parameter key), drops what equals the last value sent, and calls `_send`.
An isolated change is sent at once; a burst of changes is sent at most once per interval.

A background submit (the daemon's polish: a refinement of values already answered) yields to
the hand: it waits its interval after any flush, while an answer waits only for the previous
answer. So a polish never holds back the next knob move, and the target still gets at most one
answer flush and one polish flush per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Hashable, Sequence

from bridge.bands import HostParam

log = logging.getLogger("eqbridge.targets")

RETRY_S = 0.5
"""After a failed flush the values are kept and sent again this much later."""


class OutputTarget:
    """Base class: subclasses implement `wire_value`, `_send` and optionally `_connect`/`_close`."""

    kind = "base"
    inline = False
    """True when `_send` never blocks (UDP to a known address): an isolated change is then sent on
    the caller's thread, saving a thread hand-off (tens to hundreds of microseconds under the GIL).
    A subclass may make it a property that changes (a host name not yet looked up)."""

    def __init__(self, *, min_interval: float = 0.0, name: str | None = None) -> None:
        self.name = name or self.kind
        self.min_interval = float(min_interval)
        self._cond = threading.Condition()
        self._pending: dict[Hashable, tuple[HostParam, Any]] = {}
        self._last_sent: dict[Hashable, Any] = {}
        self._last_flush = -1e9  # monotonic time of the last flush of any kind (or of a back-off)
        self._last_answer = -1e9  # ... of the last flush that carried an answer (not background)
        self._pending_answer = False  # what is pending includes an answer
        self._stop = False
        self._paused = False
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self.sent_messages = 0
        self.flushes = 0
        self.flush_times: deque[float] = deque(maxlen=1000)  # monotonic, for status and tests
        self.last_error: str | None = None
        self.on_send_failure: Callable[["OutputTarget", str], None] | None = None
        """Called on the sender thread when a flush there fails after good ones (an inline
        flush's failure is seen by its caller at once, `send_failure`)."""

    # ---- to implement
    def wire_value(self, p: HostParam) -> Any:
        """The value as it will be on the wire (compared to decide whether it changed)."""
        return float(p.normalized)

    def _send(self, batch: list[tuple[HostParam, Any]]) -> int:
        """Send one flush; return how many messages went out. Runs on the sender thread."""
        raise NotImplementedError

    def _connect(self) -> None:  # sender thread, before the first flush
        pass

    def _close(self) -> None:
        pass

    def describe(self) -> str:
        return self.name

    def send_failure(self) -> str | None:
        """Why the last flush failed (its values wait for a retry), or None."""
        return self.last_error

    # ---- engine side
    def submit(self, params: Sequence[HostParam], *, background: bool = False) -> int:
        """Queue the values; returns how many differ from what is sent or pending. `background`:
        a refinement that yields to answers (module docstring)."""
        n = 0
        with self._cond:
            for p in params:
                v = self.wire_value(p)
                if v is None:
                    continue
                key = p.key
                if key in self._pending:
                    if self._pending[key][1] != v:
                        n += 1
                    self._pending[key] = (p, v)
                elif self._last_sent.get(key, _MISSING) != v:
                    self._pending[key] = (p, v)
                    n += 1
            if not n:
                return 0
            self._pending_answer |= not background
            now = time.monotonic()
            if not self._may_flush_here(now):
                self._cond.notify()
                return n
            batch = self._take_pending(now)
        try:
            self._flush(batch)
        finally:
            self._send_lock.release()
        return n

    def _may_flush_here(self, now: float) -> bool:
        """May the caller flush now, inline (under _cond)? If so it holds the send lock. `inline`
        is read again under that lock: a flush on the sender thread may have just cleared it."""
        if not (self.inline and not self._paused and self._thread is not None
                and now - self._interval_from() >= self.min_interval
                and self._send_lock.acquire(blocking=False)):
            return False
        if self.inline:
            return True
        self._send_lock.release()
        return False

    def _interval_from(self) -> float:
        """When the interval that pending values wait out began (under _cond): the last answer
        flush if an answer is pending, else the last flush of any kind."""
        return self._last_answer if self._pending_answer else self._last_flush

    def _take_pending(self, now: float) -> list[tuple[HostParam, Any]]:
        """The pending values that differ from what was sent, as one batch flushed at `now`
        (under _cond)."""
        batch = [(p, v) for key, (p, v) in self._pending.items() if self._last_sent.get(key, _MISSING) != v]
        self._pending = {}
        if batch:
            self._last_flush = now
            if self._pending_answer:
                self._last_answer = now
        self._pending_answer = False
        return batch

    def already_has(self, key: Hashable, value: Any) -> None:
        """The host has `value` (as `wire_value` gives it) for `key` already (it sent it to us):
        it is not sent unless it changes again."""
        with self._cond:
            self._last_sent[key] = value

    def forget(self) -> None:
        """Forget what was sent (the host may have changed under us): next submit sends all."""
        with self._cond:
            self._last_sent.clear()

    # ---- sender thread
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"eqbridge-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self._close()
        except Exception:  # pragma: no cover - closing is best effort
            log.debug("closing %s failed", self.name, exc_info=True)

    def pause(self) -> None:
        """Hold sends (values keep coalescing) until `resume()`: for tests and for a host that is busy."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._pending

    def _run(self) -> None:
        try:
            self._connect()
        except Exception as exc:
            self.last_error = str(exc)
            log.warning("%s: cannot connect yet: %s", self.name, exc)
        while True:
            with self._cond:
                while not self._stop:
                    if self._pending and not self._paused:
                        wait = self._interval_from() + self.min_interval - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._stop:
                    return
            # send lock first, then take the batch: an inline flush can never overtake an older batch
            with self._send_lock:
                with self._cond:
                    batch = self._take_pending(time.monotonic())
                self._flush(batch, tell=True)

    def _flush(self, batch: list[tuple[HostParam, Any]], *, tell: bool = False) -> None:
        """Send `batch`; on failure keep it for a retry. `tell`: call `on_send_failure` when the
        target starts failing (not on each retry)."""
        if not batch:
            return
        try:
            self.sent_messages += self._send(batch)
            self.flushes += 1
            self.flush_times.append(self._last_flush)
            with self._cond:
                for p, v in batch:
                    self._last_sent[p.key] = v
            self.last_error = None
        except Exception as exc:  # the host is away: keep the values pending for a later flush
            was_failing = self.send_failure() is not None
            # said once per reason: the retries (every RETRY_S) only at debug level
            log.log(logging.DEBUG if str(exc) == self.last_error else logging.WARNING,
                    "%s: send failed: %s", self.name, exc)
            self.last_error = str(exc)
            with self._cond:
                for p, v in batch:
                    self._pending.setdefault(p.key, (p, v))
                self._pending_answer = True  # retried as an answer: the back-off holds both kinds
                self._last_flush = self._last_answer = time.monotonic() + max(RETRY_S - self.min_interval, 0.0)
                self._cond.notify()  # an inline flush failed: the sender thread retries it
            if tell and not was_failing and self.on_send_failure is not None:
                self.on_send_failure(self, str(exc))


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
