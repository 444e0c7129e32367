"""Resolved spec objects: what the resolver hands to the compiler, the trainer and the tuner.

Everything here is plain, typed and final: vars and expressions are evaluated, `defaults` applied,
`repeat` expanded, user blocks inlined, search spaces replaced by concrete values. Nothing in this
module imports Keras.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from blockspec.builder.errors import Mark, Problem


@dataclass(frozen=True)
class InputSpec:
    """One model input: `shape` without the batch dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class Step:
    """One resolved step.

    Attributes:
        type: the registered step type (`conv`, `inception`, `parallel`, `Conv2DTranspose`, ...).
        name: the full scoped name; Keras layer names of this step start with it.
        args: keyword arguments, defaults applied, values concrete.
        sources: names of the steps/inputs it reads; `None` means the previous step.
        children: for combinators, the nested step lists (`sequence`: one list; `parallel`: one per
            branch; `residual`: `[body]` or `[body, shortcut]`; user blocks: one list, the body).
        block: for an inlined user block, the block's name (the step's `type` is then `sequence`).
        path: the spec path, for messages (`network[7].inception`).
        mark: where the step was written.
        trainable: false freezes every layer the step makes (`trainable: false`, 1.1).
    """

    type: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    sources: list[str] | None = None
    children: list[list[Step]] = field(default_factory=list)
    block: str | None = None
    path: str = ""
    mark: Mark | None = None
    trainable: bool = True


@dataclass(frozen=True)
class OutputSpec:
    """One model output, read from step `source`."""

    name: str
    source: str
    activation: str | None = None
    loss: Any = None
    loss_weight: float = 1.0
    metrics: tuple[Any, ...] = ()
    train_only: bool = False


@dataclass(frozen=True)
class HyperParameter:
    """A search space found in the spec, by its hyperparameter name."""

    name: str
    kind: str  # int | float | choice | bool
    options: dict[str, Any]
    path: str
    value: Any  # the value used in this resolution
    parent: tuple[str, tuple[Any, ...]] | None = None  # (choice name, values) it is conditional on


@dataclass(frozen=True)
class ResolvedSpec:
    """A spec ready to compile.

    Attributes:
        name: model name.
        description: free text.
        inputs: the model's inputs, in order.
        network: the top-level steps.
        outputs: the model's outputs, in the order written.
        defaults: resolved per-type defaults (the compiler applies them to steps it synthesises,
            such as a residual's projection shortcut).
        train: the `train` section with values concrete ({} if absent).
        tune: the `tune` section ({} if absent).
        hyperparameters: the search spaces met while resolving, with the values chosen.
        document: the merged source document (after `extends`, `imports`, `--set`), for `render`.
        file: the spec's file, or a description of where it came from.
        limits: the `builder.load.Limits` it was resolved under (the compiler checks
            `max_parameters` against them); None means the defaults.
        train_config: `train`, typed and with its defaults (`builder.resolve.train.TrainConfig`).
        tune_config: `tune`, typed and with its defaults (`builder.resolve.tune.TuneConfig`).
        warnings: what is valid but likely unintended (`validate` prints them).
        weights: (1.1) the `weights:` file the model starts from (a path, made absolute from
            the folder of the file that wrote it, or `imagenet`/`imagenet_notop`); None.
        weights_strict: (1.1) refuse weights that do not all load.
        weights_mark: where `weights:` is written (a missing file is refused there at build).
        vars: the vars' values, evaluated (what `$name` reads; `weights: imagenet` chooses
            keras.applications' file by them).
    """

    name: str
    description: str
    inputs: list[InputSpec]
    network: list[Step]
    outputs: list[OutputSpec]
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    tune: dict[str, Any] = field(default_factory=dict)
    hyperparameters: list[HyperParameter] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)
    file: str = "<spec>"
    limits: Any = None
    train_config: Any = None
    tune_config: Any = None
    warnings: tuple[Problem, ...] = ()
    weights: str | None = None
    weights_strict: bool = False
    weights_mark: Mark | None = None
    vars: dict[str, Any] = field(default_factory=dict)

    def output(self, name: str) -> OutputSpec:
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(name)


def walk(steps: Iterable[Step]) -> Iterator[Step]:
    """Every step, nested ones included, in network order."""
    for step in steps:
        yield step
        for chain in step.children:
            yield from walk(chain)


def layer_name(step: Step, reserved: set[str] | frozenset[str]) -> str:
    """The name a step's layers are built under.

    A step named like an output gives that name to the output's layer and builds under
    `{name}_{type}` (`aux1` -> `aux1_aux_classifier_pool`), unless that would say the name twice:
    a step `aux` of type `aux_classifier` builds under `aux_classifier`, a step `dense` of type
    `dense` under `dense_step`.

    Example:
        >>> layer_name(Step(type="aux_classifier", name="aux"), {"aux"})
        'aux_classifier'
    """
    if step.name not in reserved:
        return step.name
    if step.type == step.name:
        return f"{step.name}_step"
    if step.type.startswith(f"{step.name}_"):
        return step.type
    return f"{step.name}_{step.type}"
