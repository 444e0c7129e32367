"""`blockspec tune` searches: every tuner, failed trials, resume, --overwrite, best.yaml trains.

Tiny models on 48 synthetic 8x8 images, one epoch per trial.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from blockspec import cli
from blockspec.builder.errors import SpecError
from blockspec.builder.resolve import resolve_spec
from blockspec.tuning.search import run_search

ROOT = Path(__file__).resolve().parent.parent

SPEC = """
spec: 1
name: tiny_tune
input: [8, 8, 1]
vars:
  width: {tune: int, min: 4, max: 8, step: 4}
defaults:
  conv: {activation: relu, padding: same}
network:
  - conv: {filters: $width, kernel: 3}
    name: stem
  - tune: choice
    values:
      - conv: {filters: {tune: choice, values: [4, 8]}, kernel: 3}
      - max_pool: {size: 2}
  - global_avg_pool: {}
  - dense: 10
    name: main
outputs:
  main: {activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
train:
  data: {source: synthetic, samples: 48, validation_split: 0.25}
  batch_size: 16
  epochs: 1
  optimizer: {adam: {learning_rate: {tune: float, min: 1.0e-3, max: 1.0e-2, sampling: log}}}
tune:
  tuner: random
  max_trials: 2
  objective: {output: main, metric: accuracy}
"""


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "tiny_tune.yaml"
    path.write_text(SPEC)
    return path


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband", "grid"])
def test_each_tuner_runs_two_trials(spec, tmp_path, tuner):
    out = tmp_path / "out"
    overrides = {"tune.tuner": tuner}
    if tuner == "hyperband":  # one bracket of one 1-epoch trial, twice
        overrides.update({"tune.max_epochs": 1, "tune.hyperband_iterations": 2})
    result = run_search(str(spec), overrides, out)
    table = rows(out)
    assert len(table) == 2 and result.trials == 2
    assert [r["status"] for r in table] == ["COMPLETED", "COMPLETED"]
    assert all(0.0 <= float(r["val_accuracy"]) <= 1.0 for r in table)
    assert {"vars/width", "choice", "train/optimizer/adam/learning_rate"} <= set(table[0])
    assert (out / "objective.png").stat().st_size > 0
    best = resolve_spec(str(out / "best.yaml"))
    assert best.hyperparameters == []
    assert result.best_score == max(float(r["val_accuracy"]) for r in table)
    # A trial's run folder holds its history and concrete spec; keras-tuner's checkpoint holds
    # its best epoch's weights, and there is no model.keras (`train best.yaml` makes one).
    trial = out / "trials" / f"trial_{table[0]['trial']}"
    assert (trial / "run" / "history.csv").is_file() and (trial / "run" / "spec.yaml").is_file()
    assert not (trial / "run" / "model.keras").exists()
    # Hyperband reads every trial's weights file again; the others write one only for a trial
    # that beats the best so far.
    first, second = (float(r["val_accuracy"]) for r in table)
    kept = [
        (out / "trials" / f"trial_{r['trial']}" / "checkpoint.weights.h5").is_file() for r in table
    ]
    assert kept == [True, tuner == "hyperband" or second > first]


def test_cli_tune_and_best_yaml_trains_as_is(spec, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at 80 columns without a terminal
    out = tmp_path / "out"
    assert cli.main(["tune", str(spec), "--out", str(out), "--set", "tune.max_trials=1"]) == 0
    printed = capsys.readouterr().out
    assert "trial 0 completed" in printed and "best.yaml" in printed
    text = (out / "best.yaml").read_text()
    assert "tune: int" not in text and "tune: choice" not in text
    assert cli.main(["validate", str(out / "best.yaml")]) == 0
    assert "search spaces" not in capsys.readouterr().out
    run = tmp_path / "run"
    assert cli.main(["train", str(out / "best.yaml"), "--out", str(run)]) == 0
    assert (run / "model.keras").is_file()

    # It trains what the trial trained: same seed, so the same first weights and batches.
    def losses(folder: Path) -> list[float]:
        with open(folder / "history.csv", newline="") as f:
            return [float(r["loss"]) for r in csv.DictReader(f)]

    assert losses(run) == pytest.approx(losses(out / "trials" / "trial_0" / "run"), rel=1e-5)


def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path):
    spec = tmp_path / "pools.yaml"
    spec.write_text(
        SPEC.replace(
            "  - global_avg_pool: {}",
            "  - max_pool: {size: 2}\n    repeat: {tune: choice, values: [1, 4]}\n    name: pools\n"
            "  - flatten: {}",
        )
        .replace("{tune: float, min: 1.0e-3, max: 1.0e-2, sampling: log}", "0.01")
        .replace("tuner: random", "tuner: grid")
    )
    out = tmp_path / "out"
    result = run_search(
        str(spec), None, out
    )  # grid: the defaults, then the last space's next value
    table = rows(out)
    assert [(r["status"], r["pools/repeat"]) for r in table] == [
        ("COMPLETED", "1"),
        ("FAILED", "4"),
    ]
    assert "Computed output size would be zero or negative" in table[1]["reason"]
    assert "network[2].max_pool" in table[1]["reason"]
    assert (result.trials, result.completed, result.failed, result.best_id) == (2, 1, 1, "0")
    assert "repeat: 1" in (out / "best.yaml").read_text()


class _Interrupt(keras.callbacks.Callback):
    """Stops the process' search (as Ctrl-C would) when the second trial starts training."""

    trainings = 0

    def on_train_begin(self, logs=None):
        type(self).trainings += 1
        if type(self).trainings == 2:
            raise KeyboardInterrupt


def test_a_stopped_search_resumes_where_it_stopped(spec, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_search(str(spec), {"tune.max_trials": 3}, out, callbacks=[_Interrupt()])
    assert [r["status"] for r in rows(out)] == ["COMPLETED", "RUNNING"]
    first = (out / "trials" / "trial_0" / "run" / "history.csv").stat().st_mtime_ns
    result = run_search(str(spec), {"tune.max_trials": 3}, out)
    assert result.resumed
    assert [r["status"] for r in rows(out)] == ["COMPLETED"] * 3
    assert (out / "trials" / "trial_0" / "run" / "history.csv").stat().st_mtime_ns == first
    # --overwrite starts afresh; another spec is not resumed by mistake.
    result = run_search(str(spec), {"tune.max_trials": 1}, out, overwrite=True)
    assert not result.resumed and len(rows(out)) == 1
    with pytest.raises(SpecError, match="holds a search of another spec"):
        run_search(str(spec), {"tune.max_trials": 1, "train.batch_size": 8}, out)


@pytest.mark.slow
def test_a_killed_search_resumes(spec, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "cli.py"), "tune", str(spec), "--out", str(out)]
    command += ["--set", "tune.max_trials=3"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if (out / "trials.csv").is_file() and len(rows(out)) >= 1:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.stdout.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = [r for r in rows(out) if r["status"] == "COMPLETED"]
    assert done_before
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "Resuming the search" in finished.stdout
    after = rows(out)
    assert [r["status"] for r in after] == ["COMPLETED"] * 3

    # Trials finished before the kill keep their values; only timings may be re-measured.
    def stable(r):
        return {k: v for k, v in r.items() if k != "seconds"}

    assert [stable(r) for r in after[: len(done_before)]] == [stable(r) for r in done_before]


def test_hyperband_continues_a_trial_from_its_epoch(spec, tmp_path):
    out = tmp_path / "out"
    overrides = {"tune.tuner": "hyperband", "tune.max_epochs": 3, "tune.max_trials": 20}
    starts = []  # per trial trained: (its optimizer's step, whether Adam's moments are set)

    class Start(keras.callbacks.Callback):
        def __deepcopy__(self, memo):
            return self

        def on_train_begin(self, logs=None):
            variables = self.model.optimizer.variables
            moments = any(float(abs(v.numpy()).sum()) > 0 for v in variables[2:])
            starts.append((int(self.model.optimizer.iterations.numpy()), moments))

    run_search(str(spec), overrides, out, callbacks=[Start()])
    continued = [r for r in rows(out) if r["continues"]]
    assert continued and all(r["status"] == "COMPLETED" for r in rows(out))
    for row in continued:
        trial = out / "trials" / f"trial_{row['trial']}"
        values = json.loads((trial / "trial.json").read_text())["hyperparameters"]["values"]
        start, end = values["tuner/initial_epoch"], values["tuner/epochs"]
        assert 0 < start < end
        # It trains on from the epoch the trial it continues stopped at, to Hyperband's epochs.
        with open(trial / "run" / "history.csv", newline="") as f:
            epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
        assert epochs == list(range(start + 1, end + 1))
    # A continued trial starts with the optimizer state of the trial it continues, at the step
    # its epochs reached (36 training images, batches of 16: 3 steps an epoch); the others fresh.
    initial = [int(r["epochs"]) for r in rows(out)]
    continued_starts = sorted(
        json.loads((out / "trials" / f"trial_{r['trial']}" / "trial.json").read_text())[
            "hyperparameters"
        ]["values"]["tuner/initial_epoch"]
        * 3
        for r in continued
    )
    assert sorted(step for step, moments in starts if moments) == continued_starts
    assert [step for step, moments in starts if not moments] == [0] * (
        len(initial) - len(continued)
    )


def test_the_best_epoch_weights_are_written_once_when_fit_ends(tmp_path, monkeypatch):
    import keras_tuner as kt
    import numpy as np
    from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

    from blockspec.tuning.hypermodel import BestEpochInMemory

    inner = SaveBestEpoch(kt.Objective("score", "min"), str(tmp_path / "best.weights.h5"))
    from blockspec.training import files

    writes = []
    save = files.write_weights
    monkeypatch.setattr(files, "write_weights", lambda *a: (writes.append(1), save(*a))[1])
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    states = []

    class Score(keras.callbacks.Callback):  # the objective: best at the second epoch
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = [3.0, 1.0, 2.0, 4.0, 5.0][epoch]
            optimizer = [v.numpy() for v in self.model.optimizer.variables]
            states.append(self.model.get_weights() + optimizer)

    x = np.random.default_rng(0).random((64, 2)).astype("float32")
    y = x @ np.array([[1.0], [-2.0]], "float32")
    model.fit(x, y, epochs=5, verbose=0, callbacks=[Score(), BestEpochInMemory(inner)])
    assert writes == [1] and inner.best_value == 1.0
    # The model keeps the last epoch's state; the file holds the second epoch's, optimizer too.
    np.testing.assert_array_equal(model.get_weights()[0], states[-1][0])
    model.load_weights(str(tmp_path / "best.weights.h5"))
    loaded = model.get_weights() + [v.numpy() for v in model.optimizer.variables]
    assert len(loaded) == len(states[1]) > 2
    for saved, expected in zip(loaded, states[1], strict=True):
        np.testing.assert_array_equal(saved, expected)


def test_the_heap_is_frozen_only_while_searching():
    import gc

    from blockspec.tuning.search import frozen_heap

    before = gc.get_freeze_count()
    with frozen_heap():
        assert gc.get_freeze_count() > before
    assert gc.get_freeze_count() == before
