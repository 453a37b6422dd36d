"""Every validation error type, reported all at once, before anything runs."""

import json

import pytest

from graph_nodes import GraphTestPlugin
from latentgraph.errors import WorkflowInvalid
from latentgraph.testing import WorkflowBuilder


@pytest.fixture
def engine(lg_engine):
    return lg_engine(GraphTestPlugin(), builtins=False)


def errors_of(engine, wf):
    graph, report = engine.check(wf)
    assert graph is None, "workflow should be invalid"
    return report


def types_for(report, node_id):
    return [e.type for e in report.node_errors[node_id].errors]


def test_valid_workflow_gives_graph_in_dependency_order(engine):
    wf = WorkflowBuilder()
    a = wf.add("Const", value=2)
    b = wf.add("Add", a=a[0], b=3)
    wf.add("Show", value=b[0])
    graph = engine.validate(wf.to_api())
    assert graph.order == ["1", "2", "3"]
    assert graph.outputs == ["3"]


def test_unknown_class_type_suggests_close_names(engine):
    report = errors_of(engine, {"1": {"class_type": "Ad", "inputs": {}}, "2": {"class_type": "Show", "inputs": {"value": 1}}})
    err = report.node_errors["1"].errors[0]
    assert err.type == "missing_node_type"
    assert "Add" in err.details


def test_missing_required_input(engine):
    report = errors_of(engine, {"1": {"class_type": "Add", "inputs": {}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    err = report.node_errors["1"].errors[0]
    assert (err.type, err.extra_info["input_name"]) == ("required_input_missing", "a")


def test_link_to_missing_node_and_bad_output_index(engine):
    wf = {
        "1": {"class_type": "Const", "inputs": {"value": 1}},
        "2": {"class_type": "Add", "inputs": {"a": ["9", 0], "b": ["1", 3]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    report = errors_of(engine, wf)
    assert sorted(types_for(report, "2")) == ["missing_link_source", "output_index_out_of_range"]


def test_link_type_mismatch(engine):
    wf = {
        "1": {"class_type": "Text", "inputs": {"text": "x", "mode": "plain", "shout": False}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    err = errors_of(engine, wf).node_errors["2"].errors[0]
    assert err.type == "return_type_mismatch"
    assert err.extra_info["received_type"] == "STRING"


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"a": "five", "b": 1}, "invalid_input_type"),
        ({"a": 1.5, "b": 1}, "invalid_input_type"),
        ({"a": True, "b": 1}, "invalid_input_type"),
        ({"a": 1, "b": 1, "scale": -1}, "value_smaller_than_min"),
        ({"a": 1, "b": 1, "scale": 11}, "value_bigger_than_max"),
    ],
)
def test_bad_values(engine, inputs, expected):
    wf = {"1": {"class_type": "Add", "inputs": inputs}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    assert types_for(errors_of(engine, wf), "1") == [expected]


def test_unambiguous_coercion(engine):
    wf = {
        "1": {"class_type": "Add", "inputs": {"a": "5", "b": 2.0, "scale": "2"}},
        "2": {"class_type": "Text", "inputs": {"text": 7, "mode": "upper", "shout": "true"}},
        "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    graph = engine.validate(wf)
    assert graph.nodes["1"].literals == {"a": 5, "b": 2, "scale": 2.0}
    assert graph.nodes["2"].literals == {"text": "7", "mode": "upper", "shout": True}


def test_value_not_in_choices_lists_choices(engine):
    wf = {"1": {"class_type": "Text", "inputs": {"text": "x", "mode": "loud", "shout": False}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    err = errors_of(engine, wf).node_errors["1"].errors[0]
    assert err.type == "value_not_in_list"
    assert "plain" in err.message and "upper" in err.message


def test_connection_input_given_literal(engine):
    wf = {"1": {"class_type": "Size", "inputs": {"latent": 3}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    assert types_for(errors_of(engine, wf), "1") == ["invalid_input_type"]


def test_dependency_cycle_names_every_node_in_it(engine):
    wf = {
        "1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    report = errors_of(engine, wf)
    assert types_for(report, "1") == ["dependency_cycle"]
    assert types_for(report, "2") == ["dependency_cycle"]
    assert "3" not in report.node_errors


def test_no_output_node(engine):
    report = errors_of(engine, {"1": {"class_type": "Const", "inputs": {"value": 1}}})
    assert report.error.type == "prompt_no_outputs"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"1": 5}', '{"1": {"inputs": {}}}', '{"1": {"class_type": "Show", "inputs": []}}'])
def test_malformed_json_or_structure(engine, text):
    graph, report = engine.check(text)
    assert graph is None
    kinds = [e.type for _, e in report.all_errors()]
    assert "invalid_prompt" in kinds


def test_an_empty_workflow_has_no_outputs_as_comfyui_says(engine):
    graph, report = engine.check("{}")
    assert graph is None and [e.type for _, e in report.all_errors()] == ["prompt_no_outputs"]


def test_literal_list_needs_wrapper(engine):
    wf = {"1": {"class_type": "Show", "inputs": {"value": [1, 2, 3]}}}
    assert types_for(errors_of(engine, wf), "1") == ["bad_linked_input"]
    wf = {"1": {"class_type": "Show", "inputs": {"value": {"__value__": [1, 2, 3]}}}}
    assert engine.validate(wf).nodes["1"].literals == {"value": [1, 2, 3]}


def test_all_errors_reported_at_once(engine):
    wf = {
        "1": {"class_type": "Nope", "inputs": {}},
        "2": {"class_type": "Add", "inputs": {"a": "x", "b": 99999, "scale": 50}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {}},
    }
    report = errors_of(engine, wf)
    assert set(report.node_errors) == {"1", "2", "4"}
    assert len(report.node_errors["2"].errors) == 2  # 'a' wrong type, 'scale' too big
    payload = report.to_dict()
    assert payload["error"]["type"] == "prompt_outputs_failed_validation"
    assert payload["node_errors"]["2"]["class_type"] == "Add"
    with pytest.raises(WorkflowInvalid):
        engine.validate(wf)


def test_alias_resolves_to_node_type(engine):
    wf = {"1": {"class_type": "LegacyText", "inputs": {"text": "hi", "mode": "plain", "shout": False}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    assert engine.validate(wf).nodes["1"].class_type == "Text"


def test_nodes_not_needed_by_outputs_are_not_run_or_checked(engine):
    wf = {
        "1": {"class_type": "Const", "inputs": {"value": 1}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Add", "inputs": {"a": 1}},  # unfinished, feeds nothing
    }
    graph = engine.validate(wf)
    assert graph.order == ["1", "2"]


# -- bounded reports: work and size linear in the workflow, answers bounded whatever was sent --
def test_a_cycle_is_listed_once_and_every_member_points_at_it(engine):
    n = 300
    wf = {str(i): {"class_type": "Add", "inputs": {"a": [str(i % n + 1), 0], "b": 1}} for i in range(1, n + 1)}
    wf["out"] = {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    report = errors_of(engine, wf)
    first = report.node_errors["1"].errors[0]
    assert first.extra_info["cycle_length"] == n and len(first.extra_info["cycle"]) == 20
    assert first.details.endswith(f"… ({n - 20} more)")
    others = [report.node_errors[str(i)].errors[0] for i in range(2, n + 1)]
    assert all(e.type == "dependency_cycle" and e.extra_info == {"cycle_of": "1"} for e in others)


def test_errors_per_node_are_capped_and_counted():
    from latentgraph.errors import LIMITS, ErrorDetail, ErrorReport

    report = ErrorReport()
    for i in range(LIMITS.max_errors_per_node + 5):
        report.add("7", "Add", ErrorDetail("custom_validation_failed", f"problem {i}"))
    out = report.to_dict()
    assert len(out["node_errors"]["7"]["errors"]) == LIMITS.max_errors_per_node
    assert out["error"]["extra_info"]["omitted"] == {"node_errors": 0, "errors": 5}
    assert report.format().count("\n") == LIMITS.max_errors_per_node + 4  # format lists up to max_lines
    many = ErrorReport()
    for i in range(LIMITS.max_lines + 30):
        many.add(str(i), "Add", ErrorDetail("x", "bad"))
    assert many.format().splitlines()[-1] == "… and 30 more problem(s)"


def test_echoed_values_are_standard_json_and_bounded():
    from latentgraph.errors import ErrorDetail, echo, preview

    deep: list = []
    leaf = deep
    for _ in range(5000):  # deeper than any recursion limit
        leaf.append([])
        leaf = leaf[0]
    assert preview(deep, 50)[0].endswith("…")
    assert echo(float("nan")) == "NaN" and echo(float("-inf")) == "-Infinity"
    assert echo({"a": [1, 2.5, "x", None, True]}) == {"a": [1, 2.5, "x", None, True]}
    assert echo([1.0, float("inf")]) == "[1.0, Infinity]"
    assert echo("x" * 10_000).endswith("…") and len(echo("x" * 10_000)) < 300
    assert isinstance(echo(10**400), str)
    detail = ErrorDetail("t", "m" * 100_000, "d", {"received_value": float("nan"), "big": list(range(100_000))})
    text = json.dumps(detail.to_dict(), allow_nan=False)  # raises on NaN/Infinity
    assert len(text) < 3000


@pytest.mark.parametrize(
    "value, kind",
    [
        (10**400, "value_bigger_than_max"),  # float() of it overflows: was an uncaught OverflowError
        (-(10**400), "value_smaller_than_min"),
        ("1e999", "invalid_input_type"),  # infinity
        (float("nan"), "invalid_input_type"),
    ],
    ids=["1e400-int", "-1e400-int", "1e999-text", "nan"],
)
def test_float_inputs_must_be_finite_numbers(engine, value, kind):
    wf = {"1": {"class_type": "Add", "inputs": {"a": 1, "b": 2, "scale": value}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    report = errors_of(engine, wf)
    assert types_for(report, "1") == [kind]
    json.dumps(report.to_dict(), allow_nan=False)


def test_int_text_over_pythons_digit_limit_is_a_type_error(engine):
    wf = {"1": {"class_type": "Const", "inputs": {"value": "9" * 5000}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    assert types_for(errors_of(engine, wf), "1") == ["invalid_input_type"]


def test_unknown_type_suggestions_are_bounded(engine):
    wf = {str(i): {"class_type": f"Ad{i}" + "d" * 300 * (i % 2), "inputs": {}} for i in range(200)}
    wf["out"] = {"class_type": "Show", "inputs": {"value": 1}}
    report = errors_of(engine, wf)
    assert "did you mean Add" in report.node_errors["0"].errors[0].details
    assert "did you mean" not in report.node_errors["1"].errors[0].details  # a 300-character name
    assert "did you mean" not in report.node_errors["198"].errors[0].details  # past the first 20 names
