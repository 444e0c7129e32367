"""Language 1.1 `in_channels`, `in_height`, `in_width`, `in_length`, `in_shape` (SPEC.md).

An expression reads the shape of its step's input. `validate` knows it from pure-Python shape
rules (`builder/shape_rules.py`) wherever every step before has one, and otherwise leaves the
expression for the build; a refusal is located either way.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from blockspec.builder import SpecError, resolve_spec
from blockspec.builder.lazy import Deferred

SE = """\
vars: {width: 1.0}
blocks:
  se:
    args: {squeeze: null, channels: $in_channels}   # a default, evaluated where the block is used
    body:
      - residual:
          shortcut: identity
          merge: multiply
          body:
            - global_avg_pool: {keepdims: true}
            - conv: {filters: $squeeze, kernel: 1, activation: relu}
            - conv: {filters: $channels, kernel: 1, activation: sigmoid}
network:
  - conv: {filters: "${int(32 * width)}", kernel: 3, padding: same}
  - se: {squeeze: "${in_channels // 4}"}
  - dense: "${in_height + in_width}"   # the SE's output: its input's shape (a broadcast multiply)
"""


def write(tmp_path, body: str, head: str = "spec: 1\ninput: [16, 16, 3]\n") -> str:
    path = tmp_path / "net.yaml"
    path.write_text(head + textwrap.dedent(body))
    return str(path)


def refused(path: str, build: bool = False) -> str:
    from blockspec.builder.compile import compile_spec

    with pytest.raises(SpecError) as info:
        spec = resolve_spec(path)
        if build:
            compile_spec(spec)
    return str(info.value)


def built(path: str, overrides=None):
    from blockspec.builder.compile import compile_spec

    return compile_spec(resolve_spec(path, overrides)).model


def channels(model, layer: str) -> int:
    return model.get_layer(layer).output.shape[-1]


def test_squeeze_excite_width_follows_a_width_multiplier(tmp_path):
    path = write(tmp_path, SE)
    for width, squeeze in ((1.0, 8), (0.5, 4)):
        spec = resolve_spec(path, {"vars.width": width})
        block = spec.network[1]
        assert block.args == {"squeeze": squeeze, "channels": 4 * squeeze}  # known at validate
        assert spec.network[2].args["units"] == 32
        model = built(path, {"vars.width": width})
        assert channels(model, "se_conv_1") == squeeze
        assert channels(model, "se_conv_2") == channels(model, "conv") == 4 * squeeze


def test_a_densenet_transition_halves_its_input_channels(tmp_path):
    body = """\
    blocks:
      unit:
        args: {growth: 4}
        body: [parallel: {branches: [[], [conv: {filters: $growth, kernel: 3, padding: same}]]}]
      transition:
        args: {}
        body:
          - conv: {filters: "${in_channels // 2}", kernel: 1}
          - avg_pool: 2
    network:
      - conv: {filters: 8, kernel: 3, padding: same}
      - unit: {}
        repeat: 3
      - transition: {}
      - dense_block: {blocks: 2, growth_rate: 6}
      - transition: {}
    """
    path = write(tmp_path, body)
    spec = resolve_spec(path)
    first, second = spec.network[4], spec.network[6]
    assert first.children[0][0].args["filters"] == (8 + 3 * 4) // 2 == 10
    assert second.children[0][0].args["filters"] == (10 + 2 * 6) // 2 == 11
    model = built(path)
    assert channels(model, "transition_1_conv") == 10
    assert channels(model, "transition_2_conv") == 11
    assert model.get_layer("transition_2_avg_pool").output.shape[1:3] == (4, 4)


def test_in_height_and_in_width_size_a_pooling(tmp_path):
    body = """\
    network:
      - conv: {filters: 4, kernel: 3, strides: 2, padding: same}
      - avg_pool:
          size: ["${in_height}", "${in_width}"]
      - dense: "${in_channels * 2}"
    """
    spec = resolve_spec(write(tmp_path, body, "spec: 1\ninput: [16, 12, 3]\n"))
    assert spec.network[1].args["size"] == [8, 6]
    assert spec.network[2].args["units"] == 8


def test_in_length_in_a_sequence_spec(tmp_path):
    body = """\
    network:
      - conv1d: {filters: 6, kernel: 3}
      - lstm: {units: "${in_length}", return_sequences: true}
      - lstm: "${in_length + in_channels}"
    """
    path = write(tmp_path, body, "spec: 1\ninput: [10, 4]\n")
    spec = resolve_spec(path)
    assert [s.args["units"] for s in spec.network[1:]] == [8, 16]
    assert built(path).get_layer("lstm_2").output.shape[-1] == 16


def test_each_repetition_reads_its_own_input(tmp_path):
    body = """\
    network:
      - conv: {filters: "${in_channels * 2}", kernel: 1}
        repeat: 3
      - max_pool: 2
        repeat: 4
        when: ${in_height > 2}
      - dense: {units: "${len}"}
        when: false
      - flatten:
        name: out${in_shape[-1] if false else in_channels}
    """
    text = refused(write(tmp_path, body))
    assert "subscripting is not allowed" in text  # `in_shape[-1]` in a name too
    body = body.replace("in_shape[-1] if false else ", "")
    spec = resolve_spec(write(tmp_path, body))
    assert [s.args["filters"] for s in spec.network[:3]] == [6, 12, 24]
    assert [s.name for s in spec.network[3:]] == ["max_pool_1", "max_pool_2", "max_pool_3", "out24"]


def test_in_shape_is_a_whole_list(tmp_path):
    body = """\
    network:
      - conv: {filters: 2, kernel: 1}
      - reshape: $in_shape
      - reshape: "${[in_height * in_width, in_channels]}"
    """
    spec = resolve_spec(write(tmp_path, body, "spec: 1\ninput: [4, 6, 3]\n"))
    assert spec.network[1].args["target_shape"] == [4, 6, 2]
    assert spec.network[2].args["target_shape"] == [24, 2]


def test_after_a_step_without_a_shape_rule_the_expression_waits_for_the_build(tmp_path):
    body = """\
    network:
      - SeparableConv2D: {filters: 6, kernel_size: 2, strides: 2}
      - conv: {filters: "${in_channels + in_height}", kernel: 1}
      - conv: {filters: "${in_channels // 2}", kernel: 1}
    """
    path = write(tmp_path, body)
    spec = resolve_spec(path)  # validate: nothing refused, the values wait
    assert isinstance(spec.network[1].args["filters"], Deferred)
    assert isinstance(spec.network[2].args["filters"], Deferred)
    model = built(path)
    assert channels(model, "conv_1") == 6 + 8
    assert channels(model, "conv_2") == 7
    # the shape check (`validate --shapes`) evaluates them too
    from blockspec.builder.shapes import check_shapes

    assert check_shapes(spec) == [] or all("output" in p.message for p in check_shapes(spec))


def test_a_waiting_value_refused_when_built_is_located(tmp_path):
    body = """\
    network:
      - Conv2DTranspose: {filters: 6, kernel_size: 2, strides: 2}
      - conv: {filters: "${in_channels - 6}", kernel: 1}
    """
    text = refused(write(tmp_path, body), build=True)
    assert re.search(
        r"net\.yaml:5:\d+  network\[1\]\.conv\.filters: `filters` must be positive\. "
        r"Received: filters=0",
        text,
    )
    body = body.replace("in_channels - 6", "in_length")
    text = refused(write(tmp_path, body), build=True)
    assert re.search(
        r"net\.yaml:5:\d+  network\[1\]\.conv\.filters: `in_length` is for a sequence", text
    )


def test_refusals_are_located(tmp_path):
    cases = {
        "in_channel // 4": r"unknown name `in_channel` in expression\. Did you mean `in_channels`",
        "in_shape[0]": r"subscripting is not allowed in expressions\. `in_shape` is passed whole; "
        r"for one axis use `in_height`, `in_width`, `in_channels` or `in_length`",
        "in_length": r"`in_length` is for a sequence \(length, channels\); the input of this "
        r"step has shape \(16, 16, 3\)",
    }
    for expression, message in cases.items():
        text = refused(
            write(tmp_path, f'network: [conv: {{filters: "${{{expression}}}", kernel: 1}}]\n')
        )
        assert re.search(r"net\.yaml:3:\d+  network\[0\]\.conv\.filters: " + message, text), text
    # A step key that shapes the network cannot wait for the build: refused by validate.
    body = """\
    network:
      - SeparableConv2D: {filters: 6, kernel_size: 2, strides: 2}
      - conv: {filters: 2, kernel: 1}
        repeat: ${in_channels}
    """
    text = refused(write(tmp_path, body))
    assert re.search(
        r"net\.yaml:6:\d+  network\[1\]\.repeat: `repeat` reads the shape of the step's input, "
        r"which `validate` cannot infer here",
        text,
    )


def test_validate_with_waiting_values_imports_no_tensorflow(tmp_path):
    import subprocess
    import sys

    path = write(
        tmp_path, "network: [Conv2DTranspose: {filters: 6, kernel_size: 2}, dense: $in_channels]\n"
    )
    code = (
        "import sys; from blockspec.builder import resolve_spec; "
        f"resolve_spec({path!r}); assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_the_shape_rules_agree_with_keras_on_every_zoo_spec():
    """Every shape `validate` infers is the one Keras builds (where it infers one)."""
    from zoo_fixtures import EXAMPLES, ZOO, shapes_only, small_overrides

    from blockspec.builder.compile import compile_spec
    from blockspec.builder.load import load_document
    from blockspec.builder.resolve.core import Resolver
    from blockspec.builder.spaces import DefaultChooser

    inferred = 0
    for path in [*ZOO, *EXAMPLES]:
        resolver = Resolver(
            load_document(str(path), small_overrides(path)), DefaultChooser(), resolver_limits()
        )
        spec = resolver.run()
        tensors = shapes_only(lambda spec=spec: dict(compile_spec(spec).tensors))
        for name, shape in resolver.shapes.items():
            if shape is None or name not in tensors:
                continue
            keras_shape = tuple(tensors[name].shape[1:])
            assert len(shape) == len(keras_shape), (path.stem, name, shape, keras_shape)
            for ours, theirs in zip(shape, keras_shape, strict=True):
                assert ours is None or ours == theirs, (path.stem, name, shape, keras_shape)
            inferred += 1
    assert inferred > 400


def resolver_limits():
    from blockspec.builder.load import DEFAULT_LIMITS

    return DEFAULT_LIMITS


BLOCK_CASES = {
    "resnet_v2_stack": "{filters: 4, blocks: 2, strides: 2}",
    "mbconv_stage": "{filters: 8, repeats: 2, strides: 2, kernel: 5}",
    "efficientnetv2_stage": "{filters: 8, repeats: 2, strides: 2, fused: true}",
    "inverted_residual": "{filters: 10, strides: 2, alpha: 0.75}",
    "mobilenet_v3_unit": "{filters: 10, expansion: 3, strides: 2, kernel: 5, block_id: 1, "
    "alpha: 0.75, se_ratio: 0.25}",
    "nasnet_reduction_cell": "{filters: 4}",
    "nasnet_normal_cell": "{filters: 8}",
    "convnext_stage": "{filters: 8, blocks: 1}",
    "inception": "{c1: 2, c3r: 2, c3: 3, c5r: 2, c5: 4, pool_proj: 5}",
    "depthwise_separable": "{filters: 8, strides: 2, alpha: 0.5}",
    "factorized_conv": "{filters: 4, kernel: 5, mode: stack3, strides: 2, padding: valid}",
    "mlpconv": "{filters: [4, 5], kernel: 3, strides: 2}",
}


@pytest.mark.parametrize("side", [15, 16])
@pytest.mark.parametrize("block", sorted(BLOCK_CASES))
def test_each_built_in_blocks_shape_rule_agrees_with_keras(block, side, tmp_path):
    """The built-in Python blocks declare shape rules too: `validate` knows `in_channels` after
    them, and the shape it infers is the one Keras builds, on odd and even sides."""
    from zoo_fixtures import shapes_only

    from blockspec.builder.compile import compile_spec
    from blockspec.builder.load import load_document
    from blockspec.builder.resolve.core import Resolver
    from blockspec.builder.spaces import DefaultChooser

    body = f"network:\n  - {block}: {BLOCK_CASES[block]}\n    name: b\n  - dense: $in_channels\n"
    if block.startswith("nasnet"):  # a cell reads the last two: `from: [x, p]`
        body = body.replace(
            "network:\n",
            "network:\n  - conv: {filters: 6, kernel: 1}\n    name: p\n"
            "  - conv: {filters: 8, kernel: 1}\n    name: x\n",
        ).replace("    name: b\n", "    name: b\n    from: [x, p]\n")
    path = write(tmp_path, body, f"spec: 1\ninput: [{side}, {side}, 8]\n")
    resolver = Resolver(load_document(path), DefaultChooser(), resolver_limits())
    spec = resolver.run()
    inferred = resolver.shapes["b"]
    assert inferred is not None and None not in inferred
    assert spec.network[-1].args["units"] == inferred[-1]  # known to validate, not deferred
    tensors = shapes_only(lambda: dict(compile_spec(spec).tensors))
    assert inferred == tuple(tensors["b"].shape[1:])


def test_every_built_in_step_type_has_a_shape_rule():
    """What the reference says: after any built-in step `validate` knows the shape."""
    import blockspec.blocks  # noqa: F401  (registers the built-in types)
    from blockspec.builder import registry
    from blockspec.builder.shape_rules import RULES

    built_in = [e for e in registry.all_types().values() if e.source.startswith("blockspec.")]
    missing = [
        e.name
        for e in built_in
        if e.kind != "combinator" and e.name not in RULES and "shape" not in e.extra
    ]
    assert len(built_in) > 50 and missing == []


def test_after_a_refused_step_in_shapes_are_not_refused_again(tmp_path):
    """The refused step is the problem: what reads its output's shape says nothing more (it
    said "a step before it has no shape rule")."""
    body = """\
    network:
      - conv: {filters: -4, kernel: 3}
      - conv: {filters: "${in_channels * 2}", kernel: 1}
        repeat: ${in_channels // 4}
      - dense: $in_channels
    """
    text = refused(write(tmp_path, body))
    assert "1 problem in spec" in text and "`filters` must be positive" in text
