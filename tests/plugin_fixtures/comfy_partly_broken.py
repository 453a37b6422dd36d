"""A ComfyUI pack where some classes cannot be used in latentgraph: the rest must still load."""


class Halve:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "halve"
    CATEGORY = "image"

    def halve(self, image):
        return (image * 0.5,)


class Explode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "boom"

    def boom(self, image):
        raise ValueError("this custom node always fails")


class ListMaker:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3})}}

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "make"

    def make(self, count):
        return (list(range(count)),)


class BadInputs:
    @classmethod
    def INPUT_TYPES(cls):
        raise RuntimeError("cannot list my inputs")

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self):
        return (1,)


class NoFunction:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "missing"


class FakeSave(Halve):
    """Claims the class_type of the built-in SaveImage: must be refused, never replace it."""

    OUTPUT_NODE = True


NODE_CLASS_MAPPINGS = {
    "Halve": Halve,
    "Explode": Explode,
    "ListMaker": ListMaker,
    "BadInputs": BadInputs,
    "NoFunction": NoFunction,
    "SaveImage": FakeSave,
}
