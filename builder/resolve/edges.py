"""Search spaces at their edges: what a trial would refuse, `validate` refuses first.

Resolving a spec takes each space's `default`; a search also picks the other values. A float
space feeding `filters`, a `dropout` space reaching 1.5 or a choice of a step with a typo resolve
at the default and fail every trial that picks them. `edge_problems` resolves the spec again with
one space at a time moved to each edge (`min`, the largest value on its grid, each other choice,
the other boolean), the rest at their defaults; a space met only inside a choice is moved with
that choice picked. Problems found so are those of the spec, each saying which value brings it.
"""

from __future__ import annotations

from typing import Any

from blockspec.builder.errors import Problem, SpecError, shorten
from blockspec.builder.spaces import Chooser, default_value
from blockspec.builder.spec import HyperParameter

MAX_RESOLVES = 64  # edges tried at most (a spec of many spaces checks the first ones' edges)


class _EdgeChooser(Chooser):
    """Each space's default, except the spaces in `picked` (name -> value)."""

    def __init__(self, picked: dict[str, Any]) -> None:
        super().__init__()
        self.picked = picked

    def pick(self, name: str, space: dict) -> Any:
        return self.picked[name] if name in self.picked else default_value(space)


def _edges(hp: HyperParameter) -> list[Any]:
    """The values of `hp` other than the one it took, at the ends of its range."""
    options, kind = hp.options, hp.kind
    if kind == "bool":
        values = [True, False]
    elif kind == "choice":
        values = list(options.get("values") or [])
    else:
        low, high, step = options.get("min"), options.get("max"), options.get("step")
        if isinstance(step, (int, float)) and step > 0 and isinstance(low, (int, float)):
            high = low + ((high - low) // step) * step
            high = int(high) if kind == "int" else high
        values = [low, high]
        if kind == "float":  # keras-tuner's Float gives floats, also for `min: 8`
            values = [float(v) if isinstance(v, (int, float)) else v for v in values]
    return [v for v in values if not (v == hp.value and type(v) is type(hp.value))]


def edge_problems(resolve, hyperparameters: list[HyperParameter]) -> list[Problem]:
    """Problems of the spec with one space at a time at each edge (`resolve(chooser)` resolves).

    Args:
        resolve: resolves the spec with a given chooser; raises `SpecError`.
        hyperparameters: the spaces met at the defaults.
    """
    queue = [({}, hp) for hp in hyperparameters]
    seen = {hp.name for hp in hyperparameters}
    found: dict[tuple, Problem] = {}
    tried = 0
    while queue and tried < MAX_RESOLVES:
        base, hp = queue.pop(0)
        for value in _edges(hp):
            if tried >= MAX_RESOLVES:
                break
            tried += 1
            picked = {**base, hp.name: value}
            chooser = _EdgeChooser(picked)
            try:
                resolve(chooser)
            except SpecError as e:
                for p in e.problems:
                    key = (p.path, str(p.mark))  # one problem a place: its first edge
                    if key not in found:
                        when = f" (when the search picks {hp.name}={shorten(value, 60)})"
                        found[key] = Problem(p.message + when, p.path, p.mark)
                continue
            for met in chooser.chosen.values():
                if met.name not in seen:  # a space inside the choice just picked
                    seen.add(met.name)
                    queue.append((picked, met))
    return list(found.values())
