"""Validate and resolve: a loaded document -> a `ResolvedSpec`, or one `SpecError` listing everything.

One pass over the whole spec: top-level keys, vars and expressions, inputs, defaults, user blocks,
every step (type, arguments, names, `from`, `repeat`/`first`), outputs, `train` and `tune`. Errors
are collected, not raised one by one, so a user sees all of them at once.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Any

from blockspec.builder import registry
from blockspec.builder.errors import Problem, SpecError, did_you_mean
from blockspec.builder.expr import Expansion, ExpressionError, evaluate, reference
from blockspec.builder.load import DEFAULT_LIMITS, Document, Limits, format_path, load_document
from blockspec.builder.spaces import Chooser, DefaultChooser, check_space, is_space
from blockspec.builder.spec import InputSpec, OutputSpec, ResolvedSpec, Step

SPEC_VERSION = 1
TOP_KEYS = (
    "spec", "name", "description", "extends", "imports", "vars", "input", "inputs",
    "defaults", "blocks", "network", "outputs", "train", "tune",
)  # fmt: skip
STEP_KEYS = ("name", "from", "repeat", "first")
OUTPUT_KEYS = ("from", "activation", "loss", "loss_weight", "metrics", "train_only")
BLOCK_KEYS = ("args", "body", "description")
TUNE_KEYS = (
    "tuner", "objective", "max_trials", "max_epochs", "executions_per_trial", "factor",
    "hyperband_iterations", "seed",
)  # fmt: skip
TUNERS = ("random", "bayesian", "hyperband", "grid")
RESERVED_NAMES = {"i"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

INVALID: Any = type("Invalid", (), {"__repr__": lambda self: "<invalid>"})()


def resolve_spec(
    spec: Any,
    overrides: dict[str, Any] | None = None,
    *,
    chooser: Chooser | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ResolvedSpec:
    """Loads, validates and resolves a spec.

    Args:
        spec: a path, a zoo name, a parsed mapping, a `Document`, or a `ResolvedSpec` (returned as is).
        overrides: dotted keys to values, applied before validation (`{"vars.classes": 10}`).
        chooser: picks search-space values; defaults to each space's `default`.
        limits: bounds on untrusted input.

    Returns:
        The resolved spec.

    Raises:
        SpecError: listing every problem found.

    Example:
        >>> spec = resolve_spec("googlenet", {"vars.classes": 10})   # doctest: +SKIP
    """
    if isinstance(spec, ResolvedSpec):
        return spec
    doc = spec if isinstance(spec, Document) else load_document(spec, overrides, limits)
    if isinstance(spec, Document) and overrides:
        from blockspec.builder.load import apply_overrides

        doc = apply_overrides(doc, overrides)
    return _Resolver(doc, chooser or DefaultChooser(), limits).run()


@dataclass
class _Scope:
    """Names visible to `from`: this scope's steps, then (lexically) the enclosing scope's."""

    prefix: str
    hp: str
    names: dict[str, str] = field(default_factory=dict)
    parent: _Scope | None = None
    broken: set[str] = field(default_factory=set)  # steps refused here: no cascade on their use

    def is_broken(self, name: Any) -> bool:
        if not isinstance(name, str):
            return False
        scope = self
        while scope is not None:
            if name in scope.broken:
                return True
            scope = scope.parent
        return False

    def lookup(self, name: str) -> str | None:
        scope = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def visible(self) -> list[str]:
        out, scope = [], self
        while scope is not None:
            out += list(scope.names)
            scope = scope.parent
        return out

    def full(self, local: str) -> str:
        return f"{self.prefix}_{local}" if self.prefix else local


class _Abort(Exception):
    """A limit was hit: stop resolving, report what was found so far."""


class _Resolver:
    def __init__(self, doc: Document, chooser: Chooser, limits: Limits):
        self.doc = doc
        self.data = doc.data if isinstance(doc.data, dict) else {}
        self.chooser = chooser
        self.limits = limits
        self.problems: list[Problem] = []
        self._seen: set[tuple] = set()
        self.steps = 0
        self.block_stack: list[str] = []
        self.context: list[str] = []
        self.vars: dict[str, Any] = {}
        self.vars_broken = False  # `vars` was refused: unknown `$names` are its echo, not news
        self.defaults: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, dict] = {}
        self.broken_blocks: set[str] = set()  # refused definitions: their uses add nothing new
        self.sizes = Expansion(limits.max_nodes, limits.max_depth)  # values as built, refs included

    # ------------------------------------------------------------------ reporting
    def error(self, path: tuple, message: str) -> None:
        mark = self.doc.mark(path)
        where = format_path(path)
        if self.context:
            message = f"{message} (in {self.context[-1]})"
        key = (str(mark), where, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.problems.append(Problem(message, where, mark))

    # ------------------------------------------------------------------ entry
    def run(self) -> ResolvedSpec:
        if not isinstance(self.doc.data, dict):
            raise SpecError(
                Problem(
                    "a spec must be a mapping of keys (spec, name, network, ...)",
                    "",
                    self.doc.mark(()),
                )
            )
        try:
            spec = self._run()
        except _Abort:
            spec = None
        if self.problems:
            raise SpecError(self.problems)
        assert spec is not None
        return spec

    def _run(self) -> ResolvedSpec:
        data = self.data
        for key in data:
            if key not in TOP_KEYS:
                self.error((key,), f"unknown top-level key `{key}`.{did_you_mean(key, TOP_KEYS)}")
        version = data.get("spec")
        if "spec" not in data:
            self.error((), "missing required key `spec` (the language version: write `spec: 1`)")
        elif type(version) is not int or version != SPEC_VERSION:  # `true` and `1.0` equal 1
            self.error(
                ("spec",),
                f"unsupported spec version; this blockspec reads version {SPEC_VERSION}. Received: spec={version!r}",
            )
        name = data.get("name", _stem(self.doc.file))
        if not isinstance(name, str) or not name:
            self.error(("name",), f"`name` must be a non-empty string. Received: name={name!r}")
            name = "model"
        description = data.get("description", "")
        if not isinstance(description, str):
            self.error(
                ("description",), f"`description` must be a string. Received: {description!r}"
            )
            description = ""
        self.resolve_vars(data.get("vars"))
        inputs = self.resolve_inputs()
        self.collect_blocks(data.get("blocks"))
        self.resolve_defaults(data.get("defaults"))
        top = _Scope(prefix="", hp="")
        for spec_input in inputs:
            top.names[spec_input.name] = spec_input.name
        network = data.get("network")
        if network is None:
            self.error((), "missing required key `network` (the list of steps)")
            network_steps: list[Step] = []
        elif not isinstance(network, list) or not network:
            self.error(
                ("network",),
                f"`network` must be a non-empty list of steps. Received: {_short(network)}",
            )
            network_steps = []
        else:
            network_steps = self.resolve_steps(
                network,
                ("network",),
                top,
                self.vars,
                first_sources=[inputs[0].name] if inputs else None,
            )
        outputs = self.resolve_outputs(data.get("outputs"), top, network_steps)
        train = self.resolve_train(data.get("train"))
        tune = self.resolve_tune(data.get("tune"))
        return ResolvedSpec(
            name=name,
            description=description,
            inputs=inputs,
            network=network_steps,
            outputs=outputs,
            defaults=self.defaults,
            train=train,
            tune=tune,
            hyperparameters=list(self.chooser.chosen.values()),
            document=self.doc.data,
            file=self.doc.file,
            limits=self.limits,
        )

    # ------------------------------------------------------------------ values
    def value(self, raw: Any, path: tuple, env: dict, hp: str) -> Any:
        """Evaluates `$name`, `${expr}` and search spaces anywhere inside `raw`, bounded in size."""
        out = self._value(raw, path, env, hp)
        if not isinstance(out, (list, dict)):
            return out
        if any(v is INVALID for v in (out.values() if isinstance(out, dict) else out)):
            return INVALID  # a part was refused, and said why: so is the whole
        problem = self.sizes.problem(out)
        if problem:
            self.error(path, problem)
            return INVALID
        return out

    def _value(self, raw: Any, path: tuple, env: dict, hp: str) -> Any:
        if isinstance(raw, str):
            ref = reference(raw)
            if ref is None:
                return raw
            kind, text = ref
            if kind == "name":
                if text in env:
                    return env[text]
                if self.vars_broken:
                    return INVALID
                self.error(
                    path, f"unknown name `${text}`.{did_you_mean(text, list(env))} Received: {raw}"
                )
                return INVALID
            if any(env.get(k) is INVALID for k in _IDENTIFIER.findall(text)):
                return INVALID  # it reads a refused value, whose problem is already reported
            try:
                return evaluate(text, env)
            except ExpressionError as e:
                unknown = str(e).startswith("unknown name `")
                if not (unknown and self.vars_broken):  # else: the refused `vars`' echo
                    self.error(path, str(e))
                return INVALID
        if isinstance(raw, dict):
            if is_space(raw):
                return self.space(raw, path, env, hp)
            return {k: self.value(v, (*path, k), env, f"{hp}/{k}") for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.value(v, (*path, i), env, f"{hp}/{i}") for i, v in enumerate(raw)]
        return raw

    def space(self, raw: dict, path: tuple, env: dict, hp: str) -> Any:
        options = {
            k: (v if k in ("tune", "values") else self.value(v, (*path, k), env, hp))
            for k, v in raw.items()
        }
        problems = check_space(options)
        for key, message in problems:
            self.error((*path, key), f"invalid search space: {message}")
        if problems or any(v is INVALID for v in options.values()):
            return INVALID
        name = hp.strip("/") or format_path(path)
        if options["tune"] == "choice" and any(
            isinstance(v, (dict, list)) for v in options["values"]
        ):
            labels = _labels(options["values"])
            label = self.chooser.choose(
                name,
                {
                    **options,
                    "values": labels,
                    **(
                        {"default": labels[options["values"].index(options["default"])]}
                        if "default" in options
                        else {}
                    ),
                },
                format_path(path),
            )
            index = labels.index(label)
            with self.chooser.conditional(name, label):
                return self.value(
                    options["values"][index], (*path, "values", index), env, f"{name}/{label}"
                )
        value = self.chooser.choose(name, options, format_path(path))
        if options["tune"] == "choice":
            index = options["values"].index(value)
            with self.chooser.conditional(name, value):
                return self.value(value, (*path, "values", index), env, f"{name}/{value}")
        return value

    # ------------------------------------------------------------------ top-level sections
    def resolve_vars(self, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.error(
                ("vars",), f"`vars` must be a mapping of names to values. Received: {_short(raw)}"
            )
            self.vars_broken = True
            return
        for key, value in raw.items():
            if not isinstance(key, str) or not _NAME.match(key) or key in RESERVED_NAMES:
                self.error(
                    ("vars", key),
                    f"invalid var name (letters, digits, _; not `i`). Received: {key!r}",
                )
                continue
            self.vars[key] = self.value(value, ("vars", key), dict(self.vars), f"vars/{key}")

    def resolve_inputs(self) -> list[InputSpec]:
        data = self.data
        if "input" in data and "inputs" in data:
            self.error(("inputs",), "give either `input` or `inputs`, not both")
        if "inputs" in data:
            raw = data["inputs"]
            if not isinstance(raw, dict) or not raw:
                self.error(
                    ("inputs",),
                    f"`inputs` must map names to {{shape, dtype}}. Received: {_short(raw)}",
                )
                return []
            out = []
            for name, spec in raw.items():
                path = ("inputs", name)
                if not isinstance(name, str) or not _NAME.match(name):
                    self.error(path, f"invalid input name. Received: {name!r}")
                    continue
                if isinstance(spec, list):
                    spec = {"shape": spec}
                if not isinstance(spec, dict):
                    self.error(
                        path,
                        f"an input is {{shape: [...], dtype: float32}}. Received: {_short(spec)}",
                    )
                    continue
                for key in spec:
                    if key not in ("shape", "dtype"):
                        self.error(
                            (*path, key),
                            f"unknown input key `{key}`.{did_you_mean(key, ['shape', 'dtype'])}",
                        )
                shape = self.shape(spec.get("shape"), (*path, "shape"))
                dtype = spec.get("dtype", "float32")
                if dtype not in _DTYPES:
                    self.error(
                        (*path, "dtype"),
                        f"unknown dtype.{did_you_mean(dtype, _DTYPES)} Received: dtype={dtype!r}",
                    )
                if shape is not None:
                    out.append(InputSpec(name, shape, dtype if dtype in _DTYPES else "float32"))
            return out
        if "input" not in data:
            self.error((), "missing required key `input` (e.g. `input: [224, 224, 3]`) or `inputs`")
            return []
        shape = self.shape(data["input"], ("input",))
        return [InputSpec("input", shape)] if shape is not None else []

    def shape(self, raw: Any, path: tuple) -> tuple | None:
        value = self.value(raw, path, self.vars, format_path(path))
        if value is INVALID:
            return None
        if (
            not isinstance(value, list)
            or not value
            or not all(
                v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
                for v in value
            )
        ):
            self.error(
                path,
                f"a shape is a non-empty list of positive integers (or null). Received: {_short(value)}",
            )
            return None
        if len(value) > 8:
            self.error(path, f"a shape has at most 8 dimensions. Received: {len(value)}")
            return None
        return tuple(value)

    def collect_blocks(self, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.error(
                ("blocks",),
                f"`blocks` must map block names to {{args, body}}. Received: {_short(raw)}",
            )
            return
        for name, block in raw.items():
            path = ("blocks", name)
            if not isinstance(name, str) or not _NAME.match(name):
                self.error(path, f"invalid block name (letters, digits, _). Received: {name!r}")
                continue
            known = registry.get(name)
            if (
                known is not None and known.kind != "block"
            ):  # a spec's own block may replace a built-in block
                self.error(
                    path,
                    f"block `{name}` has the name of a built-in {known.kind}; choose another name",
                )
                continue
            if not isinstance(block, dict):
                self.error(
                    path, f"a block is {{args: {{...}}, body: [steps]}}. Received: {_short(block)}"
                )
                continue
            ok = True
            for key in block:
                if key not in BLOCK_KEYS:
                    self.error(
                        (*path, key), f"unknown block key `{key}`.{did_you_mean(key, BLOCK_KEYS)}"
                    )
                    ok = False
            args = block.get("args") or {}
            if not isinstance(args, dict):
                self.error(
                    (*path, "args"),
                    f"`args` maps argument names to defaults (null = required). Received: {_short(args)}",
                )
                ok = False
            else:
                for arg in args:
                    if (
                        not isinstance(arg, str)
                        or not _NAME.match(arg)
                        or arg in RESERVED_NAMES
                        or arg == "name"
                    ):
                        self.error(
                            (*path, "args", arg),
                            f"invalid argument name (not `i` or `name`). Received: {arg!r}",
                        )
                        ok = False
            body = block.get("body")
            if not isinstance(body, list) or not body:
                self.error(
                    (*path, "body"),
                    f"a block needs `body`: a non-empty list of steps. Received: {_short(body)}",
                )
                ok = False
            if ok:
                self.blocks[name] = block
            else:
                self.broken_blocks.add(name)

    def resolve_defaults(self, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.error(
                ("defaults",), f"`defaults` maps step types to arguments. Received: {_short(raw)}"
            )
            return
        for type_name, args in raw.items():
            path = ("defaults", type_name)
            params = self.params_of(str(type_name))
            if params is None:
                self.error(
                    path,
                    f"unknown step type `{type_name}` in defaults.{registry.suggest(type_name, self.blocks)}",
                )
                continue
            if not isinstance(args, dict):
                self.error(
                    path,
                    f"defaults for `{type_name}` must be a mapping of arguments. Received: {_short(args)}",
                )
                continue
            resolved = {}
            for key, value in args.items():
                if not params(key):
                    self.error((*path, key), self.unknown_arg(type_name, key))
                    continue
                resolved[key] = self.value(
                    value, (*path, key), self.vars, f"defaults/{type_name}/{key}"
                )
            self.defaults[type_name] = resolved

    def params_of(self, type_name: str):
        """A predicate `arg -> accepted` for a step type or user block; None if the type is unknown."""
        if type_name in self.blocks:
            args = self.blocks[type_name].get("args") or {}
            return lambda arg: arg in args
        entry = registry.get(type_name)
        return None if entry is None else entry.accepts

    def unknown_arg(self, type_name: str, arg: str) -> str:
        if type_name in self.blocks:
            names = list(self.blocks[type_name].get("args") or {})
        else:
            entry = registry.get(type_name)
            names = [*entry.params, *sorted(entry.passthrough)]
        return (
            f"unknown argument `{arg}` for `{type_name}`.{did_you_mean(arg, names)} Received: {arg}"
        )

    # ------------------------------------------------------------------ steps
    def resolve_steps(
        self,
        raw: Any,
        path: tuple,
        scope: _Scope,
        env: dict,
        first_sources: list[str] | None = None,
    ) -> list[Step]:
        if not isinstance(raw, list):
            self.error(path, f"expected a list of steps. Received: {_short(raw)}")
            return []
        kinds = [_type_key(item) for item in raw]
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
            steps = self.resolve_step(item, (*path, index), scope, env, local, collapse)
            if not steps and isinstance(local, str):
                scope.broken.add(local)
            if index == 0 and first_sources and steps and steps[0].sources is None:
                steps[0].sources = list(first_sources)
            out += steps
        return out

    def resolve_step(
        self,
        raw: Any,
        path: tuple,
        scope: _Scope,
        env: dict,
        local: Any,
        collapse: bool = False,
        hp_name: str | None = None,
    ) -> list[Step]:
        if is_space(raw) and raw.get("tune") == "choice":
            return self.step_choice(raw, path, scope, env, local)
        if not isinstance(raw, dict):
            self.error(
                path,
                f"a step is a mapping with one type key (e.g. `conv: {{filters: 64, kernel: 3}}`). Received: {_short(raw)}",
            )
            return []
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
            return []
        type_name = type_keys[0]
        type_path = (*path, type_name)
        if not isinstance(local, str) or not _NAME.match(local):
            self.error(
                (*path, "name"),
                f"a step name is letters, digits and _, not starting with a digit. Received: name={local!r}",
            )
            return []
        if local in scope.names:
            self.error((*path, "name"), f"duplicate name `{local}` in this scope")
            return []
        entry = None if type_name in self.blocks else registry.get(str(type_name))
        if entry is None and type_name in self.broken_blocks:
            return []
        if entry is None and type_name not in self.blocks:
            self.error(
                type_path,
                registry.refused(type_name)
                or f"unknown step type `{type_name}`.{registry.suggest(type_name, self.blocks)}",
            )
            return []
        full = scope.prefix if collapse else scope.full(local)
        hp = hp_name or (scope.hp if collapse else (f"{scope.hp}/{local}" if scope.hp else local))
        sources = self.resolve_from(raw.get("from"), (*path, "from"), scope, entry)
        count = 1
        if "repeat" in raw:
            count = self.value(raw["repeat"], (*path, "repeat"), env, f"{hp}/repeat")
            if count is INVALID:
                return []
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                self.error(
                    (*path, "repeat"),
                    f"`repeat` must be a positive integer. Received: repeat={count!r}",
                )
                return []
            if count > self.limits.max_repeat:
                self.error(
                    (*path, "repeat"),
                    f"`repeat` above the limit of {self.limits.max_repeat}: refused. Received: repeat={count}",
                )
                return []
        first = raw.get("first")
        if first is not None and "repeat" not in raw:
            self.error((*path, "first"), "`first` applies only with `repeat`")
        if first is not None and not isinstance(first, dict):
            self.error(
                (*path, "first"),
                f"`first` is a mapping of arguments for the first repetition. Received: {_short(first)}",
            )
            first = None
        steps: list[Step] = []
        for rep in range(count):
            self.count_step(path)
            rep_env = {**env, "i": rep} if "repeat" in raw else env
            name = f"{full}_{rep + 1}" if count > 1 else full
            args_raw = self.keywords(type_name, entry, raw[type_name], type_path)
            if args_raw is None:
                return []
            if rep == 0 and first:
                extra = self.keywords(type_name, entry, first, (*path, "first"))
                args_raw = {**args_raw, **(extra or {})}
            step = self.build_step(
                type_name, entry, args_raw, type_path, scope, rep_env, name, hp, path
            )
            if step is None:
                return steps
            step.sources = sources if rep == 0 else None
            step.path = format_path(type_path)
            step.mark = self.doc.mark(type_path)
            steps.append(step)
            if count > 1:
                scope.names[f"{local}_{rep + 1}"] = name
        if steps:
            scope.names[local] = steps[-1].name
        return steps

    def step_choice(
        self, raw: dict, path: tuple, scope: _Scope, env: dict, local: str
    ) -> list[Step]:
        # `name` names the step (and so its hyperparameter); the rest is the search space.
        space = {k: v for k, v in raw.items() if k != "name"}
        problems = check_space(space)
        for key, message in problems:
            self.error((*path, key), f"invalid search space: {message}")
        if "name" in raw and not isinstance(raw["name"], str):
            self.error((*path, "name"), f"`name` must be a string. Received: {_short(raw['name'])}")
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
            raise _Abort

    def resolve_from(self, raw: Any, path: tuple, scope: _Scope, entry) -> list[str] | None:
        if raw is None:
            return None
        names = raw if isinstance(raw, list) else [raw]
        if not names or not all(isinstance(n, str) for n in names):
            self.error(
                path, f"`from` takes a step name or a list of names. Received: {_short(raw)}"
            )
            return None
        out = []
        for name in names:
            found = scope.lookup(name)
            if found is None and scope.is_broken(name):
                continue  # that step's own problem is already reported
            if found is None:
                self.error(
                    path,
                    f"`from` names no earlier step or input.{did_you_mean(name, scope.visible())} Received: from={name}",
                )
                continue
            out.append(found)
        multi = entry is not None and entry.multi_input
        if len(names) > 1 and entry is not None and not multi and entry.kind != "combinator":
            self.error(
                path,
                f"`{entry.name}` reads one tensor; only merging steps (add, concat, ...) take several. Received: from={names}",
            )
        return out or None

    def keywords(self, type_name: str, entry, raw: Any, path: tuple) -> dict | None:
        """Turns mapping, positional list or scalar arguments into keywords."""
        if raw is None:
            return {}
        if type_name in self.blocks:
            order, primary = list(self.blocks[type_name].get("args") or {}), None
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
            f"`{type_name}` takes no scalar argument; write its arguments as a mapping. Received: {_short(raw)}",
        )
        return None

    def build_step(
        self, type_name, entry, args_raw, path, scope, env, name, hp, step_path
    ) -> Step | None:
        if type_name in self.blocks:
            return self.user_block(type_name, args_raw, path, env, name, hp)
        if entry.kind == "combinator":
            return self.combinator(entry, args_raw, path, scope, env, name, hp)
        args = self.arguments(entry, args_raw, path, env, hp)
        return Step(type=type_name, name=name, args=args)

    def arguments(self, entry, given: dict, path: tuple, env: dict, hp: str) -> dict:
        """Checks and evaluates a layer's or Python block's arguments, defaults applied."""
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
                self.error((*path, key), self.unknown_arg(entry.name, key))
                unknown.append(str(key))
                continue
            args[key] = self.value(raw, (*path, key), env, f"{hp}/{key}")
        for key, param in entry.params.items():
            if key not in args:
                # `kernal: 3` already says "did you mean `kernel`?"; don't report `kernel` missing too.
                if param.required and not did_you_mean(key, unknown):
                    self.error(path, f"missing required argument `{key}` for `{entry.name}`")
        # Types, each parameter's declared rules (`filters` > 0, odd kernel for stack3), no files.
        known = {k: v for k, v in args.items() if v is not INVALID and not _contains_invalid(v)}
        typed = {k for k, p in entry.params.items() if k in known and known[k] is not p.default}
        for key, message in registry.check_args(entry, known, typed):
            self.error((*path, written.get(key, key)) if key in given else path, message)
        for key, value in args.items():
            foreign = _foreign_object(value)
            if foreign:
                self.error(
                    (*path, key) if key in given else path,
                    f"`{key}` names a Keras object by `{foreign}`: a spec may use built-in Keras "
                    f"objects only, as {{class_name, config}}. Received: {key}={_short(value)}",
                )
        return args

    def user_block(
        self, type_name: str, given: dict, path: tuple, env: dict, name: str, hp: str
    ) -> Step | None:
        block = self.blocks[type_name]
        declared = block.get("args") or {}
        if type_name in self.block_stack:
            chain = " -> ".join([*self.block_stack, type_name])
            self.error(
                path, f"block `{type_name}` uses itself ({chain}); blocks cannot be recursive"
            )
            return None
        bound = {}
        for key in given:
            if key not in declared:
                self.error((*path, key), self.unknown_arg(type_name, key))
        merged = {
            **{k: v for k, v in declared.items() if v is not None},
            **self.defaults.get(type_name, {}),
            **given,
        }
        for key in declared:
            if key not in merged:
                self.error(path, f"missing required argument `{key}` for block `{type_name}`")
                bound[key] = INVALID
                continue
            bound[key] = self.value(merged[key], (*path, key), env, f"{hp}/{key}")
        body_env = {**self.vars, **bound}
        self.block_stack.append(type_name)
        self.context.append(f"block `{type_name}` used at {format_path(path[:-1])}")
        try:
            body = self.resolve_steps(
                block["body"], ("blocks", type_name, "body"), _Scope(prefix=name, hp=hp), body_env
            )
        finally:
            self.block_stack.pop()
            self.context.pop()
        return Step(type=type_name, name=name, args=bound, children=[body], block=type_name)

    def combinator(
        self, entry, given: dict, path: tuple, scope: _Scope, env: dict, name: str, hp: str
    ) -> Step | None:
        kind = entry.name
        for key in given:
            if key not in entry.params:
                self.error((*path, key), self.unknown_arg(kind, key))
        settings = {}
        for key, param in entry.params.items():
            if param.annotation in (list, dict) or key == "shortcut":
                continue
            value = self.value(given.get(key, param.default), (*path, key), env, f"{hp}/{key}")
            if value is not INVALID:
                problem = registry.check_value(key, value, param.annotation)
                if problem:
                    self.error((*path, key), f"`{key}` {problem}. Received: {key}={_short(value)}")
            settings[key] = value
        child = _Scope(prefix=name, hp=hp, parent=scope)
        children: list[list[Step]] = []
        if kind == "sequence":
            children = [
                self.resolve_steps(
                    given.get("steps"),
                    (*path, "steps") if isinstance(self.raw_at(path), dict) else path,
                    child,
                    env,
                )
            ]
        elif kind == "parallel":
            branches = given.get("branches")
            if not isinstance(branches, list) or not branches:
                self.error(
                    (*path, "branches"),
                    f"`branches` is a list of step lists. Received: {_short(branches)}",
                )
                return None
            for index, branch in enumerate(branches):
                branch_scope = _Scope(
                    prefix=f"{name}_b{index + 1}", hp=f"{hp}/b{index + 1}", parent=scope
                )
                children.append(
                    self.resolve_steps(branch, (*path, "branches", index), branch_scope, env)
                )
        elif kind == "residual":
            body_path = (*path, "body") if isinstance(self.raw_at(path), dict) else path
            if "body" not in given:
                self.error(path, "missing required argument `body` for `residual`")
                return None
            children = [self.resolve_steps(given["body"], body_path, child, env)]
            shortcut = given.get("shortcut", "auto")
            if isinstance(shortcut, list):
                sc_scope = _Scope(prefix=f"{name}_shortcut", hp=f"{hp}/shortcut", parent=scope)
                children.append(self.resolve_steps(shortcut, (*path, "shortcut"), sc_scope, env))
                settings["shortcut"] = "steps"
            elif shortcut in ("auto", "identity"):
                settings["shortcut"] = shortcut
                if shortcut == "auto":
                    children.append(self.auto_shortcut(name))
            else:
                self.error(
                    (*path, "shortcut"),
                    f"`shortcut` is auto, identity or a list of steps. Received: shortcut={_short(shortcut)}",
                )
        elif kind == "bidirectional":
            layer = given.get("layer")
            if not isinstance(layer, dict):
                self.error(
                    path,
                    f"`bidirectional` wraps one step, e.g. `{{layer: {{lstm: 64}}}}`. Received: {_short(layer)}",
                )
                return None
            inner_path = (*path, "layer") if "layer" in (self.raw_at(path) or {}) else path
            inner = self.resolve_step(
                layer, inner_path, _Scope(prefix=name, hp=hp, parent=scope), env, _type_key(layer)
            )
            if not inner:
                return None
            recurrent = registry.get(inner[0].type)
            if (
                recurrent is None
                or recurrent.kind not in ("layer", "keras")
                or recurrent.multi_input
            ):
                self.error(
                    inner_path,
                    f"`bidirectional` wraps a recurrent layer (lstm, gru, simple_rnn). Received: {inner[0].type}",
                )
                return None
            children = [inner]
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

    # ------------------------------------------------------------------ outputs, train, tune
    def resolve_outputs(self, raw: Any, top: _Scope, network: list[Step]) -> list[OutputSpec]:
        if raw is None:
            if not network:
                return []
            return [OutputSpec(name="output", source=network[-1].name)]
        if not isinstance(raw, dict) or not raw:
            self.error(
                ("outputs",),
                f"`outputs` maps output names to {{from, activation, loss, ...}}. Received: {_short(raw)}",
            )
            return []
        outputs = []
        for name, spec in raw.items():
            path = ("outputs", name)
            if not isinstance(name, str) or not _NAME.match(name):
                self.error(path, f"invalid output name. Received: {name!r}")
                continue
            spec = {} if spec is None else spec
            if not isinstance(spec, dict):
                self.error(
                    path,
                    f"an output is a mapping {{from, activation, loss, loss_weight, metrics, train_only}}. Received: {_short(spec)}",
                )
                continue
            # Key by key: an output may be named `tune` without becoming a search space.
            spec = {
                k: self.value(v, (*path, k), self.vars, f"outputs/{name}/{k}")
                for k, v in spec.items()
            }
            for key in spec:
                if key not in OUTPUT_KEYS:
                    self.error(
                        (*path, key), f"unknown output key `{key}`.{did_you_mean(key, OUTPUT_KEYS)}"
                    )
            source_name = spec.get("from", name)
            source = top.lookup(source_name) if isinstance(source_name, str) else None
            if source is None and (not network or top.is_broken(source_name)):
                continue  # the step it reads was refused, and said why
            if source is None:
                where = (*path, "from") if "from" in spec else path
                self.error(
                    where,
                    f"output `{name}` reads no step: name a step with `from`, or name a step `{name}`.{did_you_mean(source_name, top.visible())} Received: from={source_name}",
                )
                continue
            activation = spec.get("activation")
            if activation is not None and not isinstance(activation, str):
                self.error(
                    (*path, "activation"),
                    f"`activation` must be a name. Received: {_short(activation)}",
                )
            weight = spec.get("loss_weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                self.error(
                    (*path, "loss_weight"),
                    f"`loss_weight` must be a number >= 0. Received: loss_weight={weight!r}",
                )
                weight = 1.0
            metrics = spec.get("metrics", [])
            if isinstance(metrics, str):
                metrics = [metrics]
            if not isinstance(metrics, list):
                self.error(
                    (*path, "metrics"),
                    f"`metrics` is a list of metric names. Received: {_short(metrics)}",
                )
                metrics = []
            train_only = spec.get("train_only", False)
            if not isinstance(train_only, bool):
                self.error(
                    (*path, "train_only"),
                    f"`train_only` must be true or false. Received: {train_only!r}",
                )
                train_only = False
            outputs.append(
                OutputSpec(
                    name,
                    source,
                    activation,
                    spec.get("loss"),
                    float(weight),
                    tuple(metrics),
                    train_only,
                )
            )
        if outputs and all(o.train_only for o in outputs):
            self.error(
                ("outputs",), "every output is `train_only`: the inference model would have none"
            )
        return outputs

    def resolve_train(self, raw: Any) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(("train",), f"`train` must be a mapping. Received: {_short(raw)}")
            return {}
        train = {k: self.value(v, ("train", k), self.vars, f"train/{k}") for k, v in raw.items()}
        if _contains_invalid(train):
            return train
        try:
            from blockspec.training.config import check_train
        except ImportError:
            return train
        for rel, message in check_train(train):
            parts = tuple(int(p) if p.isdigit() else p for p in rel.split(".")) if rel else ()
            self.error(("train", *parts), message)
        return train

    def resolve_tune(self, raw: Any) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(("tune",), f"`tune` must be a mapping. Received: {_short(raw)}")
            return {}
        tune = {k: self.value(v, ("tune", k), self.vars, f"tune/{k}") for k, v in raw.items()}
        for key, value in tune.items():
            path = ("tune", key)
            if key not in TUNE_KEYS:
                self.error(path, f"unknown tune key `{key}`.{did_you_mean(key, TUNE_KEYS)}")
            elif key == "tuner" and value not in TUNERS:
                self.error(
                    path,
                    f"unknown tuner.{did_you_mean(value, TUNERS)} Expected one of {', '.join(TUNERS)}. Received: tuner={value!r}",
                )
            elif key in (
                "max_trials",
                "max_epochs",
                "executions_per_trial",
                "factor",
                "hyperband_iterations",
            ) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                self.error(path, f"`{key}` must be a positive integer. Received: {key}={value!r}")
            elif key == "objective":
                self.check_objective(value, path)
        return tune

    def check_objective(self, value: Any, path: tuple) -> None:
        if isinstance(value, str):
            return
        if not isinstance(value, dict):
            self.error(
                path,
                f"`objective` is a Keras metric name or {{output, metric, direction}}. Received: {_short(value)}",
            )
            return
        for key in value:
            if key not in ("output", "metric", "direction", "split"):
                self.error(
                    (*path, key),
                    f"unknown objective key `{key}`.{did_you_mean(key, ['output', 'metric', 'direction', 'split'])}",
                )
        if "metric" not in value:
            self.error(path, "`objective` needs `metric` (e.g. accuracy)")
        if value.get("direction", "max") not in ("min", "max"):
            self.error(
                (*path, "direction"),
                f"`direction` is min or max. Received: {value.get('direction')!r}",
            )
        output = value.get("output")
        names = list(
            (self.data.get("outputs") or {}) if isinstance(self.data.get("outputs"), dict) else []
        )
        if output is not None and names and output not in names:
            self.error(
                (*path, "output"),
                f"`objective.output` names no output.{did_you_mean(output, names)} Received: output={output}",
            )


_COLLAPSIBLE = ("sequence", "parallel", "residual")
_DTYPES = ("float32", "float16", "bfloat16", "float64", "int32", "int64", "uint8", "bool", "string")


def _type_key(item: Any) -> str:
    if isinstance(item, dict):
        if is_space(item):
            return "choice"
        keys = [k for k in item if k not in STEP_KEYS]
        if len(keys) == 1 and isinstance(keys[0], str):
            return keys[0]
    return "step"


def _labels(values: list) -> list[str]:
    """Readable, unique labels for choice values that are steps (`basic_residual`, ...)."""
    labels = []
    for index, value in enumerate(values):
        label = _type_key(value) if isinstance(value, dict) else str(value)
        if label in labels or isinstance(value, list):
            label = f"{label}_{index}"
        labels.append(label)
    return labels


def _foreign_object(value: Any) -> str | None:
    """The key by which a Keras object config reaches beyond built-in Keras objects, if any.

    Keras deserialises `{class_name, config}` mappings given as initializers, regularizers, ...;
    `module` and `registered_name` make it import modules or look up custom objects, and
    `__lambda__`-style class names are its internal types. A spec has no use for any of them.
    """
    if isinstance(value, dict):
        if "class_name" in value:
            for key in ("module", "registered_name"):
                if key in value:
                    return key
            if str(value["class_name"]).startswith("__"):
                return "class_name"
        items = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        found = _foreign_object(item)
        if found:
            return found
    return None


def _contains_invalid(value: Any) -> bool:
    if value is INVALID:
        return True
    if isinstance(value, dict):
        return any(_contains_invalid(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_invalid(v) for v in value)
    return False


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stem(file: str) -> str:
    import os

    base = os.path.basename(file)
    return base.rsplit(".", 1)[0] if "." in base else (base.strip("<>") or "model")
