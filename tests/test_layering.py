"""Layering, checked from the source: data flows core → nodes/plugins → server, never back.

Every import statement counts, function-level ones too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import latentgraph
import latentgraph.nodes
import latentgraph.plugins
import latentgraph.server

CORE = Path(latentgraph.__file__).parent
#: The one allowed edge: ``latentgraph serve`` assembles the server (the CLI is the composition
#: root; no other core module may know the server exists).
CORE_MAY_IMPORT = {"serve_cli.py": ("latentgraph.server",)}
#: The demo model's training, data and read-back: tools in the checkout, not the runtime package.
DEV_ONLY = ("demo_model",)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_scan_sees_function_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from latentgraph import nodes\n    import latentgraph.server.app\n")
    names = [name for _, name in imported_modules(sample)]
    assert "latentgraph.nodes" in names and "latentgraph.server.app" in names


def test_core_imports_neither_nodes_nor_server():
    bad = []
    for path in sorted(CORE.rglob("*.py")):
        allowed = CORE_MAY_IMPORT.get(path.name, ())
        for line, name in imported_modules(path):
            for package in ("latentgraph.nodes", "latentgraph.server"):
                if _under(name, package) and package not in allowed:
                    bad.append(f"{path.relative_to(CORE)}:{line} imports {name}")
    assert not bad, "core must not depend on the nodes or the server:\n" + "\n".join(bad)


def test_runtime_package_has_no_training_or_test_only_code():
    roots = [Path(p) for pkg in (latentgraph, latentgraph.nodes, latentgraph.plugins, latentgraph.server) for p in pkg.__path__]
    bad = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "tests" in path.relative_to(root).parts:  # a plugin package's own tests
                continue
            stem = path.stem
            if stem.startswith(("demo_train", "demo_reading", "demo_data", "train_")):
                bad.append(f"{path} is training or read-back code")
            for line, name in imported_modules(path):
                if any(_under(name, dev) for dev in DEV_ONLY):
                    bad.append(f"{path}:{line} imports the dev-only {name}")
    assert not bad, "\n".join(bad)


def test_the_demo_model_still_ships():
    """What the example workflows run on is package data, not something the tools must build."""
    from latentgraph.nodes.builtin import DATA_DIR

    shipped = DATA_DIR / "models" / "checkpoints" / "latentgraph-demo-shapes.safetensors"
    assert shipped.is_file() and shipped.stat().st_size > 1_000_000
