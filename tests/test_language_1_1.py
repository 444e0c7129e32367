"""Language 1.1 (SPEC.md): `when`, `repeat: 0`, `last`, `shortcut: none`, `$` for steps and names,
`${...}` in `name` and `from`, `in_*` shapes, a scalar for a one-argument block, `trainable`; and
the resolver bugs of issue 14 (each refusal located: file:line:col and spec path)."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pytest

from blockspec.builder import SpecError, resolve_spec

HEAD = "spec: 1\ninput: [16, 16, 3]\n"
DOC = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
DOC_SECTION = "## Blocks that take steps, names and shapes"


def resolve(tmp_path, body: str, overrides=None):
    path = tmp_path / "net.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    return resolve_spec(str(path), overrides)


def refused(tmp_path, body: str) -> str:
    with pytest.raises(SpecError) as info:
        resolve(tmp_path, body)
    return str(info.value)


def flat(steps):
    """Every step, depth first: (name, type)."""
    out = []
    for step in steps:
        out.append((step.name, step.type))
        for children in step.children:
            out += flat(children)
    return out


def params(spec) -> int:
    from blockspec.builder.compile import compile_spec

    return compile_spec(spec).model.count_params()


# ----------------------------------------------------------------------------- vars


def test_a_var_may_read_a_var_defined_later(tmp_path):
    spec = resolve(tmp_path, 'vars: {a: "${b * 2}", b: $c, c: 3}\nnetwork: [dense: $a]\n')
    assert spec.network[0].args["units"] == 6


def test_vars_that_read_each_other_in_a_cycle_are_refused_located(tmp_path):
    text = refused(tmp_path, 'vars: {x: $y, y: "${x + 1}", z: $z}\nnetwork: [dense: 2]\n')
    assert re.search(
        r"net\.yaml:3:\d+  vars\.y: vars read each other in a cycle: x -> y -> x", text
    )
    assert re.search(r"net\.yaml:3:\d+  vars\.z: vars read each other in a cycle: z -> z", text)
    assert "unknown name" not in text


# ----------------------------------------------------------------------------- when, repeat: 0


def test_when_drops_a_step_and_each_repetition(tmp_path):
    spec = resolve(
        tmp_path,
        """\
        vars: {pool: false}
        network:
          - conv: {filters: 4, kernel: 3}
          - max_pool: 2
            when: $pool
          - dense: 3
            repeat: 4
            name: d
            when: ${i % 2 == 1}
        """,
    )
    assert [n for n, _ in flat(spec.network)] == ["conv", "d_2", "d_4"]
    # the repetition that survives first reads the previous step; numbering stays per repetition
    assert spec.network[1].sources is None


def test_repeat_zero_gives_no_step(tmp_path):
    spec = resolve(tmp_path, "network: [{conv: {filters: 4, kernel: 3}, repeat: 0}, dense: 2]\n")
    assert flat(spec.network) == [("dense", "dense")]
    assert "non-negative integer. Received: repeat=-2" in refused(
        tmp_path, "network: [{dense: 2, repeat: -2}]\n"
    )


def test_an_empty_branch_or_shortcut_is_the_identity(tmp_path):
    spec = resolve(
        tmp_path,
        """\
        network:
          - conv: {filters: 3, kernel: 1}
          - residual:
              body: [{conv: {filters: 3, kernel: 3, padding: same}, repeat: 0}]
              shortcut: [{conv: {filters: 3, kernel: 1}, when: false}]
        """,
    )
    assert spec.network[1].children == [[], []]
    assert params(spec) == 12


def test_from_or_output_naming_a_dropped_step_is_refused_with_both_places(tmp_path):
    text = refused(
        tmp_path,
        """\
        network:
          - conv: {filters: 4, kernel: 3}
            name: extra
            when: false
          - dense: 2
            from: extra
        outputs:
          out: {from: extra}
        """,
    )
    assert re.search(
        r"net\.yaml:8:5  network\[1\]\.from: `from` names step `extra`, which does not exist "
        r"here: its `when` is false or its `repeat` is 0 \(at \S*net\.yaml:4:5\)",
        text,
    )
    assert re.search(r"net\.yaml:10:\d+  outputs\.out\.from: output `out` reads step `extra`", text)


def test_when_must_be_true_or_false(tmp_path):
    text = refused(tmp_path, "network:\n  - dense: 2\n    when: ${1 + 1}\n")
    assert re.search(r"net\.yaml:5:5  network\[0\]\.when: `when` must be true or false", text)
    assert "Received: when=2" in text


def test_a_network_left_empty_is_refused(tmp_path):
    text = refused(tmp_path, "network: [{dense: 2, when: false}]\n")
    assert "leaves out every step of `network`" in text and "net.yaml:3:" in text


# ----------------------------------------------------------------------------- first, last


def test_last_overrides_the_last_repetition_and_first_then_last_with_one(tmp_path):
    spec = resolve(
        tmp_path,
        """\
        network:
          - conv: {filters: 4, kernel: 3, padding: same}
            repeat: 3
            first: {strides: 2}
            last: {filters: 8}
          - dense: 2
            repeat: 1
            first: {units: 3}
            last: {units: 5}
        """,
    )
    convs = spec.network[:3]
    assert [c.args["strides"] for c in convs] == [2, 1, 1]
    assert [c.args["filters"] for c in convs] == [4, 4, 8]
    assert spec.network[3].args["units"] == 5
    assert "`last` applies only with `repeat`" in refused(
        tmp_path, "network: [{dense: 2, last: {units: 3}}]\n"
    )


def test_an_error_inside_first_points_at_the_first_entry(tmp_path):
    text = refused(
        tmp_path,
        """\
        network:
          - conv: {filters: 4, kernel: 3}
            repeat: 2
            first: {strides: -2, kernal: 3}
        """,
    )
    assert re.search(
        r"net\.yaml:6:13  network\[0\]\.first\.strides: `strides` must be positive", text
    )
    assert re.search(r"net\.yaml:6:\d+  network\[0\]\.first\.kernal: unknown argument", text)


# ----------------------------------------------------------------------------- residual


RESIDUAL = """\
vars: {sc: none}
network:
  - conv: {filters: 4, kernel: 1}
  - residual:
      body: [conv: {filters: 4, kernel: 3, padding: same}]
      shortcut: $sc
      activation: relu
"""


def test_shortcut_none_is_the_body_alone(tmp_path):
    spec = resolve(tmp_path, RESIDUAL)
    assert spec.network[1].args["shortcut"] == "none" and len(spec.network[1].children) == 1
    model_none = params(spec)
    spec = resolve(tmp_path, RESIDUAL, {"vars.sc": "identity"})
    assert spec.network[1].args["shortcut"] == "identity"
    assert model_none == params(spec) == 16 + 148
    from blockspec.builder.compile import compile_spec

    names = [layer.name for layer in compile_spec(resolve(tmp_path, RESIDUAL)).model.layers]
    assert "residual_add" not in names and "residual_out" in names


def test_a_dollar_name_in_shortcut_that_names_nothing_says_so(tmp_path):
    text = refused(tmp_path, RESIDUAL.replace("shortcut: $sc", "shortcut: $shortcut"))
    assert re.search(
        r"net\.yaml:8:7  network\[1\]\.residual\.shortcut: unknown name `\$shortcut`", text
    )
    text = refused(tmp_path, RESIDUAL.replace("{sc: none}", "{sc: sideways}"))
    assert "`shortcut` is auto, identity, none or a list of steps" in text


# ----------------------------------------------------------------------------- blocks


def test_a_one_argument_block_takes_a_scalar_or_a_name(tmp_path):
    spec = resolve(
        tmp_path,
        """\
        vars: {w: 6}
        blocks:
          unit:
            args: {width: null}
            body: [conv: {filters: $width, kernel: 1}]
        network: [unit: 4, unit: $w, unit: [5]]
        """,
    )
    assert [s.children[0][0].args["filters"] for s in spec.network] == [4, 6, 5]


def test_trainable_false_freezes_the_steps_layers(tmp_path):
    from blockspec.builder.compile import compile_spec

    spec = resolve(
        tmp_path,
        """\
        network:
          - conv_bn: {filters: 4, kernel: 3}
            name: stem
            trainable: false
          - conv: {filters: 2, kernel: 1}
            name: head
        """,
    )
    model = compile_spec(spec).model
    frozen = {layer.name for layer in model.layers if not layer.trainable}
    assert frozen and all(name.startswith("stem") for name in frozen)
    assert model.get_layer("head").trainable
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert trainable == 4 * 2 + 2  # only the head's kernel and bias
    text = refused(tmp_path, "network:\n  - dense: 2\n    trainable: maybe\n")
    assert re.search(
        r"net\.yaml:5:5  network\[0\]\.trainable: `trainable` must be true or false", text
    )


def test_every_example_in_the_language_1_1_doc_resolves(tmp_path):
    section = DOC.read_text().split(DOC_SECTION, 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert len(examples) == 3
    for index, text in enumerate(examples):
        path = tmp_path / f"example{index}.yaml"
        path.write_text(text)
        assert resolve_spec(str(path)).network


# ----------------------------------------------------------------------------- issue 14 bugs


def test_a_misspelt_keras_class_name_gets_a_did_you_mean(tmp_path):
    text = refused(tmp_path, "network: [Conv2d: {filters: 2, kernel_size: 3}]\n")
    assert re.search(
        r"net\.yaml:3:\d+  network\[0\]\.Conv2d: unknown step type `Conv2d`\. Did you mean "
        r"`Conv2D`",
        text,
    )
    assert "Did you mean `Conv2DTranspose`" in refused(
        tmp_path, "network: [Conv2DTranspos: {filters: 2, kernel_size: 3}]\n"
    )


def test_an_axis_out_of_range_is_refused_where_it_is_written(tmp_path):
    from blockspec.builder.compile import compile_spec

    text = refused(tmp_path, "network: [conv: {filters: 2, kernel: 1}, layer_norm: {axis: 5}]\n")
    assert re.search(
        r"net\.yaml:3:\d+  network\[1\]\.layer_norm\.axis: `axis` is out of range: the input of "
        r"this step has shape \(16, 16, 2\) after the batch axis, so its axes are -4 to 3\. "
        r"Received: axis=5",
        text,
    )
    # After a step `validate` has no shape rule for, the build refuses it, located at the step.
    spec = resolve(
        tmp_path, "network: [SeparableConv2D: {filters: 2, kernel_size: 1}, softmax: -5]\n"
    )
    with pytest.raises(SpecError) as info:
        compile_spec(spec)
    assert re.search(
        r"net\.yaml:3:\d+  network\[1\]\.softmax: `axis` is out of range", str(info.value)
    )
    assert "tuple index" not in str(info.value)


def test_a_yaml_merge_key_gives_way_to_the_mappings_own_keys(tmp_path):
    spec = resolve(
        tmp_path,
        """\
        vars:
          a: &a {filters: 2, kernel: 3, padding: same}
          b: &b {filters: 5, strides: 2}
        network:
          - conv: {<<: *a, filters: 4}
          - conv:
              <<: [*b, *a]
              kernel: 1
        """,
    )
    assert [(s.args["filters"], s.args["kernel"], s.args["strides"]) for s in spec.network] == [
        (4, 3, 1),
        (5, 1, 2),  # of two merged mappings, the first wins (YAML's merge)
    ]
    text = refused(
        tmp_path, "vars: {a: &a {f: 1}}\nnetwork: [dense: {<<: *a, units: 2, units: 3}]\n"
    )
    assert re.search(r"net\.yaml:4:\d+  network\[0\]\.dense\.units: duplicate key `units`", text)


def test_nested_merge_keys_keep_yamls_order_whatever_the_pyyaml_release():
    # PyYAML 6.0.2 and 6.0.4 order the pairs of `<<: [*a, *b]` differently; blockspec merges
    # itself, so both read the same: own keys first, then each merged mapping in order, and a
    # merged mapping's own keys before those it merges in turn.
    from blockspec.builder.yaml_read import parse_yaml

    data = parse_yaml(
        textwrap.dedent(
            """\
            a: &a {k: 1, only_a: x}
            b: &b {<<: *a, k: 2}
            ab: {<<: [*a, *b]}
            ba: {<<: [*b, *a]}
            own: {<<: [*b, *a], k: 3}
            "=": {= : 4}
            """
        ),
        "m.yaml",
    ).data
    assert data["b"] == {"k": 2, "only_a": "x"}
    assert data["ab"]["k"] == 1 and data["ba"]["k"] == 2 and data["own"]["k"] == 3
    assert data["ba"]["only_a"] == "x"
    assert data["="] == {"=": 4}  # a plain `=` is text, as PyYAML reads it
    with pytest.raises(SpecError, match=r"m\.yaml:1:\d+  c: invalid merge key"):
        parse_yaml("c: {<<: [3]}\n", "m.yaml")
    with pytest.raises(SpecError, match="refused \\(limit\\)"):
        parse_yaml("a: &a {<<: *a}\n", "m.yaml")  # a mapping that merges itself


def test_summary_counts_a_dense_on_a_feature_map_as_a_convolution(tmp_path):
    from blockspec.builder.compile import compile_spec
    from blockspec.views.summary import stats

    spec = resolve(
        tmp_path,
        """\
        network:
          - conv: {filters: 8, kernel: 4, strides: 4}
          - layer_norm:
          - dense: 32          # ConvNeXt's pointwise layers: a Dense on (batch, h, w, c)
          - dense: 8
          - global_avg_pool:
          - dense: 10
        """,
    )
    numbers = stats(compile_spec(spec))
    assert numbers.fc_params == 8 * 10 + 10
    assert numbers.conv_params == (4 * 4 * 3 * 8 + 8) + (8 * 32 + 32) + (32 * 8 + 8)


def test_an_outputs_from_interpolates_like_a_steps_from(tmp_path):
    spec = resolve(
        tmp_path,
        """\
        vars: {levels: 2}
        network:
          - conv: {filters: 4, kernel: 3}
            name: head${levels}
          - global_avg_pool: {}
          - dense: 3
        outputs:
          main: {from: "head${levels}", loss: mse}
        """,
    )
    assert spec.outputs[0].source == "head2"
    text = refused(
        tmp_path,
        """\
        vars: {levels: 2}
        network:
          - conv: {filters: 4, kernel: 3}
            name: head${levels}
        outputs:
          main: {from: "head${levels + 1}", loss: mse}
          bad: {from: "head${nope}", loss: mse}
        """,
    )
    assert re.search(r"net\.yaml:8:\d+  outputs\.main\.from: .*Did you mean `head2`", text)
    assert re.search(r"net\.yaml:9:\d+  outputs\.bad\.from: unknown name `nope`", text)


def test_a_template_inside_a_longer_string_argument_stays_text_and_is_warned_of(tmp_path):
    spec = resolve(
        tmp_path,
        """\
        vars: {n: 2}
        network:
          - nasnet_normal_cell: {filters: 4, block_id: "cell_${n}"}
          - nasnet_normal_cell: {filters: 4, block_id: "${n}"}
        """,
    )
    assert [s.args["block_id"] for s in spec.network] == ["cell_${n}", 2]  # as the language says
    (warning,) = spec.warnings
    assert str(warning.mark).endswith("net.yaml:5:38")  # the key `block_id`
    assert warning.path == "network[0].nasnet_normal_cell.block_id"
    assert "only `name` and `from` interpolate" in warning.message
