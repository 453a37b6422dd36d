"""What the README shows runs as written and does what its text says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def library_snippet() -> str:
    section = README.split("### As a library", 1)[1].split("\n### ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_library_snippet_runs_as_written(tmp_path):
    """Run from a folder laid out like the checkout (workflows/txt2img.json beside it), in a
    fresh interpreter: no name the snippet forgot to import, and the picture it promises."""
    (tmp_path / "workflows").mkdir()
    shutil.copy(ROOT / "workflows" / "txt2img.json", tmp_path / "workflows" / "txt2img.json")
    # The README's next sentence, checked by the same run: an identical re-run executes nothing.
    code = library_snippet() + (
        "\nagain = engine.run(workflow)\n"
        "print('RERUN', json.dumps({'executed': again.executed, 'cached': sorted(again.cached)}))\n"
        "print('FIRST', json.dumps({'status': result.status, 'executed': sorted(result.executed), 'outputs': result.outputs}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTGRAPH_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("RERUN ", "FIRST ")))
    first, rerun = json.loads(lines["FIRST"]), json.loads(lines["RERUN"])
    assert first["status"] == "success"
    assert set(first["executed"]) == {nid for nid in json.loads((ROOT / "workflows" / "txt2img.json").read_text())}
    (image,) = first["outputs"]["9"]["images"]
    saved = tmp_path / "my-data" / "output" / image["subfolder"] / image["filename"]
    assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and saved.stat().st_size > 1000
    assert rerun["executed"] == [] and rerun["cached"] == sorted(first["executed"])


def test_hypothesis_database_is_outside_the_checkout():
    """tests/conftest.py moves Hypothesis's example database out of the checkout."""
    from hypothesis import settings

    path = Path(settings.default.database.path).resolve()
    assert ROOT.resolve() not in path.parents, path
