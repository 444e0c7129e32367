"""What a search shows and keeps: the live trial table, and the search folder's files.

`TrialTable` is keras-tuner's `Display` for the oracle; `SearchFiles` writes `trials.csv`,
`objective.png` and `best.yaml` from the oracle's trials after each trial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import keras_tuner as kt
from keras_tuner.src.engine.oracle import Display
from rich.console import Console
from rich.live import Live
from rich.table import Table

from blockspec.training import files
from blockspec.tuning.document import rebase_data_paths
from blockspec.tuning.hypermodel import SpecHyperModel


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
