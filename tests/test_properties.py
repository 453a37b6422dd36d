"""Property-based tests: validation never crashes, and every corrupted workflow is reported."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_nodes import GraphTestPlugin
from latentgraph.testing import make_engine

SETTINGS = dict(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from latentgraph import Settings

    return make_engine(Settings.from_env(tmp_path_factory.mktemp("prop"), environ={}), GraphTestPlugin(), builtins=False)


@st.composite
def valid_workflows(draw):
    """Random DAGs of Const/Add nodes ending in Show nodes: always valid."""
    n = draw(st.integers(1, 12))
    wf = {}
    for i in range(n):
        if i == 0 or draw(st.booleans()):
            wf[str(i)] = {"class_type": "Const", "inputs": {"value": draw(st.integers(-1000, 1000))}}
        else:
            a = draw(st.integers(0, i - 1))
            b = draw(st.one_of(st.integers(-5, 5), st.integers(0, i - 1).map(lambda j: [str(j), 0])))
            wf[str(i)] = {"class_type": "Add", "inputs": {"a": [str(a), 0], "b": b}}
    for k in range(draw(st.integers(1, 3))):
        wf[f"out{k}"] = {"class_type": "Show", "inputs": {"value": [str(draw(st.integers(0, n - 1))), 0]}}
    return wf


CORRUPTIONS = [
    "unknown_type",
    "drop_required",
    "dangling_link",
    "bad_index",
    "bad_value",
    "out_of_range",
    "cycle",
    "not_object",
    "list_literal",
    "type_mismatch",
]


def corrupt(wf, kind, data):
    wf = copy.deepcopy(wf)
    adds = [k for k, v in wf.items() if v["class_type"] == "Add"]
    shows = [k for k, v in wf.items() if v["class_type"] == "Show"]
    target = data.draw(st.sampled_from(adds)) if adds else None
    show = data.draw(st.sampled_from(shows))
    if kind == "unknown_type":
        wf[show]["class_type"] = "NoSuchNode"
        # keep an output so the failure is about the unknown type
        wf["extra_out"] = {"class_type": "Show", "inputs": {"value": 1}}
    elif kind == "drop_required":
        del wf[show]["inputs"]["value"]
    elif kind == "dangling_link":
        wf[show]["inputs"]["value"] = ["does-not-exist", 0]
    elif kind == "bad_index":
        wf[show]["inputs"]["value"][1] = 7
    elif kind == "bad_value":
        node = target or next(k for k, v in wf.items() if v["class_type"] == "Const")
        key = "b" if target else "value"
        wf[node]["inputs"][key] = data.draw(st.sampled_from(["abc", 1.5, True, None, {"x": 1}]))
        wf["show_bad"] = {"class_type": "Show", "inputs": {"value": [node, 0]}}  # only needed nodes are checked
    elif kind == "out_of_range":
        const = [k for k, v in wf.items() if v["class_type"] == "Const"]
        wf[data.draw(st.sampled_from(const))]["inputs"]["value"] = data.draw(st.sampled_from([1001, -1001, 10**9]))
        # make sure that Const is needed: show it
        for k in const:
            wf[f"show_{k}"] = {"class_type": "Show", "inputs": {"value": [k, 0]}}
    elif kind == "cycle":
        wf["c1"] = {"class_type": "Add", "inputs": {"a": ["c2", 0], "b": 1}}
        wf["c2"] = {"class_type": "Add", "inputs": {"a": ["c1", 0], "b": 1}}
        wf[show]["inputs"]["value"] = ["c2", 0]
    elif kind == "not_object":
        wf[show] = data.draw(st.sampled_from([5, "Show", [], None]))
    elif kind == "list_literal":
        wf[show]["inputs"]["value"] = [1, 2, 3]
    elif kind == "type_mismatch":
        wf["txt"] = {"class_type": "Text", "inputs": {"text": "t", "mode": "plain", "shout": False}}
        wf["add_txt"] = {"class_type": "Add", "inputs": {"a": ["txt", 0], "b": 1}}
        wf[show]["inputs"]["value"] = ["add_txt", 0]
    return wf


@given(valid_workflows())
@settings(**SETTINGS)
def test_valid_random_graphs_validate_and_run(engine, wf):
    graph, report = engine.check(wf)
    assert graph is not None, report.format()
    assert not report
    result = engine.run(graph)
    assert result.ok
    # every node the outputs need ran or came from cache
    assert set(result.executed) | set(result.cached) == set(graph.order)


@given(valid_workflows(), st.sampled_from(CORRUPTIONS), st.data())
@settings(**SETTINGS)
def test_corrupted_graphs_always_get_structured_errors(engine, wf, kind, data):
    bad = corrupt(wf, kind, data)
    graph, report = engine.check(bad)
    assert graph is None, f"{kind} was accepted"
    errors = report.all_errors()
    assert errors
    for node_id, err in errors:
        assert err.type and err.message
        assert node_id is None or node_id in {str(k) for k in bad}
    json.dumps(report.to_dict())  # always serialisable for the HTTP API


@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5)),
                    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=5), c, max_size=4)),
                    max_leaves=20))
@settings(**SETTINGS)
def test_arbitrary_json_never_crashes_validation(engine, data):
    graph, report = engine.check(data)
    if graph is None:
        assert report.all_errors()
