"""What every part of the resolver shares: the language's key sets, scopes, and value screens."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from blockspec.builder.spaces import is_space

SPEC_VERSION = 1
TOP_KEYS = (
    "spec", "name", "description", "extends", "imports", "vars", "input", "inputs",
    "defaults", "blocks", "network", "outputs", "train", "tune", "weights", "weights_strict",
)  # fmt: skip
STEP_KEYS = ("name", "from", "repeat", "first", "last", "when", "trainable")
OUTPUT_KEYS = ("from", "activation", "loss", "loss_weight", "metrics", "train_only")
BLOCK_KEYS = ("args", "body", "description")
RESERVED_NAMES = {"i"}
MAX_NAME = 64  # a name becomes layer names and file names: bounded
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DTYPES = ("float32", "float16", "bfloat16", "float64", "int32", "int64", "uint8", "bool", "string")
_COLLAPSIBLE = ("sequence", "parallel", "residual")

INVALID: Any = type("Invalid", (), {"__repr__": lambda self: "<invalid>"})()


def is_name(value: Any) -> bool:
    """An identifier: letters, digits and `_`, not starting with a digit, at most `MAX_NAME` long."""
    return isinstance(value, str) and len(value) <= MAX_NAME and bool(_NAME.match(value))


NAME_RULE = f"letters, digits and _, not starting with a digit, at most {MAX_NAME} characters"


@dataclass
class Scope:
    """Names visible to `from`: this scope's steps, then (lexically) the enclosing scope's."""

    prefix: str
    hp: str
    names: dict[str, str] = field(default_factory=dict)
    parent: Scope | None = None
    broken: set[str] = field(default_factory=set)  # steps refused here: no cascade on their use
    absent: dict[str, tuple] = field(default_factory=dict)  # dropped by `when`/`repeat: 0`: where

    def absent_at(self, name: Any) -> tuple | None:
        """Where step `name` was written, if `when` or `repeat: 0` left it out; else None."""
        scope = self if isinstance(name, str) else None
        while scope is not None:
            if name in scope.absent:
                return scope.absent[name]
            scope = scope.parent
        return None

    def is_broken(self, name: Any) -> bool:
        if not isinstance(name, str):
            return False
        scope = self
        while scope is not None:
            if name in scope.broken:
                return True
            scope = scope.parent
        return False

    def lookup(self, name: str) -> str | None:
        scope = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def visible(self) -> list[str]:
        out, scope = [], self
        while scope is not None:
            out += list(scope.names)
            scope = scope.parent
        return out

    def full(self, local: str) -> str:
        return f"{self.prefix}_{local}" if self.prefix else local


class Abort(Exception):
    """A limit was hit: stop resolving, report what was found so far."""


def type_key(item: Any) -> str:
    """The type key of a step mapping (`conv` in `{conv: 64, name: c1}`), `choice` or `step`."""
    if isinstance(item, dict):
        if is_space(item):
            return "choice"
        keys = [k for k in item if k not in STEP_KEYS]
        if len(keys) == 1 and isinstance(keys[0], str):
            return keys[0]
    return "step"


def _labels(values: list) -> list[str]:
    """Readable, unique labels for choice values that are steps (`basic_residual`, ...)."""
    labels = []
    for index, value in enumerate(values):
        label = type_key(value) if isinstance(value, dict) else str(value)
        if label in labels or isinstance(value, list):
            label = f"{label}_{index}"
        labels.append(label)
    return labels


# Keys by which a mapping names a Keras object to deserialise (and so, possibly, code to import).
OBJECT_KEYS = ("module", "registered_name", "class_name")


def foreign_object(value: Any, anywhere: bool = False) -> tuple[str, tuple] | None:
    """The key by which a Keras object config reaches beyond built-in Keras objects, and where.

    Keras deserialises `{class_name, config}` mappings given as initializers, regularizers, ...;
    `module` and `registered_name` make it import modules or look up custom objects, and
    `__lambda__`-style class names are its internal types. A layer argument may name a built-in
    object as `{class_name, config}`; with `anywhere`, where the language takes names (losses,
    metrics, activations, augment layers, optimizer arguments), any of `OBJECT_KEYS` is refused.

    Returns:
        `(key, path)`: the offending key and the path to its mapping inside `value`; or None.
    """
    if isinstance(value, dict):
        keys = OBJECT_KEYS if anywhere else ("module", "registered_name")
        if anywhere or "class_name" in value:
            for key in keys:
                if key in value:
                    return key, ()
            if str(value.get("class_name", "")).startswith("__"):
                return "class_name", ()
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return None
    for part, item in items:
        found = foreign_object(item, anywhere)
        if found:
            return found[0], (part, *found[1])
    return None


def not_finite(value: Any) -> bool:
    """A float somewhere inside `value` that is NaN or infinite."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(not_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(not_finite(v) for v in value)
    return False


def contains_invalid(value: Any) -> bool:
    if value is INVALID:
        return True
    if isinstance(value, dict):
        return any(contains_invalid(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_invalid(v) for v in value)
    return False


def stem(file: str) -> str:
    base = os.path.basename(file)
    return base.rsplit(".", 1)[0] if "." in base else (base.strip("<>") or "model")
