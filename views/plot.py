"""Pictures of a network: `blockspec plot SPEC -o net.png`.

The picture is drawn from the resolved spec, so it shows what the spec says: top-level steps as
boxes, user blocks and combinators as framed groups (a `parallel`'s branches side by side, a
`residual`'s shortcut as its own edge), merges as small nodes, auxiliary (`train_only`) heads
dashed and orange. `expand=True` draws the Keras layers inside each step instead (it builds the
model). Layout is graphviz's `dot`; without it, a `.dot`/`.gv` file can still be written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blockspec.builder import registry
from blockspec.builder.spec import ResolvedSpec, Step
from blockspec.errors import MissingTool, UsageError
from blockspec.views import spaces

FORMATS = ("png", "svg", "pdf", "dot", "gv")

_FONT = "Helvetica"
_FILL = {
    "layer": "#eef3fb",
    "keras": "#eef3fb",
    "block": "#cfe0f5",
    "io": "#e3f1e3",
    "merge": "#ffffff",
    "aux": "#fde9d2",
}
_CLUSTER_FILL = {"block": "#f3f7fc", "sequence": "#fafafa", "parallel": "#fafafa"}


class GraphvizMissing(MissingTool):
    """Graphviz cannot draw here; `str()` is one line telling how to install it."""


def require_dot() -> None:
    """Raises `GraphvizMissing` unless the `graphviz` package and the `dot` program are there."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        raise GraphvizMissing(
            "`blockspec plot` needs the graphviz Python package: pip install graphviz"
        ) from None
    if shutil.which("dot") is None:
        raise GraphvizMissing(
            "graphviz's `dot` program is not installed: apt-get install graphviz (Debian, "
            "Ubuntu), brew install graphviz (macOS); or write the DOT source with -o net.dot"
        )


# ----------------------------------------------------------------------------- a small graph model


@dataclass
class _Node:
    id: str
    label: str
    kind: str  # layer | keras | block | io | merge
    cluster: _Cluster | None
    dashed: bool = False


@dataclass
class _Cluster:
    id: str
    label: str
    kind: str  # block | sequence | parallel | residual | step
    parent: _Cluster | None
    nodes: list[_Node] = field(default_factory=list)
    children: list[_Cluster] = field(default_factory=list)
    order: list[tuple[str, str]] = field(default_factory=list)  # left-to-right node pairs


@dataclass
class _Edge:
    tail: str
    head: str
    label: str = ""
    dashed: bool = False


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.clusters: list[_Cluster] = []
        self.edges: list[_Edge] = []
        self.main: list[str] = []  # output nodes
        self.aux: list[str] = []  # train-only output nodes
        self._count = 0

    def _next(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def node(self, label: str, kind: str, cluster: _Cluster | None, dashed: bool = False) -> str:
        node = _Node(self._next("n"), label, kind, cluster, dashed)
        self.nodes[node.id] = node
        if cluster is not None:
            cluster.nodes.append(node)
        return node.id

    def cluster(self, label: str, kind: str, parent: _Cluster | None) -> _Cluster:
        cluster = _Cluster(self._next("cluster_"), label, kind, parent)
        (parent.children if parent is not None else self.clusters).append(cluster)
        return cluster

    def edge(self, tail: str, head: str, label: str = "", dashed: bool = False) -> None:
        self.edges.append(_Edge(tail, head, label, dashed))

    def output(self, out, source: str | None) -> str:
        """An output node; a train-only one is dashed and says so."""
        text = f"{out.name} ({out.activation or 'linear'})"
        if out.train_only:
            text += f"\ntrain only, loss x{out.loss_weight:g}"
        node = self.node(text, "io", None, dashed=out.train_only)
        (self.aux if out.train_only else self.main).append(node)
        if source is not None:
            self.edge(source, node, dashed=out.train_only)
        return node

    def aux_only(self) -> set[str]:
        """Nodes that feed only train-only outputs (auxiliary heads)."""
        parents: dict[str, list[str]] = {}
        for e in self.edges:
            parents.setdefault(e.head, []).append(e.tail)

        def upstream(starts: list[str]) -> set[str]:
            seen, stack = set(), list(starts)
            while stack:
                n = stack.pop()
                if n not in seen:
                    seen.add(n)
                    stack += parents.get(n, [])
            return seen

        return upstream(self.aux) - upstream(self.main)


# ----------------------------------------------------------------------------- labels


def shape_text(shape: Any) -> str:
    """`(None, 28, 28, 192)` -> `28x28x192`."""
    dims = list(shape)[1:] if shape and list(shape)[0] is None else list(shape)
    return "x".join("?" if d is None else str(d) for d in dims)


def _value_text(key: str, value: Any) -> str:
    if key in ("kernel", "size", "kernel_size", "pool_size"):
        if isinstance(value, int):
            return f"{value}x{value}"
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            return "x".join(map(str, value))
    if key == "strides" and value is not None:
        return "/" + ("x".join(map(str, value)) if isinstance(value, list) else str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_value_text("", v) for v in value) + "]"
    return str(value)


def _details(step: Step, width: int = 30) -> str:
    """The arguments worth reading: required ones, then those that differ from the default."""
    entry = registry.get(step.type)
    params = entry.params if entry is not None else {}
    parts: list[str] = []
    order = {key: index for index, key in enumerate(params)}
    for key, value in sorted(step.args.items(), key=lambda kv: order.get(kv[0], len(order))):
        param = params.get(key)
        if param is not None and not param.required and param.default == value:
            continue
        if param is None and entry is not None and entry.kind != "keras":
            continue  # a passthrough argument: too much detail for a box
        named = entry is None or entry.kind in ("block", "keras") or key not in _BARE
        parts.append(f"{key}={_value_text('', value)}" if named else _value_text(key, value))
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part) + 2 > width:
            lines.append(line)
            line = part
        else:
            line = f"{line}, {part}" if line else part
        if len(lines) == 3:
            break
    if line and len(lines) < 3:
        lines.append(line)
    elif len(lines) == 3 and len(parts) > 0:
        lines[-1] += " ..."
    return "\n".join(lines)


_BARE = {"filters", "units", "kernel", "size", "strides", "activation", "rate", "padding"}


def _step_label(step: Step, shape: str) -> str:
    details = _details(step).split("\n")
    head = " ".join(x for x in (step.type, details[0]) if x)
    lines = [head] if step.name == step.type else [step.name, head]
    lines += details[1:]
    if shape:
        lines.append(shape)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the collapsed view


class _StepDrawer:
    """Draws steps as boxes, user blocks and combinators as framed groups."""

    def __init__(self, spec: ResolvedSpec, built: Any | None):
        self.spec = spec
        self.built = built
        self.g = _Graph()
        self.out: dict[str, str] = {}  # step or input name -> the node that holds its output
        self.layer_names = (
            {layer.name for layer in built.model.layers} if built is not None else None
        )
        self.spaces, _ = spaces.by_step(spec)

    def with_spaces(self, label: str, step: Step) -> str:
        """The label, and one line per search space written in the step (`rate: tune float ...`)."""
        lines = [f"~ {placed.text}" for placed in self.spaces.get(step.name, [])]
        return "\n".join([label, *lines])

    def shape(self, name: str) -> str:
        if self.built is None or name not in self.built.tensors:
            return ""
        return shape_text(self.built.tensors[name].shape)

    def draw(self) -> _Graph:
        for spec_input in self.spec.inputs:
            label = f"{spec_input.name}\n{shape_text(spec_input.shape)}"
            self.out[spec_input.name] = self.g.node(label, "io", None)
        first = [self.out[self.spec.inputs[0].name]] if self.spec.inputs else []
        self.steps(self.spec.network, first, None)
        for out in self.spec.outputs:
            self.g.output(out, self.out.get(out.source))
        return self.g

    def steps(self, steps: list[Step], preds: list[str], cluster: _Cluster | None) -> list[str]:
        for step in steps:
            preds = [self.step(step, preds, cluster)]
        return preds

    def step(self, step: Step, preds: list[str], cluster: _Cluster | None) -> str:
        if step.sources is not None:
            preds = [self.out[name] for name in step.sources if name in self.out]
        if step.block is not None:
            label = self.with_spaces(f"{step.name}  ({step.block})", step)
            out = self.group(step, preds, cluster, label, "block")
        elif step.type == "sequence":
            out = self.group(step, preds, cluster, self.with_spaces(step.name, step), "sequence")
        elif step.type == "parallel":
            out = self.parallel(step, preds, cluster)
        elif step.type == "residual":
            out = self.residual(step, preds, cluster)
        else:
            entry = registry.get(step.type)
            kind = entry.kind if entry is not None and entry.kind in _FILL else "layer"
            if step.type == "bidirectional" and step.children:
                inner = step.children[0][0]
                label = f"{step.name}\nbidirectional {inner.type}\n{_details(inner)}".strip()
                label += f"\n{self.shape(step.name)}" if self.shape(step.name) else ""
            else:
                label = _step_label(step, self.shape(step.name))
            out = self.g.node(self.with_spaces(label, step), kind, cluster)
            for pred in preds:
                self.g.edge(pred, out)
        self.out[step.name] = out
        return out

    def group(self, step, preds, cluster, label, kind) -> str:
        inner = self.g.cluster(label, kind, cluster)
        return self.steps(step.children[0], preds, inner)[0]

    def frame(self, step: Step, cluster: _Cluster | None) -> _Cluster:
        """A frame for a combinator, unless it is the lone body of a block framed already."""
        if cluster is not None and step.name == cluster.label.split("  ")[0]:
            return cluster
        return self.g.cluster(step.name, step.type, cluster)

    def merge(self, how: str, cluster: _Cluster, name: str) -> str:
        symbol = {"add": "+", "multiply": "x", "concat": "concat"}.get(how, how)
        shape = self.shape(name)
        return self.g.node(symbol + (f"\n{shape}" if shape else ""), "merge", cluster)

    def parallel(self, step: Step, preds: list[str], cluster: _Cluster | None) -> str:
        inner = self.frame(step, cluster)
        ends, heads = [], []
        for branch in step.children:
            first = len(self.g.nodes)
            ends.append(self.steps(branch, preds, inner)[0])
            if len(self.g.nodes) > first:
                heads.append(list(self.g.nodes)[first])
        # Invisible edges between the branches' first nodes keep b1, b2, ... left to right.
        inner.order += list(zip(heads, heads[1:], strict=False))
        if len(ends) == 1:
            return ends[0]
        merged = self.merge(step.args.get("merge", "concat"), inner, step.name)
        for end in ends:
            self.g.edge(end, merged)
        return merged

    def residual(self, step: Step, preds: list[str], cluster: _Cluster | None) -> str:
        inner = self.frame(step, cluster)
        body_end = self.steps(step.children[0], preds, inner)[0]
        merged = self.merge(step.args.get("merge", "add"), inner, "")
        mode = step.args.get("shortcut", "auto")
        projected = mode == "steps" or (
            mode == "auto"
            and self.layer_names is not None
            and f"{step.name}_shortcut_conv" in self.layer_names
        )
        if projected and len(step.children) > 1:
            sc_end = self.steps(step.children[1], preds, inner)[0]
            self.g.edge(sc_end, merged)
        else:
            label = "identity" if mode == "identity" or self.layer_names is not None else "auto"
            for pred in preds:
                self.g.edge(pred, merged, label=label, dashed=True)
        self.g.edge(body_end, merged)
        if step.args.get("activation"):
            act = self.g.node(step.args["activation"], "layer", inner)
            self.g.edge(merged, act)
            return act
        return merged


# ----------------------------------------------------------------------------- the expanded view


class _LayerDrawer:
    """Draws every Keras layer, framed by the steps (and blocks) that made it."""

    def __init__(self, spec: ResolvedSpec, built: Any):
        self.spec = spec
        self.built = built
        self.g = _Graph()
        self.owners: list[tuple[str, Step]] = []  # (prefix, step), longest prefixes first
        self.frames: dict[str, _Cluster | None] = {}

    def collect(self, steps: list[Step]) -> None:
        for step in steps:
            self.owners.append((step.name, step))
            for child in step.children:
                self.collect(child)

    def frame(self, step: Step, parent: _Cluster | None, parent_name: str = "") -> None:
        if step.name == parent_name:  # the lone body of a block: framed already
            cluster = parent
        else:
            kind = step.block or step.type
            label = step.name if kind == step.name else f"{step.name}  ({kind})"
            cluster = self.g.cluster(label, "block" if step.block else "step", parent)
        self.frames[step.name] = cluster
        for child in step.children:
            for sub in child:
                self.frame(sub, cluster, step.name)

    def owner(self, layer_name: str) -> Step | None:
        for prefix, step in self.owners:
            if layer_name == prefix or layer_name.startswith(prefix + "_"):
                return step
        return None

    def draw(self) -> _Graph:
        self.collect(self.spec.network)
        self.owners.sort(key=lambda item: len(item[0]), reverse=True)
        for step in self.spec.network:
            self.frame(step, None)
        outputs = {out.name: out for out in self.spec.outputs}
        ids: dict[int, str] = {}
        for layer in self.built.model.layers:
            cls = type(layer).__name__
            shape = _layer_shape(layer)
            if cls == "InputLayer":
                ids[id(layer)] = self.g.node(f"{layer.name}\n{shape}", "io", None)
                continue
            if layer.name in outputs:
                ids[id(layer)] = self.g.output(outputs[layer.name], None)
                continue
            step = self.owner(layer.name)
            cluster = self.frames.get(step.name) if step is not None else None
            ids[id(layer)] = self.g.node(f"{layer.name}\n{cls}  {shape}", "layer", cluster)
        for layer in self.built.model.layers:
            for node in getattr(layer, "_inbound_nodes", []):
                for parent in node.parent_nodes:
                    tail = ids.get(id(parent.operation))
                    if tail is not None and id(layer) in ids:
                        self.g.edge(tail, ids[id(layer)])
        self._drop_lone_frames(self.g.clusters)
        return self.g

    def _drop_lone_frames(self, clusters: list[_Cluster]) -> None:
        """A frame around one layer and nothing else says nothing: keep the layer, drop the frame."""
        for cluster in list(clusters):
            self._drop_lone_frames(cluster.children)
            if not cluster.children and len(cluster.nodes) <= 1:
                clusters.remove(cluster)
                parent = cluster.parent
                for node in cluster.nodes:
                    node.cluster = parent
                    if parent is not None:
                        parent.nodes.append(node)


def _layer_shape(layer) -> str:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return ""
    if isinstance(output, (list, tuple)):
        return ", ".join(shape_text(t.shape) for t in output)
    return shape_text(output.shape)


# ----------------------------------------------------------------------------- emitting


def plot_graph(
    spec: ResolvedSpec,
    built: Any | None = None,
    *,
    expand: bool = False,
    direction: str = "TB",
):
    """The network as a `graphviz.Digraph`.

    Args:
        spec: the resolved spec.
        built: its `Built` (from `compile_spec`); gives output shapes, settles `auto` shortcuts,
            and is needed for `expand`.
        expand: draw the Keras layers inside each step.
        direction: `TB` (top to bottom) or `LR`.

    Returns:
        A `graphviz.Digraph`; `.source` is its DOT text.

    Example:
        >>> graph = plot_graph(resolve_spec("googlenet"))   # doctest: +SKIP
    """
    import graphviz

    if expand and built is None:
        raise ValueError("plot_graph(expand=True) needs the built model: pass `built`")
    g = _LayerDrawer(spec, built).draw() if expand else _StepDrawer(spec, built).draw()
    auxiliary = g.aux_only()
    dot = graphviz.Digraph(
        name=spec.name,
        graph_attr={
            "rankdir": direction,
            "fontname": _FONT,
            "fontsize": "11",
            "nodesep": "0.25",
            "ranksep": "0.3",
            "labeljust": "l",
            "ordering": "out",
            "label": _title(spec, expand),
            "labelloc": "t",
        },
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fontname": _FONT,
            "fontsize": "10",
            "penwidth": "0.8",
        },
        edge_attr={"arrowsize": "0.6", "penwidth": "0.8", "fontname": _FONT, "fontsize": "8"},
    )
    for node in g.nodes.values():
        if node.cluster is None:
            _emit_node(dot, node, node.id in auxiliary)
    for cluster in g.clusters:
        _emit_cluster(dot, cluster, auxiliary)
    for edge in g.edges:
        attrs = {"style": "dashed"} if edge.dashed or edge.head in auxiliary else {}
        if edge.label:
            attrs["xlabel"] = edge.label
        dot.edge(edge.tail, edge.head, **attrs)
    return dot


def _title(spec: ResolvedSpec, expand: bool) -> str:
    """The name, and the search spaces that belong to no one step (`vars`, `train`)."""
    _, unplaced = spaces.by_step(spec)
    lines = [spec.name + ("  (layers)" if expand else "")]
    lines += [f"~ {hp.path}: {spaces.space_text(hp)}" for hp in unplaced]
    return r"\l".join(lines) + (r"\l" if len(lines) > 1 else "")


def _emit_node(dot, node: _Node, auxiliary: bool) -> None:
    attrs = {"label": node.label, "fillcolor": _FILL["aux"] if auxiliary else _FILL[node.kind]}
    styles = ["rounded", "filled"]
    if node.kind == "io":
        attrs["shape"] = "ellipse"
        styles = ["filled"]
    elif node.kind == "merge":
        attrs.update(shape="circle" if len(node.label) <= 2 else "box", margin="0.02")
        attrs["fontsize"] = "9"
    if node.dashed or auxiliary:
        styles.append("dashed")
    attrs["style"] = ",".join(styles)
    dot.node(node.id, **attrs)


def _emit_cluster(dot, cluster: _Cluster, auxiliary: set[str]) -> None:
    with dot.subgraph(name=cluster.id) as sub:
        all_aux = _cluster_nodes(cluster) <= auxiliary
        styles = ["rounded"]
        if all_aux:
            styles.append("dashed")
        fill = _CLUSTER_FILL.get(cluster.kind)
        if fill:
            styles.append("filled")
        sub.attr(
            label=cluster.label,
            style=",".join(styles),
            color="#e0a060" if all_aux else "#8aa4c8",
            fillcolor=fill or "white",
            fontsize="10",
            penwidth="0.8",
        )
        for node in cluster.nodes:
            _emit_node(sub, node, node.id in auxiliary)
        for child in cluster.children:
            _emit_cluster(sub, child, auxiliary)
        if cluster.order:  # invisible edges within one rank keep branches b1, b2, ... in order
            with sub.subgraph() as rank:
                rank.attr(rank="same")
                for left, right in cluster.order:
                    rank.edge(left, right, style="invis")


def _cluster_nodes(cluster: _Cluster) -> set[str]:
    out = {n.id for n in cluster.nodes}
    for child in cluster.children:
        out |= _cluster_nodes(child)
    return out


def write_plot(graph, path: str | Path) -> Path:
    """Writes `graph` to `path`; the format is the extension (png, svg, pdf, dot/gv).

    Raises:
        GraphvizMissing: drawing needs `dot` and it is not installed.
        UsageError: an unknown extension.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(
            f"cannot tell the picture format from `{path.name}`: end the name with "
            f".png, .svg, .pdf or .dot"
        )
    if fmt in ("dot", "gv"):
        path.write_text(graph.source)
        return path
    require_dot()
    import graphviz

    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        require_dot()
        raise
    path.write_bytes(data)
    return path
