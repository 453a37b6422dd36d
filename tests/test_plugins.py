"""Plugin isolation and discovery: a bad plugin is reported and skipped, everything else works.

The same folder of misbehaving plugins (tests/plugin_fixtures/isolation) is loaded through the
engine, the CLI (a real subprocess) and the server.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from latentgraph import In, Node, NodeSpec, Out, TypeSpec, hookimpl
from latentgraph.engine import Engine
from latentgraph.plugins import PluginSelection, load_plugins
from latentgraph.testing import WorkflowBuilder, assert_failed, assert_invalid, assert_success

ISOLATION = Path(__file__).parent / "plugin_fixtures" / "isolation"


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    folder = tmp_path / "my-plugins"
    shutil.copytree(ISOLATION, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def good_workflow() -> dict:
    wf = WorkflowBuilder()
    n = wf.add("IsoNumber", value=21)
    wf.add("IsoShow", value=wf.add("DupFine", value=n[0])[0])
    return wf.to_api()


def crash_workflow() -> dict:
    wf = WorkflowBuilder()
    wf.add("IsoShow", value=wf.add("IsoCrash", value=wf.add("IsoNumber", value=1)[0])[0])
    return wf.to_api()


def check_reported(plugins: dict) -> None:
    """Every misbehaving plugin is listed with the reason; the good ones have no errors."""
    assert plugins["good_nodes"]["errors"] == [] and plugins["good_nodes"]["nodes"] == ["IsoNumber", "IsoShow"]
    [error] = plugins["isolation_import_error"]["errors"]
    assert "import failed: ModuleNotFoundError" in error and "a_dependency_that_is_not_installed" in error
    hook_errors = "\n".join(plugins["isolation_hook_error"]["errors"])
    assert "register_nodes raised RuntimeError: cannot build my node list" in hook_errors
    assert "startup raised RuntimeError: startup went wrong" in hook_errors
    dup = plugins["isolation_duplicate"]
    assert dup["nodes"] == ["DupFine"]
    assert any("'SaveImage' is already registered by plugin 'latentgraph'" in e for e in dup["errors"])
    assert any("'IsoNumber' is already registered by plugin 'good_nodes'" in e for e in dup["errors"])
    invalid = plugins["isolation_invalid"]
    assert invalid["nodes"] == ["InvalidFine"]
    text = "\n".join(invalid["errors"])
    assert "BadType: input 'x' has unknown type 'NOT_A_TYPE'" in text
    assert "NoChoices: COMBO input 'mode' has no choices" in text
    assert "is not a latentgraph.Node subclass" in text
    assert plugins["isolation_runtime"]["errors"] == []
    assert plugins["latentgraph"]["errors"] == [] and "SaveImage" in plugins["latentgraph"]["nodes"]


# -- through the engine ----------------------------------------------------------------------------
def test_engine_reports_each_bad_plugin_and_keeps_working(bad_folder, lg_settings):
    engine = Engine.create(lg_settings, entry_points=False, plugins_dir=bad_folder)
    check_reported({p["name"]: p for p in engine.host.describe()})
    assert engine.registry.owners["SaveImage"] == "latentgraph"
    assert engine.registry.owners["IsoNumber"] == "good_nodes"

    result = assert_success(engine.run(good_workflow()))
    assert result.outputs["3"] == {"value": [42]}

    failure = assert_failed(engine.run(crash_workflow()), node_id="2", plugin="isolation_runtime")
    assert "integer division or modulo by zero" in failure.message
    assert "plugin 'isolation_runtime'" in failure.message
    assert failure.exception_type == "builtins.ZeroDivisionError"
    # the engine keeps serving after the failure, from the cache where it can
    again = assert_success(engine.run(good_workflow()))
    assert again.executed == [] and again.outputs == result.outputs


def test_a_node_from_a_skipped_plugin_is_a_validation_error_pointing_at_plugins(bad_folder, lg_settings):
    engine = Engine.create(lg_settings, entry_points=False, plugins_dir=bad_folder)
    wf = WorkflowBuilder()
    wf.add("IsoShow", value=wf.add("BadType", x=1)[0])
    report = assert_invalid(engine, wf, node_id="1", error_type="missing_node_type")
    assert "latentgraph plugins" in report.node_errors["1"].errors[0].details


def test_broken_entry_point_distribution_is_reported(tmp_path, monkeypatch, lg_settings):
    """A real (if tiny) installed distribution whose entry point names a missing module."""
    dist = tmp_path / "site" / "lg_broken_plugin-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lg-broken-plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[latentgraph]\nlg_broken = lg_module_that_does_not_exist.plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    engine = Engine.create(lg_settings, entry_points=True, allow=["lg_broken"])
    info = engine.host.plugins["lg_broken"]
    assert (info.source, info.version, info.location) == ("entrypoint", "1.2.3", "lg_module_that_does_not_exist.plugin")
    assert "import failed: ModuleNotFoundError" in info.errors[0]
    assert "KSampler" in engine.registry


def test_misspelt_hook_is_reported(lg_engine):
    class Typo:
        @hookimpl
        def register_node(self):
            return []

        @hookimpl
        def register_nodes(self):
            return []

    engine = lg_engine(("typo", Typo()))
    info = engine.host.plugins["typo"]
    assert info.hooks == ["register_nodes"]
    assert info.errors == ["@hookimpl 'register_node' is not a latentgraph hook and is never called; did you mean 'register_nodes'?"]


def test_plugin_name_clash_is_reported_not_merged(lg_settings):
    class A:
        @hookimpl
        def register_nodes(self):
            return []

    engine = Engine.create(lg_settings, entry_points=False, extra_plugins=[("same", A()), ("same", A())])
    clash = [p for p in engine.host.describe() if p["name"].startswith("same (")]
    assert clash and "already loaded" in clash[0]["errors"][0]
    assert engine.host.plugins["same"].errors == []


# -- through the CLI ---------------------------------------------------------------------------------
def lg(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "latentgraph.cli", *args],
        capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})},
    )


def test_cli_lists_errors_runs_good_plugins_and_names_the_failing_one(bad_folder, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    common = ["--data-dir", str(data), "--plugins-dir", str(bad_folder)]

    listing = lg("plugins", "--json", "--check", *common)
    assert listing.returncode == 1  # --check: some plugin reported an error
    check_reported({p["name"]: p for p in json.loads(listing.stdout)})
    assert "plugin isolation_import_error failed to import" in listing.stderr  # also logged

    good = tmp_path / "good.json"
    good.write_text(json.dumps(good_workflow()))
    ran = lg("run", str(good), "--json", "--quiet", *common)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"] == {"3": {"value": [42]}}

    crash = tmp_path / "crash.json"
    crash.write_text(json.dumps(crash_workflow()))
    failed = lg("run", str(crash), "--quiet", *common)
    assert failed.returncode == 3
    assert "error in node 2 (IsoCrash)" in failed.stderr and "plugin 'isolation_runtime'" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_cli_text_listing_allow_list_and_no_plugins(bad_folder, lg_cli, monkeypatch):
    """In-process (the testing kit's ``lg_cli``): the listing a user reads."""
    monkeypatch.setenv("LATENTGRAPH_PLUGINS", "good_nodes,isolation_runtime")
    text = lg_cli("plugins", "--plugins-dir", bad_folder)
    assert text.exit_code == 0
    assert "good_nodes  (plugins-dir:" in text.stdout and "nodes (2): IsoNumber, IsoShow" in text.stdout
    assert "isolation_invalid  (plugins-dir:" in text.stdout and "[disabled by LATENTGRAPH_PLUGINS]" in text.stdout
    assert "ERROR" not in text.stdout

    monkeypatch.delenv("LATENTGRAPH_PLUGINS")
    listing = lg_cli("plugins", "--plugins-dir", bad_folder)
    assert "ERROR: import failed: ModuleNotFoundError" in listing.stdout
    none = lg_cli("plugins", "--json", "--no-plugins", "--plugins-dir", bad_folder)
    assert [p["name"] for p in none.json] == ["latentgraph"]


# -- through the server --------------------------------------------------------------------------------
def test_server_lists_plugin_errors_and_keeps_serving(bad_folder, lg_settings):
    from plugin_server import run_prompt, serving_engine

    async def go():
        engine = Engine.create(lg_settings, entry_points=False, plugins_dir=bad_folder)
        async with serving_engine(engine) as client:
            status, plugins = await client.get("/plugins")
            assert status == 200
            check_reported({p["name"]: p for p in plugins})

            msgs = await run_prompt(client, crash_workflow())
            error = next(d for kind, d in msgs if kind == "execution_error")
            assert error["node_type"] == "IsoCrash" and "plugin 'isolation_runtime'" in error["exception_message"]

            msgs = await run_prompt(client, good_workflow())
            assert any(kind == "execution_success" for kind, _ in msgs)
            executed = [d for kind, d in msgs if kind == "executed"]
            assert executed and executed[-1]["output"] == {"value": [42]}

            status, body = await client.post("/prompt", {"prompt": {"1": {"class_type": "BadType", "inputs": {}}}})
            assert status == 400 and body["node_errors"]["1"]["errors"][0]["type"] == "missing_node_type"

    asyncio.run(asyncio.wait_for(go(), 120))


# -- lifecycle and extension hooks ---------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def startup(self, registry, settings):
        self.calls.append(("startup", "KSampler" in registry, settings.device))

    @hookimpl
    def before_node(self, prompt_id, node_id, class_type):
        self.calls.append(("before", node_id, class_type))

    @hookimpl
    def after_node(self, node_id, seconds):  # hooks may take only the arguments they use
        self.calls.append(("after", node_id, seconds >= 0))

    @hookimpl
    def on_execution_error(self, prompt_id, failure):
        self.calls.append(("error", failure.node_id, failure.plugin))


class FlakyObserver:
    @hookimpl
    def before_node(self, node_id):
        raise RuntimeError(f"observer broke at {node_id}")


def test_lifecycle_hooks_see_each_executed_node_and_a_raising_one_is_contained(bad_folder, lg_engine):
    recorder = Recorder()
    engine = lg_engine(("recorder", recorder), ("flaky", FlakyObserver()), plugins_dir=bad_folder)
    assert recorder.calls == [("startup", True, "cpu")]
    assert_success(engine.run(good_workflow()))
    assert recorder.calls[1:] == [
        ("before", "1", "IsoNumber"), ("after", "1", True),
        ("before", "2", "DupFine"), ("after", "2", True),
        ("before", "3", "IsoShow"), ("after", "3", True),
    ]
    errors = engine.host.plugins["flaky"].errors
    assert errors and all("observer broke at" in e for e in errors)
    recorder.calls.clear()
    assert engine.run(good_workflow()).executed == []
    assert recorder.calls == []  # cached nodes do not run, so no hooks
    assert_failed(engine.run(crash_workflow()), node_id="2")
    assert ("error", "2", "isolation_runtime") in recorder.calls


class HdrImage(Node):
    spec = NodeSpec(name="HdrGain", inputs=(In("image", "HDR_IMAGE"), In("gain", "FLOAT", default=2.0)),
                    outputs=(Out("HDR_IMAGE"),))

    def execute(self, ctx, image, gain):
        return (image * gain,)


class HdrPlugin:
    def __init__(self, root):
        self.root = root

    @hookimpl
    def register_types(self):
        return [TypeSpec("HDR_IMAGE", accepts=("IMAGE",), description="linear light, unbounded")]

    @hookimpl
    def register_nodes(self):
        return [HdrImage]

    @hookimpl
    def register_model_roots(self):
        return [self.root]


def test_types_with_compatibility_rule_and_model_roots(lg_engine, tmp_path):
    root = tmp_path / "shared-models"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "shared.safetensors").write_bytes(b"")
    engine = lg_engine(("hdr", HdrPlugin(root)))
    assert engine.registry.compatible("IMAGE", "HDR_IMAGE")
    assert not engine.registry.compatible("HDR_IMAGE", "IMAGE")
    assert root in engine.settings.model_roots
    assert "shared.safetensors" in engine.settings.list_models("checkpoints")

    wf = WorkflowBuilder()
    wf.add("HdrGain", image=wf.add("LoadImage", image="x.png")[0])
    wf.add("SaveImage", images=["2", 0], filename_prefix="x")
    assert_invalid(engine, wf, node_id="3", error_type="return_type_mismatch", match="expects IMAGE")


def test_redeclaring_an_existing_type_only_fails_when_it_changes_the_rule(lg_engine):
    class Redeclare:
        @hookimpl
        def register_types(self):
            return [TypeSpec("IMAGE"), TypeSpec("LATENT", accepts=("IMAGE",)), "NOT_A_TYPESPEC"]

    engine = lg_engine(("redeclare", Redeclare()))
    errors = engine.host.plugins["redeclare"].errors
    assert len(errors) == 2
    assert "type 'LATENT' is already registered" in errors[0] and "is not a latentgraph.TypeSpec" in errors[1]
    assert not engine.registry.compatible("IMAGE", "LATENT")


def test_extension_tables_refuse_duplicates(lg_engine):
    from latentgraph.nodes.sampling import SamplerDef, builtin_samplers

    builtin = {d.name: d for d in builtin_samplers()}

    class Samplers:
        @hookimpl
        def register_samplers(self):
            return [SamplerDef("euler", lambda model, x, sigmas, **kw: x), SamplerDef("euler_plugin", lambda model, x, sigmas, **kw: x),
                    object()]

    engine = lg_engine(("samplers", Samplers()))
    errors = engine.host.plugins["samplers"].errors
    assert any("'euler' is already registered" in e for e in errors) and any("has no name" in e for e in errors)
    assert engine.registry.samplers["euler"] is builtin["euler"]  # the built-in one
    assert "euler_plugin" in engine.registry.samplers


@pytest.mark.parametrize(
    ("value", "loaded"),
    [
        (None, {"a", "b", "c"}),
        ("a,b", {"a", "b"}),
        ("-c", {"a", "b"}),
        ("a, -a", set()),
        ("", set()),
    ],
)
def test_plugin_selection(value, loaded):
    selection = PluginSelection.parse(value)
    assert {n for n in "abc" if selection.wants(n)} == loaded


def test_builtins_cannot_be_disabled_by_the_allow_list(lg_settings):
    host = load_plugins(entry_points=False, allow=[])
    assert "KSampler" in host.registry and host.plugins["latentgraph"].enabled
