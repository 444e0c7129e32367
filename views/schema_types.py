"""JSON Schema pieces for values and step types, from the registry's typed parameters.

`type_schema` turns a parameter's annotation into a schema, `value_schema` adds what every value
may also be (a `$name`/`${expression}` string, a search space), and `step_type_schema` gives one
step type's mapping. `views.schema` assembles them into the spec language's whole schema.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from typing import Any, Literal

from blockspec.builder import registry
from blockspec.builder.registry import REQUIRED, Param, StepType

# `$name` or `${expression}`, as `builder.expr.reference` reads them (ECMA regex: no DOTALL).
EXPRESSION_PATTERN = r"^\$([A-Za-z_][A-Za-z0-9_]*|\{[\s\S]*\})$"

REF_STEP = {"$ref": "#/$defs/step"}
REF_STEPS = {"$ref": "#/$defs/steps"}
REF_EXPR = {"$ref": "#/$defs/expression"}
REF_SPACE = {"$ref": "#/$defs/search_space"}


# ----------------------------------------------------------------------------- types


def type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a `Param.annotation` (`int | list[int]` -> anyOf integer, array).

    Example:
        >>> type_schema(int | None)
        {'type': ['integer', 'null']}
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        return {}
    if annotation is None or annotation is type(None):
        return {"type": "null"}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [type_schema(a) for a in typing.get_args(annotation)]
        if any(not p for p in parts):
            return {}
        if all(set(p) == {"type"} for p in parts):
            names: list[str] = []
            for p in parts:
                for name in p["type"] if isinstance(p["type"], list) else [p["type"]]:
                    if name not in names:
                        names.append(name)
            return {"type": names}
        return {"anyOf": parts}
    if origin is Literal:
        return {"enum": list(typing.get_args(annotation))}
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {
                "type": "array",
                "prefixItems": [type_schema(a) for a in args],
                "items": False,
                "minItems": len(args),
            }
        item = type_schema(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    simple = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        tuple: "array",
        dict: "object",
    }
    if annotation in simple:
        return {"type": simple[annotation]}
    return {}


def _accepts_strings(schema: dict[str, Any]) -> bool:
    kinds = schema.get("type")
    return not schema or kinds == "string" or (isinstance(kinds, list) and "string" in kinds)


def value_schema(
    schema: dict[str, Any], description: str = "", default: Any = REQUIRED
) -> dict[str, Any]:
    """A value of `schema`, or a `$name`/`${expression}` string, or a search space."""
    if not schema:
        out: dict[str, Any] = {}
    elif _accepts_strings(schema):
        out = {"anyOf": [schema, REF_SPACE]}
    else:
        out = {"anyOf": [schema, REF_EXPR, REF_SPACE]}
    if description:
        out["description"] = description
    if default is not REQUIRED and _is_json(default):
        out["default"] = list(default) if isinstance(default, tuple) else default
    return out


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _ranged(param: Param, schema: dict[str, Any]) -> dict[str, Any]:
    """The resolver's per-name range rules (`filters` > 0, `rate` in [0, 1)) in schema words."""
    if param.name in registry._POSITIVE:
        return _map_numbers(schema, {"exclusiveMinimum": 0})
    if param.name in ("rate", "dropout") and schema.get("type") == "number":
        return {**schema, "minimum": 0, "exclusiveMaximum": 1}
    return schema


def _map_numbers(schema: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    kinds = schema.get("type")
    if kinds in ("integer", "number"):
        return {**schema, **extra}
    if kinds == "array" and isinstance(schema.get("items"), dict):
        return {**schema, "items": _map_numbers(schema["items"], extra)}
    if isinstance(kinds, list) and set(kinds) <= {"integer", "number", "null"}:
        numbers = [k for k in kinds if k != "null"]
        parts = [{"type": numbers[0] if len(numbers) == 1 else numbers, **extra}]
        return {"anyOf": [*parts, {"type": "null"}]} if "null" in kinds else parts[0]
    if "anyOf" in schema:
        return {**schema, "anyOf": [_map_numbers(s, extra) for s in schema["anyOf"]]}
    return schema


def _param_description(param: Param) -> str:
    what = registry.describe(param.annotation)
    if param.required:
        return f"{what}; required"
    default = param.default
    shown = json.dumps(list(default) if isinstance(default, tuple) else default)
    return f"{what}; default {shown if _is_json(default) else repr(default)}"


# ----------------------------------------------------------------------------- step types

# How a combinator's step-holding arguments are shaped (the resolver turns them into children).
_STEP_ARGS: dict[str, dict[str, Any]] = {
    "steps": REF_STEPS,
    "body": REF_STEPS,
    "branches": {
        "anyOf": [{"type": "array", "items": REF_STEPS, "minItems": 1}, REF_EXPR],
        "description": "a list of branches, each a list of steps; all read the same input "
        "(1.1: or `$name` of a block argument holding them)",
    },
    "shortcut": {
        "anyOf": [{"enum": ["auto", "identity", "none"]}, REF_STEPS],
        "description": "auto (identity when shapes match, else 1x1 conv + batch norm), "
        "identity, none (1.1: the body alone), or a list of steps",
        "default": "auto",
    },
    "layer": REF_STEP,
}


def _arg_schema(entry: StepType, param: Param) -> dict[str, Any]:
    if entry.kind == "combinator" and param.name in _STEP_ARGS:
        return _STEP_ARGS[param.name]
    schema = _nested_values(_ranged(param, type_schema(param.annotation)))
    return value_schema(schema, _param_description(param), param.default)


def _nested_values(schema: dict[str, Any]) -> dict[str, Any]:
    """Lets list items be `$name`/`${...}` or search spaces too (`filters: [96, 96, $classes]`)."""
    out = dict(schema)
    if isinstance(out.get("items"), dict):
        out["items"] = value_schema(_nested_values(out["items"]))
    if "prefixItems" in out:
        out["prefixItems"] = [value_schema(_nested_values(s)) for s in out["prefixItems"]]
    if "anyOf" in out:
        out["anyOf"] = [_nested_values(s) for s in out["anyOf"]]
    return out


def args_mapping(entry: StepType) -> dict[str, Any]:
    """The keyword form of a step type's arguments: declared ones typed, Keras passthrough any."""
    properties: dict[str, Any] = {name: _arg_schema(entry, p) for name, p in entry.params.items()}
    for name in sorted(entry.passthrough):
        properties.setdefault(name, True)  # passed to Keras as is
    return {"type": "object", "properties": properties, "additionalProperties": False}


def step_type_schema(entry: StepType) -> dict[str, Any]:
    """Every form a step type's value may take: a mapping, a positional list, a scalar, empty.

    The mapping form lives in `$defs/args_<type>` (shared with `defaults`); the other forms
    point into it.
    """
    args = f"#/$defs/args_{entry.name}"
    forms: list[dict[str, Any]] = [{"$ref": args}, {"type": "null"}]
    primary = entry.params.get(entry.primary) if entry.primary else None
    list_primary = primary is not None and (
        primary.annotation in (list, Any) or typing.get_origin(primary.annotation) is list
    )
    if primary is not None:
        forms.append({"$ref": f"{args}/properties/{primary.name}"})
    if not list_primary:
        positional = [{"$ref": f"{args}/properties/{name}"} for name in entry.params]
        form: dict[str, Any] = {
            "type": "array",
            "description": "positional: " + (", ".join(entry.params) or "no arguments"),
        }
        form.update({"prefixItems": positional, "items": False} if positional else {"maxItems": 0})
        forms.append(form)
    out: dict[str, Any] = {"anyOf": forms}
    doc = " ".join(entry.doc.split())
    if doc:
        out["description"] = doc
    return out


def keras_entries() -> dict[str, StepType]:
    out = {}
    for name in sorted(registry.keras_layer_table()):
        entry = registry.get(name)
        if entry is not None and entry.kind == "keras":
            out[name] = entry
    return out
