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
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src import config as kt_config
from keras_tuner.src.engine.oracle import Display
from rich.console import Console
from rich.live import Live
from rich.table import Table

from blockspec.builder.errors import Problem, SpecError
from blockspec.builder.load import DEFAULT_LIMITS, Limits, load_document
from blockspec.builder.resolve import resolve_spec
from blockspec.builder.resolve.train import TrainConfig
from blockspec.builder.resolve.tune import TuneConfig, searchable_problems
from blockspec.builder.spec import ResolvedSpec
from blockspec.training import data as data_lib
from blockspec.training import files
from blockspec.training.callbacks import best_mode
from blockspec.training.config import with_defaults
from blockspec.training.optim import CROSSENTROPY, SPARSE_METRICS
from blockspec.training.run_folder import RunFolder, run_dir_for
from blockspec.tuning.document import rebase_data_paths
from blockspec.tuning.hypermodel import SpecHyperModel

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
    listed = [m for m in out.metrics if isinstance(m, str)]
    if not any(o.metrics for o in resolved.outputs):  # training adds `accuracy` to the first head
        first = next((o for o in resolved.outputs if not o.train_only), None)
        if first is not None and first.name == output and loss in CROSSENTROPY:
            listed = ["accuracy"]
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


# -- roles -----------------------------------------------------------------------------------------


@dataclass
class Role:
    """This process' part in a search: alone, the chief (runs the oracle) or worker N."""

    chief: bool = False
    worker: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def distributed(self) -> bool:
        return self.chief or self.worker is not None

    @property
    def tuner_id(self) -> str:
        if self.chief:
            return "chief"
        return f"tuner{self.worker}" if self.worker is not None else "tuner0"

    def apply(self) -> None:
        """Set (or, searching alone, clear) keras-tuner's KERASTUNER_* environment variables."""
        names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
        if not self.distributed:
            for name in names:
                os.environ.pop(name, None)
            return
        os.environ.update(dict(zip(names, (self.tuner_id, self.host, str(self.port)), strict=True)))


# -- the trial table -------------------------------------------------------------------------------


class TrialTable(Display):
    """keras-tuner's `Display` for the oracle: a live table of trials, and the files after each.

    It sits on the process that holds the oracle (the chief in a distributed search), so it sees
    every trial. On a terminal the table redraws in place; elsewhere each finished trial prints
    one line. Per-trial seconds are part of the oracle's saved state, so they survive a resume.
    """

    def __init__(
        self,
        oracle,
        *,
        console: Console,
        objective: kt.Objective,
        on_trial_end: Callable[[Any], None] | None = None,
    ):
        super().__init__(oracle=oracle, verbose=1)
        self.console = console
        self.objective = objective
        self.hook = on_trial_end
        self.seconds: dict[str, float] = {}
        self.live: Live | None = None

    # keras-tuner's Display interface
    def on_trial_begin(self, trial) -> None:
        now = datetime.now()
        self.trial_start[trial.trial_id] = now
        if self.search_start is None:
            self.search_start = now
        self.trial_number[trial.trial_id] = len(self.oracle.trials)
        self.refresh()

    def on_trial_end(self, trial) -> None:
        start = self.trial_start.get(trial.trial_id)
        if start is not None:
            self.seconds[trial.trial_id] = round((datetime.now() - start).total_seconds(), 2)
        if self.hook is not None:
            self.hook(self.oracle)
        if self.live is None:
            self.console.print(self.line(trial), markup=False, highlight=False, soft_wrap=True)
        self.refresh()

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "seconds": self.seconds}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.seconds = dict(state.get("seconds") or {})

    # rendering
    @contextmanager
    def showing(self) -> Iterator[None]:
        """Redraw the table in place while the block runs (on a terminal)."""
        if self.console.is_terminal:
            self.live = Live(self.render(), console=self.console, auto_refresh=False)
            self.live.start()
        try:
            yield
        finally:
            if self.live is not None:
                self.live.update(self.render(), refresh=True)
                self.live.stop()
                self.live = None

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)

    def render(self, limit: int | None = None) -> Table:
        trials = sorted(self.oracle.trials.values(), key=lambda t: t.trial_id)
        if limit is None and self.live is not None:
            limit = max(5, self.console.size.height - 8)
        names = hp_names(self.oracle)
        best = best_trial(self.oracle)
        table = Table(title=f"trials: {self.objective.name} ({self.objective.direction})")
        table.add_column("trial", justify="right")
        for name in names:
            table.add_column(name, justify="right", overflow="fold")
        table.add_column(self.objective.name, justify="right")
        table.add_column("s", justify="right")
        table.add_column("status")
        if limit and len(trials) > limit:
            table.caption = f"{len(trials) - limit} earlier trials in trials.csv"
            trials = trials[-limit:]
        for trial in trials:
            values = trial.hyperparameters.values
            running = trial.status == "RUNNING"
            seconds = self.seconds.get(trial.trial_id)
            if running and trial.trial_id in self.trial_start:
                seconds = (datetime.now() - self.trial_start[trial.trial_id]).total_seconds()
            table.add_row(
                trial.trial_id,
                *[_fmt(values.get(name)) for name in names],
                _fmt(trial.score) if trial.status == "COMPLETED" else "",
                _fmt(seconds, 3),
                trial.status.lower(),
                style="bold green" if best is not None and trial is best else None,
            )
        return table

    def line(self, trial) -> str:
        seconds = self.seconds.get(trial.trial_id)
        head = f"trial {trial.trial_id} {trial.status.lower():9s}"
        if trial.status == "COMPLETED":
            head += f" {self.objective.name}={_fmt(trial.score)}"
        head += f" ({_fmt(seconds, 3)} s)"
        values = ", ".join(
            f"{k}={_fmt(v)}"
            for k, v in trial.hyperparameters.values.items()
            if not k.startswith("tuner/")
        )
        text = f"{head}  {values}"
        if trial.status != "COMPLETED":
            text += f"  [{failure_reason(trial.message)}]"
        return text


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def hp_names(oracle) -> list[str]:
    """The search space's hyperparameter names, in the order the spec meets them."""
    names: list[str] = []
    for hp in oracle.hyperparameters.space:
        if hp.name not in names:
            names.append(hp.name)
    return names


def best_trial(oracle):
    done = [t for t in oracle.trials.values() if t.status == "COMPLETED" and t.score is not None]
    if not done:
        return None
    pick = max if oracle.objective.direction == "max" else min
    return pick(done, key=lambda t: t.score)


def failure_reason(message: str | None) -> str:
    """The reason in a failed trial's message (keras-tuner stores the whole traceback)."""
    if not message:
        return ""
    marker = "FailedTrialError: "
    at = message.rfind(marker)
    text = message[at + len(marker) :] if at >= 0 else message.strip().splitlines()[-1]
    return " ".join(text.split())


# -- the search folder's files ---------------------------------------------------------------------


class SearchFiles:
    """Writes trials.csv, objective.png and best.yaml from the oracle's trials."""

    def __init__(
        self,
        out_dir: Path,
        hypermodel: SpecHyperModel,
        table: TrialTable | None = None,
        spec_label: str | None = None,
    ):
        self.out_dir = out_dir
        self.hypermodel = hypermodel
        self.table = table
        file = hypermodel.index.document.file
        self.spec_file = spec_label or file
        self.spec_dir = Path(file).resolve().parent if Path(file).is_file() else None

    def write(self, oracle, plot: bool = False) -> None:
        """trials.csv and best.yaml (after each trial); the plot too with `plot` (at the end)."""
        trials = sorted(oracle.trials.values(), key=lambda t: t.trial_id)
        self.write_csv(oracle, trials)
        if plot:
            self.plot(oracle, trials)
        best = best_trial(oracle)
        if best is not None:
            self.write_best(best, len(trials))

    def write_csv(self, oracle, trials) -> None:
        names = hp_names(oracle)
        hyperband = any("tuner/epochs" in t.hyperparameters.values for t in trials)
        extra = ["epochs", "continues"] if hyperband else []
        header = ["trial", "status", oracle.objective.name, "seconds", *extra, *names, "reason"]
        seconds = self.table.seconds if self.table is not None else {}
        rows = []
        for t in trials:
            values = t.hyperparameters.values
            row = [
                t.trial_id,
                t.status,
                t.score if t.status == "COMPLETED" and t.score is not None else "",
                seconds.get(t.trial_id, ""),
            ]
            if hyperband:
                row += [values.get("tuner/epochs", ""), values.get("tuner/trial_id", "")]
            row += [values.get(n, "") for n in names]
            row.append(failure_reason(t.message) if t.status in ("FAILED", "INVALID") else "")
            rows.append(row)
        files.write_csv(self.out_dir / "trials.csv", header, rows)

    def plot(self, oracle, trials) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        name, direction = oracle.objective.name, oracle.objective.direction
        done = [
            (int(t.trial_id), t.score)
            for t in trials
            if t.status == "COMPLETED" and t.score is not None
        ]
        failed = [int(t.trial_id) for t in trials if t.status in ("FAILED", "INVALID")]
        fig, ax = plt.subplots(figsize=(7, 4))
        if done:
            xs, ys = zip(*done, strict=True)
            ax.plot(xs, ys, "o", label=name)
            best, so_far = [], None
            for y in ys:
                so_far = y if so_far is None else (max if direction == "max" else min)(so_far, y)
                best.append(so_far)
            ax.step(xs, best, where="post", label="best so far")
        if failed:
            low = min((y for _, y in done), default=0.0)
            ax.plot(failed, [low] * len(failed), "x", color="red", label="failed")
        ax.set_xlabel("trial")
        ax.set_ylabel(name)
        ax.set_title(f"{len(done)} completed, {len(failed)} failed ({direction})")
        ax.grid(alpha=0.3)
        if done or failed:
            ax.legend()
        fig.tight_layout()
        files.atomic_write(
            self.out_dir / "objective.png", lambda tmp: fig.savefig(tmp, format="png", dpi=100)
        )
        plt.close(fig)

    def write_best(self, trial, count: int) -> None:
        document = self.hypermodel.concrete(trial.hyperparameters)
        document = rebase_data_paths(document, self.spec_dir, self.out_dir)
        name = self.hypermodel.objective.name
        path = self.out_dir / "best.yaml"
        header = (
            f"# The best of {count} trials of `blockspec tune {self.spec_file}`: trial "
            f"{trial.trial_id}, {name} = {trial.score:.4f}.\n"
            "# Each search space of that spec holds the value this trial used. Train it with:\n"
            f"#   blockspec train {path}\n"
        )
        text = files.yaml_text(document, sort_keys=False, default_flow_style=None, width=100)
        files.write_text(path, header + text)


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
    with lock:
        resumed = owner and not overwrite and (out / PROJECT / "oracle.json").is_file()
        if owner:
            _prepare_folder(out, document, overwrite)
            if resumed:
                _mark_resumable(out, role.tuner_id)
        elif (out / STATE_FILE).is_file():
            state = files.read_json(out / STATE_FILE)
            if state.get("fingerprint") != fingerprint(document.data):
                raise SpecError(
                    f"the chief searches another spec (or other --set values) in {out}: "
                    f"{state.get('spec')}. Give every worker the chief's spec and --set values."
                )
        if not resolved.hyperparameters:
            console.print("The spec has no search spaces: one trial trains it as it is.")
        role.apply()
        if role.distributed:
            _quiet_conditions()

        tune = resolved.tune
        cap = tune.get("max_epochs") if tune.get("tuner", "random") != "hyperband" else None
        hypermodel = SpecHyperModel(document, objective, max_epochs=cap, limits=limits)
        table: TrialTable | None = None
        writer = SearchFiles(out, hypermodel, spec_label=spec if isinstance(spec, str) else None)

        def make_table(oracle) -> TrialTable:
            nonlocal table
            table = TrialTable(
                oracle, console=console, objective=objective, on_trial_end=writer.write
            )
            writer.table = table
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
            files.write_json(
                out / STATE_FILE,
                {
                    "spec": document.file,
                    "fingerprint": fingerprint(document.data),
                    "tuner": tune.get("tuner", "random"),
                    "objective": {"name": objective.name, "direction": objective.direction},
                },
            )
            done = len(tuner.oracle.trials)
            if resumed:
                console.print(
                    f"Resuming the search in {out}: {done} trials so far.", soft_wrap=True
                )
            else:
                kind = tune.get("tuner", "random")
                console.print(f"Searching {resolved.name} ({kind}) -> {out}", soft_wrap=True)
            tuner.save()  # a search killed during its first trial resumes it
        try:
            if role.chief:
                assert table is not None
                console.print(
                    f"Oracle listening on {role.host}:{role.port}; start the workers.",
                    soft_wrap=True,
                )
                with table.showing():
                    serve_oracle(tuner, role.host, role.port)
            elif role.worker is not None:
                with frozen_heap(), data_lib.shared_between_runs():
                    tuner.search(callbacks=list(callbacks))
            else:
                assert table is not None
                with table.showing(), frozen_heap(), data_lib.shared_between_runs():
                    tuner.search(callbacks=list(callbacks))
        finally:
            if owner:
                writer.write(tuner.oracle, plot=True)
        result = SearchResult(out_dir=out, objective=objective, resumed=resumed)
        result.seconds = time.time() - started
        if not owner:
            return result
        trials = list(tuner.oracle.trials.values())
        result.trials = len(trials)
        result.completed = sum(t.status == "COMPLETED" for t in trials)
        result.failed = sum(t.status in ("FAILED", "INVALID") for t in trials)
        best = best_trial(tuner.oracle)
        if best is not None:
            result.best_id, result.best_score = best.trial_id, best.score
            result.best_values = {
                k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")
            }
            result.best_path = out / "best.yaml"
        return result


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
    """Clear the folder for a fresh search; refuse to resume a search of another spec."""
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


def _quiet_conditions() -> None:
    """keras-tuner 1.4.8's `Parent.to_proto` prints each condition it sends (a stray debug print)."""
    import contextlib
    import io

    from keras_tuner.src.engine import conditions

    original = conditions.Parent.to_proto
    if getattr(original, "quiet", False):
        return

    def to_proto(self):
        with contextlib.redirect_stdout(io.StringIO()):
            return original(self)

    to_proto.quiet = True
    conditions.Parent.to_proto = to_proto


def serve_oracle(tuner, host: str, port: int, poll: float = 0.5) -> None:
    """Serve the chief's oracle to the workers over gRPC until the search is done.

    keras-tuner's own chief loop (`BaseTuner.search` on the chief) checks every 20 s whether the
    workers are done; this one checks every `poll` seconds.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:
        bound, error = 0, e
    else:
        error = None
    if not bound:
        raise kt.errors.FatalError(
            f"the oracle cannot listen on {host}:{port} ({error or 'in use?'})"
        )
    server.start()
    try:
        while not (servicer.stop_triggered and exit_chief(tuner.oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=1.0)
