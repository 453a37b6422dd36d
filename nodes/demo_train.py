"""Trains the embedded demo model from scratch on the procedural shapes dataset, on a CPU.

Three real Stable Diffusion components, small: a diffusers ``AutoencoderKL`` (downscale 4, 4 latent
channels), a transformers ``CLIPTextModel`` with the real CLIP tokenizer, and a diffusers
``UNet2DConditionModel``. Phase 1 trains the VAE on reconstruction (+ a small KL term) and sets
its ``scaling_factor`` to 1/std of the latents; phase 2 trains text encoder and UNet jointly on the
DDPM objective (sample t, noise the latent with q(x_t|x_0) = sqrt(ᾱ_t)·x_0 + sqrt(1−ᾱ_t)·ε,
predict ε, MSE) with 10 % empty captions so classifier-free guidance works. The result is one
SD1-style single-file checkpoint in the original key layout that describes its own architecture.

    python -m latentgraph.nodes.demo_train --out /tmp/demo-run [--minutes 55] [--resume]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from latentgraph.nodes import demo_data
from latentgraph.nodes.model_configs import METADATA_KEY, ArchConfig, TextEncoderConfig, load_shipped_config

SHIPPED_NAME = "latentgraph-demo-shapes.safetensors"
#: Share of the time budget spent on the VAE.
VAE_SHARE = 0.18
BANK_SIZE = 24_000


def demo_config() -> ArchConfig:
    """The demo architecture: SD1 family (scaled-linear betas, ε-prediction), tiny widths."""
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
        "norm_num_groups": 16,
        "sample_size": 64,
        "scaling_factor": 1.0,  # set from the latents after phase 1
    }
    unet = {
        "act_fn": "silu",
        "block_out_channels": [32, 64, 128],
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "layers_per_block": 1,
        "in_channels": 4,
        "out_channels": 4,
        "sample_size": 16,
        "norm_num_groups": 32,
        "norm_eps": 1e-05,
        "cross_attention_dim": 64,
        "attention_head_dim": 4,
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
        extra={"name": "latentgraph-demo-shapes", "trained_on": "latentgraph.nodes.demo_data"},
    )


def high_noise_weight(alpha_bar: torch.Tensor, cap: float = 10.0) -> torch.Tensor:
    """Per-sample weight of the ε-MSE: (1−ᾱ)/ᾱ clamped to [1, cap].

    Colours and layout are decided at high noise, where an ε error is magnified by
    sqrt((1−ᾱ)/ᾱ) in the predicted image yet plain ε-MSE barely rewards getting it right; a small
    model trained briefly then ignores the prompt. Weighting those timesteps like an x₀ loss
    (capped) makes the text matter; low-noise steps keep weight 1.
    """
    return ((1 - alpha_bar) / alpha_bar).clamp(1.0, cap)


def _images(seed: int, start: int, count: int) -> torch.Tensor:
    arrays, _ = demo_data.batch_arrays(seed, start, count)
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class Trainer:
    def __init__(self, out: Path, minutes: float, seed: int = 0) -> None:
        import transformers
        from diffusers import AutoencoderKL, UNet2DConditionModel

        self.out, self.seed = out, seed
        self.budget = minutes * 60
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
        if step % 10 == 0:
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
        deadline = self.budget * VAE_SHARE
        bar = tqdm(desc="vae", unit="step")
        start = time.perf_counter() - self.state["elapsed"]
        while time.perf_counter() - start < deadline:
            step = self.state["step"]
            x = _images(self.seed + 1, step * 32, 32)
            post = self.vae.encode(x).latent_dist
            rec = self.vae.decode(post.sample()).sample
            mse = torch.nn.functional.mse_loss(rec, x)
            loss = mse + 0.5 * torch.nn.functional.l1_loss(rec, x) + 1e-6 * post.kl().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self._step_done(bar, start, "vae", save_every=100, mse=mse.item())
        bar.close()
        self.state.update(phase="unet", step=0, vae_seconds=self.state["elapsed"], elapsed=0.0)
        self.save()

    # -- the latent bank ---------------------------------------------------------------------
    @torch.no_grad()
    def latent_bank(self) -> tuple[torch.Tensor, list[str]]:
        self.vae.eval()
        latents, captions = [], []
        for start in tqdm(range(0, BANK_SIZE, 250), desc="encode", unit="batch"):
            arrays, caps = demo_data.batch_arrays(self.seed + 2, start, 250)
            x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            latents.append(self.vae.encode(x).latent_dist.mean)
            captions += caps
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
        opt = self.opt = torch.optim.AdamW(params, lr=4e-4, weight_decay=1e-2)
        self.ema_unet, self.ema_text = copy.deepcopy(self.unet), copy.deepcopy(self.text)
        if getattr(self, "_resumed", None) and self.state["step"]:
            self.ema_unet.load_state_dict(self._resumed["ema_unet"])
            self.ema_text.load_state_dict(self._resumed["ema_text"])
            if self._resumed.get("optimizer"):
                opt.load_state_dict(self._resumed["optimizer"])
        deadline = self.budget * (1 - VAE_SHARE) - 90  # leave time for the bank and export
        gen = torch.Generator().manual_seed(self.seed + 3 + self.state["step"])
        bar = tqdm(desc="unet", unit="step")
        start = time.perf_counter() - self.state["elapsed"]
        batch = 64
        while time.perf_counter() - start < deadline:
            step = self.state["step"]
            frac = min(1.0, (time.perf_counter() - start) / deadline)
            for group in opt.param_groups:
                group["lr"] = 4e-4 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))) * min(1.0, (step + 1) / 100)
            idx = torch.randint(0, bank.shape[0], (batch,), generator=gen)
            x0 = bank[idx]
            tokens = ids[idx].clone()
            drop = torch.rand(batch, generator=gen) < 0.1
            tokens[drop] = empty
            t = torch.randint(0, 1000, (batch,), generator=gen)
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
    parser.add_argument("--minutes", type=float, default=55.0, help="total time budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(out, args.minutes, args.seed)
    if args.resume:
        trainer.resume()
    began = time.perf_counter()
    trainer.train_vae()
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
