"""Combinators: `sequence`, `parallel`, `residual`, `bidirectional`.

Their arguments hold steps, which the resolver has already resolved into `Step.children`; here they
are wired together. A combinator's build takes the build context, the step and its input.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from blockspec.builder.errors import shorten
from blockspec.builder.lazy import layers
from blockspec.builder.registry import REQUIRED, Param, ShapeError, get, register

Merge = Literal["concat", "add", "multiply", "average", "maximum"]
_MERGE_LAYERS = {
    "concat": "Concatenate",
    "add": "Add",
    "multiply": "Multiply",
    "average": "Average",
    "maximum": "Maximum",
}


def merge(tensors: list, how: str, name: str):
    """Merges branch outputs; one tensor passes through unchanged."""
    if len(tensors) == 1:
        return tensors[0]
    return getattr(layers, _MERGE_LAYERS[how])(name=name)(tensors)


def build_sequence(ctx, step, x):
    return ctx.build_steps(step.children[0], x)


def build_parallel(ctx, step, x):
    outputs = [ctx.build_steps(branch, x) for branch in step.children]
    return merge(outputs, step.args["merge"], f"{step.name}_{step.args['merge']}")


def build_residual(ctx, step, x):
    body = ctx.build_steps(step.children[0], x)
    mode = step.args["shortcut"]
    if mode == "none":  # (1.1) the body alone: one block serves units with and without a shortcut
        out = body
    elif mode == "identity" or (mode == "auto" and tuple(body.shape[1:]) == tuple(x.shape[1:])):
        shortcut = x
    elif mode == "auto":
        stride = _total_stride(x.shape, body.shape, step)
        conv, bn = step.children[1]
        # The projection's width and stride come from the shapes: a copy, the spec stays as resolved.
        # It is written nowhere: a refusal of it names the residual.
        conv = replace(
            conv,
            args={**conv.args, "filters": int(body.shape[-1]), "strides": stride},
            path=step.path,
            mark=step.mark,
        )
        shortcut = ctx.build_steps([conv, replace(bn, path=step.path, mark=step.mark)], x)
    else:
        shortcut = ctx.build_steps(step.children[1], x)
    if mode != "none":
        out = merge([shortcut, body], step.args["merge"], f"{step.name}_{step.args['merge']}")
    if step.args.get("activation"):
        out = layers.Activation(step.args["activation"], name=f"{step.name}_out")(out)
    return out


def _total_stride(in_shape, out_shape, step) -> int | list[int]:
    spatial_in, spatial_out = in_shape[1:-1], out_shape[1:-1]
    if len(in_shape) == len(out_shape) != 4:  # the projection is a `conv` (2D): images only
        raise ShapeError(
            f"the `auto` shortcut projects images (a 1x1 `conv`); the body changes a shape of "
            f"rank {len(in_shape) - 1}: give `shortcut` explicitly (a list of steps, or none). "
            f"Received: input {tuple(in_shape)}, body output {tuple(out_shape)}"
        )
    if len(spatial_in) != len(spatial_out):
        raise ShapeError(
            f"residual body changes the rank of its input; give `shortcut` explicitly. "
            f"Received: input {tuple(in_shape)}, body output {tuple(out_shape)}"
        )
    strides = []
    for a, b in zip(spatial_in, spatial_out, strict=True):
        if a is None or b is None or b == 0 or a < b:
            raise ShapeError(
                f"cannot infer the shortcut's stride from input {tuple(in_shape)} to body output "
                f"{tuple(out_shape)}; give `shortcut` explicitly"
            )
        strides.append(-(-a // b))
    return strides[0] if len(set(strides)) == 1 else strides


def build_bidirectional(ctx, step, x):
    inner = step.children[0][0]
    entry = ctx.registry_get(inner.type)
    class_name = entry.extra.get("keras_class", inner.type)
    rename = entry.extra.get("rename", {})
    kwargs = {rename.get(k, k): v for k, v in inner.args.items()}
    recurrent = getattr(layers, class_name)(name=inner.name, **kwargs)
    return layers.Bidirectional(recurrent, merge_mode=step.args["merge_mode"], name=step.name)(x)


def _combinator(
    name: str, build, params: dict[str, Param], doc: str, primary: str | None = None
) -> None:
    register(
        name,
        kind="combinator",
        build=build,
        params=list(params.values()),
        primary=primary,
        doc=doc,
        source="blockspec.blocks.combinators",
    )


_combinator(
    "sequence",
    build_sequence,
    {"steps": Param("steps", list, REQUIRED)},
    "A sub-chain of steps with its own naming scope: `sequence: [steps]`.",
    primary="steps",
)
_combinator(
    "parallel",
    build_parallel,
    {"branches": Param("branches", list, REQUIRED), "merge": Param("merge", Merge, "concat")},
    "Branches that read the same input, merged (`concat` by default): `{branches: [[steps], ...]}`.",
)
_combinator(
    "residual",
    build_residual,
    {
        "body": Param("body", list, REQUIRED),
        "shortcut": Param("shortcut", Any, "auto"),
        "merge": Param("merge", Merge, "add"),
        "activation": Param("activation", str | None, None),
    },
    "body + shortcut; `auto` shortcut is identity when shapes match, else 1x1 conv + batch norm.",
    primary="body",
)
_combinator(
    "bidirectional",
    build_bidirectional,
    {
        "layer": Param("layer", dict, REQUIRED),
        "merge_mode": Param("merge_mode", Merge | None, "concat"),
    },
    "Wraps one recurrent step (`lstm`, `gru`) to read the sequence both ways.",
    primary="layer",
)

COMBINATORS = ("sequence", "parallel", "residual", "bidirectional")
STEP_LIST_ARGS = {
    "sequence": ("steps",),
    "parallel": ("branches",),
    "residual": ("body", "shortcut"),
    "bidirectional": ("layer",),
}


# ----------------------------------------------------------------------------- resolve hooks
# Each combinator's resolve side, beside its build side above: a function of the resolver's
# `Nest` (builder/resolve/steps.py) returning the step's children, or None after an error.


def resolve_sequence(nest) -> list | None:
    return [nest.steps(nest.given.get("steps"), nest.at("steps"))]


def resolve_parallel(nest) -> list | None:
    branches = nest.given.get("branches")
    if not isinstance(branches, list) or not branches:
        nest.error(
            (*nest.path, "branches"),
            f"`branches` is a list of step lists. Received: {shorten(branches)}",
        )
        return None
    return [
        nest.steps(branch, (*nest.path, "branches", index), f"_b{index + 1}")
        for index, branch in enumerate(branches)
    ]


def resolve_residual(nest) -> list | None:
    if "body" not in nest.given:
        nest.error(nest.path, "missing required argument `body` for `residual`")
        return None
    children = [nest.steps(nest.given["body"], nest.at("body"))]
    shortcut = nest.given.get("shortcut", "auto")
    if isinstance(shortcut, list):
        children.append(nest.steps(shortcut, (*nest.path, "shortcut"), "_shortcut"))
        nest.settings["shortcut"] = "steps"
    elif shortcut in ("auto", "identity", "none"):
        nest.settings["shortcut"] = shortcut
        if shortcut == "auto":
            children.append(nest.auto_shortcut())
    else:
        nest.error(
            (*nest.path, "shortcut"),
            "`shortcut` is auto, identity, none or a list of steps. "
            f"Received: shortcut={shorten(shortcut)}",
        )
    return children


def resolve_bidirectional(nest) -> list | None:
    layer = nest.given.get("layer")
    if not isinstance(layer, dict):
        nest.error(
            nest.path,
            "`bidirectional` wraps one step, e.g. `{layer: {lstm: 64}}`. "
            f"Received: {shorten(layer)}",
        )
        return None
    inner_path = nest.at("layer")
    inner = nest.step(layer, inner_path)
    if not inner:
        return None
    recurrent = get(inner[0].type)
    if recurrent is None or recurrent.kind not in ("layer", "keras") or recurrent.multi_input:
        nest.error(
            inner_path,
            "`bidirectional` wraps a recurrent layer (lstm, gru, simple_rnn). "
            f"Received: {inner[0].type}",
        )
        return None
    return [inner]


for _name, _hook in (
    ("sequence", resolve_sequence),
    ("parallel", resolve_parallel),
    ("residual", resolve_residual),
    ("bidirectional", resolve_bidirectional),
):
    get(_name).extra["resolve"] = _hook
