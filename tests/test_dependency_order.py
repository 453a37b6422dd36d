"""Validation orders nodes exactly as ``networkx.topological_sort`` did (it no longer builds a
networkx graph): runs execute in the same order as before, cycles are still found."""

from __future__ import annotations

import random

import networkx as nx

from latentgraph.errors import ErrorReport
from latentgraph.validation import _dependency_order
from latentgraph.workflow import Link, Workflow, WorkflowNode


def networkx_order(workflow: Workflow, needed: set[str]) -> list[str]:
    ordered = [nid for nid in workflow.nodes if nid in needed]
    graph = nx.DiGraph()
    graph.add_nodes_from(ordered)
    graph.add_edges_from(
        (v.node_id, nid) for nid in ordered for v in workflow.nodes[nid].inputs.values()
        if isinstance(v, Link) and v.node_id in needed
    )
    try:
        return list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible:
        return []


def random_workflow(rng: random.Random) -> tuple[Workflow, set[str]]:
    """Ids in shuffled order, links mostly backwards (some forwards: cycles), repeated sources,
    literals among the links, and some nodes not needed."""
    ids = [str(i) for i in range(rng.randint(1, 25))]
    rng.shuffle(ids)
    workflow = Workflow()
    for k, nid in enumerate(ids):
        inputs: dict = {}
        for j in range(rng.randint(0, 4)):
            if rng.random() < 0.05:
                source = rng.choice(ids)
            elif k:
                source = ids[rng.randrange(k)]
            else:
                continue
            inputs[f"in{j}"] = Link(source, rng.randint(0, 1)) if rng.random() > 0.1 else 7
        workflow.nodes[nid] = WorkflowNode(nid, "X", inputs)
    return workflow, {nid for nid in ids if rng.random() > 0.2}


def test_same_order_as_networkx_on_random_graphs():
    rng = random.Random(20261130)
    cycles = 0
    for _ in range(1500):
        workflow, needed = random_workflow(rng)
        report = ErrorReport()
        ours = _dependency_order(workflow, needed, report)
        assert ours == networkx_order(workflow, needed)
        if not ours and needed:
            cycles += 1
            assert any(e.type == "dependency_cycle" for _, e in report.all_errors())
    assert cycles > 20  # the generator does make cycles, and each is reported
