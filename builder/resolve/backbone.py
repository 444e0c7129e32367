"""(1.1) The `backbone:` step and the top-level `weights:` / `weights_strict:` keys.

    network:
      - backbone: {spec: resnet18, until: conv5_2, vars: {classes: 10}, weights: r18.weights.h5,
                   trainable: false}
      - global_avg_pool: {}
      - dense: 10

A `backbone` step is another spec's network (a zoo name, or a path relative to the file that
wrote the step), up to and including its step `until`, inlined here with the other spec's own step
names, so that its layers keep their names and a weights file of that spec loads into them by
name. The other spec is loaded by the same loader as `extends` and `imports` (same limits, same
screens) and resolved by its own resolver; every problem it has is told at the backbone step.

Its `weights` load into its layers once the model is built (`builder.spec_weights.load_spec_weights`);
`trainable: false` freezes every layer it makes. It reads the tensor that flows into the step:
that tensor's rank and channels must be the other spec's input's (heights and widths may differ).

Pure Python at resolve time; the build side imports Keras when a model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blockspec.builder.errors import SpecError, did_you_mean, shorten
from blockspec.builder.registry import REQUIRED, Param, ShapeError, register

WEIGHTS_SUFFIXES = (".keras", ".h5")
IMAGENET_VALUES = ("imagenet", "imagenet_notop")
MAX_BACKBONE_DEPTH = 4  # a backbone whose spec has a backbone, ...


# ----------------------------------------------------------------------------- weights paths
def spec_folder(resolver, path: tuple) -> Path:
    """The folder of the file that wrote `path` (the working folder for `--set` or a mapping)."""
    mark = resolver.doc.mark(path)
    file = Path(mark.file) if mark is not None else None
    if file is not None and file.is_file():
        return file.resolve().parent
    return Path.cwd()


def weights_path(resolver, value: Any, path: tuple, key: str = "weights") -> str | None:
    """A `weights` value checked: `imagenet`/`imagenet_notop`, or an existing file (.keras, .h5)
    made absolute from the folder of the file that wrote it. None, after an error, when refused.
    Validate reads nothing, not even whether the file is there yet (a spec that fine-tunes what
    another run will write validates before that run); the build refuses a missing file."""
    if value in IMAGENET_VALUES:
        return value
    if not isinstance(value, str) or not value.strip():
        resolver.error(
            path,
            f"`{key}` is a weights file (.keras, .weights.h5 or .h5; relative to the spec's "
            f"folder) or `imagenet`. Received: {key}={shorten(value)}",
        )
        return None
    if not value.endswith(WEIGHTS_SUFFIXES):
        resolver.error(
            path,
            f"`{key}` names a .keras, .weights.h5 or legacy .h5 file. Received: {key}={value!r}",
        )
        return None
    file = Path(value).expanduser()
    if not file.is_absolute():
        file = spec_folder(resolver, path) / file
    written_absolute(resolver, path, value, str(file))
    return str(file)


def written_absolute(resolver, path: tuple, written: Any, absolute: str) -> None:
    """Writes `absolute` over the relative path `written` in the merged document, where `path`
    says: the document is what a run folder keeps as `spec.yaml` (and `render` reads), and a
    path relative to the file that wrote it means nothing beside it. A value that came from
    elsewhere (`$name`, `--set`) is not at `path` as written and stays as it is."""
    if written == absolute:
        return
    node = resolver.doc.data
    for key in path[:-1]:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return
    last = path[-1] if path else None
    if isinstance(node, dict) and node.get(last) == written:
        node[last] = absolute


def resolve_weights_keys(resolver, data: dict) -> tuple[str | None, bool]:
    """The top-level `weights:` (a checked path, or None) and `weights_strict:` (a bool)."""
    strict = data.get("weights_strict", False)
    if not isinstance(strict, bool):
        resolver.error(
            ("weights_strict",),
            f"`weights_strict` must be true or false. Received: weights_strict={strict!r}",
        )
        strict = False
    if data.get("weights") is None:
        return None, strict
    value = resolver.value(data["weights"], ("weights",), resolver.vars, "weights")
    return weights_path(resolver, value, ("weights",)), strict


# ----------------------------------------------------------------------------- resolve
def resolve_backbone(nest) -> list | None:
    """The `backbone` step's one child chain: the other spec's steps up to `until`."""
    resolver, path, settings = nest.resolver, nest.path, nest.settings
    ref = settings.get("spec")
    if "spec" not in nest.given:
        nest.error(path, "missing required argument `spec` for `backbone` (a zoo name or a file)")
        return None
    until = settings.get("until")
    if not isinstance(settings.get("trainable"), bool) or not isinstance(until, (str, type(None))):
        return None  # refused with the other arguments
    if not isinstance(ref, str) or not ref:
        if isinstance(ref, str):
            nest.error(nest.at("spec"), "`spec` names a zoo spec or a spec file. Received: ''")
        return None  # else its type was refused with the other arguments
    if settings.get("weights") is not None:
        settings["weights"] = weights_path(resolver, settings["weights"], nest.at("weights"))
        if settings["weights"] is None:
            return None
    other = _load_other(nest, ref)
    if other is None:
        return None
    steps = _until(nest, ref, other)
    if steps is None:
        return None
    for step in steps:  # its steps keep their names: taps (`from: conv3_2`) read them too
        if step.name in nest.scope.names:
            nest.error(
                path,
                f"backbone `{ref}` has a step `{step.name}`, a name this network already uses: "
                "rename the step here",
            )
            return None
        nest.scope.names[step.name] = step.name
    settings["spec"] = _absolute_spec(nest, ref)
    return [steps] if _input_fits(nest, ref, other.inputs[0].shape) else None


def _absolute_spec(nest, ref: str) -> str:
    """A spec file made absolute from the folder of the file that wrote it; a zoo name as is."""
    if not ref.endswith((".yaml", ".yml", ".json")) and "/" not in ref or Path(ref).is_absolute():
        return ref  # a zoo name (as `find_spec` tells them apart), or already absolute
    at = nest.at("spec")
    file = str((spec_folder(nest.resolver, at) / ref).resolve())
    written_absolute(nest.resolver, at, ref, file)
    return file


def _input_fits(nest, ref: str, want: tuple) -> bool:
    """A top-level backbone that reads an input: that input's rank and channels are the other
    spec's (heights and widths may differ). Elsewhere the build checks the tensor it reads."""
    resolver, path = nest.resolver, nest.path
    if len(path) != 3 or path[0] != "network":
        return True
    raw = resolver.raw_at(path[:2])
    source = raw.get("from") if isinstance(raw, dict) else None
    data = resolver.data
    if "inputs" in data and isinstance(data["inputs"], dict):
        shapes = {
            k: v.get("shape") if isinstance(v, dict) else v for k, v in data["inputs"].items()
        }
        where = {k: ("inputs", k) for k in shapes}
    else:
        shapes, where = {"input": data.get("input")}, {"input": ("input",)}
    name = next(iter(shapes), None) if source is None and path[1] == 0 else source
    if not isinstance(name, str) or name not in shapes:
        return True
    got = resolver.shape(shapes[name], where[name] if name == "input" else (*where[name], "shape"))
    if got is None or _fits(want, got):
        return True
    nest.error(
        path,
        f"backbone `{ref}` takes inputs shaped {list(want)} (heights and widths may differ; "
        f"rank and channels may not). Received: {name} {list(got)}",
    )
    return False


def _fits(want, got) -> bool:
    return len(want) == len(got) and (want[-1] is None or got[-1] in (None, want[-1]))


def _load_other(nest, ref: str):
    """The other spec resolved (vars applied), or None after an error at the step."""
    from blockspec.builder.load import apply_overrides, find_spec, load_document
    from blockspec.builder.resolve.core import Resolver
    from blockspec.builder.spaces import DefaultChooser

    resolver, at_spec = nest.resolver, nest.at("spec")
    try:
        file = find_spec(ref, relative_to=spec_folder(resolver, at_spec))
    except FileNotFoundError as e:
        nest.error(at_spec, f"{e}. Received: spec={ref!r}")
        return None
    chain = getattr(resolver, "backbone_chain", ())
    if file.resolve() in chain or len(chain) >= MAX_BACKBONE_DEPTH:
        nest.error(at_spec, f"backbones nest in a cycle or deeper than {MAX_BACKBONE_DEPTH}")
        return None
    try:
        doc = load_document(str(file), None, resolver.limits)
    except SpecError as e:
        _tell(nest, ref, e)
        return None
    given_vars = _vars(nest, doc)
    if given_vars is None:
        return None
    if given_vars:
        nest.settings["vars"] = given_vars  # as evaluated here: `render` shows them
        doc = apply_overrides(doc, {f"vars.{k}": v for k, v in given_vars.items()})
    child = Resolver(doc, DefaultChooser(), resolver.limits)
    child.backbone_chain = (*chain, file.resolve())
    try:
        other = child.run()
    except SpecError as e:
        _tell(nest, ref, e)
        return None
    resolver.steps += child.steps
    if resolver.steps > resolver.limits.max_steps:
        nest.error(
            nest.path,
            f"the network expands to more than {resolver.limits.max_steps} steps (backbone "
            "included): refused (limit)",
        )
        return None
    if len(other.inputs) != 1:
        nest.error(at_spec, f"a backbone spec has one input; `{ref}` has {len(other.inputs)}")
        return None
    return other


def _vars(nest, doc) -> dict | None:
    """`vars:` of the step, evaluated here; each must be a var the other spec declares."""
    raw = nest.given.get("vars")
    if raw is None:
        return {}
    at = nest.at("vars")
    if not isinstance(raw, dict):
        nest.error(at, f"`vars` maps the backbone spec's vars to values. Received: {shorten(raw)}")
        return None
    declared = list((doc.data.get("vars") or {}) if isinstance(doc.data, dict) else {})
    out, ok = {}, True
    for key, value in raw.items():
        if key not in declared:
            nest.error(
                (*at, key),
                f"the backbone spec has no var `{key}`.{did_you_mean(str(key), declared)} "
                f"Its vars: {', '.join(map(str, declared)) or 'none'}",
            )
            ok = False
            continue
        out[key] = nest.resolver.value(value, (*at, key), nest.env, f"{nest.hp}/vars/{key}")
    return out if ok and not any(_invalid(v) for v in out.values()) else None


def _invalid(value: Any) -> bool:
    from blockspec.builder.resolve.common import INVALID, contains_invalid

    return value is INVALID or contains_invalid(value)


def _until(nest, ref: str, other) -> list | None:
    """The other spec's top-level steps up to and including `until` (all of them without)."""
    until = nest.settings.get("until")
    names = [step.name for step in other.network]
    if until is None:
        return list(other.network)
    if until not in names:
        nest.error(
            nest.at("until"),
            f"`until` names no step of `{ref}`.{did_you_mean(str(until), names)} "
            f"Received: until={until!r}",
        )
        return None
    return list(other.network[: names.index(until) + 1])


def _tell(nest, ref: str, error: SpecError) -> None:
    """The other spec's problems, each told at the backbone step with where it was written."""
    for problem in error.problems:
        where = f"{problem.mark} {problem.path}".strip() if problem.mark else problem.path
        nest.error(
            nest.at("spec"),
            f"backbone spec `{ref}` is refused: {where}: {problem.message}",
        )


# ----------------------------------------------------------------------------- build
def build_backbone(ctx, step, x):
    """The other spec's steps on `x`; its input's name reads `x` while they build."""
    from blockspec.builder.compile import _layers_between

    if isinstance(x, (list, tuple)):
        raise ShapeError("`backbone` reads one tensor: give one step in `from`")
    first = step.children[0][0].sources if step.children[0] else None
    name = first[0] if first else None  # the other spec's input: it reads `x` here
    missing = object()
    saved = ctx.tensors.get(name, missing)
    before = {id(t) for t in ctx.tensors.values()} | {id(x)}
    if name is not None:
        ctx.tensors[name] = x
    try:
        out = ctx.build_steps(step.children[0], x)
    finally:
        if name is not None and saved is missing:
            ctx.tensors.pop(name, None)
        elif name is not None:
            ctx.tensors[name] = saved
    if not step.args["trainable"]:
        for layer in _layers_between(out, before):
            layer.trainable = False
    return out


register(
    "backbone",
    kind="combinator",
    build=build_backbone,
    params=[
        Param("spec", str, REQUIRED),
        Param("until", str | None, None),
        Param("vars", dict, None),
        Param("weights", str | None, None),
        Param("trainable", bool, True),
    ],
    doc="(1.1) Another spec's network up to its step `until`, with its own layer names: "
    "`{spec: resnet18, until: conv4_2, vars: {...}, weights: PATH, trainable: false}`.",
    resolve=resolve_backbone,
    source="blockspec.builder.resolve.backbone",
)
