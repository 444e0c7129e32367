"""The Python API: `from blockspec import build_model`, compiled as `blockspec train` compiles."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import blockspec
from blockspec import build_model


def _spec(**train):
    return {
        "spec": 1,
        "name": "two_heads",
        "input": [8, 8, 1],
        "network": [
            {"conv": {"filters": 4, "kernel": 3}},
            {"global_avg_pool": {}, "name": "pool"},
            {"dense": 10, "name": "main"},
            {"dense": 10, "name": "aux", "from": "pool"},
        ],
        "outputs": {
            "main": {"activation": "softmax", "metrics": ["accuracy"]},
            "aux": {"activation": "softmax", "loss_weight": 0.3, "train_only": True},
        },
        "train": {"optimizer": {"sgd": {"learning_rate": 0.05, "momentum": 0.5}}, **train},
    }


def test_compile_true_takes_the_spec_losses_weights_metrics_and_optimizer():
    model = build_model(_spec(), compile=True)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.momentum) == 0.5
    assert set(model.loss) == {"main", "aux"}
    assert model._compile_loss._user_loss_weights == {"main": 1.0, "aux": 0.3}
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
    y = np.arange(16) % 10
    history = model.fit(x, {"main": y, "aux": y}, epochs=1, verbose=0)
    assert "main_accuracy" in history.history
    assert np.isfinite(history.history["loss"][0])


def test_compile_true_on_an_inference_model_leaves_out_the_train_only_heads():
    model = build_model(_spec(), inference=True, compile=True)
    assert set(model.loss) == {"main"}


def test_compile_true_with_a_schedule_derives_the_steps_of_a_known_source():
    spec = _spec(schedule={"cosine": {}}, data={"source": "digits"}, batch_size=32, epochs=3)
    model = build_model(spec, compile=True)
    # 1797 digits, 20% held out: 1438 examples, 45 batches an epoch, 3 epochs.
    assert model.optimizer.learning_rate is not None
    assert model.optimizer._learning_rate.total_steps == 135


def test_compile_true_with_a_schedule_on_a_folder_asks_for_the_steps():
    spec = _spec(schedule={"cosine": {}}, data={"source": "folder", "path": "images"})
    with pytest.raises(ValueError, match="steps_per_epoch"):
        build_model(spec, compile=True)
    model = build_model(spec, compile=True, steps_per_epoch=7)
    assert model.optimizer._learning_rate.total_steps == 7 * 10


def test_the_package_exports_its_version_and_api():
    assert blockspec.__version__.count(".") == 2
    assert {"build_model", "load_spec", "resolve_spec", "SpecError"} <= set(blockspec.__all__)
