"""A 20-trial tune of a small spec: the tuner's overhead beyond the training itself < 10%.

`tuning.search.run_search` searches `specs/examples/digits_tune.yaml` (a small CNN on the 8x8
digits; random search, 20 trials, `EPOCHS` epochs each) into a temporary folder. A Keras callback,
passed to every trial, times each epoch from its start to the end of its validation: that is "the
training itself" (the first step's tracing included). Everything else in the search's wall time is
overhead: keras-tuner's oracle and `clear_session`, resolving and building each trial's model, the
trial's run folder (checkpoint and history every epoch, curves, TensorBoard logs, model.keras),
trials.csv and best.yaml after each trial.

Overhead = (search wall time - training time) / training time.
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

    from tuning.search import run_search

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


def run(quick: bool = False) -> list[Result]:
    trials, epochs = (QUICK_TRIALS, QUICK_EPOCHS) if quick else (TRIALS, EPOCHS)
    m = measure(trials, epochs)
    overhead = (m["total_s"] - m["train_s"]) / m["train_s"]
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
            },
            command=COMMAND,
        )
    ]
