"""Weights and keras-tuner's state are written whole or not at all, also on a full disk."""

from __future__ import annotations

import errno
import json

import keras
import keras_tuner as kt
import numpy as np
import pytest
from keras_tuner.src import utils as kt_utils

from blockspec.training import files
from blockspec.training.errors import WriteError
from blockspec.tuning.search import atomic_tuner_state


def _model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    x = keras.Input((4,))
    h = keras.layers.Dense(3, name="hidden")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    return keras.Model(x, keras.layers.Dense(2, name="out")(h))


class _FullDisk:
    """`open` for `files`: a file whose every write fails as a full disk does."""

    def __init__(self, real):
        self.real = real

    def __call__(self, path, mode="r", *args, **kwargs):
        handle = self.real(path, mode, *args, **kwargs)
        if "w" in mode:
            real_write = handle.write

            def write(data):
                real_write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")

            handle.write = write
        return handle


def _temps(folder):
    return [p.name for p in folder.iterdir() if files.TEMP_PATTERN.match(p.name)]


def test_weights_are_made_in_memory_and_load_back_equal(tmp_path):
    model = _model(0)
    path = files.write_weights(tmp_path / "a.weights.h5", model)
    other = _model(1)
    assert not np.allclose(other.get_layer("out").kernel.numpy(), model.get_layer("out").kernel)
    other.load_weights(path)
    for a, b in zip(model.weights, other.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert _temps(tmp_path) == []


def test_a_disk_that_fills_mid_weights_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = files.write_weights(tmp_path / "epoch-1.weights.h5", _model(0))
    previous = target.read_bytes()
    monkeypatch.setattr(files, "open", _FullDisk(open), raising=False)
    with pytest.raises(WriteError, match="disk full while writing .*; the previous .* is intact"):
        files.write_weights(target, _model(1))
    assert target.read_bytes() == previous
    assert _temps(tmp_path) == []


def test_keras_tuner_state_goes_through_the_atomic_writer_while_searching(tmp_path, monkeypatch):
    oracle = tmp_path / "oracle.json"
    kt_utils.save_json(str(oracle), {"trials": 1})  # keras-tuner's own writer, outside a search
    original = kt_utils.save_json
    with atomic_tuner_state():
        assert kt_utils.save_json is not original
        kt_utils.save_json(str(oracle), {"trials": 2})
        assert json.loads(oracle.read_text()) == {"trials": 2}
        monkeypatch.setattr(files, "open", _FullDisk(open), raising=False)
        with pytest.raises(WriteError, match="disk full while writing .*oracle.json; the previous"):
            kt.Objective("val_loss", "min")  # keras-tuner still importable and usable
            kt_utils.save_json(str(oracle), {"trials": 3, "pad": "x" * 1000})
    assert kt_utils.save_json is original
    assert json.loads(oracle.read_text()) == {"trials": 2}
    assert _temps(tmp_path) == []
