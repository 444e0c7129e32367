"""What differs between two specs, once resolved: `blockspec diff A B`.

Both specs are resolved (vars, defaults, `extends`, `repeat` and blocks applied), so the diff shows
what would be built differently, not how the files are written. Steps are matched by their full
names (the prefixes of their Keras layers) and each difference is one line:
`~ inception_4a_b2_conv_2.factorize: none -> stack3`, `+ stage3_unit7: bottleneck_residual ...`.
`SpecDiff.unified` gives the line diff of the two specs rendered by `views.render` instead.
Resolving never imports TensorFlow, so a diff answers at once; `stats_rows` (the `--params`
option) builds both models to compare parameters and multiply-adds.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from blockspec.builder import registry
from blockspec.builder.lazy import Deferred, map_deferred
from blockspec.builder.spec import ResolvedSpec, Step
from blockspec.views import spaces
from blockspec.views.render import render


@dataclass
class Change:
    """One difference: `kind` is `changed`, `removed` (only in A) or `added` (only in B)."""

    kind: str
    path: str
    a: Any = None
    b: Any = None

    def lines(self, width: int = 100) -> list[str]:
        """The change as one line, or two (path, then values) when one would not fit `width`."""
        mark = {"changed": "~", "removed": "-", "added": "+"}[self.kind]
        if self.kind == "changed":
            value = f"{_short(self.a)} -> {_short(self.b)}"
        else:
            value = _short(self.a if self.kind == "removed" else self.b)
        line = f"{mark} {self.path}: {value}"
        if len(line) <= width:
            return [line]
        return [_cut(f"{mark} {self.path}:", width), _cut(f"    {value}", width)]


@dataclass
class SpecDiff:
    """The differences between two resolved specs.

    Attributes:
        a, b: the labels of the two sides.
        changes: one entry per difference, in network order.
        spec_a, spec_b: the two resolved specs.
    """

    a: str
    b: str
    changes: list[Change] = field(default_factory=list)
    spec_a: ResolvedSpec | None = None
    spec_b: ResolvedSpec | None = None

    @property
    def same(self) -> bool:
        return not self.changes

    def unified(self, context: int = 3) -> list[str]:
        """The line diff of the two specs rendered as YAML (`---`, `+++`, `@@` headers included)."""
        return list(
            difflib.unified_diff(
                render(self.spec_a).splitlines(),
                render(self.spec_b).splitlines(),
                fromfile=f"{self.a} (resolved)",
                tofile=f"{self.b} (resolved)",
                n=context,
                lineterm="",
            )
        )

    def counts(self) -> dict[str, int]:
        out = {"changed": 0, "removed": 0, "added": 0}
        for change in self.changes:
            out[change.kind] += 1
        return out


def diff_specs(a: ResolvedSpec, b: ResolvedSpec, labels: tuple[str, str] | None = None) -> SpecDiff:
    """The differences between what `a` and `b` build.

    Args:
        a, b: resolved specs.
        labels: names for the two sides (default: the specs' names).

    Returns:
        The diff; `changes` is empty when both resolve to the same spec.

    Example:
        >>> d = diff_specs(resolve_spec("resnet50"), resolve_spec("resnet101"))   # doctest: +SKIP
        >>> print(d.changes[0].lines()[0])                                        # doctest: +SKIP
    """
    result = SpecDiff(*(labels or (a.name, b.name)), spec_a=a, spec_b=b)
    out = result.changes
    _compare(a.name, b.name, "name", out)
    _compare(a.description, b.description, "description", out)
    inputs_a, inputs_b = _inputs(a), _inputs(b)
    if list(inputs_a) == list(inputs_b) == ["input"] and inputs_a != inputs_b:
        out.append(Change("changed", "input", a=list(a.inputs[0].shape), b=list(b.inputs[0].shape)))
    else:
        _compare(inputs_a, inputs_b, "inputs", out)
    _compare_network(a.network, b.network, out)
    _compare(_outputs(a), _outputs(b), "outputs", out)
    _compare(a.train, b.train, "train", out)
    _compare(a.tune, b.tune, "tune", out)
    _compare_spaces(a, b, out)
    return result


def _compare_spaces(a: ResolvedSpec, b: ResolvedSpec, out: list[Change]) -> None:
    """Search spaces: the steps hold only the chosen values, so a space that replaces a constant
    with the same default would otherwise not show at all."""
    spaces_a, spaces_b = spaces.all_texts(a), spaces.all_texts(b)
    for key in [*spaces_a, *(k for k in spaces_b if k not in spaces_a)]:
        where = f"{key} (search space)"
        if key not in spaces_b:
            out.append(Change("removed", where, a=spaces_a[key]))
        elif key not in spaces_a:
            out.append(Change("added", where, b=spaces_b[key]))
        elif spaces_a[key] != spaces_b[key]:
            out.append(Change("changed", where, a=spaces_a[key], b=spaces_b[key]))


def _inputs(spec: ResolvedSpec) -> dict[str, Any]:
    return {i.name: {"shape": list(i.shape), "dtype": i.dtype} for i in spec.inputs}


def _outputs(spec: ResolvedSpec) -> dict[str, Any]:
    return {
        o.name: {
            "from": o.source,
            "activation": o.activation,
            "loss": o.loss,
            "loss_weight": o.loss_weight,
            "metrics": list(o.metrics),
            "train_only": o.train_only,
        }
        for o in spec.outputs
    }


def _walk(steps: list[Step], parent: str | None = None) -> Iterator[tuple[Step, str | None]]:
    for step in steps:
        yield step, parent
        for child in step.children:
            yield from _walk(child, step.name)


def _compare_network(a: list[Step], b: list[Step], out: list[Change]) -> None:
    """Steps are matched by full name as a sequence (insertions, deletions), then by content."""
    flat_a, flat_b = list(_walk(a)), list(_walk(b))
    names_a = [s.name for s, _ in flat_a]
    names_b = [s.name for s, _ in flat_b]
    gone: set[str] = set()  # a removed or added step's inner steps go with it
    matcher = difflib.SequenceMatcher(None, names_a, names_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for (sa, _), (sb, _) in zip(flat_a[i1:i2], flat_b[j1:j2], strict=True):
                _compare_step(sa, sb, out)
            continue
        for step, parent in flat_a[i1:i2]:
            if parent not in gone:
                out.append(Change("removed", step.name, a=step))
            gone.add(step.name)
        for step, parent in flat_b[j1:j2]:
            if parent not in gone:
                out.append(Change("added", step.name, b=step))
            gone.add(step.name)


def _compare_step(a: Step, b: Step, out: list[Change]) -> None:
    kind_a, kind_b = a.block or a.type, b.block or b.type
    if kind_a != kind_b:
        out.append(Change("changed", a.name, a=kind_a, b=kind_b))
        return
    _compare(a.args, b.args, a.name, out)
    if a.sources != b.sources:
        out.append(Change("changed", f"{a.name} from", a=a.sources, b=b.sources))


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _compare(a: Any, b: Any, path: str, out: list[Change]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            where = _join(path, key)
            if key not in b:
                out.append(Change("removed", where, a=a[key]))
            elif key not in a:
                out.append(Change("added", where, b=b[key]))
            else:
                _compare(a[key], b[key], where, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _compare(x, y, _join(path, index), out)
    elif isinstance(a, Deferred) or isinstance(b, Deferred):  # an `in_*` expression: as written
        if repr(a) != repr(b):
            out.append(Change("changed", path, a=a, b=b))
    elif a != b or type(a) is not type(b):
        out.append(Change("changed", path, a=a, b=b))


def _brief(step: Step) -> str:
    """`conv {filters: 64, kernel: 1}`: the type and the arguments that differ from defaults."""
    entry = registry.get(step.type)
    params = entry.params if entry is not None and step.block is None else {}
    args = {
        k: v
        for k, v in step.args.items()
        if k not in params or params[k].required or params[k].default != v
    }
    kind = f"{step.block} (block)" if step.block else step.type
    return f"{kind} {_flow(args)}" if args else kind


def _flow(value: Any) -> str:
    value = map_deferred(value, repr)  # an `in_*` expression left for the build: as written
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, Step):
        text = _brief(value)
    elif isinstance(value, (dict, list)):
        text = _flow(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, Deferred):
        text = repr(value)
    else:
        text = json.dumps(value)
    return _cut(text, limit)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def stats_rows(built_a, built_b) -> list[tuple[str, str, str, str]]:
    """(quantity, A, B, B - A) rows for parameters, multiply-adds, depth and layers."""
    from blockspec.views.summary import DEPTH_LABEL, human, stats

    sa, sb = stats(built_a), stats(built_b)

    def delta(x: int, y: int, fmt) -> str:
        d = y - x
        sign = "+" if d > 0 else "-" if d < 0 else ""
        pct = f" ({d / x:+.0%})" if x and d else ""
        return f"{sign}{fmt(abs(d))}{pct}" if d else "0"

    def count(n: int) -> str:
        return f"{n:,}"

    return [
        ("parameters", count(sa.params), count(sb.params), delta(sa.params, sb.params, count)),
        ("trainable", count(sa.trainable), count(sb.trainable), delta(sa.trainable, sb.trainable, count)),
        ("multiply-adds", human(sa.madds), human(sb.madds), delta(sa.madds, sb.madds, human)),
        (DEPTH_LABEL, str(sa.depth), str(sb.depth), delta(sa.depth, sb.depth, str)),
        ("Keras layers", str(sa.layers), str(sb.layers), delta(sa.layers, sb.layers, str)),
    ]  # fmt: skip
