"""Render a resolved spec back to YAML: what is built, with vars, defaults, repeats and blocks applied."""

from __future__ import annotations

from typing import Any

import yaml

from blockspec.builder.spec import ResolvedSpec, Step


def _local(step: Step, prefix: str) -> str | None:
    if prefix and step.name == prefix:
        return None  # a lone combinator that takes its scope's name
    if prefix and step.name.startswith(prefix + "_"):
        return step.name[len(prefix) + 1 :]
    return step.name


def _step(step: Step, prefix: str) -> dict[str, Any]:
    if step.block is not None:
        body = {"sequence": [_step(s, step.name) for s in step.children[0]]}
        out = body
    elif step.type == "sequence":
        out = {"sequence": [_step(s, step.name) for s in step.children[0]]}
    elif step.type == "parallel":
        out = {
            "parallel": {
                "branches": [
                    [_step(s, f"{step.name}_b{i + 1}") for s in branch]
                    for i, branch in enumerate(step.children)
                ],
                "merge": step.args["merge"],
            }
        }
    elif step.type == "residual":
        args: dict[str, Any] = {"body": [_step(s, step.name) for s in step.children[0]]}
        if step.args["shortcut"] == "steps":
            args["shortcut"] = [_step(s, f"{step.name}_shortcut") for s in step.children[1]]
        else:
            args["shortcut"] = step.args["shortcut"]
        args["merge"] = step.args["merge"]
        if step.args.get("activation"):
            args["activation"] = step.args["activation"]
        out = {"residual": args}
    elif step.type == "bidirectional":
        inner = step.children[0][0]
        out = {
            "bidirectional": {
                "layer": {inner.type: dict(inner.args)},
                "merge_mode": step.args["merge_mode"],
            }
        }
    else:
        out = {step.type: dict(step.args)}
    local = _local(step, prefix)
    if local is not None:
        out["name"] = local
    if step.sources is not None and prefix == "":
        out["from"] = step.sources[0] if len(step.sources) == 1 else list(step.sources)
    return out


def render(spec: ResolvedSpec) -> str:
    """The resolved spec as YAML, loadable as a spec of its own."""
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
    network = []
    for index, step in enumerate(spec.network):
        item = _step(step, "")
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
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
