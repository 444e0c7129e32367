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


@dataclass(frozen=True)
class ImagenetFile:
    """One keras.applications ImageNet file: its name in the cache's `models/`, its URL, and the
    hash keras checks (md5 or sha256; None: keras checks none, as for MobileNet and
    MobileNetV2)."""

    file_name: str
    url: str
    file_hash: str | None


def imagenet_file(
    name: str,
    spec_vars: dict[str, Any] | None = None,
    input_shape: tuple | list | None = None,
    include_top: bool = True,
) -> ImagenetFile:
    """Which keras.applications file a zoo spec's ImageNet weights are, chosen as keras chooses.

    `builder/imagenet_weights.json` (written by `tools/gen_imagenet_table.py` from the installed
    keras) names, per spec, the vars that select the file (`densenet`: `depth`; `mobilenet`:
    `alpha`, `depth_multiplier` and `rows`, the input's height and width) and each selection's
    files. Pure Python: reads no file but the table, downloads nothing.

    Args:
        name: the spec's name (`resnet50`, `densenet`, `mobilenet_v2`, ...).
        spec_vars: the spec's vars (those the table selects on; a missing one selects nothing).
        input_shape: the spec's input shape, (height, width, channels), for `rows`.
        include_top: the file with the 1000-class classifier, or without it.

    Raises:
        WeightsError: no file for this spec, or for these vars or this input size; the message
            names what exists.
    """
    table = imagenet_table()
    if name not in table or name.startswith("_"):
        known = ", ".join(k for k in table if not k.startswith("_"))
        raise WeightsError(f"no ImageNet weights for `{name}`; they exist for: {known}")
    entry, spec_vars = table[name], spec_vars or {}
    chosen = {
        key: _rows(input_shape) if key == "rows" else spec_vars.get(key, _MISSING)
        for key in entry["select"]
    }
    for row in entry["files"]:
        if all(_same(row["when"][key], value) for key, value in chosen.items()):
            return ImagenetFile(*row["top" if include_top else "notop"])
    received = ", ".join(_told(key, value) for key, value in chosen.items())
    exist = "; ".join(
        f"{_key_text(key)} {', '.join(_value_text(key, v) for v in _values(entry, key))}"
        for key in entry["select"]
    )
    raise WeightsError(
        f"no ImageNet weights for `{name}` with {received}: keras.applications has them for {exist}"
    )


_MISSING = object()


def _rows(shape) -> int | None:
    """The input size keras' MobileNet files are named by: height = width, else None."""
    if not shape or len(shape) < 2 or shape[0] != shape[1]:
        return None
    return shape[0]


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return float(want) == float(got)
    return want == got


def _values(entry: dict, key: str) -> list:
    out: list = []
    for row in entry["files"]:
        if row["when"][key] not in out:
            out.append(row["when"][key])
    return out


def _key_text(key: str) -> str:
    return "input size" if key == "rows" else f"vars.{key}"


def _value_text(key: str, value: Any) -> str:
    return f"{value}x{value}" if key == "rows" else str(value)


def _told(key: str, value: Any) -> str:
    if value is _MISSING:
        return f"no vars.{key}"
    if key == "rows":
        return (
            "a non-square or unknown input size" if value is None else f"input size {value}x{value}"
        )
    return f"vars.{key}={value!r}"


def spec_vars(resolved: Any, keys: list[str]) -> dict[str, Any]:
    """The values of vars `keys` as the resolver computed them (expressions evaluated, a search
    space at its chosen value); a var the spec does not have is left out."""
    values = getattr(resolved, "vars", None) or {}
    return {key: values[key] for key in keys if key in values}


def imagenet_weights(spec: Any, include_top: bool = True, cache_dir: str | None = None) -> Path:
    """keras.applications' ImageNet weights file for a zoo spec, from the Keras cache, downloaded
    (hash checked) when it is not there yet.

    Args:
        spec: a `ResolvedSpec` built as a keras.applications model (its name, vars and input
            shape choose the file: `densenet` with `vars.depth: 169` is DenseNet169's), or a
            zoo name (its default vars).
        include_top: the file with the ImageNet classifier (1000 classes), or without.
        cache_dir: the Keras cache (default `~/.keras`, or `KERAS_HOME`); files go to `models/`.

    Returns:
        The file's path.

    Raises:
        WeightsError: no such file for this spec or selection, or it is not cached and cannot be
            downloaded.
    """
    name = spec if isinstance(spec, str) else spec.name
    entry = {} if name.startswith("_") else imagenet_table().get(name) or {}
    if isinstance(spec, str) and entry.get("select"):  # a zoo name: its default vars choose
        from blockspec.builder.resolve import resolve_spec

        spec = resolve_spec(spec)
    if isinstance(spec, str):
        chosen = imagenet_file(spec, include_top=include_top)
    else:
        keys = [k for k in entry.get("select", []) if k != "rows"]
        shape = spec.inputs[0].shape if len(spec.inputs) == 1 else None
        chosen = imagenet_file(spec.name, spec_vars(spec, keys), shape, include_top)
    return fetch_file(chosen.file_name, chosen.url, chosen.file_hash, cache_dir)


def imagenet_table() -> dict[str, Any]:
    """`builder/imagenet_weights.json`: spec name -> {select, files} (`_about` says more)."""
    return json.loads(IMAGENET_TABLE.read_text(encoding="utf-8"))


def fetch_file(file_name: str, url: str, md5: str | None, cache_dir: str | None = None) -> Path:
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


def weights_file(value: str | Path, spec: Any = None, base_dir=None) -> Path:
    """The file a `weights:` value names: `imagenet` / `imagenet_notop` (keras.applications'
    file for `spec`, a `ResolvedSpec` or a zoo name: see `imagenet_weights`), else a path
    (relative to `base_dir` when given)."""
    text = str(value)
    if text in (IMAGENET, f"{IMAGENET}_notop"):
        if not spec:
            raise WeightsError(f"`weights: {text}` needs a zoo spec name")
        return imagenet_weights(spec, include_top=text == IMAGENET)
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if path.is_dir():
        raise WeightsError(f"{path} is a folder, not a weights file (.keras, .weights.h5, .h5)")
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    return path


def backbone_spec(step: Any) -> Any:
    """The spec a `backbone` step inlines, resolved with the step's `vars` (its name, vars and
    input choose its ImageNet file); its `spec` is a zoo name or an absolute path by now."""
    from blockspec.builder.resolve import resolve_spec

    given = step.args.get("vars") or {}
    return resolve_spec(step.args["spec"], {f"vars.{k}": v for k, v in given.items()})


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
                value = step.args["weights"]
                spec = backbone_spec(step) if str(value).startswith(IMAGENET) else None
                out.append(WeightsSource(weights_file(value, spec), strict, step.name))
    if override is not None:  # `--weights`: the user's own argument, not written in the spec
        out.append(WeightsSource(weights_file(override, resolved), strict))
    elif resolved.weights is not None:
        with _located("weights", getattr(resolved, "weights_mark", None)):
            out.append(WeightsSource(weights_file(resolved.weights, resolved), strict))
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
