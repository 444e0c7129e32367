"""The resolver: a loaded document -> a `ResolvedSpec`, or one `SpecError` listing everything.

`Resolver` is assembled from one part per section of a spec: this module (the document: top-level
keys, `name`, vars and expressions, search spaces, inputs), `blocks` (user blocks, `defaults`),
`steps` (network steps and combinators), `outputs`, `train` and `tune`. Errors are collected,
not raised one by one, so a user sees all of them at once.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from blockspec.builder.errors import Problem, SpecError, did_you_mean, shorten
from blockspec.builder.expr import (
    Expansion,
    ExpressionError,
    Unavailable,
    evaluate,
    names_read,
    reference,
    suggestions,
)
from blockspec.builder.lazy import Deferred
from blockspec.builder.load import Document, Limits, format_path
from blockspec.builder.resolve.backbone import resolve_weights_keys
from blockspec.builder.resolve.blocks import BlocksPart
from blockspec.builder.resolve.common import (
    _DTYPES,
    INVALID,
    NAME_RULE,
    RESERVED_NAMES,
    SPEC_VERSION,
    TOP_KEYS,
    Abort,
    Scope,
    _labels,
    foreign_object,
    is_name,
    stem,
)
from blockspec.builder.resolve.outputs import (
    OutputsPart,
    metric_target_problems,
    monitor_problems,
)
from blockspec.builder.resolve.step_keys import StepKeysPart
from blockspec.builder.resolve.steps import StepsPart
from blockspec.builder.resolve.train import resolve_train
from blockspec.builder.resolve.tune import resolve_tune
from blockspec.builder.shape_rules import ShapeSlot
from blockspec.builder.spaces import Chooser, check_space, is_space
from blockspec.builder.spec import InputSpec, ResolvedSpec, Step

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Resolver(BlocksPart, StepsPart, StepKeysPart, OutputsPart):
    def __init__(self, doc: Document, chooser: Chooser, limits: Limits):
        self.doc = doc
        self.data = doc.data if isinstance(doc.data, dict) else {}
        self.chooser = chooser
        self.limits = limits
        self.problems: list[Problem] = []
        self._seen: set[tuple] = set()
        self.steps = 0
        self.block_stack: list[str] = []
        self.caller_scopes: list[Scope] = []  # where each user block being expanded is used
        self.context: list[str] = []
        self.vars: dict[str, Any] = {}
        self.vars_broken = False  # `vars` was refused: unknown `$names` are its echo, not news
        self.defaults: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, dict] = {}
        self.broken_blocks: set[str] = set()  # refused definitions: their uses add nothing new
        self.warnings: list[Problem] = []
        self.sizes = Expansion(limits.max_nodes, limits.max_depth)  # values as built, refs included
        self.shapes: dict[str, tuple | None] = {}  # each step's output shape, for `in_*` (1.1)
        self.flow: tuple | None = None  # the shape the next step of the chain reads by default

    def warn(self, path: tuple, message: str) -> None:
        """A spec that is valid but likely not what its author meant: printed, not refused."""
        problem = Problem(message, format_path(path), self.doc.mark(path))
        if problem not in self.warnings:
            self.warnings.append(problem)

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

    def screen_object(
        self, path: tuple, value: Any, names_only: bool = False, key: str | None = None
    ) -> tuple | None:
        """Refuses a Keras object config that could import code; the path refused, or None.

        The one screen for every place a spec can name a Keras object: layer arguments
        (initializers, regularizers, constraints: built-in `{class_name, config}` allowed), and,
        with `names_only`, places the language takes a name (output activation, loss and metrics,
        augment layers, optimizer arguments: no object config at all).
        """
        found = foreign_object(value, anywhere=names_only)
        if not found:
            return None
        by, inner = found
        path = (*path, *inner)
        for part in inner:
            value = value[part]
        if inner or key is None:
            key = next((p for p in reversed(path) if isinstance(p, str)), "value")
        allowed = (
            "names only" if names_only else "built-in Keras objects only, as {class_name, config}"
        )
        self.error(
            path,
            f"`{key}` names a Keras object by `{by}`: a spec may use {allowed} here. "
            f"Received: {key}={shorten(value)}",
        )
        return path

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
        except Abort:
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
        name = self.spec_name(data)
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
        top = Scope(prefix="", hp="")
        for spec_input in inputs:
            top.names[spec_input.name] = spec_input.name
            self.shapes[spec_input.name] = tuple(spec_input.shape)
        network = data.get("network")
        if network is None:
            self.error((), "missing required key `network` (the list of steps)")
            network_steps: list[Step] = []
        elif not isinstance(network, list) or not network:
            self.error(
                ("network",),
                f"`network` must be a non-empty list of steps. Received: {shorten(network)}",
            )
            network_steps = []
        else:
            network_steps = self.resolve_steps(
                network,
                ("network",),
                top,
                self.vars,
                first_sources=[inputs[0].name] if inputs else None,
                in_shape=tuple(inputs[0].shape) if inputs else None,
            )
            if not network_steps and not self.problems:
                self.error(
                    ("network",),
                    "`when` or `repeat: 0` leaves out every step of `network`: a network needs "
                    "at least one step",
                )
        outputs = self.resolve_outputs(data.get("outputs"), top, network_steps)
        train, train_config = resolve_train(self, data.get("train"), inputs, outputs, network_steps)
        if train_config is not None:
            for path, message in metric_target_problems(
                data.get("outputs"), outputs, train_config.label_smoothing, train_config.data.masks
            ) + monitor_problems(outputs, train_config):
                self.error(path, message)
        tune, tune_config = resolve_tune(self, data.get("tune"), outputs, train_config)
        weights, weights_strict = resolve_weights_keys(self, data)
        return ResolvedSpec(
            weights=weights,
            weights_strict=weights_strict,
            weights_mark=self.doc.mark(("weights",)) if weights is not None else None,
            vars=dict(self.vars),
            name=name,
            description=description,
            inputs=inputs,
            network=network_steps,
            outputs=outputs,
            defaults=self.defaults,
            train=train,
            tune=tune,
            train_config=train_config,
            tune_config=tune_config,
            warnings=tuple(self.warnings),
            hyperparameters=list(self.chooser.chosen.values()),
            document=self.doc.data,
            file=self.doc.file,
            limits=self.limits,
        )

    def spec_name(self, data: dict) -> str:
        """The spec's `name`, an identifier (it names the model, its layers and its run folders)."""
        if "name" not in data:
            return _identifier(stem(self.doc.file))
        name = data["name"]
        if not is_name(name):
            self.error(("name",), f"`name` is {NAME_RULE}. Received: name={shorten(name)}")
            return "model"
        return name

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
                    return self.shaped(text, env, path, raw)
                if self.vars_broken:
                    return INVALID
                self.error(
                    path,
                    f"unknown name `${text}`.{did_you_mean(text, suggestions(text, env))} "
                    f"Received: {raw}",
                )
                return INVALID
            if any(env.get(k) is INVALID for k in _IDENTIFIER.findall(text)):
                return INVALID  # it reads a refused value, whose problem is already reported
            try:
                waits = self.waits_for_shape(text, env)
                if waits:
                    return Deferred(text, waits, format_path(path), self.doc.mark(path))
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

    def shaped(self, name: str, env: dict, path: tuple, raw: str) -> Any:
        """`$name`'s value: an `in_*` name not known yet waits for the build (1.1)."""
        value = env[name]
        if isinstance(value, Unavailable):
            self.error(path, f"{value.reason}. Received: {raw}")
            return INVALID
        if isinstance(value, ShapeSlot):
            return Deferred(name, {name: value}, format_path(path), self.doc.mark(path))
        return value

    def waits_for_shape(self, text: str, env: dict) -> dict | None:
        """The names an expression reads when one of them waits for the build, else None.

        Raises `ExpressionError` for what is wrong whatever the shapes (syntax, an unknown name,
        `in_shape[0]`): those are refused by `validate`, not left for the build.
        """
        names = names_read(text)
        if not any(isinstance(env.get(n), (ShapeSlot, Deferred)) for n in names):
            return None
        for name in names:
            if name not in env and name not in ("True", "False", "None"):
                evaluate(text, env)  # says "unknown name", with its did-you-mean
            if isinstance(env.get(name), Unavailable):
                raise ExpressionError(f"{env[name].reason}. Received: ${{{text}}}")
        return {n: env[n] for n in names if n in env}

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
                ("vars",), f"`vars` must be a mapping of names to values. Received: {shorten(raw)}"
            )
            self.vars_broken = True
            return
        valid = {}
        for key, value in raw.items():
            if not is_name(key) or key in RESERVED_NAMES:
                self.error(
                    ("vars", key),
                    f"invalid var name (letters, digits, _; not `i`). Received: {key!r}",
                )
                continue
            valid[key] = value
        # Order-independent: a var may read one defined below it; a cycle is refused.
        for key in valid:
            self.resolve_var(key, valid, [])
        self.check_var_overrides(raw)

    def resolve_var(self, key: str, raw: dict, chain: list[str]) -> Any:
        """Var `key`, the vars it reads resolved first (depth first); a cycle is refused."""
        if key in self.vars:
            return self.vars[key]
        if key in chain:
            cycle = " -> ".join([*chain[chain.index(key) :], key])
            self.error(("vars", chain[-1]), f"vars read each other in a cycle: {cycle}")
            for name in chain[chain.index(key) :]:
                self.vars[name] = INVALID
            return INVALID
        for name in sorted(reads(raw[key]) & set(raw), key=list(raw).index):
            self.resolve_var(name, raw, [*chain, key])
        if key not in self.vars:
            self.vars[key] = self.value(raw[key], ("vars", key), dict(self.vars), f"vars/{key}")
        return self.vars[key]

    def check_var_overrides(self, raw: dict) -> None:
        """`--set vars.clases=10` adds a var nothing reads: a typo of `classes`, not a new var."""
        for key in raw:
            mark = self.doc.marks.get(("vars", key))
            if mark is None or not mark.file.startswith("--set ") or _reads_var(self.data, key):
                continue
            others = [k for k in raw if k != key]
            self.error(
                ("vars", key),
                f"--set gives var `{key}`, which the spec never reads.{did_you_mean(key, others)}"
                f" Vars: {', '.join(map(str, others)) or 'none'}. Received: vars.{key}",
            )

    def resolve_inputs(self) -> list[InputSpec]:
        data = self.data
        if "input" in data and "inputs" in data:
            self.error(("inputs",), "give either `input` or `inputs`, not both")
        if "inputs" in data:
            raw = data["inputs"]
            if not isinstance(raw, dict) or not raw:
                self.error(
                    ("inputs",),
                    f"`inputs` must map names to {{shape, dtype}}. Received: {shorten(raw)}",
                )
                return []
            out = []
            for name, spec in raw.items():
                path = ("inputs", name)
                if not is_name(name):
                    self.error(path, f"invalid input name. Received: {name!r}")
                    continue
                if isinstance(spec, list):
                    spec = {"shape": spec}
                if not isinstance(spec, dict):
                    self.error(
                        path,
                        f"an input is {{shape: [...], dtype: float32}}. Received: {shorten(spec)}",
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
                f"a shape is a non-empty list of positive integers (or null). Received: {shorten(value)}",
            )
            return None
        if len(value) > 8:
            self.error(path, f"a shape has at most 8 dimensions. Received: {len(value)}")
            return None
        return tuple(value)


def _identifier(text: str) -> str:
    """A name made from a file's stem: `my-net` -> `my_net`, `01_bad` -> `spec_01_bad`."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)[:48] or "model"
    return name if not name[0].isdigit() else f"spec_{name}"


def reads(node: Any) -> set[str]:
    """The names that `$name` and `${...}` strings inside `node` read."""
    if isinstance(node, dict):
        return set().union(*(reads(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(reads(v) for v in node)) if node else set()
    if not isinstance(node, str) or "$" not in node:
        return set()
    found = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", node))
    for text in re.findall(r"\$\{([^{}]*)\}", node):
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            continue  # the evaluator reports it where the value is read
        found |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return found


def _reads_var(node: Any, name: str) -> bool:
    """Some `$name` or `${... name ...}` in the document reads var `name`."""
    if isinstance(node, str):
        return "$" in node and re.search(rf"\b{re.escape(name)}\b", node) is not None
    if isinstance(node, dict):
        return any(_reads_var(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_reads_var(v, name) for v in node)
    return False
