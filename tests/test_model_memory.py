"""Model memory: weights follow the compute device within a budget, exercised on the CPU.

With a budget on the CPU the device copies are clones of the masters (compute device = offload
device), so resident bytes are real storages and pictures must stay bit-identical to a run
without a budget. Bars: resident ≤ budget after every node (and at its peak during sampling),
images equal to the unbudgeted run, the cache's size of a checkpoint equal to a count made with
torch directly, no copies and no hooks without a budget.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from server_kit import run, serving

from latentgraph.events import NodeFinished, NodeProgress, NodeStarted
from latentgraph.model_memory import ModelMemory
from latentgraph.nodes.components import DiffusionModel
from latentgraph.settings import Settings
from latentgraph.testing import make_engine, output_images, txt2img


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from latentgraph.nodes.tiny_models import make_tiny_checkpoint

    base = tmp_path_factory.mktemp("memory")
    for seed in (0, 1):
        make_tiny_checkpoint(base / "models" / "checkpoints" / f"ck{seed}.safetensors", seed=seed)
    return base


def settings_for(base: Path, budget: int | None, out: str) -> Settings:
    return Settings.from_env(base, environ={}, device="cpu", device_budget=budget, output_dir=base / out)


def independent_bytes(modules) -> int:
    """Bytes of the modules' parameters and buffers, counted with torch, each storage once."""
    seen: dict[int, int] = {}
    for module in modules:
        for t in (*module.parameters(), *module.buffers()):
            seen[t.untyped_storage().data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def checkpoint_entries(engine):
    """The cache entries of checkpoint loads: (entry, [unet, vae, text encoders…])."""
    found = []
    for entry in engine.cache.entries():
        model = entry.outputs[0] if entry.outputs else None
        if isinstance(model, DiffusionModel):
            found.append((entry, [model.unet, entry.outputs[2].vae, *entry.outputs[1].encoders]))
    return found


def alternate(engine, settings, rounds=2, on_event=None):
    """txt2img on ck0, ck1, ck0, ck1…; a new seed each round so sampling and decoding run again."""
    pictures = []
    for i in range(rounds):
        for ck in ("ck0", "ck1"):
            wf = txt2img(f"{ck}.safetensors", seed=i, steps=2, prompt=f"a star {ck}", filename_prefix=f"{ck}_{i}")
            result = engine.run(wf.to_api(), sink=on_event or (lambda e: None))
            assert result.status == "success", result
            pictures.append([np.asarray(im) for im in output_images(result, settings)])
    return pictures


@pytest.fixture(scope="module")
def unbudgeted(data_dir):
    settings = settings_for(data_dir, None, "out-free")
    engine = make_engine(settings)
    return engine, alternate(engine, settings)


def test_alternating_checkpoints_stay_within_a_budget_smaller_than_two_models(data_dir, unbudgeted):
    free_engine, reference = unbudgeted
    one = max(independent_bytes(mods) for _, mods in checkpoint_entries(free_engine))
    budget = int(one * 1.4)  # one checkpoint fits, two do not
    settings = settings_for(data_dir, budget, "out-budget")
    engine = make_engine(settings)
    after_node: list[int] = []

    def check(event):
        if isinstance(event, NodeFinished):
            after_node.append(engine.memory.stats().resident)

    pictures = alternate(engine, settings, on_event=check)
    stats = engine.memory.stats()
    assert after_node and max(after_node) <= budget, (max(after_node), budget)
    assert stats.peak <= budget, (stats.peak, budget)
    assert stats.offloads > 0 and stats.loads > 0  # the alternation really evicted
    assert max(after_node) > one * 0.5  # and really loaded (a model's worth was on the device)
    assert all(np.array_equal(a, b) for xs, ys in zip(reference, pictures) for a, b in zip(xs, ys))
    # The cache counts masters, not device copies: the same bytes as the run without a budget.
    assert engine.cache.stats().bytes == free_engine.cache.stats().bytes


def test_a_unet_larger_than_the_budget_runs_partly_loaded_with_the_same_picture(data_dir, unbudgeted):
    free_engine, reference = unbudgeted
    unet = checkpoint_entries(free_engine)[0][1][0]
    budget = int(independent_bytes([unet]) * 0.6)
    settings = settings_for(data_dir, budget, "out-partial")
    engine = make_engine(settings)
    during: dict[str, object] = {}

    def check(event):
        if isinstance(event, NodeStarted) and event.class_type == "KSampler":
            engine.memory.reset_peak()
            during["streamed"] = engine.memory.stats().streamed
        elif isinstance(event, NodeFinished) and event.class_type == "KSampler":
            stats = engine.memory.stats()
            during.update(peak=stats.peak, streamed=stats.streamed - during["streamed"],
                          unet=next(m for m in stats.models if m.name == "UNet2DConditionModel"))

    wf = txt2img("ck0.safetensors", seed=0, steps=2, prompt="a star ck0", filename_prefix="partial")
    result = engine.run(wf.to_api(), sink=check)
    assert result.status == "success", result
    picture = [np.asarray(im) for im in output_images(result, settings)]
    assert all(np.array_equal(a, b) for a, b in zip(reference[0], picture))
    assert during["peak"] <= budget, (during["peak"], budget)
    assert during["streamed"] > 0  # modules were copied per forward call
    assert 0 < during["unet"].resident < during["unet"].nbytes  # and the rest stayed resident


def test_the_cache_counts_a_loaded_checkpoint_at_its_real_size(unbudgeted):
    engine, _ = unbudgeted
    entries = checkpoint_entries(engine)
    assert len(entries) == 2
    for entry, modules in entries:
        expected = independent_bytes(modules)
        assert expected > 1_000_000  # the tiny checkpoint's weights, several MB
        assert entry.nbytes.get("cpu", 0) == expected


def test_no_budget_means_no_copies_and_no_hooks(data_dir, unbudgeted):
    engine, _ = unbudgeted
    assert not engine.memory.active
    modules = [m for _, mods in checkpoint_entries(engine) for m in mods]
    before = {id(t): t.data_ptr() for m in modules for t in (*m.parameters(), *m.buffers())}
    settings = engine.settings
    wf = txt2img("ck0.safetensors", seed=7, steps=1, filename_prefix="again")
    assert engine.run(wf.to_api()).status == "success"
    after = {id(t): t.data_ptr() for m in modules for t in (*m.parameters(), *m.buffers())}
    assert after == before
    assert not any(sub._forward_pre_hooks for m in modules for sub in m.modules())
    assert engine.memory.stats().resident == 0 and settings.device_budget is None


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GroupNorm(4, 64), torch.nn.Linear(64, 8))


def test_a_lora_clone_shares_device_bytes_with_its_base():
    from latentgraph.nodes.lora import patched_copy

    base = _tiny_net()
    memory = ModelMemory("cpu", budget_bytes=10_000_000)
    x = torch.randn(2, 64)
    with memory.use(base):
        expected_base = base(x)
    alone = memory.stats().resident
    assert alone == independent_bytes([base])
    clone = patched_copy(base, {"2.weight": torch.ones(8, 64)}, 0.5)  # a deep copy of a hooked module
    with memory.use(base, clone):
        out = clone(x)
    patched = clone[2].weight.numel() * clone[2].weight.element_size()
    assert memory.stats().resident == alone + patched  # the unpatched weights are not copied twice
    reference = copy.deepcopy(_tiny_net())
    with torch.no_grad():
        reference[2].weight += 0.5
    assert torch.equal(out, reference(x)) and torch.equal(base(x), expected_base)


def test_an_offloaded_model_still_runs_outside_a_use_scope():
    net, other = _tiny_net(), _tiny_net()
    size = independent_bytes([net])
    memory = ModelMemory("cpu", budget_bytes=int(size * 1.5))
    x = torch.randn(2, 64)
    with memory.use(net):
        expected = net(x)
    with memory.use(other):  # evicts net
        pass
    assert [m.resident for m in memory.stats().models] == [size, 0]
    assert torch.equal(net(x), expected)  # streamed module by module
    assert memory.stats().peak <= int(size * 1.5) and memory.stats().streamed > 0


def test_free_leaves_a_model_in_use_on_the_device():
    net = _tiny_net()
    size = independent_bytes([net])
    memory = ModelMemory("cpu", budget_bytes=size * 2)
    with memory.use(net):
        assert memory.offload_all() == 0  # a running node keeps its model
        assert memory.stats().resident == size
    assert memory.offload_all() == size and memory.stats().resident == 0


def test_free_and_system_stats_report_and_offload_models(data_dir):
    settings = settings_for(data_dir, 40_000_000, "out-server")

    async def go():
        async with serving(settings) as client:
            ws = await client.ws("mem")
            wf = txt2img("ck0.safetensors", steps=2, seed=3, filename_prefix="srv")
            reply = await client.submit(wf.to_api(), "mem")
            await ws.until_done(reply["prompt_id"], timeout=120)
            status, stats = await client.get("/system_stats")
            models = stats["devices"][0]["models"]
            assert status == 200 and models["active"] and models["budget"] == 40_000_000
            names = {m["name"] for m in models["models"]}
            assert {"UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel"} <= names
            resident = models["resident"]
            assert 0 < resident <= models["budget"] and resident == sum(m["resident"] for m in models["models"])
            entries = stats["cache"]["entries"]
            # unload_models (as ComfyUI): the models leave the device, the cache keeps them.
            status, body = await client.post("/free", {"unload_models": True})
            assert status == 200 and body == {"freed": True, "offloaded_bytes": resident}
            status, stats = await client.get("/system_stats")
            assert stats["devices"][0]["models"]["resident"] == 0 and stats["cache"]["entries"] == entries > 0
            # free_memory: the cache is dropped too, and the manager forgets the models with it.
            status, body = await client.post("/free", {"free_memory": True})
            assert status == 200 and body == {"freed": True, "offloaded_bytes": 0}
            status, stats = await client.get("/system_stats")
            assert stats["cache"]["entries"] == 0 and stats["devices"][0]["models"]["models"] == []

    run(go())


def test_the_budget_comes_from_the_flag_the_environment_or_the_config_file(tmp_path):
    from latentgraph.cli import _parser
    from latentgraph.settings import GiB

    args = _parser().parse_args(["run", "wf.json", "--device-budget", "1.5G"])
    assert args.device_budget == int(1.5 * GiB)
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["serve", "--vram-budget", "lots"])
    assert exc.value.code == 2
    assert Settings.from_env(tmp_path, environ={"LATENTGRAPH_DEVICE_BUDGET": "512M"}).device_budget == 512 * 1024**2
    (tmp_path / "latentgraph.toml").write_text('device_budget = "2G"\n')
    assert Settings.from_env(tmp_path, environ={}).device_budget == 2 * GiB
    assert Settings.from_env(tmp_path / "elsewhere", environ={}).device_budget is None
    # "auto": the GPU's memory less a reserve; nothing to manage on the CPU
    assert _parser().parse_args(["run", "wf.json", "--device-budget", "auto"]).device_budget == "auto"
    auto = Settings.from_env(tmp_path, environ={"LATENTGRAPH_DEVICE_BUDGET": "auto"}, device="cpu")
    assert auto.device_budget == "auto" and not ModelMemory.from_settings(auto).active


@pytest.mark.parametrize(("name", "sampled_with"), [
    ("controlnet_canny", {"UNet2DConditionModel", "ControlNetModel"}),  # the demo model and its ControlNet
    ("lora", {"UNet2DConditionModel"}),  # a LoRA clone of the UNet, sharing its base's weights
])
def test_example_workflows_under_a_budget_give_the_same_picture(tmp_path, name, sampled_with):
    """An example workflow under a budget that holds none of its models whole: the same picture;
    while sampling, the models it samples with are in use, on the device, within the budget."""
    import json
    import shutil

    workflows = Path(__file__).parent.parent / "workflows"
    wf = json.loads((workflows / f"{name}.json").read_text())
    for node in wf.values():
        if node["class_type"] == "KSampler":
            node["inputs"]["steps"] = min(int(node["inputs"]["steps"]), 4)  # streaming is slow; 4 steps tell
    budget = 3_000_000
    pictures, sampling = [], {}
    for limit in (None, budget):
        data = tmp_path / f"b{limit}"
        shutil.copytree(workflows / "input", data / "input")
        settings = Settings.from_env(data, environ={}, device="cpu", device_budget=limit)
        engine = make_engine(settings)

        def watch(event, engine=engine):
            if isinstance(event, NodeStarted) and event.class_type == "KSampler":
                engine.memory.reset_peak()
                sampling["node"] = event.node_id
            elif isinstance(event, NodeProgress) and event.node_id == sampling.get("node"):
                sampling["during"] = engine.memory.stats()
            elif isinstance(event, NodeFinished) and event.class_type == "KSampler":
                sampling["stats"] = engine.memory.stats()

        result = engine.run(wf, sink=watch)
        assert result.status == "success", result
        pictures.append([np.asarray(im) for im in output_images(result, settings)])
    assert all(np.array_equal(a, b) for a, b in zip(*pictures))
    stats = sampling["stats"]
    assert stats.streamed > 0 and stats.peak <= budget  # partly loaded, within the budget
    in_use = [m for m in sampling["during"].models if m.pinned]
    assert {m.name for m in in_use} == sampled_with and all(m.resident > 0 for m in in_use)
