"""Trains the embedded demo model from scratch on the procedural shapes dataset, on a CPU.

Three real Stable Diffusion components, small: a diffusers ``AutoencoderKL`` (downscale 4, 4 latent
channels), a transformers ``CLIPTextModel`` with the real CLIP tokenizer, and a diffusers
``UNet2DConditionModel``. Phase 1 trains the VAE on reconstruction (+ a small KL term) and sets
its ``scaling_factor`` to 1/std of the latents; phase 2 trains text encoder and UNet jointly on the
DDPM objective (sample t, noise the latent with q(x_t|x_0) = sqrt(ᾱ_t)·x_0 + sqrt(1−ᾱ_t)·ε,
predict ε, MSE) with 10 % empty captions so classifier-free guidance works. The result is one
SD1-style single-file checkpoint in the original key layout that describes its own architecture.

    python -m demo_model.train --out /tmp/demo-run [--minutes 60] [--resume]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from demo_model import data as demo_data
from latentgraph.nodes.model_configs import METADATA_KEY, ArchConfig, TextEncoderConfig, load_shipped_config

SHIPPED_NAME = "latentgraph-demo-shapes.safetensors"
#: Minutes of the budget spent on the VAE (it reaches MSE ≈ 0.005 and reads back right).
VAE_MINUTES = 11.0
BANK_SIZE = 24_000
#: UNet steps between two quick generate-and-read checks (logged as "eval" rows).
EVAL_EVERY = 500
#: UNet + text encoder: small batches and a high rate; steps count more than batch size here.
BATCH, LR = 32, 1e-3


def demo_config() -> ArchConfig:
    """The demo architecture: SD1 family (scaled-linear betas, ε-prediction), tiny widths.

    Group norms keep several channels per group (SD: 128 / 32 groups = 4): with one channel per
    group a norm removes each channel's image-wide mean, which is exactly where a flat colour
    lives, and the models then struggle to reproduce colours or follow the colour in a prompt.
    """
    shipped = load_shipped_config("sd1")
    text = TextEncoderConfig(
        "CLIPTextModel",
        {
            "vocab_size": 49408,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "projection_dim": 64,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-05,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
            "model_type": "clip_text_model",
        },
        "clip",
        "<|endoftext|>",
    )
    vae = {
        "act_fn": "silu",
        "block_out_channels": [16, 32, 64],
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,  # 4+ channels per group (see the docstring)
        "sample_size": 64,
        "scaling_factor": 1.0,  # set from the latents after phase 1
    }
    unet = {
        "act_fn": "silu",
        "block_out_channels": [32, 64, 128],
        # Attention at 8×8 and in the middle only: at 16×16 it cost a third of each step.
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "in_channels": 4,
        "out_channels": 4,
        "sample_size": 16,
        "norm_num_groups": 8,
        "norm_eps": 1e-05,
        "cross_attention_dim": 64,
        "attention_head_dim": 2,  # (diffusers: the number of heads) wide heads are faster on a CPU
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "downsample_padding": 1,
        "center_input_sample": False,
        "mid_block_scale_factor": 1,
    }
    return ArchConfig(
        arch=shipped.arch,
        unet=unet,
        vae=vae,
        scheduler=dict(shipped.scheduler),
        text_encoders=(text,),
        source="demo",
        extra={"name": "latentgraph-demo-shapes", "trained_on": "demo_model.data"},
    )


def high_noise_weight(alpha_bar: torch.Tensor, cap: float = 10.0) -> torch.Tensor:
    """Per-sample weight of the ε-MSE: (1−ᾱ)/ᾱ clamped to [1, cap].

    Colours and layout are decided at high noise, where an ε error is magnified by
    sqrt((1−ᾱ)/ᾱ) in the predicted image yet plain ε-MSE barely rewards getting it right; a small
    model trained briefly then ignores the prompt. Weighting those timesteps like an x₀ loss
    (capped) makes the text matter; low-noise steps keep weight 1.
    """
    return ((1 - alpha_bar) / alpha_bar).clamp(1.0, cap)


def sample_timesteps(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Half uniform over 0…999, half from the noisiest 30 %.

    The image itself reveals its colours once a few percent of the signal is left (a latent
    region's average beats the noise), so the caption is only needed in the first, noisiest
    steps of sampling — a small share of uniform draws. Drawing those more often is what lets a
    small model learn to follow the prompt within the time budget.
    """
    t = torch.randint(0, 1000, (batch,), generator=generator)
    noisy = torch.rand(batch, generator=generator) < 0.5
    t[noisy] = torch.randint(700, 1000, (int(noisy.sum()),), generator=generator)
    return t


def _autocast():
    """bfloat16 autocast on CPUs with native bf16 (AMX / AVX512-BF16): ~1.5× faster VAE steps."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _set_lr(opt: torch.optim.Optimizer, peak: float, step: int, frac: float, floor: float = 0.1, warmup: int = 100) -> None:
    """Linear warm-up, then cosine decay from ``peak`` to ``floor``·peak over the phase's time."""
    scale = (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))) * min(1.0, (step + 1) / warmup)
    for group in opt.param_groups:
        group["lr"] = peak * scale


def _read_accuracy(images: torch.Tensor, captions: list[str]) -> dict[str, float]:
    """Share of pictures (in [-1, 1]) whose colours / shape read back as their caption says."""
    from demo_model.reading import matches, read_picture

    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    results = []
    for array, text in zip(pixels, captions):
        words = text.split()  # a {colour} {shape} on a {background} background
        results.append(matches(read_picture(array), words[1], words[2], words[5]))
    return {"colour_acc": sum(c for c, _ in results) / len(results), "shape_acc": sum(s for _, s in results) / len(results)}


def _images(seed: int, start: int, count: int) -> tuple[torch.Tensor, list[str]]:
    """Dataset samples as the VAE takes them ([N, 3, 64, 64] in [-1, 1]) and their captions."""
    arrays, captions = demo_data.batch_arrays(seed, start, count)
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1.0, captions


class Trainer:
    def __init__(self, out: Path, minutes: float, seed: int = 0, vae_minutes: float = VAE_MINUTES,
                 bank_size: int = BANK_SIZE, export_reserve: float = 30.0, log_every: int = 10) -> None:
        import transformers
        from diffusers import AutoencoderKL, UNet2DConditionModel

        self.out, self.seed = out, seed
        self.budget = minutes * 60
        #: Pictures encoded for the UNet's training set, and seconds kept back for the export
        #: (small values make the short smoke run of tests/test_demo_train.py).
        self.bank_size, self.export_reserve, self.log_every = bank_size, export_reserve, log_every
        self.vae_budget = min(vae_minutes * 60, self.budget / 2)
        self.cfg = demo_config()
        torch.manual_seed(seed)
        self.vae = AutoencoderKL.from_config(self.cfg.vae)
        self.unet = UNet2DConditionModel.from_config(self.cfg.unet)
        self.text = transformers.CLIPTextModel(transformers.CLIPTextConfig(**self.cfg.text_encoders[0].config))
        from latentgraph.nodes.model_configs import TOKENIZER_DIR

        self.tokenizer = transformers.CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1 - betas, 0).float()
        self.state = {"phase": "vae", "step": 0, "elapsed": 0.0, "scaling_factor": None}
        self.log = (out / "loss.jsonl").open("a")

    # -- checkpoints ------------------------------------------------------------------------
    def save(self) -> None:
        torch.save(
            {"state": self.state, "vae": self.vae.state_dict(), "unet": self.unet.state_dict(), "text": self.text.state_dict(),
             "ema_unet": getattr(self, "ema_unet", self.unet).state_dict(), "ema_text": getattr(self, "ema_text", self.text).state_dict(),
             "optimizer": self.opt.state_dict() if getattr(self, "opt", None) is not None else None},
            self.out / "train_state.pt",
        )

    def resume(self) -> None:
        path = self.out / "train_state.pt"
        if not path.exists():
            return
        data = torch.load(path, weights_only=True)
        self.state = data["state"]
        self.vae.load_state_dict(data["vae"])
        self.unet.load_state_dict(data["unet"])
        self.text.load_state_dict(data["text"])
        self._resumed = data
        print(f"resumed at {self.state['phase']} step {self.state['step']}")

    def _step_done(self, bar: tqdm, start: float, phase: str, save_every: int, **losses: float) -> None:
        """Book-keeping after one optimiser step: state, progress bar, loss log, periodic save."""
        step = self.state["step"]
        self.state["step"] += 1
        self.state["elapsed"] = time.perf_counter() - start
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
        if step % self.log_every == 0:
            self._log(phase=phase, step=step, seconds=round(self.state["elapsed"], 1), **losses)
        if step % save_every == 0:
            self.save()

    def _log(self, **row) -> None:
        self.log.write(json.dumps(row) + "\n")
        self.log.flush()

    # -- phase 1: the autoencoder ------------------------------------------------------------
    def train_vae(self) -> None:
        if self.state["phase"] != "vae":
            return
        opt = torch.optim.AdamW(self.vae.parameters(), lr=1e-3, weight_decay=0.0)
        deadline = self.vae_budget
        bar = tqdm(desc="vae", unit="step")
        start = time.perf_counter() - self.state["elapsed"]
        while time.perf_counter() - start < deadline:
            step = self.state["step"]
            _set_lr(opt, 1e-3, step, (time.perf_counter() - start) / deadline, floor=0.05)
            x, _ = _images(self.seed + 1, step * 32, 32)
            with _autocast():
                post = self.vae.encode(x).latent_dist
                rec = self.vae.decode(post.sample()).sample.float()
            mse = torch.nn.functional.mse_loss(rec, x)
            # The KL term only keeps the latents tame; any stronger and it blurs the edges the
            # shape reading depends on.
            loss = mse + 0.5 * torch.nn.functional.l1_loss(rec, x) + 1e-7 * post.kl().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self._step_done(bar, start, "vae", save_every=100, mse=mse.item())
        bar.close()
        self._log(phase="vae-check", **self.check_vae())
        self.state.update(phase="unet", step=0, vae_seconds=self.state["elapsed"], elapsed=0.0)
        self.save()

    @torch.no_grad()
    def check_vae(self, count: int = 200) -> dict[str, float]:
        """Round-trip held-out pictures and read them back: the VAE's ceiling for the whole model."""
        self.vae.eval()
        x, captions = _images(self.seed + 7, 0, count)
        rec = self.vae.decode(self.vae.encode(x).latent_dist.mean).sample
        self.vae.train()
        return {"mse": float(torch.nn.functional.mse_loss(rec, x)), **_read_accuracy(rec, captions)}

    @torch.no_grad()
    def evaluate(self, count: int = 16, steps: int = 12, cfg: float = 6.0) -> dict[str, float]:
        """Draw ``count`` fixed prompts with the EMA weights (Euler, CFG) and read the pictures."""
        from diffusers import EulerDiscreteScheduler

        rng, combos = random.Random(7), demo_data.all_prompts()
        prompts = [rng.choice(combos) for _ in range(count)]
        captions = [demo_data.caption(*p) for p in prompts]
        ids = self.tokenizer(captions + [""] * count, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        cond = self.ema_text(ids).last_hidden_state
        scheduler = EulerDiscreteScheduler.from_config(self.cfg.scheduler)
        scheduler.set_timesteps(steps)
        x = torch.randn((count, 4, 16, 16), generator=torch.Generator().manual_seed(11)) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps_c, eps_u = self.ema_unet(scheduler.scale_model_input(torch.cat([x, x]), t), t, encoder_hidden_states=cond).sample.chunk(2)
            x = scheduler.step(eps_u + cfg * (eps_c - eps_u), t, x).prev_sample
        images = self.vae.decode(x / self.state["scaling_factor"]).sample
        return _read_accuracy(images, captions)

    # -- the latent bank ---------------------------------------------------------------------
    @torch.no_grad()
    def latent_bank(self) -> tuple[torch.Tensor, list[str]]:
        """The UNet's training set, encoded once (its time counts against the budget)."""
        began = time.perf_counter()
        self.vae.eval()
        latents, captions = [], []
        for start in tqdm(range(0, self.bank_size, 250), desc="encode", unit="batch"):
            x, caps = _images(self.seed + 2, start, min(250, self.bank_size - start))
            with _autocast():
                latents.append(self.vae.encode(x).latent_dist.mean.float())
            captions += caps
        self.state["bank_seconds"] = self.state.get("bank_seconds", 0.0) + time.perf_counter() - began
        bank = torch.cat(latents)
        if self.state["scaling_factor"] is None:
            self.state["scaling_factor"] = float(1.0 / bank.std())
        return bank * self.state["scaling_factor"], captions

    # -- phase 2: text encoder + UNet ---------------------------------------------------------
    def train_unet(self) -> None:
        bank, captions = self.latent_bank()
        ids = self.tokenizer(captions + [""], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        empty = ids[-1]
        ids = ids[:-1]
        params = list(self.unet.parameters()) + list(self.text.parameters())
        opt = self.opt = torch.optim.AdamW(params, lr=LR, weight_decay=1e-2)
        self.ema_unet, self.ema_text = copy.deepcopy(self.unet), copy.deepcopy(self.text)
        if getattr(self, "_resumed", None) and self.state["step"]:
            self.ema_unet.load_state_dict(self._resumed["ema_unet"])
            self.ema_text.load_state_dict(self._resumed["ema_text"])
            if self._resumed.get("optimizer"):
                opt.load_state_dict(self._resumed["optimizer"])
        # What is left after the VAE and the bank(s), less the export's reserve (half a minute).
        deadline = self.budget - self.state.get("vae_seconds", self.vae_budget) - self.state["bank_seconds"] - self.export_reserve
        gen = torch.Generator().manual_seed(self.seed + 3 + self.state["step"])
        bar = tqdm(desc="unet", unit="step")
        start = time.perf_counter() - self.state["elapsed"]
        while time.perf_counter() - start < deadline:
            step = self.state["step"]
            _set_lr(opt, LR, step, (time.perf_counter() - start) / deadline)
            idx = torch.randint(0, bank.shape[0], (BATCH,), generator=gen)
            x0 = bank[idx]
            tokens = ids[idx].clone()
            drop = torch.rand(BATCH, generator=gen) < 0.1
            tokens[drop] = empty
            t = sample_timesteps(BATCH, gen)
            noise = torch.randn(x0.shape, generator=gen)
            a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            cond = self.text(tokens).last_hidden_state
            pred = self.unet(xt, t, encoder_hidden_states=cond).sample
            loss = (high_noise_weight(a.flatten()) * (pred - noise).pow(2).mean((1, 2, 3))).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            decay = min(0.999, (1 + step) / (10 + step))
            with torch.no_grad():
                for ema, live in ((self.ema_unet, self.unet), (self.ema_text, self.text)):
                    for pe, pl in zip(ema.parameters(), live.parameters()):
                        pe.lerp_(pl, 1 - decay)
            self._step_done(bar, start, "unet", save_every=200, loss=loss.item())
            if step % EVAL_EVERY == EVAL_EVERY - 1:
                self._log(phase="eval", step=step, **self.evaluate())
        bar.close()
        self.state["phase"] = "done"
        self.save()

    # -- export ------------------------------------------------------------------------------
    def export(self, path: Path) -> Path:
        from safetensors.torch import save_file

        from latentgraph.nodes.tiny_models import original_state_dict

        vae_cfg = {**self.cfg.vae, "scaling_factor": self.state["scaling_factor"]}
        cfg = replace(self.cfg, vae=vae_cfg, extra={**self.cfg.extra, "unet_steps": self.state["step"]})
        unet = getattr(self, "ema_unet", self.unet)
        text = getattr(self, "ema_text", self.text)
        state = original_state_dict(cfg, unet.state_dict(), self.vae.state_dict(), [text.state_dict()])
        tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={METADATA_KEY: cfg.to_json()})
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for logs, the training state and the exported checkpoint")
    parser.add_argument("--minutes", type=float, default=60.0, help="total time budget")
    parser.add_argument("--vae-minutes", type=float, default=VAE_MINUTES, help="part of it for the VAE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bank-size", type=int, default=BANK_SIZE, help="pictures encoded for the UNet's training set")
    parser.add_argument("--log-every", type=int, default=10, help="steps between two loss-log rows")
    parser.add_argument("--export-reserve", type=float, default=30.0, help="seconds of the budget kept for the export")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt")
    parser.add_argument("--stop-after-vae", action="store_true", help="stop once the VAE is trained (resume later)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Subnormal floats appear as training goes on and make CPU arithmetic several times slower.
    torch.set_flush_denormal(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(out, args.minutes, args.seed, args.vae_minutes, args.bank_size, args.export_reserve, args.log_every)
    if args.resume:
        trainer.resume()
    began = time.perf_counter()
    trainer.train_vae()
    if args.stop_after_vae:
        return 0
    if trainer.state["phase"] == "unet":
        trainer.train_unet()
    elif trainer.state["scaling_factor"] is None:
        trainer.latent_bank()
    path = trainer.export(out / SHIPPED_NAME)
    summary = {
        "checkpoint": str(path),
        "megabytes": round(path.stat().st_size / 1e6, 2),
        "seconds": round(time.perf_counter() - began, 1),
        "unet_steps": trainer.state["step"],
        "scaling_factor": trainer.state["scaling_factor"],
    }
    print(json.dumps(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
