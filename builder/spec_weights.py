"""The weights a spec starts from: its `weights:` key, each `backbone` step's `weights`, or
`--weights`; keras.applications' ImageNet files by name and hash (downloaded into the Keras cache,
with an offline message that says where to put the file by hand).

`load_spec_weights` is the one place that loads them into a built model: `build_model`,
`blockspec build` and `blockspec train` call it. The loading itself, by name then by structure,
is `builder.weights.load_weights`.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blockspec.builder.weights import (
    WeightsError,
    WeightsReport,
    file_sha256,
    flat_layers,
    load_weights,
    short_error,
)

if TYPE_CHECKING:
    from collections.abc import Callable

IMAGENET_TABLE = Path(__file__).with_name("imagenet_weights.json")
IMAGENET = "imagenet"  # `weights: imagenet` (with the classifier), `imagenet_notop` (without)


def imagenet_weights(name: str, include_top: bool = True, cache_dir: str | None = None) -> Path:
    """keras.applications' ImageNet weights file for a zoo spec, from the Keras cache, downloaded
    (hash checked) when it is not there yet.

    Args:
        name: a zoo spec built as a keras.applications model (`resnet50`, `vgg16`, ...).
        include_top: the file with the ImageNet classifier (1000 classes), or without.
        cache_dir: the Keras cache (default `~/.keras`, or `KERAS_HOME`); files go to `models/`.

    Returns:
        The file's path.

    Raises:
        WeightsError: no such file for `name`, or it is not cached and cannot be downloaded.
    """
    table = json.loads(IMAGENET_TABLE.read_text(encoding="utf-8"))
    if name not in table or name.startswith("_"):
        known = ", ".join(k for k in table if not k.startswith("_"))
        raise WeightsError(f"no ImageNet weights for `{name}`; they exist for: {known}")
    entry = table[name]
    file_name, md5 = entry["top" if include_top else "notop"]
    return fetch_file(file_name, entry["base"] + file_name, md5, cache_dir)


def fetch_file(file_name: str, url: str, md5: str, cache_dir: str | None = None) -> Path:
    """`keras.utils.get_file` into the cache's `models/`, with an offline message that says
    where to put the file by hand."""
    import keras

    home = Path(cache_dir).expanduser() if cache_dir else keras_home()
    target = home.expanduser() / "models" / file_name
    try:
        return Path(
            keras.utils.get_file(
                file_name, url, cache_subdir="models", file_hash=md5, cache_dir=str(home)
            )
        )
    except Exception as e:  # get_file raises a bare Exception for network failures
        raise WeightsError(
            f"cannot download {file_name} ({short_error(e)}): no network? "
            f"Put the file at {target} or pass --weights PATH"
        ) from e


def keras_home() -> Path:
    """Where `keras.utils.get_file` caches by default: `$KERAS_HOME`, else `~/.keras` (Keras 3
    has no public function for it; `keras.config` has none in 3.15)."""
    return Path(os.environ.get("KERAS_HOME") or Path("~/.keras")).expanduser()


def weights_file(value: str | Path, spec_name: str | None = None, base_dir=None) -> Path:
    """The file a `weights:` value names: `imagenet` / `imagenet_notop` (keras.applications'
    files for the spec `spec_name`), else a path (relative to `base_dir` when given)."""
    text = str(value)
    if text in (IMAGENET, f"{IMAGENET}_notop"):
        if not spec_name:
            raise WeightsError(f"`weights: {text}` needs a zoo spec name")
        return imagenet_weights(spec_name, include_top=text == IMAGENET)
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if path.is_dir():
        raise WeightsError(f"{path} is a folder, not a weights file (.keras, .weights.h5, .h5)")
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    return path


def build_with_weights(
    spec: Any,
    weights: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    inference: bool = False,
    strict: bool | None = None,
):
    """Build a spec and load the weights it asks for, or `weights`: `build_model(spec, weights=)`.

    Args:
        spec: a zoo name, a path, a mapping or a `ResolvedSpec`.
        weights: a weights file, or `imagenet` / `imagenet_notop` for a zoo spec; it replaces
            the spec's `weights:` key. None: the key's file, if any.
        overrides: dotted keys, as `--set`.
        inference: drop train-only outputs.
        strict: refuse any tensor that does not load (None: the spec's `weights_strict`).

    Returns:
        `(model, report)`: the report of the whole-model file (None when there is none).

    Example:
        >>> model, report = build_with_weights("resnet50", "imagenet")  # doctest: +SKIP
    """
    from blockspec.builder.compile import compile_spec
    from blockspec.builder.resolve import resolve_spec

    resolved = resolve_spec(spec, overrides)
    model = compile_spec(resolved, inference=inference).model
    reports = load_spec_weights(model, resolved, weights, strict, echo=None)
    return model, next((r for r in reports if r.step is None), None)


@dataclass(frozen=True)
class WeightsSource:
    """One weights file a model starts from.

    Attributes:
        path: the file.
        strict: refuse a partial load.
        step: None for the whole model (`weights:`, `--weights`); a backbone step's name for
            that step's own `weights` (loaded into its layers only, by name).
    """

    path: Path
    strict: bool
    step: str | None = None


def weights_sources(
    resolved: Any, override: str | Path | None = None, strict: bool | None = None
) -> list[WeightsSource]:
    """What a resolved spec starts from, in load order: each backbone's `weights`, then the
    whole-model file (`override`, i.e. `--weights`, else the spec's `weights:`).

    Args:
        resolved: a `ResolvedSpec` (its `weights` path already made absolute by the resolver).
        override: a file (relative to the working folder) that replaces the spec's `weights:`.
        strict: refuse partial loads (None: the spec's `weights_strict`).

    Raises:
        SpecError: a file the spec names is missing (or, for `imagenet`, cannot be had): told
            at the key's file, line and column.
        WeightsError: the same for `override`.
    """
    from blockspec.builder.spec import walk

    strict = resolved.weights_strict if strict is None else bool(strict)
    out = []
    for step in walk(resolved.network):
        if step.type == "backbone" and step.args.get("weights"):
            with _located(f"{step.path}.weights", step.mark):
                out.append(WeightsSource(weights_file(step.args["weights"]), strict, step.name))
    if override is not None:  # `--weights`: the user's own argument, not written in the spec
        out.append(WeightsSource(weights_file(override, resolved.name), strict))
    elif resolved.weights is not None:
        with _located("weights", getattr(resolved, "weights_mark", None)):
            out.append(WeightsSource(weights_file(resolved.weights, resolved.name), strict))
    return out


@contextmanager
def _located(path: str, mark: Any):
    """A `WeightsError` for a file the spec names, told where the spec names it."""
    try:
        yield
    except WeightsError as e:
        if mark is None:
            raise
        from blockspec.builder.errors import Problem, SpecError

        raise SpecError(Problem(str(e), path, mark)) from e


def load_spec_weights(
    model: Any,
    resolved: Any,
    override: str | Path | None = None,
    strict: bool | None = None,
    echo: Callable[[str], Any] | None = print,
) -> list[WeightsReport]:
    """Load every weights file the spec asks for (`weights_sources`) into its built model.

    The one place that does it: `build_model`, `blockspec build` and `blockspec train` call it.
    A backbone's file loads into that step's layers by name; the whole-model file by name, then
    by structure. Each report's line goes to `echo` (None: silent).

    Returns:
        The reports, in load order; `report.step` names the backbone step (None: whole model).

    Raises:
        WeightsError: a file is missing, unreadable, or `strict` and it did not all load.
    """
    from blockspec.builder.resolve.train_freeze import layers_of
    from blockspec.builder.spec import walk

    reports = []
    names = [layer.name for layer in flat_layers(model)]
    for source in weights_sources(resolved, override, strict):
        if source.step is None:
            report = load_weights(model, source.path, strict=source.strict)
        else:
            step = next(s for s in walk(resolved.network) if s.name == source.step)
            chosen = {s.name for s in walk([step])}
            only = layers_of(names, resolved.network, chosen)
            report = load_weights(model, source.path, source.strict, match="name", only=only)
        report.step = source.step
        reports.append(report)
        if echo is not None:
            echo(report.line())
    return reports


def weights_record(sources: list[WeightsSource]) -> dict[str, Any] | None:
    """`weights.json` of a run folder: the whole-model file (path, sha256, strict) and each
    backbone's; None when the run starts from no file."""
    if not sources:
        return None
    entries = [
        {"path": str(s.path.resolve()), "sha256": file_sha256(s.path), "strict": s.strict}
        for s in sources
    ]
    whole = [e for e, s in zip(entries, sources, strict=True) if s.step is None]
    record: dict[str, Any] = dict(whole[0]) if whole else {}
    backbones = {s.step: e for e, s in zip(entries, sources, strict=True) if s.step is not None}
    if backbones:
        record["backbones"] = backbones
    return record
