"""Weights from a saved file into a built model, by layer name and shape, then by structure.

Three sources: a `.keras` model file (its `model.weights.h5` is read with h5py; no code in the file
runs), a Keras 3 `.weights.h5` file, and a legacy Keras `.h5` weights file (keras.applications'
ImageNet files: a `layer_names` attribute, `weight_names` per layer).

Layers of the same name and shapes take the file's weights. The layers left over on both sides are
then aligned by structure, as Keras' legacy loader does by topological order: the sequences of
weight shapes are matched (longest common runs), and aligned layers of equal shapes load. So the
zoo's `resnet50`, whose block layers are named `conv2_1_1_conv` where keras.applications says
`conv2_block1_1_conv`, takes keras.applications' ImageNet file. One report line says what loaded
and what was skipped and why.

    model = blockspec.build_model("resnet50", overrides={"vars.classes": 10})
    report = load_weights(model, "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    print(report.line())  # loaded 318 of 320 tensors (...); skipped predictions: kernel ...

h5py and Keras are imported when a function needs them; nothing here imports training or views.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection


class WeightsError(ValueError):
    """A weights file could not be read or did not fit the model; the message names the file."""


@dataclass(frozen=True)
class Skipped:
    """A layer of the model that kept its initial weights, and why."""

    layer: str
    tensors: int
    reason: str

    def __str__(self) -> str:
        return f"{self.layer}: {self.reason}"


@dataclass
class WeightsReport:
    """What `load_weights` did.

    Attributes:
        path: the weights file.
        sha256: the file's SHA-256 (a run records it).
        loaded, total: tensors of the model given weights, and all of them.
        by_order: how many of the loaded tensors were matched by structure, not by name.
        skipped: model layers that kept their initial weights.
        unused: layers of the file that went nowhere.
        seconds: how long the load took.
        step: the backbone step whose layers it loaded (None: the whole model).
        pairs: model layer -> file layer, for every layer that loaded.
    """

    path: str
    sha256: str
    loaded: int
    total: int
    by_order: int
    skipped: list[Skipped] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    seconds: float = 0.0
    step: str | None = None
    pairs: dict[str, str] = field(default_factory=dict, repr=False)

    def line(self, show: int = 3) -> str:
        """One line: `loaded 318 of 320 tensors; skipped predictions: kernel (2048, 10) vs ...`."""
        text = f"loaded {self.loaded} of {self.total} tensors from {Path(self.path).name}"
        if self.step is not None:
            text = f"backbone `{self.step}`: {text}"
        if self.by_order:
            text += f" ({self.by_order} matched by structure where names differ)"
        if self.skipped:
            shown = "; ".join(str(s) for s in self.skipped[:show])
            more = len(self.skipped) - show
            text += f"; skipped {shown}" + (f"; and {more} more layers" if more > 0 else "")
        if self.unused:
            text += f"; {len(self.unused)} layers of the file unused"
        return text

    def to_json(self) -> dict[str, Any]:
        """What a run folder records about the weights it started from."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "loaded": self.loaded,
            "total": self.total,
            "by_order": self.by_order,
            "skipped": [{"layer": s.layer, "reason": s.reason} for s in self.skipped],
            "unused": self.unused,
        }


@dataclass
class _Entry:
    """One layer's weights: its name (None when the file does not say), a kind that structure
    matching must respect (the Keras class, where the file records it), and its tensors."""

    name: str | None
    kind: str | None
    tensors: list[Any]  # h5py datasets in a file, variables in a model
    parts: list[_Entry] = field(default_factory=list)  # a nested model's layers, in a legacy file

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(int(d) for d in t.shape) for t in self.tensors)


def load_weights(
    model: Any,
    path: str | Path,
    strict: bool = False,
    match: str = "auto",
    only: Collection[str] | None = None,
):
    """Load a weights file into `model` by layer name and shape, then by structure.

    Args:
        model: a built `keras.Model` (nested models are walked layer by layer).
        path: a `.keras` model, a Keras 3 `.weights.h5`, or a legacy Keras `.h5` weights file.
        strict: refuse (raise `WeightsError`, model unchanged) unless every tensor loads.
        match: `auto` (names, then structure for the layers left), `name` (names only).
        only: the names of the layers to load (a backbone's); None: every layer.

    Returns:
        A `WeightsReport`; `report.line()` is the one line to print.

    Raises:
        WeightsError: the file is missing, damaged or not a weights file, or `strict` and a
            tensor did not load.

    Example:
        >>> report = load_weights(model, "r50.weights.h5")  # doctest: +SKIP
    """
    if match not in ("auto", "name"):
        raise ValueError(f"match is `auto` or `name`. Received: match={match!r}")
    start = time.perf_counter()
    path = Path(path)
    digest = file_sha256(path)
    targets = _model_entries(model)
    if only is not None:
        targets = [t for t in targets if t.name in set(only)]
    try:
        with _open_weights(path) as (group, legacy):
            sources = _legacy_entries(group) if legacy else _keras3_entries(group)
            if not legacy:
                targets = [_Entry(t.name, _class_key(t.kind), t.tensors) for t in targets]
            plan = _plan(targets, sources, by_order=match == "auto")
            report = _report(plan, path, digest, sum(len(t.tensors) for t in targets))
            if strict and plan.skipped:
                raise WeightsError(
                    f"{path}: weights_strict refuses a partial load: {report.line()}"
                )
            _assign(plan)
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
        raise WeightsError(f"{path}: not a readable weights file ({short_error(e)})") from e
    report.seconds = time.perf_counter() - start
    return report


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB pieces; a `WeightsError` when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                digest.update(piece)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the weights file ({short_error(e)})") from e
    return digest.hexdigest()


class _open_weights:
    """`with _open_weights(path) as (group, legacy)`: the h5 group that holds the layers."""

    def __init__(self, path: Path):
        self.path = path
        self.file = None

    def __enter__(self):
        import h5py

        path = self.path
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "model.weights.h5" not in archive.namelist():
                    raise WeightsError(f"{path}: a zip file without model.weights.h5 (not .keras)")
                data = io.BytesIO(archive.read("model.weights.h5"))
            self.file = h5py.File(data, "r")
        else:
            self.file = h5py.File(path, "r")
        group = self.file
        if "layer_names" not in group.attrs and "model_weights" in group:
            group = group["model_weights"]  # a whole legacy model saved with `model.save(x.h5)`
        legacy = "layer_names" in group.attrs
        if not legacy and "layers" not in group:
            raise WeightsError(f"{path}: an HDF5 file without Keras weights in it")
        return group, legacy

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()
        return False


def _model_entries(model: Any) -> list[_Entry]:
    """The model's layers that hold weights, in topological order, nested models walked."""
    import keras

    out: list[_Entry] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
            out += _model_entries(layer)
        elif layer.weights:
            out.append(_Entry(layer.name, type(layer).__name__, list(layer.weights)))
    return out


def _legacy_entries(group: Any) -> list[_Entry]:
    out = []
    for raw in group.attrs["layer_names"]:
        name = _text(raw)
        layer = group[name]
        names = [_text(w) for w in layer.attrs.get("weight_names", [])]
        if names:
            out.append(_Entry(name, None, [layer[w] for w in names], _nested(layer, names)))
    return out


def _nested(layer: Any, names: list[str]) -> list[_Entry]:
    """A nested model's layers in its legacy group (ConvNeXt's stem `Sequential`), one entry per
    layer that owns a weight (`stem/stem_conv/kernel:0` -> `stem_conv`); [] for a plain layer."""
    owners: dict[str, list[Any]] = {}
    for weight in names:
        parts = weight.split("/")
        if len(parts) < 3:  # `layer/kernel:0`: the layer's own
            return []
        owners.setdefault(parts[-2], []).append(layer[weight])
    if len(owners) < 2:
        return []
    return [_Entry(owner, None, tensors) for owner, tensors in owners.items()]


def _keras3_entries(group: Any) -> list[_Entry]:
    """Keras 3 stores a layer's tensors at `layers/<class key>[_i]/vars/<k>`, with the layer's
    name in the `vars` group's attributes (files of recent Keras; None in older ones)."""
    found: list[tuple[tuple, _Entry]] = []

    def visit(name: str, obj: Any) -> None:
        if not name.endswith("vars") or not hasattr(obj, "keys"):
            return
        keys = sorted((k for k in obj.keys() if k.isdigit()), key=int)
        if not keys:
            return
        parts = name.split("/")[:-1]
        kind = re.sub(r"_\d+$", "", parts[-1]) if parts else ""
        order = tuple(_natural(p) for p in parts)
        layer_name = obj.attrs.get("name")
        entry = _Entry(_text(layer_name) if layer_name is not None else None, kind, [])
        entry.tensors = [obj[k] for k in keys]
        found.append((order, entry))

    group.visititems(visit)
    found.sort(key=lambda item: item[0])
    return [entry for _, entry in found]


@dataclass
class _Plan:
    pairs: list[tuple[_Entry, _Entry, bool]] = field(
        default_factory=list
    )  # target, source, by order
    skipped: list[Skipped] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def _plan(targets: list[_Entry], sources: list[_Entry], by_order: bool) -> _Plan:
    """Pairs model layers with file layers: same name first, then the rest by structure."""
    plan = _Plan()
    sources = _split_nested(sources, {t.name for t in targets})
    named = {s.name: s for s in sources if s.name}
    used: set[int] = set()
    rest: list[_Entry] = []
    for target in targets:
        source = named.get(target.name)
        if source is None:
            rest.append(target)
            continue
        used.add(id(source))
        _pair_or_skip(plan, target, source, by_order=False)
    left = [s for s in sources if id(s) not in used]
    if by_order:
        left = _align(plan, rest, left)
    else:
        plan.skipped += [Skipped(t.name, len(t.tensors), "not in the file") for t in rest]
    plan.unused = [s.name or "?" for s in left]
    return plan


def _split_nested(sources: list[_Entry], target_names: set) -> list[_Entry]:
    """A file's nested model whose layers the model has as its own layers (the spec writes
    ConvNeXt's stem as two steps, keras as one `Sequential`) is read layer by layer."""
    out: list[_Entry] = []
    for source in sources:
        own = source.name in target_names
        if source.parts and not own and all(p.name in target_names for p in source.parts):
            out += source.parts
        else:
            out.append(source)
    return out


def _align(plan: _Plan, targets: list[_Entry], sources: list[_Entry]) -> list[_Entry]:
    """Match the leftover layers by structure; returns the file's layers that stayed unused.

    A legacy file lists its layers in topological order, as the model does: the two sequences of
    weight shapes are aligned. A Keras 3 file keys layers by class (`conv2d_3`), in the model's
    order within a class but not across classes: each class's sequence is aligned on its own.
    """
    if not sources or any(s.kind is None for s in sources):
        return _align_sequence(plan, targets, sources)
    unused: list[_Entry] = []
    kinds = dict.fromkeys([t.kind for t in targets] + [s.kind for s in sources])
    for kind in kinds:
        unused += _align_sequence(
            plan, [t for t in targets if t.kind == kind], [s for s in sources if s.kind == kind]
        )
    return unused


def _align_sequence(plan: _Plan, targets: list[_Entry], sources: list[_Entry]) -> list[_Entry]:
    matcher = difflib.SequenceMatcher(
        None, [t.shapes for t in targets], [s.shapes for s in sources], autojunk=False
    )
    unused = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for target, source in zip(targets[i1:i2], sources[j1:j2], strict=True):
                plan.pairs.append((target, source, True))
            continue
        if op == "replace" and i2 - i1 == j2 - j1:  # as many layers, shapes differ: say how
            for target, source in zip(targets[i1:i2], sources[j1:j2], strict=True):
                _pair_or_skip(plan, target, source, by_order=True)
            continue
        for target in targets[i1:i2]:
            plan.skipped.append(Skipped(target.name, len(target.tensors), "not in the file"))
        unused += sources[j1:j2]
    return unused


def _pair_or_skip(plan: _Plan, target: _Entry, source: _Entry, by_order: bool) -> None:
    if target.shapes == source.shapes:
        plan.pairs.append((target, source, by_order))
        return
    plan.skipped.append(Skipped(target.name, len(target.tensors), _difference(target, source)))


def _difference(target: _Entry, source: _Entry) -> str:
    """`kernel (2048, 10) vs (2048, 1000)`: the first tensor whose shape differs."""
    where = "" if source.name in (None, target.name) else f" (file layer {source.name})"
    if len(target.tensors) != len(source.tensors):
        return f"{len(target.tensors)} tensors vs {len(source.tensors)}{where}"
    for variable, a, b in zip(target.tensors, target.shapes, source.shapes, strict=True):
        if a != b:
            label = getattr(variable, "name", "tensor").split("/")[-1].split(":")[0]
            return f"{label} {a} vs {b}{where}"
    return f"shapes differ{where}"  # pragma: no cover (equal shapes pair)


def _report(plan: _Plan, path: Path, digest: str, total: int) -> WeightsReport:
    report = WeightsReport(str(path), digest, 0, total, 0, plan.skipped, plan.unused)
    for target, source, by_order in plan.pairs:
        count = len(target.tensors)
        report.loaded += count
        report.by_order += count if by_order else 0
        report.pairs[target.name] = source.name or "?"
    return report


def _assign(plan: _Plan) -> None:
    """Read every tensor first, then assign: a file that fails halfway leaves the model as it was."""
    import numpy as np

    arrays = [[np.asarray(t[()]) for t in source.tensors] for _, source, _ in plan.pairs]
    for (target, _, _), values in zip(plan.pairs, arrays, strict=True):
        for variable, value in zip(target.tensors, values, strict=True):
            variable.assign(value.astype(variable.dtype))


def flat_layers(model: Any) -> list[Any]:
    import keras

    out = []
    for layer in model.layers:
        out += flat_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return out


def _class_key(class_name: str | None) -> str | None:
    """Keras 3's file key for a layer class (`BatchNormalization` -> `batch_normalization`), as
    `keras.src.utils.naming.to_snake_case` makes it."""
    if class_name is None:
        return None
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _natural(part: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(?:_(\d+))?", part)
    return (match.group(1), int(match.group(2) or -1)) if match else (part, -1)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def short_error(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
