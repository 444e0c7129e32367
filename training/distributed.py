"""Distribution strategies, and the custom training loop used under `distribute: multi_worker`.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so
multi-worker runs use `strategy.run` with the same Keras model, losses and optimizer (built in
`strategy.scope()`; the TensorFlow optimizer all-reduces the gradients across replicas). The loop
reports the same logs as `fit` (`loss`, `main_loss`, `main_accuracy`, `val_...`) to the same callbacks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from blockspec.training.errors import TrainingError


@dataclass
class Worker:
    """This process' place in a multi-worker cluster (index 0 is the chief)."""

    index: int = 0
    count: int = 1

    @property
    def chief(self) -> bool:
        return self.index == 0


def worker_from_env() -> Worker:
    """Read `TF_CONFIG`; a single worker when it is absent."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return Worker()
    config = json.loads(raw)
    workers = config.get("cluster", {}).get("worker", [])
    task = config.get("task", {})
    index = int(task.get("index", 0))
    if task.get("type") == "chief":
        index = 0
    return Worker(index=index, count=max(len(workers), 1))


def make_strategy(kind: str) -> tuple[tf.distribute.Strategy, Worker]:
    """The strategy for `train.distribute`, and this process' worker.

    `mirrored` uses every local GPU, else every logical CPU (two logical CPUs make a test
    cluster). `multi_worker` needs `TF_CONFIG`; create it before anything else touches TensorFlow.
    """
    if kind == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise TrainingError(
                "`distribute: multi_worker` needs the TF_CONFIG environment variable "
                '({"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                '"index": i}}) in every worker process'
            )
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise TrainingError(
                f"could not start MultiWorkerMirroredStrategy: {e} (it must be created before "
                "any other TensorFlow operation in the process)"
            ) from e
        return strategy, worker_from_env()
    if kind == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices), Worker()
    return tf.distribute.get_strategy(), Worker()


def _per_example(loss: keras.losses.Loss) -> keras.losses.Loss:
    config = loss.get_config()
    config["reduction"] = None
    return type(loss).from_config(config)


def _has_accuracy(metrics) -> bool:
    return any(
        m in ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy")
        for m in metrics
    )


def custom_fit(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    *,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None,
    objectives,
    global_batch_size: int,
    steps_per_epoch: int,
    epochs: int,
    initial_epoch: int,
    callbacks: list[keras.callbacks.Callback],
    verbose: int,
    jit_compile: bool = False,
) -> None:
    """Train `model` (compiled in `strategy.scope()`) with `strategy.run`, epoch by epoch.

    Args:
        model: the compiled training model (its optimizer is used).
        strategy: the strategy it was built under.
        train, validation: batched datasets with dict targets.
        objectives: the `optim.Objectives` the model was compiled with.
        global_batch_size: the batch size across all replicas.
        steps_per_epoch: training steps per epoch.
        epochs, initial_epoch: as for `fit`.
        callbacks: keras callbacks (history files, checkpoints, TensorBoard, early stopping).
        verbose: 1 shows a progress bar.
        jit_compile: compile the replica step with XLA.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist_train = strategy.experimental_distribute_dataset(train.with_options(options))
    dist_val = (
        strategy.experimental_distribute_dataset(validation.with_options(options))
        if validation is not None
        else None
    )
    train_step, eval_step = _step_functions(
        model, strategy, objectives, global_batch_size, jit_compile
    )
    callback_list = keras.callbacks.CallbackList(
        callbacks, model=model, add_history=False, add_progbar=False
    )
    callback_list.set_params({"epochs": epochs, "steps": steps_per_epoch, "verbose": verbose})
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}")
        bar = keras.utils.Progbar(steps_per_epoch) if verbose else None
        logs = _train_epoch(model, dist_train, train_step, callback_list, bar)
        if dist_val is not None and not model.stop_training:
            val: dict[str, float] = {}
            for x, y in dist_val:
                for k, v in eval_step(x, y).items():
                    val[k] = val.get(k, 0.0) + float(v)
            logs.update({f"val_{k}": v for k, v in _averaged(val).items()})
        if bar is not None:
            bar.update(steps_per_epoch, list(logs.items()), finalize=True)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()


def _averaged(totals: dict[str, float]) -> dict[str, float]:
    """Per-example means from summed statistics and their `count`."""
    totals = dict(totals)
    count = max(totals.pop("count"), 1.0)
    return {k: v / count for k, v in totals.items()}


def _train_epoch(model, dist_train, train_step, callback_list, bar) -> dict[str, float]:
    """One pass over the distributed training data; the epoch's mean statistics."""
    totals: dict[str, float] = {}
    for step, (x, y) in enumerate(dist_train):
        for k, v in train_step(x, y).items():
            totals[k] = totals.get(k, 0.0) + float(v)
        logs = _averaged(totals)
        callback_list.on_train_batch_end(step, logs)
        if bar is not None:
            # The values are running means already: show them as they are.
            bar.stateful_metrics.update([*logs, *(f"val_{k}" for k in logs)])
            bar.update(step + 1, list(logs.items()))
        if model.stop_training:
            break
    return _averaged(totals)


def _step_functions(model, strategy, objectives, global_batch_size: int, jit_compile: bool):
    """The distributed training and evaluation steps: each returns summed statistics (losses,
    hits, `count`) over the global batch, reduced across replicas."""
    optimizer = model.optimizer
    losses = {name: _per_example(fn) for name, fn in objectives.loss.items()}
    weights = objectives.loss_weights
    accuracy = [n for n, m in objectives.metrics.items() if _has_accuracy(m)]
    names = list(losses)
    scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def sums(y, pred):
        out = {}
        total = 0.0
        for n in names:
            per = tf.cast(losses[n](y[n], pred[n]), "float32")
            out[f"{n}_loss"] = tf.reduce_sum(per)
            total += weights[n] * out[f"{n}_loss"]
        out["loss"] = total
        for n in accuracy:
            target = y[n]
            if n in objectives.one_hot:
                target = tf.argmax(target, axis=-1)
            hits = tf.equal(
                tf.argmax(pred[n], axis=-1, output_type="int32"),
                tf.cast(tf.reshape(target, [-1]), "int32"),
            )
            out[f"{n}_accuracy"] = tf.reduce_sum(tf.cast(hits, "float32"))
        out["count"] = tf.cast(tf.shape(pred[names[0]])[0], "float32")
        return out

    def replica_train(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            stats = sums(y, pred)
            loss = stats["loss"] / global_batch_size
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss) if scale_loss else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return stats

    def replica_eval(x, y):
        return sums(y, model(x, training=False))

    def reduce(per_replica):
        return {
            k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }

    replica_step = (
        tf.function(replica_train, jit_compile=jit_compile) if jit_compile else replica_train
    )

    @tf.function
    def train_step(x, y):
        return reduce(strategy.run(replica_step, args=(x, y)))

    @tf.function
    def eval_step(x, y):
        return reduce(strategy.run(replica_eval, args=(x, y)))

    return train_step, eval_step
