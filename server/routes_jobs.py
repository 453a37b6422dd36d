"""``/jobs``: the queue and history as one list of jobs, as the newest editor's queue panel reads
them (ComfyUI's ``/api/jobs`` shapes: ``{id, status, priority, create_time, …}``).

A job is ``pending``, ``in_progress``, ``completed`` or ``failed`` (an interrupted prompt is
failed, as in ComfyUI's history). Reading history and shaping it run in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from latentgraph.server.app import JsonError, add_route, json_response, state_of
from latentgraph.server.routes_prompt import encode
from latentgraph.server.store import HistoryEntry, QueueItem, Store

PENDING, IN_PROGRESS, COMPLETED, FAILED = "pending", "in_progress", "completed", "failed"
STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED)
#: Output kinds the editor previews (ComfyUI's ``PREVIEWABLE_MEDIA_TYPES``).
PREVIEWABLE = frozenset({"images", "video", "audio"})
THREE_D = (".obj", ".fbx", ".gltf", ".glb")


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/jobs", list_jobs)
    add_route(app, "GET", "/jobs/{job_id}", get_job)


def _workflow_id(extra_data: dict[str, Any]) -> Any:
    pnginfo = extra_data.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    return workflow.get("id") if isinstance(workflow, dict) else None


def _pruned(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if v is not None}


def queued_job(item: QueueItem, status: str) -> dict[str, Any]:
    wire = item.to_wire()
    return _pruned({
        "id": item.prompt_id, "status": status, "priority": wire[0],
        "create_time": item.extra_data.get("create_time"), "outputs_count": 0,
        "workflow_id": _workflow_id(item.extra_data),
    })


def _previewable(kind: str, item: dict[str, Any]) -> bool:
    fmt = str(item.get("format", ""))
    return kind in PREVIEWABLE or fmt.startswith(("video/", "audio/")) or str(item.get("filename", "")).lower().endswith(THREE_D)


def outputs_summary(outputs: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """(number of output items, the one to preview: the first previewable ``output`` file, else
    the first previewable one)."""
    count, preview, fallback = 0, None, None
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for kind, items in node_outputs.items():
            if kind == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
                count += 1
                if preview is None and _previewable(kind, item):
                    enriched = {**item, "nodeId": node_id, "mediaType": kind}
                    if item.get("type") == "output":
                        preview = enriched
                    elif fallback is None:
                        fallback = enriched
    return count, preview or fallback


def history_job(entry: HistoryEntry, *, full: bool = False) -> dict[str, Any]:
    item = entry.item
    status = COMPLETED if entry.status.status_str != "error" else FAILED
    start = end = error = None
    for message in entry.status.messages:
        if isinstance(message, (list, tuple)) and len(message) >= 2 and isinstance(message[1], dict):
            name, data = message[0], message[1]
            if name == "execution_start":
                start = data.get("timestamp")
            elif name in ("execution_success", "execution_error", "execution_interrupted"):
                end = data.get("timestamp")
                if name == "execution_error":
                    error = data
    count, preview = outputs_summary(entry.outputs)
    job = _pruned({
        "id": item.prompt_id, "status": status, "priority": item.to_wire()[0],
        "create_time": item.extra_data.get("create_time"), "execution_start_time": start,
        "execution_end_time": end, "execution_error": error, "outputs_count": count,
        "preview_output": preview, "workflow_id": _workflow_id(item.extra_data),
    })
    if full:
        job["outputs"] = entry.outputs
        job["execution_status"] = entry.status.to_dict()
        job["workflow"] = {"prompt": item.prompt, "extra_data": item.extra_data}
    return job


def all_jobs(store: Store, statuses: tuple[str, ...], workflow_id: str | None) -> list[dict[str, Any]]:
    running, pending = store.queue()
    jobs: list[dict[str, Any]] = []
    if IN_PROGRESS in statuses:
        jobs += [queued_job(i, IN_PROGRESS) for i in running]
    if PENDING in statuses:
        jobs += [queued_job(i, PENDING) for i in pending]
    if COMPLETED in statuses or FAILED in statuses:
        jobs += [j for j in (history_job(e) for e in store.history()) if j["status"] in statuses]
    if workflow_id:
        jobs = [j for j in jobs if j.get("workflow_id") == workflow_id]
    return jobs


def _duration(job: dict[str, Any]) -> float:
    start, end = job.get("execution_start_time"), job.get("execution_end_time")
    return end - start if start and end else 0


def _query(request: web.Request) -> tuple[tuple[str, ...], str | None, str, bool, int | None, int]:
    query = request.query
    statuses = STATUSES
    if query.get("status"):
        statuses = tuple(s.strip().lower() for s in query["status"].split(",") if s.strip())
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise JsonError(400, "bad_request", f"Invalid status value(s): {', '.join(bad)[:200]}. Valid values: "
                            f"{', '.join(STATUSES)}", field="status")
    sort_by = query.get("sort_by", "created_at").lower()
    if sort_by not in ("created_at", "execution_duration"):
        raise JsonError(400, "bad_request", "sort_by must be 'created_at' or 'execution_duration'", field="sort_by")
    sort_order = query.get("sort_order", "desc").lower()
    if sort_order not in ("asc", "desc"):
        raise JsonError(400, "bad_request", "sort_order must be 'asc' or 'desc'", field="sort_order")
    limit = None
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            raise JsonError(400, "bad_request", "limit must be an integer", field="limit") from None
        if limit <= 0:
            raise JsonError(400, "bad_request", "limit must be a positive integer", field="limit")
    offset = 0
    if "offset" in query:
        try:
            offset = max(0, int(query["offset"]))
        except ValueError:
            raise JsonError(400, "bad_request", "offset must be an integer", field="offset") from None
    return statuses, query.get("workflow_id"), sort_by, sort_order == "desc", limit, offset


async def list_jobs(request: web.Request) -> web.Response:
    """``?status=a,b&workflow_id=&sort_by=created_at|execution_duration&sort_order=&limit=&offset=``
    → ``{jobs, pagination: {offset, limit, total, has_more}}``, newest first by default."""
    statuses, workflow_id, sort_by, descending, limit, offset = _query(request)
    store = state_of(request).store

    def answer() -> bytes:
        jobs = all_jobs(store, statuses, workflow_id)
        key = _duration if sort_by == "execution_duration" else (lambda j: j.get("create_time") or 0)
        jobs.sort(key=key, reverse=descending)
        page = jobs[offset:] if limit is None else jobs[offset:offset + limit]
        return encode({"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": len(jobs),
                                                     "has_more": offset + len(page) < len(jobs)}})

    return web.Response(body=await asyncio.to_thread(answer), content_type="application/json")


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    store = state_of(request).store

    def find() -> dict[str, Any] | None:
        entry = store.get_history(job_id)
        if entry is not None:
            return history_job(entry, full=True)
        running, pending = store.queue()
        for items, status in ((running, IN_PROGRESS), (pending, PENDING)):
            for item in items:
                if item.prompt_id == job_id:
                    return queued_job(item, status)
        return None

    job = await asyncio.to_thread(find)
    if job is None:
        raise JsonError(404, "not_found", "Job not found", field="job_id")
    return json_response(job)
