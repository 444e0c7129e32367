"""(1.1) `train.freeze` and `train.stages` in a run: which layers train, and the phases of a fit.

A stage is a freeze list and an optimizer for some epochs; stages follow each other in one run,
counting epochs on (`StageConfig.first_epoch`), each with a fresh optimizer of its own whose step
count starts where the earlier stages left it (so a schedule over the run goes on). A layer that
the spec already froze (`trainable: false`, a frozen backbone) stays frozen in every stage.

Keras 3's `BatchNormalization` with `trainable=False` runs in inference mode (its moving mean and
variance stay as they are), as Keras' fine-tuning guide wants for a frozen backbone.

`--resume` finds its stage from the checkpoint's epoch: the model is compiled as the stage of the
last completed epoch was (so the checkpoint's optimizer state fits), and the next stage, when the
checkpoint ends one, starts as it would have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from blockspec.builder.errors import Problem, SpecError
from blockspec.builder.resolve.train import NamedArgs, StageConfig
from blockspec.builder.resolve.train_freeze import chosen_steps, layers_of
from blockspec.training.optim import make_optimizer


def leaf_layers(model: Any) -> list[Any]:
    """The model's layers, nested models walked."""
    out = []
    for layer in model.layers:
        out += leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return out


def stages_of(cfg: dict[str, Any], resolved) -> tuple[StageConfig, ...]:
    """The run's stages; without `train.stages`, one stage: all epochs, `train.freeze`."""
    config = resolved.train_config
    if config is not None and config.stages:
        return config.stages
    name, args = next(iter(cfg["optimizer"].items()))
    return (
        StageConfig(int(cfg["epochs"]), 0, tuple(cfg.get("freeze") or ()), NamedArgs(name, args)),
    )


def stage_at(stages: tuple[StageConfig, ...], epoch: int) -> int:
    """The index of the stage that trains 0-based epoch `epoch` (the last stage past the end)."""
    for index, stage in enumerate(stages):
        if epoch < stage.end:
            return index
    return len(stages) - 1


def freeze(
    model: Any, resolved, patterns: tuple[str, ...], kept: set[int], earlier: tuple[str, ...] = ()
) -> tuple[int, int]:
    """Sets each layer's `trainable`: frozen when its step matches a pattern or `kept` (ids of
    the layers the spec froze) holds it. A batch norm of a step an earlier stage froze (`earlier`:
    their patterns) stays frozen when this stage unfreezes its step, as Keras' fine-tuning guide
    keeps them in inference mode: their moving statistics, loaded or learnt on more data, would
    otherwise drift with the fine-tuning batches. Returns (layers frozen, batch norms kept so)."""
    layers = leaf_layers(model)
    names = _names(layers, resolved, patterns)
    before = _names(layers, resolved, earlier)
    frozen = kept_bn = 0
    for layer in layers:
        trainable = id(layer) not in kept and layer.name not in names
        if trainable and layer.name in before and isinstance(layer, BATCH_NORMS):
            trainable, kept_bn = False, kept_bn + 1
        if layer.trainable != trainable:
            layer.trainable = trainable
        frozen += not trainable
    return frozen, kept_bn


BATCH_NORMS = (keras.layers.BatchNormalization,)


def _names(layers, resolved, patterns: tuple[str, ...]) -> set[str]:
    """The names of the layers of the steps the patterns choose."""
    if not patterns:
        return set()
    chosen = chosen_steps(resolved.network, patterns)
    return set(layers_of([layer.name for layer in layers], resolved.network, chosen))


class Stager:
    """Compiles the run's model for each stage in turn.

    Args:
        setup: the trainer's `_Setup` (model, cfg, objectives, strategy, pipelines, jit).
        compile_model: `compile_model(optimizer)` compiles `setup.model` as the trainer does.
    """

    def __init__(self, setup, compile_model: Callable[[Any], None]):
        self.setup = setup
        self.compile_model = compile_model
        self.stages = stages_of(setup.cfg, setup.resolved)
        self.kept = {id(layer) for layer in leaf_layers(setup.model) if not layer.trainable}
        self.current: int | None = None
        self.counts = (0, 0)  # (layers frozen, batch norms kept) as the current stage set them

    @property
    def staged(self) -> bool:
        return bool(self.setup.resolved.train_config and self.setup.resolved.train_config.stages)

    def enter(self, index: int, *, quiet: bool = False) -> None:
        """Freeze as stage `index` says and compile with its optimizer (its step count set to
        the epochs before it)."""
        setup, stage = self.setup, self.stages[index]
        earlier = tuple(p for before in self.stages[:index] for p in before.freeze)
        frozen, kept_bn = freeze(setup.model, setup.resolved, stage.freeze, self.kept, earlier)
        self.counts = (frozen, kept_bn)
        cfg = {**setup.cfg, "optimizer": {stage.optimizer.name: dict(stage.optimizer.args)}}
        steps = setup.pipes.steps_per_epoch
        with setup.strategy.scope():
            try:
                optimizer = make_optimizer(cfg, steps)
            except ValueError as e:
                where = f"train.stages[{index}].optimizer" if self.staged else "train.optimizer"
                raise SpecError(Problem(str(e), path=where)) from e
            self.compile_model(optimizer)
            if stage.first_epoch:
                optimizer.build(setup.model.trainable_variables)
                optimizer.iterations.assign(stage.first_epoch * steps)
        self.current = index
        if self.staged and not quiet:
            print(self.line(index, frozen, kept_bn), flush=True)

    def line(self, index: int, frozen: int, kept_bn: int = 0) -> str:
        stage = self.stages[index]
        total = len(leaf_layers(self.setup.model))
        if not self.staged:
            return f"Freezing {', '.join(stage.freeze)} ({frozen} of {total} layers frozen)"
        what = f"freezing {', '.join(stage.freeze)}" if stage.freeze else "training every step"
        rate = stage.optimizer.args.get("learning_rate")
        optimizer = stage.optimizer.name + (f" (learning rate {rate:g})" if rate else "")
        bn = f", {kept_bn} of them batch norms kept in inference mode" if kept_bn else ""
        return (
            f"Stage {index + 1} of {len(self.stages)}: epochs {stage.first_epoch + 1}-{stage.end}"
            f", {what} ({frozen} of {total} layers frozen{bn}), {optimizer}"
        )

    def resume_at(self, epochs_done: int) -> None:
        """Before a checkpoint of `epochs_done` epochs loads: the stage that wrote it."""
        index = stage_at(self.stages, max(epochs_done - 1, 0))
        if index != self.current:
            self.enter(index, quiet=True)

    def fit(self, initial_epoch: int, fit_epochs: Callable[[int, int], None]) -> None:
        """Runs `fit_epochs(first, end)` for each stage from `initial_epoch` on; a stop (early
        stopping, a NaN loss) ends the run."""
        for index, stage in enumerate(self.stages):
            if stage.end <= initial_epoch:
                continue
            if index != self.current:
                self.enter(index)
            elif self.staged or stage.freeze:  # resumed inside it: entered quietly, told now
                print(self.line(index, *self.counts), flush=True)
            fit_epochs(max(initial_epoch, stage.first_epoch), stage.end)
            if self.setup.model.stop_training:
                return
