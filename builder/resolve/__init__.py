"""Validate and resolve: a loaded document -> a `ResolvedSpec`, or one `SpecError` listing everything.

One pass over the whole spec: top-level keys, vars and expressions, inputs, defaults, user blocks,
every step (type, arguments, names, `from`, `repeat`/`first`), outputs, `train` and `tune`. Errors
are collected, not raised one by one, so a user sees all of them at once. Pure Python: nothing
here imports TensorFlow.

Modules: `common` (key sets, scopes, value screens), `core` (the document: names, vars,
expressions, search spaces, inputs), `blocks` (user blocks, `defaults`), `steps` (network steps;
each combinator's own resolve hook lives beside its build in `blocks/combinators.py`),
`outputs`, `train_keys`/`train_rules`/`train` (the `train` section and its `TrainConfig`),
`tune` (the `tune` section, its `TuneConfig` and what makes a spec unsearchable).
"""

from __future__ import annotations

from typing import Any

from blockspec.builder.errors import SpecError
from blockspec.builder.load import DEFAULT_LIMITS, Document, Limits, apply_overrides, load_document
from blockspec.builder.resolve.common import (
    _DTYPES,
    BLOCK_KEYS,
    OUTPUT_KEYS,
    SPEC_VERSION,
    STEP_KEYS,
    TOP_KEYS,
    _labels,
)
from blockspec.builder.resolve.core import Resolver
from blockspec.builder.resolve.edges import edge_problems
from blockspec.builder.resolve.train import TrainConfig
from blockspec.builder.resolve.tune import TUNE_KEYS, TUNERS, TuneConfig
from blockspec.builder.spaces import Chooser, DefaultChooser
from blockspec.builder.spec import ResolvedSpec


def resolve_spec(
    spec: Any,
    overrides: dict[str, Any] | None = None,
    *,
    chooser: Chooser | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ResolvedSpec:
    """Loads, validates and resolves a spec.

    Args:
        spec: a path, a zoo name, a parsed mapping, a `Document`, or a `ResolvedSpec` (returned as is).
        overrides: dotted keys to values, applied before validation (`{"vars.classes": 10}`).
        chooser: picks search-space values; defaults to each space's `default`.
        limits: bounds on untrusted input.

    Returns:
        The resolved spec.

    Raises:
        SpecError: listing every problem found.

    Example:
        >>> spec = resolve_spec("googlenet", {"vars.classes": 10})   # doctest: +SKIP
    """
    if isinstance(spec, ResolvedSpec):
        return spec
    doc = spec if isinstance(spec, Document) else load_document(spec, overrides, limits)
    if isinstance(spec, Document) and overrides:
        doc = apply_overrides(doc, overrides)
    resolved = Resolver(doc, chooser or DefaultChooser(), limits).run()
    if chooser is None and resolved.hyperparameters:  # what a trial would refuse, refused now
        problems = edge_problems(
            lambda edge: Resolver(doc, edge, limits).run(), resolved.hyperparameters
        )
        if problems:
            raise SpecError(problems)
    return resolved


__all__ = [
    "BLOCK_KEYS",
    "OUTPUT_KEYS",
    "SPEC_VERSION",
    "STEP_KEYS",
    "TOP_KEYS",
    "TUNERS",
    "TUNE_KEYS",
    "_DTYPES",
    "TrainConfig",
    "TuneConfig",
    "_labels",
    "resolve_spec",
]
