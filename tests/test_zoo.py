"""The zoo: each spec in `specs/` is the network it names, proven against published references.

- Parameter counts at the full input equal the published numbers exactly. Counting builds the
  model inside `keras.StatelessScope(initialize_variables=False)`: the variables get shapes but no
  values, so a 138M-parameter VGG counts in well under a second.
- Numerical equivalence: the weights of keras.applications models (random, `weights=None`) are
  copied into the spec-built model, which then gives the same logits.
- Every spec in `specs/` and `specs/examples/` builds at a small input and takes a training step.

Where the numbers come from: docs/zoo.md.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from zoo_fixtures import EXAMPLES, ZOO, parameter_counts
from zoo_fixtures import shapes_only as _shapes_only
from zoo_fixtures import small_overrides as _small_overrides
from zoo_fixtures import spec_id as _spec_id

from blockspec import cli
from blockspec.builder import build_model, resolve_spec
from blockspec.builder.compile import compile_spec
from blockspec.builder.load import load_document
from blockspec.views.summary import stats

# spec, overrides, inference, trainable, total (count_params(): batch-norm moving statistics too)
COUNTS = [
    # Krizhevsky et al. 2012: conv 2,334,080 + FC 58,631,144 (grouped conv2/4/5, as the two GPUs)
    pytest.param("alexnet", {}, False, 60_965_224, 60_965_224, id="alexnet"),
    pytest.param("alexnet", {"vars.groups": 1}, False, 62_378_344, 62_378_344, id="alexnet-1gpu"),
    # keras.applications.VGG16/VGG19 and torchvision vgg11..vgg19
    pytest.param("vgg11", {}, False, 132_863_336, 132_863_336, id="vgg11"),
    pytest.param("vgg13", {}, False, 133_047_848, 133_047_848, id="vgg13"),
    pytest.param("vgg16", {}, False, 138_357_544, 138_357_544, id="vgg16"),
    pytest.param("vgg19", {}, False, 143_667_240, 143_667_240, id="vgg19"),
    # torchvision vgg*_bn (trainable = torchvision's count; Keras adds the moving statistics)
    pytest.param("vgg11_bn", {}, False, 132_868_840, 132_874_344, id="vgg11_bn"),
    pytest.param("vgg13_bn", {}, False, 133_053_736, 133_059_624, id="vgg13_bn"),
    pytest.param("vgg16_bn", {}, False, 138_365_992, 138_374_440, id="vgg16_bn"),
    pytest.param("vgg19_bn", {}, False, 143_678_248, 143_689_256, id="vgg19_bn"),
    # Caffe model zoo: nin_imagenet and cifar10_nin
    pytest.param("nin", {}, False, 7_595_176, 7_595_176, id="nin"),
    pytest.param("nin_cifar", {}, False, 966_986, 966_986, id="nin_cifar"),
    # bvlc_googlenet: with both auxiliary classifiers for training, without them for inference
    pytest.param("googlenet", {}, False, 13_378_280, 13_378_280, id="googlenet"),
    pytest.param("googlenet", {}, True, 6_998_552, 6_998_552, id="googlenet-inference"),
    # torchvision resnet18/resnet34
    pytest.param("resnet18", {}, False, 11_689_512, 11_699_112, id="resnet18"),
    pytest.param("resnet34", {}, False, 21_797_672, 21_814_696, id="resnet34"),
    # keras.applications ResNet50/101/152 (v1)
    pytest.param("resnet50", {}, False, 25_583_592, 25_636_712, id="resnet50"),
    pytest.param("resnet101", {}, False, 44_601_832, 44_707_176, id="resnet101"),
    pytest.param("resnet152", {}, False, 60_268_520, 60_419_944, id="resnet152"),
    # v1.5 is torchvision's resnet50/101/152: stride on the 3x3, no conv bias
    pytest.param(
        "resnet50", {"vars.variant": "v1.5"}, False, 25_557_032, 25_610_152, id="r50-v1.5"
    ),
    pytest.param(
        "resnet101", {"vars.variant": "v1.5"}, False, 44_549_160, 44_654_504, id="r101-v1.5"
    ),
    pytest.param(
        "resnet152", {"vars.variant": "v1.5"}, False, 60_192_808, 60_344_232, id="r152-v1.5"
    ),
    # keras.applications.InceptionV3
    pytest.param("inception_v3", {}, False, 23_817_352, 23_851_784, id="inception_v3"),
]


@pytest.mark.parametrize("spec, overrides, inference, trainable, total", COUNTS)
def test_parameter_count(spec, overrides, inference, trainable, total):
    assert parameter_counts(spec, overrides, inference) == (trainable, total)


def _stats(spec: str, overrides=None, inference: bool = False):
    return _shapes_only(lambda: stats(compile_spec(resolve_spec(spec, overrides), inference)))


def test_alexnet_neurons_are_the_seeds():
    steps = {s.name: s for s in _stats("alexnet").steps}
    neurons = [steps[n].neurons for n in ("conv1", "conv2", "conv3", "conv4", "conv5")]
    neurons += [steps[n].neurons for n in ("fc6", "fc7", "fc8")]
    assert neurons == [290_400, 186_624, 64_896, 64_896, 43_264, 4_096, 4_096, 1_000]


def test_nin_pools_round_up_like_caffe():
    steps = {s.name: s for s in _stats("nin").steps}
    assert [steps[n].shape[:2] for n in ("pool1", "pool2", "pool3")] == [(27, 27), (13, 13), (6, 6)]
    steps = {s.name: s for s in _stats("nin_cifar").steps}
    assert [steps[n].shape[:2] for n in ("pool1", "pool2")] == [(16, 16), (8, 8)]


def _caffe_pool(x: np.ndarray, op: str, size: int = 3, stride: int = 2) -> np.ndarray:
    """Caffe's pooling without padding: sizes rounded up, a mean over the part inside the map."""
    _, h, w, _ = x.shape
    rows, cols = -(-(h - size) // stride) + 1, -(-(w - size) // stride) + 1
    out = np.empty((x.shape[0], rows, cols, x.shape[3]), x.dtype)
    for i in range(rows):
        for j in range(cols):
            window = x[:, i * stride : i * stride + size, j * stride : j * stride + size]
            out[:, i, j] = window.max(axis=(1, 2)) if op == "max" else window.mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("side", [54, 27, 16, 13, 8])
def test_nin_pooling_equals_caffe_ceil_mode(side):
    model = build_model("nin_cifar")
    pad, max_pool = model.get_layer("pool1_pad"), model.get_layer("pool1")
    x = np.random.default_rng(side).uniform(0, 1, (2, side, side, 4)).astype("float32")  # post-ReLU
    np.testing.assert_allclose(max_pool(pad(x)), _caffe_pool(x, "max"), rtol=0, atol=0)
    if side % 2 == 0:  # `same` average pooling is Caffe's on even maps (16x16 in nin_cifar)
        got = model.get_layer("pool2")(x)
        np.testing.assert_allclose(got, _caffe_pool(x, "avg"), rtol=1e-6, atol=1e-6)


# Szegedy et al. 2014, Table 1: params (K) and ops (M) per row, as printed.
GOOGLENET_TABLE1 = {
    "conv1": (2.7, 118),
    "conv2": (112, 360),  # conv2_reduce + conv2
    "inception_3a": (159, 128),
    "inception_3b": (380, 304),
    "inception_4a": (364, 73),
    "inception_4b": (437, 88),
    "inception_4c": (463, 100),
    "inception_4d": (580, 119),
    "inception_4e": (840, 170),
    "inception_5a": (1072, 54),
    "inception_5b": (1388, 71),
    "main": (1000, 1),
}
# Rows whose printed value disagrees with the module (and with the row's own ops column).
TABLE1_MISPRINTED_PARAMS = {"conv1", "inception_4c"}
TABLE1_MISPRINTED_OPS = {"inception_5a"}


def test_googlenet_modules_beside_table1():
    def per_row():
        built = compile_spec(resolve_spec("googlenet"))
        steps = {s.name: s for s in stats(built).steps}
        steps["conv2"].layers += steps["conv2_reduce"].layers
        steps["conv2"].madds += steps["conv2_reduce"].madds
        rows = {}
        for row in GOOGLENET_TABLE1:
            layers = [built.model.get_layer(n) for n in steps[row].layers]
            weights = sum(math.prod(layer.kernel.shape) for layer in layers if layer.weights)
            rows[row] = (weights, steps[row].madds)
        return rows

    rows = _shapes_only(per_row)
    assert rows["inception_4c"] == (509_440, 99_850_240)  # the paper prints 463K params, 100M ops
    for row, (params_k, ops_m) in GOOGLENET_TABLE1.items():
        weights, madds = rows[row]
        params_off = abs(weights / 1e3 / params_k - 1)
        ops_off = abs(madds / 1e6 / ops_m - 1)
        # Table 1 rounds and counts weights without biases; 5% covers its rounding.
        assert (params_off > 0.05) == (row in TABLE1_MISPRINTED_PARAMS), (row, weights)
        if row != "main":  # 1.02M ops printed as 1M
            assert (ops_off > 0.02) == (row in TABLE1_MISPRINTED_OPS), (row, madds)


def test_summary_shows_the_seeds_points(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code = _shapes_only(lambda: cli.main(["summary", "alexnet", "vgg16", "googlenet", "resnet50"]))
    out = capsys.readouterr().out
    assert code == 0
    for row in ("conv parameters", "FC parameters", "multiply-adds", "depth"):
        assert row in out
    alexnet, vgg16, googlenet = _stats("alexnet"), _stats("vgg16"), _stats("googlenet", None, True)
    # AlexNet: the FC layers hold ~25x the convolutions' parameters (the seed says ~30x).
    assert 24 < alexnet.fc_params / alexnet.conv_params < 26
    assert "25.12x" in out
    # GoogLeNet's single FC layer (at inference) is ~1% of VGG's FC parameters.
    assert googlenet.fc_params == 1_025_000
    assert 0.005 < googlenet.fc_params / vgg16.fc_params < 0.015
    assert [s.depth for s in (alexnet, vgg16, googlenet)] == [8, 16, 22]


# --------------------------------------------------------------------- numerical equivalence

# keras.applications model, spec, small input side (InceptionV3's minimum is 75)
EQUIVALENT = [
    pytest.param("VGG16", "vgg16", 32, id="vgg16"),
    pytest.param("VGG19", "vgg19", 32, id="vgg19"),
    pytest.param("ResNet50", "resnet50", 64, id="resnet50"),
    pytest.param("ResNet101", "resnet101", 64, id="resnet101", marks=pytest.mark.slow),
    pytest.param("ResNet152", "resnet152", 64, id="resnet152", marks=pytest.mark.slow),
    pytest.param("InceptionV3", "inception_v3", 75, id="inception_v3", marks=pytest.mark.slow),
]


def _randomised(variable, rng: np.random.Generator) -> np.ndarray:
    """Random values where the default initialiser is a constant, so a swap would show."""
    shape, kind = tuple(variable.shape), variable.name
    if kind in ("gamma", "moving_variance"):
        return rng.uniform(0.5, 1.5, shape).astype("float32")
    if kind in ("beta", "bias", "moving_mean"):
        return rng.normal(0.0, 0.1, shape).astype("float32")
    return keras.ops.convert_to_numpy(variable)


@pytest.mark.parametrize("application, spec, side", EQUIVALENT)
def test_same_outputs_as_keras_applications(application, spec, side):
    rng = np.random.default_rng(0)
    reference = getattr(keras.applications, application)(
        weights=None, input_shape=(side, side, 3), classes=10, classifier_activation=None
    )
    model = build_model(spec, overrides={"input": [side, side, 3], "vars.classes": 10})
    theirs = [layer for layer in reference.layers if layer.weights]
    ours = [layer for layer in model.layers if layer.weights]
    assert len(ours) == len(theirs)
    if spec != "inception_v3":  # keras names InceptionV3's layers automatically (`conv2d_17`)
        assert [layer.name for layer in ours] == [layer.name for layer in theirs]
    for source, target in zip(theirs, ours, strict=True):
        values = [_randomised(v, rng) for v in source.weights]
        assert [v.shape for v in values] == [tuple(v.shape) for v in target.weights], (
            source.name,
            target.name,
        )
        source.set_weights(values)
        target.set_weights(values)
    # Compare the networks, not the preprocessing: both read the same array.
    x = rng.uniform(0, 1, (2, side, side, 3)).astype("float32")
    logits = keras.Model(model.input, model.get_layer("main").input)  # before the softmax
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    got = keras.ops.convert_to_numpy(logits(x, training=False))
    assert np.abs(got - expected).max() < 1e-5
    probabilities = keras.ops.convert_to_numpy(model(x, training=False)["main"])
    np.testing.assert_allclose(probabilities, keras.ops.softmax(expected), atol=1e-6)
    keras.backend.clear_session()


# --------------------------------------------------------------------- every spec trains


@pytest.mark.parametrize("path", ZOO, ids=_spec_id)
def test_zoo_spec_takes_classes_and_input(path):
    data = load_document(str(path)).data
    assert "classes" in data.get("vars", {}), "a zoo spec takes `vars.classes`"
    assert "input" in data, "a zoo spec has one overridable `input`"
    assert "main" in data.get("outputs", {}), "a zoo spec names its prediction `main`"


def _batch(resolved, rng: np.random.Generator, batch: int = 2) -> dict | np.ndarray:
    arrays = {}
    for spec_input in resolved.inputs:
        shape = (batch, *(d or 16 for d in spec_input.shape))
        if spec_input.dtype.startswith("int") or spec_input.dtype.startswith("uint"):
            arrays[spec_input.name] = rng.integers(0, 10, shape).astype(spec_input.dtype)
        else:
            arrays[spec_input.name] = rng.uniform(0, 1, shape).astype(spec_input.dtype)
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def _target(loss: str, output_shape: tuple, rng: np.random.Generator, batch: int = 2):
    if "sparse" in loss:
        return rng.integers(0, output_shape[-1], (batch, *output_shape[:-1]))
    if "categorical" in loss:
        labels = rng.integers(0, output_shape[-1], (batch, *output_shape[:-1]))
        return np.eye(output_shape[-1], dtype="float32")[labels]
    return rng.uniform(0, 1, (batch, *output_shape)).astype("float32")


@pytest.mark.parametrize("path", ZOO + EXAMPLES, ids=_spec_id)
def test_spec_builds_small_and_takes_a_training_step(path):
    rng = np.random.default_rng(0)
    overrides = _small_overrides(path)
    resolved = resolve_spec(str(path), overrides)
    model = compile_spec(resolved).model
    x = _batch(resolved, rng)
    outputs = model(x, training=False)
    for name, value in outputs.items():
        assert np.isfinite(keras.ops.convert_to_numpy(value)).all(), name
    if "vars.classes" in overrides:
        assert outputs["main"].shape[-1] == 10
    losses, weights, targets = {}, {}, {}
    for out in resolved.outputs:
        shape = tuple(outputs[out.name].shape[1:])
        default = "sparse_categorical_crossentropy" if out.activation == "softmax" else "mse"
        losses[out.name] = out.loss or default
        weights[out.name] = out.loss_weight
        targets[out.name] = _target(losses[out.name], shape, rng)
    # Eager: one step of ResNet-152 takes seconds, tracing it would take most of a minute.
    model.compile(optimizer="sgd", loss=losses, loss_weights=weights, run_eagerly=True)
    result = model.train_on_batch(x, targets)
    assert np.isfinite(np.asarray(result, dtype="float64")).all()
    keras.backend.clear_session()
