"""Node expansion: a node that returns a subgraph (``NodeResult(expand=...)``) has its subgraph
added to the run under stable ids ``<node>.<call>.<local id>``, validated, keyed and cached like
any other node; the node's outputs are then read from it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from latentgraph.cache_keys import needs_fingerprint, node_key
from latentgraph.errors import ErrorReport
from latentgraph.list_values import NodeOutputError, merge_outputs
from latentgraph.run_state import _Calls, _NodeFailed, _Run
from latentgraph.validation import PlannedNode, _ChoiceCache, _check_node
from latentgraph.workflow import Link, Workflow, WorkflowNode, parse_workflow

if TYPE_CHECKING:
    from latentgraph.executor import Executor


def expand_node(executor: Executor, run: _Run, node: PlannedNode, results: list[tuple[tuple, dict | None, Any]], state: _Calls) -> None:
    """Add each call's subgraph to the run (stable ids ``<node>.<call>.<local>``), plan what
    its outputs need, and queue the node again to read them."""
    if run.nodes is run.graph.nodes:
        run.nodes = dict(run.graph.nodes)
    nodes = run.nodes
    origin = run.origin.get(node.id, node.id)
    resolved: list[tuple[tuple, dict | None]] = []
    targets: list[str] = []
    for i, (outputs, ui, expand) in enumerate(results):
        if expand is None:
            resolved.append((outputs, ui))
            continue
        graph = expand.finalize() if hasattr(expand, "finalize") else expand
        if not isinstance(graph, dict):
            raise NodeOutputError(f"expand must be a dict of nodes or a GraphBuilder, got {type(graph).__name__}")
        prefix = f"{node.id}.{i}."
        local = {str(k) for k in graph}
        workflow, report = parse_workflow(graph) if graph else (Workflow(), ErrorReport())
        if report:
            raise NodeOutputError(f"expanded subgraph is malformed: {_report_text(report)}")

        def rename(link: Link) -> Link:
            if link.node_id in local:
                return Link(prefix + link.node_id, link.output)
            if link.node_id == node.id:
                raise NodeOutputError("expanded subgraph links to the node that expands into it")
            if link.node_id not in nodes:
                raise NodeOutputError(f"expanded subgraph links to node '{link.node_id}', which does not exist")
            return link

        new = Workflow()
        for wn in workflow.nodes.values():
            inputs = {k: rename(v) if isinstance(v, Link) else v for k, v in wn.inputs.items()}
            new.nodes[prefix + wn.id] = WorkflowNode(prefix + wn.id, wn.class_type, inputs, wn.title)
        outs = tuple(
            rename(Link(str(v[0]), int(v[1]))) if _is_link(v) else v for v in (outputs or ())
        )
        resolved.append((outs, ui))
        targets.extend(v.node_id for v in outs if isinstance(v, Link))
        # validate the new nodes against the registry, links into the enclosing graph included
        lookup = Workflow(dict(new.nodes))
        types = {}
        for wn in new.nodes.values():
            for v in wn.inputs.values():
                if isinstance(v, Link) and v.node_id not in new.nodes:
                    outer = nodes[v.node_id]
                    lookup.nodes.setdefault(v.node_id, WorkflowNode(v.node_id, outer.class_type, {}))
                    types[v.node_id] = outer.node_type
        report = ErrorReport()
        for wn in new.nodes.values():
            t = executor.registry.get(wn.class_type, wn.inputs)
            if t is None:
                raise NodeOutputError(f"expanded node '{wn.id}' has unknown type '{wn.class_type}'")
            types[wn.id] = t
        choices = _ChoiceCache(executor.settings, executor.registry)
        planned = {}
        for wn in new.nodes.values():
            item = _check_node(wn, types[wn.id], lookup, types, executor.registry, executor.settings, choices, report)
            if item is not None:
                planned[wn.id] = item
        if report:
            raise NodeOutputError(f"expanded subgraph is invalid: {_report_text(report)}")
        for nid in _topological(planned):
            nodes[nid] = planned[nid]
            run.origin[nid] = origin
            run.keys[nid] = _key(executor, planned[nid], run.keys)
            if planned[nid].spec.output_node:
                targets.append(nid)
    for t in targets:
        run.pending[t] = run.pending.get(t, 0) + 1
    first = executor._require(run, targets)
    run.expansions[node.id] = (resolved, state, targets)
    run.queue.appendleft(node.id)
    run.queue.extendleft(reversed(first))
    return None


def resolve_expansion(executor: Executor, node: PlannedNode, run: _Run) -> tuple[tuple[Any, ...], dict[str, Any] | None, float]:
    resolved, state, targets = run.expansions.pop(node.id)
    values = run.values
    results = []
    try:
        for outputs, ui in resolved:
            outs = tuple(values[v.node_id][v.output] if isinstance(v, Link) else v for v in outputs)
            if len(outs) != len(node.spec.outputs):
                raise NodeOutputError(
                    f"expansion gives {len(outs)} value(s) for {len(node.spec.outputs)} declared output(s)"
                )
            results.append((outs, ui, None))
        outputs, ui = merge_outputs(node.spec.output_is_list, results, state.mapped, state.origins)
    except Exception as exc:
        raise _NodeFailed(executor._failure(run, node, exc)) from exc
    for t in targets:
        run.release(t)
    return outputs, ui, time.perf_counter() - state.start


def _key(executor: Executor, node: PlannedNode, keys: dict[str, bytes]) -> bytes:
    return node_key(node, keys, executor._fingerprint(node) if needs_fingerprint(node.node_type) else None)


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool)
    )


def _topological(planned: dict[str, PlannedNode]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}
    for root in planned:
        stack = [(root, False)]
        while stack:
            nid, ready = stack.pop()
            if ready:
                state[nid] = 2
                order.append(nid)
                continue
            if state.get(nid):
                continue
            state[nid] = 1
            stack.append((nid, True))
            for link in planned[nid].links.values():
                if link.node_id in planned and not state.get(link.node_id):
                    stack.append((link.node_id, False))
    return order


def _report_text(report: ErrorReport) -> str:
    parts = []
    for node_id, errors in getattr(report, "node_errors", {}).items():
        for e in getattr(errors, "errors", errors) or ():
            parts.append(f"node '{node_id}': {getattr(e, 'message', e)}")
    if getattr(report, "error", None) is not None:
        parts.append(report.error.message)
    return "; ".join(parts[:5]) or "see the node's inputs"
