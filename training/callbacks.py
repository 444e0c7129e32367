"""The run folder's per-epoch files, checkpoints for `--resume`, and the NaN guard.

One callback does all three so they agree: an epoch is recorded (history, metrics, curves) exactly
when its checkpoint is committed, and an epoch whose loss became NaN is neither.

Checkpoint layout (`DIR/checkpoint/`): `epoch-N.weights.h5` (model and optimizer state after N
epochs) and `state.json`, the commit point naming the file and holding the history so far. Both
are written atomically; an older checkpoint is deleted only after the new state is committed.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from blockspec.training.errors import RunFolderError
from blockspec.training.run_folder import RunFolder, read_record

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
WEIGHTS_NAME = re.compile(r"epoch-[0-9]{1,9}\.weights\.h5")


def load_state(out_dir: str | Path) -> dict[str, Any] | None:
    """The committed checkpoint state of a run folder, or None (no checkpoint, or its file gone).

    Raises:
        RunFolderError: `state.json` is damaged, or names a weights file outside the checkpoint
            folder (or not one `RunFiles` writes).
    """
    ckpt = Path(out_dir) / CHECKPOINT_DIR
    state_path = ckpt / STATE_FILE
    if not state_path.is_file():
        return None
    state = read_record(state_path, "; start afresh with --overwrite")
    weights = state.get("weights") if isinstance(state, dict) else None
    epoch = state.get("epoch") if isinstance(state, dict) else None
    history = state.get("history") if isinstance(state, dict) else None
    if not (isinstance(epoch, int) and epoch >= 0 and isinstance(history, dict)):
        raise RunFolderError(
            f"{state_path} is damaged (it needs an epoch count and a history); "
            "start afresh with --overwrite"
        )
    if not isinstance(weights, str) or not WEIGHTS_NAME.fullmatch(weights):
        raise RunFolderError(
            f"{state_path} names the weights file {str(weights)[:80]!r}; a checkpoint's weights "
            f"are `epoch-N.weights.h5` inside {ckpt}. Refused; start afresh with --overwrite"
        )
    if not (ckpt / weights).is_file():
        return None
    state["weights_path"] = str(ckpt / weights)
    return state


def best_mode(metric: str) -> str:
    """`min` for losses and errors, `max` for the rest (accuracy, AUC, ...)."""
    name = metric.removeprefix("val_")
    lower = ("loss", "error", "crossentropy", "mse", "mae", "learning_rate")
    return "min" if any(k in name for k in lower) else "max"


def summarize(history: dict[str, list[float]]) -> dict[str, Any]:
    """`metrics.json`: the final and the best value (with its 1-based epoch) of every metric."""
    final, best = {}, {}
    for key, values in history.items():
        if key == "epoch" or not values:
            continue
        final[key] = values[-1]
        clean = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        if not clean:
            continue
        pick = min if best_mode(key) == "min" else max
        value, index = pick(clean, key=lambda p: p[0])
        best[key] = {"value": value, "epoch": index + 1}
    return {"epochs": len(history.get("epoch", [])), "final": final, "best": best}


def curves_png(history: dict[str, list[float]]) -> bytes:
    """`curves.png`: loss per epoch, and every accuracy metric per epoch (training dashed)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e + 1 for e in history.get("epoch", [])]
    accuracy = [k for k in history if k.endswith("accuracy") and not k.startswith("val_")]
    fig, axes = plt.subplots(1, 2 if accuracy else 1, figsize=(11 if accuracy else 6, 4))
    axes = np.atleast_1d(axes)
    for ax, keys, title in (
        (axes[0], ["loss"], "loss"),
        (axes[-1], accuracy, "accuracy"),
    ):
        if not keys:
            continue
        for key in keys:
            for name, style in ((key, "--"), (f"val_{key}", "-")):
                if name in history:
                    ax.plot(epochs, history[name], style, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buffer.getvalue()


class RunFiles(keras.callbacks.Callback):
    """Per epoch: checkpoint, `history.csv`, `metrics.json`, `curves.png`; stops on a NaN loss.

    Args:
        folder: the run folder (open: every file goes through it, so its manifest lists them).
        history: the history so far (from the checkpoint when resuming).
        save_checkpoints: write `checkpoint/` (off for nothing but tests).
        checkpoint_every: seconds between checkpoints (0: after every epoch). An epoch that ends
            sooner after the last checkpoint is recorded in memory only; history.csv and
            metrics.json are written with each checkpoint and at the end. A kill loses at most
            this long of training.
        curves: draw `curves.png` at the end (it takes a tenth of a second or more).
    """

    def __init__(
        self,
        folder: RunFolder,
        history: dict[str, list[float]] | None = None,
        save_checkpoints: bool = True,
        checkpoint_every: float = 0.0,
        curves: bool = True,
    ):
        super().__init__()
        self.folder = folder
        self.out_dir = folder.path
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.save_checkpoints = save_checkpoints
        self.checkpoint_every = float(checkpoint_every)
        self.curves = curves
        self._last_checkpoint = time.monotonic()
        self.nan: tuple[int, int] | None = None  # (epoch, batch), 0-based, where the loss broke
        self.last_good_epoch = len(self.history.get("epoch", []))
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan = (self._epoch, batch)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.nan is not None or not all(
            math.isfinite(float(v)) for k, v in logs.items() if "loss" in k
        ):
            self.nan = self.nan or (epoch, -1)
            self.model.stop_training = True
            return
        row = {"epoch": epoch}
        lr = _learning_rate(self.model)
        if lr is not None:
            row["learning_rate"] = lr
        row.update({k: float(v) for k, v in logs.items() if k != "learning_rate"})
        done = len(self.history.get("epoch", []))
        for key in [*self.history, *(k for k in row if k not in self.history)]:
            self.history.setdefault(key, [None] * done).append(row.get(key))
        self.last_good_epoch = epoch + 1
        if time.monotonic() - self._last_checkpoint < self.checkpoint_every:
            return
        if self.save_checkpoints:
            self._checkpoint(epoch + 1)
        self._last_checkpoint = time.monotonic()
        self.write_files(plot=False)

    def on_train_begin(self, logs=None):
        self._last_checkpoint = time.monotonic()

    def on_train_end(self, logs=None):
        if self.history.get("epoch"):
            self.write_files(plot=self.curves)

    def write_files(self, plot: bool = True) -> None:
        """`history.csv` and `metrics.json` (every epoch); `curves.png` (at the end: it is slow)."""
        keys = list(self.history)
        n = len(self.history.get("epoch", []))
        rows = [[_cell(self.history[k], i, k) for k in keys] for i in range(n)]
        self.folder.write_csv("history.csv", keys, rows)
        self.folder.write_json("metrics.json", summarize(self.history))
        if plot:
            self.folder.write_bytes("curves.png", curves_png(self.history))

    def _checkpoint(self, epochs_done: int) -> None:
        name = f"epoch-{epochs_done}.weights.h5"
        self.folder.write_weights(f"{CHECKPOINT_DIR}/{name}", self.model)
        self.folder.write_json(
            f"{CHECKPOINT_DIR}/{STATE_FILE}",
            {"epoch": epochs_done, "weights": name, "history": self.history},
        )
        for old in (self.out_dir / CHECKPOINT_DIR).glob("epoch-*.weights.h5"):
            if old.name != name:
                self.folder.remove(f"{CHECKPOINT_DIR}/{old.name}")


def _cell(column: list, index: int, key: str):
    value = column[index] if index < len(column) else None
    if key == "epoch":
        return int(value) + 1  # 1-based in the file, as the progress bar shows
    return "" if value is None else repr(float(value))


def _learning_rate(model) -> float | None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        lr = optimizer.learning_rate  # the current value, schedules evaluated at `iterations`
        return float(keras.ops.convert_to_numpy(lr))
    except (AttributeError, TypeError, ValueError):
        return None
