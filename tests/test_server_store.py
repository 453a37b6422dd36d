"""The SQLite queue/history store on its own: order, durability across reopen, recovery, limits."""

from __future__ import annotations

import threading

import pytest

from latentgraph.store import DuplicatePromptId, HistoryEntry, HistoryStatus, QueueItem, Store


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
    assert pending[0].to_wire() == [0, "a", {"1": {"class_type": "X", "inputs": {}}}, {}, []]
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
    assert again.prompt_id == "crashed" and again.attempts == 2
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
    assert [e.item.prompt_id for e in store.history(max_items=1)] == ["p4"]
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
