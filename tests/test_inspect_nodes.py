"""Issue 19, seeing diffusion: the numbers behind each inspection picture.

Schedule plot: the plotted ᾱ/β/σ are the schedule's, the dots are the sampler's σ. Forward strip:
its frames are the closed form for the seed (and the naive loop is the step-by-step recursion).
Trace: its last frame is KSampler's output. Latent statistics: per-channel mean/std. XY grid: cell
placement and labels, and on lists the shared upstream nodes run once (cache statistics).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 - fixture

from latentgraph import Settings
from latentgraph.engine import Engine
from latentgraph.errors import NodeInputError
from latentgraph.nodes.inspect import NODES
from latentgraph.nodes.inspect.drawing import PAD, grid_layout, to_array
from latentgraph.nodes.inspect.forward_strip import (
    ForwardProcessStrip, closed_form, even_timesteps, loop_frames, parse_timesteps,
)
from latentgraph.nodes.inspect.latent_view import LatentChannels, LatentStats, channel_stats
from latentgraph.nodes.inspect.schedule_plot import SchedulePlot, named_model_sampling, schedule_curves
from latentgraph.nodes.inspect.trace import KSamplerTrace, SamplerCustomAdvancedTrace, Trace
from latentgraph.nodes.inspect.xy_grid import LISTS, XYAxisFloat, XYAxisInt, XYAxisSampler, XYGrid, cross
from latentgraph.nodes.latents import decode_latents
from latentgraph.nodes.sampling.ksampler_nodes import KSampler, lookup_sampler
from latentgraph.nodes.sampling.model_sampling import make_betas
from latentgraph.nodes.sampling.run import prepare_noise, process_latent_in, process_latent_out
from latentgraph.nodes.sampling.schedules import schedule_sigmas

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


@pytest.fixture(scope="module")
def sd():
    return tiny_sd()


@pytest.fixture(scope="module")
def ctx():
    return make_ctx()[0]


# -- schedule plot ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, betas", [
    ("scaled_linear", make_betas("scaled_linear", 1000, 0.00085, 0.012)),
    ("linear", make_betas("linear", 1000, 0.0001, 0.02)),
    ("cosine", make_betas("squaredcos_cap_v2", 1000, 0.0001, 0.02)),
])
def test_plotted_curves_are_the_schedules(name, betas):
    curves = schedule_curves(named_model_sampling(name))
    alpha_bar = torch.cumprod(1.0 - betas, 0).numpy()
    np.testing.assert_allclose(curves.alpha_bar, alpha_bar, rtol=2e-6, atol=1e-12)
    np.testing.assert_allclose(curves.sqrt_alpha_bar, np.sqrt(alpha_bar), rtol=2e-6)
    np.testing.assert_allclose(curves.sqrt_one_minus_alpha_bar, np.sqrt(1 - alpha_bar), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(curves.sigma, np.sqrt((1 - alpha_bar) / alpha_bar), rtol=1e-6)
    np.testing.assert_allclose(curves.beta[:-1], betas.numpy()[:-1], rtol=2e-3)  # β from a ratio of float32 σ


def test_plot_dots_are_the_sigmas_the_sampler_visits(sd, ctx):
    ms = sd.model.model_sampling
    sigmas = schedule_sigmas(ctx.registry.schedulers["karras"], ms, 10)
    curves = schedule_curves(ms, sigmas)
    np.testing.assert_array_equal(curves.visited_sigma, sigmas.double().numpy())
    assert curves.visited_t.shape == (10,)  # σ = 0 has no timestep
    np.testing.assert_allclose(curves.visited_alpha_bar, 1 / (1 + sigmas[:-1].double().numpy() ** 2))
    # each dot sits on the σ curve: log σ interpolated at its fractional timestep gives it back
    back = np.exp(np.interp(curves.visited_t, curves.t, np.log(curves.sigma)))
    np.testing.assert_allclose(back, sigmas[:-1].double().numpy(), rtol=1e-6)
    assert curves.visited_t[0] == pytest.approx(999) and np.all(np.diff(curves.visited_t) < 0)


def test_schedule_plot_node_draws_and_names_missing_model(sd, ctx):
    (image,) = SchedulePlot().execute(ctx, "model", "euler", "normal", 20, 1.0, 900, 300, model=sd.model)
    assert image.shape == (1, 300, 900, 3) and 0 <= float(image.min()) and float(image.max()) <= 1
    assert image.std() > 0.05  # something is drawn
    with pytest.raises(NodeInputError) as err:
        SchedulePlot().execute(ctx, "model", "euler", "normal", 20, 1.0, 900, 300)
    assert err.value.input_name == "model"


# -- forward strip -------------------------------------------------------------------------------------------
def test_even_and_chosen_timesteps():
    assert even_timesteps(4, 1000) == [249, 499, 749, 999]
    assert parse_timesteps(" 0, 250 ,999", 1000, 8) == [0, 250, 999]
    with pytest.raises(NodeInputError) as err:
        parse_timesteps("0, 1000", 1000, 8)
    assert err.value.input_name == "timesteps"


def test_strip_frames_are_the_closed_form_for_the_seed(sd, ctx):
    torch.manual_seed(3)
    image = torch.rand(1, 32, 32, 3)
    strip, noisy = ForwardProcessStrip().execute(ctx, sd.model, sd.vae, 7, 4, "0, 500, 999", False, image=image)
    from latentgraph.nodes.latents import encode_images

    z = encode_images(sd.vae, image)
    x0 = process_latent_in(sd.model, z)
    eps = prepare_noise(z, 7)  # KSampler's noise for seed 7
    ms = sd.model.model_sampling
    abar = torch.cumprod(1 - make_betas("scaled_linear", 1000, 0.00085, 0.012), 0)
    for k, t in enumerate((0, 500, 999)):
        vp = (abar[t].sqrt() * x0.double() + (1 - abar[t]).sqrt() * eps.double()).float()
        sigma_form = process_latent_out(sd.model, vp * torch.sqrt(1 + ms.sigmas[t] ** 2))
        torch.testing.assert_close(noisy["samples"][k : k + 1], sigma_form, rtol=1e-4, atol=1e-4)
    # The pictures are those latents decoded (variance-preserving form), laid out after x0.
    frames = closed_form(ms, x0, eps, (0, 500, 999))
    decoded = decode_latents(sd.vae, torch.cat([z] + [process_latent_out(sd.model, f.vp) for f in frames]))
    got = (strip[0].numpy() * 255).round().astype(np.uint8)
    for c, d in enumerate(decoded):  # one row, no labels: cells from the left edge, PAD apart
        x, y = PAD + c * (32 + PAD), PAD
        np.testing.assert_array_equal(got[y : y + 32, x : x + 32], to_array(d))
    assert [round(f.alpha_bar, 6) for f in frames] == [round(float(abar[t]), 6) for t in (0, 500, 999)]


def test_naive_loop_is_the_step_by_step_recursion_and_matches_in_distribution(sd):
    ms = sd.model.model_sampling
    x0 = torch.full((1, 4, 64, 64), 0.8)
    looped = loop_frames(ms, x0, 5, (0, 1, 499))
    betas = make_betas("scaled_linear", 1000, 0.00085, 0.012)
    g = torch.Generator().manual_seed(5)
    x = x0.double()
    for t in range(2):
        x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x0.shape, generator=g).double()
    torch.testing.assert_close(looped[1], x.float(), rtol=1e-5, atol=1e-5)
    abar = float(torch.cumprod(1 - betas, 0)[499])
    assert float(looped[499].mean()) == pytest.approx(abar**0.5 * 0.8, abs=0.02)
    assert float(looped[499].std()) == pytest.approx((1 - abar) ** 0.5, rel=0.03)


def test_strip_wants_a_picture(sd, ctx):
    with pytest.raises(NodeInputError) as err:
        ForwardProcessStrip().execute(ctx, sd.model, sd.vae, 0, 4, "", True)
    assert err.value.input_name == "image"


# -- sampling trace --------------------------------------------------------------------------------------------
def test_trace_last_frame_is_the_ksamplers_output(sd, ctx):
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    latent = {"samples": torch.zeros(1, 4, 16, 16)}
    args = (sd.model, 11, 6, 5.0, "euler_ancestral", "karras", pos, neg, latent)
    (plain,) = KSampler().execute(ctx, *args, denoise=1.0)
    out, picture = KSamplerTrace().execute(ctx, *args, denoise=1.0, every=2, decode="vae", zoom=1, vae=sd.vae)
    torch.testing.assert_close(out["samples"], plain["samples"], rtol=0, atol=0)
    # Last column of the x_t row = the decoded output, as VAEDecode gives it.
    decoded = to_array(decode_latents(sd.vae, plain["samples"])[0])
    h, w = decoded.shape[:2]
    got = (picture[0].numpy() * 255).round().astype(np.uint8)
    x, y = got.shape[1] - PAD - w, PAD  # the top row's last cell (frames: steps 1, 3, 5, output)
    np.testing.assert_array_equal(got[y : y + h, x : x + w], decoded)
    assert not np.array_equal(got[y : y + h, x - PAD - w : x - PAD], decoded)  # step 5 is not the output yet


def test_trace_records_every_kth_step(sd, ctx):
    steps = []
    trace = Trace(every=3)
    ms = sd.model.model_sampling
    sigmas = schedule_sigmas(ctx.registry.schedulers["normal"], ms, 7)

    def model(x, sigma):
        return x * 0.5

    def both(step):
        trace.record(step)
        steps.append(step.i)

    model.model_sampling = ms
    lookup_sampler(ctx, "euler").sample(model, torch.randn(1, 4, 8, 8), sigmas, seed=0, callback=both)
    assert steps == list(range(7))
    assert [f.i for f in trace.frames] == [0, 3, 6]
    assert [f.sigma for f in trace.frames] == pytest.approx([float(sigmas[i]) for i in (0, 3, 6)])


def test_trace_preview_needs_no_vae_and_vae_mode_names_it(sd, ctx):
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    args = (sd.model, 1, 2, 1.0, "euler", "normal", pos, neg, latent)
    _, picture = KSamplerTrace().execute(ctx, *args, denoise=1.0, every=1, decode="preview")
    assert picture.ndim == 4 and picture.shape[-1] == 3
    with pytest.raises(NodeInputError) as err:
        KSamplerTrace().execute(ctx, *args, denoise=1.0, every=1, decode="vae")
    assert err.value.input_name == "vae"


def test_custom_trace_matches_the_plain_custom_sampler(sd, ctx):
    from latentgraph.nodes.sampling.guidance import CFG, Guider
    from latentgraph.nodes.sampling.ksampler_nodes import run_guided
    from latentgraph.nodes.sampling.run import RandomNoise

    guider = Guider(sd.model, {"positive": random_conditioning(seed=1), "negative": random_conditioning(seed=2)}, CFG(4.0))
    sigmas = schedule_sigmas(ctx.registry.schedulers["karras"], sd.model.model_sampling, 4)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    sampler = lookup_sampler(ctx, "dpmpp_2m")
    plain, _ = run_guided(ctx, guider, sampler, sigmas, RandomNoise(3), latent)
    out, _, _ = SamplerCustomAdvancedTrace().execute(ctx, RandomNoise(3), guider, sampler, sigmas, latent, every=1,
                                                     decode="vae", zoom=1, vae=sd.vae)
    torch.testing.assert_close(out["samples"], plain["samples"], rtol=0, atol=0)


# -- latent inspection ------------------------------------------------------------------------------------------
def test_latent_statistics_per_channel(sd, ctx):
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(2, 4, 8, 8, generator=g) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1) + torch.tensor(
        [0.0, 1.0, -1.0, 2.0]).view(1, 4, 1, 1)
    stats = channel_stats(samples)
    for c in range(4):
        assert stats[c].mean == pytest.approx(float(samples[:, c].double().mean()))
        assert stats[c].std == pytest.approx(float(samples[:, c].double().std()))
    result = LatentStats().execute(ctx, {"samples": samples}, model=sd.model)
    (text,) = result.outputs
    assert result.ui == {"text": [text]}
    assert f"{stats[3].std:.4f}" in text and "model's space" in text
    scaled = channel_stats(samples * 0.18215)
    assert f"{scaled[3].std:.4f}" in text
    channels = LatentChannels().execute(ctx, {"samples": samples}, tile_size=32)
    image, text2 = channels.outputs
    assert channels.ui == {"text": [text2]} and image.shape[0] == 1 and image.shape[2] >= 4 * 32


# -- XY grid ---------------------------------------------------------------------------------------------------
def test_axis_values_span_the_cross_product(ctx):
    xs, x_labels = XYAxisFloat().execute(ctx, "1, 3, 6", "x", 2, "cfg")
    ys, y_labels = XYAxisInt().execute(ctx, "4\n12", "y", 3, "steps")
    assert xs == [1.0, 3.0, 6.0, 1.0, 3.0, 6.0] and ys == [4, 4, 4, 12, 12, 12]
    assert x_labels == "cfg=1\ncfg=3\ncfg=6" and y_labels == "steps=4\nsteps=12"
    assert cross(["a", "b"], "y", 2) == ["a", "a", "b", "b"]
    with pytest.raises(NodeInputError) as err:
        XYAxisSampler().execute(ctx, "euler, nope", "x", 1, "")
    assert err.value.input_name == "values"


def test_grid_places_cells_row_major_under_their_labels(ctx):
    colours = [torch.full((1, 16, 20, 3), k / 6) for k in range(6)]
    (grid,) = XYGrid().execute(ctx, colours, ["a\nb\nc"], ["r1\nr2"], ["title"], [1])
    layout = grid_layout(2, 3, (20, 16), col_labels=["a", "b", "c"], row_labels=["r1", "r2"], title="title")
    got = (grid[0].numpy() * 255).round().astype(np.uint8)
    assert got.shape[:2] == (layout.height, layout.width)
    for k in range(6):
        r, c = divmod(k, 3)
        x, y = layout.cells[r][c]
        assert (got[y : y + 16, x : x + 20] == round(k / 6 * 255)).all()
    # labels sit above each column and left of each row: ink there, not elsewhere
    x, y = layout.cells[0][1]
    assert (got[y - layout.header : y, x : x + 20] < 128).any()
    x, y = layout.cells[1][0]
    assert (got[y : y + 16, : x - 4] < 128).any()
    with pytest.raises(NodeInputError) as err:
        XYGrid().execute(ctx, colours[:5], ["a\nb\nc"], ["r1\nr2"], [""], [1])
    assert err.value.input_name == "images"


def test_grid_of_pictures_connected_one_by_one(ctx):
    """Without list outputs: image, image_2, … (and batches) fill the grid in order."""
    a, b = torch.zeros(1, 8, 8, 3), torch.ones(2, 8, 8, 3)
    (grid,) = XYGrid().execute(ctx, a, "x1\nx2\nx3", "", "", 1, image_2=b)
    got = grid[0].numpy()
    layout = grid_layout(1, 3, (8, 8), col_labels=["x1", "x2", "x3"])
    assert got.shape[:2] == (layout.height, layout.width)
    values = [float(got[y : y + 8, x : x + 8].mean()) for x, y in layout.cells[0]]
    assert values == [0.0, 1.0, 1.0]


def _engine(tmp_path) -> Engine:
    engine = Engine.create(Settings.from_env(tmp_path, environ={}, device="cpu"), entry_points=False)
    if "XYGrid" not in engine.registry:  # until nodes/builtin.py registers the inspect nodes
        engine.registry.register_all(NODES)
    return engine


@pytest.mark.skipif(not LISTS, reason="the engine has no list outputs yet (Out(..., is_list=True))")
def test_xy_grid_on_lists_runs_shared_nodes_once_and_reuses_cells(tmp_path):
    wf = json.loads((WORKFLOWS / "xy_grid.json").read_text())
    wf["20"]["inputs"].update(values="1.0, 4.0", other_count=2)
    wf["21"]["inputs"].update(values="2, 3", other_count=2)
    engine = _engine(tmp_path)
    result = engine.run(wf)
    assert result.ok, result.failure
    assert sorted(result.executed) == sorted(wf)  # each node once: the 4 cells are one node run 4 times
    first = engine.cache.stats()
    # One more cfg value: only its column's two cells sample; loader, prompts and latent are cached.
    wf["20"]["inputs"].update(values="1.0, 4.0, 8.0")
    wf["21"]["inputs"].update(other_count=3)
    again = engine.run(wf)
    assert again.ok, again.failure
    assert {"4", "5", "6", "7"} <= set(again.cached)
    stats = engine.cache.stats()
    sampled = stats.misses - first.misses
    # new misses: 2 axes, 2 new KSampler cells + 2 decodes (items) and the mapped nodes' wholes, grid, save
    assert sampled <= 2 + 2 * 3 + 2
    assert stats.hits - first.hits >= 4 + 4  # the shared nodes and the four old cells' items
