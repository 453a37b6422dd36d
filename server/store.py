"""The server's queue and history, persisted in SQLite so nothing accepted is lost.

A prompt is written (and fsynced: WAL with ``synchronous=FULL``) before the server says it was
accepted. A prompt that was running when the process died — even by ``kill -9`` — is pending
again on the next start and runs once more (its crash counted, so one that keeps killing the
process can be failed instead of run forever); history survives restarts. Secrets in
``extra_data`` are held in memory only, never written. The file names a running prompt
reserved and the outputs it announced are kept until it finishes, so a re-run after a crash
writes the same files and history references every file a client was told about.

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
from latentgraph import standard_json

SCHEMA_VERSION = 2
PENDING, RUNNING = "pending", "running"
#: ``extra_data`` keys ComfyUI treats as secrets (execution.SENSITIVE_EXTRA_DATA_KEYS): held in
#: memory for the run, never stored, never returned.
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

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
    created REAL NOT NULL,
    crashes INTEGER NOT NULL DEFAULT 0
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
CREATE TABLE IF NOT EXISTS output_names (
    prompt_id TEXT NOT NULL,
    key TEXT NOT NULL,
    folder_type TEXT NOT NULL,
    path TEXT NOT NULL,
    written INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (prompt_id, key)
);
CREATE TABLE IF NOT EXISTS announced (
    prompt_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (prompt_id, node_id)
);
"""
#: Columns added since schema 1: ``ALTER TABLE`` for a file written by an older version.
_ADDED_COLUMNS = (("queue", "crashes", "INTEGER NOT NULL DEFAULT 0"),)


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
    #: How many times the process died while running it (counted when the store is reopened).
    crashes: int = 0

    def to_wire(self) -> list[Any]:
        """ComfyUI's queue item shape: ``[number, prompt_id, prompt, extra_data, outputs]``."""
        number = int(self.number) if float(self.number).is_integer() else self.number
        return [number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]


@dataclass
class HistoryStatus:
    status_str: str  # "success" or "error" (an interrupt is an error, as in ComfyUI)
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
            "meta": {nid: node_meta(nid) for nid in self.outputs},
        }


def node_meta(node_id: str) -> dict[str, Any]:
    """ComfyUI's per-output-node ``meta``; no node here is expanded at run time, so each node is
    its own display and real node and has no parent."""
    return {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}


@dataclass(frozen=True)
class ReservedName:
    """An output file a prompt reserved: ``path`` inside the ``folder_type`` root; ``written``
    once the file is complete and in place."""

    folder_type: str
    path: str
    written: bool


class Store:
    """Queue + history in one SQLite file. Thread-safe; every change is one short transaction.

    Writes go through one connection (serialised by a lock), reads through another, so a
    request reading the queue never waits for the worker's commit. Accepting a prompt is
    fsynced (unless ``synchronous="normal"``); the worker's own bookkeeping (claim, finish) is only crash-safe (WAL with
    ``synchronous=NORMAL`` survives ``kill -9``; after a power loss the last runs may re-run,
    never vanish). The queue length is kept in memory so status messages never touch the disk.
    """

    def __init__(
        self, path: str | Path, *, max_history: int = 10_000, synchronous: str = "full", max_crashes: int = 3
    ) -> None:
        """``synchronous="normal"`` skips the fsync on accept: still safe against a crash or
        ``kill -9`` of the server, but a power cut may lose the last accepted prompts.
        ``max_crashes``: a prompt the process died running this many times is not run again."""
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        if max_crashes < 1:
            raise ValueError(f"max_crashes must be at least 1, got {max_crashes}")
        self.max_crashes = max_crashes
        #: prompt_id → its secrets from ``extra_data``; memory only (lost with the process).
        self._secrets: dict[str, dict[str, Any]] = {}
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
            for table, column, decl in _ADDED_COLUMNS:
                present = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
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
        """Prompts still marked running: the last process died running them; count the crash."""
        with self._write() as db:
            rows = db.execute("SELECT prompt_id FROM queue WHERE state = ?", (RUNNING,)).fetchall()
            db.execute("UPDATE queue SET state = ?, crashes = crashes + 1 WHERE state = ?", (PENDING, RUNNING))
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
        secrets = {item.prompt_id: _accept_extra_data(item, now) for item in items}
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
                if secrets[item.prompt_id]:
                    self._secrets[item.prompt_id] = secrets[item.prompt_id]
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

    def secrets(self, prompt_id: str) -> dict[str, Any]:
        """The secrets stripped from a prompt's ``extra_data`` at acceptance (empty after a restart)."""
        with self._count_lock:
            return dict(self._secrets.get(prompt_id, {}))

    def release(self, prompt_id: str) -> None:
        """Put a running prompt back in the queue (the server is stopping mid-run)."""
        with self._write() as db:
            db.execute("UPDATE queue SET state = ? WHERE prompt_id = ?", (PENDING, prompt_id))

    def finish(self, entry: HistoryEntry) -> None:
        """Move a prompt from the queue to history, atomically."""
        item = entry.item
        extra_data = _without_secrets(item.extra_data)
        with self._write(durable=False) as db:
            removed = db.execute("DELETE FROM queue WHERE prompt_id = ?", (item.prompt_id,)).rowcount
            db.execute("DELETE FROM history WHERE prompt_id = ?", (item.prompt_id,))
            db.execute("DELETE FROM output_names WHERE prompt_id = ?", (item.prompt_id,))
            db.execute("DELETE FROM announced WHERE prompt_id = ?", (item.prompt_id,))
            db.execute(
                "INSERT INTO history (prompt_id, number, client_id, prompt, extra_data, outputs_to_execute, outputs,"
                " status_str, completed, messages, started, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item.prompt_id,
                    float(item.number),
                    item.client_id,
                    _dumps(item.prompt),
                    _dumps(extra_data),
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
        self._forget_secrets([item.prompt_id])

    def _forget_secrets(self, prompt_ids: Iterable[str] | None) -> None:
        with self._count_lock:
            if prompt_ids is None:
                self._secrets.clear()
            else:
                for prompt_id in prompt_ids:
                    self._secrets.pop(prompt_id, None)

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
        ids = None if prompt_ids is None else list(prompt_ids)
        with self._write() as db:
            if ids is None:
                gone = [r[0] for r in db.execute("DELETE FROM queue WHERE state = ? RETURNING prompt_id", (PENDING,))]
            else:
                gone = [
                    r[0]
                    for i in ids
                    for r in db.execute("DELETE FROM queue WHERE state = ? AND prompt_id = ? RETURNING prompt_id", (PENDING, i))
                ]
            for prompt_id in gone:  # a prompt re-queued after a crash may have reserved names
                db.execute("DELETE FROM output_names WHERE prompt_id = ?", (prompt_id,))
                db.execute("DELETE FROM announced WHERE prompt_id = ?", (prompt_id,))
        self._count(-len(gone))
        self._forget_secrets(gone)
        return len(gone)

    def get_queued(self, prompt_id: str) -> QueueItem | None:
        with self._reading() as db:
            row = db.execute(f"SELECT {_QUEUE_COLS} FROM queue WHERE prompt_id = ?", (prompt_id,)).fetchone()
        return _queue_item(row) if row else None

    # -- history ------------------------------------------------------------------------------
    def history(self, max_items: int | None = None, offset: int | None = None) -> list[HistoryEntry]:
        """Oldest first, as ComfyUI's ``/history``: ``offset`` skips that many of the oldest
        entries; without one (None or negative), ``max_items`` keeps the newest ones."""
        # SQLite integers are 64-bit: a larger count or offset (from a query string) means "all"
        # or "past the end", not an OverflowError.
        return [_history_entry(r) for r in self._history_rows(max_items, offset)]

    def history_json(self, max_items: int | None = None, offset: int | None = None) -> list[tuple[str, str]]:
        """``history()`` as ``(prompt_id, entry JSON)`` pairs, spliced from the stored JSON texts
        without parsing the prompts: a long history is served without holding the GIL for long."""
        return [(r[1], _history_entry_json(r)) for r in self._history_rows(max_items, offset)]

    def _history_rows(self, max_items: int | None, offset: int | None) -> list[tuple]:
        limit = -1 if max_items is None else min(max(0, int(max_items)), _SQLITE_INT_MAX)
        offset = None if offset is None else min(int(offset), _SQLITE_INT_MAX)
        with self._reading() as db:
            if offset is None or offset < 0:
                return db.execute(
                    f"SELECT {_HISTORY_COLS} FROM history ORDER BY seq DESC LIMIT ?", (limit,)
                ).fetchall()[::-1]
            return db.execute(
                f"SELECT {_HISTORY_COLS} FROM history ORDER BY seq LIMIT ? OFFSET ?", (limit, int(offset))
            ).fetchall()

    def get_history(self, prompt_id: str) -> HistoryEntry | None:
        with self._reading() as db:
            row = db.execute(f"SELECT {_HISTORY_COLS} FROM history WHERE prompt_id = ?", (prompt_id,)).fetchone()
        return _history_entry(row) if row else None

    def delete_history(self, prompt_ids: Iterable[str] | None = None) -> int:
        with self._write() as db:
            if prompt_ids is None:
                return db.execute("DELETE FROM history").rowcount
            return sum(db.execute("DELETE FROM history WHERE prompt_id = ?", (i,)).rowcount for i in prompt_ids)


    # -- outputs of a running prompt ----------------------------------------------------------
    def reserved_name(self, prompt_id: str, key: str) -> ReservedName | None:
        """The file an earlier attempt of this prompt reserved under ``key``, if any."""
        with self._reading() as db:
            row = db.execute(
                "SELECT folder_type, path, written FROM output_names WHERE prompt_id = ? AND key = ?", (prompt_id, key)
            ).fetchone()
        return ReservedName(row[0], row[1], bool(row[2])) if row else None

    def reserve_name(self, prompt_id: str, key: str, folder_type: str, path: str, *, written: bool = False) -> None:
        """Record (before the file exists) or confirm (``written``) an output file of a prompt."""
        with self._write(durable=False) as db:
            db.execute(
                "INSERT INTO output_names (prompt_id, key, folder_type, path, written) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (prompt_id, key) DO UPDATE SET folder_type = excluded.folder_type,"
                " path = excluded.path, written = excluded.written",
                (prompt_id, key, folder_type, path, int(written)),
            )

    def reserved_names(self, prompt_id: str) -> list[ReservedName]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT folder_type, path, written FROM output_names WHERE prompt_id = ? ORDER BY key", (prompt_id,)
            ).fetchall()
        return [ReservedName(r[0], r[1], bool(r[2])) for r in rows]

    def record_announced(self, prompt_id: str, node_id: str, output: dict[str, Any]) -> None:
        """An output node's ``executed`` output, stored before clients hear of it."""
        with self._write(durable=False) as db:
            db.execute(
                "INSERT OR REPLACE INTO announced (prompt_id, node_id, output) VALUES (?, ?, ?)",
                (prompt_id, node_id, _dumps(output)),
            )

    def announced(self, prompt_id: str) -> dict[str, dict[str, Any]]:
        """The outputs earlier attempts of this prompt announced, by node id, in order."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT node_id, output FROM announced WHERE prompt_id = ? ORDER BY rowid", (prompt_id,)
            ).fetchall()
        return {node_id: json.loads(output) for node_id, output in rows}


class DuplicatePromptId(ValueError):
    """A client chose a prompt_id that is already queued or in history."""


_QUEUE_COLS = "seq, prompt_id, number, state, client_id, prompt, extra_data, outputs, attempts, created, crashes"
_HISTORY_COLS = (
    "seq, prompt_id, number, client_id, prompt, extra_data, outputs_to_execute, outputs, status_str, completed,"
    " messages, started, finished"
)


_SQLITE_INT_MAX = 2**63 - 1


def _queue_item(row: tuple) -> QueueItem:
    _seq, prompt_id, number, state, client_id, prompt, extra, outputs, attempts, created, crashes = row
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
        crashes=crashes,
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


def _history_entry_json(row: tuple) -> str:
    """The wire form of ``_history_entry(row).to_wire()``, with the stored prompt, extra data and
    outputs texts spliced in as they are (they were written as standard JSON)."""
    (_seq, prompt_id, number, _client, prompt, extra, to_execute, outputs, status_str, completed, messages,
     _started, _finished) = row
    number = int(number) if float(number).is_integer() else number
    status = {"status_str": status_str, "completed": bool(completed), "messages": json.loads(messages)}
    meta = {nid: node_meta(nid) for nid in json.loads(outputs)}
    return "".join((
        '{"prompt":[', _dumps(number), ",", _dumps(prompt_id), ",", prompt, ",", extra, ",", to_execute,
        '],"outputs":', outputs, ',"status":', _dumps(status), ',"meta":', _dumps(meta), "}",
    ))


def _dumps(value: Any) -> str:
    return standard_json.dumps(value, separators=(",", ":"))


def _without_secrets(extra_data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra_data.items() if k not in SENSITIVE_EXTRA_DATA_KEYS}


def _accept_extra_data(item: QueueItem, now: float) -> dict[str, Any]:
    """Take the secrets out of ``item.extra_data`` (returned, for memory only) and stamp
    ``create_time`` (ms since the epoch) unless the client gave a valid one, as ComfyUI does."""
    extra = item.extra_data if isinstance(item.extra_data, dict) else {}
    secrets = {k: extra[k] for k in SENSITIVE_EXTRA_DATA_KEYS if k in extra}
    item.extra_data = _without_secrets(extra)
    created = item.extra_data.get("create_time")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        item.extra_data["create_time"] = int((item.created or now) * 1000)
    return secrets
