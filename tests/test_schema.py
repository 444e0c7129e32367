"""`blockspec schema`: the JSON Schema agrees with the resolver on the zoo and on chosen specs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from blockspec import cli
from blockspec.builder import registry
from blockspec.builder.errors import SpecError
from blockspec.builder.expr import reference
from blockspec.builder.load import SPECS_DIR, parse_yaml, read_text, zoo_names
from blockspec.builder.resolve import resolve_spec
from blockspec.views.render import render
from blockspec.views.schema import EXPRESSION_PATTERN, json_schema

ZOO = sorted([*SPECS_DIR.glob("*.yaml"), *(SPECS_DIR / "examples").glob("*.yaml")])
HEAD = "spec: 1\ninput: [32, 32, 3]\n"

# Specs the resolver accepts: the schema must accept them too (it is never stricter).
GOOD = {
    "expressions": "vars: {classes: 10}\nnetwork:\n  - conv: {filters: '${2 * 8}', kernel: 3}\n"
    "  - dense: $classes",
    "list_item_expression": "vars: {k: 10}\nnetwork:\n  - mlpconv: {filters: [8, 8, $k], kernel: 3}",
    "search_spaces": "network:\n  - conv: {filters: {tune: int, min: 8, max: 64, step: 8}, "
    "kernel: 3, activation: {tune: choice, values: [relu, gelu]}}",
    "step_choice": "network:\n  - {tune: choice, values: [{basic_residual: {filters: 8}}, "
    "{bottleneck_residual: 8}]}",
    "named_step_choice": "network:\n  - {tune: choice, name: middle, values: [relu: , "
    "{conv: {filters: 3, kernel: 3}}]}",
    "user_block": "blocks:\n  mine: {args: {a: null}, body: [conv: {filters: $a, kernel: 3}]}\n"
    "network:\n  - mine: [8]\n    name: m\n    repeat: 2\n  - mine: {a: 3}",
    "keras_class": "network:\n  - Conv2DTranspose: {filters: 8, kernel_size: 3}",
    "combinators": "network:\n  - residual: [conv: {filters: 3, kernel: 3}]\n"
    "  - residual: {body: [relu: ], shortcut: [conv: {filters: 3, kernel: 1}]}\n"
    "  - parallel: {branches: [[relu: ], [relu: ]], merge: add}\n  - sequence: [relu: {}]",
    "scalars_and_lists": "network:\n  - zero_pad: 3\n  - relu:\n  - dropout: 0.5\n"
    "  - max_pool: [3, 2]\n  - conv: {filters: 8, kernel: [1, 7], padding: same}",
    "outputs_train_tune": "network:\n  - dense: 10\n    name: main\noutputs:\n"
    "  main: {activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "tune: {tuner: hyperband, objective: {output: main, metric: accuracy}, max_trials: 3}\n"
    "train: {epochs: 2, data: {source: digits, image_size: [8, 8]}, "
    "optimizer: {adam: {learning_rate: {tune: float, min: 1e-4, max: 1e-2, sampling: log}}}}",
    # (1.1) steps passed into a block by name, a scalar for a one-argument block, computed names,
    # an empty shortcut
    "steps_by_name": "blocks:\n  fork:\n    args: {branches: null, body: null}\n    body:\n"
    "      - parallel: {branches: $branches}\n      - residual: {body: $body, shortcut: none}\n"
    "  width: {args: {f: null}, body: [conv: {filters: $f, kernel: 1}]}\nnetwork:\n"
    "  - fork: {branches: [[relu: ], [relu: ]], body: [relu: ]}\n  - width: 8\n"
    "    repeat: 2\n    name: w${i}",
}

# Specs both refuse, with where the schema says the problem is.
BAD = {
    "unknown_top_key": ("netwerk: 1\nnetwork: [relu: ]", "$"),
    "unknown_argument": ("network:\n  - conv: {filter: 8, kernel: 3}", "$.network[0].conv"),
    "wrong_type": ("network:\n  - conv: {filters: abc, kernel: 3}", "$.network[0].conv.filters"),
    "two_type_keys": ("network:\n  - conv: {filters: 8, kernel: 3}\n    dense: 4", "$.network[0]"),
    "no_type_key": ("network:\n  - name: x", "$.network[0]"),
    "rate_out_of_range": ("network:\n  - dropout: 1.5", "$.network[0].dropout"),
    "negative_filters": ("network:\n  - conv: {filters: -3, kernel: 3}", "$.network[0].conv.filters"),
    "unknown_space_kind": (
        "network:\n  - conv: {filters: {tune: integer, min: 1, max: 3}, kernel: 3}",
        "$.network[0].conv.filters",
    ),
    "unknown_tuner": ("network: [relu: ]\ntune: {tuner: evolution}", "$.tune.tuner"),
    "unknown_train_key": ("network: [relu: ]\ntrain: {epoch: 3}", "$.train"),
    "block_named_like_a_layer": ("blocks:\n  conv: {body: [relu: ]}\nnetwork: [relu: ]", "$.blocks"),
}  # fmt: skip


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator, data) -> list:
    return sorted(validator.iter_errors(data), key=lambda e: e.json_path)


def _paths(errors) -> set[str]:
    """Where the errors are, their sub-errors (under `anyOf`) included."""
    out = set()
    for error in errors:
        out.add(error.json_path)
        out |= _paths(error.context)
    return out


def test_the_zoo_exists():
    assert len(ZOO) >= 2, "no zoo specs found in specs/"


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_every_zoo_spec_validates_as_written_and_resolved(validator, path: Path):
    data = parse_yaml(read_text(path), str(path)).data
    problems = [f"{e.json_path}: {e.message[:200]}" for e in _errors(validator, data)]
    assert not problems, problems
    resolved = yaml.safe_load(render(resolve_spec(str(path))))
    problems = [f"{e.json_path}: {e.message[:200]}" for e in _errors(validator, resolved)]
    assert not problems, problems


@pytest.mark.parametrize("name", GOOD)
def test_specs_the_resolver_accepts_validate(validator, name):
    data = parse_yaml(HEAD + GOOD[name]).data
    resolve_spec(data)  # the resolver accepts it ...
    assert _errors(validator, data) == []  # ... and so does the schema


@pytest.mark.parametrize("name", BAD)
def test_specs_the_resolver_refuses_do_not_validate(validator, name):
    text, where = BAD[name]
    data = parse_yaml(HEAD + text).data
    with pytest.raises(SpecError):
        resolve_spec(data)
    errors = _errors(validator, data)
    assert errors, "the schema accepted a spec the resolver refuses"
    assert where in _paths(errors)


def test_wrong_version_does_not_validate(validator):
    assert _errors(validator, {"spec": 2, "input": [8], "network": [{"relu": None}]})


def test_every_step_type_and_argument_is_in_the_schema():
    schema = json_schema()
    step = schema["$defs"]["plain_step"]["properties"]
    for name, entry in registry.all_types().items():
        assert name in step, name
        args = schema["$defs"][f"args_{name}"]["properties"]
        assert set(entry.params) <= set(args), name
        assert set(entry.passthrough) <= set(args), name
    assert "Conv2DTranspose" in step  # keras.layers classes by exact name


@pytest.mark.parametrize(
    "text", ["$a", "$width_2", "${a * 2}", "${max(1, round(3 * d))}", "$", "$1a", "a$b", "${a", "x"]
)
def test_the_expression_pattern_reads_as_the_evaluator_does(text):
    import re

    assert bool(re.match(EXPRESSION_PATTERN, text)) == (reference(text) is not None)


def test_schema_command_prints_the_schema(capsys, tmp_path):
    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()
    target = tmp_path / "blockspec.schema.json"
    assert cli.main(["schema", "-o", str(target)]) == 0
    assert json.loads(target.read_text())["$schema"].endswith("2020-12/schema")


def test_zoo_names_match_the_files():
    assert sorted(zoo_names()) == sorted(p.stem for p in ZOO)
