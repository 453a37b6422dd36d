"""The SQLite queue/history store on its own: order, durability across reopen, recovery, limits."""

from __future__ import annotations

import threading

import pytest

from latentgraph.server.store import DuplicatePromptId, HistoryEntry, HistoryStatus, QueueItem, Store


def item(pid: str, number: float) -> QueueItem:
    return QueueItem(prompt_id=pid, number=number, prompt={"1": {"class_type": "X", "inputs": {}}}, client_id="c")


def test_priority_order_and_front(tmp_path):
    store = Store(tmp_path / "q.db")
    a = store.enqueue(item("a", store.assign_number()))
    b = store.enqueue(item("b", store.assign_number()))
    c = store.enqueue(item("c", store.assign_number(front=True)))
    store.enqueue(item("d", 0.5))
    assert (a.number, b.number, c.number) == (0, 1, -2)
    running, pending = store.queue()
    assert running == [] and [i.prompt_id for i in pending] == ["c", "a", "d", "b"]
    first = store.claim_next()
    assert first.prompt_id == "c" and first.state == "running" and first.attempts == 1
    running, pending = store.queue()
    assert [i.prompt_id for i in running] == ["c"] and len(pending) == 3
    assert store.queue_remaining() == 4
    wire = pending[0].to_wire()
    assert wire[:3] == [0, "a", {"1": {"class_type": "X", "inputs": {}}}] and wire[4] == []
    assert set(wire[3]) == {"create_time"}  # stamped at acceptance, ms since the epoch
    with pytest.raises(DuplicatePromptId):
        store.enqueue(item("a", 9))


def test_running_prompt_is_pending_again_after_a_crash_and_history_survives(tmp_path):
    store = Store(tmp_path / "q.db")
    store.enqueue(item("done", store.assign_number()))
    store.enqueue(item("crashed", store.assign_number()))
    store.enqueue(item("waiting", store.assign_number()))
    done = store.claim_next()
    store.finish(HistoryEntry(done, {"9": {"images": []}}, HistoryStatus("success", True, [["execution_start", {}]])))
    assert store.claim_next().prompt_id == "crashed"
    # No close(): as if the process died here.
    reopened = Store(tmp_path / "q.db")
    assert reopened.recovered == ["crashed"]
    assert [i.prompt_id for i in reopened.queue()[1]] == ["crashed", "waiting"]
    again = reopened.claim_next()
    assert again.prompt_id == "crashed" and again.attempts == 2 and again.crashes == 1
    entry = reopened.get_history("done")
    assert entry.outputs == {"9": {"images": []}} and entry.status.completed
    assert reopened.assign_number() == 3  # numbering continues
    with pytest.raises(DuplicatePromptId):
        reopened.enqueue(item("done", 5))


def test_history_is_capped_and_deletable(tmp_path):
    store = Store(tmp_path / "q.db", max_history=3)
    for i in range(5):
        store.enqueue(item(f"p{i}", i))
        store.finish(HistoryEntry(store.claim_next(), {}, HistoryStatus("success", True)))
    assert [e.item.prompt_id for e in store.history()] == ["p2", "p3", "p4"]
    assert [e.item.prompt_id for e in store.history(max_items=1)] == ["p4"]  # no offset: the newest
    # As ComfyUI's /history: an offset counts from the oldest entry kept.
    assert [e.item.prompt_id for e in store.history(max_items=1, offset=0)] == ["p2"]
    assert [e.item.prompt_id for e in store.history(max_items=5, offset=1)] == ["p3", "p4"]
    assert [e.item.prompt_id for e in store.history(offset=2)] == ["p4"]
    assert [e.item.prompt_id for e in store.history(max_items=2, offset=-1)] == ["p3", "p4"]
    assert store.delete_history(["p3"]) == 1
    assert store.delete_history() == 2
    assert store.history() == []


def test_delete_pending_leaves_running(tmp_path):
    store = Store(tmp_path / "q.db")
    for i in range(3):
        store.enqueue(item(f"p{i}", i))
    store.claim_next()
    assert store.delete_pending(["p0", "p1"]) == 1
    assert store.delete_pending() == 1
    assert [i.prompt_id for i in store.queue()[0]] == ["p0"]


def test_concurrent_enqueue_from_threads(tmp_path):
    store = Store(tmp_path / "q.db")

    def worker(t):
        for i in range(50):
            store.enqueue(item(f"t{t}-{i}", store.assign_number()))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    pending = store.queue()[1]
    assert len(pending) == 200 and len({i.number for i in pending}) == 200


def test_crashes_are_counted_at_reopen_and_a_graceful_release_is_not_one(tmp_path):
    store = Store(tmp_path / "q.db", max_crashes=2)
    store.enqueue(item("p", 0))
    store.claim_next()
    store.release("p")  # a clean shutdown: not a crash
    reopened = Store(tmp_path / "q.db", max_crashes=2)
    assert reopened.recovered == [] and reopened.claim_next().crashes == 0
    # No release: as if the process died twice while running it.
    again = Store(tmp_path / "q.db", max_crashes=2)
    assert again.claim_next().crashes == 1
    third = Store(tmp_path / "q.db", max_crashes=2)
    claimed = third.claim_next()
    assert (claimed.crashes, claimed.attempts, third.max_crashes) == (2, 4, 2)
    with pytest.raises(ValueError):
        Store(tmp_path / "other.db", max_crashes=0)


def test_a_schema_1_file_gains_the_crash_count(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, prompt_id TEXT NOT NULL UNIQUE,"
        " number REAL NOT NULL, state TEXT NOT NULL DEFAULT 'pending', client_id TEXT, prompt TEXT NOT NULL,"
        " extra_data TEXT NOT NULL, outputs TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);"
        "INSERT INTO queue (prompt_id, number, state, prompt, extra_data, outputs, attempts, created)"
        " VALUES ('old', 1, 'running', '{}', '{}', '[]', 1, 0);"
    )
    db.commit()
    db.close()
    store = Store(path)
    assert store.recovered == ["old"] and store.claim_next().crashes == 1


def test_secrets_are_held_in_memory_only(tmp_path):
    store = Store(tmp_path / "q.db")
    secret = "sk-" + "s3cr3t" * 6
    queued = item("p", 0)
    queued.extra_data = {"api_key_comfy_org": secret, "auth_token_comfy_org": secret + "t", "keep": 1, "create_time": 5}
    store.enqueue(queued)
    assert store.secrets("p") == {"api_key_comfy_org": secret, "auth_token_comfy_org": secret + "t"}
    claimed = store.claim_next()
    assert claimed.extra_data == {"keep": 1, "create_time": 5}  # a client's own create_time stays
    store.finish(HistoryEntry(claimed, {}, HistoryStatus("success", True)))
    assert store.secrets("p") == {} and store.get_history("p").item.extra_data == {"keep": 1, "create_time": 5}
    store.close()
    raw = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith("q.db"))
    assert b"s3cr3t" not in raw


def test_reserved_output_names_and_announced_outputs_last_until_finish(tmp_path):
    store = Store(tmp_path / "q.db")
    store.enqueue(item("p", 0))
    claimed = store.claim_next()
    store.reserve_name("p", "9|output|0", "output", "a/x_00001_.png")
    assert store.reserved_name("p", "9|output|0").written is False
    store.reserve_name("p", "9|output|0", "output", "a/x_00001_.png", written=True)
    store.record_announced("p", "9", {"images": [{"filename": "x_00001_.png", "subfolder": "a", "type": "output"}]})
    reopened = Store(tmp_path / "q.db")  # survives the process
    assert reopened.reserved_names("p")[0].written is True
    assert list(reopened.announced("p")) == ["9"]
    reopened.finish(HistoryEntry(claimed, {}, HistoryStatus("error", False)))
    assert reopened.reserved_names("p") == [] and reopened.announced("p") == {}


def test_history_served_from_stored_json_equals_the_parsed_entries(tmp_path):
    """``/history`` splices the stored JSON texts (no parse, no re-encode); it must say exactly
    what the parsed entries' wire form says, number formatting, meta and status included."""
    import json

    store = Store(tmp_path / "q.db")
    for pid, outputs, status in (("a", {"9": {"images": [{"filename": "x.png"}]}}, HistoryStatus("success", True, [["execution_start", {"t": 1}]])),
                                 ("b", {}, HistoryStatus("error", False, [["execution_error", {"m": "é"}]]))):
        store.enqueue(QueueItem(prompt_id=pid, number=store.assign_number() + 0.5 * (pid == "b"),
                                prompt={"1": {"class_type": "X", "inputs": {"t": "ünï"}}}, client_id="c"))
        store.finish(HistoryEntry(store.claim_next(), outputs, status))
    for args in ((None, None), (1, None), (5, 1)):
        spliced = {pid: json.loads(text) for pid, text in store.history_json(*args)}
        parsed = {e.item.prompt_id: json.loads(json.dumps(e.to_wire())) for e in store.history(*args)}
        assert spliced == parsed and list(spliced) == list(parsed)
