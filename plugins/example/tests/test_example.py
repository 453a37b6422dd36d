"""The example plugin's own tests, written with latentgraph's pytest fixtures (no conftest needed).

Run with ``pytest plugins/example/tests`` once the plugin and latentgraph are installed.
"""

import numpy as np
import pytest
import torch

import latentgraph_example.plugin as example_plugin
from latentgraph import In, Node, NodeSpec, Out, hookimpl
from latentgraph.errors import NodeInputError
from latentgraph.object_info import object_info
from latentgraph.testing import WorkflowBuilder, assert_failed, assert_invalid, assert_success, output_images, txt2img
from latentgraph_example.nodes import BlendImages, BlendLatents, InvertImage

PLUGIN = ("example", example_plugin)


@pytest.fixture
def engine(lg_engine):
    return lg_engine(PLUGIN)


def pixel(image, x=0, y=0):
    return tuple(int(v) for v in np.asarray(image.convert("RGB"))[y, x])


def test_plugin_registers_its_nodes_sampler_and_schedule(engine):
    info = engine.host.plugins["example"]
    assert info.errors == []
    assert info.nodes == ["InvertImage", "BlendImages", "BlendLatents"]
    ksampler = object_info(engine.registry, engine.settings)["KSampler"]["input"]["required"]
    assert "euler_midpoint" in ksampler["sampler_name"][0]
    assert "linspace" in ksampler["scheduler"][0]


def test_invert_a_loaded_image(engine, lg_input_image, lg_settings):
    name = lg_input_image("red.png", size=(8, 4), color=(255, 0, 0))
    wf = WorkflowBuilder()
    image = wf.add("LoadImage", image=name)
    wf.add("SaveImage", images=wf.add("InvertImage", image=image[0])[0], filename_prefix="inv")
    [out] = output_images(assert_success(engine.run(wf.to_api())), lg_settings)
    assert out.size == (8, 4) and pixel(out) == (0, 255, 255)


def test_invert_keeps_alpha():
    rgba = torch.tensor([0.2, 0.4, 1.0, 0.5]).expand(1, 2, 2, 4)
    (out,) = InvertImage().execute(None, image=rgba)
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.8, 0.6, 0.0, 0.5]))


@pytest.mark.parametrize(
    ("mode", "factor", "expected"),
    [
        ("normal", 1.0, (0, 0, 255)),
        ("normal", 0.5, (102, 64, 191)),  # halfway between (204, 128, 127) and (0, 0, 255)
        ("multiply", 1.0, (0, 0, 127)),
        ("screen", 1.0, (204, 128, 255)),
        ("screen", 0.0, (204, 128, 127)),
    ],
)
def test_blend_modes(engine, lg_input_image, lg_settings, mode, factor, expected):
    a = lg_input_image("a.png", size=(4, 4), color=(204, 128, 127))
    b = lg_input_image("b.png", size=(4, 4), color=(0, 0, 255))
    wf = WorkflowBuilder()
    blend = wf.add("BlendImages", image1=wf.add("LoadImage", image=a)[0], image2=wf.add("LoadImage", image=b)[0],
                   blend_factor=factor, blend_mode=mode)
    wf.add("SaveImage", images=blend[0], filename_prefix="blend")
    [out] = output_images(assert_success(engine.run(wf.to_api())), lg_settings)
    assert all(abs(got - want) <= 1 for got, want in zip(pixel(out), expected)), pixel(out)


def test_blend_resizes_image2_and_refuses_unknown_mode(engine):
    big = torch.zeros(2, 8, 6, 3)
    small = torch.ones(1, 2, 3, 3)
    (out,) = BlendImages().execute(None, image1=big, image2=small, blend_factor=1.0, blend_mode="screen")
    assert out.shape == (2, 8, 6, 3) and torch.allclose(out, torch.ones_like(out))
    wf = WorkflowBuilder()
    grey = wf.add("LoadImage", image="missing.png")
    blend = wf.add("BlendImages", image1=grey[0], image2=grey[0], blend_factor=0.5, blend_mode="overlay")
    wf.add("PreviewImage", images=blend[0])
    assert_invalid(engine, wf, node_id=blend.id, error_type="value_not_in_list", match="overlay")


def test_blend_latents_mixes_and_names_a_mismatched_input():
    a = {"samples": torch.zeros(1, 4, 8, 8), "downscale": 8}
    b = {"samples": torch.ones(1, 4, 4, 4)}
    (out,) = BlendLatents().execute(None, samples1=a, samples2=b, blend_factor=0.25)
    assert out["samples"].shape == (1, 4, 8, 8) and out["downscale"] == 8
    assert torch.allclose(out["samples"], torch.full((1, 4, 8, 8), 0.25))
    with pytest.raises(NodeInputError, match="input 'samples2'.*16 channels"):
        BlendLatents().execute(None, samples1=a, samples2={"samples": torch.ones(1, 16, 8, 8)}, blend_factor=0.5)


def test_txt2img_with_the_plugins_sampler_schedule_and_latent_blend(engine, tiny_checkpoint, lg_settings):
    wf = txt2img(tiny_checkpoint.name, seed=1, steps=3, sampler_name="euler_midpoint", scheduler="linspace")
    sampler = wf.node("sampler")
    other = wf.add("KSampler", **{**wf.nodes[sampler.id]["inputs"], "seed": 2})
    mixed = wf.add("BlendLatents", samples1=sampler[0], samples2=other[0], blend_factor=0.5)
    wf.set("decode", samples=mixed[0])
    result = assert_success(engine.run(wf.to_api()))
    assert {"5", "8", "9"} <= set(result.executed)
    [image] = output_images(result, lg_settings)
    assert image.size == (64, 64)
    # the same graph again is served from the cache entirely
    assert engine.run(wf.to_api()).executed == []
    # an unknown sampler is refused before anything runs
    wf.set(sampler, sampler_name="no_such_sampler")
    assert_invalid(engine, wf, node_id=sampler.id, error_type="value_not_in_list")


class GaussianData:
    """The exact denoiser for Gaussian data (mean m, std s): D(x, σ) = m + s²/(s²+σ²)·(x − m).

    Its probability-flow ODE has the closed form x(σ) = m + (x₀ − m)·sqrt(s² + σ²)/sqrt(s² + σ₀²),
    so a sampler's error is measurable without a model.
    """

    def __init__(self, mean=0.3, std=0.5):
        self.mean, self.std = mean, std

    def __call__(self, x, sigma):
        s2 = self.std**2
        return self.mean + s2 / (s2 + sigma[0] ** 2) * (x - self.mean)

    def exact(self, x, sigma_from, sigma_to):
        s2 = self.std**2
        return self.mean + (x - self.mean) * ((s2 + sigma_to**2) / (s2 + sigma_from**2)) ** 0.5


def test_midpoint_sampler_is_second_order(engine):
    """Halving the steps cuts the midpoint sampler's error ~4x (Euler's ~2x), and it beats Euler."""
    from latentgraph.nodes.sampling.schedules import exponential_sigmas

    data = GaussianData()
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * 14.6

    def error(name, steps):
        sigmas = exponential_sigmas(steps + 1, 0.1, 14.6)[:-1]  # log σ evenly spaced, stopping at σ = 0.1
        out = engine.registry.samplers[name].sample(data, x, sigmas)
        return (out - data.exact(x, sigmas[0], sigmas[-1])).abs().max().item()

    midpoint = error("euler_midpoint", 8), error("euler_midpoint", 16)
    euler = error("euler", 8), error("euler", 16)
    assert midpoint[1] < euler[1] / 5
    assert midpoint[0] / midpoint[1] > 3.5 and euler[0] / euler[1] < 2.5


def test_linspace_schedule_uses_trained_noise_levels(engine):
    from latentgraph.nodes.sampling.model_sampling import ModelSampling

    ms = ModelSampling.from_config({})
    sigmas = engine.registry.schedulers["linspace"].sigmas(ms, 4)
    assert sigmas.shape == (5,) and sigmas[-1] == 0 and torch.all(sigmas[:-1] > sigmas[1:])
    assert torch.allclose(sigmas[:-1], ms.sigmas[[999, 666, 333, 0]])


class GreyBatch(Node):
    """A helper node from a second, test-only plugin: ``n`` grey 4×4 images."""

    spec = NodeSpec(name="GreyBatch", inputs=(In("n", "INT", default=1, min=1, max=8),), outputs=(Out("IMAGE"),))

    def execute(self, ctx, n):
        return (torch.full((n, 4, 4, 3), 0.5),)


class HelperPlugin:
    @hookimpl
    def register_nodes(self):
        return [GreyBatch]


def test_failure_of_a_plugin_node_fails_only_its_prompt(lg_engine):
    engine = lg_engine(PLUGIN, ("helpers", HelperPlugin()))
    wf = WorkflowBuilder()
    two, three = wf.add("GreyBatch", n=2), wf.add("GreyBatch", n=3)
    blend = wf.add("BlendImages", image1=two[0], image2=three[0], blend_factor=0.5, blend_mode="normal")
    wf.add("PreviewImage", images=blend[0])
    failure = assert_failed(engine.run(wf.to_api()), node_id=blend.id, plugin="example", input_name="image2")
    assert "batch of 3 cannot be paired with a batch of 2" in failure.message
    wf.set(three, n=1)  # the engine keeps serving: the fixed graph runs
    assert_success(engine.run(wf.to_api()))
