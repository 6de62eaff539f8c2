"""Python types -> JSON Schema, and a check of a decoded JSON body against a request type.

The API declares its request bodies as dataclasses and its responses as TypedDicts next to the
views; the OpenAPI document and the body checks are derived from those same types, so neither
can drift from the code. Only what the API uses is supported: str, int, float, bool, None,
list[X], dict[str, X], Literal, unions (X | None), TypedDict, dataclass and Any.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import (
    Any,
    Literal,
    NotRequired,
    Required,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from slum.errors import BadRequest

T = TypeVar("T")

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}


def is_named(tp: Any) -> bool:
    """A type that becomes a named component (`#/components/schemas/Name`)."""
    return isinstance(tp, type) and (dataclasses.is_dataclass(tp) or typing.is_typeddict(tp))


def schema_of(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of `tp`; named types are added to `components` and referenced."""
    if tp is Any:
        return {}
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return {"anyOf": [schema_of(a, components) for a in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (NotRequired, Required):
        return schema_of(args[0], components)
    if origin is list:
        return {"type": "array", "items": schema_of(args[0], components) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], components) if args else {}}
    if tp is list:
        return {"type": "array"}
    if tp is dict:
        return {"type": "object"}
    if is_named(tp):
        name = tp.__name__
        if name not in components:
            components[name] = {}  # placeholder: a type that refers to itself terminates
            components[name] = _object_schema(tp, components)
        return {"$ref": f"#/components/schemas/{name}"}
    raise TypeError(f"no JSON schema for {tp!r}")


def _object_schema(tp: type, components: dict[str, Any]) -> dict[str, Any]:
    hints = get_type_hints(tp, include_extras=True)
    properties = {name: schema_of(hint, components) for name, hint in hints.items()}
    if dataclasses.is_dataclass(tp):
        required = [
            f.name
            for f in dataclasses.fields(tp)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
    else:
        # Not __required_keys__: under `from __future__ import annotations` Python 3.11 counts a
        # NotRequired[...] key as required there; the resolved hints say it right.
        total = getattr(tp, "__total__", True)
        required = sorted(
            name
            for name, hint in hints.items()
            if get_origin(hint) is Required or (total and get_origin(hint) is not NotRequired)
        )
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if tp.__doc__ and not tp.__doc__.startswith(f"{tp.__name__}("):
        out["description"] = " ".join(tp.__doc__.split())
    return out


def conforms(value: Any, tp: Any) -> bool:
    """Whether a decoded JSON value has the type `tp` (bool is not an int here, as in JSON)."""
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is list or tp is list:
        return (
            isinstance(value, list) and all(conforms(v, args[0]) for v in value)
            if args
            else isinstance(value, list)
        )
    if origin is dict or tp is dict:
        return isinstance(value, dict) and (
            not args or all(isinstance(k, str) and conforms(v, args[1]) for k, v in value.items())
        )
    raise TypeError(f"cannot check a value against {tp!r}")


def from_json(cls: type[T], data: Any) -> T:
    """Build the request dataclass `cls` from a decoded JSON body, or say what is wrong (400).
    Fields it does not know are ignored, as a tolerant reader does (newer clients, tenement's)."""
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object in the request body")
    assert dataclasses.is_dataclass(cls)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BadRequest(f"{name} is required")
            continue
        if not conforms(data[name], hints[name]):
            raise BadRequest(f"{name} must be {_describe(hints[name])}")
        values[name] = data[name]
    return cls(**values)


def _describe(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}
    if tp in names:
        return names[tp]
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is dict or tp is dict:
        return "a JSON object"
    if origin is list or tp is list:
        return "a JSON array"
    if tp is Any:
        return "any JSON value"
    return str(tp)
