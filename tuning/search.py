"""Run a search: the tuner a spec's `tune` section names, its files, and the distributed roles.

The search folder (`runs/<spec name>-tune` by default) holds:
- `trials.csv`: one row per trial: status, objective, seconds, the value of each hyperparameter,
  and why a failed trial failed;
- `objective.png`: the objective of each trial, and the best so far;
- `best.yaml`: the source spec with every search space replaced by the best trial's value
  (`blockspec train` runs it as is);
- `trials/`: keras-tuner's state (`oracle.json`, what a resumed search reloads) and one folder per
  trial, whose `run/` is that trial's `blockspec train` run folder (`model.keras`, `history.csv`,
  the trial's concrete `spec.yaml`, ...).

`trials.csv` and `best.yaml` are rewritten after every trial, `objective.png` when the search ends
or stops (a resumed search redraws it).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src import config as kt_config
from keras_tuner.src import utils as kt_utils
from rich.console import Console

from blockspec.builder.errors import Problem, SpecError
from blockspec.builder.load import DEFAULT_LIMITS, Limits, load_document
from blockspec.builder.resolve import resolve_spec
from blockspec.builder.resolve.outputs import listed_metrics
from blockspec.builder.resolve.train import TrainConfig
from blockspec.builder.resolve.tune import TuneConfig, searchable_problems
from blockspec.builder.spec import ResolvedSpec
from blockspec.training import data as data_lib
from blockspec.training import files
from blockspec.training.callbacks import best_mode
from blockspec.training.config import with_defaults
from blockspec.training.errors import RunFolderError
from blockspec.training.optim import CROSSENTROPY, SPARSE_METRICS
from blockspec.training.run_folder import LOCK_FILE, RunFolder, run_dir_for, some_names
from blockspec.tuning.hypermodel import SpecHyperModel
from blockspec.tuning.records import SearchFiles, TrialTable, _fmt, best_trial, failure_reason
from blockspec.tuning.roles import Role, quiet_conditions, serve_oracle

PROJECT = "trials"  # keras-tuner's project folder inside the search folder
STATE_FILE = "tune.json"  # which spec this folder searches; a resume checks it
OUTPUTS = ("trials.csv", "objective.png", "best.yaml")
MAX_FAILED_IN_A_ROW = 10
DEFAULT_MAX_TRIALS = 10
DEFAULT_SEED = 1
SPLITS = {"validation": "val_", "val": "val_", "train": "", "training": ""}
_TUNERS = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
    "grid": kt.GridSearch,
}


# -- the objective ---------------------------------------------------------------------------------


def objective_of(resolved: ResolvedSpec, objective: Any = None) -> kt.Objective:
    """The Keras metric a search optimises, and its direction.

    `{output: main, metric: accuracy}` reads `val_main_accuracy` when the model has several
    outputs and `val_accuracy` when it has one (Keras prefixes metric names only then);
    `split: train` drops the `val_`. `direction` defaults to `min` for losses and errors, `max`
    otherwise. A string is a Keras metric name as it is. No objective: `val_loss`.

    Raises:
        SpecError: the output reports no such metric.

    Example:
        >>> objective_of(spec, {"output": "main", "metric": "accuracy"}).name  # doctest: +SKIP
        'val_accuracy'
    """
    if objective is None:
        objective = {"metric": "loss"}
    if isinstance(objective, str):
        return kt.Objective(objective, best_mode(objective))
    metric = objective["metric"]
    split = objective.get("split", "validation")
    if split not in SPLITS:
        raise SpecError(
            Problem(
                f"`split` is validation or train. Received: split={split!r}",
                "tune.objective.split",
            )
        )
    output = objective.get("output")
    if output is None and metric != "loss":
        output = next((o.name for o in resolved.outputs if not o.train_only), None)
    if output is None:
        base = "loss"
    else:
        metric = _metric_name(resolved, output, metric)
        base = f"{output}_{metric}" if len(resolved.outputs) > 1 else metric
    name = SPLITS[split] + base
    return kt.Objective(name, objective.get("direction") or best_mode(name))


def _metric_name(resolved: ResolvedSpec, output: str, metric: str) -> str:
    """`metric` as Keras names it for `output`; SpecError when the output does not report it."""
    try:
        out = resolved.output(output)
    except KeyError:
        raise SpecError(
            Problem(
                f"`objective.output` names no output. Received: output={output}",
                "tune.objective.output",
            )
        ) from None
    loss = (out.loss or "sparse_categorical_crossentropy").lower()
    listed = [m for m in listed_metrics(out, resolved.outputs) if isinstance(m, str)]
    known = [*listed, "loss"]
    if all(isinstance(m, str) for m in out.metrics) and metric not in known:
        raise SpecError(
            Problem(
                f"output `{output}` reports no metric `{metric}`; it reports "
                f"{', '.join(known)}. Received: metric={metric}",
                "tune.objective.metric",
            )
        )
    cfg = with_defaults(resolved.train)
    one_hot = loss in CROSSENTROPY and (
        cfg["label_smoothing"] or loss == "categorical_crossentropy"
    )
    return SPARSE_METRICS.get(metric, metric) if one_hot else metric


# -- tuners ----------------------------------------------------------------------------------------


class _SpecTuner:
    """What every blockspec tuner adds to keras-tuner's: the trial folder, the trial table."""

    def __init__(self, *args, display_factory=None, console: Console | None = None, **kwargs):
        self._display_factory = display_factory
        self._console = console or Console()
        self._began: dict[str, float] = {}
        super().__init__(*args, **kwargs)
        self._attach_display()
        if self._is_worker():
            self._pace()
        # Hyperband continues trials from their weights files; the other tuners never read one
        # again, so only a trial that beats the best so far writes its own (for
        # `get_best_models`), sparing every other trial the write. A worker cannot tell the
        # best so far: its trials all write theirs.
        every_trial = isinstance(self, kt.Hyperband) or self._is_worker()
        self.hypermodel.keep_weights = None if every_trial else self._beats_best
        self.hypermodel.weights_of = self._get_checkpoint_fname

    def reload(self):
        self._attach_display()  # before the oracle's state (with the table's) is read back
        super().reload()

    def _attach_display(self) -> None:
        if self._display_factory is None or self._is_worker():
            return
        if not isinstance(self.oracle._display, TrialTable):
            self.oracle._display = self._display_factory(self.oracle)

    def _pace(self) -> None:
        """A worker asks again after a second when the oracle has no trial for it yet."""
        client = self.oracle
        create = client.create_trial

        def create_trial(tuner_id):
            trial = create(tuner_id)
            if trial.status == "IDLE":
                time.sleep(1.0)
            return trial

        client.create_trial = create_trial

    def _try_build(self, hp):
        """keras-tuner's `_try_build`, collecting garbage once instead of twice.

        keras-tuner clears the session, then collects (`clear_session` collects too): each full
        collection walks every object alive. Collect once, then freeze what survives, so the
        next trial's collection walks only what was made since (`frozen_heap` unfreezes it all
        when the search ends).
        """
        keras.backend.clear_session(free_memory=False)
        gc.collect()
        gc.freeze()
        model = self._build_hypermodel(hp)
        if not isinstance(model, keras.Model):
            raise kt.errors.FatalTypeError(
                "HyperModel.build() must return a Keras Model. "
                f"Received: {model} of type {type(model)}."
            )
        return model

    def run_trial(self, trial, *args, **kwargs):
        self.hypermodel.begin_trial(self.get_trial_dir(trial.trial_id))
        return super().run_trial(trial, *args, **kwargs)

    def _beats_best(self, value: float) -> bool:
        best = best_trial(self.oracle)
        return best is None or self.oracle.objective.better_than(value, best.score)

    def on_trial_begin(self, trial):
        self._began[trial.trial_id] = time.time()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self._is_worker():
            seconds = time.time() - self._began.get(trial.trial_id, time.time())
            name = self.hypermodel.objective.name
            if trial.status == "COMPLETED":
                result = f"{name}={_fmt(self.hypermodel.last_metrics.get(name))}"
            else:
                result = f"{trial.status.lower()}: {failure_reason(trial.message)}"
            self._console.print(
                f"[{self.tuner_id}] trial {trial.trial_id} ({seconds:.1f} s) {result}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


_CLASSES = {
    kind: type(f"Spec{cls.__name__}", (_SpecTuner, cls), {}) for kind, cls in _TUNERS.items()
}


def make_tuner(
    hypermodel: SpecHyperModel,
    resolved: ResolvedSpec,
    out_dir: Path,
    *,
    overwrite: bool,
    display_factory=None,
    console: Console | None = None,
):
    """The keras-tuner tuner `resolved.tune` names, over `hypermodel`'s spaces.

    Building it explores the search space (every branch of every choice) by resolving the spec,
    without building Keras models.
    """
    tune = resolved.tune
    kind = tune.get("tuner", "random")
    cfg = with_defaults(resolved.train)
    seed = tune.get("seed", DEFAULT_SEED)
    options: dict[str, Any] = {
        "hypermodel": hypermodel,
        "objective": hypermodel.objective,
        "seed": seed,
        "max_consecutive_failed_trials": MAX_FAILED_IN_A_ROW,
        "executions_per_trial": tune.get("executions_per_trial", 1),
        "directory": str(out_dir),
        "project_name": PROJECT,
        "overwrite": overwrite,
        "display_factory": display_factory,
        "console": console,
    }
    if kind == "hyperband":
        options.update(
            max_epochs=tune.get("max_epochs") or int(cfg["epochs"]),
            factor=tune.get("factor", 3),
            hyperband_iterations=tune.get("hyperband_iterations", 1),
        )
    elif kind == "grid":
        options["max_trials"] = tune.get("max_trials")
    else:
        options["max_trials"] = tune.get("max_trials", DEFAULT_MAX_TRIALS)
    hypermodel.declaring = True
    try:
        tuner = _CLASSES[kind](**options)
    finally:
        hypermodel.declaring = False
    if not tuner._is_worker():
        if kind == "hyperband" and tune.get("max_trials"):
            tuner.oracle.max_trials = tune["max_trials"]  # Hyperband's own schedule, capped
        if seed == 0 and not tuner.oracle.trials:  # keras-tuner reads a 0 seed as "draw one"
            tuner.oracle.seed = tuner.oracle._seed_state = 0
    return tuner


# -- a whole search --------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """What a search did (on the chief, or alone; a worker reports only its own trials)."""

    out_dir: Path
    objective: kt.Objective
    trials: int = 0
    completed: int = 0
    failed: int = 0
    best_id: str | None = None
    best_score: float | None = None
    best_values: dict[str, Any] = field(default_factory=dict)
    best_path: Path | None = None
    seconds: float = 0.0
    resumed: bool = False


def default_out_dir(name: str) -> Path:
    """`runs/<name>-tune`, the name made safe (never a path of its own: `run_folder.safe_name`)."""
    return run_dir_for(name, None, suffix="-tune")


def check_searchable(resolved: ResolvedSpec) -> None:
    """Problems that make a spec unsearchable, found before any trial runs (the rules live in
    `builder.resolve.tune`, where `validate` checks them too)."""
    tune = resolved.tune_config or TuneConfig()
    train = resolved.train_config or TrainConfig.from_section(resolved.train)
    problems = searchable_problems(tune, train, resolved.hyperparameters)
    if problems:
        raise SpecError([p.problem() for p in problems])


def fingerprint(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_search(
    spec: Any,
    overrides: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    role: Role | None = None,
    console: Console | None = None,
    callbacks: list | tuple = (),
    limits: Limits = DEFAULT_LIMITS,
) -> SearchResult:
    """Search a spec's spaces as its `tune` section says; resume the folder's search if any.

    Args:
        spec: a path, a zoo name or a mapping.
        overrides: `--set` values by dotted key.
        out_dir: the search folder (default `runs/<spec name>-tune`).
        overwrite: delete the folder's search and start afresh (the chief's or a lone search's).
        role: alone (default), the chief, or a worker.
        console: where the table and messages go.
        callbacks: extra Keras callbacks for every trial (deep-copied per trial).
        limits: bounds on untrusted input.

    Returns:
        A `SearchResult`.

    Raises:
        SpecError: the spec is invalid, or cannot be searched.
        keras_tuner.errors.FatalError: the search could not go on (unreadable data, an
            objective no trial reports, too many failed trials in a row).

    Example:
        >>> run_search("specs/examples/digits_tune.yaml", out_dir="runs/t")  # doctest: +SKIP
    """
    started = time.time()
    kt_config.DEBUG = False  # a failed trial's reason goes to the table and trials.csv
    role = role or Role()
    console = console or Console()
    document = load_document(spec, overrides, limits)
    resolved = resolve_spec(document, limits=limits)
    check_searchable(resolved)
    objective = objective_of(resolved, resolved.tune.get("objective"))
    out = Path(out_dir) if out_dir else default_out_dir(resolved.name)
    owner = not role.distributed or role.chief
    overwrite = overwrite and owner
    # One search writes a folder at a time (workers write only their trials, via the chief).
    lock = RunFolder.lock(out) if owner else contextlib.nullcontext()
    with lock, atomic_tuner_state():
        resumed = owner and not overwrite and (out / PROJECT / "oracle.json").is_file()
        if owner:
            _prepare_folder(out, document, overwrite)
            if resumed:
                _mark_resumable(out, role.tuner_id)
        else:
            _check_chief_state(out, document)
        if not resolved.hyperparameters:
            console.print("The spec has no search spaces: one trial trains it as it is.")
        role.apply()
        if role.distributed:
            quiet_conditions()
        tune = resolved.tune
        cap = tune.get("max_epochs") if tune.get("tuner", "random") != "hyperband" else None
        hypermodel = SpecHyperModel(document, objective, max_epochs=cap, limits=limits)
        writer = SearchFiles(out, hypermodel, spec_label=spec if isinstance(spec, str) else None)
        tables: list[TrialTable] = []

        def make_table(oracle) -> TrialTable:
            table = TrialTable(
                oracle, console=console, objective=objective, on_trial_end=writer.write
            )
            writer.table = table
            tables[:] = [table]
            return table

        tuner = make_tuner(
            hypermodel,
            resolved,
            out,
            overwrite=overwrite,
            display_factory=make_table if owner else None,
            console=console,
        )
        if owner:
            _begin(tuner, out, document, resolved, objective, resumed, console)
        try:
            _search(tuner, role, tables[-1] if tables else None, callbacks, console)
        finally:
            if owner:
                writer.write(tuner.oracle, plot=True)
        result = SearchResult(out_dir=out, objective=objective, resumed=resumed)
        result.seconds = time.time() - started
        if owner:
            _summarize(result, tuner.oracle, out)
        return result


def _check_chief_state(out: Path, document) -> None:
    """A worker refuses to join a search of another spec (or other `--set` values)."""
    if not (out / STATE_FILE).is_file():
        return
    state = files.read_json(out / STATE_FILE)
    if state.get("fingerprint") != fingerprint(document.data):
        raise SpecError(
            f"the chief searches another spec (or other --set values) in {out}: "
            f"{state.get('spec')}. Give every worker the chief's spec and --set values."
        )


def _begin(tuner, out: Path, document, resolved, objective, resumed: bool, console) -> None:
    """Record which spec the folder searches, say what starts, save the fresh state."""
    kind = resolved.tune.get("tuner", "random")
    files.write_json(
        out / STATE_FILE,
        {
            "spec": document.file,
            "fingerprint": fingerprint(document.data),
            "tuner": kind,
            "objective": {"name": objective.name, "direction": objective.direction},
        },
    )
    if resumed:
        done = len(tuner.oracle.trials)
        console.print(f"Resuming the search in {out}: {done} trials so far.", soft_wrap=True)
    else:
        console.print(f"Searching {resolved.name} ({kind}) -> {out}", soft_wrap=True)
    tuner.save()  # a search killed during its first trial resumes it


def _search(tuner, role: Role, table: TrialTable | None, callbacks, console) -> None:
    """Run this process' part: serve the oracle (chief), or run trials (worker, or alone)."""
    if role.chief:
        assert table is not None
        console.print(
            f"Oracle listening on {role.host}:{role.port}; start the workers.", soft_wrap=True
        )
        with table.showing():
            serve_oracle(tuner, role.host, role.port)
        return
    showing = table.showing() if table is not None else contextlib.nullcontext()
    with showing, frozen_heap(), data_lib.shared_between_runs():
        tuner.search(callbacks=list(callbacks))


def _summarize(result: SearchResult, oracle, out: Path) -> None:
    trials = list(oracle.trials.values())
    result.trials = len(trials)
    result.completed = sum(t.status == "COMPLETED" for t in trials)
    result.failed = sum(t.status in ("FAILED", "INVALID") for t in trials)
    best = best_trial(oracle)
    if best is not None:
        result.best_id, result.best_score = best.trial_id, best.score
        result.best_values = {
            k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")
        }
        result.best_path = out / "best.yaml"


@contextmanager
def atomic_tuner_state() -> Iterator[None]:
    """keras-tuner's own state (`oracle.json`, each `trial.json`, the tuner's) written atomically.

    keras-tuner writes them all through `utils.save_json`; while a search runs, that goes through
    `files.write_text` (a temporary file, then one rename): a search killed or out of disk mid-write
    leaves the previous state whole, and a full disk is a `WriteError`, not a half-written JSON
    that the next resume cannot read.
    """
    original = kt_utils.save_json

    def save_json(path, obj):
        text = json.dumps(obj)
        files.write_text(path, text)
        return text

    kt_utils.save_json = save_json
    try:
        yield
    finally:
        kt_utils.save_json = original


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Leave the objects alive now (TensorFlow's and Keras' modules) out of garbage collection.

    keras-tuner collects garbage twice before each trial (`clear_session` and `gc.collect`); with
    TensorFlow imported each full collection walks some 450,000 objects, about 0.3 s here, which
    is as long as the whole training of a small trial's epoch. Frozen objects are not walked;
    everything made during the search (each trial's models and graphs) is collected as before.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _prepare_folder(out: Path, document, overwrite: bool) -> None:
    """Clear the folder for a fresh search; refuse to resume a search of another spec, and
    a folder that holds other files than a search's (a train run, `--out .`)."""
    if out.is_dir() and not (out / STATE_FILE).is_file():
        ours = {PROJECT, STATE_FILE, LOCK_FILE, *OUTPUTS}
        others = [p.name for p in out.iterdir() if p.name not in ours]
        if others:
            raise RunFolderError(
                f"{out} is not empty and holds no blockspec search (no {STATE_FILE}; it has "
                f"{some_names(others)}). A search writes only into a new or empty folder, or its own: "
                "choose another --out."
            )
    if overwrite:
        shutil.rmtree(out / PROJECT, ignore_errors=True)
        for name in (*OUTPUTS, STATE_FILE):
            (out / name).unlink(missing_ok=True)
        return
    state_path = out / STATE_FILE
    if state_path.is_file() and (out / PROJECT / "oracle.json").is_file():
        state = files.read_json(state_path)
        if state.get("fingerprint") != fingerprint(document.data):
            raise SpecError(
                f"{out} holds a search of another spec (or other --set values: "
                f"{state.get('spec')}). Start afresh with --overwrite, or choose another --out."
            )
    out.mkdir(parents=True, exist_ok=True)


def _mark_resumable(out: Path, tuner_id: str) -> None:
    """keras-tuner reloads a search when this tuner's state file exists; the oracle's is what counts."""
    path = out / PROJECT / f"{tuner_id}.json"
    if not path.is_file():
        files.write_json(path, {})
