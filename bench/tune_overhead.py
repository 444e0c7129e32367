"""A 20-trial tune of a small spec: the tuner's overhead beyond the training itself < 10%.

`tuning.search.run_search` searches `specs/examples/digits_tune.yaml` (a small CNN on the 8x8
digits; random search, 20 trials, `EPOCHS` epochs each) into a temporary folder. A Keras callback,
passed to every trial, times each epoch from its start to the end of its validation: that is "the
training itself" (the first step's tracing included). Everything else in the search's wall time is
overhead: keras-tuner's oracle and `clear_session`, resolving and building each trial's model, the
trial's run folder (checkpoint and history every epoch, curves, TensorBoard logs, model.keras),
trials.csv and best.yaml after each trial.

Overhead = (search wall time - training time) / training time.

For scale, the same search written by hand (`hand_written_build`: keras-tuner's `RandomSearch`
over a Keras build function with the same spaces, the digits as numpy arrays, the same 80/20
split) is timed the same way: its overhead is keras-tuner's own (clearing the session and
collecting garbage before each trial, building the model, writing the best epoch's weights,
the oracle's files).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

from bench._common import ROOT, Result, check, clear_keras, quiet_tensorflow

COMMAND = "python bench/run.py --only tune_overhead"
SPEC = ROOT / "specs" / "examples" / "digits_tune.yaml"
TRIALS, EPOCHS = 20, 6
QUICK_TRIALS, QUICK_EPOCHS = 1, 1


def fit_timer():
    """One callback for all trials: the training time of each epoch, and each `fit`'s wall time.

    An epoch's training runs from its start to the end of its last step, or of its validation
    when there is one; the callbacks' own work at the end of an epoch (checkpoints, logs, plots)
    is not training, nor is anything outside `fit`.
    """
    import keras

    class FitTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[float] = []
            self.fits: list[float] = []
            self._fit_start = self._epoch_start = self._last = 0.0
            self._in_epoch = False

        def __deepcopy__(self, memo):  # the search deep-copies callbacks per trial: share this one
            return self

        def on_train_begin(self, logs=None):
            self._fit_start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self._in_epoch = True
            self._epoch_start = self._last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self._last = time.perf_counter()

        def on_test_end(self, logs=None):
            if self._in_epoch:  # the validation at the end of an epoch
                self._last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self._in_epoch = False
            self.epochs.append(self._last - self._epoch_start)

        def on_train_end(self, logs=None):
            self.fits.append(time.perf_counter() - self._fit_start)

    return FitTimer()


def measure(trials: int, epochs: int) -> dict:
    quiet_tensorflow()
    from rich.console import Console

    from blockspec.tuning.search import run_search

    timer = fit_timer()
    overrides = {
        "tune.tuner": "random",
        "tune.max_trials": trials,
        "tune.max_epochs": epochs,
        "train.epochs": epochs,
    }
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_search(
            str(SPEC),
            overrides,
            Path(tmp) / "search",
            overwrite=True,
            console=Console(file=io.StringIO(), width=120),
            callbacks=[timer],
        )
        total = time.perf_counter() - start
    clear_keras()
    return {
        "total_s": total,
        "train_s": sum(timer.epochs),
        "fit_wall_s": sum(timer.fits),
        "epochs": len(timer.epochs),
        "fits": len(timer.fits),
        "trials": result.trials,
        "completed": result.completed,
        "failed": result.failed,
    }


def hand_written_build(hp):
    """digits_tune written by hand for keras-tuner: the same spaces, layers and optimizer."""
    import keras
    from keras import layers

    width = hp.Int("width", 8, 32, step=8, default=8)
    x = inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    if hp.Choice("middle", ["basic_residual", "conv"]) == "basic_residual":
        with hp.conditional_scope("middle", ["basic_residual"]):
            filters = hp.Int("filters", 8, 32, step=8, default=8)
        shortcut = x
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
        x = layers.BatchNormalization()(
            layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        )
        if filters != width:
            shortcut = layers.Conv2D(filters, 1, use_bias=False)(shortcut)
            shortcut = layers.BatchNormalization()(shortcut)
        x = layers.Activation("relu")(layers.Add()([x, shortcut]))
    else:
        with hp.conditional_scope("middle", ["conv"]):
            kernel = hp.Choice("kernel", [3, 5])
        x = layers.Conv2D(width, kernel, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    for _ in range(hp.Int("repeat", 1, 3, default=1)):
        x = layers.Conv2D(2 * width, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(hp.Float("dropout", 0.0, 0.4, step=0.2, default=0.0))(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def measure_hand_written(trials: int, epochs: int) -> dict:
    """The same search written by hand: keras-tuner's RandomSearch, the digits in memory."""
    quiet_tensorflow()
    import keras_tuner as kt
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    order = np.random.default_rng(1).permutation(len(x))
    split = int(0.8 * len(x))
    train, val = order[:split], order[split:]
    timer = fit_timer()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tuner = kt.RandomSearch(
            hand_written_build,
            objective="val_accuracy",
            max_trials=trials,
            seed=1,
            directory=tmp,
            project_name="hand",
            overwrite=True,
        )
        tuner.search(
            x[train],
            y[train],
            validation_data=(x[val], y[val]),
            batch_size=32,
            epochs=epochs,
            callbacks=[timer],
            verbose=0,
        )
        total = time.perf_counter() - start
        completed = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    clear_keras()
    return {
        "total_s": total,
        "train_s": sum(timer.epochs),
        "fit_wall_s": sum(timer.fits),
        "trials": len(tuner.oracle.trials),
        "completed": completed,
    }


def run(quick: bool = False) -> list[Result]:
    trials, epochs = (QUICK_TRIALS, QUICK_EPOCHS) if quick else (TRIALS, EPOCHS)
    m = measure(trials, epochs)
    hand = measure_hand_written(trials, epochs)
    overhead = (m["total_s"] - m["train_s"]) / m["train_s"]
    hand_overhead = (hand["total_s"] - hand["train_s"]) / hand["train_s"]
    threshold, passed = check(100 * overhead, "<", 10, quick)
    return [
        Result(
            key="tune_overhead/digits_tune",
            target=f"a {trials}-trial tune of a small spec: overhead beyond the training itself",
            value=round(100 * overhead, 1),
            unit="%",
            threshold=threshold,
            passed=passed,
            compared=(
                f"`run_search` of digits_tune (random, {trials} trials, {epochs} epochs each): "
                "(search wall time - training time) / training time; training = each epoch "
                "from its start to the end of its validation"
            ),
            details={
                "search_wall_s": round(m["total_s"], 2),
                "training_s": round(m["train_s"], 2),
                "fit_wall_s": round(m["fit_wall_s"], 2),
                "overhead_vs_fit_wall_percent": round(
                    100 * (m["total_s"] - m["fit_wall_s"]) / m["fit_wall_s"], 1
                ),
                "per_trial_overhead_s": round(
                    (m["total_s"] - m["train_s"]) / max(1, m["trials"]), 2
                ),
                "per_trial_training_s": round(m["train_s"] / max(1, m["trials"]), 2),
                "epochs": m["epochs"],
                "trials": m["trials"],
                "completed": m["completed"],
                "failed": m["failed"],
                # The same search written by hand (keras-tuner's RandomSearch over a Keras
                # build function, digits as numpy arrays), timed the same way.
                "hand_written_overhead_percent": round(100 * hand_overhead, 1),
                "hand_written_per_trial_overhead_s": round(
                    (hand["total_s"] - hand["train_s"]) / max(1, hand["trials"]), 2
                ),
                "hand_written_per_trial_training_s": round(
                    hand["train_s"] / max(1, hand["trials"]), 2
                ),
                "hand_written_search_wall_s": round(hand["total_s"], 2),
                "hand_written_completed": hand["completed"],
            },
            command=COMMAND,
        )
    ]
