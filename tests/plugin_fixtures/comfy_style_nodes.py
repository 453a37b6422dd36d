"""A ComfyUI custom-node pack written against ComfyUI's node contract, with no ComfyUI imports.

Used by the adapter tests: dropped into a plugins folder it must load and run in latentgraph.
"""

import random

import torch


class ImagePosterize:
    """Reduce each channel to a few levels."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "levels": ("INT", {"default": 4, "min": 2, "max": 256, "step": 1, "tooltip": "levels per channel"}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "posterize"
    CATEGORY = "image/postprocessing"

    def posterize(self, image, levels):
        return (torch.round(image * (levels - 1)) / (levels - 1),)


class MakeGradient:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "width": ("INT", {"default": 64, "min": 8, "max": 4096}),
                "height": ("INT", {"default": 64, "min": 8, "max": 4096}),
                "direction": (["horizontal", "vertical"],),
                "invert": ("BOOLEAN", {"default": False}),
            },
            "optional": {"gamma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})},
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    FUNCTION = "make"
    CATEGORY = "image/generate"

    def make(self, width, height, direction, invert, gamma=1.0):
        if direction == "horizontal":
            ramp = torch.linspace(0, 1, width).expand(height, width)
        else:
            ramp = torch.linspace(0, 1, height)[:, None].expand(height, width)
        ramp = ramp ** gamma
        if invert:
            ramp = 1 - ramp
        image = ramp[None, :, :, None].expand(1, height, width, 3).contiguous()
        return (image, ramp[None].contiguous())


class LatentStatsV1:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",)}}

    RETURN_TYPES = ("LATENT_STATS",)
    FUNCTION = "stats"
    CATEGORY = "latent/debug"

    def stats(self, samples):
        s = samples["samples"]
        return ({"shape": list(s.shape), "mean": float(s.mean()), "std": float(s.std())},)


class ShowStats:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"stats": ("LATENT_STATS",)}}

    RETURN_TYPES = ()
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "latent/debug"

    def show(self, stats):
        return {"ui": {"text": [f"shape={stats['shape']} mean={stats['mean']:.3f}"]}}


class RandomInt:
    """Different every run: IS_CHANGED returns NaN, which is never equal to itself."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"high": ("INT", {"default": 10**9, "min": 1, "max": 10**12})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "draw"
    CATEGORY = "utils"

    @classmethod
    def IS_CHANGED(cls, high):
        return float("nan")

    def draw(self, high):
        return (random.randint(0, high),)


class StampedText:
    """Re-runs only when its ``stamp`` changes (IS_CHANGED returns the stamp)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hello", "multiline": True}), "stamp": ("STRING", {"default": "1"})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "utils"

    @classmethod
    def IS_CHANGED(cls, stamp, **kwargs):
        return stamp

    def run(self, text, stamp):
        return (f"{text}#{random.random()}",)


class ShowText:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"forceInput": True})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "utils"

    def show(self, text):
        return {"ui": {"text": [text]}, "result": (text,)}


class RepeatText:
    """VALIDATE_INPUTS: custom rules, and it takes over the range check of ``times``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "ab"}), "times": ("INT", {"default": 2, "min": 1, "max": 5})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "repeat"
    CATEGORY = "utils"

    @classmethod
    def VALIDATE_INPUTS(cls, text, times):
        if not text:
            return "text must not be empty"
        if times > 100:
            return f"times={times} is too many (at most 100)"
        return True

    def repeat(self, text, times):
        return (text * times,)


class WhoAmI:
    """Hidden inputs: the node's id, the API prompt and the editor workflow."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"label": ("STRING", {"default": "me"})},
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "who"
    OUTPUT_NODE = True
    CATEGORY = "utils"

    def who(self, label, unique_id, prompt, extra_pnginfo):
        classes = sorted({n["class_type"] for n in prompt.values()})
        workflow = (extra_pnginfo or {}).get("workflow")
        return {"ui": {"text": [label, unique_id, ",".join(classes), repr(workflow)]}}


class JoinTexts:
    """INPUT_IS_LIST: every input arrives as a list (one element per value here)."""

    INPUT_IS_LIST = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"first": ("STRING", {"forceInput": True}), "separator": ("STRING", {"default": "+"})},
                "optional": {"second": ("STRING", {"forceInput": True})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "join"
    CATEGORY = "utils"

    def join(self, first, separator, second=()):
        assert isinstance(first, list) and isinstance(separator, list)
        return (separator[0].join([*first, *second]),)


NODE_CLASS_MAPPINGS = {
    "JoinTexts": JoinTexts,
    "ImagePosterize": ImagePosterize,
    "MakeGradient": MakeGradient,
    "LatentStatsV1": LatentStatsV1,
    "ShowStats": ShowStats,
    "RandomInt": RandomInt,
    "StampedText": StampedText,
    "ShowText": ShowText,
    "RepeatText": RepeatText,
    "WhoAmI": WhoAmI,
}

NODE_DISPLAY_NAME_MAPPINGS = {"ImagePosterize": "Posterize Image", "MakeGradient": "Gradient"}
