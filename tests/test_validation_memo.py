"""An identical re-run is not validated again, but never runs a graph that would no longer validate.

Bars, fixed before running: the same text (or an equal dict) reuses the remembered graph; a file
that vanished, a node's own check that now fails, a dict changed in place by its caller, other
targets and a registry that changed all get a full validation with the usual structured errors.
"""

from __future__ import annotations

import json

from latentgraph import In, Node, NodeResult, NodeSpec, Out, hookimpl
from latentgraph.testing import WorkflowBuilder, assert_success


def input_files(settings, registry):
    return sorted(p.name for p in settings.input_dir.glob("*.txt"))


class MemoNumber(Node):
    spec = NodeSpec(name="MemoNumber", inputs=(In("value", "INT", default=1, min=0, max=100),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        return (value,)


class MemoFile(Node):
    spec = NodeSpec(name="MemoFile", inputs=(In("name", "COMBO", choices=input_files), In("n", "INT")), output_node=True)

    def execute(self, ctx, name, n):
        return NodeResult(ui={"text": [(ctx.settings.input_dir / name).read_text() * n]})


class MemoChecked(Node):
    """Valid while the file ``ok.flag`` is in the input folder (a check that reads the disk)."""

    spec = NodeSpec(name="MemoChecked", inputs=(In("n", "INT"),), output_node=True)

    @classmethod
    def check_inputs(cls, settings, inputs):
        return [] if (settings.input_dir / "ok.flag").exists() else [("n", "the flag file is gone")]

    def execute(self, ctx, n):
        return NodeResult(ui={"n": [n]})


class MemoPlugin:
    @hookimpl
    def register_nodes(self):
        return [MemoNumber, MemoFile, MemoChecked]


def workflow(value: int = 3) -> dict:
    wf = WorkflowBuilder()
    num = wf.add("MemoNumber", id="1", value=value)
    wf.add("MemoFile", id="2", name="a.txt", n=num[0])
    return wf.to_api()


def setup(lg_engine, lg_settings):
    lg_settings.input_dir.mkdir(parents=True, exist_ok=True)
    (lg_settings.input_dir / "a.txt").write_text("ab")
    return lg_engine(("memo", MemoPlugin()), builtins=False)


def test_identical_text_and_equal_dicts_reuse_the_validated_graph(lg_engine, lg_settings):
    engine = setup(lg_engine, lg_settings)
    text = json.dumps(workflow())
    first = engine.validate(text)
    again = engine.validate(text)
    assert again.nodes["2"] is first.nodes["2"]  # not validated again
    assert again.source == json.loads(text) and again.source is not first.source  # each run its own JSON
    from_dict = engine.validate(workflow())
    from_equal_dict = engine.validate(workflow())
    assert from_equal_dict.nodes["2"] is from_dict.nodes["2"]
    result = assert_success(engine.run(text))
    assert result.outputs["2"] == {"text": ["ababab"]}


def test_a_vanished_file_is_reported_on_the_rerun(lg_engine, lg_settings):
    engine = setup(lg_engine, lg_settings)
    text = json.dumps(workflow())
    assert_success(engine.run(text))
    (lg_settings.input_dir / "a.txt").unlink()
    graph, report = engine.check(text)
    assert graph is None
    [(node_id, error)] = report.all_errors()
    assert node_id == "2" and error.type == "value_not_in_list" and error.extra_info["input_name"] == "name"


def test_a_nodes_own_check_runs_on_every_rerun(lg_engine, lg_settings):
    engine = setup(lg_engine, lg_settings)
    flag = lg_settings.input_dir / "ok.flag"
    flag.write_text("")
    wf = WorkflowBuilder()
    wf.add("MemoChecked", id="5", n=2)
    text = json.dumps(wf.to_api())
    assert engine.check(text)[0] is not None
    flag.unlink()
    graph, report = engine.check(text)
    assert graph is None
    [(node_id, error)] = report.all_errors()
    assert node_id == "5" and error.type == "custom_validation_failed" and error.extra_info["input_name"] == "n"


def test_a_dict_changed_in_place_is_validated_again(lg_engine, lg_settings):
    engine = setup(lg_engine, lg_settings)
    wf = workflow(3)
    assert engine.check(wf)[0] is not None
    wf["1"]["inputs"]["value"] = 500  # beyond the maximum, in the caller's own dict
    for candidate in (wf, json.loads(json.dumps(wf))):
        graph, report = engine.check(candidate)
        assert graph is None
        [(node_id, error)] = report.all_errors()
        assert node_id == "1" and error.type == "value_bigger_than_max"


def test_other_targets_and_a_changed_registry_are_validated_again(lg_engine, lg_settings):
    engine = setup(lg_engine, lg_settings)
    text = json.dumps(workflow())
    whole = engine.validate(text)
    part = engine.validate(text, targets=["2"])
    assert part.outputs == ["2"] and part.nodes["2"] is not whole.nodes["2"]

    class MemoLater(Node):
        spec = NodeSpec(name="MemoLater", outputs=(Out("INT"),))

        def execute(self, ctx):
            return (1,)

    engine.registry.register(MemoLater, "memo")
    assert engine.validate(text, targets=["2"]).nodes["2"] is not part.nodes["2"]


def test_equal_looking_values_of_other_types_are_not_the_same_workflow(lg_engine, lg_settings):
    engine = setup(lg_engine, lg_settings)
    assert engine.check(workflow(1))[0] is not None
    as_bool = workflow(1)
    as_bool["1"]["inputs"]["value"] = True  # == 1 in Python, not an INT to validation
    graph, report = engine.check(as_bool)
    assert graph is None and report.all_errors()[0][1].type == "invalid_input_type"
