"""A graph's input and context as the console accepts them, following LangGraph's input rules.

LangGraph takes partial input for a TypedDict state (keys it is not given keep their channel's
default), runs a pydantic input model's own validation, and turns messages given as role/content
dicts, LangChain message dicts, `[role, content]` pairs or plain strings into LangChain messages
(`add_messages`). The console checks the same before a run is queued, and also refuses keys the
input schema does not have (LangGraph would drop them silently) and values of the wrong type.
"""

import dataclasses
import types
import typing
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic.fields import FieldInfo
from typing_extensions import is_typeddict

from pipeline.exceptions import InvalidInput


def _check_message(value: Any) -> Any:
    from langchain_core.messages import convert_to_messages

    try:
        convert_to_messages([value])
    except Exception as exc:
        raise ValueError(str(exc).split("\n")[0]) from None
    return value


# What a run's input may hold where the state has LangChain messages: stored as given (JSON),
# turned into messages by LangGraph's `add_messages` when the run starts.
MESSAGE_JSON_SCHEMA = {
    "description": "A chat message: a string (a user message), a [role, content] pair, a "
    "{role, content} object or a LangChain message dict ({type, content, ...}).",
    "anyOf": [
        {"type": "string"},
        {"type": "array", "prefixItems": [{"type": "string"}, {}], "minItems": 2, "maxItems": 2},
        {
            "type": "object",
            "properties": {"role": {"type": "string"}, "content": {}},
            "required": ["role", "content"],
        },
        {
            "type": "object",
            "properties": {"type": {"type": "string"}, "content": {}},
            "required": ["type", "content"],
        },
    ],
}
MessageLike = Annotated[Any, AfterValidator(_check_message), WithJsonSchema(MESSAGE_JSON_SCHEMA)]


def _mentions_message(annotation: Any) -> bool:
    from langchain_core.messages import BaseMessage

    if isinstance(annotation, type) and issubclass(annotation, BaseMessage):
        return True
    return any(
        _mentions_message(arg)
        for arg in get_args(annotation)
        if isinstance(arg, type) or get_origin(arg) is not None
    )


def _plain(annotation: Any) -> Any:
    """`annotation` without LangGraph's reducer metadata, messages as their JSON forms."""
    if _mentions_message(annotation):
        origin = get_origin(annotation)
        if origin in (Annotated, typing.Required, typing.NotRequired):
            return _plain(get_args(annotation)[0])
        if origin in (list, typing.Sequence, tuple) or annotation is list:
            return list[MessageLike]
        if origin in (Union, types.UnionType):
            args = [_plain(arg) for arg in get_args(annotation)]
            return Union[tuple(args)]  # noqa: UP007
        return MessageLike
    if get_origin(annotation) in (Annotated, typing.Required, typing.NotRequired):
        return _plain(get_args(annotation)[0])
    return annotation


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How one schema (a graph's input or context) is checked and published."""

    name: str
    model: type[BaseModel]
    user_model: type[BaseModel] | None
    message_fields: frozenset[str]
    partial: bool

    def json_schema(self) -> dict:
        return self.model.model_json_schema()

    def validate(self, data: Any, what: str = "input") -> dict:
        if not isinstance(data, dict):
            raise InvalidInput(
                f"{what.capitalize()} for {self.name!r} must be a JSON object, got "
                f"{type(data).__name__}."
            )
        try:
            if self.user_model is None:
                checked = self.model.model_validate(data)
                result = checked.model_dump(mode="json", exclude_unset=self.partial)
            else:
                from langchain_core.messages import convert_to_messages

                # The graph's own pydantic model checks it, its validators included.
                values = {
                    key: convert_to_messages(value) if key in self.message_fields else value
                    for key, value in data.items()
                }
                result = self.user_model.model_validate(values).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidInput(f"Invalid {what} for {self.name!r}: {_format(exc)}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Invalid {what} for {self.name!r}: {exc}") from None
        # LangGraph drops keys its input schema does not have; a typo would go unnoticed.
        unknown = sorted(set(data) - set(self.model.model_fields))
        if unknown:
            known = ", ".join(self.model.model_fields) or "none"
            raise InvalidInput(
                f"Invalid {what} for {self.name!r}: unknown field(s) {', '.join(unknown)}; "
                f"fields: {known}."
            )
        # Messages are kept as given: LangGraph's `add_messages` turns them into messages.
        result.update((key, data[key]) for key in self.message_fields if key in data)
        return result


def _format(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _fields(schema: type) -> tuple[dict[str, Any], dict[str, FieldInfo], bool]:
    """(annotations, pydantic field infos, partial) of a TypedDict, pydantic model or
    dataclass."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        infos = dict(schema.model_fields)
        return {name: info.annotation for name, info in infos.items()}, infos, False
    hints = get_type_hints(schema, include_extras=True)
    if dataclasses.is_dataclass(schema):
        infos = {}
        for f in dataclasses.fields(schema):
            if f.default is not dataclasses.MISSING:
                infos[f.name] = FieldInfo(default=f.default)
            elif f.default_factory is not dataclasses.MISSING:
                infos[f.name] = FieldInfo(default_factory=f.default_factory)
            else:
                infos[f.name] = FieldInfo()
        return {name: hints[name] for name in infos}, infos, False
    if is_typeddict(schema):
        # LangGraph takes any subset of a TypedDict state's keys as input.
        return hints, {name: FieldInfo(default=None) for name in hints}, True
    raise TypeError(f"unsupported schema {schema!r}")


@cache
def input_spec(name: str, schema: type) -> InputSpec:
    annotations, infos, partial = _fields(schema)
    fields = {}
    for field, annotation in annotations.items():
        info = FieldInfo.merge_field_infos(infos[field], annotation=_plain(annotation))
        fields[field] = (_plain(annotation), info)
    model = create_model(  # type: ignore[call-overload]
        getattr(schema, "__name__", "Input"),
        __config__=ConfigDict(
            arbitrary_types_allowed=True, json_schema_extra={"additionalProperties": False}
        ),
        **fields,
    )
    user_model = schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None
    return InputSpec(
        name=name,
        model=model,
        user_model=user_model,
        message_fields=frozenset(f for f, a in annotations.items() if _mentions_message(a)),
        partial=partial,
    )


@cache
def adapter(schema: type) -> TypeAdapter:
    """A pydantic adapter for a context schema (dataclass, TypedDict or model)."""
    if is_typeddict(schema):
        # pydantic only accepts typing_extensions.TypedDict before Python 3.12; rebuild it.
        import typing_extensions

        schema = typing_extensions.TypedDict(
            schema.__name__, get_type_hints(schema, include_extras=True), total=schema.__total__
        )
    return TypeAdapter(schema)
