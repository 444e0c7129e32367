"""The step keys beside the type key: `name`, `from`, `repeat`, `first`, `last`, `when`, `trainable`.

Language 1.1 lets `name` and `from` interpolate `${...}` parts (per repetition), `when` drop a
step, `repeat: 0` give no step, `last` override the last repetition and `trainable: false`
freeze a step. A `from` that names a step passed into a user block (`from: $skip`) is looked up
where the block is used.
"""

from __future__ import annotations

import re
from typing import Any

from blockspec.builder import registry
from blockspec.builder.errors import did_you_mean, shorten
from blockspec.builder.expr import SHAPE_NAMES, Unavailable, reference
from blockspec.builder.lazy import Deferred
from blockspec.builder.resolve.common import INVALID, NAME_RULE, Scope, is_name
from blockspec.builder.shape_rules import axis_problem, merged_shape, output_shape, shape_env
from blockspec.builder.spec import Step

_PART = re.compile(r"\$\{([^{}]*)\}")


def templated(raw: Any) -> bool:
    """`raw` (a `name` or `from`) holds a `${...}` part: it is interpolated per repetition."""
    if isinstance(raw, list):
        return any(templated(item) for item in raw)
    return isinstance(raw, str) and "${" in raw


class StepKeysPart:
    """The resolver's rules for step keys (mixed into `Resolver`)."""

    # ------------------------------------------------------------------ shapes (1.1 `in_*`)
    def input_shapes(self, sources: list[str] | None) -> list:
        """The shapes a step reads: its `from` steps', else the chain's previous output."""
        if sources:
            return [self.shapes.get(name) for name in sources]
        return [self.flow]

    def shape_names(self, sources: list[str] | None) -> dict[str, Any]:
        """`in_channels` & co. for a step reading `sources` (the first, for several); refused
        values (no second message) after a step that was refused."""
        if not sources and self.flow is None and getattr(self, "flow_refused", False):
            return dict.fromkeys(SHAPE_NAMES, INVALID)
        return shape_env(self.input_shapes(sources)[0], Unavailable)

    def output_of(self, step: Step, entry, in_shapes: list) -> Any:
        """A resolved step's output shape, in pure Python; None where it cannot be known."""
        first = in_shapes[0]
        if step.block is not None or (entry is not None and entry.kind == "combinator"):
            ends = [self.shapes.get(c[-1].name) if c else first for c in step.children]
            if step.block is not None or step.type == "sequence":
                return ends[0] if ends else first
            if step.type == "parallel":
                return merged_shape(step.args.get("merge", "concat"), ends)
            if step.type == "residual":  # `auto` projects the shortcut to the body's shape
                shortcut = {"identity": [first], "steps": ends[1:]}.get(step.args.get("shortcut"))
                return merged_shape(step.args.get("merge", "add"), [ends[0], *(shortcut or [])])
            return None
        entry = entry or registry.get(step.type)
        args = {k: (None if isinstance(v, Deferred) else v) for k, v in step.args.items()}
        rule = entry.extra.get("shape") if entry is not None else None
        return output_shape(step.type, args, in_shapes, rule)

    def check_axis(self, step: Step, in_shapes: list, path: tuple) -> None:
        """An `axis` argument outside its input's axes, refused where it is written."""
        if "axis" not in step.args or step.block is not None:
            return
        problem = axis_problem(step.args["axis"], in_shapes[0])
        if problem:
            written = self.raw_at(path)
            self.error(
                (*path, "axis") if isinstance(written, dict) and "axis" in written else path,
                problem,
            )

    def waits(self, value: Any, path: tuple, key: str) -> bool:
        """True (after a located refusal) when step key `key` reads a shape not known yet."""
        if not isinstance(value, Deferred):
            return False
        self.error(
            path,
            f"`{key}` reads the shape of the step's input, which `validate` cannot infer here "
            f"(a step before it has no shape rule); only a step's arguments may wait for the "
            f"model to be built. Received: {key}=${{{value.text}}}",
        )
        return True

    def interpolate(self, raw: Any, path: tuple, env: dict, hp: str) -> Any:
        """A `name` or `from` string with its `$name` or `${...}` parts evaluated; INVALID if not."""
        if isinstance(raw, list):
            items = [self.interpolate(item, path, env, hp) for item in raw]
            return INVALID if INVALID in items else items
        if not isinstance(raw, str) or "$" not in raw:
            return raw
        if reference(raw) is not None:
            value = self.value(raw, path, env, hp)
            return value if value is INVALID else _text(value, raw, path, self)
        out, end = [], 0
        for match in _PART.finditer(raw):
            value = self.value(match.group(0), path, env, hp)
            if value is INVALID:
                return INVALID
            text = _text(value, raw, path, self)
            if text is INVALID:
                return INVALID
            out += [raw[end : match.start()], text]
            end = match.end()
        return "".join([*out, raw[end:]])

    def repeat_count(self, raw: dict, path: tuple, env: dict, hp: str) -> int | None:
        """`repeat` (1 without it; 0 allowed: no step), or None after a problem."""
        if "repeat" not in raw:
            return 1
        count = self.value(raw["repeat"], (*path, "repeat"), env, f"{hp}/repeat")
        if count is INVALID or self.waits(count, (*path, "repeat"), "repeat"):
            return None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            self.error(
                (*path, "repeat"),
                f"`repeat` must be a non-negative integer. Received: repeat={count!r}",
            )
            return None
        if count > self.limits.max_repeat:
            self.error(
                (*path, "repeat"),
                f"`repeat` above the limit of {self.limits.max_repeat}: refused. Received: repeat={count}",
            )
            return None
        return count

    def override(self, raw: dict, path: tuple, key: str) -> dict | None:
        """`first` or `last`: a mapping of arguments for one repetition, or None."""
        value = raw.get(key)
        if value is None:
            return None
        if "repeat" not in raw:
            self.error((*path, key), f"`{key}` applies only with `repeat`")
            return None
        if not isinstance(value, dict):
            self.error(
                (*path, key),
                f"`{key}` is a mapping of arguments for the {key} repetition. Received: {shorten(value)}",
            )
            return None
        return value

    def when(self, raw: dict, path: tuple, env: dict, hp: str) -> bool | None:
        """`when` for one repetition: True (the step exists), False, or None after a problem."""
        if "when" not in raw:
            return True
        value = self.value(raw["when"], (*path, "when"), env, f"{hp}/when")
        if value is INVALID or self.waits(value, (*path, "when"), "when"):
            return None
        if not isinstance(value, bool):
            self.error(
                (*path, "when"),
                f"`when` must be true or false (an expression such as `${{t != 1}}`). "
                f"Received: when={shorten(value)}",
            )
            return None
        return value

    def trainable(self, raw: dict, path: tuple, env: dict, hp: str) -> bool | None:
        if "trainable" not in raw:
            return True
        value = self.value(raw["trainable"], (*path, "trainable"), env, f"{hp}/trainable")
        if value is INVALID or self.waits(value, (*path, "trainable"), "trainable"):
            return None
        if not isinstance(value, bool):
            self.error(
                (*path, "trainable"),
                f"`trainable` must be true or false. Received: trainable={shorten(value)}",
            )
            return None
        return value

    def step_name(self, raw: Any, path: tuple, scope: Scope, env: dict, hp: str) -> str | None:
        """A step's local name, interpolated and checked (valid, unique in its scope)."""
        local = self.interpolate(raw, (*path, "name"), env, hp)
        if local is INVALID:
            return None
        if not is_name(local):
            self.error(
                (*path, "name"), f"a step name is {NAME_RULE}. Received: name={shorten(local)}"
            )
            return None
        if local in scope.names:
            self.error((*path, "name"), f"duplicate name `{local}` in this scope")
            return None
        return local

    def resolve_from(
        self, raw: Any, path: tuple, scope: Scope, entry, env: dict | None = None, hp: str = ""
    ) -> list[str] | None:
        if raw is None:
            return None
        names = raw if isinstance(raw, list) else [raw]
        if not names or not all(isinstance(n, str) for n in names):
            self.error(
                path, f"`from` takes a step name or a list of names. Received: {shorten(raw)}"
            )
            return None
        out = []
        for written in names:
            name = self.interpolate(written, path, env or {}, hp) if env is not None else written
            if name is INVALID:
                continue
            found = scope.lookup(name)
            if found is None and "$" in written:  # a name passed into a block: its caller's
                found = next(
                    (s.lookup(name) for s in reversed(self.caller_scopes) if s.lookup(name)), None
                )
            if found is None and scope.is_broken(name):
                continue  # that step's own problem is already reported
            if found is None:
                self.missing_step(path, name, scope, "from", f"from={name}")
                continue
            out.append(found)
        multi = entry is not None and entry.multi_input
        if len(names) > 1 and entry is not None and not multi and entry.kind != "combinator":
            self.error(
                path,
                f"`{entry.name}` reads one tensor; only merging steps (add, concat, ...) take several. Received: from={names}",
            )
        return out or None

    def missing_step(self, path: tuple, name: str, scope: Scope, what: str, received: str):
        """A `from` (or output) names no step: say so, and where it was dropped if it was."""
        dropped = scope.absent_at(name)
        if dropped is not None:
            self.error(
                path,
                f"`{what}` names step `{name}`, which does not exist here: its `when` is false "
                f"or its `repeat` is 0 (at {self.doc.mark(dropped)}). Received: {received}",
            )
            return
        self.error(
            path,
            f"`{what}` names no earlier step or input.{did_you_mean(name, scope.visible())} Received: {received}",
        )


def _text(value: Any, raw: str, path: tuple, resolver) -> Any:
    """A value interpolated into a name: a string or a number, nothing else."""
    if isinstance(value, Deferred):
        resolver.waits(value, path, next((p for p in reversed(path) if isinstance(p, str)), "name"))
        return INVALID
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        resolver.error(
            path,
            f"a name interpolates strings and integers only. Received: {raw} = {shorten(value)}",
        )
        return INVALID
    return str(value)
