"""The HTTP request bodies as pydantic models: the one place a body is checked.

A route reads its body with ``parse_body(request, Model)`` (JSON) or ``validate(Model, fields)``
(form fields). A body that does not fit answers 400 with the project's JSON error naming the
field at fault, ``{error: {type, message, details, extra_info: {field, errors}}, node_errors}``.
Unknown fields are accepted and ignored, as ComfyUI clients send more than a server reads.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from latentgraph.editor_format import is_api_workflow, is_editor_workflow
from latentgraph.standard_json import JsonInputError
from latentgraph.server.app import JsonError, read_json

MAX_ID = 200
#: Queue numbers stay integers a double (and JavaScript) holds exactly.
MAX_NUMBER = 2**53


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _blank_is_false(value: Any) -> Any:
    return False if value is None or value == "" else value


#: A prompt or client id.
Id = Annotated[str, StringConstraints(max_length=MAX_ID)]
#: An id that may be left out: absent, null and "" all mean none.
OptionalId = Annotated[Id | None, BeforeValidator(_blank_is_none)]
#: A switch: true/false, 1/0 or "true"/"false"/"yes"/"no" (form fields); null and "" are false.
Flag = Annotated[bool, BeforeValidator(_blank_is_false)]
FolderType = Literal["output", "input", "temp"]


class Body(BaseModel):
    """A request body; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    #: The error ``type`` of a 400 for this body, and per top-level field where ComfyUI names it.
    error_type: ClassVar[str] = "bad_request"
    field_error_types: ClassVar[dict[str, str]] = {}
    #: What a good body looks like, added to the error's ``details``.
    hint: ClassVar[str] = ""


class ExtraData(BaseModel):
    """``extra_data``, kept whole (clients put their own keys in it); ``extra_pnginfo`` is
    embedded in saved PNGs, its ``workflow`` as the editor workflow."""

    model_config = ConfigDict(extra="allow")

    extra_pnginfo: dict[str, Any] | None = None


class PromptRequest(Body):
    """``POST /prompt``, as ComfyUI takes it."""

    error_type = "invalid_prompt"
    field_error_types = {"prompt": "no_prompt"}
    hint = "'prompt' must be an API-format workflow object"

    #: The API-format workflow; its nodes are checked by the engine (``node_errors``; an empty
    #: one is ``prompt_no_outputs``, as in ComfyUI).
    prompt: dict[str, Any]
    client_id: OptionalId = None
    #: None: the server picks a UUID.
    prompt_id: OptionalId = None
    #: The queue position; None: after every pending prompt (before them with ``front``).
    number: Annotated[FiniteFloat, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)] | None = None
    front: Flag = False
    extra_data: Annotated[ExtraData, BeforeValidator(lambda v: {} if v is None else v)] = Field(default_factory=ExtraData)
    #: Run only these output nodes (and what they need).
    partial_execution_targets: list[str] | None = None


class ClearOrDelete(Body):
    """``POST /queue`` (pending prompts only) and ``POST /history``."""

    clear: Flag = False
    delete: list[Id] = Field(default_factory=list)


class InterruptRequest(Body):
    """``POST /interrupt``: without ``prompt_id``, whatever runs; with it, only that prompt."""

    prompt_id: OptionalId = None


class FreeRequest(Body):
    """``POST /free``: either switch drops every cached result (models included)."""

    unload_models: Flag = False
    free_memory: Flag = False


def _a_workflow(value: dict[str, Any]) -> dict[str, Any]:
    if is_editor_workflow(value) or is_api_workflow(value):
        return value
    raise PydanticCustomError("not_a_workflow", "neither an editor-format nor an API-format workflow")


class ConvertRequest(Body):
    """``POST /workflow/convert``: the editor JSON itself, or ``{"workflow": editor JSON}``
    (an API-format workflow there is answered as it is)."""

    error_type = "invalid_editor_workflow"
    hint = "expected an editor-format workflow: an object with 'nodes' and 'links'"

    workflow: Annotated[dict[str, Any], AfterValidator(_a_workflow)]

    @model_validator(mode="before")
    @classmethod
    def _bare_editor_workflow(cls, data: Any) -> Any:
        return {"workflow": data} if is_editor_workflow(data) else data


class UploadForm(Body):
    """The text fields of ``POST /upload/image`` (the ``image`` part is streamed, not here)."""

    subfolder: str = ""
    type: Annotated[FolderType, BeforeValidator(lambda v: v or "input")] = "input"
    overwrite: Flag = False


B = TypeVar("B", bound=Body)


def validate(model: type[B], data: Any) -> B:
    """``data`` as a ``model``, or a 400 :class:`JsonError` naming the field at fault."""
    if not isinstance(data, dict):
        raise JsonError(400, model.error_type, "the body must be a JSON object", model.hint)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _rejection(model, exc) from None


async def parse_body(request: web.Request, model: type[B]) -> B:
    """The JSON body (an empty one is ``{}``) as a ``model``; 400/413 JSON errors otherwise. A
    value that is not standard JSON (``NaN``, ``1e400``, nesting too deep…) is refused like any
    other bad field: the model's error type, the field's path."""
    return validate(model, await read_json(request, default={}, invalid=lambda exc: _nonstandard(model, exc)))


def _nonstandard(model: type[Body], exc: JsonInputError) -> JsonError:
    field = exc.path or "body"
    top = field.split(".")[0].split("[")[0]
    return JsonError(
        400,
        model.field_error_types.get(top, model.error_type) if exc.path else "invalid_json",
        f"{field}: {exc.message}",
        model.hint,
        field=field,
        errors=[{"field": field, "type": exc.kind, "message": exc.message}],
    )


def _field(loc: tuple[int | str, ...]) -> str:
    """``("extra_data", "extra_pnginfo")`` → ``extra_data.extra_pnginfo``; list items as ``[i]``."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _rejection(model: type[Body], exc: ValidationError) -> JsonError:
    raw = exc.errors(include_url=False, include_context=False, include_input=False)
    errors = [{"field": _field(e["loc"]), "type": e["type"], "message": e["msg"]} for e in raw]
    first = errors[0]
    top = str(raw[0]["loc"][0]) if raw[0]["loc"] else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return JsonError(
        400,
        model.field_error_types.get(top, model.error_type),
        f"{first['field']}: {first['message']}{more}",
        ". ".join(filter(None, ("; ".join(f"{e['field']}: {e['message']}" for e in errors), model.hint))),
        field=first["field"],
        errors=errors,
    )
