"""Testing kit for graph and plugin authors; also a pytest plugin (entry point ``pytest11``).

Installing latentgraph makes these fixtures available in any pytest run (no conftest needed):

    ``lg_settings``     Settings rooted in a fresh temporary data dir (CPU).
    ``lg_engine``       A factory: ``lg_engine(*plugins, builtins=True, plugins_dir=None,
                        entry_points=False)`` → an in-process :class:`~latentgraph.engine.Engine`
                        with the given plugin objects (modules, or objects with ``@hookimpl``
                        methods; ``(name, obj)`` pairs to name them) registered.
    ``lg_plugins_dir``  ``<data dir>/plugins``, created empty: the folder the CLI loads by default.
    ``lg_input_image``  A factory writing a PNG into the input folder, for ``LoadImage``.
    ``lg_cli``          Runs the ``latentgraph`` command in-process on the test data dir.
    ``tiny_checkpoint`` A tiny random SD1 checkpoint in ``models/checkpoints`` (runs in seconds);
                        from :mod:`latentgraph.nodes.testing`, the kit's part that needs the nodes.

Build workflows with :class:`WorkflowBuilder` (or load a file with :func:`load_workflow`), run
them with ``engine.run(...)`` and check the :class:`~latentgraph.run_state.RunResult` with
:func:`assert_success`, :func:`assert_failed`, :func:`assert_invalid`, :func:`output_images`
and its ``executed`` / ``cached`` / ``outputs`` lists.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from latentgraph.settings import Settings
from latentgraph.workflow import LITERAL_LIST_KEY

if TYPE_CHECKING:
    from PIL import Image

    from latentgraph.engine import Engine
    from latentgraph.errors import ErrorReport, NodeFailure
    from latentgraph.run_state import RunResult


@dataclass(frozen=True)
class NodeRef:
    id: str

    def __getitem__(self, output: int) -> list[Any]:
        return [self.id, output]


@dataclass
class WorkflowBuilder:
    """``a = wf.add("Const", value=1); wf.add("Add", a=a[0], b=2); wf.to_api()``"""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1), repr=False)

    def add(self, class_type: str, *, id: str | None = None, title: str = "", **inputs: Any) -> NodeRef:
        node_id = id or str(next(self._ids))
        while id is None and node_id in self.nodes:
            node_id = str(next(self._ids))
        values = {}
        for name, value in inputs.items():
            is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)
            values[name] = value if is_link or not isinstance(value, list) else {LITERAL_LIST_KEY: value}
        entry: dict[str, Any] = {"class_type": class_type, "inputs": values}
        if title:
            entry["_meta"] = {"title": title}
        self.nodes[node_id] = entry
        return NodeRef(node_id)

    def set(self, node: NodeRef | str, **inputs: Any) -> None:
        """Change inputs of a node given by reference, id or title."""
        node_id = node.id if isinstance(node, NodeRef) else self.node(node).id
        self.nodes[node_id]["inputs"].update(inputs)

    def to_api(self) -> dict[str, Any]:
        return copy.deepcopy(self.nodes)

    def node(self, title_or_id: str) -> NodeRef:
        """A node by id or by ``_meta.title`` (as shown in the editor)."""
        if title_or_id in self.nodes:
            return NodeRef(title_or_id)
        found = [nid for nid, n in self.nodes.items() if n.get("_meta", {}).get("title") == title_or_id]
        if len(found) != 1:
            raise KeyError(f"{len(found)} nodes have the id or title {title_or_id!r}")
        return NodeRef(found[0])

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> WorkflowBuilder:
        """Start from an API-format workflow (to change a few inputs, add nodes …)."""
        builder = cls(copy.deepcopy(data))
        numeric = [int(k) for k in data if str(k).isdigit()]
        builder._ids = itertools.count(max(numeric, default=0) + 1)
        return builder

    @classmethod
    def load(cls, path: str | Path) -> WorkflowBuilder:
        return cls.from_api(load_workflow(path))


def txt2img(
    checkpoint: str,
    *,
    prompt: str = "a photo of a cat",
    negative: str = "",
    seed: int = 0,
    steps: int = 2,
    cfg: float = 7.0,
    sampler_name: str = "euler",
    scheduler: str = "normal",
    width: int = 64,
    height: int = 64,
    batch_size: int = 1,
    filename_prefix: str = "txt2img",
) -> WorkflowBuilder:
    """The standard text-to-image graph (ComfyUI's default), nodes titled ``checkpoint``,
    ``positive``, ``negative``, ``latent``, ``sampler``, ``decode``, ``save``.

    With the ``tiny_checkpoint`` fixture (``txt2img(tiny_checkpoint.name)``) it runs in seconds on
    a CPU; extend it with ``wf.add(...)`` and ``wf.node("sampler")``.
    """
    wf = WorkflowBuilder()
    ckpt = wf.add("CheckpointLoaderSimple", title="checkpoint", ckpt_name=checkpoint)
    pos = wf.add("CLIPTextEncode", title="positive", text=prompt, clip=ckpt[1])
    neg = wf.add("CLIPTextEncode", title="negative", text=negative, clip=ckpt[1])
    latent = wf.add("EmptyLatentImage", title="latent", width=width, height=height, batch_size=batch_size)
    sampled = wf.add(
        "KSampler", title="sampler", model=ckpt[0], seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name,
        scheduler=scheduler, positive=pos[0], negative=neg[0], latent_image=latent[0], denoise=1.0,
    )
    image = wf.add("VAEDecode", title="decode", samples=sampled[0], vae=ckpt[2])
    wf.add("SaveImage", title="save", images=image[0], filename_prefix=filename_prefix)
    return wf


def load_workflow(path: str | Path) -> dict[str, Any]:
    """An API-format workflow from a ``.json`` file or from the ``prompt`` chunk of a saved PNG."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        from latentgraph.pngmeta import read_workflow_from_png

        prompt = read_workflow_from_png(path)["prompt"]
        if prompt is None:
            raise ValueError(f"{path} carries no API workflow ('prompt' chunk)")
        return prompt
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a workflow is a JSON object")
    return data


def make_engine(settings: Settings, *plugins: object, builtins: bool = True, **kwargs: Any) -> Engine:
    """An engine with ``plugins`` registered; entry points are not loaded unless asked for."""
    from latentgraph.engine import Engine

    extra = [p if _is_named(p) else (getattr(p, "__name__", type(p).__name__), p) for p in plugins]
    kwargs.setdefault("entry_points", False)
    return Engine.create(settings, builtins=builtins, extra_plugins=extra, **kwargs)


def _is_named(plugin: object) -> bool:
    return isinstance(plugin, tuple) and len(plugin) == 2 and isinstance(plugin[0], str)


# -- assertions ----------------------------------------------------------------------------------
def assert_success(result: RunResult) -> RunResult:
    """Fail with the node, plugin, message and traceback tail when the run did not succeed."""
    if result.status == "success":
        return result
    if result.failure is not None:
        f = result.failure
        tail = "".join(f.traceback[-3:]).rstrip()
        where = f"node {f.node_id} ({f.class_type}" + (f", plugin {f.plugin}" if f.plugin else "") + ")"
        raise AssertionError(f"run failed at {where}: {f.message}\n{tail}")
    raise AssertionError(f"run did not succeed: status {result.status!r} (interrupted at {result.interrupted_at})")


def assert_failed(
    result: RunResult,
    *,
    node_id: str | None = None,
    class_type: str | None = None,
    plugin: str | None = None,
    input_name: str | None = None,
    match: str | None = None,
) -> NodeFailure:
    """The run stopped with an error matching every given field (``match``: regex on the message)."""
    if result.status != "error" or result.failure is None:
        raise AssertionError(f"expected the run to fail, status is {result.status!r}")
    f = result.failure
    expected = {"node_id": node_id, "class_type": class_type, "plugin": plugin, "input_name": input_name}
    for key, want in expected.items():
        if want is not None and getattr(f, key) != want:
            raise AssertionError(f"failure {key} is {getattr(f, key)!r}, expected {want!r} ({f.message})")
    if match is not None and not re.search(match, f.message):
        raise AssertionError(f"failure message {f.message!r} does not match {match!r}")
    return f


def assert_invalid(
    engine: Engine,
    workflow: Any,
    *,
    node_id: str | None = None,
    error_type: str | None = None,
    match: str | None = None,
) -> ErrorReport:
    """Validation refuses ``workflow`` with (at least) one error matching every given field."""
    graph, report = engine.check(workflow.to_api() if isinstance(workflow, WorkflowBuilder) else workflow)
    if graph is not None:
        raise AssertionError("expected the workflow to be invalid, it validated")
    for where, detail in report.all_errors():
        if node_id is not None and where != node_id:
            continue
        if error_type is not None and detail.type != error_type:
            continue
        if match is not None and not re.search(match, f"{detail.message} {detail.details}"):
            continue
        return report
    raise AssertionError(f"no error matches node={node_id} type={error_type} match={match}; got:\n{report.format()}")


def output_files(result: RunResult, settings: Settings) -> list[Path]:
    """Files the output nodes reported (``ui["images"]``), in node order."""
    from latentgraph.cli import output_files as files_of

    return files_of(result.outputs, settings)


def output_images(result: RunResult, settings: Settings) -> list[Image.Image]:
    """The saved/previewed images of a run, loaded (RGB/RGBA as written)."""
    from PIL import Image

    images = []
    for path in output_files(result, settings):
        with Image.open(path) as img:
            img.load()
            images.append(img.copy())
    return images


# -- fixtures ------------------------------------------------------------------------------------
@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(settings: Settings, *args: str | Path) -> CliResult:
    """``latentgraph <args>`` in this process, on ``settings``' data dir (added after the command)."""
    from latentgraph.cli import main

    argv = [str(a) for a in args]
    if argv and not argv[0].startswith("-") and "--data-dir" not in argv:
        argv[1:1] = ["--data-dir", str(settings.base_dir)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def lg_settings(tmp_path: Path) -> Settings:
    return Settings.from_env(tmp_path / "lg-data", environ={}, device="cpu")


@pytest.fixture
def lg_engine(lg_settings: Settings) -> Callable[..., Engine]:
    def factory(*plugins: object, builtins: bool = True, **kwargs: Any) -> Engine:
        return make_engine(lg_settings, *plugins, builtins=builtins, **kwargs)

    return factory


@pytest.fixture
def lg_plugins_dir(lg_settings: Settings) -> Path:
    folder = lg_settings.base_dir / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def lg_input_image(lg_settings: Settings) -> Callable[..., str]:
    """``lg_input_image("in.png", size=(64, 32), color=(255, 0, 0))`` or ``image=<PIL image>``."""

    def factory(name: str = "input.png", *, size: tuple[int, int] = (64, 64),
                color: tuple[int, ...] = (128, 128, 128), image: Any = None) -> str:
        from PIL import Image

        img = image if image is not None else Image.new("RGB" if len(color) == 3 else "RGBA", size, color)
        path = lg_settings.input_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        return name

    return factory


@pytest.fixture
def lg_cli(lg_settings: Settings) -> Callable[..., CliResult]:
    """``lg_cli("run", "wf.json", "--json")`` → :class:`CliResult` (exit code, stdout, stderr)."""

    def run(*args: str | Path) -> CliResult:
        return run_cli(lg_settings, *args)

    return run
