"""The `latentgraph` command as a user runs it: exit codes, messages, no tracebacks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@pytest.fixture
def data_dir(tmp_path):
    """A data dir whose plugins folder holds the pure-Python test nodes."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(TESTS / "graph_nodes.py", plugins / "graph_nodes.py")
    (plugins / "graph_nodes_plugin.py").write_text(
        textwrap.dedent(
            """
            from latentgraph import hookimpl
            from latentgraph_plugin_graph_nodes import NODES

            @hookimpl
            def register_nodes():
                return NODES
            """
        )
    )
    return tmp_path


def lg(data_dir, *args, timeout=120, **kw):
    env = {**os.environ, "LATENTGRAPH_HOME": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "latentgraph.cli", *args], capture_output=True, text=True, env=env, timeout=timeout, **kw
    )


def write(data_dir, wf, name="wf.json"):
    path = data_dir / name
    path.write_text(json.dumps(wf))
    return path


CHAIN = {
    "1": {"class_type": "Const", "inputs": {"value": 2}},
    "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 3}, "_meta": {"title": "adder"}},
    "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
}


def test_run_prints_summary_and_json(data_dir):
    wf = write(data_dir, CHAIN)
    out = lg(data_dir, "run", str(wf), "--json", "--quiet")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "success"
    assert summary["outputs"] == {"3": {"value": [5]}}
    assert summary["executed"] == ["1", "2", "3"]
    human = lg(data_dir, "run", str(wf))
    assert human.returncode == 0
    assert "3 node(s) executed, 0 cached" in human.stderr


def test_set_overrides_inputs_by_id_or_title(data_dir):
    wf = write(data_dir, CHAIN)
    out = lg(data_dir, "run", str(wf), "--json", "--set", "2.b=10", "--quiet")
    assert json.loads(out.stdout)["outputs"]["3"] == {"value": [12]}
    out = lg(data_dir, "run", str(wf), "--json", "--set", "adder.b=20", "--quiet")
    assert json.loads(out.stdout)["outputs"]["3"] == {"value": [22]}


def test_invalid_workflow_exit_1_with_readable_errors(data_dir):
    wf = write(data_dir, {**CHAIN, "2": {"class_type": "Add", "inputs": {"a": ["9", 0], "b": "x"}}})
    out = lg(data_dir, "validate", str(wf))
    assert out.returncode == 1
    assert "node 2 (Add) input 'a'" in out.stderr and "missing_link_source" in out.stderr
    assert "Traceback" not in out.stderr
    js = lg(data_dir, "validate", str(wf), "--json")
    assert js.returncode == 1
    payload = json.loads(js.stdout)
    assert payload["valid"] is False
    assert {e["type"] for e in payload["node_errors"]["2"]["errors"]} == {"missing_link_source", "invalid_input_type"}
    assert lg(data_dir, "run", str(wf)).returncode == 1


def test_validate_ok(data_dir):
    out = lg(data_dir, "validate", str(write(data_dir, CHAIN)))
    assert out.returncode == 0 and "ok" in out.stdout


def test_malformed_json_exit_1(data_dir):
    path = data_dir / "bad.json"
    path.write_text("{oops")
    out = lg(data_dir, "run", str(path))
    assert out.returncode == 1
    assert "not valid JSON" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", "missing.json"],
        ["run", "WF", "--set", "nodot=1"],
        ["run", "WF", "--set", "42.value=1"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(data_dir, args):
    wf = str(write(data_dir, CHAIN))
    out = lg(data_dir, *[wf if a == "WF" else a for a in args])
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr


def test_execution_error_exit_3_names_node(data_dir):
    wf = write(
        data_dir,
        {
            "1": {"class_type": "Const", "inputs": {"value": 2}},
            "2": {"class_type": "Boom", "inputs": {"value": ["1", 0]}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
        },
    )
    out = lg(data_dir, "run", str(wf))
    assert out.returncode == 3
    assert "node 2 (Boom)" in out.stderr and "kaboom" in out.stderr
    assert "Traceback" not in out.stderr
    js = lg(data_dir, "run", str(wf), "--json")
    assert json.loads(js.stdout)["error"]["node_id"] == "2"


def test_sigint_interrupts_with_exit_130(data_dir):
    wf = write(
        data_dir,
        {
            "1": {"class_type": "Const", "inputs": {"value": 2}},
            "2": {"class_type": "Steps", "inputs": {"value": ["1", 0], "steps": 1000}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
        },
    )
    # A plugin node that sleeps per step so there is time to interrupt it.
    (data_dir / "plugins" / "slow_steps.py").write_text(
        textwrap.dedent(
            """
            import time
            from latentgraph import In, Node, NodeSpec, Out, hookimpl

            class SlowSteps(Node):
                spec = NodeSpec(name="SlowSteps", inputs=(In("value", "INT"),), outputs=(Out("INT"),))
                def execute(self, ctx, value):
                    print("started", flush=True)
                    for i in range(600):
                        time.sleep(0.05)
                        ctx.progress(i + 1, 600)
                    return (value,)

            @hookimpl
            def register_nodes():
                return [SlowSteps]
            """
        )
    )
    wf = write(data_dir, {**json.loads(wf.read_text()), "2": {"class_type": "SlowSteps", "inputs": {"value": ["1", 0]}}})
    env = {**os.environ, "LATENTGRAPH_HOME": str(data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentgraph.cli", "run", str(wf), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted at node 2" in err


def test_nodes_lists_types_and_object_info_json(data_dir):
    out = lg(data_dir, "nodes")
    assert out.returncode == 0
    assert "Add" in out.stdout and "alias: LegacyText" in out.stdout
    info = json.loads(lg(data_dir, "nodes", "--json").stdout)
    add = info["Add"]
    assert add["input"]["required"]["b"] == ["INT", {"default": 0}]
    assert add["input"]["optional"]["scale"][0] == "FLOAT"
    assert add["output"] == ["INT"] and add["output_name"] == ["sum"]
    assert info["LegacyText"]["alias_of"] == "Text"
    assert info["Text"]["input"]["required"]["mode"][0] == ["plain", "upper"]


# -- bad inputs: structured errors, never a traceback ---------------------------------------------
EDITOR_INFINITE = '{"nodes": [{"id": 1, "type": "Const", "mode": %s, "widgets_values": [1]}], "links": [[1, 1, %s, 2, 0, "INT"]]}'
BAD_FILES = {
    "nested_1000": "[" * 1000 + "]" * 1000,
    "int_5000_digits": '{"1": {"class_type": "Const", "inputs": {"value": %s}}}' % ("9" * 5000),
    "float_given_10**400": '{"1": {"class_type": "Const", "inputs": {"value": %s}}}' % (10**400),
    "nan": '{"1": {"class_type": "Const", "inputs": {"value": NaN}}}',
    "1e400": '{"1": {"class_type": "Const", "inputs": {"value": 1e400}}}',
    "editor_infinity": EDITOR_INFINITE % ("Infinity", "Infinity"),
}


def _strict(text):
    def refuse(name):
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_workflow_files_are_structured_errors(data_dir, case, capsys):
    """run/validate/convert refuse what the server refuses, as a report naming the value."""
    from latentgraph.cli import main

    path = data_dir / f"{case}.json"
    path.write_text(BAD_FILES[case])
    common = ["--data-dir", str(data_dir), "--no-plugins"]
    assert main(["validate", str(path), "--json", *common]) == 1
    report = _strict(capsys.readouterr().out)
    assert report["valid"] is False and report["error"]["type"] == "invalid_prompt"
    assert report["error"]["message"] in ("Workflow is not standard JSON", "Workflow is not valid JSON")
    assert main(["run", str(path), "--json", *common]) == 1
    assert _strict(capsys.readouterr().out)["status"] == "invalid"
    assert main(["convert", str(path), *common]) == 1
    assert "cannot convert" in capsys.readouterr().err


def test_bad_set_values_are_usage_errors(data_dir, capsys):
    from latentgraph.cli import main

    wf = str(write(data_dir, CHAIN))
    for value in ("NaN", "-Infinity", "1e400", "9" * 5000, "[" * 2000):
        assert main(["validate", wf, "--no-plugins", "--data-dir", str(data_dir), "--set", f"1.value={value}"]) == 2, value
        assert "--set" in capsys.readouterr().err


def test_bad_input_in_a_subprocess_has_no_traceback(data_dir):
    path = data_dir / "deep.json"
    path.write_text('{"1": {"class_type": "Const", "inputs": {"value": ' + "[" * 5000 + "]" * 5000 + "}}}")
    out = lg(data_dir, "validate", "--json", str(path))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert _strict(out.stdout)["error"]["extra_info"]["reason"] == "too_deep"


def test_an_unexpected_error_is_one_line_without_traceback(data_dir, capsys, monkeypatch):
    from latentgraph import cli

    def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cli, "load_workflow", broken)
    wf = str(write(data_dir, CHAIN))
    assert cli.main(["validate", wf, "--json", "--no-plugins", "--data-dir", str(data_dir)]) == 3
    captured = capsys.readouterr()
    assert _strict(captured.out)["error"]["type"] == "too_deep"
    assert "Traceback" not in captured.err and "-v shows the traceback" in captured.err


def test_editor_conversion_survives_non_finite_numbers():
    """In-process callers (plugins, ``from_data``) may hand over floats JSON never carries."""
    from latentgraph.editor_format import convert_editor_workflow
    from latentgraph.editor_links import parse_links
    from latentgraph.registry import NodeRegistry

    inf, nan = float("inf"), float("nan")
    links, problems = parse_links([[1, 1, inf, 2, 0, "INT"], {"id": 2, "origin_id": 1, "origin_slot": nan, "target_id": 2, "target_slot": 0}])
    assert links == {} and len(problems) == 2
    editor = {"nodes": [{"id": 1, "type": "Nope", "mode": inf}, {"id": 2, "type": "Nope", "mode": nan}], "links": [[1, 1, inf, 2, 0]]}
    result = convert_editor_workflow(editor, NodeRegistry())
    assert result.report  # reported, not raised
