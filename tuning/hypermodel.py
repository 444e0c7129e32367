"""A spec as a keras-tuner HyperModel.

`build(hp)` resolves the spec with a `TunerChooser`, which asks `hp` for the value of each search
space (one hyperparameter per space, named as the resolver names it: `vars/width`,
`stage3/repeat`, `train/optimizer/adam/learning_rate`), then compiles it. `fit` trains the model
with `training.trainer.train`, the code `blockspec train` runs, into the trial's folder.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch  # the callback every trial gets

from blockspec.builder.compile import compile_spec
from blockspec.builder.errors import Problem, SpecError
from blockspec.builder.load import DEFAULT_LIMITS, Document, Limits, format_path
from blockspec.builder.resolve import resolve_spec
from blockspec.builder.spaces import Chooser, default_value
from blockspec.builder.spec import ResolvedSpec
from blockspec.training import files, trainer
from blockspec.training.callbacks import load_state
from blockspec.training.config import with_defaults
from blockspec.training.errors import DataError, TrainingError, WriteError
from blockspec.tuning.document import PathT, SpaceIndex, concrete_document, contains_space

VALUES_FILE = "trial_values.json"


class TuneSpecError(SpecError, kt.errors.FatalError):
    """A spec that cannot be searched at all (not one bad trial): stops the search."""


class TunerChooser(Chooser):
    """Takes each search space's value from keras-tuner `HyperParameters`.

    int -> `hp.Int`, float -> `hp.Float`, bool -> `hp.Boolean`, choice -> `hp.Choice` (values of
    one scalar type as they are; steps, mappings and mixed values by label). Entering a choice's
    value also enters `hp.conditional_scope(name, [value])`, so the spaces inside it are
    conditional; its other values that hold spaces are entered once, empty, which tells
    keras-tuner they exist (it then builds with them to discover their spaces).

    Args:
        hp: the trial's (or the search space's) hyperparameters.
        index: the document's spaces.
    """

    def __init__(self, hp: kt.HyperParameters, index: SpaceIndex):
        super().__init__()
        self.hp = hp
        self.index = index
        self.node: dict[str, PathT] = {}  # hyperparameter -> where it is written
        self.names: dict[PathT, str] = {}  # where -> hyperparameter
        self.choices: dict[str, tuple[list, list]] = {}  # name -> (values, keras-tuner values)

    def choose(self, name: str, space: dict, path: str) -> Any:
        node = self.index.locate(space, path)
        if node is None:
            raise TuneSpecError(
                Problem(
                    f"cannot tell where search space `{name}` is written, so best.yaml could not "
                    "hold its value",
                    path,
                )
            )
        other = self.names.setdefault(node, name)
        if other != name:
            raise TuneSpecError(
                Problem(
                    f"this search space is resolved once per use ({other}, {name}), so each use "
                    "is its own hyperparameter and best.yaml could not hold their values in one "
                    "place. Write the space where the block is used, or in `vars` to share one "
                    "value",
                    format_path(node),
                    self.index.document.mark(node),
                )
            )
        self.node[name] = node
        try:
            return super().choose(name, space, path)
        except (ValueError, TypeError) as e:
            if isinstance(e, SpecError):
                raise
            raise TuneSpecError(
                Problem(
                    f"keras-tuner cannot search this space: {e}",
                    path,
                    self.index.document.mark(node),
                )
            ) from e

    def pick(self, name: str, space: dict) -> Any:
        if space["tune"] == "choice":
            values = list(space["values"])
            self.choices[name] = (values, _tuner_values(values))
        try:
            value = self._ask(name, space)
        except KeyError:  # active, but the trial's values hold none for it: take its default
            self.hp.values[name] = self._tuner_value(name, default_value(space))
            value = self._ask(name, space)
        if value is None:  # keras-tuner answers None for an inactive space
            return default_value(space)
        if name in self.choices:
            values, tuner_values = self.choices[name]
            return values[tuner_values.index(value)]
        return value

    def _ask(self, name: str, space: dict) -> Any:
        """Declare the space in `hp` (once) and read its value."""
        hp, kind, default = self.hp, space["tune"], space.get("default")
        if kind == "int":
            return hp.Int(
                name,
                space["min"],
                space["max"],
                step=space.get("step"),
                sampling=space.get("sampling", "linear"),
                default=default,
            )
        if kind == "float":
            step = space.get("step")
            return hp.Float(
                name,
                float(space["min"]),
                float(space["max"]),
                step=None if step is None else float(step),
                sampling=space.get("sampling", "linear"),
                default=None if default is None else float(default),
            )
        if kind == "bool":
            return hp.Boolean(name, default=bool(default))
        tuner_default = self._tuner_value(name, default) if "default" in space else None
        return hp.Choice(name, self.choices[name][1], default=tuner_default)

    def _tuner_value(self, name: str, value: Any) -> Any:
        """A choice's value as keras-tuner knows it (its label, for values searched by label)."""
        if name not in self.choices:
            return value
        values, tuner_values = self.choices[name]
        return tuner_values[values.index(value)] if value in values else value

    @contextlib.contextmanager
    def conditional(self, name: str, value: Any):
        tuner_values = self.choices[name][1] if name in self.choices else [value]
        current = self._tuner_value(name, value)
        node = self.index.nodes.get(self.node.get(name, ()))
        written = node.get("values") if node else None
        for i, other in enumerate(tuner_values):
            if other != current and (written is None or contains_space(written[i])):
                with self.hp.conditional_scope(name, [other]):
                    pass
        with super().conditional(name, value), self.hp.conditional_scope(name, [current]):
            yield

    def values(self) -> dict[PathT, Any]:
        """Document path -> the value this resolution gave the space written there."""
        return {node: self.chosen[name].value for node, name in self.names.items()}


def _tuner_values(values: list) -> list:
    """keras-tuner takes choices of one type (int, float or str); anything else goes by label."""
    kinds = {type(v) for v in values}
    if len(kinds) == 1 and next(iter(kinds)) in (int, float, str):
        return values
    labels: list[str] = []
    for i, v in enumerate(values):
        label = "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        labels.append(label if label not in labels else f"{label}_{i}")
    return labels


def one_line(error: BaseException, limit: int = 600) -> str:
    """An error as one line: a `SpecError`'s problems joined by `; `."""
    if isinstance(error, SpecError):
        text = "; ".join(str(p) for p in error.problems)
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SpecHyperModel(kt.HyperModel):
    """A spec's search spaces as keras-tuner hyperparameters; each trial trained as `train` says.

    Args:
        document: the merged source document.
        objective: what the search optimises (its name must be a metric the trial reports).
        max_epochs: caps `train.epochs` (None: no cap). Hyperband passes its own epochs to `fit`.
        limits: bounds on untrusted input, as `--limit` sets them.
    """

    def __init__(
        self,
        document: Document,
        objective: kt.Objective,
        max_epochs: int | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ):
        super().__init__(name="blockspec")
        self.index = SpaceIndex(document)
        self.limits = limits
        self.objective = objective
        self.max_epochs = max_epochs
        self.declaring = False  # while keras-tuner explores the space: resolve, build nothing
        self.trial_dir: Path | None = None
        self.execution = 0
        self.last_metrics: dict[str, float] = {}
        # Given a trial's best value: write its weights file? (None: always; the tuner sets it.)
        self.keep_weights: Callable[[float], bool] | None = None
        # A trial id -> its weights file (the tuner sets it; Hyperband continues from them).
        self.weights_of: Callable[[str], str] | None = None
        self._current: tuple[int, ResolvedSpec, TunerChooser] | None = None

    # -- keras-tuner's HyperModel ------------------------------------------------------------------
    def resolve(self, hp: kt.HyperParameters) -> tuple[ResolvedSpec, TunerChooser]:
        """The spec resolved with `hp`'s values (registering its spaces in `hp`)."""
        chooser = TunerChooser(hp, self.index)
        return resolve_spec(self.index.marked, chooser=chooser, limits=self.limits), chooser

    def build(self, hp: kt.HyperParameters):
        if self.declaring:
            try:
                self.resolve(hp)
            except TuneSpecError:
                raise
            except SpecError:
                pass  # these defaults do not resolve; their spaces are registered all the same
            return None
        try:
            resolved, chooser = self.resolve(hp)
        except TuneSpecError:
            raise
        except SpecError as e:
            raise kt.errors.FailedTrialError(one_line(e)) from e
        self._current = (id(hp), resolved, chooser)
        cfg = with_defaults(resolved.train)
        # As `blockspec train` does: seed, then build, so a trial starts from the same weights.
        keras.utils.set_random_seed(int(cfg["seed"]) + self.execution)
        try:
            with trainer.dtype_policy(cfg["precision"]):
                return compile_spec(resolved).model
        except SpecError as e:
            raise kt.errors.FailedTrialError(one_line(e)) from e
        except Exception as e:
            if _out_of_memory(e):
                raise kt.errors.FailedTrialError(f"out of memory: {one_line(e)}") from e
            raise

    def fit(self, hp, model, *args, callbacks=None, epochs=None, initial_epoch=0, **kwargs):
        """Train `model` with `training.trainer.train`; the metrics of the best epoch.

        `epochs`/`initial_epoch` come from Hyperband: the model already holds the weights of the
        trial it continues, after `initial_epoch` epochs; train on to `epochs`, the
        learning-rate schedule spanning all `epochs`.
        """
        if self._current is not None and self._current[0] == id(hp):
            _, resolved, chooser = self._current
        else:
            resolved, chooser = self.resolve(hp)
        execution = self.execution
        self.execution += 1
        cfg = with_defaults(resolved.train)
        train = copy.deepcopy(resolved.train)
        train["seed"] = int(cfg["seed"]) + execution
        initial_epoch = int(initial_epoch or 0)
        if epochs is not None:
            train["epochs"] = max(initial_epoch + 1, int(epochs))
        elif self.max_epochs:
            train["epochs"] = min(int(cfg["epochs"]), int(self.max_epochs))
        run = dataclasses.replace(
            resolved, train=train, document=concrete_document(self.index, chooser.values())
        )
        out = self.run_dir(execution)
        values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
        resume = _same_values(out, values) and _resumable(out)
        # A continued trial starts from the weights keras-tuner loaded into `model`; the file
        # also holds the optimizer's state (Adam's moments), which loading before `compile`
        # skips: the trainer loads it again after compiling.
        continues = hp.values.get("tuner/trial_id") if initial_epoch else None
        start = self.weights_of(continues) if continues and self.weights_of else None
        try:
            result = trainer.train(
                run,
                out,
                resume=resume,
                overwrite=True,  # the trial's folder is the search's: replace what it holds
                records={VALUES_FILE: json.loads(json.dumps(values, sort_keys=True, default=str))},
                initial_weights=None if resume else start,
                build=_builder(model, cfg["distribute"]),
                callbacks=[_in_memory(c, self.keep_weights) for c in callbacks or []],
                verbose=0,
                initial_epoch=0 if resume else initial_epoch,
                artifacts="trial",
            )
        except DataError as e:
            raise kt.errors.FatalError(f"the data could not be read: {e}") from e
        except WriteError as e:  # a full disk does not empty itself for the next trial
            raise kt.errors.FatalError(str(e)) from e
        except (SpecError, TrainingError) as e:
            raise kt.errors.FailedTrialError(one_line(e)) from e
        except Exception as e:
            if _out_of_memory(e):
                raise kt.errors.FailedTrialError(f"out of memory: {one_line(e)}") from e
            raise
        if result.stopped == "nan":
            raise kt.errors.FailedTrialError(result.message.split(";")[0])
        self.last_metrics = self.best_epoch(result.history)
        return self.last_metrics

    # -- helpers -----------------------------------------------------------------------------------
    def begin_trial(self, trial_dir: str | Path) -> None:
        self.trial_dir = Path(trial_dir)
        self.execution = 0
        self._current = None

    def run_dir(self, execution: int) -> Path:
        base = self.trial_dir or Path("trial")
        return base / ("run" if execution == 0 else f"run-{execution + 1}")

    def best_epoch(self, history: dict[str, list]) -> dict[str, float]:
        """Every metric at the epoch where the objective was best."""
        name = self.objective.name
        series = history.get(name) or []
        good = [(v, i) for i, v in enumerate(series) if v is not None and v == v]
        if not good:
            reported = sorted(k for k in history if k not in ("epoch", "learning_rate"))
            raise kt.errors.FatalError(
                f"the objective `{name}` is not among the metrics a trial reports "
                f"({', '.join(reported) or 'none'}). Set `tune.objective` to one of them."
            )
        pick = max if self.objective.direction == "max" else min
        _, best = pick(good, key=lambda p: p[0])
        return {
            k: float(v[best])
            for k, v in history.items()
            if k != "epoch" and best < len(v) and v[best] is not None
        }

    def concrete(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """The source document with each search space replaced by its value in `hp`."""
        _, chooser = self.resolve(hp.copy())
        return concrete_document(self.index, chooser.values())


def _builder(model, distribute: str):
    """The trainer's `build`: the model keras-tuner built (and, for Hyperband, loaded)."""
    if distribute != "mirrored":
        return lambda resolved: model

    def build(resolved):  # variables must be made inside the strategy's scope
        fresh = trainer.default_build(resolved)
        fresh.set_weights(model.get_weights())
        return fresh

    return build


class BestEpochInMemory(keras.callbacks.Callback):
    """keras-tuner's `SaveBestEpoch`, keeping the best epoch's state in memory until `fit` ends.

    keras-tuner writes the trial's weights file (the model's and the optimizer's variables) after
    every epoch that improves the objective: most epochs of a short trial, some 60 ms each on a
    small model here. This copies the variables instead and writes the file once, at the end,
    with the values they had at the best epoch. The wrapped callback keeps the best value
    across a trial's executions.

    Args:
        inner: the callback keras-tuner made for the trial.
        keep: called with the trial's best value at the end: write the file only when it says
            so (a search that never reads the file again keeps the best trial's alone).
    """

    def __init__(self, inner: SaveBestEpoch, keep: Callable[[float], bool] | None = None):
        super().__init__()
        self.inner = inner
        self.keep = keep  # given the best value: write the file? (None: always)
        self.best: list | None = None

    def _variables(self) -> list:
        optimizer = getattr(self.model, "optimizer", None)
        return [*self.model.weights, *(optimizer.variables if optimizer is not None else [])]

    def on_train_begin(self, logs=None):
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        objective = self.inner.objective
        if objective.has_value(logs):
            value = objective.get_value(logs)
            if not objective.better_than(value, self.inner.best_value):
                return
            self.inner.best_value = value
        self.best = [keras.ops.convert_to_numpy(v) for v in self._variables()]

    def on_train_end(self, logs=None):
        best, self.best = self.best, None
        if best is None or (self.keep is not None and not self.keep(self.inner.best_value)):
            return
        variables = self._variables()
        last = [keras.ops.convert_to_numpy(v) for v in variables]
        try:
            for variable, value in zip(variables, best, strict=True):
                variable.assign(value)
            self.inner.set_model(self.model)
            self._save_atomically()
        finally:
            for variable, value in zip(variables, last, strict=True):
                variable.assign(value)

    def _save_atomically(self) -> None:
        """keras-tuner's write of the trial's weights (`SaveBestEpoch._save_model`), through
        `files.write_weights`: made in memory, written atomically; a full disk is a
        `WriteError`, the previous file intact."""
        files.write_weights(self.inner.filepath, self.model)


def _in_memory(callback, keep: Callable[[float], bool] | None):
    if isinstance(callback, SaveBestEpoch):
        return BestEpochInMemory(callback, keep)
    return callback


def _resumable(out: Path) -> bool:
    """The trial's folder holds a checkpoint (a damaged one: no, the trial starts again)."""
    try:
        return load_state(out) is not None
    except TrainingError:
        return False


def _same_values(out: Path, values: dict) -> bool:
    try:
        saved = json.loads((out / VALUES_FILE).read_text())
    except (OSError, ValueError):
        return False
    return saved == json.loads(json.dumps(values, sort_keys=True, default=str))


def _out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    import tensorflow as tf

    return isinstance(error, tf.errors.ResourceExhaustedError)
