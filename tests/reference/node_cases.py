"""The node parity cases: deterministic inputs and the call trees run by ComfyUI's nodes
(``record_nodes.py``, which stores their outputs) and by latentgraph's (read back from the stored
``nodes.json`` by ``tests/test_comfyui_node_parity.py``). Torch only: it runs in both environments.
"""

from __future__ import annotations

import torch

#: The width of the stored prompt embeddings (the fake UNet reads their mean per token).
EMB_DIM = 8


# --------------------------------------------------------------------------- deterministic inputs


def seeded(shape, seed: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Uniform in [lo, hi) from a CPU generator: the same tensor on every machine."""
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(shape, generator=g)).float()


def smooth_mask(b: int, h: int, w: int, phase: float = 0.0) -> torch.Tensor:
    """A [b, h, w] mask with soft edges and exact 0/1 plateaus (grow/feather/threshold all act)."""
    yy = torch.linspace(-1, 1, h).reshape(1, h, 1)
    xx = torch.linspace(-1, 1, w).reshape(1, 1, w)
    k = torch.arange(b, dtype=torch.float32).reshape(b, 1, 1)
    r = torch.sqrt((yy - 0.2 * k) ** 2 + (xx + 0.1 + phase) ** 2)
    return (1.6 - 2.2 * r).clamp(0, 1).float()


def embedding(name: str, tokens: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(sum(map(ord, name)) * 13 + tokens)
    return (torch.randn((1, tokens, EMB_DIM), generator=g) + 0.4 * (len(name) % 3)).float()


def inputs() -> dict[str, torch.Tensor]:
    """Every stored input tensor, by key."""
    t = {
        "image_a": seeded((2, 10, 12, 3), 1),
        "image_b": seeded((2, 10, 12, 3), 2),
        "image_small": seeded((1, 7, 9, 3), 3),
        "image_rgba": seeded((1, 10, 12, 4), 4),
        "mask_a": smooth_mask(2, 10, 12),
        "mask_b": smooth_mask(1, 6, 5, phase=0.3),
        "mask_one": smooth_mask(1, 10, 12, phase=-0.2),
        "latent_a": seeded((2, 4, 8, 6), 5, -2.0, 2.0),
        "latent_b": seeded((2, 4, 8, 6), 6, -2.0, 2.0),
        "latent_small": seeded((1, 4, 5, 4), 7, -2.0, 2.0),
        "latent_one": seeded((1, 4, 8, 6), 9, -2.0, 2.0),
        "latent_one_b": seeded((1, 4, 8, 6), 10, -2.0, 2.0),
        "latent_big": seeded((1, 4, 10, 12), 11, -2.0, 2.0),
        "noise_mask_a": smooth_mask(2, 10, 12).unsqueeze(1),  # SetLatentNoiseMask's [B, 1, H, W]
        "latent_mask": smooth_mask(1, 64, 48),
        "emb_A": embedding("A", 3),
        "emb_B": embedding("B", 5),
        "emb_C": embedding("C", 3),
        "emb_N": embedding("N", 3),
        "emb_E": embedding("E", 3),
        "pooled_A": seeded((1, 6), 8, -1.0, 1.0),
    }
    # an image with exact colour matches for ImageColorToMask (0xFF8000 and 0x00FF00)
    c = torch.zeros(1, 6, 6, 3)
    c[0, :3, :, 0], c[0, :3, :, 1] = 1.0, 128 / 255
    c[0, 3:, 2:, 1] = 1.0
    t["image_colors"] = c
    return t


# --------------------------------------------------------------------------- call-tree helpers


def T(key):  # noqa: N802 - a stored tensor
    return {"tensor": key}


def L(samples, **extra):  # noqa: N802 - a LATENT
    return {"latent": {"samples": samples, **extra}}


def cond(*items):
    """CONDITIONING: items are (embedding key, extras) or an embedding key alone."""
    out = []
    for it in items:
        emb, extras = (it, {}) if isinstance(it, str) else it
        out.append([T(emb), extras])
    return {"conditioning": out}


def call(node, out=0, **args):
    """A node call; ``out`` picks the output (``index`` is an input name of some nodes)."""
    return {"call": node, "args": args, "index": out}


MODEL = {"model": "fake_sd1"}


def tensor_cases() -> list[tuple[str, dict]]:
    """Pure image / latent / mask / conditioning maths: (case name, call tree)."""
    c: list[tuple[str, dict]] = []
    A, B = T("image_a"), T("image_b")
    for mode in ("normal", "multiply", "screen", "overlay", "soft_light", "difference"):
        c.append((f"ImageBlend/{mode}", call("ImageBlend", image1=A, image2=B, blend_factor=0.35, blend_mode=mode)))
    c.append(("ImageBlend/resized", call("ImageBlend", image1=A, image2=T("image_small"), blend_factor=0.6,
                                         blend_mode="overlay")))
    c.append(("ImageSharpen/r1", call("ImageSharpen", image=A, sharpen_radius=1, sigma=1.0, alpha=0.5)))
    c.append(("ImageSharpen/r3", call("ImageSharpen", image=A, sharpen_radius=3, sigma=0.6, alpha=2.0)))
    c.append(("ImageBlur/r1", call("ImageBlur", image=A, blur_radius=1, sigma=1.0)))
    c.append(("ImageBlur/r4", call("ImageBlur", image=A, blur_radius=4, sigma=2.5)))
    c.append(("ImageInvert", call("ImageInvert", image=A)))
    for m in ("nearest-exact", "bilinear", "area", "bicubic", "lanczos"):
        c.append((f"ImageScaleBy/{m}/1.5", call("ImageScaleBy", image=A, upscale_method=m, scale_by=1.5)))
        c.append((f"ImageScaleBy/{m}/0.45", call("ImageScaleBy", image=A, upscale_method=m, scale_by=0.45)))
    c.append(("ImageScale/bilinear_center", call("ImageScale", image=A, upscale_method="bilinear", width=7,
                                                 height=9, crop="center")))
    c.append(("ImageScale/bicubic_keep_ratio", call("ImageScale", image=A, upscale_method="bicubic", width=20,
                                                    height=0, crop="disabled")))
    la, lb = L(T("latent_a")), L(T("latent_b"))
    for m in ("nearest-exact", "bilinear", "area", "bicubic", "bislerp"):
        c.append((f"LatentUpscaleBy/{m}/1.5", call("LatentUpscaleBy", samples=la, upscale_method=m, scale_by=1.5)))
    c.append(("LatentUpscaleBy/bislerp/0.6", call("LatentUpscaleBy", samples=la, upscale_method="bislerp", scale_by=0.6)))
    c.append(("LatentUpscale/bislerp_center", call("LatentUpscale", samples=la, upscale_method="bislerp", width=72,
                                                   height=40, crop="center")))
    c.append(("LatentUpscale/area_keep_ratio", call("LatentUpscale", samples=la, upscale_method="area", width=0,
                                                    height=96, crop="disabled")))
    c.append(("LatentBlend", call("LatentBlend", samples1=la, samples2=lb, blend_factor=0.3)))
    c.append(("LatentBlend/resized", call("LatentBlend", samples1=la, samples2=L(T("latent_small")), blend_factor=0.7)))
    # batch 1: ComfyUI divides [B,C,H,W] by the [B,H,W] norms, which broadcasts only for B = 1 (or B = C)
    l1 = L(T("latent_one"))
    c.append(("LatentInterpolate/0.4", call("LatentInterpolate", samples1=l1, samples2=L(T("latent_small")), ratio=0.4)))
    c.append(("LatentInterpolate/same_size", call("LatentInterpolate", samples1=l1,
                                                  samples2=L(T("latent_one_b")), ratio=0.75)))
    c.append(("LatentAdd", call("LatentAdd", samples1=la, samples2=lb)))
    c.append(("LatentSubtract/resized", call("LatentSubtract", samples1=la, samples2=L(T("latent_small")))))
    c.append(("LatentMultiply", call("LatentMultiply", samples=la, multiplier=-0.7)))
    c.append(("LatentBatchSeedBehavior/fixed",
              call("LatentBatchSeedBehavior", samples=L(T("latent_a"), batch_index=[3, 4]), seed_behavior="fixed")))
    c.append(("LatentBatchSeedBehavior/fixed_no_index",
              call("LatentBatchSeedBehavior", samples=la, seed_behavior="fixed")))
    c.append(("LatentBatchSeedBehavior/random",
              call("LatentBatchSeedBehavior", samples=L(T("latent_a"), batch_index=[3, 4]), seed_behavior="random")))
    c.append(("LatentComposite/plain", call("LatentComposite", samples_to=la, samples_from=L(T("latent_small")),
                                            x=16, y=8, feather=0)))
    c.append(("LatentComposite/feather", call("LatentComposite", samples_to=la, samples_from=L(T("latent_small")),
                                              x=8, y=24, feather=16)))
    c.append(("LatentCompositeMasked", call("LatentCompositeMasked", destination=la, source=L(T("latent_small")),
                                            x=8, y=16, resize_source=False, mask=T("mask_b"))))
    c.append(("ImageCompositeMasked", call("ImageCompositeMasked", destination=A, source=T("image_small"),
                                           x=5, y=4, resize_source=False, mask=T("mask_b"))))
    c.append(("ImageCompositeMasked/resize", call("ImageCompositeMasked", destination=A, source=T("image_small"),
                                                  x=0, y=0, resize_source=True, mask=T("mask_one"))))
    M = T("mask_a")
    for expand, taper in ((2, True), (2, False), (-1, True), (-2, False)):
        c.append((f"GrowMask/{expand}/{taper}", call("GrowMask", mask=M, expand=expand, tapered_corners=taper)))
    c.append(("FeatherMask", call("FeatherMask", mask=M, left=3, top=2, right=1, bottom=4)))
    c.append(("FeatherMask/oversize", call("FeatherMask", mask=M, left=20, top=0, right=7, bottom=11)))
    c.append(("ThresholdMask", call("ThresholdMask", mask=M, value=0.4)))
    for op in ("multiply", "add", "subtract", "and", "or", "xor"):
        c.append((f"MaskComposite/{op}", call("MaskComposite", destination=M, source=T("mask_b"), x=4, y=6, operation=op)))
    c.append(("MaskComposite/overhang", call("MaskComposite", destination=M, source=T("mask_b"), x=10, y=7,
                                             operation="add")))
    c.append(("SolidMask", call("SolidMask", value=0.3, width=7, height=5)))
    c.append(("InvertMask", call("InvertMask", mask=M)))
    for ch in ("red", "green", "blue"):
        c.append((f"ImageToMask/{ch}", call("ImageToMask", image=A, channel=ch)))
    c.append(("ImageToMask/alpha", call("ImageToMask", image=T("image_rgba"), channel="alpha")))
    c.append(("MaskToImage", call("MaskToImage", mask=M)))
    c.append(("CropMask", call("CropMask", mask=M, x=3, y=2, width=6, height=20)))
    c.append(("ImageColorToMask", call("ImageColorToMask", image=T("image_colors"), color=0xFF8000)))
    c.append(("SetLatentNoiseMask", call("SetLatentNoiseMask", samples=la, mask=M)))
    c.append(("ImagePadForOutpaint", call("ImagePadForOutpaint", image=T("image_small"), left=3, top=0, right=2,
                                          bottom=5, feathering=4)))
    # conditioning values (their tensors and extras)
    P = cond(("emb_A", {"pooled_output": T("pooled_A")}))
    c.append(("ConditioningAverage", call("ConditioningAverage", conditioning_to=cond("emb_A", "emb_C"),
                                          conditioning_from=cond("emb_B"), conditioning_to_strength=0.3)))
    c.append(("ConditioningConcat", call("ConditioningConcat", conditioning_to=cond("emb_A", "emb_C"),
                                         conditioning_from=cond("emb_B"))))
    c.append(("ConditioningZeroOut", call("ConditioningZeroOut", conditioning=P)))
    c.append(("ConditioningSetArea", call("ConditioningSetArea", conditioning=P, width=64, height=40, x=8, y=16,
                                          strength=0.8)))
    c.append(("ConditioningSetAreaPercentage", call("ConditioningSetAreaPercentage", conditioning=P, width=0.5,
                                                    height=0.3, x=0.25, y=0.1, strength=1.2)))
    c.append(("ConditioningSetMask", call("ConditioningSetMask", conditioning=P, mask=T("mask_b"),
                                          set_cond_area="mask bounds", strength=0.7)))
    c.append(("ConditioningSetTimestepRange", call("ConditioningSetTimestepRange", conditioning=P, start=0.2, end=0.7)))
    c.append(("ConditioningSetAreaStrength", call("ConditioningSetAreaStrength", conditioning=P, strength=1.7)))
    c.append(("ConditioningCombine", call("ConditioningCombine", conditioning_1=P, conditioning_2=cond("emb_B"))))
    c.extend(more_tensor_cases())
    return c


def more_tensor_cases() -> list[tuple[str, dict]]:
    """Batch, crop/flip/rotate, alpha, stitching, fitting, latent operations, noise, quantize."""
    c: list[tuple[str, dict]] = []
    A, la = T("image_a"), L(T("latent_a"))
    masked = L(T("latent_a"), noise_mask=T("noise_mask_a"), batch_index=[2, 5])
    c.append(("LatentFromBatch", call("LatentFromBatch", samples=masked, batch_index=1, length=1)))
    c.append(("LatentFromBatch/past_end", call("LatentFromBatch", samples=la, batch_index=5, length=3)))
    c.append(("RepeatLatentBatch", call("RepeatLatentBatch", samples=masked, amount=3)))
    c.append(("LatentBatch/resized", call("LatentBatch", samples1=la, samples2=L(T("latent_small")))))
    # ≥ 8 cells: ComfyUI pulls x, y back to keep 64 px (on smaller latents it returns an empty one)
    big = L(T("latent_big"))
    c.append(("LatentCrop", call("LatentCrop", samples=big, x=8, y=16, width=24, height=32)))
    c.append(("LatentCrop/pulled_back", call("LatentCrop", samples=big, x=56, y=40, width=64, height=64)))
    c.append(("LatentFlip/x", call("LatentFlip", samples=la, flip_method="x-axis: vertically")))
    c.append(("LatentFlip/y", call("LatentFlip", samples=la, flip_method="y-axis: horizontally")))
    c.append(("LatentRotate/90", call("LatentRotate", samples=la, rotation="90 degrees")))
    c.append(("LatentRotate/270", call("LatentRotate", samples=la, rotation="270 degrees")))
    c.append(("LatentCut/x", call("LatentCut", samples=la, dim="x", index=1, amount=3)))
    c.append(("LatentCut/y_negative", call("LatentCut", samples=la, dim="y", index=-3, amount=2)))
    c.append(("LatentConcat/x", call("LatentConcat", samples1=la, samples2=L(T("latent_b")), dim="x")))
    c.append(("LatentConcat/-y", call("LatentConcat", samples1=la, samples2=L(T("latent_b")), dim="-y")))
    sharpen = call("LatentOperationSharpen", sharpen_radius=2, sigma=0.8, alpha=0.3)
    tonemap = call("LatentOperationTonemapReinhard", multiplier=0.6)
    c.append(("LatentApplyOperation/sharpen", call("LatentApplyOperation", samples=la, operation=sharpen)))
    c.append(("LatentApplyOperation/tonemap", call("LatentApplyOperation", samples=la, operation=tonemap)))
    strong = call("LatentOperationSharpen", sharpen_radius=3, sigma=0.6, alpha=2.0)
    c.append(("LatentApplyOperation/sharpen_strong", call("LatentApplyOperation", samples=la, operation=strong)))
    c.append(("ImageCrop", call("ImageCrop", image=A, x=3, y=2, width=6, height=20)))
    c.append(("ImageFlip", call("ImageFlip", image=A, flip_method="y-axis: horizontally")))
    c.append(("ImageRotate/90", call("ImageRotate", image=A, rotation="90 degrees")))
    c.append(("ImageBatch/resized", call("ImageBatch", image1=A, image2=T("image_small"))))
    c.append(("ImageFromBatch", call("ImageFromBatch", image=A, batch_index=1, length=4)))
    c.append(("RepeatImageBatch", call("RepeatImageBatch", image=T("image_small"), amount=3)))
    c.append(("JoinImageWithAlpha", call("JoinImageWithAlpha", image=A, alpha=T("mask_a"))))
    c.append(("SplitImageWithAlpha/image", call("SplitImageWithAlpha", image=T("image_rgba"))))
    c.append(("SplitImageWithAlpha/mask", call("SplitImageWithAlpha", out=1, image=T("image_rgba"))))
    for mode in ("SRC_OVER", "DST_IN", "XOR", "MULTIPLY", "OVERLAY", "ADD"):
        c.append((f"PorterDuffImageComposite/{mode}", call(
            "PorterDuffImageComposite", source=A, source_alpha=T("mask_a"), destination=T("image_b"),
            destination_alpha=T("mask_one"), mode=mode)))
    c.append(("PorterDuffImageComposite/alpha", call(
        "PorterDuffImageComposite", out=1, source=A, source_alpha=T("mask_a"), destination=T("image_b"),
        destination_alpha=T("mask_one"), mode="SRC_ATOP")))
    c.append(("ImageStitch/right_spacing", call("ImageStitch", image1=A, image2=T("image_small"), direction="right",
                                                match_image_size=True, spacing_width=2, spacing_color="red")))
    c.append(("ImageStitch/down_no_match", call("ImageStitch", image1=A, image2=T("image_small"), direction="down",
                                                 match_image_size=False, spacing_width=0, spacing_color="white")))
    c.append(("ResizeAndPadImage/area", call("ResizeAndPadImage", image=A, target_width=16, target_height=16,
                                             padding_color="white", interpolation="area")))
    c.append(("ResizeAndPadImage/bilinear", call("ResizeAndPadImage", image=A, target_width=9, target_height=14,
                                                 padding_color="black", interpolation="bilinear")))
    c.append(("ImageScaleToTotalPixels", call("ImageScaleToTotalPixels", image=A, upscale_method="bilinear",
                                              megapixels=0.0003, resolution_steps=1)))
    c.append(("ImageScaleToMaxDimension", call("ImageScaleToMaxDimension", image=A, upscale_method="area",
                                               largest_size=7)))
    c.append(("ImageAddNoise", call("ImageAddNoise", image=A, seed=3, strength=0.2)))
    for dither in ("none", "floyd-steinberg", "bayer-4"):
        c.append((f"ImageQuantize/{dither}", call("ImageQuantize", image=A, colors=5, dither=dither)))
    for op in ("erode", "dilate", "gradient", "top_hat"):
        c.append((f"Morphology/{op}", call("Morphology", image=A, operation=op, kernel_size=3)))
    c.append(("EmptyImage", call("EmptyImage", width=5, height=3, batch_size=2, color=0x3366CC)))
    # edges: plateaus at exactly 0/1, borders, batch mismatches, resized sources
    M = T("mask_a")
    c.append(("ThresholdMask/0", call("ThresholdMask", mask=M, value=0.0)))
    c.append(("ThresholdMask/1", call("ThresholdMask", mask=M, value=1.0)))
    c.append(("GrowMask/5", call("GrowMask", mask=M, expand=5, tapered_corners=True)))
    c.append(("CropMask/overflow", call("CropMask", mask=M, x=9, y=7, width=8, height=8)))
    c.append(("LatentComposite/feather_at_origin", call("LatentComposite", samples_to=la, samples_from=L(T("latent_small")),
                                                        x=0, y=0, feather=8)))
    c.append(("LatentCompositeMasked/resize", call("LatentCompositeMasked", destination=la, source=L(T("latent_small")),
                                                   x=0, y=0, resize_source=True, mask=T("mask_one"))))
    c.append(("LatentCompositeMasked/no_mask_overflow", call("LatentCompositeMasked", destination=la,
                                                             source=L(T("latent_small")), x=24, y=40,
                                                             resize_source=False)))
    c.append(("ImageCompositeMasked/batch_source", call("ImageCompositeMasked", destination=T("image_small"), source=A,
                                                        x=2, y=3, resize_source=False)))
    c.append(("ImagePadForOutpaint/wide_feather", call("ImagePadForOutpaint", image=A, left=0, top=6, right=9,
                                                       bottom=0, feathering=40)))
    c.append(("ImageToMask/batch_red", call("ImageToMask", image=T("image_b"), channel="red")))
    return c


def sampling_cases() -> list[tuple[str, dict]]:
    """Trees that run a sampler on the fake SD1 model."""
    c: list[tuple[str, dict]] = []
    empty = call("EmptyLatentImage", width=48, height=64, batch_size=2)  # 2×4×8×6
    image = L(T("latent_a"))  # img2img start (unscaled latent units)
    pos, neg = cond("emb_A"), cond("emb_N")

    def ksa(latent, add_noise, start, end, leftover, sampler="euler", scheduler="normal", steps=8, seed=7, cfg=3.0,
            positive=pos, negative=neg):
        return call("KSamplerAdvanced", model=MODEL, add_noise=add_noise, noise_seed=seed, steps=steps, cfg=cfg,
                    sampler_name=sampler, scheduler=scheduler, positive=positive, negative=negative,
                    latent_image=latent, start_at_step=start, end_at_step=end, return_with_leftover_noise=leftover)

    def ks(latent, sampler="euler", scheduler="normal", steps=6, denoise=1.0, cfg=3.0, positive=pos, negative=neg,
           seed=7, model=MODEL):
        return call("KSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                    scheduler=scheduler, positive=positive, negative=negative, latent_image=latent, denoise=denoise)

    c.append(("KSampler/euler", ks(empty)))
    c.append(("KSampler/img2img_dpmpp_2m", ks(image, "dpmpp_2m", "karras", denoise=0.6)))
    for sampler in ("euler", "dpmpp_2m", "euler_ancestral"):
        stage1 = ksa(empty, "enable", 0, 5, "enable", sampler=sampler)
        c.append((f"KSamplerAdvanced/{sampler}/stage1", stage1))
        c.append((f"KSamplerAdvanced/{sampler}/two_stage", ksa(stage1, "disable", 5, 10000, "disable", sampler=sampler)))
    # SDE (Brownian tree over each stage's own σ range), discard-penultimate, multistep and lcm across a split
    for sampler, scheduler in (("dpmpp_2m_sde", "karras"), ("dpm_2", "normal"), ("uni_pc", "normal"),
                               ("lcm", "sgm_uniform"), ("dpmpp_sde", "normal")):
        stage1 = ksa(empty, "enable", 0, 4, "enable", sampler=sampler, scheduler=scheduler)
        c.append((f"KSamplerAdvanced/{sampler}/two_stage", ksa(stage1, "disable", 4, 10000, "disable",
                                                                 sampler=sampler, scheduler=scheduler)))
    c.append(("KSamplerAdvanced/noise_from_step2", ksa(empty, "enable", 2, 10000, "disable")))
    c.append(("KSamplerAdvanced/end_past_steps_leftover", ksa(empty, "enable", 0, 12, "enable")))
    c.append(("KSamplerAdvanced/end_early_full_denoise", ksa(empty, "enable", 0, 4, "disable")))
    c.append(("KSamplerAdvanced/img2img_start3", ksa(image, "enable", 3, 10000, "disable", sampler="dpmpp_2m",
                                                     scheduler="karras")))
    c.append(("KSamplerAdvanced/start_past_end", ksa(image, "enable", 9, 10000, "disable")))

    sig8 = call("BasicScheduler", model=MODEL, scheduler="normal", steps=8, denoise=1.0)
    low = call("SplitSigmas", out=1, sigmas=sig8, step=3)
    high = call("SplitSigmas", out=0, sigmas=sig8, step=3)
    euler = call("KSamplerSelect", sampler_name="euler")
    noise = call("RandomNoise", noise_seed=11)
    no_noise = call("DisableNoise")
    cfg_guider = call("CFGGuider", model=MODEL, positive=pos, negative=neg, cfg=3.0)

    def sca(noise_, guider, sampler, sigmas, latent, out=0):
        return call("SamplerCustomAdvanced", out=out, noise=noise_, guider=guider, sampler=sampler, sigmas=sigmas,
                    latent_image=latent)

    added = call("AddNoise", model=MODEL, noise=noise, sigmas=low, latent_image=image)
    c.append(("AddNoise/split_low", added))
    c.append(("AddNoise/full_schedule_on_empty", call("AddNoise", model=MODEL, noise=noise, sigmas=sig8,
                                                      latent_image=empty)))
    c.append(("AddNoise/then_sample", sca(no_noise, cfg_guider, euler, low, added)))
    c.append(("SamplerCustomAdvanced/two_stage",
              sca(no_noise, cfg_guider, euler, low, sca(noise, cfg_guider, euler, high, empty))))
    # denoised_output differs from output only when the run stops above σ = 0 (high: 3 of 8 steps)
    c.append(("SamplerCustomAdvanced/denoised_output", sca(noise, cfg_guider, call("KSamplerSelect",
              sampler_name="dpmpp_2m"), high, empty, out=1)))

    cond2 = cond("emb_B")
    for style, c1, c2 in (("regular", 2.5, 4.0), ("nested", 2.5, 4.0), ("regular", 3.0, 1.0), ("regular", 1.0, 1.0)):
        g = call("DualCFGGuider", model=MODEL, cond1=pos, cond2=cond2, negative=neg, cfg_conds=c1,
                 cfg_cond2_negative=c2, style=style)
        c.append((f"DualCFGGuider/{style}/{c1}/{c2}", sca(noise, g, euler, sig8, empty)))
    for cfg, scale in ((4.0, 1.0), (3.0, 0.0), (1.0, 0.0), (5.0, 2.5)):
        g = call("PerpNegGuider", model=MODEL, positive=pos, negative=neg, empty_conditioning=cond("emb_E"),
                 cfg=cfg, neg_scale=scale)
        c.append((f"PerpNegGuider/{cfg}/{scale}", sca(noise, g, euler, sig8, empty)))
    for sampler in ("euler_cfg_pp", "euler_ancestral_cfg_pp", "res_multistep_cfg_pp", "dpmpp_2m_cfg_pp"):
        for cfg in (1.0, 1.5):
            g = call("CFGGuider", model=MODEL, positive=pos, negative=neg, cfg=cfg)
            c.append((f"CFGPP/{sampler}/cfg{cfg}", sca(noise, g, call("KSamplerSelect", sampler_name=sampler), sig8,
                                                       empty)))
    g1 = call("CFGGuider", model=MODEL, positive=pos, negative=neg, cfg=1.0)
    c.append(("CFGPP/SamplerEulerAncestralCFGPP", sca(noise, g1, call("SamplerEulerAncestralCFGPP", eta=0.7, s_noise=0.9),
                                                      sig8, empty)))

    # conditioning built by each side's own nodes, through KSampler
    A, B, Cc, N = cond("emb_A"), cond("emb_B"), cond("emb_C"), cond("emb_N")

    def combine(a, b):
        return call("ConditioningCombine", conditioning_1=a, conditioning_2=b)

    area = call("ConditioningSetArea", conditioning=B, width=32, height=40, x=8, y=16, strength=1.0)
    area_pct = call("ConditioningSetAreaPercentage", conditioning=Cc, width=0.5, height=0.5, x=0.5, y=0.0, strength=1.3)
    area_str = call("ConditioningSetAreaStrength", conditioning=area, strength=0.6)
    masked = call("ConditioningSetMask", conditioning=Cc, mask=T("latent_mask"), set_cond_area="default", strength=0.8)
    masked_b = call("ConditioningSetMask", conditioning=B, mask=T("mask_b"), set_cond_area="mask bounds", strength=1.0)
    ranged = call("ConditioningSetTimestepRange", conditioning=B, start=0.3, end=0.8)
    c.append(("Conditioning/area_combine", ks(empty, positive=combine(combine(A, area), area_pct))))
    c.append(("Conditioning/area_strength_negative_area", ks(empty, positive=combine(A, area_str),
                                                             negative=combine(N, area))))
    c.append(("Conditioning/set_mask", ks(empty, positive=combine(combine(A, masked), masked_b))))
    c.append(("Conditioning/timestep_range", ks(empty, "dpmpp_2m", "karras", positive=combine(A, ranged))))
    c.append(("Conditioning/concat", ks(empty, positive=call("ConditioningConcat", conditioning_to=A,
                                                             conditioning_from=B))))
    c.append(("Conditioning/average", ks(empty, positive=call("ConditioningAverage", conditioning_to=A,
                                                              conditioning_from=B, conditioning_to_strength=0.3))))
    c.append(("Conditioning/zero_out_negative", ks(empty, negative=call("ConditioningZeroOut", conditioning=N))))

    # latents carrying a noise mask or batch indices into a sampler; cfg 1; SamplerCustom
    inpaint = call("SetLatentNoiseMask", samples=image, mask=T("latent_mask"))
    c.append(("Inpaint/euler", ks(inpaint, denoise=0.8)))
    c.append(("Inpaint/dpmpp_2m_sde", ks(inpaint, "dpmpp_2m_sde", "karras", denoise=0.8)))
    c.append(("Inpaint/small_mask_ancestral", ks(call("SetLatentNoiseMask", samples=image, mask=T("mask_b")),
                                                 "euler_ancestral", denoise=0.7)))
    four = call("EmptyLatentImage", width=48, height=64, batch_size=4)
    c.append(("BatchIndex/from_batch", ks(call("LatentFromBatch", samples=four, batch_index=2, length=2),
                                          "euler_ancestral")))
    c.append(("BatchIndex/fixed_seed", ks(call("LatentBatchSeedBehavior", seed_behavior="fixed",
                                               samples=call("LatentFromBatch", samples=four, batch_index=1, length=3)))))
    c.append(("BatchIndex/repeat", ks(call("RepeatLatentBatch", amount=2, samples=call(
        "LatentFromBatch", samples=four, batch_index=3, length=1)), "euler_ancestral")))
    c.append(("KSampler/cfg1", ks(empty, cfg=1.0)))
    c.append(("KSampler/denoise_0", ks(image, denoise=0.0)))
    c.append(("SamplerCustom/add_noise", call("SamplerCustom", model=MODEL, add_noise=True, noise_seed=5, cfg=2.5,
                                              positive=pos, negative=neg, sampler=euler, sigmas=sig8, latent_image=empty)))
    c.append(("SamplerCustom/no_noise_denoised", call("SamplerCustom", out=1, model=MODEL, add_noise=False,
                                                      noise_seed=5, cfg=2.5, positive=pos, negative=neg,
                                                      sampler=euler, sigmas=high, latent_image=image)))
    ancestral = call("KSamplerSelect", sampler_name="euler_ancestral")
    c.append(("SamplerCustomAdvanced/batch_index_ancestral",
              sca(noise, cfg_guider, ancestral, sig8, call("LatentFromBatch", samples=four, batch_index=1, length=2))))
    c.append(("SamplerCustomAdvanced/disable_noise_ancestral", sca(no_noise, cfg_guider, ancestral, low, added)))
    split = call("SplitSigmasDenoise", out=1, sigmas=sig8, denoise=0.4)
    c.append(("SplitSigmasDenoise/sample", sca(noise, cfg_guider, euler, split, image)))
    # model patches that act during sampling
    dd = call("DifferentialDiffusion", model=MODEL)
    c.append(("DifferentialDiffusion", call("KSampler", model=dd, seed=7, steps=6, cfg=3.0, sampler_name="euler",
                                            scheduler="normal", positive=pos, negative=neg, latent_image=inpaint,
                                            denoise=0.9)))
    op_cfg = call("LatentApplyOperationCFG", model=MODEL, operation=call("LatentOperationTonemapReinhard", multiplier=0.5))
    c.append(("LatentApplyOperationCFG", call("KSampler", model=op_cfg, seed=7, steps=6, cfg=3.0, sampler_name="euler",
                                              scheduler="normal", positive=pos, negative=neg, latent_image=empty,
                                              denoise=1.0)))
    # hires fix: a realistic latent upscale (≥ 64 px) then a second pass
    c.append(("HiresFix", ks(call("LatentUpscale", samples=call("KSampler", model=MODEL, seed=3, steps=4, cfg=3.0,
                                                               sampler_name="euler", scheduler="normal", positive=pos,
                                                               negative=neg, latent_image=empty, denoise=1.0),
                                  upscale_method="nearest-exact", width=72, height=96, crop="disabled"),
                             "dpmpp_2m", "karras", denoise=0.55)))
    c.extend(model_patch_cases(ks))
    return c


def model_patch_cases(ks) -> list[tuple[str, dict]]:
    """Model-sampling and guidance patches (ComfyUI's model_options functions) inside a KSampler."""
    c: list[tuple[str, dict]] = []
    empty = call("EmptyLatentImage", width=48, height=64, batch_size=2)

    def patched(node, sampler="euler", scheduler="normal", model=MODEL, **args):
        return ks(empty, sampler, scheduler, model=call(node, model=model, **args))

    vpred = call("ModelSamplingDiscrete", model=MODEL, sampling="v_prediction", zsnr=True)
    c.append(("ModelSamplingDiscrete/v_prediction_zsnr", patched("ModelSamplingDiscrete", sampling="v_prediction",
                                                                 zsnr=True)))
    c.append(("ModelSamplingDiscrete/lcm", patched("ModelSamplingDiscrete", "lcm", "sgm_uniform", sampling="lcm",
                                                   zsnr=False)))
    c.append(("ModelSamplingContinuousEDM/v_prediction", patched(
        "ModelSamplingContinuousEDM", "dpmpp_2m", "karras", sampling="v_prediction", sigma_max=120.0,
        sigma_min=0.002)))
    c.append(("RescaleCFG/v_prediction_zsnr", patched("RescaleCFG", model=vpred, multiplier=0.7)))
    c.append(("CFGZeroStar", patched("CFGZeroStar")))
    c.append(("CFGNorm", patched("CFGNorm", strength=0.8)))
    c.append(("APG", patched("APG", eta=0.5, norm_threshold=5.0, momentum=-0.5)))
    c.append(("Mahiro", patched("Mahiro")))
    c.append(("TCFG", patched("TCFG")))
    c.append(("FreSca", patched("FreSca", scale_low=1.1, scale_high=1.3, freq_cutoff=2)))
    c.append(("EpsilonScaling", patched("Epsilon Scaling", scaling_factor=1.005)))
    return c
