"""Registry-driven: every registered step type builds, gives finite outputs, passes gradients to
every trainable weight, and survives a `.keras` save/load round trip. A new block is tested here
with no new test code (its required arguments are filled from their types)."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from blockspec.builder import registry
from blockspec.builder.registry import Kernel, Param, Positive

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

IMAGE = [12, 12, 4]
# Inputs for step types that do not read images.
INPUTS = {
    "conv1d": [10, 4],
    "conv3d": [6, 6, 6, 2],
    "lstm": [8, 4],
    "gru": [8, 4],
    "simple_rnn": [8, 4],
    "bidirectional": [8, 4],
    "embedding": {"tokens": {"shape": [8], "dtype": "int32"}},
    "dense": [6],
    "layer_norm": [6],
    "dropout": [6],
    "backbone": [12, 12, 3],
}
# Arguments where generated ones would not make sense.
ARGS = {
    "reshape": {"target_shape": [144, 4]},
    "embedding": {"input_dim": 20, "output_dim": 4},
    "sequence": {"steps": [{"conv": {"filters": 4, "kernel": 3}}, {"batch_norm": {}}]},
    "parallel": {
        "branches": [
            [{"conv": {"filters": 4, "kernel": 1}}],
            [{"max_pool": {"size": 3, "strides": 1, "padding": "same"}}],
        ]
    },
    "residual": {
        "body": [
            {"conv": {"filters": 8, "kernel": 3, "strides": 2, "padding": "same"}},
            {"batch_norm": {}},
        ]
    },
    "bidirectional": {"layer": {"lstm": {"units": 4}}},
    "mlpconv": {"filters": [8, 6, 4], "kernel": 3},
    "aux_classifier": {"classes": 3, "pool_size": 3, "pool_strides": 2, "filters": 8, "units": 16},
    "dropout": {"rate": 0.5},
    "activation": {"activation": "relu"},
    "rescaling": {"scale": 0.5},
    "conv": {"filters": 4, "kernel": 3, "factorize": "stack3"},
    "Conv2DTranspose": {"filters": 4, "kernel_size": 3, "strides": 2},
    "backbone": {"spec": "resnet18", "until": "pool1"},
}
MULTI = (
    "add",
    "concat",
    "multiply",
    "average",
    "maximum",
    "nasnet_normal_cell",
    "nasnet_reduction_cell",
)


def _sample(param: Param):
    annotation = param.annotation
    if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType):
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is list:
        return [4, 4]
    return {int: 4, float: 0.5, str: "relu", bool: True}.get(annotation, 4)


def _case(name: str, entry) -> dict:
    if name in ARGS:
        args = dict(ARGS[name])
    else:
        args = {k: _sample(p) for k, p in entry.params.items() if p.required}
    shape = INPUTS.get(name, IMAGE)
    spec = {"spec": 1, "name": f"t_{name}"}
    if isinstance(shape, dict):
        spec["inputs"] = shape
    else:
        spec["input"] = shape
    if name in MULTI:
        spec["network"] = [
            {"conv": {"filters": 4, "kernel": 1}, "name": "a"},
            {"conv": {"filters": 4, "kernel": 3, "padding": "same"}, "name": "b", "from": "input"},
            {name: args, "from": ["a", "b"]},
        ]
    else:
        spec["network"] = [{name: args}]
    return spec


def _cases():
    return sorted(registry.all_types()) + ["Conv2DTranspose"]


def _sample_input(model):
    rng = np.random.default_rng(0)
    shape = (2, *model.inputs[0].shape[1:])
    if model.inputs[0].dtype.startswith("int"):
        return rng.integers(0, 20, size=shape).astype("int32")
    return rng.normal(size=shape).astype("float32")


@pytest.mark.parametrize("name", _cases())
def test_every_step_type_builds_trains_and_round_trips(name, tmp_path):
    from blockspec.builder import build_model

    entry = registry.get(name)
    model = build_model(_case(name, entry))
    x = _sample_input(model)
    out = model(x, training=False)["output"]
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(out))), f"{name}: non-finite output"

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    again = loaded(x, training=False)["output"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(again), atol=1e-6
    )

    # Training-mode call last: it moves batch-norm statistics.
    with tf.GradientTape() as tape:
        y = model(x, training=True)["output"]
        loss = tf.reduce_sum(tf.square(tf.cast(y, "float32")))
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads, strict=True) if g is None]
    assert not missing, f"{name}: no gradient for {missing}"


def test_every_keras_layer_name_of_a_step_starts_with_the_step_name():
    from blockspec.builder.compile import compile_spec
    from blockspec.builder.resolve import resolve_spec

    built = compile_spec(resolve_spec("googlenet", {"vars.classes": 10, "input": [96, 96, 3]}))
    prefixes = (
        [s.name for s in built.spec.network]
        + [i.name for i in built.spec.inputs]
        + [o.name for o in built.spec.outputs]
    )
    for layer in built.model.layers:
        assert any(layer.name == p or layer.name.startswith(p + "_") for p in prefixes), layer.name


def test_keras_layer_table_matches_installed_keras():
    import json
    from pathlib import Path

    from tools.gen_keras_layers import keras_layer_table

    committed = json.loads((Path(registry.__file__).with_name("keras_layers.json")).read_text())[
        "layers"
    ]
    live = keras_layer_table()
    assert set(committed) <= set(live), (
        "keras_layers.json names layers this Keras lacks: regenerate it"
    )
    for name in ("Conv2D", "Dense", "BatchNormalization", "LSTM"):
        assert set(committed[name]) == set(live[name]), name


def test_lrn_matches_caffe_formula():
    from blockspec.blocks.lrn import LocalResponseNormalization

    x = np.random.default_rng(1).normal(size=(1, 2, 2, 7)).astype("float32")
    got = keras.ops.convert_to_numpy(
        LocalResponseNormalization(size=5, alpha=1e-2, beta=0.75, k=2.0)(x)
    )
    expected = np.empty_like(x)
    for c in range(7):
        lo, hi = max(0, c - 2), min(7, c + 3)
        scale = 2.0 + (1e-2 / 5) * np.sum(x[..., lo:hi] ** 2, axis=-1)
        expected[..., c] = x[..., c] / scale**0.75
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_factorize_replaces_kernels_as_spec_says():
    from blockspec.builder import build_model

    def conv_weights(factorize, kernel, padding="valid"):
        spec = {
            "spec": 1,
            "input": [15, 15, 2],
            "network": [
                {
                    "conv": {
                        "filters": 3,
                        "kernel": kernel,
                        "factorize": factorize,
                        "padding": padding,
                    }
                }
            ],
        }
        model = build_model(spec)
        kernels = [w for w in model.weights if w.path.endswith("kernel")]
        return model.outputs[0].shape, sum(int(np.prod(k.shape)) for k in kernels)

    # 5x5 -> two 3x3: 25 -> 18 weights per channel pair; valid padding keeps the output shape.
    assert conv_weights("none", 5)[1] == 25 * 2 * 3
    shape, weights = conv_weights("stack3", 5)
    assert weights == 9 * 2 * 3 + 9 * 3 * 3 and shape == conv_weights("none", 5)[0]
    # 3x3 -> 1x3 then 3x1.
    shape, weights = conv_weights("asymmetric", 3)
    assert weights == 3 * 2 * 3 + 3 * 3 * 3 and shape == conv_weights("none", 3)[0]
    # 7x7 stack3 -> three 3x3; a 1x1 stays as it is.
    assert conv_weights("stack3", 7)[1] == 9 * 2 * 3 + 2 * 9 * 3 * 3
    assert conv_weights("stack3", 1)[1] == 1 * 2 * 3


# ----------------------------------------------------------------------------- declared rules


def _validate(network: list, **extra):
    from blockspec.builder.errors import SpecError
    from blockspec.builder.resolve import resolve_spec

    spec = {"spec": 1, "input": [16, 16, 3], "network": network, **extra}
    with pytest.raises(SpecError) as info:
        resolve_spec(spec)
    return [(p.path, p.message) for p in info.value.problems]


@pytest.mark.parametrize(
    "step, path, message",
    [
        (
            {"conv": {"filters": 4, "kernel": 4, "factorize": "stack3"}},
            "network[0].conv.kernel",
            "`kernel` must be odd when `factorize` is stack3",
        ),
        (
            {"conv_bn": {"filters": 4, "kernel_size": 6, "factorize": "stack3"}},
            "network[0].conv_bn.kernel_size",
            "`kernel` must be odd when `factorize` is stack3",
        ),
        (
            {"factorized_conv": {"filters": 4, "kernel": 6, "mode": "stack3"}},
            "network[0].factorized_conv.kernel",
            "must be odd",
        ),
        ({"lrn": {"size": 4}}, "network[0].lrn.size", "`size` must be odd. Received: size=4"),
        ({"lrn": 0}, "network[0].lrn.size", "`size` must be positive"),
        (
            {"classifier": {"classes": 3, "units": [8, 0]}},
            "network[0].classifier.units",
            "positive",
        ),
        ({"dropout": 1.0}, "network[0].dropout.rate", "`rate` must be in [0, 1)"),
    ],
)
def test_declared_rules_are_refused_by_validate(step, path, message):
    problems = _validate([step])
    assert any(p == path and message in m for p, m in problems), problems


def test_a_rule_reads_the_defaults_section():
    problems = _validate(
        [{"conv": {"filters": 4, "kernel": 4}}], defaults={"conv": {"factorize": "stack3"}}
    )
    assert problems == [
        (
            "network[0].conv.kernel",
            "`kernel` must be odd when `factorize` is stack3 (a stack of 3x3s covers odd sizes "
            "only). Received: kernel=4",
        )
    ]


def test_stack3_leaves_small_and_rectangular_kernels_alone():
    from blockspec.builder.resolve import resolve_spec

    for kernel in (2, [1, 4], 3, 7):
        resolve_spec(
            {
                "spec": 1,
                "input": [16, 16, 3],
                "network": [{"conv": {"filters": 4, "kernel": kernel, "factorize": "stack3"}}],
            }
        )


def test_keras_names_are_aliases():
    from blockspec.builder.resolve import resolve_spec

    spec = resolve_spec(
        {
            "spec": 1,
            "input": [16, 16, 3],
            "defaults": {"conv": {"kernel_size": 5}},
            "network": [
                {"conv": {"filters": 4}},
                {"conv": {"filters": 4, "kernel_size": 3}},
                {"max_pool": {"pool_size": 3}},
                {"conv_bn": {"filters": 4, "kernel_size": 1}},
            ],
        }
    )
    assert [s.args.get("kernel", s.args.get("size")) for s in spec.network] == [5, 3, 3, 1]
    assert registry.get("conv").aliases == {"kernel_size": "kernel"}
    assert registry.get("max_pool").aliases == {"pool_size": "size"}
    problems = _validate([{"conv": {"filters": 4, "kernel": 3, "kernel_size": 3}}])
    assert problems == [
        (
            "network[0].conv.kernel_size",
            "`kernel_size` is Keras' name for `kernel`: give one of them, not both",
        )
    ]


@pytest.mark.parametrize(
    "step",
    [
        {"StringLookup": {"vocabulary": "/etc/passwd"}},
        {"StringLookup": {"vocabulary": "vocab.txt"}},
        {"IntegerLookup": {"vocabulary": "/dev/zero"}},
        {"TextVectorization": {"vocabulary": ["a"], "split": "../x"}},
        {"conv": {"filters": 4, "kernel": 3, "kernel_initializer": "~/init"}},
    ],
)
def test_arguments_that_name_files_are_refused(step):
    (problem,) = _validate([step])
    assert "names a file" in problem[1] and "a spec reads no files but specs" in problem[1]


def test_inline_vocabularies_are_fine():
    from blockspec.builder.resolve import resolve_spec

    resolve_spec(
        {
            "spec": 1,
            "inputs": {"words": {"shape": [4], "dtype": "string"}},
            "network": [{"StringLookup": {"vocabulary": ["a", "b", "c"]}}],
        }
    )


def test_keras_object_configs_that_import_modules_are_refused_in_raw_keras_arguments():
    (problem,) = _validate(
        [
            {
                "Conv2DTranspose": {
                    "filters": 4,
                    "kernel_size": 3,
                    "kernel_initializer": {"class_name": "system", "module": "os"},
                }
            }
        ]
    )
    assert "names a Keras object by `module`" in problem[1]


def test_one_register_path_and_its_alias_keep_working():
    from blockspec.builder.registry import RegistryError, register, register_block

    # Hints are read from the module's globals (`from __future__ import annotations`).

    @register("t_rule_block", primary="filters")
    def t_rule_block(x, *, filters: Positive, kernel: Kernel = 3, name: str):
        return x

    entry = registry.get("t_rule_block")
    assert entry.kind == "block" and list(entry.params) == ["filters", "kernel"]
    assert entry.aliases == {"kernel_size": "kernel"}
    assert [c.message for c in entry.params["filters"].constraints] == ["must be positive"]
    with pytest.raises(RegistryError, match="already registered"):
        register_block("t_rule_block")(t_rule_block)
    problems = _validate([{"t_rule_block": {"filters": -1, "kernel_size": 0}}])
    assert sorted(p for p, _ in problems) == [
        "network[0].t_rule_block.filters",
        "network[0].t_rule_block.kernel_size",
    ]
    registry._REGISTRY.pop("t_rule_block")
