"""Lazy module handles, so that registering blocks does not import TensorFlow.

`blockspec validate` loads the registry (every block's arguments) in well under a second because
`blocks/` reaches Keras only through these handles, at build time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class LazyModule:
    """Imports `module` on first attribute access."""

    def __init__(self, module: str):
        self._name = module
        self._module = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


keras = LazyModule("keras")
layers = LazyModule("keras.layers")
ops = LazyModule("keras.ops")


class Deferred:
    """An expression that reads a shape `validate` could not infer, evaluated when built.

    The resolver makes one where an expression reads an `in_*` name it could not know (the step
    before has no shape rule, `builder/shape_rules.py`) or a value that is itself deferred (a
    block argument). The compiler evaluates it with the actual input shape of the step whose
    arguments hold it (`settle`), before that step is built; a refusal then names where the
    expression was written.

    Attributes:
        text: the expression, without `${` `}` (a `$name` is the expression `name`).
        env: the names it reads, as the resolver saw them (`ShapeSlot`s and `Deferred`s waiting).
        path: the spec path where it was written (for messages).
        mark: where it was written (file:line:col).
    """

    def __init__(self, text: str, env: dict[str, Any], path: str, mark: Any):
        self.text, self.env, self.path, self.mark = text, env, path, mark

    def __repr__(self) -> str:
        return f"${{{self.text}}}"

    def settle(self, shape: tuple | None, settled: dict[int, Any]) -> Any:
        """The value, `in_*` read from `shape` (the input of the step holding it, no batch axis).

        `settled` maps the id of each deferred value already evaluated in this build to its value
        (a block's argument is evaluated at the block, before its body reads it); this one is
        added. Raises `ExpressionError` as the evaluator does.
        """
        from blockspec.builder.expr import ExpressionError

        if id(self) in settled:
            return settled[id(self)]
        try:
            return self._settle(shape, settled)
        except DeferredError:
            raise
        except ExpressionError as e:
            raise DeferredError(str(e), self) from None

    def _settle(self, shape: tuple | None, settled: dict[int, Any]) -> Any:
        from blockspec.builder.expr import Unavailable, evaluate
        from blockspec.builder.shape_rules import ShapeSlot, describe, shape_env

        names = shape_env(shape, Unavailable)
        env = {}
        for key, value in self.env.items():
            if isinstance(value, ShapeSlot):
                value = names[key]
                if isinstance(value, ShapeSlot):  # an axis of size None: unknown when built too
                    value = Unavailable(
                        f"`{key}` is not known: the input of this step has shape {describe(shape)}"
                    )
            elif isinstance(value, Deferred):
                value = value.settle(shape, settled)
            env[key] = value
        settled[id(self)] = evaluate(self.text, env)
        return settled[id(self)]


class DeferredError(ValueError):
    """A deferred expression refused when built; `deferred` says where it was written."""

    def __init__(self, message: str, deferred: Deferred):
        super().__init__(message)
        self.deferred = deferred


def contains_deferred(value: Any) -> bool:
    """A `Deferred` somewhere inside `value` (a list or mapping of arguments)."""
    if isinstance(value, Deferred):
        return True
    if isinstance(value, dict):
        return any(contains_deferred(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_deferred(v) for v in value)
    return False


def map_deferred(value: Any, fn: Callable[[Deferred], Any]) -> Any:
    """`value` (a list or mapping of arguments) with each `Deferred` inside it replaced by
    `fn(deferred)`; the rest as it is."""
    if isinstance(value, Deferred):
        return fn(value)
    if isinstance(value, dict):
        return {k: map_deferred(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_deferred(v, fn) for v in value]
    return value


def settle_all(value: Any, shape: tuple | None, settled: dict[int, Any]) -> Any:
    """`value` with every `Deferred` inside it evaluated (see `Deferred.settle`)."""
    return map_deferred(value, lambda deferred: deferred.settle(shape, settled))
