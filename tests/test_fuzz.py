"""Property-based fuzzing of the loader, the expression evaluator, the resolver and the builder.

Whatever the input (random YAML-ish text, random documents, mutations of the zoo specs), the only
exception allowed out is `SpecError` (`ExpressionError` for the bare evaluator): never a
`TypeError`, `KeyError`, `RecursionError`, ... and never a hang.

CI runs a bounded number of examples (the whole file in well under a minute). The long run:

    BLOCKSPEC_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py -p no:randomly

runs 2,000 examples per resolve-level test (and 1/20 of that, at least 10, per build-level test);
see docs/limits.md.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
from functools import cache

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from blockspec.builder import registry
from blockspec.builder.errors import SpecError
from blockspec.builder.expr import ExpressionError, evaluate
from blockspec.builder.load import (
    Document,
    Limits,
    load_document,
    parse_override,
    parse_yaml,
    zoo_names,
)
from blockspec.builder.resolve import resolve_spec

EXAMPLES = int(os.environ.get("BLOCKSPEC_FUZZ_EXAMPLES", "0")) or None
RESOLVE = settings(
    max_examples=EXAMPLES or 200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
QUICK = settings(RESOLVE, max_examples=EXAMPLES or 300)
BUILD = settings(RESOLVE, max_examples=max(20, (EXAMPLES or 0) // 10))
HANG_SECONDS = 10  # one example that long is a hang: the refusals measured are far below 1 s


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Fails the example instead of waiting forever (POSIX main thread; elsewhere, no guard)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def alarm(signum, frame):
        raise AssertionError(f"no answer within {seconds}s: a hang")

    try:
        previous = signal.signal(signal.SIGALRM, alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def only_spec_errors(fn, *args, **kwargs):
    """Runs `fn`; a `SpecError` is a fine answer, anything else fails the example."""
    with no_hang():
        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            text = str(e)
            assert e.problems and "Traceback" not in text
            return None


# ------------------------------------------------------------------ value strategies

TYPE_NAMES = sorted(registry.all_types())
WORDS = [
    *TYPE_NAMES,
    *("spec", "name", "description", "extends", "imports", "vars", "input", "inputs"),
    *("defaults", "blocks", "network", "outputs", "train", "tune", "from", "repeat", "first"),
    *("args", "body", "branches", "merge", "shortcut", "steps", "layer", "values", "min", "max"),
    *("default", "step", "sampling", "filters", "kernel", "strides", "padding", "units", "rate"),
    *("activation", "classes", "size", "same", "valid", "relu", "softmax", "int", "float"),
    *("choice", "bool", "auto", "identity", "concat", "add", "stack3", "asymmetric", "none"),
    *("loss", "metrics", "loss_weight", "train_only", "shape", "dtype", "float32", "int32"),
    *("Conv2DTranspose", "Lambda", "TFSMLayer", "Dense", "class_name", "module", "config"),
    *("incepton", "cnv", "filtres", "netwrok"),
]
STRINGS = [
    *("", "x", "$x", "$i", "$classes", "$width", "${", "${}", "${1/0}", "${i}", "${i * 2}"),
    *("${classes * 2}", "${10 ** 10 ** 10}", "${max(1, round(3 * 0.5))}", "${-x}", "${x[0]}"),
    *("${__import__('os').system('true')}", "${().__class__}", "${make_divisible(30, 8)}"),
    *("${1 if i else 2}", "${'a' * 3}", "${[1, 2]}", "${round(5, -10000000)}", "${ceil(1e300)}"),
    *("${int('9' * 400)}", "$", "$$", "${${1}}", "not a ${x}", "1e-4", "-", "null"),
]
NUMBERS = st.one_of(
    st.integers(-3, 300),
    st.sampled_from([0, -1, 10**6, 10**9, 10**12, 10**18, 2**63, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.sampled_from(WORDS),
    st.sampled_from(STRINGS),
    st.text(max_size=10),
)
KEYS = st.one_of(st.sampled_from(WORDS), st.text(max_size=8), st.integers(-2, 5))
SPACES = st.fixed_dictionaries(
    {"tune": st.sampled_from(["int", "float", "choice", "bool", "integer", 5])},
    optional={
        "min": NUMBERS,
        "max": NUMBERS,
        "step": NUMBERS,
        "default": SCALARS,
        "sampling": st.sampled_from(["linear", "log", "reverse_log", "cubic"]),
        "values": st.lists(SCALARS, max_size=3),
    },
)
VALUES = st.recursive(
    st.one_of(SCALARS, SPACES),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)


def steps():
    """A plausible step: one type key, arguments, maybe step keys."""
    return st.builds(
        lambda type_name, args, extra: {type_name: args, **extra},
        st.sampled_from([*TYPE_NAMES, "Conv2DTranspose", "Dense", "nope", "Lambda"]),
        st.one_of(
            st.none(),
            SCALARS,
            st.lists(SCALARS, max_size=4),
            st.dictionaries(KEYS, VALUES, max_size=4),
        ),
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.one_of(st.sampled_from(["a", "b", "main", "1x", "conv"]), SCALARS),
                "from": st.one_of(
                    st.sampled_from(["a", "b", "input", "nope"]),
                    st.lists(st.sampled_from(["a", "b", "input"]), max_size=3),
                    SCALARS,
                ),
                "repeat": st.one_of(st.integers(-1, 4), SCALARS),
                "first": st.one_of(st.dictionaries(KEYS, SCALARS, max_size=2), SCALARS),
            },
        ),
    )


def documents():
    """A random spec-shaped mapping."""
    return st.fixed_dictionaries(
        {},
        optional={
            "spec": st.one_of(st.just(1), SCALARS),
            "name": SCALARS,
            "vars": st.one_of(
                st.dictionaries(
                    st.sampled_from(["x", "width", "classes", "i", "1a"]), VALUES, max_size=3
                ),
                SCALARS,
            ),
            "input": st.one_of(
                st.lists(st.one_of(st.integers(-1, 12), SCALARS), max_size=4), SCALARS
            ),
            "inputs": st.dictionaries(KEYS, VALUES, max_size=2),
            "defaults": st.dictionaries(st.sampled_from(WORDS), VALUES, max_size=2),
            "blocks": st.dictionaries(
                st.sampled_from(["blk", "conv", "inception", "b2"]),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "args": st.dictionaries(KEYS, SCALARS, max_size=3),
                        "body": st.lists(steps(), max_size=3),
                        "description": SCALARS,
                    },
                ),
                max_size=2,
            ),
            "network": st.one_of(st.lists(steps(), max_size=5), VALUES),
            "outputs": st.one_of(
                st.dictionaries(
                    KEYS,
                    st.one_of(
                        st.dictionaries(st.sampled_from(WORDS), SCALARS, max_size=3), SCALARS
                    ),
                    max_size=2,
                ),
                SCALARS,
            ),
            "train": VALUES,
            "tune": st.one_of(st.dictionaries(st.sampled_from(WORDS), VALUES, max_size=3), SCALARS),
            "extends": SCALARS,
            "imports": st.one_of(st.lists(SCALARS, max_size=2), SCALARS),
        },
    )


# ------------------------------------------------------------------ (a) text into the loader

YAML_ALPHABET = st.sampled_from(
    list("{}[]:,-#&*!|>'\"%@`?$ \n\t\\abcxyz0189._=<") + ["\x07", "\u00e9", "\ufeff", "\x85"]
)


@QUICK
@given(st.one_of(st.text(YAML_ALPHABET, max_size=200), st.text(max_size=200)))
def test_random_text_is_a_document_or_a_spec_error(text):
    doc = only_spec_errors(parse_yaml, text, "fuzz.yaml")
    if doc is not None and isinstance(doc.data, dict):
        only_spec_errors(resolve_spec, doc)


@st.composite
def spliced_yaml(draw):
    """A valid YAML dump of a random spec, then characters inserted, deleted or replaced."""
    text = yaml.safe_dump(draw(documents()), sort_keys=False, allow_unicode=True)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:at] + draw(st.text(YAML_ALPHABET, max_size=3)) + text[at + cut :]
    return text


@RESOLVE
@given(spliced_yaml())
def test_spliced_yaml_resolves_or_is_refused(text):
    doc = only_spec_errors(parse_yaml, text, "fuzz.yaml")
    if doc is not None:
        only_spec_errors(resolve_spec, doc)


@RESOLVE
@given(documents())
def test_random_documents_resolve_or_are_refused(data):
    only_spec_errors(resolve_spec, Document(data=data, file="fuzz.yaml"))


# ------------------------------------------------------------------ (b) mutations of the zoo


@cache
def zoo() -> dict[str, Document]:
    return {name: load_document(name) for name in zoo_names()}


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _get(value, path):
    for part in path:
        value = value[part]
    return value


def _typo(word: str, draw) -> str:
    if not word:
        return "x"
    at = draw(st.integers(0, len(word) - 1))
    return word[:at] + draw(st.sampled_from(["", "x", word[at] * 2, "_"])) + word[at + 1 :]


@st.composite
def mutations(draw, data, leaves_only: bool = False, under: tuple = ()):
    """`data` with 1-4 random edits: drop a key, change a type, swap a number for a string, a
    negative or a huge one, rename a step type or a key, duplicate or remove a list item."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(data) if p and p[: len(under)] == under]
        if leaves_only:
            paths = [p for p in paths if not isinstance(_get(data, p), (dict, list))]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        value = parent[key]
        operations = (
            ["replace", "number"]
            if leaves_only
            else ["replace", "number", "drop", "rename", "retype", "duplicate", "wrap", "space"]
        )
        op = draw(st.sampled_from(operations))
        if op == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            parent[key] = draw(
                st.sampled_from(
                    [
                        str(value),
                        -value,
                        0,
                        value * 10**9,
                        value + 0.5,
                        True,
                        None,
                        [value, value],
                        f"${{{value} * 2}}",
                    ]
                )
            )
        elif op == "drop":
            parent.pop(key)
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.one_of(st.sampled_from(WORDS), st.just(_typo(str(key), draw))))
            parent[new] = parent.pop(key)
        elif op == "retype" and isinstance(value, dict) and value:
            old = draw(st.sampled_from(list(value)))
            new = draw(st.one_of(st.sampled_from(TYPE_NAMES), st.just(_typo(str(old), draw))))
            value[new] = value.pop(old)
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(value))
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[value], {"sequence": [value]}, {"x": value}]))
        elif op == "space":
            parent[key] = draw(SPACES)
        else:
            parent[key] = draw(VALUES)
    return data


ZOO = zoo_names()


@RESOLVE
@given(st.sampled_from(ZOO), st.data())
def test_zoo_mutations_resolve_or_are_refused(name, data):
    doc = zoo()[name]
    mutated = data.draw(mutations(doc.data))
    only_spec_errors(resolve_spec, Document(data=mutated, marks=doc.marks, file=doc.file))


@RESOLVE
@given(
    st.sampled_from(ZOO),
    st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(
                    [
                        "vars.classes",
                        "input",
                        "network.0",
                        "network.-1.name",
                        "defaults.conv.factorize",
                        "train.epochs",
                        "outputs",
                        "blocks",
                        "network.3.repeat",
                        "tune.tuner",
                        "spec",
                    ]
                ),
                st.text(alphabet=st.sampled_from(list("abc.019-_")), max_size=12),
            ),
            st.text(YAML_ALPHABET, max_size=20),
        ),
        max_size=3,
    ),
)
def test_set_overrides_resolve_or_are_refused(name, overrides):
    """`--set KEY=VALUE`: the value is YAML text, the key a dotted path; nothing but SpecError."""
    parsed = {}
    for key, value in overrides:
        pair = only_spec_errors(parse_override, f"{key}={value}")
        if pair is None:
            return
        parsed[pair[0]] = pair[1]
    only_spec_errors(resolve_spec, name, parsed)


# ------------------------------------------------------------------ expressions

EXPRESSION_ALPHABET = st.sampled_from(
    list("0123456789+-*/%<>=!(),. ")
    + ["**", "//", " and ", " or ", " not ", " if ", " else "]
    + ["x", "i", "width", "min", "max", "round", "int", "float", "ceil", "floor", "abs"]
    + ["make_divisible", "__import__", "__class__", "'a'", "[", "]", "lambda", "1e308", "True"]
)


@QUICK
@given(st.lists(EXPRESSION_ALPHABET, max_size=30).map("".join))
def test_expressions_evaluate_or_raise_expression_error(text):
    with no_hang():
        try:
            value = evaluate(text, {"x": 3, "i": 0, "width": 0.5})
        except ExpressionError:
            return
    assert value is None or isinstance(value, (bool, int, float, str, list))
    if isinstance(value, float):
        assert math.isfinite(value)


# ------------------------------------------------------------------ (b') mutations that build

BUILD_SPECS = {
    "nin_cifar": {"vars.classes": 3},
    "resnet18": {"vars.classes": 3, "input": [32, 32, 3]},
    "digits_googlenet": {"vars.classes": 3},
    "digits_lstm": {"vars.classes": 3},
    "vgg11": {"vars.classes": 3, "input": [32, 32, 3]},
}
# Builds are real: bound what one may allocate (the limit is part of what is fuzzed).
BUILD_LIMITS = Limits(max_parameters=20_000_000)
SIZES = [1, 2, 3, 4, 5, 7, 8, 16, 33, 64, 512, 10**6]
OPTIONS = ["same", "valid", "relu", "softmax", "tanh", "none", "stack3", "asymmetric"]


@st.composite
def rewires(draw, data):
    """`data` with 1-3 edits that mostly still resolve, so the builder meets them: another size,
    another option word, a step dropped, duplicated or moved, a `from` pointed elsewhere."""
    data = copy.deepcopy(data)
    network = data["network"]
    for _ in range(draw(st.integers(1, 3))):
        leaves = [(p, _get(network, p)) for p in _paths(network) if p]
        ints = [p for p, v in leaves if type(v) is int and "name" not in p]
        words = [p for p, v in leaves if v in OPTIONS]
        op = draw(st.sampled_from(["size", "size", "word", "drop", "copy", "move", "from"]))
        if op == "size" and ints:
            path = draw(st.sampled_from(ints))
            _get(network, path[:-1])[path[-1]] = draw(st.sampled_from(SIZES))
        elif op == "word" and words:
            path = draw(st.sampled_from(words))
            _get(network, path[:-1])[path[-1]] = draw(st.sampled_from(OPTIONS))
        elif op in ("drop", "copy", "move") and len(network) > 1:
            index = draw(st.integers(0, len(network) - 1))
            step = network.pop(index)
            if op != "drop":
                if op == "copy":
                    network.insert(index, {k: v for k, v in step.items() if k != "name"})
                network.insert(draw(st.integers(0, len(network))), step)
        elif op == "from" and len(network) > 1:
            index = draw(st.integers(1, len(network) - 1))
            names = ["input"] + [
                s["name"] for s in network[:index] if isinstance(s.get("name"), str)
            ]
            network[index]["from"] = draw(st.sampled_from(names))
    return data


@BUILD
@given(st.sampled_from(sorted(BUILD_SPECS)), st.data())
def test_zoo_mutations_that_resolve_build_or_are_refused(name, data):
    keras = pytest.importorskip("keras")
    from blockspec.builder.compile import compile_spec

    doc = load_document(name, BUILD_SPECS[name])
    mutated = data.draw(rewires(doc.data))
    resolved = only_spec_errors(
        resolve_spec,
        Document(data=mutated, marks=doc.marks, file=doc.file),
        limits=BUILD_LIMITS,
    )
    if resolved is None:
        event("refused by the resolver")
        return
    built = only_spec_errors(compile_spec, resolved)
    event("built" if built is not None else "refused by the builder")
    if built is not None:
        assert isinstance(built.model, keras.Model)
