"""`--weights` on `build` and `train`, and `build_model(weights=)`: the loader wired in."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from blockspec import build_model, cli

SPEC = """\
spec: 1
name: small
input: [8, 8, 1]
network:
  - conv: {filters: 4, kernel: 3}
  - global_avg_pool: {}
  - dense: 10
    name: main
outputs:
  main: {activation: softmax}
train: {epochs: 1, batch_size: 64, data: {source: digits}}
"""


@pytest.fixture
def spec_and_weights(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    model = build_model(str(spec))
    for variable in model.weights:
        variable.assign(np.full(variable.shape, 0.25, dtype="float32"))
    weights = tmp_path / "start.weights.h5"
    model.save_weights(weights)
    return spec, weights


def test_build_model_takes_weights_and_says_what_loaded(spec_and_weights, capsys):
    spec, weights = spec_and_weights
    model = build_model(str(spec), weights=str(weights))
    assert all(np.all(keras.ops.convert_to_numpy(v) == 0.25) for v in model.weights)
    assert "loaded 4 of 4 tensors" in capsys.readouterr().out


def test_build_weights_strict_refuses_a_partial_file_with_exit_2(spec_and_weights, capsys):
    spec, weights = spec_and_weights
    other = spec.with_name("wider.yaml")
    other.write_text(SPEC.replace("filters: 4", "filters: 5"))
    code = cli.main(["build", str(other), "--weights", str(weights), "--weights-strict"])
    assert code == 2
    err = capsys.readouterr().err
    assert "(3, 3, 1, 5)" in err and "(3, 3, 1, 4)" in err and "Traceback" not in err


@pytest.mark.slow
def test_train_starts_from_weights_and_records_the_file(spec_and_weights, tmp_path, capsys):
    spec, weights = spec_and_weights
    out = tmp_path / "run"
    code = cli.main(["train", str(spec), "--out", str(out), "--weights", str(weights)])
    assert code == 0
    assert "loaded 4 of 4 tensors" in capsys.readouterr().out
    record = json.loads((out / "weights.json").read_text())
    assert record["path"] == str(weights.resolve())
    assert len(record["sha256"]) == 64
