"""docs/plugins.md documents every hook, and its examples are real code that runs."""

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from latentgraph.plugins import hookspecs
from latentgraph.testing import WorkflowBuilder, assert_success, output_images

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def hookspec_functions() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "latentgraph_spec")
    }


def sections(text: str) -> dict[str, str]:
    """``### `name(args)` `` heading → the text up to the next heading."""
    found = {}
    parts = re.split(r"^### `([^`]+)`\s*$", text, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2]):
        found[heading] = re.split(r"^#{2,3} ", body, flags=re.M)[0]
    return found


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_hookspec_is_documented_with_signature_and_example():
    docs = sections(DOCS.read_text())
    specs = hookspec_functions()
    assert len(specs) >= 11
    missing = []
    for name, sig in specs.items():
        heading = f"{name}({', '.join(sig.parameters)})"
        body = docs.get(heading)
        if body is None:
            missing.append(f"no '### `{heading}`' heading")
            continue
        if len(body.split("```")[0].split()) < 8:
            missing.append(f"{name}: no description before the example")
        examples = [c for c in code_blocks(body) if "@hookimpl" in c and re.search(rf"def {name}\(", c)]
        if not examples:
            missing.append(f"{name}: no example implementing it")
    assert not missing, "docs/plugins.md is out of date:\n" + "\n".join(missing)


def test_docs_do_not_describe_hooks_that_do_not_exist():
    specs = hookspec_functions()
    documented = {h.split("(")[0] for h in sections(DOCS.read_text())}
    assert documented <= set(specs), f"documented but not hookspecs: {documented - set(specs)}"


def test_every_python_example_is_valid_python():
    for block in code_blocks(DOCS.read_text()):
        ast.parse(block)


def test_the_first_plugin_example_runs(lg_plugins_dir, lg_engine, lg_input_image, lg_settings):
    text = DOCS.read_text()
    first = text.split("## A first plugin", 1)[1]
    (lg_plugins_dir / "brighten.py").write_text(code_blocks(first)[0])
    engine = lg_engine(plugins_dir=lg_plugins_dir)
    assert engine.host.plugins["brighten"].nodes == ["Brighten"]
    wf = WorkflowBuilder()
    image = wf.add("LoadImage", image=lg_input_image("grey.png", size=(4, 4), color=(100, 100, 100)))
    wf.add("SaveImage", images=wf.add("Brighten", image=image[0], amount=0.2)[0], filename_prefix="b")
    [out] = output_images(assert_success(engine.run(wf.to_api())), lg_settings)
    assert abs(int(np.asarray(out)[0, 0, 0]) - 151) <= 1


@pytest.mark.parametrize("hook", ["register_types", "register_samplers", "register_schedulers", "register_routes",
                                  "startup", "before_node", "after_node", "on_execution_error", "register_model_roots"])
def test_hook_examples_load_as_plugins(hook, lg_plugins_dir, lg_engine):
    """Each hook's example, saved as a plugin file, registers without errors."""
    docs = sections(DOCS.read_text())
    [body] = [b for h, b in docs.items() if h.startswith(hook + "(")]
    code = next(c for c in code_blocks(body) if f"def {hook}(" in c)
    if hook in ("register_samplers", "register_schedulers", "register_types"):  # names taken by other tests
        code = code.replace('"euler_midpoint"', '"euler_midpoint_docs"').replace('"linspace"', '"linspace_docs"')
    (lg_plugins_dir / f"docs_{hook}.py").write_text(code)
    engine = lg_engine(plugins_dir=lg_plugins_dir)
    info = engine.host.plugins[f"docs_{hook}"]
    assert info.errors == [] and info.hooks == [hook]
    if hook == "register_samplers":
        assert "euler_midpoint_docs" in engine.registry.samplers
    if hook == "register_types":
        assert engine.registry.compatible("IMAGE", "HDR_IMAGE")
