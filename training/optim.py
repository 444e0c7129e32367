"""Optimizer, learning-rate schedule, and per-output losses and metrics from `train`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

from blockspec.builder.resolve.outputs import CROSSENTROPY, listed_metrics

# Names in `metrics` that need integer labels, and their one-hot twins (label smoothing one-hots).
SPARSE_METRICS = {
    "sparse_categorical_accuracy": "categorical_accuracy",
    "sparse_top_k_categorical_accuracy": "top_k_categorical_accuracy",
    "sparse_categorical_crossentropy": "categorical_crossentropy",
}
NO_DECAY = ["bias", "gamma", "beta"]  # biases and normalisation parameters keep their size


@keras.saving.register_keras_serializable(package="blockspec")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate per step: linear warmup, then constant, step decay or cosine decay.

    Args:
        kind: `constant`, `step` or `cosine`.
        learning_rate: the rate after warmup (the peak).
        warmup_steps: steps of linear warmup from `learning_rate / warmup_steps`.
        total_steps: the run's steps (cosine reaches `alpha * learning_rate` there).
        boundaries: step counts where `step` multiplies the rate by `factor`.
        factor: step decay factor.
        alpha: cosine's final fraction of `learning_rate`.

    Example:
        >>> s = EpochSchedule("cosine", 0.1, warmup_steps=10, total_steps=110)
        >>> round(float(s(5)), 4), round(float(s(110)), 4)
        (0.06, 0.0)
    """

    def __init__(
        self,
        kind: str,
        learning_rate: float,
        warmup_steps: int = 0,
        total_steps: int = 1,
        boundaries: list[int] | tuple[int, ...] = (),
        factor: float = 0.1,
        alpha: float = 0.0,
    ):
        self.kind = kind
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)
        self.alpha = float(alpha)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        base = self.learning_rate
        if self.kind == "step":
            drops = (
                sum(ops.cast(step >= b, "float32") for b in self.boundaries)
                if self.boundaries
                else 0.0
            )
            after = base * ops.power(self.factor, drops)
        elif self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            t = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            after = base * (self.alpha + (1 - self.alpha) * 0.5 * (1 + ops.cos(math.pi * t)))
        else:
            after = base * ops.ones_like(step)
        if not self.warmup_steps:
            return after
        warm = base * ops.minimum((step + 1.0) / self.warmup_steps, 1.0)
        return ops.where(step < self.warmup_steps, warm, after)

    def get_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "boundaries": self.boundaries,
            "factor": self.factor,
            "alpha": self.alpha,
        }


def _optimizer_class(name: str):
    for attr in dir(keras.optimizers):
        if attr.lower() == name.lower():
            return getattr(keras.optimizers, attr)
    raise ValueError(f"unknown optimizer `{name}`")


def make_schedule(schedule: dict | None, learning_rate: float, steps_per_epoch: int, epochs: int):
    """The learning rate the optimizer gets: a float or an `EpochSchedule`.

    `reduce_on_plateau` is a callback (see `plateau_callback`): the rate stays a float here.
    """
    if not schedule:
        return learning_rate
    name, args = next(iter(schedule.items())) if isinstance(schedule, dict) else (schedule, {})
    args = args or {}
    if name == "reduce_on_plateau":
        return learning_rate
    warmup = args.get("epochs", 1) if name == "warmup" else args.get("warmup_epochs", 0)
    kind = "constant" if name == "warmup" else name
    boundaries: list[int] = []
    if name == "step":
        if "boundaries" in args:
            boundaries = list(args["boundaries"])
        else:
            boundaries = list(range(args["every"], epochs, args["every"]))
    return EpochSchedule(
        kind,
        learning_rate,
        warmup_steps=warmup * steps_per_epoch,
        total_steps=epochs * steps_per_epoch,
        boundaries=[b * steps_per_epoch for b in boundaries],
        factor=args.get("factor", 0.1),
        alpha=args.get("alpha", 0.0),
    )


def plateau_callback(schedule: dict | None) -> keras.callbacks.Callback | None:
    """`ReduceLROnPlateau` for `schedule: {reduce_on_plateau: {...}}`, else None."""
    if not isinstance(schedule, dict) or "reduce_on_plateau" not in schedule:
        return None
    args = dict(schedule["reduce_on_plateau"] or {})
    return keras.callbacks.ReduceLROnPlateau(
        monitor=args.get("monitor", "val_loss"),
        factor=args.get("factor", 0.1),
        patience=args.get("patience", 5),
        min_delta=args.get("min_delta", 1e-4),
        min_lr=args.get("min_lr", 0.0),
        cooldown=args.get("cooldown", 0),
        verbose=1,
    )


def make_optimizer(train: dict[str, Any], steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer `train.optimizer` names, with its schedule and weight decay.

    Raises:
        ValueError: Keras refused the arguments (the message names them).
    """
    name, args = next(iter(train["optimizer"].items()))
    args = dict(args or {})
    cls = _optimizer_class(name)
    default_lr = 0.01 if name.lower() == "sgd" else 1e-3
    learning_rate = float(args.pop("learning_rate", default_lr))
    rate = make_schedule(train.get("schedule"), learning_rate, steps_per_epoch, train["epochs"])
    weight_decay = float(train.get("weight_decay") or 0.0)
    if weight_decay:
        args["weight_decay"] = weight_decay
    try:
        optimizer = cls(learning_rate=rate, **args)
    except TypeError as e:
        raise ValueError(f"optimizer `{name}` refused its arguments: {e}") from e
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


@dataclass
class Objectives:
    """What `compile` gets, and how integer labels become each output's target.

    Attributes:
        loss, loss_weights, metrics: dicts keyed by output name.
        one_hot: output name -> number of classes, for outputs whose targets are one-hot.
    """

    loss: dict[str, Any]
    loss_weights: dict[str, float]
    metrics: dict[str, list[Any]]
    one_hot: dict[str, int]


def output_width(model: keras.Model, name: str) -> int:
    return int(model.get_layer(name).output.shape[-1])


def objectives(outputs, model: keras.Model, label_smoothing: float = 0.0) -> Objectives:
    """Losses, loss weights and metrics per output.

    Outputs without `loss` get sparse categorical crossentropy; `from_logits` is set when the
    output has no activation. Label smoothing turns crossentropy targets one-hot. When no output
    lists metrics, the first output that is not `train_only` and has a crossentropy loss reports
    `accuracy` (`listed_metrics`, which `validate` reads too).

    Args:
        outputs: the spec's `OutputSpec`s.
        model: the training model (its output widths give the one-hot depth).
        label_smoothing: `train.label_smoothing`.
    """
    loss, weights, metrics, one_hot = {}, {}, {}, {}
    for out in outputs:
        from_logits = out.activation in (None, "linear")
        spec_loss = out.loss or "sparse_categorical_crossentropy"
        key = spec_loss.lower() if isinstance(spec_loss, str) else None
        smooth = label_smoothing if key in CROSSENTROPY else 0.0
        if key in CROSSENTROPY and (smooth or key == "categorical_crossentropy"):
            fn = keras.losses.CategoricalCrossentropy(
                from_logits=from_logits, label_smoothing=smooth
            )
            one_hot[out.name] = output_width(model, out.name)
        elif key == "sparse_categorical_crossentropy":
            fn = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        elif key == "binary_crossentropy":
            fn = keras.losses.BinaryCrossentropy(
                from_logits=from_logits, label_smoothing=label_smoothing
            )
        else:
            fn = keras.losses.get(spec_loss)
        loss[out.name] = fn
        weights[out.name] = float(out.loss_weight)
        names = listed_metrics(out, outputs)
        if out.name in one_hot:
            names = [SPARSE_METRICS.get(m, m) if isinstance(m, str) else m for m in names]
        metrics[out.name] = names
    return Objectives(loss, weights, metrics, one_hot)


def compile_for_spec(model: keras.Model, resolved, steps_per_epoch: int | None = None) -> None:
    """`model.compile` with the spec's losses, loss weights, metrics and `train.optimizer`.

    What `blockspec train` compiles, for `build_model(spec, compile=True)`: outputs the model
    does not have (train-only heads of an inference model) are left out. With
    `train.label_smoothing`, crossentropy outputs take one-hot targets.

    Args:
        model: the model built from `resolved`.
        resolved: the resolved spec.
        steps_per_epoch: batches per epoch, needed only by a `train.schedule`.

    Raises:
        ValueError: a schedule without `steps_per_epoch`, or optimizer arguments Keras refused.
    """
    from blockspec.training.config import with_defaults

    cfg = with_defaults(resolved.train)
    if cfg.get("schedule") and not steps_per_epoch:
        steps_per_epoch = _known_steps_per_epoch(cfg)
    present = set(model.output_names) if hasattr(model, "output_names") else None
    outputs = [o for o in resolved.outputs if present is None or o.name in present]
    obj = objectives(outputs, model, float(cfg["label_smoothing"]))
    model.compile(
        optimizer=make_optimizer(cfg, steps_per_epoch or 1),
        loss=obj.loss,
        loss_weights=obj.loss_weights,
        metrics=obj.metrics,
    )


def _known_steps_per_epoch(cfg: dict[str, Any]) -> int:
    from blockspec.training.sources import training_examples

    data = cfg["data"]
    kept = training_examples(data)
    if kept is None:
        raise ValueError(
            f"`train.schedule` spans the epochs of a `{data.get('source')}` source whose size is "
            "not known before reading it: pass steps_per_epoch= (batches per epoch)"
        )
    return max(1, math.ceil(kept / int(cfg["batch_size"])))
