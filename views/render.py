"""Render a resolved spec back to YAML: what is built, with vars, defaults, repeats and blocks applied."""

from __future__ import annotations

from typing import Any

import yaml

from blockspec.builder import registry
from blockspec.builder.lazy import contains_deferred, map_deferred
from blockspec.builder.spec import ResolvedSpec, Step, walk


class _Dumper(yaml.SafeDumper):
    """Writes a value shared by several steps in full at each (no `&id001` anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _local(step: Step, prefix: str) -> str | None:
    if prefix and step.name == prefix:
        return None  # a lone combinator that takes its scope's name
    if prefix and step.name.startswith(prefix + "_"):
        return step.name[len(prefix) + 1 :]
    return step.name


def _values(value: Any, settled: dict[int, Any]) -> Any:
    """`value` with each deferred `in_*` expression replaced by what it was when built."""
    return map_deferred(value, lambda deferred: settled[id(deferred)])


def _step(step: Step, scopes: tuple[str, ...], settled: dict[int, Any]) -> dict[str, Any]:
    """One step as written; `scopes` are the prefixes of its scope and those around it."""
    out = _combinator(step, scopes, settled)
    if out is None:
        out = {step.type: _values(dict(step.args), settled)}
    local = _local(step, scopes[-1])
    if local is not None:
        out["name"] = local
    if step.sources is not None:
        names = [_written(source, scopes) for source in step.sources]
        out["from"] = names[0] if len(names) == 1 else names
    if not step.trainable:
        out["trainable"] = False
    return out


def _written(full: str, scopes: tuple[str, ...]) -> str:
    """How a step inside `scopes` names the step of full name `full` (innermost scope first)."""
    for prefix in reversed(scopes):
        if not prefix:
            return full
        if full.startswith(prefix + "_"):
            return full[len(prefix) + 1 :]
    return full


def _combinator(step: Step, scopes: tuple, settled: dict[int, Any]) -> dict[str, Any] | None:
    """A combinator or user block step, its children rendered; None for any other step."""

    def steps(children: list[Step], prefix: str) -> list:
        return [_step(s, (*scopes, prefix), settled) for s in children]

    args = _values(step.args, settled)
    if step.block is not None or step.type == "sequence":
        return {"sequence": steps(step.children[0], step.name)}
    if step.type == "parallel":
        branches = [steps(b, f"{step.name}_b{i + 1}") for i, b in enumerate(step.children)]
        return {"parallel": {"branches": branches, "merge": args["merge"]}}
    if step.type == "residual":
        out: dict[str, Any] = {"body": steps(step.children[0], step.name)}
        if args["shortcut"] == "steps":
            out["shortcut"] = steps(step.children[1], f"{step.name}_shortcut")
        elif id(step) in settled:  # an `auto` projection that `defaults` changed: written out
            out["shortcut"] = settled[id(step)]
        else:
            out["shortcut"] = args["shortcut"]
        out["merge"] = args["merge"]
        if args.get("activation"):
            out["activation"] = args["activation"]
        return {"residual": out}
    if step.type == "bidirectional":
        inner = step.children[0][0]
        layer = {inner.type: _values(dict(inner.args), settled)}
        return {"bidirectional": {"layer": layer, "merge_mode": args["merge_mode"]}}
    return None


def render(spec: ResolvedSpec) -> str:
    """The resolved spec as YAML, loadable as a spec of its own.

    A value that waited for the build (an `in_*` expression `validate` could not evaluate) is
    printed as the number it is when built: the model is then built, its weights not allocated.
    """
    settled = _settled(spec)
    doc: dict[str, Any] = {"spec": 1, "name": spec.name}
    if spec.description:
        doc["description"] = spec.description
    if (
        len(spec.inputs) == 1
        and spec.inputs[0].name == "input"
        and spec.inputs[0].dtype == "float32"
    ):
        doc["input"] = list(spec.inputs[0].shape)
    else:
        doc["inputs"] = {i.name: {"shape": list(i.shape), "dtype": i.dtype} for i in spec.inputs}
    if spec.weights is not None:  # absolute, as the resolver made it
        doc["weights"] = spec.weights
    if spec.weights_strict:
        doc["weights_strict"] = True
    network = []
    for index, step in enumerate(spec.network):
        item = _step(step, ("",), settled)
        if index == 0 and step.sources == [spec.inputs[0].name]:
            item.pop("from", None)
        network.append(item)
    doc["network"] = network
    outputs = {}
    for out in spec.outputs:
        entry: dict[str, Any] = {"from": out.source}
        if out.activation:
            entry["activation"] = out.activation
        if out.loss is not None:
            entry["loss"] = out.loss
        if out.loss_weight != 1.0:
            entry["loss_weight"] = out.loss_weight
        if out.metrics:
            entry["metrics"] = list(out.metrics)
        if out.train_only:
            entry["train_only"] = True
        outputs[out.name] = entry
    doc["outputs"] = outputs
    if spec.train:
        doc["train"] = spec.train
    if spec.tune:
        doc["tune"] = spec.tune
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100)


def _settled(spec: ResolvedSpec) -> dict[int, Any]:
    """What only the build knows, by id; empty, and nothing built, if nothing needs it.

    The deferred values of `spec` as built, and for each `auto` shortcut whose projection
    `defaults` changed (`defaults: {conv: {use_bias: false}}`), the shortcut it became: written
    as `auto`, it would be read again without those defaults (the rendered spec has none).
    """

    def deferred(steps: list[Step]) -> bool:
        return any(contains_deferred(s.args) or any(deferred(c) for c in s.children) for s in steps)

    changed = [s for s in walk(spec.network) if _changed_auto(s)]
    if not deferred(spec.network) and not changed:
        return {}
    from blockspec.builder.compile import _build_graph, _deferred_weights

    with _deferred_weights(allocate=False):
        built = _build_graph(spec)
    settled = dict(built.settled)
    for step in changed:
        conv, bn = step.children[1]
        tensor = built.tensors.get(conv.name)
        if tensor is None:  # the shapes matched: `auto` was the identity
            settled[id(step)] = "identity"
            continue
        layer = tensor._keras_history[0]  # the Conv2D that made the projection
        strides = list(layer.strides)
        conv_args = {**conv.args, "filters": layer.filters}
        conv_args["strides"] = strides[0] if len(set(strides)) == 1 else strides
        settled[id(step)] = [
            {"conv": _values(conv_args, settled), "name": "conv"},
            {"batch_norm": _values(dict(bn.args), settled), "name": "bn"},
        ]
    return settled


def _changed_auto(step: Step) -> bool:
    """Whether `step` is a residual whose `auto` projection has arguments `defaults` changed."""
    if step.type != "residual" or step.block is not None or step.args.get("shortcut") != "auto":
        return False
    plain = {"conv": {"kernel": 1, "filters": 1, "strides": 1, "factorize": "none"}}
    for child in step.children[1]:
        entry = registry.get(child.type)
        args = {k: p.default for k, p in entry.params.items() if not p.required}
        args.update(plain.get(child.type, {}))
        if dict(child.args) != args:
            return True
    return False
