"""Trains the demo model's canny ControlNet on a CPU, briefly: ``latentgraph-demo-canny.safetensors``.

The ControlNet starts as diffusers' ``ControlNetModel.from_unet(demo UNet)``: a copy of the UNet's
encoder whose outputs pass through zero-initialised 1×1 convolutions, so before training it
changes nothing. Its hint encoder takes the 64×64 edge map down to the demo latent's 16×16 (two
stride-2 stages: the demo VAE downsamples by 4, not 8). Training data are the demo dataset's
pictures (``demo_model.data``, a seed the demo model never saw) with their Canny edges
(``latentgraph.nodes.control.canny``, thresholds 0.05 / 0.1, see EDGE_LOW) as hints; the demo
UNet and text encoder stay frozen and only the ControlNet learns the usual ε objective, with 30 %
empty captions so the edges alone must place the shape. Noise levels are drawn half uniformly and
half from the noisiest 40 %, where a picture's layout is decided.

    python -m demo_model.train_controlnet --out DIR [--minutes 10] [--threads 1]

(``--minutes`` is CPU time, summed over resumed runs: a rerun with the same DIR continues.)
    python -m demo_model.train_controlnet --out DIR --export-only

writes ``DIR/controlnet_state.pt`` (diffusers names, resumable) and
``DIR/latentgraph-demo-canny.safetensors`` (original ControlNet layout, fp16, its config in the
metadata) — copy that into ``nodes/data/models/controlnet/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

SHIPPED_NAME = "latentgraph-demo-canny.safetensors"
DEMO_CHECKPOINT = "latentgraph-demo-shapes.safetensors"
DATA_SEED = 7_000
BANK_SIZE = 3000
BATCH, LR = 16, 1e-3
EMPTY_CAPTIONS = 0.3
#: Hint encoder widths: two stride-2 stages (64 px → 16 latent cells).
HINT_CHANNELS = (16, 32, 64)
#: Canny thresholds of the hints. ComfyUI's defaults (0.4 / 0.8) find no edge between many of the
#: demo's colour pairs of similar grey (red on blue: a step of 0.16 → magnitude ≈ 0.4), so the
#: demo ControlNet learns, and its workflow uses, 0.05 / 0.1; pairs with still fewer edge pixels
#: than MIN_EDGE_PIXELS (red on purple) are left out.
EDGE_LOW, EDGE_HIGH = 0.05, 0.1
MIN_EDGE_PIXELS = 40


def _settings():
    from latentgraph.settings import Settings

    return Settings.from_env(Path("/tmp"), environ={}, device="cpu", dtype="fp32")


def load_demo():
    from latentgraph.nodes.builtin import DATA_DIR
    from latentgraph.nodes.checkpoints import load_checkpoint

    return load_checkpoint(DATA_DIR / "models" / "checkpoints" / DEMO_CHECKPOINT, _settings())


def timesteps(batch: int, gen: torch.Generator) -> torch.Tensor:
    t = torch.randint(0, 1000, (batch,), generator=gen)
    noisy = torch.rand(batch, generator=gen) < 0.5
    t[noisy] = torch.randint(600, 1000, (int(noisy.sum()),), generator=gen)
    return t


@torch.no_grad()
def make_bank(ckpt, count: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(latents [N, 4, 16, 16] scaled, edges [N, 1, 64, 64] bool, captions)."""
    from demo_model import data as demo_data
    from latentgraph.nodes.control.canny import canny

    vae = ckpt.vae.vae.float()
    latents, edges, captions = [], [], []
    start, kept = 0, 0
    while kept < count:
        arrays, caps = demo_data.batch_arrays(DATA_SEED, start, 200)
        start += 200
        pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
        found = canny(pixels, EDGE_LOW, EDGE_HIGH)[1].bool()
        keep = (found.sum((1, 2, 3)) >= MIN_EDGE_PIXELS).nonzero().flatten()[: count - kept]
        latents.append(vae.encode(pixels[keep] * 2 - 1).latent_dist.mean * ckpt.vae.scaling_factor)
        edges.append(found[keep])
        captions += [caps[int(i)] for i in keep]
        kept += len(keep)
    return torch.cat(latents), torch.cat(edges), captions


@torch.no_grad()
def caption_states(ckpt, captions: list[str]) -> dict[str, torch.Tensor]:
    tokenizer, encoder = ckpt.clip.tokenizers[0], ckpt.clip.encoders[0].float()
    unique = sorted(set(captions)) + [""]
    ids = tokenizer(unique, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    hidden = encoder(ids).last_hidden_state
    return dict(zip(unique, hidden))


def train(out: Path, minutes: float, seed: int = 0, bank_size: int = BANK_SIZE) -> dict:
    from diffusers import ControlNetModel

    began = time.process_time()  # the budget is CPU time: the machine may be shared
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_demo()
    unet = ckpt.model.unet.float().requires_grad_(False)
    state_path = out / "controlnet_state.pt"
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS)
    step, spent = 0, 0.0
    if state_path.is_file():  # resume: the budget counts the earlier runs' CPU time too
        saved = torch.load(state_path, weights_only=False)
        net.load_state_dict(saved["state"])
        step, spent = int(saved["step"]), float(saved.get("cpu_seconds", 0.0))
    net.train()
    latents, edges, captions = make_bank(ckpt, bank_size)
    states = caption_states(ckpt, captions)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0).float()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + 1 + step)
    deadline = began + minutes * 60 - spent - 20  # keep time for saving
    losses: list[float] = []
    log = (out / "loss.jsonl").open("a")
    while time.process_time() < deadline:
        idx = torch.randint(0, latents.shape[0], (BATCH,), generator=gen)
        x0 = latents[idx]
        hint = edges[idx].float().repeat(1, 3, 1, 1)
        empty = torch.rand(BATCH, generator=gen) < EMPTY_CAPTIONS
        hidden = torch.stack([states["" if e else captions[int(i)]] for i, e in zip(idx, empty)])
        t = timesteps(BATCH, gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        down, mid = net(xt, t, hidden, hint, return_dict=False)
        pred = unet(xt, t, hidden, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        loss = (pred - noise).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 25 == 0:
            row = {"step": step, "loss": sum(losses[-25:]) / len(losses[-25:]), "cpu_seconds": round(spent + time.process_time() - began, 1)}
            log.write(json.dumps(row) + "\n")
            log.flush()
    spent += time.process_time() - began
    torch.save({"state": net.state_dict(), "config": dict(net.config), "step": step, "cpu_seconds": spent}, state_path)
    return {"steps": step, "cpu_seconds": round(spent, 1), "last_loss": sum(losses[-50:]) / max(1, len(losses[-50:]))}


def export(out: Path) -> Path:
    """The trained ControlNet as one original-layout fp16 file with its config in the metadata."""
    from latentgraph.nodes.control.layout import save_controlnet

    saved = torch.load(out / "controlnet_state.pt", weights_only=False)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in saved["config"].items() if not k.startswith("_")}
    path = out / SHIPPED_NAME
    save_controlnet(path, saved["state"], config, extra={
        "trained_steps": saved["step"], "cpu_seconds": round(float(saved.get("cpu_seconds", 0.0))),
        "trained_on": f"demo_model.data (seed {DATA_SEED}) + Canny({EDGE_LOW}, {EDGE_HIGH})"})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-only", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.export_only:
        print(json.dumps(train(args.out, args.minutes, args.seed)))
    print(export(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
