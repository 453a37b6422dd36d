"""``comfy_api.latest.io``: how a V3 custom node declares itself (schema, input/output types).

Declarations only: nothing here runs a node. Each input object can say what it is in the V1
shape (``(TYPE, options)``) through :meth:`Input.declaration`, which is what the adapter reads, so
V1 and V3 nodes become latentgraph nodes through the same code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import torch


def _present(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options a node set (None means "not given", as in ComfyUI's declarations)."""
    return {k: v for k, v in options.items() if v is not None}


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


# -- inputs and outputs -------------------------------------------------------------------------
class Input:
    """One input socket (or widget) of a V3 node."""

    io_type: ClassVar[str] = "*"

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, extra_dict: Mapping[str, Any] | None = None, raw_link: bool | None = None) -> None:
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = dict(extra_dict or {})
        self.raw_link = raw_link

    def get_io_type(self) -> str:
        return self.io_type

    def options(self) -> dict[str, Any]:
        """The V1 options dict of this input (what ``INPUT_TYPES`` would hold)."""
        return _present({"display_name": self.display_name, "tooltip": self.tooltip, "lazy": self.lazy,
                         "rawLink": self.raw_link}) | _present(self.extra_dict)

    def as_dict(self) -> dict[str, Any]:
        return self.options() | ({"optional": True} if self.optional else {})

    def declaration(self) -> tuple[str, dict[str, Any]]:
        return self.get_io_type(), self.options()


class WidgetInput(Input):
    """An input with a widget (a literal value in the workflow) unless linked."""

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: Any = None, socketless: bool | None = None,
                 widget_type: str | None = None, force_input: bool | None = None,
                 extra_dict: Mapping[str, Any] | None = None, raw_link: bool | None = None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def get_io_type(self) -> str:
        return self.widget_type or self.io_type

    def options(self) -> dict[str, Any]:
        return super().options() | _present({"default": self.default, "socketless": self.socketless,
                                              "forceInput": self.force_input})


class Output:
    """One output of a V3 node; its name is ``display_name``, else ``id``, else the type."""

    io_type: ClassVar[str] = "*"

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False) -> None:
        self.id = id
        self.display_name = display_name or id
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def get_io_type(self) -> str:
        return self.io_type

    @property
    def name(self) -> str:
        return self.display_name or self.io_type


class ComfyType:
    """A connection type: ``X.Input(...)``/``X.Output(...)`` declare sockets; ``X.Type`` is the
    Python value's type (for annotations)."""

    io_type: ClassVar[str] = "*"
    Type: ClassVar[Any] = Any
    Input: ClassVar[type[Input]] = Input
    Output: ClassVar[type[Output]] = Output


def comfytype(io_type: str):
    """Class decorator binding a connection type name to a type and its Input/Output classes."""

    def bind(cls: type) -> type:
        base = cls if issubclass(cls, ComfyType) else type(cls.__name__, (cls, ComfyType), {"__module__": cls.__module__})
        base.io_type = io_type
        for role, default in (("Input", Input), ("Output", Output)):
            declared = cls.__dict__.get(role) or getattr(base, role, default)
            bound = type(role, (declared,), {"io_type": io_type, "__qualname__": f"{cls.__name__}.{role}",
                                             "__module__": cls.__module__})
            setattr(base, role, bound)
        return base

    return bind


def Custom(io_type: str) -> type[ComfyType]:  # noqa: N802 - ComfyUI's public name
    """A connection type of your own (``io.Custom("MY_TYPE")``)."""

    @comfytype(io_type)
    class CustomType(ComfyType):
        pass

    return CustomType


# -- widget types -----------------------------------------------------------------------------
@comfytype("BOOLEAN")
class Boolean(ComfyType):
    Type = bool

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                     lazy: bool | None = None, default: bool | None = None, label_on: str | None = None,
                     label_off: str | None = None, socketless: bool | None = None, force_input: bool | None = None,
                     extra_dict: Mapping[str, Any] | None = None, raw_link: bool | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict, raw_link)
            self.label_on, self.label_off = label_on, label_off

        def options(self) -> dict[str, Any]:
            return super().options() | _present({"label_on": self.label_on, "label_off": self.label_off})


@comfytype("INT")
class Int(ComfyType):
    Type = int

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                     lazy: bool | None = None, default: int | None = None, min: int | None = None, max: int | None = None,
                     step: int | None = None, control_after_generate: bool | None = None,
                     display_mode: NumberDisplay | None = None, socketless: bool | None = None,
                     force_input: bool | None = None, extra_dict: Mapping[str, Any] | None = None,
                     raw_link: bool | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict, raw_link)
            self.min, self.max, self.step = min, max, step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def options(self) -> dict[str, Any]:
            return super().options() | _present({
                "min": self.min, "max": self.max, "step": self.step,
                "control_after_generate": self.control_after_generate,
                "display": NumberDisplay(self.display_mode).value if self.display_mode else None,
            })


@comfytype("FLOAT")
class Float(ComfyType):
    Type = float

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                     lazy: bool | None = None, default: float | None = None, min: float | None = None,
                     max: float | None = None, step: float | None = None, round: float | None = None,
                     display_mode: NumberDisplay | None = None, socketless: bool | None = None,
                     force_input: bool | None = None, extra_dict: Mapping[str, Any] | None = None,
                     raw_link: bool | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict, raw_link)
            self.min, self.max, self.step, self.round = min, max, step, round
            self.display_mode = display_mode

        def options(self) -> dict[str, Any]:
            return super().options() | _present({
                "min": self.min, "max": self.max, "step": self.step, "round": self.round,
                "display": NumberDisplay(self.display_mode).value if self.display_mode else None,
            })


@comfytype("STRING")
class String(ComfyType):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                     lazy: bool | None = None, multiline: bool = False, placeholder: str | None = None,
                     default: str | None = None, dynamic_prompts: bool | None = None, socketless: bool | None = None,
                     force_input: bool | None = None, extra_dict: Mapping[str, Any] | None = None,
                     raw_link: bool | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict, raw_link)
            self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts

        def options(self) -> dict[str, Any]:
            return super().options() | _present({"multiline": self.multiline or None, "placeholder": self.placeholder,
                                                  "dynamicPrompts": self.dynamic_prompts})


def _option_values(options: Any) -> Any:
    if isinstance(options, type) and issubclass(options, Enum):
        return [member.value for member in options]
    return options


@comfytype("COMBO")
class Combo(ComfyType):
    Type = str

    class Input(WidgetInput):
        """A dropdown. ``options`` are re-read from ``define_schema()`` at each validation, so a
        list of files on disk stays current."""

        def __init__(self, id: str, options: Any = None, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: Any = None,
                     control_after_generate: bool | None = None, upload: UploadType | None = None,
                     image_folder: FolderType | None = None, remote: Any = None, socketless: bool | None = None,
                     extra_dict: Mapping[str, Any] | None = None, raw_link: bool | None = None) -> None:
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, None, extra_dict, raw_link)
            self.options_list = list(_option_values(options) or [])
            self.multiselect = False
            self.control_after_generate = control_after_generate
            self.upload, self.image_folder, self.remote = upload, image_folder, remote

        def options(self) -> dict[str, Any]:
            upload = {UploadType(self.upload).value: True} if self.upload is not None else {}
            return super().options() | {"options": list(self.options_list)} | _present({
                "control_after_generate": self.control_after_generate,
                "image_folder": FolderType(self.image_folder).value if self.image_folder else None,
            }) | upload

    class Output(Output):
        def __init__(self, id: str | None = None, display_name: str | None = None, options: list[str] | None = None,
                     tooltip: str | None = None, is_output_list: bool = False) -> None:
            super().__init__(id, display_name, tooltip, is_output_list)
            self.options = list(options or [])


@comfytype("COMBO")
class MultiCombo(ComfyType):
    """Several choices at once; the value is a list of the chosen options."""

    Type = list

    class Input(Combo.Input):
        def __init__(self, id: str, options: Any, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: list[str] | None = None,
                     placeholder: str | None = None, chip: bool | None = None,
                     control_after_generate: bool | None = None, socketless: bool | None = None,
                     extra_dict: Mapping[str, Any] | None = None, raw_link: bool | None = None) -> None:
            super().__init__(id, options, display_name, optional, tooltip, lazy, default, control_after_generate,
                             socketless=socketless, extra_dict=extra_dict, raw_link=raw_link)
            self.multiselect = True
            self.placeholder, self.chip = placeholder, chip

        def options(self) -> dict[str, Any]:
            return super().options() | {"multi_select": _present({"placeholder": self.placeholder, "chip": self.chip})}


# -- connection types (values have ComfyUI's shapes; MODEL/CLIP/VAE are latentgraph objects) ----
def _connection(name: str, io_type: str, type_hint: Any = Any) -> type[ComfyType]:
    made = comfytype(io_type)(type(name, (ComfyType,), {"Type": type_hint, "__module__": __name__, "__qualname__": name}))
    made.__name__ = made.__qualname__ = name
    return made


Image = _connection("Image", "IMAGE", torch.Tensor)
Mask = _connection("Mask", "MASK", torch.Tensor)
Latent = _connection("Latent", "LATENT", dict)
Conditioning = _connection("Conditioning", "CONDITIONING", list)
Model = _connection("Model", "MODEL")
Clip = _connection("Clip", "CLIP")
Vae = _connection("Vae", "VAE")
ControlNet = _connection("ControlNet", "CONTROL_NET")
ClipVision = _connection("ClipVision", "CLIP_VISION")
ClipVisionOutput = _connection("ClipVisionOutput", "CLIP_VISION_OUTPUT")
StyleModel = _connection("StyleModel", "STYLE_MODEL")
Gligen = _connection("Gligen", "GLIGEN")
UpscaleModel = _connection("UpscaleModel", "UPSCALE_MODEL")
Sampler = _connection("Sampler", "SAMPLER")
Sigmas = _connection("Sigmas", "SIGMAS", torch.Tensor)
Noise = _connection("Noise", "NOISE")
Guider = _connection("Guider", "GUIDER")
Audio = _connection("Audio", "AUDIO", dict)
Video = _connection("Video", "VIDEO")
LoraModel = _connection("LoraModel", "LORA_MODEL", dict)
Hooks = _connection("Hooks", "HOOKS")
HookKeyframes = _connection("HookKeyframes", "HOOK_KEYFRAMES")
TimestepsRange = _connection("TimestepsRange", "TIMESTEPS_RANGE", tuple)
LatentOperation = _connection("LatentOperation", "LATENT_OPERATION")
Photomaker = _connection("Photomaker", "PHOTOMAKER")
AnyType = _connection("AnyType", "*")
Tracks = _connection("Tracks", "TRACKS", dict)
LatentUpscaleModel = _connection("LatentUpscaleModel", "LATENT_UPSCALE_MODEL")
AudioEncoder = _connection("AudioEncoder", "AUDIO_ENCODER")
AudioEncoderOutput = _connection("AudioEncoderOutput", "AUDIO_ENCODER_OUTPUT")
WanCameraEmbedding = _connection("WanCameraEmbedding", "WAN_CAMERA_EMBEDDING", torch.Tensor)
ModelPatch = MODEL_PATCH = _connection("MODEL_PATCH", "MODEL_PATCH")


class MatchType(ComfyType):
    """Sockets whose type is whatever is connected (ComfyUI's editor matches them up).

    Here a template's inputs accept any of its ``allowed_types`` (any type by default) and its
    outputs are typed ``*`` unless the template allows exactly one type.
    """

    io_type = "*"

    class Template:
        def __init__(self, template_id: str, allowed_types: Any = AnyType) -> None:
            self.template_id = template_id
            allowed = list(allowed_types) if isinstance(allowed_types, (list, tuple)) else [allowed_types]
            for kind in allowed:
                if not (isinstance(kind, type) and issubclass(kind, ComfyType)):
                    raise ValueError(f"allowed_types must be io types (io.Image …), got {kind!r}")
            self.allowed_types = allowed

        @property
        def io_type(self) -> str:
            names = [kind.io_type for kind in self.allowed_types]
            return "*" if "*" in names else ",".join(dict.fromkeys(names))

    class Input(Input):
        def __init__(self, id: str, template: MatchType.Template, display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: Mapping[str, Any] | None = None, raw_link: bool | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
            self.template = template

        def get_io_type(self) -> str:
            return self.template.io_type

    class Output(Output):
        def __init__(self, template: MatchType.Template, id: str | None = None, display_name: str | None = None,
                     tooltip: str | None = None, is_output_list: bool = False) -> None:
            super().__init__(id, display_name or (None if id else "MATCHTYPE"), tooltip, is_output_list)
            self.template = template

        def get_io_type(self) -> str:
            kind = self.template.io_type
            return "*" if "," in kind else kind


# -- hidden values ------------------------------------------------------------------------------
class Hidden(str, Enum):
    """Values a node may ask for that are not inputs; read them as ``cls.hidden.<name>``."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """``cls.hidden`` while a V3 node runs: the hidden values it declared (others are None)."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        for member in Hidden:
            setattr(self, member.name, (values or {}).get(member.name))

    def __getattr__(self, name: str) -> Any:
        return None

    def __bool__(self) -> bool:
        return True


# -- the schema ---------------------------------------------------------------------------------
@dataclass
class Schema:
    """Everything a V3 node declares about itself (``define_schema()`` returns one)."""

    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    #: The node receives every input as a whole list in one call.
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    #: Never share a result with an identical node elsewhere in the prompt.
    not_idempotent: bool = False
    #: ``NodeOutput(expand=...)`` is allowed only when this is set.
    enable_expand: bool = False

    def problems(self) -> list[str]:
        """What makes this schema unusable (duplicate ids, things that are not inputs …)."""
        found: list[str] = []
        if not isinstance(self.node_id, str) or not self.node_id:
            found.append(f"node_id {self.node_id!r} is not a name")
        for label, items, kind in (("inputs", self.inputs or [], Input), ("outputs", self.outputs or [], Output)):
            for item in items:
                if not isinstance(item, kind):
                    found.append(f"{label}: {item!r} is not an io.<Type>.{kind.__name__}(...)")
        ids = [i.id for i in self.inputs or [] if isinstance(i, Input)]
        repeated = sorted(name for name, n in Counter(ids).items() if n > 1)
        if repeated:
            found.append(f"input ids must be unique: {repeated} repeat")
        out_ids = [o.id for o in self.outputs or [] if isinstance(o, Output) and o.id is not None]
        repeated = sorted(name for name, n in Counter(out_ids).items() if n > 1)
        if repeated:
            found.append(f"output ids must be unique: {repeated} repeat")
        for h in self.hidden or []:
            try:
                Hidden(h)
            except ValueError:
                found.append(f"hidden: {h!r} is not an io.Hidden value")
        return found

    def hidden_kinds(self) -> list[Hidden]:
        """Declared hidden values, plus what ComfyUI adds for output and API nodes."""
        kinds = [Hidden(h) for h in self.hidden or []]
        if self.is_output_node:
            kinds += [Hidden.prompt, Hidden.extra_pnginfo]
        if self.is_api_node:
            kinds += [Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org]
        return list(dict.fromkeys(kinds))


# -- nodes and their results ------------------------------------------------------------------
class ComfyNode:
    """Base of a V3 node: class methods only; the engine never keeps an instance.

    ``execute`` runs on a throw-away subclass whose ``hidden`` holds this run's hidden values, so
    anything a node stores on ``cls`` does not leak into the next run.
    """

    hidden: ClassVar[HiddenHolder] = HiddenHolder()

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError(f"{cls.__name__} defines no define_schema()")

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError(f"{cls.__name__} defines no execute()")

    @classmethod
    def validate_inputs(cls, **kwargs: Any) -> bool | str:
        """Optional: ``True`` passes; a string is the error shown (V1's ``VALIDATE_INPUTS``)."""
        return True

    @classmethod
    def fingerprint_inputs(cls, **kwargs: Any) -> Any:
        """Optional: a value that changes when the result would (V1's ``IS_CHANGED``)."""
        return None

    @classmethod
    def check_lazy_status(cls, **kwargs: Any) -> list[str]:
        """Optional: names of lazy inputs still needed (those not evaluated yet are None)."""
        return [name for name, value in kwargs.items() if value is None]


class NodeOutput:
    """What ``execute`` returns: output values, and optionally ``ui`` (a ``ui.*`` object or a
    dict), ``expand`` (a subgraph to run in the node's place) and ``block_execution``."""

    def __init__(self, *args: Any, ui: Any = None, expand: Any = None, block_execution: str | None = None) -> None:
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self) -> tuple[Any, ...] | None:
        return self.args or None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeOutput:
        return cls(*(data.get("result") or ()), ui=data.get("ui"), expand=data.get("expand"))

    def __getitem__(self, index: int) -> Any:
        return self.args[index]


__all__ = [
    "AnyType", "Audio", "AudioEncoder", "AudioEncoderOutput", "LatentUpscaleModel", "MatchType", "MODEL_PATCH",
    "ModelPatch", "Tracks", "WanCameraEmbedding", "Boolean", "Clip", "ClipVision", "ClipVisionOutput", "Combo", "ComfyNode", "ComfyType",
    "Conditioning", "ControlNet", "Custom", "Float", "FolderType", "Gligen", "Guider", "Hidden", "HiddenHolder",
    "HookKeyframes", "Hooks", "Image", "Input", "Int", "Latent", "LatentOperation", "LoraModel", "Mask", "Model",
    "MultiCombo", "NodeOutput", "Noise", "NumberDisplay", "Output", "Photomaker", "Sampler", "Schema", "Sigmas",
    "String", "StyleModel", "TimestepsRange", "UploadType", "UpscaleModel", "Vae", "Video", "WidgetInput",
    "comfytype",
]
