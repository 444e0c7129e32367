"""Every model blockspec saves for inference computes in inference mode however it is called.

Keras' image preprocessing layers (`Resizing`, `CenterCrop`) declare `call(..., training=True)`;
called with `training` unset, that default reached the layers after them through Keras' call
context, so `model(x)` ran batch norms and dropouts in training mode and moved their statistics
(see `builder.compile.call_layer`). Each check: `m(x)`, `m(x, training=False)` and `m.predict(x)`
agree exactly, and no call changes a variable.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from zoo_fixtures import EXAMPLES, FEWER_UNITS, ZOO, small_overrides, spec_id

from blockspec.builder import resolve_spec
from blockspec.builder.compile import compile_spec
from blockspec.training import data as data_lib
from blockspec.training.export import inference_model, save_model


def _has_batch_norm_or_dropout(model) -> bool:
    kinds = (keras.layers.BatchNormalization, keras.layers.Dropout)
    return any(isinstance(layer, kinds) for layer in _all_layers(model))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _variables(model) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.variables]


def assert_inference_mode(model, x) -> None:
    """The three ways of calling agree exactly and leave every variable as it was."""
    before = _variables(model)
    direct = keras.ops.convert_to_numpy(model(x)["main"])
    explicit = keras.ops.convert_to_numpy(model(x, training=False)["main"])
    predicted = model.predict(x, verbose=0)["main"]
    again = keras.ops.convert_to_numpy(model(x)["main"])
    np.testing.assert_allclose(direct, predicted, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(direct, explicit)
    np.testing.assert_array_equal(direct, again)
    for index, (old, new) in enumerate(zip(before, _variables(model), strict=True)):
        np.testing.assert_array_equal(old, new, err_msg=model.variables[index].path)


def _raw_model(path, tmp_path):
    """The spec at a small size, wrapped as `blockspec train` wraps it: raw 8x8 digits in."""
    resolved = resolve_spec(str(path), {**small_overrides(path), **FEWER_UNITS.get(path.stem, {})})
    shape = resolved.inputs[0].shape
    if len(shape) != 3:
        pytest.skip("not an image network: no preprocessing in front of it")
    network = compile_spec(resolved).model
    if not _has_batch_norm_or_dropout(network):
        pytest.skip("no batch norm or dropout")
    # Moving statistics away from their initial 0 and 1, so any update to them shows.
    for variable in network.non_trainable_variables:
        variable.assign(np.random.default_rng(1).uniform(0.5, 1.5, variable.shape))
    preprocess = data_lib.preprocess_model((8, 8), shape[:2], shape[2], 1 / 16)
    model = inference_model(network, resolved.outputs, preprocess, None, name=resolved.name)
    saved = save_model(model, tmp_path / "model.keras")
    return keras.saving.load_model(saved)


@pytest.mark.slow
@pytest.mark.parametrize("path", ZOO + EXAMPLES, ids=spec_id)
def test_saved_inference_model_is_in_inference_mode(path, tmp_path):
    model = _raw_model(path, tmp_path)
    x = np.random.default_rng(0).uniform(0, 16, (3, 8, 8)).astype("float32")
    assert_inference_mode(model, x)
    keras.backend.clear_session()


def test_build_inference_save_is_in_inference_mode(tmp_path):
    """`blockspec build --inference --save`: the network alone, dropout and batch norm inside."""
    resolved = resolve_spec("googlenet", {"vars.classes": 10, "input": [64, 64, 3], "train": {}})
    model = compile_spec(resolved, inference=True).model
    path = save_model(model, tmp_path / "net.keras")
    model = keras.saving.load_model(path)
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    assert_inference_mode(model, x)


def test_a_raw_resizing_step_does_not_switch_the_network_to_training():
    """A Keras preprocessing layer written as a step records `training=False` too."""
    spec = {
        "spec": 1,
        "name": "resize_first",
        "input": [8, 8, 1],
        "network": [
            {"Resizing": {"height": 16, "width": 16}},
            {"conv": {"filters": 4, "kernel": 3}},
            {"batch_norm": {}},
            {"global_avg_pool": {}},
            {"dense": 3, "name": "main"},
        ],
        "outputs": {"main": {"activation": "softmax"}},
    }
    model = compile_spec(resolve_spec(spec)).model
    x = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 1)).astype("float32")
    assert_inference_mode(model, x)


@pytest.mark.slow
def test_trained_run_model_and_its_keras_export(tmp_path):
    """The issue's case: `blockspec train resnet18` on the digits, the saved model, its export."""
    import tensorflow as tf

    from blockspec.training.trainer import train

    resolved = resolve_spec(
        "resnet18",
        {
            "vars.classes": 10,
            "input": [32, 32, 1],
            "train.epochs": 1,
        },
    )
    result = train(resolved, tmp_path / "run", verbose=0)
    model = keras.saving.load_model(result.model_path)
    x = np.random.default_rng(0).uniform(0, 16, (4, 8, 8)).astype("float32")
    assert_inference_mode(model, x)

    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    expected = model.predict(x, verbose=0)["main"]
    for _ in range(2):  # a second call would see any statistics the first one moved
        got = served.serve(tf.constant(x))["main"].numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
