"""A ComfyUI V3 custom-node file (``comfy_api.latest``), registered through ``comfy_entrypoint``.

Written against ComfyUI's public V3 API only; the tests drop it into a plugins folder. Several
nodes are twins of V1 nodes in comfy_style_nodes.py and must give the same results.
"""

import asyncio
import random

import torch
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io, ui
from comfy_execution.graph_utils import ExecutionBlocker, GraphBuilder, is_link

#: Choices of PickWord, read again at every validation (a test adds one).
WORDS = ["apple", "pear"]
#: SlowUpper's starts and ends, in order (a test checks they overlap).
ASYNC_EVENTS = []


class GradientV3(io.ComfyNode):
    """Twin of MakeGradient."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GradientV3",
            display_name="Gradient (V3)",
            category="image/generate",
            description="A grey ramp and the same ramp as a mask.",
            inputs=[
                io.Int.Input("width", default=64, min=8, max=4096),
                io.Int.Input("height", default=64, min=8, max=4096),
                io.Combo.Input("direction", options=["horizontal", "vertical"]),
                io.Boolean.Input("invert", default=False),
                io.Float.Input("gamma", default=1.0, min=0.1, max=10.0, step=0.1, optional=True),
            ],
            outputs=[io.Image.Output("image"), io.Mask.Output("mask")],
        )

    @classmethod
    def execute(cls, width, height, direction, invert, gamma=1.0) -> io.NodeOutput:
        if direction == "horizontal":
            ramp = torch.linspace(0, 1, width).expand(height, width)
        else:
            ramp = torch.linspace(0, 1, height)[:, None].expand(height, width)
        ramp = ramp ** gamma
        if invert:
            ramp = 1 - ramp
        image = ramp[None, :, :, None].expand(1, height, width, 3).contiguous()
        return io.NodeOutput(image, ramp[None].contiguous())


class PosterizeV3(io.ComfyNode):
    """Twin of ImagePosterize; returns a plain tuple (V3 accepts it)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PosterizeV3",
            category="image/postprocessing",
            inputs=[io.Image.Input("image"),
                    io.Int.Input("levels", default=4, min=2, max=256, step=1, tooltip="levels per channel")],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, image, levels):
        return (torch.round(image * (levels - 1)) / (levels - 1),)


class MultiplyV3(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiplyV3",
            category="math",
            inputs=[io.Float.Input("a", default=1.0), io.Float.Input("b", default=1.0, min=-10.0, max=10.0)],
            outputs=[io.Float.Output("product", tooltip="a times b")],
        )

    @classmethod
    def execute(cls, a: float, b: float) -> io.NodeOutput:
        return io.NodeOutput(a * b)


class PickWord(io.ComfyNode):
    """A COMBO whose choices change while the server runs."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PickWord",
            category="text",
            inputs=[io.Combo.Input("word", options=sorted(WORDS), default="apple")],
            outputs=[io.String.Output()],
        )

    @classmethod
    def execute(cls, word):
        return io.NodeOutput(word)


class ShowTextV3(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShowTextV3",
            category="text",
            is_output_node=True,
            inputs=[io.String.Input("text", force_input=True)],
            outputs=[io.String.Output()],
        )

    @classmethod
    def execute(cls, text):
        return io.NodeOutput(text, ui=ui.PreviewText(text))


class LazySwitchV3(io.ComfyNode):
    """Evaluates only the branch it returns."""

    @classmethod
    def define_schema(cls):
        template = io.MatchType.Template("switch")  # both branches and the output: one type
        return io.Schema(
            node_id="LazySwitchV3",
            category="logic",
            inputs=[
                io.Boolean.Input("switch", default=True),
                io.MatchType.Input("on_true", template=template, lazy=True),
                io.MatchType.Input("on_false", template=template, lazy=True),
            ],
            outputs=[io.MatchType.Output(template=template, display_name="output")],
        )

    @classmethod
    def check_lazy_status(cls, switch, on_true=None, on_false=None):
        wanted = "on_true" if switch else "on_false"
        return [wanted] if (on_true if switch else on_false) is None else []

    @classmethod
    def execute(cls, switch, on_true=None, on_false=None):
        return io.NodeOutput(on_true if switch else on_false)


class SplitWords(io.ComfyNode):
    """A list output: downstream nodes run once per word."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SplitWords",
            category="text",
            inputs=[io.String.Input("text", default="a b c")],
            outputs=[io.String.Output("words", is_output_list=True)],
        )

    @classmethod
    def execute(cls, text):
        return io.NodeOutput(text.split())


class JoinWordsV3(io.ComfyNode):
    """is_input_list: receives every input as a whole list, in one call."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JoinWordsV3",
            category="text",
            is_input_list=True,
            inputs=[io.String.Input("words", force_input=True), io.String.Input("separator", default="+")],
            outputs=[io.String.Output()],
        )

    @classmethod
    def execute(cls, words, separator):
        assert isinstance(words, list) and isinstance(separator, list)
        return io.NodeOutput(separator[0].join(words))


class PosterizedGradient(io.ComfyNode):
    """Node expansion: runs GradientV3 → PosterizeV3 in its place."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PosterizedGradient",
            category="image/generate",
            enable_expand=True,
            inputs=[io.Int.Input("width", default=32), io.Int.Input("height", default=32),
                    io.Int.Input("levels", default=2)],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, width, height, levels):
        graph = {
            "g": {"class_type": "GradientV3",
                  "inputs": {"width": width, "height": height, "direction": "horizontal", "invert": False}},
            "p": {"class_type": "PosterizeV3", "inputs": {"image": ["g", 0], "levels": levels}},
        }
        return io.NodeOutput(["p", 0], expand=graph)


class PosterizeTimes(io.ComfyNode):
    """Node expansion with ComfyUI's GraphBuilder: a gradient, then a loop of ``times`` PosterizeV3."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PosterizeTimes",
            category="image/generate",
            enable_expand=True,
            inputs=[io.Int.Input("width", default=32), io.Int.Input("height", default=32),
                    io.Int.Input("levels", default=4), io.Int.Input("times", default=2, min=1)],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, width, height, levels, times):
        graph = GraphBuilder()
        current = graph.node("GradientV3", width=width, height=height, direction="horizontal", invert=False).out(0)
        for _ in range(times):
            current = graph.node("PosterizeV3", image=current, levels=levels).out(0)
        assert is_link(current)
        return io.NodeOutput(current, expand=graph.finalize())


class GateV3(io.ComfyNode):
    """Passes the image on, or blocks everything after it (ComfyUI's ExecutionBlocker pattern)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GateV3",
            category="image",
            inputs=[io.Image.Input("image"), io.Boolean.Input("open", default=True),
                    io.String.Input("reason", default="")],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, image, open, reason):
        if open:
            return io.NodeOutput(image)
        return io.NodeOutput(ExecutionBlocker(reason or None))


class ExpandWithoutAsking(io.ComfyNode):
    """Returns a subgraph without enable_expand: refused, as in ComfyUI."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="ExpandWithoutAsking", inputs=[io.Int.Input("x", default=1)],
                         outputs=[io.Int.Output()])

    @classmethod
    def execute(cls, x):
        return io.NodeOutput(["n", 0], expand={"n": {"class_type": "MultiplyV3", "inputs": {"a": 1.0, "b": 2.0}}})


class SlowUpper(io.ComfyNode):
    """An async node: waits without blocking the engine's event loop."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SlowUpper",
            category="text",
            inputs=[io.String.Input("text", default="hi"), io.Float.Input("seconds", default=0.2, min=0.0, max=5.0)],
            outputs=[io.String.Output()],
        )

    @classmethod
    async def execute(cls, text, seconds):
        ASYNC_EVENTS.append(("start", text))
        await asyncio.sleep(seconds)
        ASYNC_EVENTS.append(("end", text))
        return io.NodeOutput(text.upper())


class WhoAmIV3(io.ComfyNode):
    """Twin of WhoAmI: hidden values through cls.hidden (an output node also gets prompt and
    extra_pnginfo without asking)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WhoAmIV3",
            category="utils",
            is_output_node=True,
            inputs=[io.String.Input("label", default="me")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, label):
        classes = sorted({n["class_type"] for n in cls.hidden.prompt.values()})
        workflow = (cls.hidden.extra_pnginfo or {}).get("workflow")
        return io.NodeOutput(ui={"text": [label, cls.hidden.unique_id, ",".join(classes), repr(workflow)]})


class PreviewGradient(io.ComfyNode):
    """An output node with a preview: ui.PreviewImage writes to the temp folder."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PreviewGradient",
            category="image",
            is_output_node=True,
            inputs=[io.Image.Input("images")],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, images):
        return io.NodeOutput(images, ui=ui.PreviewImage(images, cls=cls))


class RepeatTextV3(io.ComfyNode):
    """Twin of RepeatText: validate_inputs rejects, and owns the range check of ``times``."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RepeatTextV3",
            category="utils",
            inputs=[io.String.Input("text", default="ab"), io.Int.Input("times", default=2, min=1, max=5)],
            outputs=[io.String.Output()],
        )

    @classmethod
    def validate_inputs(cls, text, times):
        if not text:
            return "text must not be empty"
        if times > 100:
            return f"times={times} is too many (at most 100)"
        return True

    @classmethod
    def execute(cls, text, times):
        return io.NodeOutput(text * times)


class StampedTextV3(io.ComfyNode):
    """Twin of StampedText: re-runs only when fingerprint_inputs (the stamp) changes."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StampedTextV3",
            category="utils",
            inputs=[io.String.Input("text", default="hello", multiline=True), io.String.Input("stamp", default="1")],
            outputs=[io.String.Output()],
        )

    @classmethod
    def fingerprint_inputs(cls, stamp, **kwargs):
        return stamp

    @classmethod
    def execute(cls, text, stamp):
        return io.NodeOutput(f"{text}#{random.random()}")


class MeanColour(io.ComfyNode):
    """A custom connection type between two nodes of the same file."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="MeanColour", category="image", inputs=[io.Image.Input("image")],
                         outputs=[io.Custom("RGB_TRIPLE").Output("rgb")])

    @classmethod
    def execute(cls, image):
        return io.NodeOutput(tuple(round(float(c), 3) for c in image.mean(dim=(0, 1, 2))))


class ShowColour(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="ShowColour", category="image", is_output_node=True,
                         inputs=[io.Custom("RGB_TRIPLE").Input("rgb")])

    @classmethod
    def execute(cls, rgb):
        return io.NodeOutput(ui=ui.PreviewText(repr(rgb)))


class V3Extension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [GradientV3, PosterizeV3, MultiplyV3, PickWord, ShowTextV3, LazySwitchV3, SplitWords, JoinWordsV3,
                PosterizedGradient, PosterizeTimes, GateV3, ExpandWithoutAsking, SlowUpper, WhoAmIV3, PreviewGradient, RepeatTextV3,
                StampedTextV3, MeanColour, ShowColour]


async def comfy_entrypoint() -> V3Extension:
    return V3Extension()
