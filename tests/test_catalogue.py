"""The keras.applications catalogue in the zoo: each family one spec with vars, proven exact.

- Parameter counts (trainable and total) of every variant equal keras.applications'
  (`count_params()` of `keras.applications.X(weights=None)`, Keras 3.15), counted without values
  inside `keras.StatelessScope(initialize_variables=False)`.
- Outputs: the weights of a keras.applications model (random, with batch-norm statistics and
  biases randomised too) are copied into the spec's model, by layer name, and the logits agree.

Where the numbers come from, and lines per spec: docs/zoo.md.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from zoo_fixtures import parameter_counts

from blockspec.builder import build_model

# spec, overrides, trainable, total: keras.applications' counts at its default input, 1000 classes
COUNTS = [
    pytest.param("resnet_v2", {}, 25_568_360, 25_613_800, id="ResNet50V2"),
    pytest.param("resnet_v2", {"vars.depth": 101}, 44_577_896, 44_675_560, id="ResNet101V2"),
    pytest.param("resnet_v2", {"vars.depth": 152}, 60_236_904, 60_380_648, id="ResNet152V2"),
    pytest.param("densenet", {}, 7_978_856, 8_062_504, id="DenseNet121"),
    pytest.param("densenet", {"vars.depth": 169}, 14_149_480, 14_307_880, id="DenseNet169"),
    pytest.param("densenet", {"vars.depth": 201}, 20_013_928, 20_242_984, id="DenseNet201"),
    pytest.param("mobilenet", {}, 4_231_976, 4_253_864, id="MobileNet"),
    pytest.param("mobilenet", {"vars.alpha": 0.25}, 470_072, 475_544, id="MobileNet-0.25"),
    pytest.param("mobilenet", {"vars.alpha": 0.5}, 1_331_592, 1_342_536, id="MobileNet-0.5"),
    pytest.param("mobilenet", {"vars.alpha": 0.75}, 2_585_560, 2_601_976, id="MobileNet-0.75"),
    pytest.param("mobilenet_v2", {}, 3_504_872, 3_538_984, id="MobileNetV2"),
    pytest.param("mobilenet_v2", {"vars.alpha": 0.35}, 1_677_128, 1_691_208, id="MobileNetV2-0.35"),
    pytest.param("mobilenet_v2", {"vars.alpha": 0.5}, 1_968_680, 1_987_224, id="MobileNetV2-0.5"),
    pytest.param("mobilenet_v2", {"vars.alpha": 0.75}, 2_636_424, 2_663_064, id="MobileNetV2-0.75"),
    pytest.param("mobilenet_v2", {"vars.alpha": 1.3}, 5_386_792, 5_431_048, id="MobileNetV2-1.3"),
    pytest.param("mobilenet_v2", {"vars.alpha": 1.4}, 6_108_776, 6_156_712, id="MobileNetV2-1.4"),
    pytest.param("xception", {}, 22_855_952, 22_910_480, id="Xception"),
    pytest.param("convnext", {}, 28_589_128, 28_589_128, id="ConvNeXtTiny"),
    pytest.param("convnext", {"vars.size": "small"}, 50_223_688, 50_223_688, id="ConvNeXtSmall"),
    pytest.param("convnext", {"vars.size": "base"}, 88_591_464, 88_591_464, id="ConvNeXtBase"),
    pytest.param("convnext", {"vars.size": "large"}, 197_767_336, 197_767_336, id="ConvNeXtLarge"),
    pytest.param(
        "convnext", {"vars.size": "xlarge"}, 350_196_968, 350_196_968, id="ConvNeXtXLarge"
    ),
    pytest.param("efficientnet", {"vars.variant": 0}, 5_288_548, 5_330_571, id="EfficientNetB0"),
    pytest.param("efficientnet", {"vars.variant": 1}, 7_794_184, 7_856_239, id="EfficientNetB1"),
    pytest.param("efficientnet", {"vars.variant": 2}, 9_109_994, 9_177_569, id="EfficientNetB2"),
    pytest.param("efficientnet", {"vars.variant": 3}, 12_233_232, 12_320_535, id="EfficientNetB3"),
    pytest.param("efficientnet", {"vars.variant": 4}, 19_341_616, 19_466_823, id="EfficientNetB4"),
    pytest.param("efficientnet", {"vars.variant": 5}, 30_389_784, 30_562_527, id="EfficientNetB5"),
    pytest.param("efficientnet", {"vars.variant": 6}, 43_040_704, 43_265_143, id="EfficientNetB6"),
    pytest.param("efficientnet", {"vars.variant": 7}, 66_347_960, 66_658_687, id="EfficientNetB7"),
    pytest.param("mobilenet_v3", {}, 5_483_032, 5_507_432, id="MobileNetV3Large"),
    pytest.param(
        "mobilenet_v3", {"vars.alpha": 0.75}, 3_993_528, 4_012_616, id="MobileNetV3Large-0.75"
    ),
    pytest.param("mobilenet_v3_small", {}, 2_542_856, 2_554_968, id="MobileNetV3Small"),
    pytest.param(
        "mobilenet_v3_small",
        {"vars.alpha": 0.75},
        2_041_872,
        2_051_552,
        id="MobileNetV3Small-0.75",
    ),
]


@pytest.mark.parametrize("spec, overrides, trainable, total", COUNTS)
def test_parameter_count(spec, overrides, trainable, total):
    assert parameter_counts(spec, overrides) == (trainable, total)


# keras.applications model, its keyword arguments, spec, overrides, input side
EQUIVALENT = [
    pytest.param("ResNet50V2", {}, "resnet_v2", {}, 64, id="ResNet50V2"),
    pytest.param(
        "ResNet101V2",
        {},
        "resnet_v2",
        {"vars.depth": 101},
        64,
        id="ResNet101V2",
        marks=pytest.mark.slow,
    ),
    pytest.param("DenseNet121", {}, "densenet", {}, 64, id="DenseNet121", marks=pytest.mark.slow),
    pytest.param(
        "MobileNet", {"alpha": 0.75}, "mobilenet", {"vars.alpha": 0.75}, 64, id="MobileNet"
    ),
    pytest.param(
        "MobileNetV2", {"alpha": 0.35}, "mobilenet_v2", {"vars.alpha": 0.35}, 64, id="MobileNetV2"
    ),
    # keras.applications leaves Xception's four shortcut convolutions and batch norms unnamed
    pytest.param("Xception", {}, "xception", {}, 71, id="Xception", marks=pytest.mark.slow),
    pytest.param("ConvNeXtTiny", {}, "convnext", {}, 32, id="ConvNeXtTiny"),
    pytest.param("EfficientNetB0", {}, "efficientnet", {}, 64, id="EfficientNetB0"),
    pytest.param(
        "EfficientNetB3",
        {},
        "efficientnet",
        {"vars.variant": 3},
        64,
        id="EfficientNetB3",
        marks=pytest.mark.slow,
    ),
    pytest.param("MobileNetV3Large", {}, "mobilenet_v3", {}, 64, id="MobileNetV3Large"),
    pytest.param(
        "MobileNetV3Small",
        {"alpha": 0.75},
        "mobilenet_v3_small",
        {"vars.alpha": 0.75},
        64,
        id="MobileNetV3Small",
    ),
]


def _randomised(variable, rng: np.random.Generator) -> np.ndarray:
    """Random values where the default initialiser is a constant, so a swap would show."""
    shape, kind = tuple(variable.shape), variable.path.rsplit("/", 1)[-1]
    if kind in ("gamma", "moving_variance"):
        return rng.uniform(0.5, 1.5, shape).astype("float32")
    if kind in ("beta", "bias", "moving_mean"):
        return rng.normal(0.0, 0.1, shape).astype("float32")
    if np.all(keras.ops.convert_to_numpy(variable) == keras.ops.convert_to_numpy(variable).flat[0]):
        return rng.uniform(0.5, 1.5, shape).astype("float32")  # a constant (a layer scale)
    return keras.ops.convert_to_numpy(variable)


def _automatic(layer) -> bool:
    """Whether Keras named `layer` after its class (`conv2d_3`): keras.applications gave it none."""
    snake = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", type(layer).__name__)
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", snake).lower()
    return re.fullmatch(rf"{snake}(_\d+)?", layer.name) is not None


def _weighted_layers(model):
    """Layers with weights, nested models (ConvNeXt's stem in a Sequential) opened up."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.weights:
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer


def copy_weights(reference, model, rng) -> int:
    """Copies random weights of `reference` into `model`: by layer name, and in order (shapes
    checked) for the layers keras.applications leaves unnamed. Returns how many layers went by
    name."""
    theirs = list(_weighted_layers(reference))
    ours = {layer.name: layer for layer in model.layers if layer.weights}
    named = {layer.name: layer for layer in theirs if not _automatic(layer)}
    assert sorted(named) == sorted(set(ours) & set(named))  # every named keras layer is ours
    rest = [layer for name, layer in ours.items() if name not in named]
    unnamed = [layer for layer in theirs if _automatic(layer)]
    assert len(rest) == len(unnamed)
    pairs = [(source, ours[name]) for name, source in named.items()]
    for source, target in pairs + list(zip(unnamed, rest, strict=True)):
        values = [_randomised(v, rng) for v in source.weights]
        assert [v.shape for v in values] == [tuple(v.shape) for v in target.weights], target.name
        source.set_weights(values)
        target.set_weights(values)
    return len(named)


def max_difference(application, kwargs, spec, overrides, side) -> float:
    rng = np.random.default_rng(0)
    reference = getattr(keras.applications, application)(
        weights=None, input_shape=(side, side, 3), classes=10, classifier_activation=None, **kwargs
    )
    model = build_model(spec, overrides={"input": [side, side, 3], "vars.classes": 10, **overrides})
    copy_weights(reference, model, rng)
    # Compare the networks, not the preprocessing: both read the same array.
    x = rng.uniform(0, 1, (2, side, side, 3)).astype("float32")
    logits = keras.Model(model.input, model.get_layer("main").input)  # before the softmax
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    got = keras.ops.convert_to_numpy(logits(x, training=False))
    keras.backend.clear_session()
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize("application, kwargs, spec, overrides, side", EQUIVALENT)
def test_same_outputs_as_keras_applications(application, kwargs, spec, overrides, side):
    assert max_difference(application, kwargs, spec, overrides, side) < 1e-5
