"""Record what ComfyUI's model code feeds a UNet besides text: unCLIP's noise-augmented image
embedding (``comfy.model_base.unclip_adm``), the extra input channels of inpainting and
instruct-pix2pix models (``BaseModel.concat_cond`` after ``set_inpaint``, ``IP2P.concat_cond``)
and GLIGEN's gated attention with boxes on a crop (``comfy.gligen.load_gligen`` on a random tiny
GLIGEN state dict, ``set_position`` for a latent crop of 6×8 cells, its patch applied to features
of two transformer blocks).

latentgraph's own code (MIT): it *imports* ComfyUI (GPL) at run time from ``--comfyui`` and writes
plain numbers to ``--out``/``unet_inputs.safetensors``. ``tests/test_unet_inputs.py`` compares
:mod:`latentgraph.nodes.sampling.unet_inputs` with them. The model methods are called on a plain
namespace standing for the model (they read only ``concat_keys``, ``process_latent_in`` (SD1.5's
scale 0.18215) and ``blank_inpaint_image_like``), so no UNet is built.

Environment and import as ``record_comfyui.py``::

    /tmp/comfy-venv/bin/python tests/reference/record_unet_inputs.py --comfyui /tmp/comfyui-ref --out tests/data/comfyui

Deterministic: two runs give identical files.
"""

from __future__ import annotations

import argparse
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_comfyui import import_comfy  # noqa: E402

SCALE = 0.18215


def inputs() -> dict[str, torch.Tensor]:
    """The recorded inputs (also stored, so the test reads exactly these)."""
    g = torch.Generator().manual_seed(0)
    pixel_mask = torch.zeros(1, 1, 16, 16)
    pixel_mask[..., 3:11, 5:14] = 0.8
    return {
        "embeds_a": torch.randn(2, 6, generator=g),
        "embeds_b": torch.randn(1, 6, generator=g),
        "concat_latent": torch.randn(1, 4, 8, 8, generator=g),
        "odd_latent": torch.randn(3, 4, 6, 10, generator=g),
        "pixel_mask": pixel_mask,
        "run_latent": torch.randn(2, 4, 8, 8, generator=g),
        "run_mask": (torch.rand(2, 4, 8, 8, generator=g) > 0.5).float(),
    }


def record(comfyui: str) -> dict[str, torch.Tensor]:
    import_comfy(comfyui)
    import comfy.model_base as mb
    from comfy.ldm.modules.encoders.noise_aug_modules import CLIPEmbeddingNoiseAugmentation

    x = inputs()
    out = dict(x)
    aug = CLIPEmbeddingNoiseAugmentation(noise_schedule_config={"timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"},
                                         timestep_dim=6)
    a = types.SimpleNamespace(image_embeds=x["embeds_a"])
    b = types.SimpleNamespace(image_embeds=x["embeds_b"])
    two = [{"clip_vision_output": a, "strength": 0.5, "noise_augmentation": 0.0},
           {"clip_vision_output": b, "strength": 2.0, "noise_augmentation": 0.3}]
    out["unclip_merged"] = mb.unclip_adm(two, "cpu", aug, 0.05, seed=20 - 10)
    one = [{"clip_vision_output": b, "strength": 1.5, "noise_augmentation": 0.25}]
    out["unclip_single"] = mb.unclip_adm(one, "cpu", aug, 0.05, seed=7 - 10)

    inpaint = types.SimpleNamespace(concat_keys=(), process_latent_in=lambda z: z * SCALE)
    mb.BaseModel.set_inpaint(inpaint)
    noise = torch.zeros(2, 4, 8, 8)

    def concat(**kw):
        return mb.BaseModel.concat_cond(inpaint, noise=noise, device="cpu", **kw)

    out["inpaint_given"] = concat(concat_latent_image=x["concat_latent"], concat_mask=x["pixel_mask"],
                                  latent_image=x["run_latent"], denoise_mask=x["run_mask"])
    out["inpaint_run"] = concat(latent_image=x["run_latent"], denoise_mask=x["run_mask"])
    out["inpaint_blank"] = concat(latent_image=x["run_latent"])
    out["inpaint_odd"] = concat(concat_latent_image=x["odd_latent"], concat_mask=x["pixel_mask"],
                                latent_image=x["run_latent"])
    ip2p = types.SimpleNamespace(process_ip2p_image_in=lambda image: image)
    out["ip2p_given"] = mb.IP2P.concat_cond(ip2p, concat_latent_image=x["odd_latent"], noise=noise, device="cpu")
    out["ip2p_none"] = mb.IP2P.concat_cond(ip2p, noise=noise, device="cpu")
    out.update(record_gligen(mb))
    return {k: v.float().contiguous() for k, v in out.items()}


#: (original block of the tiny GLIGEN's gated attention layers, query width); key width 32.
GLIGEN_BLOCKS = (("input_blocks.1.1.transformer_blocks.0", 64), ("middle_block.1.transformer_blocks.0", 128))


def gligen_state_dict() -> dict[str, torch.Tensor]:
    """Random weights in the original GLIGEN layout (shapes of a 32-wide text-only position net)."""
    from comfy.gligen import GatedSelfAttentionDense, PositionNet

    g = torch.Generator().manual_seed(5)
    sd = {}
    for block, width in GLIGEN_BLOCKS:
        for k, v in GatedSelfAttentionDense(width, 32, width // 64, 64).state_dict().items():
            sd[f"{block}.fuser.{k}"] = torch.randn(v.shape, generator=g) * (0.8 if "alpha" in k else 0.2)
    for k, v in PositionNet(32, 32).state_dict().items():
        sd[f"position_net.{k}"] = torch.randn(v.shape, generator=g) * 0.2
    return sd


def record_gligen(mb) -> dict[str, torch.Tensor]:
    import comfy.gligen

    sd = gligen_state_dict()
    gligen = comfy.gligen.load_gligen(dict(sd))
    g = torch.Generator().manual_seed(6)
    phrases = torch.randn(2, 32, generator=g)
    # (pooled, h, w, y, x) in 1/8 pixels, on a crop of 6×8 latent cells of an SD latent (8 px a cell)
    params = [(phrases[:1], 3, 4, 1, 2), (phrases[1:], 2, 2, 4, 5)]
    patch = gligen.set_position((1, 4, 6, 8), params, "cpu")
    out = {f"gligen.{k}": v for k, v in sd.items()}
    out["gligen_phrases"] = phrases
    for i, (_, width) in enumerate(GLIGEN_BLOCKS):
        x = torch.randn(1, 48, width, generator=g)
        out[f"gligen_x{i}"] = x
        out[f"gligen_out{i}"] = patch(x, {"transformer_index": i})
    return out


def main(argv=None) -> int:
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    tensors = record(args.comfyui)
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "unet_inputs.safetensors"), metadata={"comfyui": "0.8.0"})
    print(f"wrote {len(tensors)} tensors to {args.out}/unet_inputs.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
