"""`train.freeze` and `train.stages`: their rules, and which layers a list of step patterns names.

Pure Python: `validate` checks the patterns against the network's step names (a pattern that
matches no step is refused, with a suggestion); the trainer and the weights loader ask which of a
built model's layers belong to the chosen steps (`layers_of`).

A step's layers are named after it (`conv1` -> `conv1`, `conv1_bn`), and a nested step's name
starts with its parent's (`inception_4a_b2_conv`); a `backbone` step's children keep the other
spec's names. So a layer belongs to the step with the longest name it starts with, and choosing
a step chooses its children too.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from blockspec.builder.errors import did_you_mean, shorten
from blockspec.builder.resolve.checks import positive_int
from blockspec.builder.spec import Step, walk

STAGE_KEYS = ("epochs", "freeze", "optimizer")


def step_names(network: list[Step]) -> list[str]:
    """The full names of every step, nested ones included, each once."""
    return list(dict.fromkeys(step.name for step in walk(network)))


def chosen_steps(network: list[Step], patterns: Iterable[str]) -> set[str]:
    """The names of the steps a pattern matches, and of every step nested in them."""
    patterns = list(patterns)
    out: set[str] = set()
    for step in walk(network):
        if any(fnmatch.fnmatchcase(step.name, p) for p in patterns):
            out.update(s.name for s in walk([step]))
    return out


def owner(layer: str, names: Iterable[str]) -> str | None:
    """The step a layer belongs to: the longest step name it is, or starts with plus `_`."""
    best = None
    for name in names:
        if (layer == name or layer.startswith(f"{name}_")) and len(name) > len(best or ""):
            best = name
    return best


def layers_of(layers: Iterable[str], network: list[Step], chosen: set[str]) -> list[str]:
    """The layer names (of `layers`) that belong to the steps named in `chosen`."""
    names = step_names(network)
    return [layer for layer in layers if owner(layer, names) in chosen]


def check_patterns(value: Any, rel: str, names: list[str]) -> list[tuple[str, str]]:
    """`freeze: [PATTERN, ...]`: a list of strings, each matching some step."""
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        return [
            (
                rel,
                "`freeze` is a list of step-name patterns (shell patterns: `conv[1-3]*`). "
                f"Received: freeze={shorten(value)}",
            )
        ]
    problems = []
    for index, pattern in enumerate(value):
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            problems.append(
                (
                    f"{rel}.{index}",
                    f"`{pattern}` matches no step of the network.{did_you_mean(pattern, names)} "
                    f"Received: freeze[{index}]={pattern!r}",
                )
            )
    return problems


def check_freeze_and_stages(train: dict, names: list[str]) -> list[tuple[str, str]]:
    """The rules of `train.freeze` and `train.stages` (paths relative to `train`).

    With `stages`, each stage says its own epochs and freeze list: `train.epochs` and
    `train.freeze` are refused beside it (a stage without `freeze` trains every step; one
    without `optimizer` uses `train.optimizer`).
    """
    from blockspec.builder.resolve.train_rules import _check_optimizer

    problems: list[tuple[str, str]] = []
    if "freeze" in train:
        problems += check_patterns(train["freeze"], "freeze", names)
    if "stages" not in train:
        return problems
    stages = train["stages"]
    for key in ("epochs", "freeze"):
        if key in train:
            problems.append(
                (
                    key,
                    f"give `{key}` in each of `train.stages`, not beside them. "
                    f"Received: train.{key}={shorten(train[key])}",
                )
            )
    if train.get("distribute") == "multi_worker":
        problems.append(
            ("stages", "`stages` run with `distribute: none` or `mirrored`, not `multi_worker`")
        )
    if not isinstance(stages, list) or not stages:
        return [
            *problems,
            (
                "stages",
                "`stages` is a non-empty list of {epochs, freeze, optimizer}. "
                f"Received: stages={shorten(stages)}",
            ),
        ]
    for index, stage in enumerate(stages):
        rel = f"stages.{index}"
        if not isinstance(stage, dict):
            problems.append((rel, f"a stage is {{epochs, freeze, optimizer}}. Received: {stage!r}"))
            continue
        for key in stage:
            if key not in STAGE_KEYS:
                problems.append(
                    (
                        f"{rel}.{key}",
                        f"unknown stage key `{key}`.{did_you_mean(str(key), STAGE_KEYS)} "
                        f"The keys: {', '.join(STAGE_KEYS)}",
                    )
                )
        if "epochs" not in stage:
            problems.append((rel, "a stage needs `epochs` (a positive integer)"))
        positive_int(problems, stage, "epochs", rel)
        if "freeze" in stage:
            problems += check_patterns(stage["freeze"], f"{rel}.freeze", names)
        if "optimizer" in stage:
            inner: list[tuple[str, str]] = []
            _check_optimizer(inner, stage["optimizer"])
            problems += [(f"{rel}.{path}", message) for path, message in inner]
    return problems
