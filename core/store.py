"""The server's queue and history, persisted in SQLite so nothing accepted is lost.

A prompt is written (and fsynced: WAL with ``synchronous=FULL``) before the server says it was
accepted. A prompt that was running when the process died — even by ``kill -9`` — is pending
again on the next start and runs once more; history survives restarts.

The store is shared by the event-loop thread (requests) and the worker thread (claims and
finishes prompts): one connection, serialised by a lock, each change one short transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
PENDING, RUNNING = "pending", "running"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    client_id TEXT,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (state, number, seq);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    client_id TEXT,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    outputs TEXT NOT NULL,
    status_str TEXT NOT NULL,
    completed INTEGER NOT NULL,
    messages TEXT NOT NULL,
    started REAL,
    finished REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class QueueItem:
    """One accepted prompt. ``number`` orders the queue (lower first), then arrival."""

    prompt_id: str
    number: float
    prompt: dict[str, Any]
    extra_data: dict[str, Any] = field(default_factory=dict)
    #: Output node ids to run (all of the prompt's outputs unless the client asked for fewer).
    outputs_to_execute: list[str] = field(default_factory=list)
    client_id: str | None = None
    state: str = PENDING
    #: How many times a worker has claimed it (>1 means it was running when the server died).
    attempts: int = 0
    created: float = 0.0

    def to_wire(self) -> list[Any]:
        """ComfyUI's queue item shape: ``[number, prompt_id, prompt, extra_data, outputs]``."""
        number = int(self.number) if float(self.number).is_integer() else self.number
        return [number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]


@dataclass
class HistoryStatus:
    status_str: str  # "success", "error", "interrupted"
    completed: bool
    #: ``[event_name, data]`` pairs: execution_start, execution_cached, then the final event.
    messages: list[list[Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status_str": self.status_str, "completed": self.completed, "messages": self.messages}


@dataclass
class HistoryEntry:
    item: QueueItem
    outputs: dict[str, dict[str, Any]]
    status: HistoryStatus
    started: float | None = None
    finished: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        """ComfyUI's ``/history`` entry: ``{prompt, outputs, status, meta}``."""
        return {
            "prompt": self.item.to_wire(),
            "outputs": self.outputs,
            "status": self.status.to_dict(),
            "meta": {nid: {"node_id": nid, "display_node": nid} for nid in self.outputs},
        }


class Store:
    """Queue + history in one SQLite file. Thread-safe; every change is one short transaction.

    Writes go through one connection (serialised by a lock), reads through another, so a
    request reading the queue never waits for the worker's commit. Accepting a prompt is
    fsynced (unless ``synchronous="normal"``); the worker's own bookkeeping (claim, finish) is only crash-safe (WAL with
    ``synchronous=NORMAL`` survives ``kill -9``; after a power loss the last runs may re-run,
    never vanish). The queue length is kept in memory so status messages never touch the disk.
    """

    def __init__(self, path: str | Path, *, max_history: int = 10_000, synchronous: str = "full") -> None:
        """``synchronous="normal"`` skips the fsync on accept: still safe against a crash or
        ``kill -9`` of the server, but a power cut may lose the last accepted prompts."""
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        self.synchronous = synchronous.upper()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_history = max_history
        self._lock = threading.Lock()  # the write connection
        self._read_lock = threading.Lock()  # the read connection
        self._count_lock = threading.Lock()  # numbers and counts held in memory
        self._db = self._connect()
        with self._write():
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                self._db.execute(statement)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        self._rdb = self._connect()
        #: Prompts found running at open: the previous process died while running them.
        self.recovered: list[str] = self._recover()
        with self._reading() as db:
            self._remaining = db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        self._next_number = self._max_number() + 1

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock, self._read_lock:
            self._rdb.close()
            self._db.close()

    @contextlib.contextmanager
    def _write(self, *, durable: bool = True):
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute(f"PRAGMA synchronous={self.synchronous}")

    @contextlib.contextmanager
    def _reading(self):
        with self._read_lock:
            yield self._rdb

    def _recover(self) -> list[str]:
        with self._write() as db:
            rows = db.execute("SELECT prompt_id FROM queue WHERE state = ?", (RUNNING,)).fetchall()
            db.execute("UPDATE queue SET state = ? WHERE state = ?", (PENDING, RUNNING))
        return [r[0] for r in rows]

    def _max_number(self) -> int:
        with self._reading() as db:
            row = db.execute(
                "SELECT MAX(m) FROM (SELECT MAX(ABS(number)) AS m FROM queue UNION ALL SELECT MAX(ABS(number)) FROM history)"
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else -1

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._remaining = max(0, self._remaining + delta)

    # -- numbers ------------------------------------------------------------------------------
    def assign_number(self, *, front: bool = False) -> int:
        """Like ComfyUI: a running counter; ``front`` puts the prompt before all counted ones."""
        with self._count_lock:
            number = self._next_number
            self._next_number += 1
        return -number if front else number

    # -- queue --------------------------------------------------------------------------------
    def enqueue(self, item: QueueItem) -> QueueItem:
        """Persist (fsync) an accepted prompt; raises :class:`DuplicatePromptId` if the id is taken."""
        error = self.enqueue_many([item])[0]
        if error is not None:
            raise error
        return item

    def enqueue_many(self, items: list[QueueItem]) -> list[DuplicatePromptId | None]:
        """Persist several prompts with one fsync (group commit); per item, None or its error."""
        now = time.time()
        errors: list[DuplicatePromptId | None] = []
        added: list[QueueItem] = []
        with self._write() as db:
            for item in items:
                item.created = item.created or now
                item.state = PENDING
                taken = db.execute(
                    "SELECT 1 FROM queue WHERE prompt_id = ? UNION ALL SELECT 1 FROM history WHERE prompt_id = ?",
                    (item.prompt_id, item.prompt_id),
                ).fetchone()
                if taken:
                    errors.append(DuplicatePromptId(item.prompt_id))
                    continue
                db.execute(
                    "INSERT INTO queue (prompt_id, number, state, client_id, prompt, extra_data, outputs, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.prompt_id,
                        float(item.number),
                        PENDING,
                        item.client_id,
                        _dumps(item.prompt),
                        _dumps(item.extra_data),
                        _dumps(item.outputs_to_execute),
                        item.created,
                    ),
                )
                errors.append(None)
                added.append(item)
        with self._count_lock:
            self._remaining += len(added)
            for item in added:
                if abs(item.number) >= self._next_number:
                    self._next_number = int(abs(item.number)) + 1
        return errors

    def claim_next(self) -> QueueItem | None:
        """Mark the first pending prompt running and return it (None when the queue is empty)."""
        with self._write(durable=False) as db:
            row = db.execute(
                f"SELECT {_QUEUE_COLS} FROM queue WHERE state = ? ORDER BY number, seq LIMIT 1", (PENDING,)
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE queue SET state = ?, attempts = attempts + 1 WHERE seq = ?", (RUNNING, row[0]))
        item = _queue_item(row)
        item.state = RUNNING
        item.attempts += 1
        return item

    def release(self, prompt_id: str) -> None:
        """Put a running prompt back in the queue (the server is stopping mid-run)."""
        with self._write() as db:
            db.execute("UPDATE queue SET state = ? WHERE prompt_id = ?", (PENDING, prompt_id))

    def finish(self, entry: HistoryEntry) -> None:
        """Move a prompt from the queue to history, atomically."""
        item = entry.item
        with self._write(durable=False) as db:
            removed = db.execute("DELETE FROM queue WHERE prompt_id = ?", (item.prompt_id,)).rowcount
            db.execute("DELETE FROM history WHERE prompt_id = ?", (item.prompt_id,))
            db.execute(
                "INSERT INTO history (prompt_id, number, client_id, prompt, extra_data, outputs_to_execute, outputs,"
                " status_str, completed, messages, started, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item.prompt_id,
                    float(item.number),
                    item.client_id,
                    _dumps(item.prompt),
                    _dumps(item.extra_data),
                    _dumps(item.outputs_to_execute),
                    _dumps(entry.outputs),
                    entry.status.status_str,
                    int(entry.status.completed),
                    _dumps(entry.status.messages),
                    entry.started,
                    entry.finished or time.time(),
                ),
            )
            if self.max_history > 0:
                db.execute(
                    "DELETE FROM history WHERE seq <= (SELECT seq FROM history ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (self.max_history,),
                )
        self._count(-removed)

    def queue(self) -> tuple[list[QueueItem], list[QueueItem]]:
        """``(running, pending)``, pending in run order."""
        with self._reading() as db:
            rows = db.execute(f"SELECT {_QUEUE_COLS} FROM queue ORDER BY number, seq").fetchall()
        items = [_queue_item(r) for r in rows]
        return [i for i in items if i.state == RUNNING], [i for i in items if i.state == PENDING]

    def queue_remaining(self) -> int:
        """Pending + running prompts; from memory, never waits for the disk."""
        return self._remaining

    def delete_pending(self, prompt_ids: Iterable[str] | None = None) -> int:
        """Drop pending prompts (all of them when ``prompt_ids`` is None); running ones stay."""
        with self._write() as db:
            if prompt_ids is None:
                removed = db.execute("DELETE FROM queue WHERE state = ?", (PENDING,)).rowcount
            else:
                removed = sum(
                    db.execute("DELETE FROM queue WHERE state = ? AND prompt_id = ?", (PENDING, i)).rowcount
                    for i in prompt_ids
                )
        self._count(-removed)
        return removed

    def get_queued(self, prompt_id: str) -> QueueItem | None:
        with self._reading() as db:
            row = db.execute(f"SELECT {_QUEUE_COLS} FROM queue WHERE prompt_id = ?", (prompt_id,)).fetchone()
        return _queue_item(row) if row else None

    # -- history ------------------------------------------------------------------------------
    def history(self, max_items: int | None = None, offset: int = 0) -> list[HistoryEntry]:
        """Oldest first; ``max_items`` keeps the newest ones (skipping ``offset`` newest)."""
        limit = -1 if max_items is None else max(0, int(max_items))
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {_HISTORY_COLS} FROM history ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, max(0, int(offset)))
            ).fetchall()
        return [_history_entry(r) for r in reversed(rows)]

    def get_history(self, prompt_id: str) -> HistoryEntry | None:
        with self._reading() as db:
            row = db.execute(f"SELECT {_HISTORY_COLS} FROM history WHERE prompt_id = ?", (prompt_id,)).fetchone()
        return _history_entry(row) if row else None

    def delete_history(self, prompt_ids: Iterable[str] | None = None) -> int:
        with self._write() as db:
            if prompt_ids is None:
                return db.execute("DELETE FROM history").rowcount
            return sum(db.execute("DELETE FROM history WHERE prompt_id = ?", (i,)).rowcount for i in prompt_ids)


class DuplicatePromptId(ValueError):
    """A client chose a prompt_id that is already queued or in history."""


_QUEUE_COLS = "seq, prompt_id, number, state, client_id, prompt, extra_data, outputs, attempts, created"
_HISTORY_COLS = (
    "seq, prompt_id, number, client_id, prompt, extra_data, outputs_to_execute, outputs, status_str, completed,"
    " messages, started, finished"
)


def _queue_item(row: tuple) -> QueueItem:
    _seq, prompt_id, number, state, client_id, prompt, extra, outputs, attempts, created = row
    return QueueItem(
        prompt_id=prompt_id,
        number=number,
        prompt=json.loads(prompt),
        extra_data=json.loads(extra),
        outputs_to_execute=json.loads(outputs),
        client_id=client_id,
        state=state,
        attempts=attempts,
        created=created,
    )


def _history_entry(row: tuple) -> HistoryEntry:
    (_seq, prompt_id, number, client_id, prompt, extra, to_execute, outputs, status_str, completed, messages,
     started, finished) = row
    item = QueueItem(
        prompt_id=prompt_id,
        number=number,
        prompt=json.loads(prompt),
        extra_data=json.loads(extra),
        outputs_to_execute=json.loads(to_execute),
        client_id=client_id,
        state="done",
    )
    status = HistoryStatus(status_str, bool(completed), json.loads(messages))
    return HistoryEntry(item, json.loads(outputs), status, started, finished)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
