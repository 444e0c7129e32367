"""One registry of step types: layers, combinators, built-in blocks, any `keras.layers` class.

A step type declares its arguments (name, Python type, default) so that the resolver can check a
spec without importing Keras; building is deferred to the compiler.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from blockspec.builder.errors import did_you_mean


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

Size = int | list[int]  # a kernel, stride or pool size: 3 or [1, 7]


@dataclass(frozen=True)
class Param:
    """One argument of a step type."""

    name: str
    annotation: Any = Any
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass
class StepType:
    """A registered step type.

    Attributes:
        name: the type key written in specs.
        kind: `layer`, `block`, `combinator` or `keras` (a `keras.layers` class by exact name).
        params: declared arguments, in positional order.
        build: for layers and blocks, `build(x, *, name, **args) -> tensor` (x is a list of tensors
            when `multi_input`); for combinators, `build(ctx, step, x) -> tensor`.
        primary: the argument a scalar value sets (`dropout: 0.5`).
        passthrough: further Keras argument names accepted as they are.
        multi_input: reads a list of tensors (`add`, `concat`).
        doc: one-paragraph description.
        source: where it was registered.
    """

    name: str
    kind: str
    params: dict[str, Param]
    build: Callable[..., Any] | None = None
    primary: str | None = None
    passthrough: frozenset[str] = frozenset()
    multi_input: bool = False
    doc: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def accepts(self, arg: str) -> bool:
        return arg in self.params or arg in self.passthrough

    def summary_line(self) -> str:
        return (self.doc.strip().splitlines() or [""])[0]


class RegistryError(ValueError):
    pass


_REGISTRY: dict[str, StepType] = {}


def register(entry: StepType) -> StepType:
    """Adds a step type; a duplicate name is an error naming the first definition."""
    if entry.name in _REGISTRY:
        first = _REGISTRY[entry.name]
        raise RegistryError(
            f"step type `{entry.name}` is already registered (first by {first.source}); "
            f"cannot register it again from {entry.source}"
        )
    _REGISTRY[entry.name] = entry
    return entry


def register_block(name: str, *, primary: str | None = None, multi_input: bool = False):
    """Registers a Python block: a function of a tensor with keyword-only arguments and `name`.

    Example:
        >>> @register_block("my_block")                                   # doctest: +SKIP
        ... def my_block(x, *, filters: int, name: str):
        ...     return layers.Conv2D(filters, 3, name=f"{name}_conv")(x)
    """

    def decorate(fn: Callable) -> Callable:
        hints = typing.get_type_hints(fn)
        params = {}
        for pname, p in inspect.signature(fn).parameters.items():
            if p.kind is not inspect.Parameter.KEYWORD_ONLY or pname == "name":
                continue
            default = REQUIRED if p.default is inspect.Parameter.empty else p.default
            params[pname] = Param(pname, hints.get(pname, Any), default)
        register(
            StepType(
                name=name,
                kind="block",
                params=params,
                build=fn,
                primary=primary,
                multi_input=multi_input,
                doc=inspect.getdoc(fn) or "",
                source=f"{fn.__module__}.{fn.__qualname__}",
            )
        )
        return fn

    return decorate


def get(name: str) -> StepType | None:
    """The step type registered as `name`, or a `keras.layers` class of that exact name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    table = keras_layer_table()
    if name in table and name not in REFUSED_KERAS:
        entry = StepType(
            name=name,
            kind="keras",
            params={},
            passthrough=frozenset(table[name]) - {"name"},
            doc=f"keras.layers.{name}, arguments as in Keras.",
            source="keras.layers",
            multi_input=name in _MULTI_INPUT_KERAS,
        )
        _REGISTRY[name] = entry
        return entry
    return None


# `keras.layers` classes a spec may not name: they run Python or load files (a spec is data, and
# a saved model must load with `safe_mode=True`), or they are not steps.
REFUSED_KERAS = {
    "Lambda": "it runs Python code",
    "TFSMLayer": "it loads a SavedModel from disk",
    "JaxLayer": "it wraps Python code",
    "FlaxLayer": "it wraps Python code",
    "TorchModuleWrapper": "it wraps Python code",
    "Layer": "it is the abstract base class",
    "Wrapper": "it is an abstract base class",
    "InputLayer": "inputs come from `input`/`inputs`",
}


def refused(name: Any) -> str | None:
    """Why `name`, a `keras.layers` class, cannot be a step; None if it is not refused."""
    reason = REFUSED_KERAS.get(name) if isinstance(name, str) else None
    return f"`{name}` cannot be used in a spec: {reason}" if reason else None


def all_types() -> dict[str, StepType]:
    """Registered step types (not the on-demand `keras.layers` ones), by name."""
    return {k: v for k, v in _REGISTRY.items() if v.kind != "keras"}


def suggest(name: str, extra=()) -> str:
    # A spec's own block may share a built-in block's name: suggest it once.
    return did_you_mean(name, list(dict.fromkeys([*all_types(), *extra])))


_MULTI_INPUT_KERAS = {
    "Add",
    "Concatenate",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Subtract",
    "Dot",
}


@cache
def keras_layer_table() -> dict[str, frozenset[str]]:
    data = json.loads((Path(__file__).with_name("keras_layers.json")).read_text())
    return {k: frozenset(v) for k, v in data["layers"].items()}


# ----------------------------------------------------------------------------- type checking

_POSITIVE = {
    "filters",
    "units",
    "kernel",
    "size",
    "strides",
    "classes",
    "repeat",
    "groups",
    "depth_multiplier",
}


def check_value(name: str, value: Any, annotation: Any) -> str | None:
    """None if `value` fits `annotation` (and the per-name range rules), else what was expected."""
    if not matches(value, annotation):
        return f"expected {describe(annotation)}"
    if name in _POSITIVE and value is not None:
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 for v in items):
            return "must be positive"
    if name in ("rate", "dropout") and isinstance(value, (int, float)) and not 0 <= value < 1:
        return "must be in [0, 1)"
    return None


def matches(value: Any, annotation: Any) -> bool:
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(annotation))
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple):
        if not isinstance(value, list):
            return False
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(
                matches(v, a) for v, a in zip(value, args, strict=True)
            )
        item = args[0] if args else Any
        return all(matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (list, tuple):
        return isinstance(value, list)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def describe(annotation: Any) -> str:
    """A readable name for a type: `int or list of int`, `one of 'same', 'valid'`."""
    if annotation is Any:
        return "any value"
    if annotation is None or annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(describe(a) for a in args)})"
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )
