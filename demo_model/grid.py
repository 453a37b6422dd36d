"""Draws the README pictures with the demo model through the real workflow: a prompt → image grid
and the default workflow's own picture.

    python -m demo_model.grid --out docs/demo_grid.png --picture docs/demo_txt2img.png
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

PROMPTS = [
    "a red circle on a blue background",
    "a yellow star on a black background",
    "a white square on a purple background",
    "a green triangle on a yellow background",
    "a blue star on a orange background",
    "a orange circle on a green background",
    "a black triangle on a white background",
    "a purple square on a red background",
]
CELL, SCALE, LABEL = 64, 2, 28


def draw_grid(workflow: Path, out: Path, seed: int = 1, columns: int = 4) -> Path:
    from latentgraph import Settings
    from latentgraph.engine import Engine

    base = json.loads(workflow.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine.create(Settings.from_env(tmp, environ={}), entry_points=False)
        images = []
        for prompt in PROMPTS:
            wf = json.loads(json.dumps(base))
            wf["6"]["inputs"]["text"] = prompt
            wf["3"]["inputs"]["seed"] = seed
            result = engine.run(wf)
            item = result.outputs["9"]["images"][0]
            images.append(Image.open(engine.settings.output_dir / item["filename"]).convert("RGB"))
    size = CELL * SCALE
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * size, rows * (size + LABEL)), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    for i, (prompt, image) in enumerate(zip(PROMPTS, images)):
        x, y = (i % columns) * size, (i // columns) * (size + LABEL)
        sheet.paste(image.resize((size, size), Image.Resampling.NEAREST), (x, y))
        words = prompt.removeprefix("a ").split(" on a ")
        draw.text((x + 4, y + size + 2), words[0], fill=(0, 0, 0))
        draw.text((x + 4, y + size + 14), "on " + words[1], fill=(80, 80, 80))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def draw_default(workflow: Path, out: Path, scale: int = 4) -> Path:
    """What ``latentgraph run workflow`` makes as it is, enlarged ``scale``× (nearest neighbour)."""
    from latentgraph import Settings
    from latentgraph.engine import Engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine.create(Settings.from_env(tmp, environ={}), entry_points=False)
        result = engine.run(json.loads(workflow.read_text()))
        item = result.outputs["9"]["images"][0]
        image = Image.open(engine.settings.output_dir / item["filename"]).convert("RGB")
    out.parent.mkdir(parents=True, exist_ok=True)
    image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST).save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflow", default="workflows/txt2img.json")
    parser.add_argument("--out", default="docs/demo_grid.png")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--picture", help="also save the default workflow's picture here")
    args = parser.parse_args(argv)
    if args.picture:
        print(draw_default(Path(args.workflow), Path(args.picture)))
    print(draw_grid(Path(args.workflow), Path(args.out), args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
