"""The keras.applications catalogue, continued: EfficientNetV2, InceptionResNetV2, NASNet.

Proven as in `tests/test_catalogue.py`: parameter counts (trainable and total) of every member
equal keras.applications' (`keras.applications.X(weights=None)`, Keras 3.15), counted without
values; and the logits agree once random weights are copied from the keras.applications model.
Numbers and lines per spec: docs/zoo.md.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from test_catalogue import max_difference
from test_weights import randomize, save_legacy_h5
from zoo_fixtures import parameter_counts

from blockspec.builder import build_model
from blockspec.builder.weights import load_weights

# spec, overrides, trainable, total: keras.applications' counts at its default input, 1000 classes
COUNTS = [
    pytest.param("efficientnetv2", {}, 7_139_704, 7_200_312, id="EfficientNetV2B0"),
    pytest.param(
        "efficientnetv2", {"vars.variant": "b1"}, 8_141_052, 8_212_124, id="EfficientNetV2B1"
    ),
    pytest.param(
        "efficientnetv2", {"vars.variant": "b2"}, 10_096_086, 10_178_374, id="EfficientNetV2B2"
    ),
    pytest.param(
        "efficientnetv2", {"vars.variant": "b3"}, 14_358_406, 14_467_622, id="EfficientNetV2B3"
    ),
    pytest.param(
        "efficientnetv2", {"vars.variant": "s"}, 21_458_488, 21_612_360, id="EfficientNetV2S"
    ),
    pytest.param(
        "efficientnetv2", {"vars.variant": "m"}, 54_139_356, 54_431_388, id="EfficientNetV2M"
    ),
    pytest.param(
        "efficientnetv2", {"vars.variant": "l"}, 118_515_272, 119_027_848, id="EfficientNetV2L"
    ),
    pytest.param("inception_resnet_v2", {}, 55_813_192, 55_873_736, id="InceptionResNetV2"),
    pytest.param("nasnet", {}, 5_289_978, 5_326_716, id="NASNetMobile"),
    pytest.param("nasnet", {"vars.size": "large"}, 88_753_150, 88_949_818, id="NASNetLarge"),
]


@pytest.mark.parametrize("spec, overrides, trainable, total", COUNTS)
def test_parameter_count(spec, overrides, trainable, total):
    assert parameter_counts(spec, overrides) == (trainable, total)


# keras.applications model, its keyword arguments, spec, overrides, input side
EQUIVALENT = [
    pytest.param("EfficientNetV2B0", {}, "efficientnetv2", {}, 64, id="EfficientNetV2B0"),
    pytest.param(
        "EfficientNetV2S",
        {},
        "efficientnetv2",
        {"vars.variant": "s"},
        32,
        id="EfficientNetV2S",
        marks=pytest.mark.slow,
    ),
    # every NASNet layer with weights is named by keras: all of them go by name
    pytest.param("NASNetMobile", {}, "nasnet", {}, 32, id="NASNetMobile", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("application, kwargs, spec, overrides, side", EQUIVALENT)
def test_same_outputs_as_keras_applications(application, kwargs, spec, overrides, side):
    assert max_difference(application, kwargs, spec, overrides, side) < 1e-5


# keras.applications model, spec, input side, tensors, of which loaded by name
WEIGHT_FILES = [
    # keras nests ConvNeXt's stem and downsampling layers in `Sequential`s (one group each in
    # the legacy layout); the spec writes them as steps with the same names: read layer by layer
    pytest.param(
        "ConvNeXtTiny", "convnext", 32, 182, 182, id="ConvNeXtTiny", marks=pytest.mark.slow
    ),
    # keras names 43 of its 449 layers with weights, and the spec gives those 43 keras' names
    # (`block35_1_conv`, ..., conv_7b, conv_7b_bn, predictions: 86 tensors load by name); the
    # branches' `conv2d_N` / `batch_normalization_N` load by structure
    pytest.param(
        "InceptionResNetV2",
        "inception_resnet_v2",
        75,
        898,
        86,
        id="InceptionResNetV2",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("application, spec, side, tensors, by_name", WEIGHT_FILES)
def test_keras_applications_weight_file_loads_and_computes_the_same(
    application, spec, side, tensors, by_name, tmp_path
):
    """A keras.applications weights file (legacy `.h5`, the ImageNet files' layout) made from
    random weights loads through builder.weights with nothing skipped; the logits agree."""
    reference = getattr(keras.applications, application)(
        weights=None, input_shape=(side, side, 3), classes=10, classifier_activation=None
    )
    randomize(reference)
    save_legacy_h5(reference, tmp_path / "reference.h5")
    model = build_model(spec, overrides={"input": [side, side, 3], "vars.classes": 10})
    report = load_weights(model, tmp_path / "reference.h5")
    assert (report.loaded, report.total, report.skipped, report.unused) == (
        tensors,
        tensors,
        [],
        [],
    )
    assert report.loaded - report.by_order == by_name
    x = np.random.default_rng(0).uniform(0, 1, (2, side, side, 3)).astype("float32")
    logits = keras.Model(model.input, model.get_layer("main").input)  # before the softmax
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    got = keras.ops.convert_to_numpy(logits(x, training=False))
    keras.backend.clear_session()
    assert np.abs(got - expected).max() < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("size", ["tiny"])
def test_convnext_takes_a_keras_applications_weights_file_by_name(size, tmp_path):
    """Layer names are keras.applications' own (`convnext_tiny_stage_0_block_0_...`, the model's
    name first): a Keras 3 weights file of ConvNeXtTiny/Small loads by name alone, all of it."""
    side = 32
    reference = getattr(keras.applications, f"ConvNeXt{size.title()}")(
        weights=None, input_shape=(side, side, 3), classes=10, classifier_activation=None
    )
    randomize(reference)
    reference.save_weights(tmp_path / "reference.weights.h5")
    model = build_model(
        "convnext", overrides={"input": [side, side, 3], "vars.classes": 10, "vars.size": size}
    )
    report = load_weights(model, tmp_path / "reference.weights.h5", match="name")
    assert (report.loaded, report.skipped, report.unused, report.by_order) == (
        report.total,
        [],
        [],
        0,
    )
    assert report.pairs[f"convnext_{size}_stage_3_block_2_layer_scale"] == (
        f"convnext_{size}_stage_3_block_2_layer_scale"
    )
    x = np.random.default_rng(0).uniform(0, 255, (2, side, side, 3)).astype("float32")
    logits = keras.Model(model.input, model.get_layer("main").input)
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    got = keras.ops.convert_to_numpy(logits(x, training=False))
    keras.backend.clear_session()
    assert np.abs(got - expected).max() < 1e-5
