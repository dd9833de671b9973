"""A user's profile: what they kept, undid and taught, in one SQLite file per profile.

```python
from bridge.profile import open_profile

with open_profile("default") as store:           # <profiles_dir()>/default.sqlite3
    store.keep("warm", emb, final_curve, amount=0.5, mapping="reaeq")   # durable on return
    store.kept("warm")                            # -> the 40 gains as kept
    store.teach("my vocal air", curve)            # a name that works as a word in phrases
```

Durability and concurrency
- WAL journal, `synchronous=FULL`: every write method returns only after its transaction is
  committed *and* fsynced. With WAL, `NORMAL` already survives a killed process (kill -9: the
  committed frames are in the OS page cache); `FULL` also survives an OS crash or power cut. Writes
  are human-rate (keep, undo, teach, one answer per phrase), so the extra fsync costs nothing that
  matters, and the daemon should call these methods off its hot path anyway.
- `busy_timeout` (5 s) and `BEGIN IMMEDIATE` for every write: two processes on one profile queue
  behind each other instead of failing with "database is locked".
- `secure_delete` and a WAL checkpoint after `forget`: forgotten phrases do not linger on disk.

Safety of the file
- The schema version is `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i+1 inside
  one transaction. A file with a newer version than this code knows, or one that is not a
  healthy SQLite database, raises ProfileError and is never written to: the header is checked
  from raw bytes before SQLite opens it, and `quick_check` runs before anything is written.

Reads that inference needs (`neighbours`, `kept`, `taught_names`, `taught`) come from an
in-memory index rebuilt only when what it holds changed (own keeps, undos and teaches, or another
process's writes, seen through `PRAGMA data_version`), so the hot path does not read the disk:
the answer event logged for every phrase leaves it as it is, and a read while a write waits for
its fsync (or for another process's lock) takes the index as it stands instead of waiting.
"""

from __future__ import annotations

import base64
import math
import os
import re
import sqlite3
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from bridge.erb import N_BANDS
from bridge.errors import EqBridgeError, ProfileError
from bridge.text import check_phrase, parse_phrase

DEFAULT_PROFILE = "default"
SUFFIX = ".sqlite3"
BUSY_TIMEOUT_MS = 5000
UNDO_WEIGHT = 0.5
"""An undo after the latest keep of a phrase removes this much of one keep's evidence (weak)."""

EXPORT_FORMAT = "eqbridge-profile"
EXPORT_VERSION = 1
KINDS = ("answer", "keep", "undo")
INDEXED_KINDS = ("keep", "undo")
"""The events inference reads (through the in-memory index); answers are context only."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SQLITE_MAGIC = b"SQLite format 3\x00"

# Ordered migrations: MIGRATIONS[i] takes user_version i to i + 1. Append; never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    # v1: events and taught names
    """
    CREATE TABLE events (
        id        INTEGER PRIMARY KEY,
        uid       TEXT NOT NULL UNIQUE,          -- stable id: makes import idempotent
        kind      TEXT NOT NULL CHECK (kind IN ('answer', 'keep', 'undo')),
        phrase    TEXT NOT NULL,                 -- normalized (bridge.text.check_phrase)
        embedding BLOB,                          -- float32, unit norm (the text encoder's)
        answer    BLOB,                          -- float64 x 40: the curve eqbridge gave
        final     BLOB,                          -- float64 x 40: the user's curve after knobs
        amount    REAL,
        mapping   TEXT,                          -- target plugin / mapping name
        time      REAL NOT NULL                  -- unix seconds
    );
    CREATE INDEX events_phrase ON events (phrase, kind);
    CREATE INDEX events_kind ON events (kind);
    CREATE TABLE taught (
        name  TEXT PRIMARY KEY,                  -- the descriptor text as parse_phrase gives it
        curve BLOB NOT NULL,                     -- float64 x 40, dB
        time  REAL NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------- where profiles live

def profiles_dir() -> Path:
    """$EQBRIDGE_PROFILE_DIR, else $XDG_DATA_HOME/eqbridge/profiles, else ~/.local/share/eqbridge/profiles.

    Never the working directory: a relative $EQBRIDGE_PROFILE_DIR is an error, a relative
    $XDG_DATA_HOME is ignored (as the XDG spec says).
    """
    env = os.environ.get("EQBRIDGE_PROFILE_DIR", "")
    if env:
        p = Path(os.path.expanduser(env))
        if not p.is_absolute():
            raise ProfileError(f"EQBRIDGE_PROFILE_DIR must be an absolute path, got {env!r}")
        return p
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "eqbridge" / "profiles"


def check_profile_name(name: object) -> str:
    """A profile name: letters, digits, '-' and '_', at most 64, not starting with '-' or '_'."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ProfileError(
            f"bad profile name {name!r}: use 1-64 letters, digits, '-' or '_' (e.g. 'default', 'studio-b')")
    return name


def profile_path(name: str = DEFAULT_PROFILE, directory: Path | None = None) -> Path:
    return (directory or profiles_dir()) / f"{check_profile_name(name)}{SUFFIX}"


def list_profiles(directory: Path | None = None) -> list[str]:
    d = directory or profiles_dir()
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in d.glob(f"*{SUFFIX}")
                  if _NAME_RE.match(p.name[: -len(SUFFIX)]))


def open_profile(name: str = DEFAULT_PROFILE, directory: Path | None = None, *,
                 create: bool = True) -> "ProfileStore":
    path = profile_path(name, directory)
    if not create and not path.exists():
        raise ProfileError(f"no profile {name!r} (looked for {path})")
    return ProfileStore(path)


# --------------------------------------------------------------------------- the store

@dataclass(frozen=True)
class KeptPhrase:
    """All the evidence for one phrase: its latest kept curve and how much to trust it."""

    phrase: str
    embedding: np.ndarray | None
    curve: np.ndarray
    keeps: int
    undos: int  # undos of this phrase after its latest keep

    @property
    def evidence(self) -> float:
        return max(0.0, self.keeps - UNDO_WEIGHT * self.undos)


class _Index:
    """What inference reads, in memory: kept phrases (with an embedding matrix) and taught names."""

    def __init__(self, kept: dict[str, KeptPhrase], taught: dict[str, np.ndarray]):
        self.kept = kept
        self.taught = taught
        self.taught_names = frozenset(taught)
        rows = [k for k in kept.values() if k.embedding is not None and k.evidence > 0]
        dims = {k.embedding.shape[0] for k in rows}
        if len(dims) > 1:  # the encoder changed under an old profile: use the most common size
            common = max(dims, key=lambda d: sum(k.embedding.shape[0] == d for k in rows))
            rows = [k for k in rows if k.embedding.shape[0] == common]
        self.rows = rows
        self.matrix = (np.stack([_unit(k.embedding) for k in rows]) if rows
                       else np.zeros((0, 0), dtype=np.float32))


class ProfileStore:
    """One profile file, open until `close()` (or the end of a `with` block). Thread-safe."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._index: _Index | None = None
        self._data_version: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._conn = self._open()

    # ---------------------------------------------------------------- open, migrate, close

    def _open(self) -> sqlite3.Connection:
        _precheck_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ProfileError(f"cannot open profile {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            _check_version(self.path, version)
            check = conn.execute("PRAGMA quick_check").fetchall()
            if [r[0] for r in check] != ["ok"]:
                raise ProfileError(f"profile {self.path} is corrupt ({check[0][0]}); it was left as it is. "
                                   "Move it away to start a fresh profile, or restore a JSON export")
            # Only now is anything written: the journal mode, then the migrations.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ProfileError(f"profile {self.path}: cannot use WAL journaling (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except ProfileError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise ProfileError(f"profile {self.path} is not a usable database ({exc}); it was left as it is") from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # another process may be migrating the same new file
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            _check_version(self.path, version)
            for v in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[v]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {v + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db().execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._index = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> "ProfileStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ProfileStore({str(self.path)!r}{', closed' if self.closed else ''})"

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ProfileError(f"profile {self.path} is closed")
        return self._conn

    def _write(self, statements: Iterable[tuple[str, tuple]], *, changes_index: bool = True) -> list[int]:
        """Run statements in one IMMEDIATE transaction; return after COMMIT (durable).
        Returns the rows each statement changed. `changes_index`: False for what the inference
        index does not hold (an answer event), so the next phrase does not rebuild it."""
        with self._lock:
            conn = self._db()
            changed = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    changed.append(max(0, conn.execute(sql, params).rowcount))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise ProfileError(f"cannot write profile {self.path}: {exc}") from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if changes_index:
                self._index = None
            return changed

    # ---------------------------------------------------------------- events

    def record_answer(self, phrase: str, embedding: Any, answer: Any, amount: float | None = None,
                      mapping: str | None = None, *, at: float | None = None) -> None:
        """Log an answer eqbridge gave (context for later keeps and undos; not evidence itself)."""
        self._event("answer", phrase, embedding, answer, None, amount, mapping, at)

    def keep(self, phrase: str, embedding: Any, final_curve: Any, amount: float | None = None,
             mapping: str | None = None, *, answer: Any = None, at: float | None = None) -> None:
        """"This is what I meant": returns once the keep is committed (acknowledged, durable)."""
        self._event("keep", phrase, embedding, answer, final_curve, amount, mapping, at)

    def undo(self, phrase: str, embedding: Any = None, answer: Any = None, amount: float | None = None,
             mapping: str | None = None, *, at: float | None = None) -> None:
        """The user undid the answer to `phrase`: weak negative evidence against its kept curve."""
        self._event("undo", phrase, embedding, answer, None, amount, mapping, at)

    def _event(self, kind, phrase, embedding, answer, final, amount, mapping, at) -> None:
        phrase = normalize_phrase(phrase)
        row = (uuid.uuid4().hex, kind, phrase, _emb_blob(embedding), _curve_blob(answer, "answer"),
               _curve_blob(final, "final curve"), _amount(amount), _mapping(mapping),
               time.time() if at is None else float(at))
        if kind == "keep" and row[5] is None:
            raise ProfileError("a keep needs the final curve")
        self._write([("INSERT INTO events (uid, kind, phrase, embedding, answer, final, amount, mapping, time)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)], changes_index=kind in INDEXED_KINDS)

    def events(self, phrase: str | None = None, kind: str | None = None) -> list[dict]:
        """Events in time order, as plain dicts (numpy arrays for curves and embeddings)."""
        where, params = [], []
        if phrase is not None:
            where.append("phrase = ?")
            params.append(normalize_phrase(phrase))
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = ("SELECT uid, kind, phrase, embedding, answer, final, amount, mapping, time FROM events"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY time, id")
        with self._lock:
            rows = self._db().execute(sql, params).fetchall()
        return [dict(uid=u, kind=k, phrase=p, embedding=_emb(e), answer=_curve(a), final=_curve(f),
                     amount=am, mapping=m, time=t) for u, k, p, e, a, f, am, m, t in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db().execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall()
            taught = self._db().execute("SELECT count(*) FROM taught").fetchone()[0]
        out = {k: 0 for k in KINDS}
        out.update(dict(rows))
        out["taught"] = taught
        return out

    # ---------------------------------------------------------------- taught names

    def teach(self, name: str, curve: Any, *, at: float | None = None) -> str:
        """Name a sound ("my vocal air"). Returns the name as stored (the descriptor a phrase yields)."""
        key = taught_key(name)
        blob = _curve_blob(curve, "taught curve")
        if blob is None:
            raise ProfileError("teach needs a curve")
        self._write([("INSERT INTO taught (name, curve, time) VALUES (?, ?, ?) ON CONFLICT (name)"
                      " DO UPDATE SET curve = excluded.curve, time = excluded.time",
                      (key, blob, time.time() if at is None else float(at)))])
        return key

    def taught(self, name: str) -> np.ndarray | None:
        try:
            key = taught_key(name)
        except EqBridgeError:
            return None
        curve = self._current().taught.get(key)
        return None if curve is None else curve.copy()

    def taught_names(self) -> frozenset[str]:
        """The taught names (cached; rebuilt only when the database changed)."""
        return self._current().taught_names

    # ---------------------------------------------------------------- what inference reads

    def kept(self, phrase: str) -> np.ndarray | None:
        """The latest kept curve for this exact (normalized) phrase, or None."""
        entry = self.kept_entry(phrase)
        return None if entry is None else entry.curve.copy()

    def kept_entry(self, phrase: str) -> KeptPhrase | None:
        try:
            key = normalize_phrase(phrase)
        except EqBridgeError:
            return None
        return self._current().kept.get(key)

    def has_kept(self) -> bool:
        """Whether anything was kept (cheap: the answer path asks this for every phrase)."""
        return bool(self._current().kept)

    def kept_phrases(self) -> list[KeptPhrase]:
        return sorted(self._current().kept.values(), key=lambda k: k.phrase)

    def neighbours(self, embedding: Any, k: int = 8) -> list[tuple[str, float, np.ndarray, float]]:
        """The k kept phrases nearest by cosine: (phrase, similarity, curve, evidence), best first.

        Brute force over an in-memory matrix: ~0.1 ms for thousands of phrases. Phrases whose
        evidence was undone to zero are left out. Evidence = keeps - UNDO_WEIGHT x undos since
        the latest keep.
        """
        idx = self._current()
        if not idx.rows or k <= 0:
            return []
        q = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if q.shape[0] != idx.matrix.shape[1]:
            return []
        sims = idx.matrix @ _unit(q)
        order = np.argsort(-sims, kind="stable")[:k]
        return [(idx.rows[i].phrase, float(sims[i]), idx.rows[i].curve.copy(), idx.rows[i].evidence)
                for i in order]

    def _current(self) -> _Index:
        """The index, brought up to date. While another thread holds the connection (a write
        waiting for its fsync, or for another process's lock for up to BUSY_TIMEOUT_MS), the index
        as it stands: that write is not acknowledged yet, and a phrase must not wait for a disk."""
        idx = self._index
        if idx is not None and not self._lock.acquire(blocking=False):
            return idx
        if idx is None:
            self._lock.acquire()
        try:
            conn = self._db()
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if self._index is None or version != self._data_version:
                self._index = self._build_index(conn)
                self._data_version = version
            return self._index
        finally:
            self._lock.release()

    @staticmethod
    def _build_index(conn: sqlite3.Connection) -> _Index:
        kept: dict[str, KeptPhrase] = {}
        rows = conn.execute("SELECT kind, phrase, embedding, final FROM events WHERE kind IN "
                            f"({', '.join('?' * len(INDEXED_KINDS))}) ORDER BY time, id", INDEXED_KINDS).fetchall()
        for kind, phrase, emb, final in rows:
            old = kept.get(phrase)
            if kind == "keep":
                e = _emb(emb)
                if e is None and old is not None:
                    e = old.embedding
                kept[phrase] = KeptPhrase(phrase, e, _curve(final), (old.keeps if old else 0) + 1, 0)
            elif old is not None:
                kept[phrase] = KeptPhrase(phrase, old.embedding, old.curve, old.keeps, old.undos + 1)
        taught = {name: _curve(blob) for name, blob in conn.execute("SELECT name, curve FROM taught")}
        return _Index(kept, taught)

    # ---------------------------------------------------------------- export, import, forget

    def export_json(self) -> dict:
        """Everything in the profile as JSON-ready data (embeddings as base64 float32)."""
        events = []
        for e in self.events():
            events.append({
                "uid": e["uid"], "kind": e["kind"], "phrase": e["phrase"],
                "embedding_f32_b64": None if e["embedding"] is None
                else base64.b64encode(e["embedding"].astype("<f4").tobytes()).decode("ascii"),
                "answer": _curve_list(e["answer"]), "final": _curve_list(e["final"]),
                "amount": e["amount"], "mapping": e["mapping"], "time": e["time"],
            })
        with self._lock:
            taught = self._db().execute("SELECT name, curve, time FROM taught ORDER BY name").fetchall()
        return {
            "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "schema_version": SCHEMA_VERSION,
            "events": events,
            "taught": [{"name": n, "curve": _curve_list(_curve(c)), "time": t} for n, c, t in taught],
        }

    def import_json(self, data: Any) -> dict[str, int]:
        """Merge an export into this profile. Idempotent: events are keyed by uid; a taught name
        is replaced only by a newer one. Returns {"events": added, "taught": added or updated}."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise ProfileError(f"not an eqbridge profile export (expected \"format\": \"{EXPORT_FORMAT}\")")
        if not isinstance(data.get("version"), int) or data["version"] > EXPORT_VERSION:
            raise ProfileError(f"profile export version {data.get('version')!r} is newer than this eqbridge "
                               f"reads ({EXPORT_VERSION}); upgrade eqbridge")
        events, taught = data.get("events", []), data.get("taught", [])
        if not isinstance(events, list) or not isinstance(taught, list):
            raise ProfileError("profile export: 'events' and 'taught' must be lists")
        ev_rows, taught_rows = [], []
        for i, e in enumerate(events):
            try:
                if e["kind"] not in KINDS:
                    raise ProfileError(f"unknown kind {e['kind']!r}")
                uid = str(e["uid"])
                if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", uid):
                    raise ProfileError(f"bad uid {uid!r}")
                emb = e.get("embedding_f32_b64")
                emb = None if emb is None else np.frombuffer(base64.b64decode(emb, validate=True), dtype="<f4")
                row = (uid, e["kind"], normalize_phrase(e["phrase"]), _emb_blob(emb),
                       _curve_blob(e.get("answer"), "answer"), _curve_blob(e.get("final"), "final curve"),
                       _amount(e.get("amount")), _mapping(e.get("mapping")), _time(e["time"]))
                if row[1] == "keep" and row[5] is None:
                    raise ProfileError("a keep without its final curve")
            except (KeyError, TypeError, ValueError, EqBridgeError) as exc:
                raise ProfileError(f"profile export: event {i} is malformed: {exc}") from exc
            ev_rows.append(row)
        for i, t in enumerate(taught):
            try:
                blob = _curve_blob(t["curve"], "taught curve")
                if blob is None:
                    raise ProfileError("no curve")
                taught_rows.append((taught_key(t["name"]), blob, _time(t["time"])))
            except (KeyError, TypeError, ValueError, EqBridgeError) as exc:
                raise ProfileError(f"profile export: taught name {i} is malformed: {exc}") from exc
        changed = self._write(
                [("INSERT OR IGNORE INTO events (uid, kind, phrase, embedding, answer, final, amount, mapping, time)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", r) for r in ev_rows]
                + [("INSERT INTO taught (name, curve, time) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                    " SET curve = excluded.curve, time = excluded.time WHERE excluded.time > taught.time", r)
                   for r in taught_rows])
        return {"events": sum(changed[:len(ev_rows)]), "taught": sum(changed[len(ev_rows):])}

    def forget(self, phrase: str | None = None) -> int:
        """Delete everything about one phrase (its events and a taught name spelled the same), or
        everything when phrase is None. Returns the number of rows deleted. The deleted content is
        overwritten (secure_delete) and the WAL truncated, so it does not linger on disk."""
        if phrase is None:
            n = sum(self._write([("DELETE FROM events", ()), ("DELETE FROM taught", ())]))
        else:
            key = normalize_phrase(phrase)
            stmts = [("DELETE FROM events WHERE phrase = ?", (key,))]
            try:
                stmts.append(("DELETE FROM taught WHERE name = ?", (taught_key(phrase),)))
            except EqBridgeError:
                pass
            n = sum(self._write(stmts))
        with self._lock:
            try:
                self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error:
                pass  # another process holds a read snapshot: its next checkpoint will do it
        return n

    def integrity_check(self) -> str:
        with self._lock:
            rows = self._db().execute("PRAGMA integrity_check").fetchall()
        return "; ".join(r[0] for r in rows)


# --------------------------------------------------------------------------- helpers

def normalize_phrase(phrase: object) -> str:
    """The key phrases are stored under: bridge.text.check_phrase (case-folded, NFC, one space)."""
    return check_phrase(phrase)


def taught_key(name: object) -> str:
    """The key a taught name is stored under: the single descriptor that parse_phrase yields for it,
    so that the same text inside a phrase ("my vocal air but less harsh") finds it."""
    text = check_phrase(name)
    terms = parse_phrase(text)
    if len(terms) != 1 or terms[0].weight != 1.0:
        raise ProfileError(
            f"cannot teach the name {name!r}: a name must read as one descriptor without modifiers "
            "or joining words (no 'and', 'but', ',', 'less', 'a bit', ...), e.g. 'my vocal air'")
    return terms[0].text


def _statements(script: str) -> list[str]:
    no_comments = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return [s.strip() for s in no_comments.split(";") if s.strip()]


def _precheck_file(path: Path) -> None:
    """Refuse, from raw bytes and before SQLite touches it, a file that is not SQLite or is newer."""
    try:
        if not path.exists():
            return
        if path.is_dir():
            raise ProfileError(f"profile {path} is a directory, not a file")
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from exc
    if not header:
        return  # an empty file is an empty database
    if len(header) < 100 or header[:16] != _SQLITE_MAGIC:
        raise ProfileError(f"profile {path} is not an SQLite database (corrupt or another kind of file); "
                           "it was left as it is. Move it away to start a fresh profile")
    _check_version(path, struct.unpack(">I", header[60:64])[0])


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise ProfileError(f"profile {path} has schema version {version}, newer than this eqbridge knows "
                           f"({SCHEMA_VERSION}); it was left as it is. Upgrade eqbridge to use it")


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _emb_blob(embedding: Any) -> bytes | None:
    if embedding is None:
        return None
    e = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if e.size == 0 or e.size > 4096 or not np.all(np.isfinite(e)):
        raise ProfileError(f"an embedding must be 1..4096 finite numbers, got {e.size}")
    return e.astype("<f4").tobytes()


def _emb(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _curve_blob(curve: Any, what: str) -> bytes | None:
    if curve is None:
        return None
    try:
        c = np.asarray(curve, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{what} must be {N_BANDS} numbers: {exc}") from exc
    if c.shape != (N_BANDS,) or not np.all(np.isfinite(c)):
        raise ProfileError(f"{what} must be {N_BANDS} finite gains in dB, got shape {c.shape}")
    return c.astype("<f8").tobytes()


def _curve(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f8").astype(np.float64)


def _curve_list(c: np.ndarray | None) -> list[float] | None:
    return None if c is None else [float(x) for x in c]


def _amount(amount: Any) -> float | None:
    if amount is None:
        return None
    a = float(amount)
    if not math.isfinite(a) or not 0.0 <= a <= 1.0:
        raise ProfileError(f"amount must be in 0..1, got {amount!r}")
    return a


def _mapping(mapping: Any) -> str | None:
    if mapping is None:
        return None
    if not isinstance(mapping, str) or len(mapping) > 200:
        raise ProfileError(f"mapping must be a short name, got {mapping!r}")
    return mapping


def _time(t: Any) -> float:
    v = float(t)
    if not math.isfinite(v):
        raise ValueError(f"bad time {t!r}")
    return v


__all__ = ["ProfileStore", "KeptPhrase", "profiles_dir", "profile_path", "list_profiles", "open_profile",
           "check_profile_name", "normalize_phrase", "taught_key", "DEFAULT_PROFILE", "SCHEMA_VERSION",
           "MIGRATIONS", "UNDO_WEIGHT"]
