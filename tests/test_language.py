"""The language of SPEC.md: every top-level key, step key, combinator and error rule."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from blockspec.builder import SpecError, resolve_spec
from blockspec.builder.expr import ExpressionError, evaluate

HEAD = "spec: 1\ninput: [16, 16, 3]\n"


def write(tmp_path, text: str, name: str = "net.yaml"):
    path = tmp_path / name
    head = HEAD if text.startswith(HEAD) else ""
    path.write_text(head + textwrap.dedent(text[len(head) :]))
    return path


def resolve(tmp_path, text: str, overrides=None, name: str = "net.yaml"):
    return resolve_spec(str(write(tmp_path, text, name)), overrides)


def refused(tmp_path, text: str, overrides=None) -> str:
    with pytest.raises(SpecError) as info:
        resolve(tmp_path, text, overrides)
    return str(info.value)


def names(steps):
    return [s.name for s in steps]


# ----------------------------------------------------------------------------- loading


def test_numbers_as_a_user_means_them(tmp_path):
    spec = resolve(
        tmp_path, HEAD + "vars: {a: 1e-4, b: 2.5E3, c: on, d: true}\nnetwork: [dense: 2]\n"
    )
    doc_vars = spec.document["vars"]
    assert doc_vars["a"] == pytest.approx(1e-4) and isinstance(doc_vars["a"], float)
    assert doc_vars["b"] == 2500.0
    assert doc_vars["c"] == "on"  # YAML 1.1 would read a boolean
    assert doc_vars["d"] is True


def test_unsafe_yaml_tags_are_refused(tmp_path):
    text = refused(
        tmp_path,
        HEAD + "name: !!python/object/apply:os.system ['echo pwned']\nnetwork: [dense: 2]\n",
    )
    assert "YAML tag `tag:yaml.org,2002:python/object/apply:os.system` is not allowed" in text
    assert "net.yaml:3:7" in text


def test_duplicate_mapping_keys_are_refused(tmp_path):
    assert "duplicate key `name`" in refused(
        tmp_path, HEAD + "name: a\nname: b\nnetwork: [dense: 2]\n"
    )


def test_yaml_syntax_error_is_located(tmp_path):
    text = refused(tmp_path, HEAD + "network: [dense: 2\n")
    assert "YAML syntax error" in text and "net.yaml:" in text


def test_extends_deep_merges_mappings_and_replaces_lists(tmp_path):
    write(
        tmp_path,
        HEAD
        + "name: base\nvars: {w: 4, classes: 3}\nnetwork: [conv: {filters: $w, kernel: 3}, global_avg_pool: {}, dense: $classes]\n",
        "base.yaml",
    )
    spec = resolve(tmp_path, "extends: base.yaml\nname: child\nvars: {w: 8}\n")
    assert spec.name == "child"
    assert spec.network[0].args["filters"] == 8 and spec.network[2].args["units"] == 3
    spec = resolve(tmp_path, "extends: base.yaml\nnetwork: [flatten: {}, dense: 5]\n")
    assert [s.type for s in spec.network] == ["flatten", "dense"]


def test_extends_a_zoo_name(tmp_path):
    spec = resolve(tmp_path, "extends: googlenet\nvars: {classes: 7}\n")
    assert spec.output("main").source == "main"
    assert spec.network[20].args["units"] == 7


def test_extends_cycle_is_refused(tmp_path):
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(
        SpecError, match=r"`extends`/`imports` cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"
    ):
        resolve_spec(str(tmp_path / "a.yaml"))


def test_imports_bring_blocks(tmp_path):
    write(
        tmp_path,
        "blocks:\n  twice:\n    args: {f: null}\n    body: [conv: {filters: $f, kernel: 3}, conv: {filters: $f, kernel: 3}]\n",
        "lib.yaml",
    )
    spec = resolve(tmp_path, HEAD + "imports: [lib.yaml]\nnetwork: [twice: [5]]\n")
    assert names(spec.network[0].children[0]) == ["twice_conv_1", "twice_conv_2"]
    assert spec.network[0].children[0][1].args["filters"] == 5


def test_missing_import_is_refused(tmp_path):
    with pytest.raises(SpecError, match=r"spec file `nope.yaml` not found"):
        resolve(tmp_path, HEAD + "imports: [nope.yaml]\nnetwork: [dense: 2]\n")


def test_set_overrides_are_applied_before_validation(tmp_path):
    spec = resolve(
        tmp_path,
        HEAD + "vars: {classes: 3}\nnetwork: [flatten: {}, dense: $classes]\n",
        {"vars.classes": 10, "input": [8, 8, 1], "network.0": {"global_avg_pool": {}}},
    )
    assert spec.network[1].args["units"] == 10 and spec.inputs[0].shape == (8, 8, 1)
    assert spec.network[0].type == "global_avg_pool"


def test_set_value_is_located_in_errors(tmp_path):
    with pytest.raises(
        SpecError,
        match=r"--set network.1.dense.units:1:1 +network\[1\]\.dense\.units: `units` must be positive\. Received: units=-1",
    ):
        resolve(
            tmp_path,
            HEAD + "network: [flatten: {}, dense: {units: 3}]\n",
            {"network.1.dense.units": -1},
        )


# ----------------------------------------------------------------------------- values


def test_expressions_are_evaluated_over_vars_and_args(tmp_path):
    spec = resolve(
        tmp_path,
        HEAD
        + """
        vars: {width: 0.5, depth: 1.0}
        network:
          - conv:
              filters: ${make_divisible(64 * width, 8)}
              kernel: 3
            repeat: ${max(1, round(3 * depth))}
          - dense: {units: "${2 ** 3 if width < 1 else 1}"}
        """,
    )
    assert [s.args["filters"] for s in spec.network[:3]] == [32, 32, 32]
    assert spec.network[3].args["units"] == 8


def test_a_string_that_is_not_exactly_a_reference_stays_a_string(tmp_path):
    spec = resolve(
        tmp_path, HEAD + "vars: {a: 3}\ndescription: costs $a dollars\nnetwork: [dense: 2]\n"
    )
    assert spec.description == "costs $a dollars"


@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os')", "calling `__import__` is not allowed"),
        ("(1).__class__", "attribute access is not allowed"),
        ("open('x')", "calling `open` is not allowed"),
        ("10 ** 10 ** 10", "exponent too large"),
        ("[1][0]", "subscripting is not allowed"),
        ("lambda: 1", "`Lambda` is not allowed"),
        ("1 +", "invalid expression syntax"),
        ("1 / 0", "division by zero"),
        ("widht * 2", "unknown name `widht` in expression. Did you mean `width`?"),
    ],
)
def test_expression_evaluator_refuses(expression, message):
    with pytest.raises(
        ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")
    ):
        evaluate(expression, {"width": 2})


def test_expression_functions():
    env = {"i": 2, "w": 0.75}
    assert evaluate("make_divisible(64 * w, 8)", env) == 48
    assert (
        evaluate("ceil(w) + floor(w) + abs(-i) + int(2.7) + float(1)", env) == 1 + 0 + 2 + 2 + 1.0
    )
    assert evaluate("i % 2 == 0 and not i > 3", env) is True
    assert evaluate("min(i, 1) if i >= 2 else max(i, 5)", env) == 1


# ----------------------------------------------------------------------------- steps


def test_step_argument_forms(tmp_path):
    spec = resolve(
        tmp_path,
        HEAD
        + """
        network:
          - conv: [8, 3]            # positional: filters, kernel
          - dropout: 0.5            # scalar: the primary argument
          - relu:                   # empty
          - max_pool: {size: 3, strides: 2}
          - flatten: {}
          - dense: {units: 4}
        """,
    )
    conv, dropout, relu = spec.network[:3]
    assert (conv.args["filters"], conv.args["kernel"]) == (8, 3)
    assert dropout.args["rate"] == 0.5 and relu.type == "relu"


def test_names_from_repeat_and_first(tmp_path):
    spec = resolve(
        tmp_path,
        HEAD
        + """
        network:
          - conv_bn: {filters: "${8 * (i + 1)}", strides: 1}
            name: stage
            repeat: 3
            first: {strides: 2}
          - conv: [4, 1]
            from: stage_2
          - add: {}
            from: [stage, conv]
        """,
    )
    assert names(spec.network) == ["stage_1", "stage_2", "stage_3", "conv", "add"]
    assert [s.args["strides"] for s in spec.network[:3]] == [2, 1, 1]
    assert [s.args["filters"] for s in spec.network[:3]] == [8, 16, 24]
    assert spec.network[3].sources == ["stage_2"]
    assert spec.network[4].sources == ["stage_3", "conv"]


def test_defaults_apply_under_a_steps_own_arguments(tmp_path):
    spec = resolve(
        tmp_path,
        HEAD
        + "defaults: {conv: {activation: relu, padding: same}}\nnetwork: [conv: [4, 3], conv: {filters: 4, kernel: 3, padding: valid}]\n",
    )
    assert (
        spec.network[0].args["padding"] == "same" and spec.network[0].args["activation"] == "relu"
    )
    assert spec.network[1].args["padding"] == "valid"


def test_any_keras_layer_by_exact_name(tmp_path):
    from blockspec.builder import build_model

    spec = (
        HEAD
        + "network: [Conv2DTranspose: {filters: 8, kernel_size: 3, strides: 2, padding: same}]\n"
    )
    model = build_model(str(write(tmp_path, spec)))
    assert tuple(model.outputs[0].shape) == (None, 32, 32, 8)


def test_combinators(tmp_path):
    from blockspec.builder import build_model

    spec = write(
        tmp_path,
        HEAD
        + """
        network:
          - sequence: [conv: [8, 3], batch_norm: {}]
            name: stem
          - parallel:
              branches: [[conv: [4, 1]], [conv: {filters: 4, kernel: 3, padding: same}], []]
              merge: concat
            name: mix
          - residual:
              body: [conv: {filters: 32, kernel: 3, strides: 2, padding: same}, batch_norm: {}]
            name: down
          - residual: {body: [conv: {filters: 32, kernel: 3, padding: same}], shortcut: identity, activation: relu}
            name: same
          - residual: {body: [conv: {filters: 8, kernel: 1}], shortcut: [conv: [8, 1]], merge: concat}
            name: custom
          - global_avg_pool: {}
          - dense: 2
        """,
    )
    model = build_model(str(spec))
    layer_names = {layer.name for layer in model.layers}
    assert {
        "stem_conv",
        "stem_batch_norm",
        "mix_b1_conv",
        "mix_b2_conv",
        "mix_concat",
    } <= layer_names
    assert {"down_shortcut_conv", "down_shortcut_bn", "down_add"} <= layer_names  # auto projection
    assert "same_shortcut_conv" not in layer_names and "same_out" in layer_names
    assert (
        "custom_shortcut_conv" in layer_names
        and model.get_layer("custom_concat").output.shape[-1] == 16
    )
    assert model.get_layer("mix_concat").output.shape[-1] == 4 + 4 + 8
    assert model.get_layer("down_shortcut_conv").strides == (2, 2)


def test_bidirectional_and_rnn(tmp_path):
    from blockspec.builder import build_model

    spec = write(
        tmp_path,
        "spec: 1\ninput: [8, 8]\nnetwork: [bidirectional: {layer: {lstm: {units: 4, return_sequences: true}}}, gru: 3, dense: 2]\n",
    )
    model = build_model(str(spec))
    assert model.get_layer("bidirectional").output.shape[-1] == 8


def test_several_inputs(tmp_path):
    from blockspec.builder import build_model

    spec = write(
        tmp_path,
        """
        spec: 1
        inputs: {image: {shape: [8, 8, 1]}, extra: {shape: [3]}}
        network:
          - flatten: {}
            from: image
          - concat: {}
            from: [flatten, extra]
          - dense: 2
        """,
    )
    model = build_model(str(spec))
    assert [t.name for t in model.inputs] == ["image", "extra"]


def test_outputs_and_inference(tmp_path):
    from blockspec.builder import build_model

    text = (
        HEAD
        + """
    network:
      - conv: [4, 3]
        name: trunk
      - flatten: {}
      - dense: 3
        name: main
      - global_avg_pool: {}
        from: trunk
      - dense: 3
        name: aux
    outputs:
      main: {activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
      aux: {activation: softmax, loss_weight: 0.3, train_only: true}
    """
    )
    path = write(tmp_path, text)
    spec = resolve_spec(str(path))
    assert spec.output("aux").loss_weight == 0.3 and spec.output("aux").train_only
    train_model = build_model(spec)
    assert sorted(train_model.output_names) == ["aux", "main"]
    assert train_model.get_layer("main_dense") is not None  # the step yields its name to the output
    deploy = build_model(str(path), inference=True)
    assert deploy.output_names == ["main"]


def test_without_outputs_the_last_step_is_the_output(tmp_path):
    spec = resolve(tmp_path, HEAD + "network: [flatten: {}, dense: 2]\n")
    assert [(o.name, o.source) for o in spec.outputs] == [("output", "dense")]


def test_search_spaces_resolve_to_defaults(tmp_path):
    spec = resolve(
        tmp_path,
        HEAD
        + """
        vars: {rate: {tune: float, min: 1e-4, max: 1e-1, sampling: log}}
        network:
          - conv: {filters: {tune: int, min: 32, max: 256, step: 32, default: 64}, kernel: 3, activation: {tune: choice, values: [relu, gelu]}}
            name: stem
          - {tune: choice, values: [{basic_residual: {filters: {tune: int, min: 8, max: 16}}}, {bottleneck_residual: {filters: 8}}]}
          - dropout: {tune: float, min: 0.1, max: 0.5, default: 0.2}
          - global_avg_pool: {}
          - dense: 2
        train:
          optimizer: {adam: {learning_rate: $rate}}
          jit_compile: {tune: bool}
        """,
    )
    stem = spec.network[0]
    assert stem.args["filters"] == 64 and stem.args["activation"] == "relu"
    assert spec.network[1].type == "basic_residual" and spec.network[1].args["filters"] == 8
    assert spec.train["optimizer"]["adam"]["learning_rate"] == pytest.approx(1e-4)
    assert spec.train["jit_compile"] is False
    hps = {h.name: h for h in spec.hyperparameters}
    assert {
        "vars/rate",
        "stem/filters",
        "stem/activation",
        "choice",
        "choice/basic_residual/filters",
        "dropout/rate",
        "train/jit_compile",
    } <= set(hps)
    assert hps["choice/basic_residual/filters"].parent == ("choice", ("basic_residual",))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "body, pattern",
    [
        ("network: [incepton: {}]", r"unknown step type `incepton`. Did you mean `inception`\?"),
        (
            "network: [conv: {filter: 3, kernel: 3}]",
            r"unknown argument `filter` for `conv`. Did you mean `filters`\?",
        ),
        (
            "network: [conv: {kernel: 3}]",
            r"network\[0\]\.conv: missing required argument `filters` for `conv`",
        ),
        (
            "network: [conv: {filters: -3, kernel: 3}]",
            r"network\[0\]\.conv\.filters: `filters` must be positive. Received: filters=-3",
        ),
        (
            "network: [conv: {filters: three, kernel: 3}]",
            r"`filters` expected an integer. Received: filters='three'",
        ),
        (
            "network: [conv: {filters: 3, kernel: 3, padding: sam}]",
            r"`padding` expected one of 'valid', 'same'. Received: padding='sam'",
        ),
        ("network: [dense: 2, dense: 3, {dense: 4, name: dense_1}]", r"duplicate name `dense_1`"),
        (
            "network: [{dense: 2, from: nothing}]",
            r"`from` names no earlier step or input. Received: from=nothing",
        ),
        (
            "network: [{dense: 2, repeat: -1}]",
            r"`repeat` must be a non-negative integer. Received: repeat=-1",
        ),
        ("network: [{dense: 2, first: {units: 3}}]", r"`first` applies only with `repeat`"),
        (
            "network: [{dense: 2, relu: {}}]",
            r"a step has exactly one type key. Received: dense, relu",
        ),
        ("network: [relu: 3]", r"`relu` takes no scalar argument"),
        (
            "network: [dense: $clases]\nvars: {classes: 2}",
            r"unknown name `\$clases`. Did you mean `classes`\?",
        ),
        ("network: [dense: 2]\noutputs: {main: {}}", r"output `main` reads no step"),
        (
            "network: [dense: 2]\noutputs: {dense: {loss_wieght: 2}}",
            r"unknown output key `loss_wieght`. Did you mean `loss_weight`\?",
        ),
        (
            "network: [dense: 2]\nnetwrok: []",
            r"unknown top-level key `netwrok`. Did you mean `network`\?",
        ),
        (
            "network: [conv: {filters: {tune: int, min: 9, max: 3}, kernel: 3}]",
            r"invalid search space: `min` must not exceed `max`",
        ),
        (
            "network: [dense: {tune: choise, values: [1]}]",
            r"unknown search space kind. Did you mean `choice`\?",
        ),
        (
            "network: [dense: 2]\ntune: {tuner: hyperbnd}",
            r"unknown tuner. Did you mean `hyperband`\?",
        ),
        (
            "network: [{add: {}, from: input}]",
            r"Keras refused this step: `add` merges several tensors",
        ),
        ("network: [{flatten: {}, from: [input, input]}]", r"`flatten` reads one tensor"),
    ],
)
def test_error_rules(tmp_path, body, pattern):
    from blockspec.builder import build_model

    with pytest.raises(SpecError, match=pattern) as info:
        build_model(str(write(tmp_path, HEAD + body + "\n")))
    assert "net.yaml:" in str(info.value)


def test_spec_version_is_required_and_checked(tmp_path):
    assert "missing required key `spec`" in refused(tmp_path, "input: [4]\nnetwork: [dense: 2]\n")
    assert "unsupported spec version; this blockspec reads version 1. Received: spec=2" in refused(
        tmp_path, "spec: 2\ninput: [4]\nnetwork: [dense: 2]\n"
    )


def test_block_argument_errors_name_the_call_site(tmp_path):
    text = refused(
        tmp_path,
        HEAD
        + """
        blocks:
          pair:
            args: {a: null, b: 4}
            body: [conv: {filters: $a, kernel: 3}, conv: {filters: $b, kernel: 1}]
        network:
          - pair: {b: 2}
          - pair: {a: 2, c: 1}
          - pair: [1, 2, 3]
        """,
    )
    assert "network[0].pair: missing required argument `a` for block `pair`" in text
    assert "network[1].pair.c: unknown argument `c` for `pair`" in text
    assert (
        "network[2].pair: `pair` takes at most 2 positional arguments (a, b). Received: 3" in text
    )


def test_recursive_blocks_are_refused(tmp_path):
    text = refused(
        tmp_path, HEAD + "blocks:\n  a: {body: [b: {}]}\n  b: {body: [a: {}]}\nnetwork: [a: {}]\n"
    )
    assert "block `a` uses itself (a -> b -> a); blocks cannot be recursive" in text


def test_compile_errors_name_the_step_and_its_line(tmp_path):
    from blockspec.builder import build_model

    text = (
        HEAD
        + "network:\n  - conv: [4, 3]\n    name: a\n  - conv: [8, 3]\n    name: b\n  - add: {}\n    from: [a, b]\n"
    )
    with pytest.raises(
        SpecError, match=r"net.yaml:8:5 +network\[2\]\.add: Keras refused this step"
    ):
        build_model(str(write(tmp_path, text)))


def test_five_mistakes_reported_at_once_each_with_its_line(tmp_path):
    text = (Path(__file__).parent / "five_mistakes.yaml").read_text()
    with pytest.raises(SpecError) as info:
        resolve(tmp_path, text)
    problems = info.value.problems
    assert len(problems) == 5, str(info.value)
    lines = sorted(p.mark.line for p in problems)
    assert lines == [5, 6, 7, 8, 10], lines  # one message per mistake, each on its own line
    message = str(info.value)
    assert "Did you mean `kernel`?" in message and "Did you mean `batch_norm`?" in message
    assert "must be in [0, 1)" in message and "from=nowhere" in message
