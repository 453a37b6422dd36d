"""unCLIPConditioning and InstructPixToPixConditioning: image information carried in CONDITIONING.

Both only put data into the conditioning entries' extras, in ComfyUI's keys:

* ``unclip_conditioning``: a list of ``{"clip_vision_output", "strength", "noise_augmentation"}``
  (appended; strength 0 leaves the conditioning as it is). An unCLIP UNet (SD2.1-unclip:
  diffusers' ``class_embed_type="projection"``) takes it as ``class_labels``: the image embeds,
  noise-augmented to level ``round((max_noise_level − 1) · noise_augmentation)``, times
  ``strength``, summed over the list, concatenated with the noise level's embedding; the sampler
  feeds that as ``class_labels`` (:mod:`latentgraph.nodes.sampling.unet_inputs`).
* ``concat_latent_image``: the unscaled VAE latent of the pictures (cropped to the VAE's scale),
  which an 8-channel instruct-pix2pix UNet reads concatenated to its input (a 4-channel UNet
  refuses it); the LATENT output is zeros of that shape (the starting point, as ComfyUI returns).
  ComfyUI's plain CFG over both outputs is the three-way instruct-pix2pix guidance with image
  guidance 1; DualCFGGuider(cond1=positive, cond2=negative, negative=the negative without the
  picture) gives any image guidance (``cfg_cond2_negative``).
"""

from __future__ import annotations

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import Autoencoder
from latentgraph.nodes.text._cond import check_conditioning, with_values
from latentgraph.nodes.text.clip_vision import CLIP_VISION_OUTPUT, check_clip_vision_output


class unCLIPConditioning(Node):  # noqa: N801 (ComfyUI's class name)
    spec = NodeSpec(
        name="unCLIPConditioning",
        display_name="unCLIPConditioning",
        category="conditioning",
        description="Adds a CLIP image embedding for unCLIP models (strength, noise augmentation 0..1).",
        inputs=(
            In("conditioning", "CONDITIONING"),
            In("clip_vision_output", CLIP_VISION_OUTPUT),
            In("strength", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.01),
            In("noise_augmentation", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.01),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning, clip_vision_output, strength=1.0, noise_augmentation=0.0):
        conditioning = check_conditioning(conditioning, "conditioning")
        check_clip_vision_output(clip_vision_output)
        if not 0.0 <= float(noise_augmentation) <= 1.0:
            raise NodeInputError("noise_augmentation", f"must be between 0 and 1, got {noise_augmentation}")
        if strength == 0:
            return (conditioning,)
        entry = {"clip_vision_output": clip_vision_output, "strength": float(strength),
                 "noise_augmentation": float(noise_augmentation)}
        return (with_values(conditioning, {"unclip_conditioning": [entry]}, append=True),)


class InstructPixToPixConditioning(Node):
    spec = NodeSpec(
        name="InstructPixToPixConditioning",
        display_name="InstructPixToPixConditioning",
        category="conditioning/instructpix2pix",
        description="Encodes the picture to edit into both conditionings (for instruct-pix2pix models).",
        inputs=(In("positive", "CONDITIONING"), In("negative", "CONDITIONING"), In("vae", "VAE"), In("pixels", "IMAGE")),
        outputs=(Out("CONDITIONING", "positive"), Out("CONDITIONING", "negative"), Out("LATENT", "latent")),
    )

    def execute(self, ctx, positive, negative, vae, pixels):
        from latentgraph.nodes.latents import encode_images

        positive = check_conditioning(positive, "positive")
        negative = check_conditioning(negative, "negative")
        if not isinstance(vae, Autoencoder):
            raise NodeInputError("vae", f"expected a VAE, got {type(vae).__name__}")
        if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4:
            raise NodeInputError("pixels", "expected an IMAGE tensor [batch, height, width, channels]")
        concat = encode_images(vae, pixels, ctx.memory)  # centre-cropped to the VAE's scale, unscaled
        latent = {"samples": torch.zeros_like(concat)}
        values = {"concat_latent_image": concat}
        return (with_values(positive, values), with_values(negative, values), latent)


NODES = [unCLIPConditioning, InstructPixToPixConditioning]
