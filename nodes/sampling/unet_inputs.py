"""Conditioning that changes what the UNet is given, besides text: extra input channels, a class
embedding, and GLIGEN's grounding tokens (ComfyUI's ``c_concat``, ``y`` and ``gligen``).

Which of them a UNet takes is read off its diffusers config:

* **extra input channels** (``in_channels`` > the latent's): one latent's worth → an
  instruct-pix2pix UNet: ``concat_latent_image`` (the *unscaled* VAE latent of the picture to
  edit, as diffusers' pipeline feeds it), zeros when an entry has none; one more → an inpainting
  UNet: mask then masked-picture latent (scaled into the model's space), from the entry's
  ``concat_mask`` / ``concat_latent_image``, else the run's noise mask and input latent, else
  "repaint everything" (mask 1, a blank picture). Both are cropped to an entry's area.
* **class embedding** (``class_embed_type="projection"``: SD2.1 unCLIP): the entry's
  ``unclip_conditioning`` list — each CLIP image embedding noise-augmented on the model's cosine
  schedule to ``round(999 · noise_augmentation)``, joined with that level's sinusoidal
  embedding, times ``strength``; several are summed and the sum augmented once more (level
  ``round(999 · 0.05)``). Entries without one (the negative) get zeros, as ComfyUI and diffusers'
  unCLIP pipeline do. An SDXL UNet reads the same list in place of its pooled text (Revision).
* **GLIGEN** (``gligen = ("position", GLIGEN, boxes)``): the GLIGEN model's gated self-attention
  layers are attached to the UNet's transformer blocks for the calls of the entries that carry it
  (and of the negative's entries it is lent to, ComfyUI's rule), its box projection turns the
  phrases and boxes (in 1/8 pixels, as fractions of the size of the entry's crop) into grounding
  tokens.

Everything is prepared once per run (:func:`prepare`), then gathered per UNet call
(:func:`call_kwargs`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel

#: ComfyUI's unCLIP: the summed embedding of several images is augmented again at this level.
UNCLIP_MERGE_AUGMENTATION = 0.05
#: Training steps of the unCLIP noise augmentor (cosine schedule).
UNCLIP_NOISE_LEVELS = 1000
#: The unCLIP noise seed is the sampler's seed minus this (ComfyUI's offset).
UNCLIP_SEED_OFFSET = 10
#: GLIGEN's box projection takes this many objects (padding is masked out).
GLIGEN_MAX_OBJECTS = 30
#: A blank picture (pixel value 0) in SD latent space, per channel: what an inpainting UNet is given
#: when there is nothing to keep (ComfyUI's values).
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)
#: Boxes are stored in 1/8 pixels (ComfyUI's GLIGENTextBoxApply).
BOX_UNIT = 8
#: Where :func:`call_kwargs` hands the GLIGEN model to :func:`unet_call` (not a diffusers argument).
GLIGEN_MODEL_KEY = "latentgraph_gligen"


@dataclass(frozen=True)
class RunInputs:
    """What the sampler knows about the run that conditionings may need."""

    seed: int | None = None
    latent: Tensor | None = None  # the input latent in the model's space (zeros for txt2img)
    noise_mask: Tensor | None = None  # the LATENT's noise mask, 1 = repaint


@dataclass(frozen=True, eq=False)
class GligenInput:
    """One entry's grounding: the GLIGEN model and its padded boxes / phrases / mask."""

    model: Any  # latentgraph.nodes.text.gligen.GligenModel
    placements: tuple[tuple[str, Any], ...]  # (UNet transformer-block path, its gated attention)
    boxes: Tensor  # [1, 30, 4] x0, y0, x1, y1 in latent cells
    embeddings: Tensor  # [1, 30, key_dim]
    masks: Tensor  # [1, 30]


@dataclass(frozen=True, eq=False)
class EntryInputs:
    """One entry's non-text UNet inputs, prepared for a run."""

    concat: Tensor | None = None  # [1 or B, extra channels, h, w] over the whole latent
    class_labels: Tensor | None = None  # [1, projection input]
    gligen: GligenInput | None = None


# -- what the UNet takes ----------------------------------------------------------------------------
def extra_channels(model: DiffusionModel) -> int:
    """Input channels beyond the latent's (4 for instruct-pix2pix, 5 for inpainting)."""
    return model.in_channels - latent_channels(model)


def latent_channels(model: DiffusionModel) -> int:
    config = model.unet.config
    return int((model.info or {}).get("latent_channels") or getattr(config, "out_channels", None) or config.in_channels)


def takes_image_embedding(model: DiffusionModel) -> bool:
    return getattr(model.unet.config, "class_embed_type", None) == "projection"


def check_extras(name: str, extras: Mapping[str, Any]) -> None:
    """Shape checks that need no model (CONDITIONING validation)."""
    for entry in extras.get("unclip_conditioning") or ():
        if not isinstance(entry, Mapping) or "clip_vision_output" not in entry:
            raise NodeInputError(name, "its 'unclip_conditioning' entries must come from unCLIPConditioning")
    for key in ("concat_latent_image", "concat_mask"):
        value = extras.get(key)
        if value is not None and not isinstance(value, Tensor):
            raise NodeInputError(name, f"its '{key}' is a {type(value).__name__}, not a tensor")
    gligen = extras.get("gligen")
    if gligen is not None:
        if not (isinstance(gligen, (list, tuple)) and len(gligen) == 3):
            raise NodeInputError(name, "its 'gligen' must be (kind, GLIGEN, boxes) as GLIGENTextBoxApply makes it")
        from latentgraph.nodes.text.gligen import GligenModel

        if not isinstance(gligen[1], GligenModel):
            raise NodeInputError(name, f"its 'gligen' model is a {type(gligen[1]).__name__}, not a GLIGEN")
        if gligen[0] == "position" and len(gligen[2]) > GLIGEN_MAX_OBJECTS:
            raise NodeInputError(name, f"GLIGEN takes at most {GLIGEN_MAX_OBJECTS} boxes, got {len(gligen[2])}")


# -- preparing one entry ----------------------------------------------------------------------------
def prepare(model: DiffusionModel, name: str, extras: Mapping[str, Any], latent_shape: Sequence[int],
            downscale: int, run: RunInputs | None) -> EntryInputs | None:
    """The entry's UNet inputs for a run on latents of ``latent_shape`` (``None``: it has none)."""
    run = run or RunInputs()
    concat = _concat(model, name, extras, latent_shape, run)
    inputs = EntryInputs(
        concat=concat.to(model.device, model.dtype) if concat is not None else None,
        class_labels=_class_labels(model, name, extras, run),
        gligen=_gligen(model, name, extras, downscale),
    )
    if inputs.concat is None and inputs.class_labels is None and inputs.gligen is None:
        return None
    return inputs


def _concat(model: DiffusionModel, name: str, extras: Mapping[str, Any], latent_shape: Sequence[int],
            run: RunInputs) -> Tensor | None:
    from latentgraph.nodes.sampling.run import process_latent_in

    extra, channels = extra_channels(model), latent_channels(model)
    image, mask = extras.get("concat_latent_image"), extras.get("concat_mask")
    batch, dims = int(latent_shape[0]), (int(latent_shape[2]), int(latent_shape[3]))
    if extra == 0:
        if image is not None and mask is None:
            raise NodeInputError(name, f"it carries a picture for an instruct-pix2pix model (concat_latent_image, "
                                 f"from InstructPixToPixConditioning) but the model ({model.arch}) takes "
                                 f"{model.in_channels} input channels, no extra picture: use an instruct-pix2pix model")
        return None  # InpaintModelConditioning on a plain model: only its noise mask acts (as in ComfyUI)
    if image is not None and image.shape[1] != channels:
        raise NodeInputError(name, f"its concat_latent_image has {image.shape[1]} channels but the model's latents "
                             f"have {channels}: it was encoded by a VAE of another family")
    if extra == channels:  # instruct-pix2pix: the picture's latent as it came from the VAE
        if image is None:
            return torch.zeros(batch, channels, *dims)
        return spread_to_batch(_fit(image.float(), dims), batch)
    if extra == channels + 1:  # inpainting: mask, masked picture (in the model's space)
        if mask is None and run.noise_mask is None:
            blank = torch.tensor(BLANK_INPAINT_LATENT[:channels] + (0.0,) * max(0, channels - 4))
            return torch.cat([torch.ones(batch, 1, *dims), blank.view(1, -1, 1, 1).expand(batch, -1, *dims)], dim=1)
        if image is not None:
            image = process_latent_in(model, _fit(image.float(), dims))
        elif run.latent is not None:
            image = run.latent.float().cpu()
        else:
            image = torch.zeros(1, channels, *dims)
        mask = mask if mask is not None else run.noise_mask
        mask = mask.float().cpu()
        if mask.ndim == 4:
            mask = mask[:, :1]
        mask = mask.reshape(-1, 1, *mask.shape[-2:])
        mask = spread_to_batch(_fit(mask, dims).round(), batch)
        return torch.cat([mask, spread_to_batch(image, batch)], dim=1)
    raise NodeInputError(name, f"the model takes {model.in_channels} input channels: neither instruct-pix2pix "
                         f"({2 * channels}) nor inpainting ({2 * channels + 1}); its extra inputs are not known")


def _fit(t: Tensor, dims: tuple[int, int]) -> Tensor:
    """Cropped about the centre to the latent's aspect, then resized bilinearly (ComfyUI's rule)."""
    from latentgraph.nodes.images import center_crop_to_aspect

    if tuple(t.shape[-2:]) == dims:
        return t
    return F.interpolate(center_crop_to_aspect(t, dims[1], dims[0]), size=dims, mode="bilinear")


def spread_to_batch(t: Tensor, batch: int) -> Tensor:
    """``batch`` rows picked evenly from ``t``'s (ComfyUI's resize to batch size)."""
    have = t.shape[0]
    if have == batch:
        return t
    if batch <= 1 or have == 1:
        return t[:1].expand(batch, *t.shape[1:]) if batch > 1 else t[:batch]
    scale = (have - 1) / (batch - 1)
    return t[[min(round(i * scale), have - 1) for i in range(batch)]]


# -- unCLIP ---------------------------------------------------------------------------------------------
def _class_labels(model: DiffusionModel, name: str, extras: Mapping[str, Any], run: RunInputs) -> Tensor | None:
    entries = extras.get("unclip_conditioning")
    if not takes_image_embedding(model):
        if entries and getattr(model.unet.config, "addition_embed_type", None) != "text_time":
            raise NodeInputError(name, f"it carries a CLIP image embedding (unCLIPConditioning) but the model "
                                 f"({model.arch}) is not an unCLIP model: use an unCLIP checkpoint")
        return None
    width = int(model.unet.config.projection_class_embeddings_input_dim)
    if not entries:
        return torch.zeros(1, width, device=model.device, dtype=model.dtype)
    merge = float(extras.get("unclip_noise_augment_merge", UNCLIP_MERGE_AUGMENTATION))  # ComfyUI reads this key too
    out = image_embedding(name, entries, width // 2, run.seed, merge)
    return out.to(model.device, model.dtype)


def image_embedding(name: str, entries: Sequence[Mapping[str, Any]], dim: int, seed: int | None,
                    merge_augmentation: float) -> Tensor:
    """``[1, 2·dim]``: the entries' noise-augmented CLIP image embeddings with their noise-level
    embeddings, weighted by strength, summed (every image of every entry counts once)."""
    augmentor = NoiseAugmentor(dim)
    generator = torch.Generator("cpu")
    parts = []
    for entry in entries:
        output = entry["clip_vision_output"]
        embeds = output.get("image_embeds") if isinstance(output, Mapping) else getattr(output, "image_embeds", None)
        if not isinstance(embeds, Tensor) or embeds.shape[-1] != dim:
            got = tuple(embeds.shape) if isinstance(embeds, Tensor) else type(embeds).__name__
            raise NodeInputError(name, f"its CLIP image embedding has shape {got} but the model takes {dim}-wide "
                                 "embeddings: use the CLIP vision model the unCLIP model was trained with")
        for row in embeds.float().cpu().reshape(-1, dim):
            generator.manual_seed(int(seed or 0) - UNCLIP_SEED_OFFSET)
            level = augmentor.level(float(entry["noise_augmentation"]))
            parts.append(augmentor(row[None], level, generator) * float(entry["strength"]))
    if len(parts) == 1:
        return parts[0]
    total = torch.stack(parts).sum(0)
    return augmentor(total[:, :dim], augmentor.level(merge_augmentation), generator)


class NoiseAugmentor:
    """unCLIP's noise augmentation of an embedding: forward diffusion on a cosine schedule to a
    given level, then the level's sinusoidal embedding appended (data mean 0 and std 1, as
    ComfyUI uses and diffusers' image normaliser starts)."""

    def __init__(self, dim: int, levels: int = UNCLIP_NOISE_LEVELS):
        from latentgraph.nodes.sampling.model_sampling import make_betas

        self.dim = dim
        self.levels = levels
        self.alphas_cumprod = torch.cumprod(1.0 - make_betas("squaredcos_cap_v2", levels, 0.0, 0.0), 0).float()

    def level(self, augmentation: float) -> int:
        return round((self.levels - 1) * augmentation)

    def __call__(self, x: Tensor, level: int, generator: torch.Generator) -> Tensor:
        from diffusers.models.embeddings import get_timestep_embedding

        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        a = self.alphas_cumprod[level]
        noisy = a.sqrt() * x + (1 - a).sqrt() * noise
        t = torch.tensor([level])
        emb = get_timestep_embedding(t, self.dim, flip_sin_to_cos=True, downscale_freq_shift=0).to(x.dtype)
        return torch.cat([noisy, emb.expand(x.shape[0], -1)], dim=1)


def revision_pooled(name: str, extras: Mapping[str, Any], width: int, run: RunInputs | None) -> Tensor | None:
    """SDXL Revision: CLIP image embeddings in place of the pooled text (``None`` without any)."""
    entries = extras.get("unclip_conditioning")
    if not entries:
        return None
    seed = run.seed if run is not None else None
    return image_embedding(name, entries, width, seed, 0.0)[:, :width]


# -- GLIGEN ---------------------------------------------------------------------------------------------
def _gligen(model: DiffusionModel, name: str, extras: Mapping[str, Any], downscale: int) -> GligenInput | None:
    value = extras.get("gligen")
    if value is None:
        return None
    kind, gligen, boxes = value
    placements = tuple(fuser_paths(model, name, gligen))  # refuses a GLIGEN that does not fit, before the first step
    key_dim = int(gligen.key_dim)
    coords = torch.zeros(1, GLIGEN_MAX_OBJECTS, 4)
    embeddings = torch.zeros(1, GLIGEN_MAX_OBJECTS, key_dim)
    masks = torch.zeros(1, GLIGEN_MAX_OBJECTS)
    per_cell = BOX_UNIT / downscale  # latent cells per box unit
    for i, box in enumerate(boxes if kind == "position" else ()):
        pooled, h, w, y, x = box
        pooled = pooled.reshape(-1)
        if pooled.shape[0] != key_dim:
            raise NodeInputError(name, f"a GLIGEN phrase embedding is {pooled.shape[0]} wide but the GLIGEN model "
                                 f"takes {key_dim}: encode the phrase with the model's own CLIP")
        coords[0, i] = torch.tensor([x, y, x + w, y + h], dtype=torch.float32) * per_cell
        embeddings[0, i] = pooled.float().cpu()
        masks[0, i] = 1.0
    gligen.position_net.to(model.device, model.dtype)
    for _, fuser in gligen.fusers:
        fuser.to(model.device, model.dtype)
    def put(t: Tensor) -> Tensor:
        return t.to(model.device, model.dtype)

    return GligenInput(gligen, placements, put(coords), put(embeddings), put(masks))


def fuser_paths(model: DiffusionModel, name: str, gligen: Any) -> list[tuple[str, Any]]:
    """(diffusers transformer-block path, gated attention) for each of the GLIGEN's layers."""
    from latentgraph.nodes.original_layout import unet_module_map

    module_map = unet_module_map(model.unet.config)
    to_diffusers = {orig: path for path, (orig, _) in module_map.items() if ".attentions." in path}
    out = []
    for block, fuser in gligen.fusers:
        head, _, rest = block.partition(".transformer_blocks.")
        path = to_diffusers.get(head)
        target = f"{path}.transformer_blocks.{rest}" if path is not None else None
        try:
            module = model.unet.get_submodule(target) if target else None
        except AttributeError:
            module = None
        dim = getattr(getattr(module, "norm1", None), "normalized_shape", (None,))[0]
        if module is None or dim != fuser.linear.out_features:
            raise NodeInputError(name, f"the GLIGEN model ({gligen.info.get('source', 'GLIGEN')}) has a layer for "
                                 f"{block} which this model ({model.arch}) lacks or has at another width: "
                                 "it is for another model family")
        out.append((target, fuser))
    return out


@contextlib.contextmanager
def gligen_attached(model: DiffusionModel, gligen: GligenInput) -> Iterator[None]:
    """The GLIGEN's layers inside the (shared) UNet for the ``with`` block only."""
    unet = model.unet
    placed = [(unet.get_submodule(path), fuser) for path, fuser in gligen.placements]
    saved = [(block, block._modules.get("fuser")) for block, _ in placed]
    old_net = unet._modules.get("position_net")
    try:
        for block, fuser in placed:
            block.fuser = fuser
        unet.position_net = gligen.model.position_net
        yield
    finally:
        for block, old in saved:
            if old is None:
                del block.fuser
            else:
                block.fuser = old
        if old_net is None:
            del unet.position_net
        else:
            unet.position_net = old_net


# -- one UNet call --------------------------------------------------------------------------------------
def group_key(inputs: EntryInputs | None) -> tuple:
    """Entries share a UNet call only when they agree on which of these inputs they have."""
    if inputs is None:
        return (False, False, None)
    gligen = id(inputs.gligen.model) if inputs.gligen is not None else None
    return (inputs.concat is not None, inputs.class_labels is not None, gligen)


def call_kwargs(items: Sequence[Any], crops: Sequence[Tensor]) -> dict[str, Any]:
    """The extra UNet keyword arguments for guidance ``CondItem``s sharing one call, each on its
    crop: ``c_concat`` (channels to append to the input, consumed by :func:`unet_call`),
    ``class_labels``, ``cross_attention_kwargs["gligen"]`` (boxes relative to each crop)."""
    first = items[0].unet_inputs
    if first is None:
        return {}
    batch = crops[0].shape[0]
    inputs: list[EntryInputs] = [it.unet_inputs for it in items]
    out: dict[str, Any] = {}

    def rows(t: Tensor) -> Tensor:
        return t.expand(batch, *t.shape[1:]) if t.shape[0] == 1 else spread_to_batch(t, batch)

    if first.concat is not None:
        parts = []
        for item, crop, i in zip(items, crops, inputs):
            concat = i.concat
            if item.area is not None:
                y, x = item.area[2], item.area[3]
                concat = concat[:, :, y : y + crop.shape[2], x : x + crop.shape[3]]
            parts.append(rows(concat))
        out["c_concat"] = torch.cat(parts)
    if first.class_labels is not None:
        out["class_labels"] = torch.cat([rows(i.class_labels) for i in inputs])
    if first.gligen is not None:
        boxes = []
        for crop, i in zip(crops, inputs):  # divided by the crop's size, not moved to it (ComfyUI's rule)
            box = i.gligen.boxes
            size = torch.tensor([crop.shape[3], crop.shape[2]] * 2, dtype=box.dtype, device=box.device)
            boxes.append(rows(box / size))
        out["cross_attention_kwargs"] = {"gligen": {
            "boxes": torch.cat(boxes),
            "positive_embeddings": torch.cat([rows(i.gligen.embeddings) for i in inputs]),
            "masks": torch.cat([rows(i.gligen.masks) for i in inputs]),
        }, GLIGEN_MODEL_KEY: first.gligen}
    return out


def unet_call(model: DiffusionModel, x: Tensor, timestep: Tensor, **kw: Any) -> Tensor:
    """The UNet itself, with the inputs :func:`call_kwargs` gathered."""
    concat = kw.pop("c_concat", None)
    if concat is not None:
        x = torch.cat([x, concat.to(x.device, x.dtype)], dim=1)
    cross = kw.get("cross_attention_kwargs")
    gligen = None
    if cross is not None and GLIGEN_MODEL_KEY in cross:
        cross = dict(cross)
        gligen = cross.pop(GLIGEN_MODEL_KEY)
        kw["cross_attention_kwargs"] = cross
    if gligen is None:
        return model.unet(x, timestep, return_dict=False, **kw)[0]
    with gligen_attached(model, gligen):
        return model.unet(x, timestep, return_dict=False, **kw)[0]
