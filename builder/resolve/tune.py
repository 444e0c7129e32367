"""`tune`, resolved: the search's rules checked once, its values read once into a `TuneConfig`.

The rules that make a spec unsearchable (`tuning.search.check_searchable` calls
`searchable_problems`) live here too, so `validate` reports them with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blockspec.builder.errors import Problem, did_you_mean, shorten
from blockspec.builder.load import format_path
from blockspec.builder.resolve.checks import is_int
from blockspec.builder.resolve.outputs import listed_metrics, reported_names
from blockspec.builder.resolve.train import TrainConfig
from blockspec.builder.resolve.train_rules import MAX_SEED
from blockspec.builder.spec import HyperParameter, OutputSpec

TUNE_KEYS = (
    "tuner", "objective", "max_trials", "max_epochs", "executions_per_trial", "factor",
    "hyperband_iterations", "seed",
)  # fmt: skip
TUNERS = ("random", "bayesian", "hyperband", "grid")
OBJECTIVE_KEYS = ("output", "metric", "direction", "split")
SPLITS = ("validation", "val", "train", "training")
DEFAULT_SEED = 1
DEFAULT_MAX_TRIALS = 10
_COUNTS = ("max_trials", "max_epochs", "executions_per_trial", "hyperband_iterations")


@dataclass(frozen=True)
class Objective:
    """What a search optimises: a Keras metric name as it is, or an output's metric."""

    metric: str = "loss"
    output: str | None = None
    direction: str | None = None  # None: min for losses and errors, max otherwise
    split: str = "validation"
    name: str | None = None  # a plain Keras metric name (`objective: val_accuracy`)


@dataclass(frozen=True)
class TuneConfig:
    """The `tune` section with its defaults (`max_trials` None: the tuner's own default)."""

    tuner: str = "random"
    objective: Objective = Objective()
    max_trials: int | None = None
    max_epochs: int | None = None
    executions_per_trial: int = 1
    factor: int = 3
    hyperband_iterations: int = 1
    seed: int = DEFAULT_SEED


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def resolve_tune(
    resolver, raw: Any, outputs: list[OutputSpec], train: TrainConfig | None
) -> tuple[dict, TuneConfig | None]:
    """The `tune` mapping (values concrete) and its `TuneConfig`; None when refused."""
    if raw is None:
        return {}, TuneConfig()
    if not isinstance(raw, dict):
        resolver.error(("tune",), f"`tune` must be a mapping. Received: {shorten(raw)}")
        return {}, None
    tune = {k: resolver.value(v, ("tune", k), resolver.vars, f"tune/{k}") for k, v in raw.items()}
    before = len(resolver.problems)
    for key, value in tune.items():
        _check_key(resolver, key, value, outputs)
    if len(resolver.problems) > before:
        return tune, None
    objective = tune.get("objective")
    if isinstance(objective, str):
        objective = Objective(name=objective)
    elif isinstance(objective, dict):
        objective = Objective(**objective)
    config = TuneConfig(
        **{k: v for k, v in tune.items() if k != "objective"}, objective=objective or Objective()
    )
    hyperparameters = list(resolver.chooser.chosen.values())
    for problem in searchable_problems(config, train, hyperparameters):
        resolver.error(problem.path_parts, problem.message)
    return tune, config


def _check_key(resolver, key: str, value: Any, outputs: list[OutputSpec]) -> None:
    path = ("tune", key)
    if key not in TUNE_KEYS:
        resolver.error(path, f"unknown tune key `{key}`.{did_you_mean(key, TUNE_KEYS)}")
    elif key == "tuner" and value not in TUNERS:
        resolver.error(
            path,
            f"unknown tuner.{did_you_mean(value, TUNERS)} Expected one of {', '.join(TUNERS)}. "
            f"Received: tuner={shorten(value)}",
        )
    elif key in _COUNTS and not _positive(value):
        resolver.error(path, f"`{key}` must be a positive integer. Received: {key}={value!r}")
    elif key == "factor" and (not _positive(value) or value < 2):
        # Hyperband keeps 1/factor of the trials per round: 1 would never stop.
        resolver.error(path, f"`factor` must be an integer >= 2. Received: factor={value!r}")
    elif key == "seed" and (not is_int(value) or value < 0):
        resolver.error(
            path, f"`seed` must be a non-negative integer. Received: seed={shorten(value)}"
        )
    elif key == "seed" and value > MAX_SEED:  # the bayesian tuner seeds numpy with it
        resolver.error(
            path, f"`seed` must be at most {MAX_SEED} (numpy's range). Received: seed={value}"
        )
    elif key == "objective":
        _check_objective(resolver, value, path, outputs)


def _check_objective(resolver, value: Any, path: tuple, outputs: list[OutputSpec]) -> None:
    if isinstance(value, str):
        reported = reported_names(outputs)
        if reported and value not in reported:
            resolver.error(
                path,
                f"no trial reports the objective `{value}`.{did_you_mean(value, reported)} "
                f"A trial reports {', '.join(reported)}. Received: objective={shorten(value)}",
            )
        return
    if not isinstance(value, dict):
        resolver.error(
            path,
            "`objective` is a Keras metric name or {output, metric, direction, split}. "
            f"Received: {shorten(value)}",
        )
        return
    for key in value:
        if key not in OBJECTIVE_KEYS:
            resolver.error(
                (*path, key),
                f"unknown objective key `{key}`.{did_you_mean(key, OBJECTIVE_KEYS)}",
            )
    if not isinstance(value.get("metric"), str):
        resolver.error(path, "`objective` needs `metric`, a metric name (e.g. accuracy)")
    if value.get("direction", "max") not in ("min", "max"):
        resolver.error(
            (*path, "direction"),
            f"`direction` is min or max. Received: {shorten(value.get('direction'))}",
        )
    if value.get("split", "validation") not in SPLITS:
        resolver.error(
            (*path, "split"),
            "`split` is validation or train (a search never looks at the test split). "
            f"Received: split={shorten(value.get('split'))}",
        )
    output = value.get("output")
    names = [o.name for o in outputs]
    if output is not None and names and output not in names:
        resolver.error(
            (*path, "output"),
            f"`objective.output` names no output.{did_you_mean(output, names)} "
            f"Received: output={shorten(output)}",
        )
    elif isinstance(value.get("metric"), str):
        _check_reported(resolver, value["metric"], output, path, outputs)


def _check_reported(resolver, metric: str, output: Any, path: tuple, outputs) -> None:
    """The objective's metric is one its output reports (as training compiles the outputs)."""
    live = [o for o in outputs if not o.train_only]
    if output is None and metric != "loss":
        output = live[0].name if live else None
    out = next((o for o in outputs if o.name == output), None)
    if out is None:
        return
    known = [*listed_metrics(out, outputs), "loss"]
    if metric not in known:
        resolver.error(
            (*path, "metric"),
            f"output `{output}` reports no metric `{metric}`; it reports {', '.join(known)}. "
            f"Received: metric={shorten(metric)}",
        )


@dataclass(frozen=True)
class SearchProblem:
    """A reason a spec cannot be searched: a message and the spec path (as parts)."""

    message: str
    path_parts: tuple
    written_at: str = ""  # where a search space behind it is written, when not at `path_parts`

    def problem(self) -> Problem:
        return Problem(self.message, self.written_at or format_path(self.path_parts))


def searchable_problems(
    tune: TuneConfig, train: TrainConfig | None, hyperparameters: list[HyperParameter]
) -> list[SearchProblem]:
    """What makes a spec unsearchable, known before any trial runs."""
    problems = []
    if train is not None and train.distribute == "multi_worker":
        problems.append(
            SearchProblem(
                "a search trains each trial in one process; `distribute: multi_worker` cannot "
                "run under `tune` (search in parallel with --chief and --worker instead). "
                "Received: distribute=multi_worker",
                ("train", "distribute"),
            )
        )
    if tune.tuner == "hyperband":
        epochs = [h for h in hyperparameters if h.name == "train/epochs"]
        if epochs:
            problems.append(
                SearchProblem(
                    "Hyperband sets each trial's epochs itself (up to `tune.max_epochs`); "
                    "`train.epochs` cannot be a search space with `tuner: hyperband`",
                    ("train", "epochs"),
                    epochs[0].path,
                )
            )
    return problems
