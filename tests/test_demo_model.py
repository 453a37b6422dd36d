"""The embedded demo model draws what the prompt asks for (checked by pixel statistics)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo_model.reading import matches, read_picture
from latentgraph import Settings
from latentgraph.engine import Engine
from demo_model import data as demo_data
from latentgraph.nodes.builtin import DATA_DIR
from demo_model.train import SHIPPED_NAME

ROOT = Path(__file__).parent.parent
CHECKPOINT = DATA_DIR / "models" / "checkpoints" / SHIPPED_NAME
WORKFLOW = json.loads((ROOT / "workflows" / "txt2img.json").read_text())



def test_classifier_reads_the_dataset_itself():
    """The test's eyes are right on ground truth, so its verdicts on the model mean something."""
    for i in range(200):
        spec = demo_data.random_spec(random.Random(f"check:{i}"))
        r = read_picture(np.asarray(demo_data.render(spec)))
        assert (r.background, r.colour, r.shape) == (spec.background, spec.colour, spec.shape)


def test_dataset_is_deterministic_and_captioned_exactly():
    a, cap_a = demo_data.sample(5, 17)
    b, cap_b = demo_data.sample(5, 17)
    assert np.array_equal(a, b) and cap_a == cap_b
    assert cap_a.startswith("a ") and cap_a.endswith(" background")
    assert not np.array_equal(a, demo_data.sample(6, 17)[0])


def test_the_default_workflow_uses_the_demo_model():
    assert CHECKPOINT.is_file()
    assert CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    default = json.loads((ROOT / "workflows" / "txt2img.json").read_text())
    assert default["4"]["inputs"]["ckpt_name"] == SHIPPED_NAME


@pytest.fixture(scope="module")
def draw(tmp_path_factory):
    engine = Engine.create(Settings.from_env(tmp_path_factory.mktemp("demo"), environ={}, device="cpu"), entry_points=False)

    def run(prompt: str, seed: int, *, negative: str = "", cfg: float | None = None) -> np.ndarray:
        wf = json.loads(json.dumps(WORKFLOW))
        wf["6"]["inputs"]["text"] = prompt
        wf["7"]["inputs"]["text"] = negative
        wf["3"]["inputs"]["seed"] = seed
        if cfg is not None:
            wf["3"]["inputs"]["cfg"] = cfg
        result = engine.run(wf)
        assert result.ok, result.failure and result.failure.message
        image = result.outputs["9"]["images"][0]
        return np.asarray(Image.open(engine.settings.output_dir / image["subfolder"] / image["filename"]).convert("RGB"))

    return run


def cases(n: int = 48) -> list[tuple[str, str, str, int]]:
    rng = random.Random(2026)
    combos = demo_data.all_prompts()
    return [(*rng.choice(combos), rng.randrange(10**6)) for _ in range(n)]


#: Floors of the read-back (fixed before the reader changed, not moved after: see docs/models.md,
#: "Reading the pictures back"). The README quotes them and the figure this test prints.
COLOUR_FLOOR, SHAPE_FLOOR = 43, 36  # of 48: 90 % and 75 %


def test_draws_the_colours_and_shapes_asked_for(draw):
    colours = shapes = 0
    misses = []
    for colour, shape, background, seed in cases():
        r = read_picture(draw(demo_data.caption(colour, shape, background), seed))
        colour_ok, shape_ok = matches(r, colour, shape, background)
        colours += colour_ok
        shapes += shape_ok
        if not (colour_ok and shape_ok):
            misses.append(f"{colour} {shape} on {background} (seed {seed}) → {r}")
    n = len(cases())
    print(f"both colours right {colours}/{n}, shape right {shapes}/{n} (floors {COLOUR_FLOOR}, {SHAPE_FLOOR})")
    assert colours >= COLOUR_FLOOR, "\n".join(misses)
    assert shapes >= SHAPE_FLOOR, "\n".join(misses)


def test_cfg_changes_the_picture(draw):
    """cfg 1 follows the prompt alone; cfg 7 pushes away from the empty prompt: a visible change
    (mean absolute pixel change over 2 levels of 255, not just a different file)."""
    prompt = "a green circle on a white background"
    a, b = draw(prompt, 3, cfg=1.0), draw(prompt, 3, cfg=7.0)
    assert np.abs(a.astype(float) - b.astype(float)).mean() > 2.0
    assert read_picture(b).background == "white"


SWAP = ("a yellow square on a black background", "a blue square on a white background")


def test_draws_the_exact_colours_of_the_swap_prompts_without_a_negative(draw):
    """Without a negative prompt the model draws these two prompts' exact colours."""
    for seed in (11, 12, 13):
        first, second = read_picture(draw(SWAP[0], seed)), read_picture(draw(SWAP[1], seed))
        assert (first.colour, first.background) == ("yellow", "black"), (seed, first)
        assert (second.colour, second.background) == ("blue", "white"), (seed, second)


def test_swapping_positive_and_negative_changes_the_colour(draw):
    """The picture follows the positive prompt and moves away from the negative one.

    With a negative, hues are pushed away from the negative's colour: yellow against a blue
    negative may come out orange or red, blue against a yellow one purple — so this check only
    asks for a warm versus a cool shape (docs/models.md says so); the exact colours are checked
    without a negative above.
    """
    a, b = SWAP
    for seed in (11, 12, 13):
        first = read_picture(draw(a, seed, negative=b))
        swapped = read_picture(draw(b, seed, negative=a))
        assert first.background == "black" and swapped.background == "white"
        assert first.colour in ("yellow", "orange", "red") and swapped.colour in ("blue", "purple")


@pytest.mark.xfail(strict=True, reason="measured: seed 11, yellow square with the blue prompt as negative is "
                   "closer (RMS 212.4) to the blue prompt's picture than without the negative (216.8)")
def test_a_negative_moves_the_picture_away_from_what_it_draws(draw):
    """The direction of change, as fixed before the first run: with the negative, the picture is
    further (RMS over pixels) from what the negative prompt draws alone than without it. It does
    not hold (the reason above); the bar is kept, not moved — see docs/models.md."""
    a, b = SWAP
    for seed in (11, 12, 13):
        for positive, negative in ((a, b), (b, a)):
            other = draw(negative, seed).astype(float)
            plain = np.sqrt(((draw(positive, seed).astype(float) - other) ** 2).mean())
            pushed = np.sqrt(((draw(positive, seed, negative=negative).astype(float) - other) ** 2).mean())
            assert pushed > plain, (seed, positive, negative, plain, pushed)


def test_the_default_workflow_draws_its_caption(draw):
    """The README's default picture is what its caption says, read by the same reader."""
    r = read_picture(draw(WORKFLOW["6"]["inputs"]["text"], WORKFLOW["3"]["inputs"]["seed"]))
    assert (r.colour, r.shape, r.background) == ("red", "circle", "blue"), r


def test_cli_draws_a_yellow_star_on_black(tmp_path):
    env = {**os.environ, "LATENTGRAPH_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "latentgraph.cli", "run", str(ROOT / "workflows" / "txt2img.json"),
         "--set", "prompt.text=a yellow star on a black background", "--json", "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (path,) = json.loads(out.stdout)["files"]
    r = read_picture(np.asarray(Image.open(path).convert("RGB")))
    assert (r.colour, r.background) == ("yellow", "black")
