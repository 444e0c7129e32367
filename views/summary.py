"""Numbers about a built model: per step (output shape, neurons, parameters, multiply-adds) and totals."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from blockspec.builder.compile import Built
from blockspec.builder.spec import walk

_CONV_CLASSES = (
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "Conv2DTranspose",
    "Conv1DTranspose",
    "Conv3DTranspose",
    "DepthwiseConv1D",
    "SeparableConv1D",
)
_FC_CLASSES = ("Dense", "EinsumDense")
_RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")


@dataclass
class StepStats:
    name: str
    type: str
    shape: tuple
    neurons: int
    params: int
    conv_params: int = 0
    fc_params: int = 0
    madds: int = 0
    layers: list[str] = field(default_factory=list)


@dataclass
class ModelStats:
    name: str
    steps: list[StepStats]
    params: int
    trainable: int
    conv_params: int
    fc_params: int
    madds: int
    depth: int
    layers: int
    deployed_params: int = 0  # without the train-only outputs' own layers (aux heads)
    deployed_fc_params: int = 0


def _params(layer) -> int:
    return int(sum(math.prod(w.shape) for w in layer.weights))


def layer_madds(layer) -> int:
    """Multiply-adds of one call of `layer` (weights times the positions they are applied at)."""
    try:
        out_shape = layer.output.shape
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
    except (AttributeError, ValueError):
        return 0
    # The first input is the data: after an `embedding` with `mask_zero`, a recurrent layer is
    # called on [sequence, mask].
    in_shape = inputs[0].shape if inputs and hasattr(inputs[0], "shape") else None
    cls = type(layer).__name__
    positions = math.prod(d or 1 for d in out_shape[1:-1]) if len(out_shape) > 2 else 1
    if cls == "SeparableConv2D":
        return int(
            math.prod(layer.depthwise_kernel.shape) * positions
            + math.prod(layer.pointwise_kernel.shape) * positions
        )
    if cls.endswith("Transpose") and in_shape is not None:
        return int(math.prod(layer.kernel.shape) * math.prod(d or 1 for d in in_shape[1:-1]))
    if cls in ("DepthwiseConv2D", "DepthwiseConv1D"):
        return int(math.prod(layer.kernel.shape) * positions)
    if cls in _RNN_CLASSES and in_shape is not None:
        steps = in_shape[1] or 1
        rnns = [layer.forward_layer, layer.backward_layer] if cls == "Bidirectional" else [layer]
        return int(
            sum(
                (math.prod(r.cell.kernel.shape) + math.prod(r.cell.recurrent_kernel.shape)) * steps
                for r in rnns
            )
        )
    kernel = getattr(layer, "kernel", None)
    if kernel is not None and hasattr(kernel, "shape"):
        return int(math.prod(kernel.shape) * positions)
    return 0


def _kind(layer) -> str:
    cls = type(layer).__name__
    if cls in _CONV_CLASSES:
        return "conv"
    if cls in _FC_CLASSES:
        # A Dense on a feature map (ConvNeXt's pointwise layers) is a 1x1 convolution.
        return "conv" if _input_rank(layer) >= 4 else "fc"
    if cls in _RNN_CLASSES:
        return "rnn"
    return "other"


def _input_rank(layer) -> int:
    """The rank of the tensor a layer reads (batch axis included); 2 if it cannot be told."""
    try:
        return len(layer.input.shape)
    except (AttributeError, ValueError):  # a layer called on several tensors, or never called
        return 2


def _parents(layer):
    for node in getattr(layer, "_inbound_nodes", []):
        for parent in node.parent_nodes:
            yield parent.operation


def _deployed_layers(model, train_only: set[str]) -> set[int]:
    """ids of the layers that the outputs not marked `train_only` depend on."""
    seen: set[int] = set()
    stack = [
        t._keras_history[0]
        for name, t in zip(model.output_names, model.outputs, strict=True)
        if name not in train_only
    ]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        stack.extend(_parents(layer))
    return seen


def depth(model) -> int:
    """Layers with weights (convolution, FC, recurrent) on the longest path from input to output."""
    memo: dict[int, int] = {}

    def layer_depth(layer) -> int:
        key = id(layer)
        if key in memo:
            return memo[key]
        memo[key] = 0
        best = 0
        for parent in _parents(layer):
            best = max(best, layer_depth(parent))
        own = 1 if _kind(layer) in ("conv", "fc", "rnn") else 0
        memo[key] = best + own
        return memo[key]

    outputs = model.outputs if isinstance(model.outputs, list) else list(model.outputs)
    return max((layer_depth(t._keras_history[0]) for t in outputs), default=0)


def stats(built: Built) -> ModelStats:
    """Per-step and total numbers for a built model."""
    model, spec = built.model, built.spec
    top = [(s.name, s.type) for s in spec.network]
    # A layer belongs to the top-level step whose name, or a nested step's, starts its name:
    # nested names start with their step's, except a `backbone`'s, which keep their own.
    owners = sorted(
        ((inner.name, step.name) for step in spec.network for inner in walk([step])),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )
    per_step = {name: StepStats(name, kind, (), 0, 0) for name, kind in top}
    for layer in model.layers:
        owner = next(
            (o for p, o in owners if layer.name == p or layer.name.startswith(p + "_")), None
        )
        if owner is None:
            continue
        entry = per_step[owner]
        params = _params(layer)
        entry.params += params
        kind = _kind(layer)
        if kind == "conv":
            entry.conv_params += params
        elif kind == "fc":
            entry.fc_params += params
        entry.madds += layer_madds(layer)
        entry.layers.append(layer.name)
    for name, entry in per_step.items():
        tensor = built.tensors.get(name)
        if tensor is not None:
            entry.shape = tuple(tensor.shape[1:])
            entry.neurons = math.prod(d or 1 for d in entry.shape)
    steps = list(per_step.values())
    trainable = int(sum(math.prod(w.shape) for w in model.trainable_weights))
    deployed = _deployed_layers(model, {o.name for o in spec.outputs if o.train_only})
    deployed_layers = [layer for layer in model.layers if id(layer) in deployed]
    return ModelStats(
        name=spec.name,
        steps=steps,
        params=int(model.count_params()),
        trainable=trainable,
        conv_params=sum(s.conv_params for s in steps),
        fc_params=sum(s.fc_params for s in steps),
        madds=sum(s.madds for s in steps),
        depth=depth(model),
        layers=len(model.layers),
        deployed_params=sum(_params(layer) for layer in deployed_layers),
        deployed_fc_params=sum(_params(layer) for layer in deployed_layers if _kind(layer) == "fc"),
    )


def references(spec_name: str) -> dict:
    """Published per-step numbers for a zoo spec (`specs/references/<name>.yaml`), or {}.

    Returns:
        `{"source": str, "steps": {step: {"params": "159K", "ops": "128M", "note": ...}}}`.
    """
    from blockspec.builder.errors import SpecError
    from blockspec.builder.load import SPECS_DIR, parse_yaml, read_text

    path = SPECS_DIR / "references" / f"{spec_name}.yaml"
    if not path.is_file():
        return {}
    try:
        data = parse_yaml(read_text(path), str(path)).data
    except SpecError:
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("steps"), dict) else {}


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


@dataclass
class BlockStats:
    """Parameters and multiply-adds of every use of one block type (`summary --by-block`).

    Attributes:
        name: the block type (`inception`, `bottleneck_residual`) or, for steps outside any
            block, the step type (`conv`, `dense`).
        kind: `user block`, `block`, `combinator` or `layer`.
        count: how many steps of that type own layers.
    """

    name: str
    kind: str
    count: int = 0
    params: int = 0
    madds: int = 0


def by_block(built: Built) -> list[BlockStats]:
    """Where the parameters and multiply-adds sit, by the innermost block that owns each layer.

    A layer belongs to the innermost user block or Python block around it (GoogLeNet's convs
    to `inception`, ResNet's to `bottleneck_residual`); a layer outside any block belongs to its
    top-level step's type (`conv`, `dense`, `residual`). Sorted by parameters, largest first.
    """
    from blockspec.builder import registry

    owners: list[tuple[str, tuple[str, str]]] = []
    instances: dict[tuple[str, str], set[str]] = {}

    def walk(steps, group):
        for step in steps:
            entry = registry.get(step.type) if step.block is None else None
            if step.block is not None:
                key, inner = (step.block, "user block"), True
            elif entry is not None and entry.kind == "block":
                key, inner = (step.type, "block"), True
            else:
                kind = entry.kind if entry is not None and entry.kind != "keras" else "layer"
                key, inner = group or (step.type, kind), group is None
            if inner:
                instances.setdefault(key, set()).add(step.name)
            owners.append((step.name, key))
            for child in step.children:
                walk(child, key)

    walk(built.spec.network, None)
    owners.sort(key=lambda item: len(item[0]), reverse=True)
    groups: dict[tuple[str, str], BlockStats] = {}
    for layer in built.model.layers:
        key = next(
            (
                k
                for prefix, k in owners
                if layer.name == prefix or layer.name.startswith(prefix + "_")
            ),
            None,
        )
        if key is None:
            continue
        entry = groups.setdefault(key, BlockStats(key[0], key[1]))
        entry.params += _params(layer)
        entry.madds += layer_madds(layer)
    for key, entry in groups.items():
        entry.count = len(instances.get(key, ()))
    return sorted(groups.values(), key=lambda b: (-b.params, -b.madds, b.name))


# ------------------------------------------------------------------ tables for `blockspec summary`

DEPTH_LABEL = "depth (weighted layers)"  # the same words in `summary` and `diff --params`


def step_table(s: ModelStats):
    """The per-step rich table of one model, with published numbers where the zoo has them."""
    from rich.table import Table

    refs = references(s.name)
    published = refs.get("steps", {})
    caption = f"published: {refs['source']} (params / ops, as printed)" if refs else None
    table = Table(title=s.name, caption=caption)
    columns = ["step", "type", "output shape", "neurons", "params", "mult-adds"]
    if published:
        columns.append("published")
    for column in columns:
        table.add_column(
            column,
            justify="left" if column in ("step", "type", "output shape") else "right",
            overflow="fold",  # long step names wrap rather than lose their end
        )
    for step in s.steps:
        row = [
            step.name,
            step.type,
            "x".join(str(d) for d in step.shape),
            f"{step.neurons:,}",
            f"{step.params:,}",
            human(step.madds),
        ]
        if published:
            ref = published.get(step.name) or {}
            row.append(f"{ref.get('params', '')} / {ref.get('ops', '')}" if ref else "")
        table.add_row(*row)
    return table


def totals_table(all_stats: list[ModelStats]):
    """One column per model: parameters, multiply-adds, depth, ... (several specs side by side)."""
    from rich.table import Table

    table = Table(title="totals" if len(all_stats) == 1 else "totals, side by side")
    table.add_column("")
    for s in all_stats:
        table.add_column(s.name, justify="right")
    rows = [
        ("parameters", lambda s: f"{s.params:,}"),
        ("trainable", lambda s: f"{s.trainable:,}"),
        ("conv parameters", lambda s: f"{s.conv_params:,}"),
        ("FC parameters", lambda s: f"{s.fc_params:,}"),
        ("FC / conv", lambda s: f"{s.fc_params / s.conv_params:.2f}x" if s.conv_params else "-"),
        ("multiply-adds", lambda s: human(s.madds)),
        (DEPTH_LABEL, lambda s: str(s.depth)),
        ("Keras layers", lambda s: str(s.layers)),
    ]
    if any(s.deployed_params != s.params for s in all_stats):
        # Train-only heads (GoogLeNet's aux classifiers) are not part of the deployed network.
        rows[4:4] = [
            ("deployed parameters", lambda s: f"{s.deployed_params:,}"),
            ("deployed FC parameters", lambda s: f"{s.deployed_fc_params:,}"),
        ]
    for label, fn in rows:
        table.add_row(label, *[fn(s) for s in all_stats])
    return table


def block_table(built: Built, totals: ModelStats):
    """`summary --by-block`: parameters and multiply-adds grouped by block type, with shares."""
    from rich.table import Table

    table = Table(title=f"{totals.name}: by block")
    for column in ("block", "kind", "uses", "params", "%", "mult-adds", "%"):
        table.add_column(column, justify="left" if column in ("block", "kind") else "right")

    def share(part: int, whole: int) -> str:
        return f"{100 * part / whole:.1f}" if whole else "-"

    for group in by_block(built):
        table.add_row(
            group.name,
            group.kind,
            str(group.count),
            f"{group.params:,}",
            share(group.params, totals.params),
            human(group.madds),
            share(group.madds, totals.madds),
        )
    return table
