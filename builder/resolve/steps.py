"""Network steps: names, `from`, `repeat`/`first`, arguments, step choices and combinators."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from blockspec.builder import registry
from blockspec.builder.errors import did_you_mean, shorten
from blockspec.builder.expr import reference
from blockspec.builder.lazy import contains_deferred
from blockspec.builder.load import format_path
from blockspec.builder.resolve.common import (
    _COLLAPSIBLE,
    INVALID,
    STEP_KEYS,
    Abort,
    Scope,
    _labels,
    contains_invalid,
    type_key,
)
from blockspec.builder.resolve.step_keys import templated
from blockspec.builder.spaces import check_space, is_space
from blockspec.builder.spec import Step


class StepsPart:
    """The resolver's step rules (mixed into `Resolver`)."""

    # ------------------------------------------------------------------ steps
    def resolve_steps(
        self,
        raw: Any,
        path: tuple,
        scope: Scope,
        env: dict,
        first_sources: list[str] | None = None,
        in_shape: Any = None,
    ) -> list[Step]:
        self.flow = in_shape  # what the chain's first step reads (1.1 `in_*`)
        self.flow_refused = False  # True after a refused step: `in_*` after it is not asked for
        if not isinstance(raw, list):
            self.error(path, f"expected a list of steps. Received: {shorten(raw)}")
            return []
        kinds = [type_key(item) for item in raw]
        unnamed = {}
        for item, kind in zip(raw, kinds, strict=True):
            if not (isinstance(item, dict) and "name" in item):
                unnamed[kind] = unnamed.get(kind, 0) + 1
        counter: dict[str, int] = {}
        out: list[Step] = []
        for index, (item, kind) in enumerate(zip(raw, kinds, strict=True)):
            if isinstance(item, dict) and "name" in item:
                local = item["name"]
            else:
                counter[kind] = counter.get(kind, 0) + 1
                local = f"{kind}_{counter[kind]}" if unnamed[kind] > 1 else kind
            # A lone combinator in a scope takes the scope's name: `inception_4a_b2_conv`, not
            # `inception_4a_parallel_b2_conv`.
            collapse = len(raw) == 1 and scope.prefix and kind in _COLLAPSIBLE and local == kind
            before = len(self.problems)
            steps = self.resolve_step(item, (*path, index), scope, env, local, collapse)
            if len(self.problems) > before:  # refused (and said why): its output is not asked for
                self.flow, self.flow_refused = None, True
            if not steps and isinstance(local, str) and local not in scope.absent:
                scope.broken.add(local)
            if not out and first_sources and steps and steps[0].sources is None:
                steps[0] = dataclasses.replace(steps[0], sources=list(first_sources))
            out += steps
        return out

    def resolve_step(
        self,
        raw: Any,
        path: tuple,
        scope: Scope,
        env: dict,
        local: Any,
        collapse: bool = False,
        hp_name: str | None = None,
    ) -> list[Step]:
        if is_space(raw) and raw.get("tune") == "choice":
            return self.step_choice(raw, path, scope, env, local)
        found = self.step_type(raw, path)
        if found is None:
            return []
        type_name, entry = found
        per_rep = templated(local)
        if not per_rep:
            local = self.step_name(local, path, scope, env, str(local))
            if local is None:
                return []
        hp = hp_name or (scope.hp if collapse else (f"{scope.hp}/{local}" if scope.hp else local))
        sources = None
        if not templated(raw.get("from")):
            sources = self.resolve_from(raw.get("from"), (*path, "from"), scope, entry, env, hp)
        shaped = {**env, **self.shape_names(sources)}
        count = self.repeat_count(raw, path, shaped, hp)
        trainable = self.trainable(raw, path, shaped, hp)
        overrides = {k: self.override(raw, path, k) for k in ("first", "last")}
        if count is None or trainable is None:
            return []
        steps: list[Step] = []
        dropped = count == 0
        for rep in range(count):
            rep_env = {**env, "i": rep} if "repeat" in raw else env
            if templated(raw.get("from")):
                rep_sources = self.resolve_from(
                    raw["from"], (*path, "from"), scope, entry, rep_env, hp
                )
            else:
                rep_sources = None if steps else sources
            in_shapes = self.input_shapes(rep_sources)  # each repetition reads its own (1.1)
            rep_env = {**rep_env, **self.shape_names(rep_sources)}
            if per_rep:
                name = self.step_name(local, path, scope, rep_env, hp)
                if name is None:
                    continue
                full, rep_hp = scope.full(name), f"{scope.hp}/{name}" if scope.hp else name
            else:
                name = f"{local}_{rep + 1}" if count > 1 else local
                full = scope.prefix if collapse else scope.full(local)
                full, rep_hp = (f"{full}_{rep + 1}" if count > 1 else full), hp
            keep = self.when(raw, path, rep_env, rep_hp)
            if not keep:
                if keep is False:
                    scope.absent.setdefault(name, path)
                    dropped = True
                continue
            self.count_step(path)
            args_raw, origins = self.step_arguments(
                raw, type_name, entry, path, overrides, rep, count
            )
            if args_raw is None:
                return steps
            self.flow = in_shapes[0]
            step = self.build_step(
                type_name, entry, args_raw, (*path, type_name), scope, rep_env, full, rep_hp,
                origins,
            )  # fmt: skip
            if step is None:
                return steps
            step = dataclasses.replace(
                step,
                sources=rep_sources,
                trainable=trainable,
                path=format_path((*path, type_name)),
                mark=self.doc.mark((*path, type_name)),
            )
            self.check_axis(step, in_shapes, (*path, type_name))
            self.flow = self.shapes[full] = self.output_of(step, entry, in_shapes)
            self.flow_refused = False
            steps.append(step)
            scope.names[name] = full
        if steps and not per_rep:
            scope.names[local] = steps[-1].name
        elif not steps and dropped and not per_rep:
            scope.absent.setdefault(local, path)
        return steps

    def step_type(self, raw: Any, path: tuple) -> tuple[str, Any] | None:
        """A step's type key and its registry entry (None for a user block); None if refused."""
        if not isinstance(raw, dict):
            self.error(
                path,
                f"a step is a mapping with one type key (e.g. `conv: {{filters: 64, kernel: 3}}`). Received: {shorten(raw)}",
            )
            return None
        type_keys = [k for k in raw if k not in STEP_KEYS]
        if len(type_keys) != 1:
            if not type_keys:
                self.error(
                    path,
                    f"a step needs a type key (a layer, combinator or block). Received keys: {', '.join(map(str, raw))}",
                )
            else:
                self.error(
                    path,
                    f"a step has exactly one type key. Received: {', '.join(map(str, type_keys))}",
                )
            return None
        type_name = type_keys[0]
        entry = None if type_name in self.blocks else registry.get(str(type_name))
        if entry is None and type_name in self.broken_blocks:
            return None
        if entry is None and type_name not in self.blocks:
            self.error(
                (*path, type_name),
                registry.refused(type_name)
                or f"unknown step type `{type_name}`.{registry.suggest(type_name, self.blocks)}",
            )
            return None
        return type_name, entry

    def step_arguments(self, raw, type_name, entry, path, overrides, rep, count):
        """One repetition's keyword arguments, `first`/`last` applied, and where each was written."""
        args_raw = self.keywords(type_name, entry, raw[type_name], (*path, type_name))
        if args_raw is None:
            return None, {}
        origins = {}
        for key, applies in (("first", rep == 0), ("last", rep == count - 1)):
            if applies and overrides[key]:
                extra = self.keywords(type_name, entry, overrides[key], (*path, key)) or {}
                args_raw = {**args_raw, **extra}
                origins.update({k: (*path, key, k) for k in extra})
        return args_raw, origins

    def step_choice(
        self, raw: dict, path: tuple, scope: Scope, env: dict, local: str
    ) -> list[Step]:
        # `name` names the step (and so its hyperparameter); the rest is the search space.
        space = {k: v for k, v in raw.items() if k != "name"}
        problems = check_space(space)
        for key, message in problems:
            self.error((*path, key), f"invalid search space: {message}")
        if "name" in raw and not isinstance(raw["name"], str):
            self.error(
                (*path, "name"), f"`name` must be a string. Received: {shorten(raw['name'])}"
            )
            return []
        if problems:
            return []
        values = raw["values"]
        named = [i for i, v in enumerate(values) if isinstance(v, dict) and "name" in v]
        for index in named if "name" in raw else []:
            self.error(
                (*path, "values", index, "name"),
                "the choice is named, so its steps take that name: remove this `name`",
            )
        if named and "name" in raw:
            return []
        nested = [index for index, value in enumerate(values) if is_space(value)]
        for index in nested:  # both choices would share one hyperparameter name
            self.error(
                (*path, "values", index),
                "a step `choice` cannot hold another `choice`: list every step in one `values`",
            )
        if nested:
            return []
        labels = _labels(values)
        default = {"default": labels[values.index(raw["default"])]} if "default" in raw else {}
        hp = f"{scope.hp}/{local}" if scope.hp else local
        label = self.chooser.choose(
            hp, {"tune": "choice", "values": labels, **default}, format_path(path)
        )
        index = labels.index(label)
        with self.chooser.conditional(hp, label):
            return self.resolve_step(
                values[index], (*path, "values", index), scope, env, local, hp_name=f"{hp}/{label}"
            )

    def count_step(self, path: tuple) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            self.error(
                path,
                f"the network expands to more than {self.limits.max_steps} steps (repeat and blocks included): refused (limit)",
            )
            raise Abort

    def keywords(self, type_name: str, entry, raw: Any, path: tuple) -> dict | None:
        """Turns mapping, positional list or scalar arguments into keywords."""
        if raw is None:
            return {}
        if type_name in self.blocks:
            order, primary = list(self.blocks[type_name].get("args") or {}), None
            if len(order) == 1 and not isinstance(raw, (dict, list)):
                return {order[0]: raw}  # a one-argument block takes it as a scalar (1.1)
        else:
            order, primary = list(entry.params), entry.primary
        annotation = entry.params[primary].annotation if primary else None
        if isinstance(raw, dict):
            takes_mapping = annotation is dict and not any(k in entry.params for k in raw)
            if primary and (is_space(raw) or takes_mapping):
                return {primary: raw}
            return dict(raw)
        if isinstance(raw, list):
            if primary and (annotation in (list, Any) or typing.get_origin(annotation) is list):
                return {primary: raw}
            if len(raw) > len(order):
                self.error(
                    path,
                    f"`{type_name}` takes at most {len(order)} positional arguments ({', '.join(order)}). Received: {len(raw)}",
                )
                return None
            return dict(zip(order, raw, strict=False))
        if primary:
            return {primary: raw}
        self.error(
            path,
            f"`{type_name}` takes no scalar argument; write its arguments as a mapping. Received: {shorten(raw)}",
        )
        return None

    def build_step(
        self, type_name, entry, args_raw, path, scope, env, name, hp, origins=None
    ) -> Step | None:
        """One resolved step; `origins` maps an argument to where `first`/`last` wrote it."""
        origins = origins or {}
        if type_name in self.blocks:
            return self.user_block(type_name, args_raw, path, env, name, hp, scope, origins)
        if entry.kind == "combinator":
            return self.combinator(entry, args_raw, path, scope, env, name, hp, origins)
        args = self.arguments(entry, args_raw, path, env, hp, origins)
        return Step(type=type_name, name=name, args=args)

    def arguments(
        self, entry, given: dict, path: tuple, env: dict, hp: str, origins: dict | None = None
    ) -> dict:
        """Checks and evaluates a layer's or Python block's arguments, defaults applied."""
        origins = origins or {}

        def at(key):
            return origins.get(key, (*path, key)) if key in given else path

        args = {k: p.default for k, p in entry.params.items() if not p.required}
        defaults, clashes = entry.canonical(self.defaults.get(entry.name, {}))
        args.update(defaults)
        for key, message in clashes:
            self.error(("defaults", entry.name, key), message)
        written = {entry.aliases[k]: k for k in given if k in entry.aliases}  # as `kernel_size`
        given, clashes = entry.canonical(given)
        for key, message in clashes:
            self.error((*path, key), message)
        unknown = []
        for key, raw in given.items():
            if not entry.accepts(key):
                self.error(at(key), self.unknown_arg(entry.name, key))
                unknown.append(str(key))
                continue
            args[key] = self.value(raw, at(key), env, f"{hp}/{key}")
            literal = _template_text(args[key])
            if literal is not None:
                self.warn(
                    at(key),
                    f"`{key}` holds a `${{...}}` part inside a longer string, which stays text: "
                    "only `name` and `from` interpolate (a whole value written as one `${...}` "
                    f"is computed). Received: {key}={shorten(literal)}",
                )
        for key, param in entry.params.items():
            if key not in args:
                # `kernal: 3` already says "did you mean `kernel`?"; don't report `kernel` missing too.
                if param.required and not did_you_mean(key, unknown):
                    self.error(path, f"missing required argument `{key}` for `{entry.name}`")
        # Types, each parameter's declared rules (`filters` > 0, odd kernel for stack3), no files.
        known = {
            k: v
            for k, v in args.items()
            if v is not INVALID and not contains_invalid(v) and not contains_deferred(v)
        }
        typed = {k for k, p in entry.params.items() if k in known and known[k] is not p.default}
        for key, message in registry.check_args(entry, known, typed):
            written_as = written.get(key, key)
            self.error(
                origins.get(written_as, (*path, written_as)) if key in given else path, message
            )
        for key, value in args.items():
            self.screen_object(at(key), value, key=key)
        return args

    def combinator(
        self, entry, given: dict, path, scope: Scope, env: dict, name: str, hp: str, origins=None
    ) -> Step | None:
        kind = entry.name
        origins = origins or {}
        for key in given:
            if key not in entry.params:
                self.error(origins.get(key, (*path, key)), self.unknown_arg(kind, key))
        settings = {}
        given = dict(given)
        for key, param in entry.params.items():
            at = origins.get(key, (*path, key))
            if param.annotation in (list, dict) or key == "shortcut":
                # (1.1) `body: $body`, `shortcut: $sc`: steps (or a mode) passed in a value
                if isinstance(given.get(key), str) and reference(given[key]) is not None:
                    given[key] = self.value(given[key], at, env, f"{hp}/{key}")
                    if given[key] is INVALID:
                        return None
                continue
            if key not in given and param.required:
                continue  # the type's resolve hook says it is missing
            value = self.value(given.get(key, param.default), at, env, f"{hp}/{key}")
            if value is not INVALID and not contains_deferred(value):
                problem = registry.check_value(key, value, param.annotation)
                if problem:
                    self.error(at, f"`{key}` {problem}. Received: {key}={shorten(value)}")
            settings[key] = value
        hook = entry.resolve or entry.extra.get("resolve")
        nest = Nest(self, given, settings, path, scope, env, name, hp)
        children = hook(nest) if hook else []
        if children is None:
            return None
        return Step(type=kind, name=name, args=settings, children=children)

    def raw_at(self, path: tuple) -> Any:
        node: Any = self.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        return node

    def auto_shortcut(self, name: str) -> list[Step]:
        """The projection a residual uses when shapes differ: a 1x1 `conv` and a `batch_norm`, defaults applied."""
        steps = []
        for type_name, suffix, forced in (
            ("conv", "conv", {"kernel": 1}),
            ("batch_norm", "bn", {}),
        ):
            entry = registry.get(type_name)
            args = {k: p.default for k, p in entry.params.items() if not p.required}
            args.update(self.defaults.get(type_name, {}))
            args.update(forced)
            if type_name == "conv":
                args.update(filters=1, strides=1, factorize="none")
            steps.append(Step(type=type_name, name=f"{name}_shortcut_{suffix}", args=args))
        return steps


class Nest:
    """What a combinator's resolve hook sees: its arguments, and how to resolve the steps it holds.

    A combinator (`blocks/combinators.py`) registers `extra["resolve"]`, a function of a `Nest`
    returning the step's children (one list of steps per nested chain), or None when it refused
    the step (after `nest.error`). Its build hook, beside it, wires those children together.
    """

    def __init__(self, resolver, given, settings, path, scope, env, name, hp):
        self.resolver = resolver
        self.given = given  # the arguments as written (keywords)
        self.settings = settings  # the non-step arguments, evaluated; a hook may set more
        self.path = path
        self.scope = scope
        self.env = env
        self.name = name
        self.hp = hp
        self.in_shape = resolver.flow  # the step's input shape, for `in_*` inside (1.1)

    def error(self, path: tuple, message: str) -> None:
        self.resolver.error(path, message)

    def at(self, key: str) -> tuple:
        """The spec path of argument `key`: the step's own path when it was written positionally."""
        written = self.resolver.raw_at(self.path)
        return (*self.path, key) if isinstance(written, dict) and key in written else self.path

    def steps(self, raw: Any, path: tuple, suffix: str = "") -> list[Step]:
        """Resolves a nested step list in its own naming scope (`{name}{suffix}_...`)."""
        hp = f"{self.hp}/{suffix.lstrip('_')}" if suffix else self.hp
        scope = Scope(prefix=f"{self.name}{suffix}", hp=hp, parent=self.scope)
        return self.resolver.resolve_steps(raw, path, scope, self.env, in_shape=self.in_shape)

    def step(self, raw: Any, path: tuple) -> list[Step]:
        """Resolves one nested step, named by its type inside this step's scope."""
        scope = Scope(prefix=self.name, hp=self.hp, parent=self.scope)
        self.resolver.flow = self.in_shape
        return self.resolver.resolve_step(raw, path, scope, self.env, type_key(raw))

    def auto_shortcut(self) -> list[Step]:
        return self.resolver.auto_shortcut(self.name)


def _template_text(value: Any) -> str | None:
    """The first string inside `value` that still holds a `${...}` part, else None."""
    if isinstance(value, str):
        return value if "${" in value else None
    if isinstance(value, (list, tuple)):
        return next((t for t in map(_template_text, value) if t is not None), None)
    if isinstance(value, dict):
        return _template_text(list(value.values()))
    return None
