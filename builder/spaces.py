"""Search spaces (`{tune: int|float|choice|bool, ...}`) and the choosers that pick their values.

The resolver meets a space, checks it here, and asks a chooser for its value: `DefaultChooser`
takes each `default` (building without tuning); the tuner supplies one backed by keras-tuner.
"""

from __future__ import annotations

import contextlib
from typing import Any

from blockspec.builder.errors import did_you_mean
from blockspec.builder.spec import HyperParameter

KINDS = ("int", "float", "choice", "bool")
_KEYS = {
    "int": {"tune", "min", "max", "step", "sampling", "default"},
    "float": {"tune", "min", "max", "step", "sampling", "default"},
    "choice": {"tune", "values", "default"},
    "bool": {"tune", "default"},
}
SAMPLINGS = ("linear", "log", "reverse_log")


def is_space(value: Any) -> bool:
    return isinstance(value, dict) and "tune" in value


def check_space(space: dict) -> list[tuple[str, str]]:
    """Problems with a search space, as (key, message) pairs; [] when it is valid."""
    kind = space.get("tune")
    if kind not in KINDS:
        return [
            (
                "tune",
                f"unknown search space kind.{did_you_mean(kind, KINDS)} Expected one of "
                f"{', '.join(KINDS)}. Received: tune={kind!r}",
            )
        ]
    problems = []
    for key in space:
        if key not in _KEYS[kind]:
            problems.append(
                (
                    key,
                    f"unknown key for a `{kind}` search space.{did_you_mean(key, _KEYS[kind])} "
                    f"Received: {key}",
                )
            )
    if kind in ("int", "float"):
        number = int if kind == "int" else (int, float)
        for key in ("min", "max"):
            if key not in space:
                problems.append((key, f"a `{kind}` search space needs `{key}`"))
            elif isinstance(space[key], bool) or not isinstance(space[key], number):
                problems.append(
                    (
                        key,
                        f"`{key}` must be {'an integer' if kind == 'int' else 'a number'}. "
                        f"Received: {key}={space[key]!r}",
                    )
                )
        if problems:
            return problems
        low, high = space["min"], space["max"]
        if low > high:
            problems.append(
                ("min", f"`min` must not exceed `max`. Received: min={low}, max={high}")
            )
        step = space.get("step")
        if step is not None and (
            isinstance(step, bool) or not isinstance(step, number) or step <= 0
        ):
            problems.append(("step", f"`step` must be a positive number. Received: step={step!r}"))
        sampling = space.get("sampling", "linear")
        if sampling not in SAMPLINGS:
            problems.append(
                (
                    "sampling",
                    f"unknown sampling.{did_you_mean(sampling, SAMPLINGS)} Received: "
                    f"sampling={sampling!r}",
                )
            )
        elif sampling != "linear" and low <= 0:
            problems.append(
                ("sampling", f"`{sampling}` sampling needs min > 0. Received: min={low}")
            )
        if "default" in space:
            default = space["default"]
            if (
                isinstance(default, bool)
                or not isinstance(default, number)
                or not low <= default <= high
            ):
                problems.append(
                    (
                        "default",
                        f"`default` must be {'an integer' if kind == 'int' else 'a number'} "
                        f"in [{low}, {high}]. Received: default={default!r}",
                    )
                )
    elif kind == "choice":
        values = space.get("values")
        if not isinstance(values, list) or not values:
            problems.append(
                (
                    "values",
                    f"a `choice` needs a non-empty list `values`. Received: values={values!r}",
                )
            )
        elif "default" in space and space["default"] not in values:
            problems.append(
                (
                    "default",
                    f"`default` must be one of `values`. Received: default={space['default']!r}",
                )
            )
    elif "default" in space and not isinstance(space["default"], bool):
        problems.append(
            ("default", f"`default` must be true or false. Received: default={space['default']!r}")
        )
    return problems


def default_value(space: dict) -> Any:
    kind = space["tune"]
    if "default" in space:
        return space["default"]
    if kind in ("int", "float"):
        return space["min"]
    if kind == "choice":
        return space["values"][0]
    return False


class Chooser:
    """Picks the value of each search space; records what it picked."""

    def __init__(self) -> None:
        self.chosen: dict[str, HyperParameter] = {}
        self._parents: list[tuple[str, tuple[Any, ...]]] = []

    def choose(self, name: str, space: dict, path: str) -> Any:
        if name in self.chosen:
            return self.chosen[name].value
        value = self.pick(name, space)
        options = {k: v for k, v in space.items() if k != "tune"}
        parent = self._parents[-1] if self._parents else None
        self.chosen[name] = HyperParameter(name, space["tune"], options, path, value, parent)
        return value

    def pick(self, name: str, space: dict) -> Any:
        return default_value(space)

    @contextlib.contextmanager
    def conditional(self, name: str, value: Any):
        """Spaces met inside are conditional on hyperparameter `name` having `value`."""
        self._parents.append((name, (value,)))
        try:
            yield
        finally:
            self._parents.pop()


class DefaultChooser(Chooser):
    """Each space's `default` (or `min`, the first value, false)."""
