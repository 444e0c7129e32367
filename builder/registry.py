"""One registry of step types: layers, combinators, built-in blocks, any `keras.layers` class.

A step type declares its arguments (name, Python type, default) so that the resolver can check a
spec without importing Keras; building is deferred to the compiler.
"""

from __future__ import annotations

import functools
import inspect
import json
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from blockspec.builder.errors import close_matches, did_you_mean
from blockspec.builder.text import excerpt


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


# ----------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Constraint:
    """A rule an argument's value follows, declared beside the argument.

    Declared in a type hint (`filters: Annotated[int, positive()]`) or in `Param.constraints`;
    `blockspec validate` checks it, with the argument's file:line:col, before Keras is imported.

    Attributes:
        test: value -> True when allowed. Numeric rules test each number of a list (`[1, 7]`).
        message: what a refused value must be, after the argument's name: "must be positive".
        when: args -> True when the rule applies (it may read the step's other arguments:
            "odd when `factorize` is stack3"); None: always.
        schema: the rule in JSON Schema words for editors (`{"exclusiveMinimum": 0}`), if any.
    """

    test: Callable[[Any], bool]
    message: str
    when: Callable[[dict[str, Any]], bool] | None = None
    schema: dict[str, Any] | None = field(default=None, compare=False)

    def problem(self, value: Any, args: dict[str, Any]) -> str | None:
        """The message when `value` (with the step's `args`) breaks the rule, else None."""
        if value is None or (self.when is not None and not self.when(args)):
            return None
        return None if self.test(value) else self.message


@dataclass(frozen=True)
class Alias:
    """Another name a spec may give an argument: Keras' own (`kernel_size` for `kernel`)."""

    name: str


def _numbers(value: Any) -> list[float]:
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def positive() -> Constraint:
    """Every number of the value is > 0 (`filters`, `units`, a kernel size `[1, 7]`)."""
    return Constraint(
        lambda v: all(n > 0 for n in _numbers(v)),
        "must be positive",
        schema={"exclusiveMinimum": 0},
    )


def in_range(low: float, high: float) -> Constraint:
    """low <= value < high (a dropout rate: `in_range(0, 1)`)."""
    return Constraint(
        lambda v: all(low <= n < high for n in _numbers(v)),
        f"must be in [{low}, {high})",
        schema={"minimum": low, "exclusiveMaximum": high},
    )


def odd(when: Callable[[dict[str, Any]], bool] | None = None, why: str = "") -> Constraint:
    """Every number of the value is odd; `when` limits the rule to some settings of the others."""
    return Constraint(
        lambda v: all(int(n) % 2 == 1 for n in _numbers(v)), f"must be odd{why}", when=when
    )


def rule(
    test: Callable[[Any], bool], message: str, when: Callable[[dict], bool] | None = None
) -> Constraint:
    """Any other rule: `rule(lambda v: v != 0, "must not be 0")`."""
    return Constraint(test, message, when=when)


# Argument types that carry their rules: a kernel, stride or pool size is 3 or [1, 7], positive.
Size = Annotated[int | list[int], positive()]
Positive = Annotated[int, positive()]
Rate = Annotated[float, in_range(0, 1)]
Kernel = Annotated[Size, Alias("kernel_size")]


@dataclass(frozen=True)
class Param:
    """One argument of a step type: its name, type, default, rules and other names."""

    name: str
    annotation: Any = Any
    default: Any = REQUIRED
    constraints: tuple[Constraint, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def param(name: str, hint: Any = Any, default: Any = REQUIRED) -> Param:
    """A `Param` from a type hint that may carry rules and aliases (`Annotated[int, positive()]`)."""
    annotation, constraints, aliases = split_hint(hint)
    return Param(name, annotation, default, constraints, aliases)


def split_hint(hint: Any) -> tuple[Any, tuple[Constraint, ...], tuple[str, ...]]:
    """`Annotated[T, rules..., Alias(..)]` (also inside `... | None`) -> (T, rules, aliases)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *meta = typing.get_args(hint)
        inner, constraints, aliases = split_hint(base)
        constraints += tuple(m for m in meta if isinstance(m, Constraint))
        aliases += tuple(m.name for m in meta if isinstance(m, Alias))
        return inner, constraints, aliases
    if origin in (typing.Union, types.UnionType):
        parts = [split_hint(a) for a in typing.get_args(hint)]
        if any(c or a for _, c, a in parts):
            base = functools.reduce(operator.or_, [p[0] for p in parts])
            return base, sum((p[1] for p in parts), ()), sum((p[2] for p in parts), ())
    return hint, (), ()


@dataclass
class StepType:
    """A registered step type.

    Attributes:
        name: the type key written in specs.
        kind: `layer`, `block`, `combinator` or `keras` (a `keras.layers` class by exact name).
        params: declared arguments, in positional order, each with its rules and aliases.
        build: for layers and blocks, `build(x, *, name, **args) -> tensor` (x is a list of tensors
            when `multi_input`); for combinators, `build(ctx, step, x) -> tensor`.
        resolve: for a combinator, the hook that resolves its step-holding arguments (beside
            `build`); None while the resolver keeps that code itself.
        primary: the argument a scalar value sets (`dropout: 0.5`).
        passthrough: further Keras argument names accepted as they are.
        multi_input: reads a list of tensors (`add`, `concat`).
        doc: one-paragraph description.
        source: where it was registered.
    """

    name: str
    kind: str
    params: dict[str, Param]
    build: Callable[..., Any] | None = None
    primary: str | None = None
    passthrough: frozenset[str] = frozenset()
    multi_input: bool = False
    doc: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    resolve: Callable[..., Any] | None = None

    @functools.cached_property
    def aliases(self) -> dict[str, str]:
        """Other names of arguments (Keras' own), to the declared name: `{"kernel_size": "kernel"}`."""
        return {a: p.name for p in self.params.values() for a in p.aliases}

    def accepts(self, arg: str) -> bool:
        return arg in self.params or arg in self.passthrough or arg in self.aliases

    def canonical(self, given: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """`given` with aliases renamed to the declared names, and (key, message) for each clash."""
        aliases = self.aliases
        if not aliases or not any(k in aliases for k in given):
            return given, []
        out: dict[str, Any] = {}
        problems = []
        for key, value in given.items():
            target = aliases.get(key, key) if isinstance(key, str) else key
            if target != key and target in given:
                problems.append(
                    (key, f"`{key}` is Keras' name for `{target}`: give one of them, not both")
                )
                continue
            out[target] = value
        return out, problems

    def summary_line(self) -> str:
        return (self.doc.strip().splitlines() or [""])[0]


class RegistryError(ValueError):
    pass


class ShapeError(ValueError):
    """Raised by a step's build when its input's shape does not fit it (a rule that needs shapes).

    The compiler reports it at the step, like Keras' own refusals, but as blockspec's words.
    """


_REGISTRY: dict[str, StepType] = {}
# Names of arguments that some step type declares positive (`views/schema.py` reads it; the rules
# themselves are on each `Param`).
_POSITIVE: set[str] = set()


def register(
    entry: StepType | str,
    *,
    kind: str = "block",
    build: Callable[..., Any] | None = None,
    params: list[Param] | None = None,
    primary: str | None = None,
    passthrough: frozenset[str] | set[str] = frozenset(),
    multi_input: bool = False,
    doc: str | None = None,
    extra: dict[str, Any] | None = None,
    resolve: Callable[..., Any] | None = None,
    source: str | None = None,
):
    """The one way to add a step type; a duplicate name is an error naming the first definition.

    A build function's keyword-only arguments (but `name`) are the type's parameters, in order,
    with their hints as types and rules (`filters: Positive`, `kernel: Kernel`); `params` adds
    or replaces declarations (a Keras wrapper, whose build takes `**args`). Called with `build`,
    it registers at once and returns the `StepType`; without, it is a decorator for the build
    function. `register(StepType(...))` adds a ready entry.

    Example:
        >>> @register("my_block", primary="filters")                       # doctest: +SKIP
        ... def my_block(x, *, filters: Positive, kernel: Kernel = 3, name: str):
        ...     return layers.Conv2D(filters, kernel, name=f"{name}_conv")(x)
    """
    if isinstance(entry, StepType):
        return _add(entry)
    name = entry

    def decorate(fn: Callable) -> Callable:
        declared = {} if kind == "combinator" else signature_params(fn)
        declared.update({p.name: p for p in params or []})
        _add(
            StepType(
                name=name,
                kind=kind,
                params=declared,
                build=fn,
                primary=primary,
                passthrough=frozenset(passthrough) - set(declared),
                multi_input=multi_input,
                doc=inspect.getdoc(fn) or "" if doc is None else doc,
                source=source or f"{fn.__module__}.{fn.__qualname__}",
                extra=extra or {},
                resolve=resolve,
            )
        )
        return fn

    if build is not None:
        decorate(build)
        return _REGISTRY[name]
    return decorate


def register_block(name: str, *, primary: str | None = None, multi_input: bool = False):
    """Registers a Python block (`register(name, kind="block", ...)` as a decorator).

    A block is a function of a tensor with keyword-only, typed arguments and `name`.

    Example:
        >>> @register_block("my_block")                                   # doctest: +SKIP
        ... def my_block(x, *, filters: Positive, name: str):
        ...     return layers.Conv2D(filters, 3, name=f"{name}_conv")(x)
    """
    return register(name, kind="block", primary=primary, multi_input=multi_input)


def signature_params(fn: Callable) -> dict[str, Param]:
    """The keyword-only arguments of `fn` (but `name`) as `Param`s, rules and aliases included."""
    hints = typing.get_type_hints(fn, include_extras=True)
    out = {}
    for pname, p in inspect.signature(fn).parameters.items():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or pname == "name":
            continue
        default = REQUIRED if p.default is inspect.Parameter.empty else p.default
        out[pname] = param(pname, hints.get(pname, Any), default)
    return out


def _add(entry: StepType) -> StepType:
    if entry.name in _REGISTRY:
        first = _REGISTRY[entry.name]
        raise RegistryError(
            f"step type `{entry.name}` is already registered (first by {first.source}); "
            f"cannot register it again from {entry.source}"
        )
    for alias, target in entry.aliases.items():
        if alias in entry.params or alias in entry.passthrough:
            raise RegistryError(f"`{entry.name}`: alias `{alias}` of `{target}` is an argument")
    _REGISTRY[entry.name] = entry
    _POSITIVE.update(
        p.name
        for p in entry.params.values()
        if any(c.schema and "exclusiveMinimum" in c.schema for c in p.constraints)
    )
    return entry


def get(name: str) -> StepType | None:
    """The step type registered as `name`, or a `keras.layers` class of that exact name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    table = keras_layer_table()
    if name in table and name not in REFUSED_KERAS:
        entry = StepType(
            name=name,
            kind="keras",
            params={},
            passthrough=frozenset(table[name]) - {"name"},
            doc=f"keras.layers.{name}, arguments as in Keras.",
            source="keras.layers",
            multi_input=name in _MULTI_INPUT_KERAS,
        )
        _REGISTRY[name] = entry
        return entry
    return None


# `keras.layers` classes a spec may not name: they run Python or load files (a spec is data, and
# a saved model must load with `safe_mode=True`), or they are not steps.
REFUSED_KERAS = {
    "Lambda": "it runs Python code",
    "TFSMLayer": "it loads a SavedModel from disk",
    "JaxLayer": "it wraps Python code",
    "FlaxLayer": "it wraps Python code",
    "TorchModuleWrapper": "it wraps Python code",
    "Layer": "it is the abstract base class",
    "Wrapper": "it is an abstract base class",
    "InputLayer": "inputs come from `input`/`inputs`",
}


def refused(name: Any) -> str | None:
    """Why `name`, a `keras.layers` class, cannot be a step; None if it is not refused."""
    reason = REFUSED_KERAS.get(name) if isinstance(name, str) else None
    return f"`{name}` cannot be used in a spec: {reason}" if reason else None


def all_types() -> dict[str, StepType]:
    """Registered step types (not the on-demand `keras.layers` ones), by name."""
    return {k: v for k, v in _REGISTRY.items() if v.kind != "keras"}


def suggest(name: str, extra=()) -> str:
    """` Did you mean ...?` for an unknown step type: blockspec's names, the spec's own blocks,
    and, for a name written in CamelCase, `keras.layers` classes (`Conv2d` -> `Conv2D` first)."""
    # A spec's own block may share a built-in block's name: suggest it once.
    names = list(dict.fromkeys([*all_types(), *extra]))
    if not isinstance(name, str) or name.islower() or not name[:1].isalpha():
        return did_you_mean(name, names)
    classes = [k for k in keras_layer_table() if k not in REFUSED_KERAS]
    same = [k for k in classes if k.lower() == name.lower()]
    close = close_matches(name, [*classes, *names])
    return did_you_mean(name, list(dict.fromkeys([*same, *close]))[:3])


_MULTI_INPUT_KERAS = {
    "Add",
    "Concatenate",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Subtract",
    "Dot",
}


@cache
def keras_layer_table() -> dict[str, frozenset[str]]:
    data = json.loads((Path(__file__).with_name("keras_layers.json")).read_text())
    return {k: frozenset(v) for k, v in data["layers"].items()}


# ----------------------------------------------------------------------------- type checking


def check_value(name: str, value: Any, annotation: Any) -> str | None:
    """None if `value` fits `annotation`, else what was expected (the type only; rules are on
    each `Param` and checked by `check_args`)."""
    if not matches(value, annotation):
        return f"expected {describe(annotation)}"
    return None


# Keras arguments that read a file when given a string (`StringLookup(vocabulary="/etc/passwd")`).
FILE_ARGUMENTS = ("vocabulary", "idf_weights", "filepath")


def check_args(entry: StepType, args: dict[str, Any], typed: Any = None) -> list[tuple[str, str]]:
    """(argument, message) for each rule that a step's arguments break.

    Args:
        entry: the step type.
        args: the step's arguments, defaults applied and values concrete (leave out values that
            could not be evaluated).
        typed: the arguments whose type to check (default: all); a type's own defaults need no
            check (`units: list[int] = ()`).

    Returns:
        The problems, each as the argument and a message ending in `Received: arg=value`.
    """
    problems = []
    for key, value in args.items():
        param_ = entry.params.get(key)
        if param_ is not None:
            if typed is None or key in typed:
                expected = check_value(key, value, param_.annotation)
                if expected:
                    problems.append((key, f"`{key}` {expected}. Received: {key}={excerpt(value)}"))
                    continue
            for constraint in param_.constraints:
                message = constraint.problem(value, args)
                if message:
                    problems.append((key, f"`{key}` {message}. Received: {key}={excerpt(value)}"))
                    break
        if entry.kind in ("layer", "keras"):
            found = names_a_file(key, value)
            if found is not None:
                problems.append(
                    (
                        key,
                        f"`{key}` names a file ({excerpt(found, 60)}): a spec reads no files but "
                        f"specs; write the values in the spec (a list). Received: {key}={excerpt(value)}",
                    )
                )
    return problems


def names_a_file(key: str, value: Any) -> str | None:
    """The string in `value` that would make Keras read a file, if any.

    A string for an argument Keras reads as a file path (`vocabulary`), or any string that looks
    like a path (`/dev/zero`, `../x`, `~/x`, `C:\\x`, `file://x`) in a Keras layer's arguments.
    """
    if key in FILE_ARGUMENTS and isinstance(value, str):
        return value
    if not isinstance(value, (str, list, dict)):
        return None
    stack, seen = [value], 0
    while stack and seen < 100_000:
        item = stack.pop()
        seen += 1
        if isinstance(item, str):
            if "/" in item or "\\" in item or item.startswith("~"):
                return item
        elif isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return None


def matches(value: Any, annotation: Any) -> bool:
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if typing.get_origin(annotation) is Annotated:
        return matches(value, split_hint(annotation)[0])
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(annotation))
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple):
        if not isinstance(value, list):
            return False
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(
                matches(v, a) for v, a in zip(value, args, strict=True)
            )
        item = args[0] if args else Any
        return all(matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (list, tuple):
        return isinstance(value, list)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def describe(annotation: Any) -> str:
    """A readable name for a type: `int or list of int`, `one of 'same', 'valid'`."""
    if annotation is Any:
        return "any value"
    if typing.get_origin(annotation) is Annotated:
        return describe(split_hint(annotation)[0])
    if annotation is None or annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(describe(a) for a in args)})"
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )
