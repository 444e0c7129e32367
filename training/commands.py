"""`blockspec train` and `blockspec evaluate`, for cli.py.

TensorFlow is imported inside the commands, not at module import, so `cli.py` stays quick for
`validate` and friends.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from blockspec.builder.load import DEFAULT_LIMITS, Limits
from blockspec.errors import Terminated
from blockspec.training.run_folder import run_dir_for

__all__ = ["evaluate_command", "resume_command", "run_dir_for", "train_command"]


def resume_command(spec: str, overrides: dict | None, run_dir: str | Path) -> str:
    """The command line that continues this run: `blockspec train SPEC --set ... --out DIR --resume`."""
    parts = ["blockspec", "train", shlex.quote(str(spec))]
    for key, value in (overrides or {}).items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts += ["--set", shlex.quote(f"{key}={text}")]
    return " ".join([*parts, "--out", shlex.quote(str(run_dir)), "--resume"])


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def train_command(
    spec: str,
    overrides: dict,
    out: str | None,
    resume: bool,
    limits: Limits | None = None,
    overwrite: bool = False,
    weights: str | None = None,
    weights_strict: bool | None = None,
) -> int:
    """`blockspec train SPEC [--set ...] [--out DIR] [--resume | --overwrite] [--limit ...]`.

    Args:
        spec: a spec path or zoo name.
        overrides: `--set` values by dotted key (`{"train.epochs": 2}`).
        out: the run folder (default `runs/<spec name>`).
        resume: continue from the folder's last completed epoch.
        limits: bounds on untrusted input, as `--limit` sets them (default: the defaults).
        overwrite: replace the folder's earlier run (only the files blockspec wrote there).
        weights: start from this weights file (`--weights`, replacing the spec's `weights:`);
            the path and sha256 of every file the run starts from go to `weights.json`.
        weights_strict: refuse weights that do not all load (None: the spec's).

    Returns:
        0 when every epoch ran (or early stopping ended the run), 1 when the loss became NaN,
        2 when the run was refused or could not go on (data, run folder, disk: the message
        says which file and why), 130 on Ctrl-C (the message says how to resume).

    Raises:
        SpecError: the spec is invalid (the CLI prints it and exits 2).
        TrainingError: the run could not go on (unreadable data; the CLI exits 2).
    """
    from blockspec.builder import resolve_spec

    resolved = resolve_spec(spec, overrides or None, limits=limits or DEFAULT_LIMITS)
    from blockspec.training import trainer  # imports TensorFlow

    console = Console()
    run_dir = run_dir_for(resolved.name, out)  # a TrainingError goes up to the CLI (exit 2)
    console.print(f"[bold]Training[/] {escape(resolved.name)} -> {escape(str(run_dir))}")
    try:
        # A progress bar in a terminal; one line per epoch in a log file or CI.
        verbose = 1 if sys.stdout.isatty() else 2
        build, records = _weights_build(resolved, weights, weights_strict, console)
        result = trainer.train(
            resolved,
            run_dir,
            resume=resume,
            overwrite=overwrite,
            verbose=verbose,
            build=build,
            records=records,
        )
    except KeyboardInterrupt as e:
        reason = _reason_of(run_dir)
        print(
            f"interrupted{': ' + reason if reason else ''}.\nResume with:\n  "
            + resume_command(spec, overrides, run_dir),
            file=sys.stderr,
        )
        return 143 if isinstance(e, Terminated) else 130
    epochs = f"{result.epochs} epoch{'' if result.epochs == 1 else 's'}"
    table = Table(title=f"{escape(resolved.name)}: {epochs}, {result.seconds:.0f} s")
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_column("best", justify="right")
    table.add_column("epoch", justify="right")
    for key, value in result.metrics["final"].items():
        # A learning rate has a last value, not a best one.
        best = {} if key == "learning_rate" else result.metrics["best"].get(key, {})
        table.add_row(key, _fmt(value), _fmt(best.get("value")), _fmt(best.get("epoch")))
    console.print(table)
    if result.stopped == "nan":
        console.print(f"[bold red]error:[/] {result.message}")
        return 1
    if result.message:
        console.print(result.message)
    if result.model_path is not None:
        console.print(f"Saved {result.model_path} (inference model) and the run files in {run_dir}")
    return 0


def _reason_of(run_dir: Path) -> str:
    from blockspec.training.files import read_json

    try:
        return str(read_json(run_dir / "run.json").get("reason") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def evaluate_command(run_dir: str, tta: list[str] | None) -> int:
    """`blockspec evaluate DIR [--tta flip,crops]`: accuracy without and with TTA, side by side.

    Args:
        run_dir: a run folder.
        tta: views (`flip`, `crops`); None: the spec's `train.evaluate.tta` (none by default).

    Returns:
        0, or 2 when the folder cannot be evaluated (the message says why).

    Raises:
        SpecError: an unknown TTA view.
        TrainingError: the folder is not a finished run.
    """
    from blockspec.builder.errors import Problem, SpecError
    from blockspec.training.config import TTA_VIEWS, unknown_choice

    bad = [v for v in tta or [] if v not in TTA_VIEWS]
    if bad:
        raise SpecError(
            [
                Problem(unknown_choice("test-time augmentation", v, TTA_VIEWS, "tta"), path="--tta")
                for v in bad
            ]
        )
    from blockspec.training.evaluate import evaluate_run  # imports TensorFlow

    console = Console()
    result = evaluate_run(run_dir, tta)  # a TrainingError goes up to the CLI (exit 2)
    views = ", ".join(result.views) or "none"
    table = Table(
        title=f"{result.examples} {result.split} examples",
        caption=f"TTA: {views} ({result.view_count} view{'s' * (result.view_count != 1)} averaged)",
    )
    table.add_column("output")
    table.add_column("accuracy", justify="right")
    table.add_column("TTA accuracy", justify="right")
    table.add_column("change", justify="right")
    table.add_column("changed", justify="right")
    for name, acc in result.accuracy.items():
        tta_acc = result.tta_accuracy[name]
        table.add_row(
            name,
            f"{acc:.2%}",
            f"{tta_acc:.2%}",
            f"{tta_acc - acc:+.2%}",
            f"{result.changed[name]:.2%}",
        )
    console.print(table)
    for name, acc in result.accuracy.items():
        if result.tta_accuracy[name] < acc:
            console.print(
                f"TTA lowers the accuracy of {name} ({acc:.2%} -> {result.tta_accuracy[name]:.2%}): "
                f"the views ({views}) do not suit this data (a flipped digit is another digit); "
                "train.evaluate.tta chooses them"
            )
    return 0


def _weights_build(resolved, weights: str | None, strict: bool | None, console: Console):
    """The trainer's `build` and `records`: the spec's weights (`weights:`, backbones') or
    `--weights` loaded once the model is built, their files recorded; (None, None) without."""
    from blockspec.builder.compile import compile_spec
    from blockspec.builder.spec_weights import load_spec_weights, weights_record, weights_sources

    record = weights_record(weights_sources(resolved, weights, strict))
    if record is None:
        return None, None

    def build(spec):
        model = compile_spec(spec).model
        for report in load_spec_weights(model, spec, weights, strict, echo=None):
            console.print(escape(report.line()), highlight=False, soft_wrap=True)
        return model

    return build, {"weights.json": record}
