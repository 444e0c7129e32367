"""`blockspec tune`, for cli.py.

keras-tuner and TensorFlow are imported inside the command, so `cli.py` stays quick.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.table import Table

from blockspec.builder.errors import SpecError
from blockspec.builder.load import DEFAULT_LIMITS, Limits

DEFAULT_ORACLE = ("127.0.0.1", 8000)


def oracle_address(text: str | None) -> tuple[str, int]:
    """`HOST:PORT` (default: KERASTUNER_ORACLE_IP/PORT when set, else 127.0.0.1:8000)."""
    if text is None:
        host = os.environ.get("KERASTUNER_ORACLE_IP", DEFAULT_ORACLE[0])
        port = os.environ.get("KERASTUNER_ORACLE_PORT", str(DEFAULT_ORACLE[1]))
        text = f"{host}:{port}"
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(f"--oracle takes HOST:PORT (e.g. 127.0.0.1:8000). Received: {text!r}")
    return host, int(port)


def tune_command(
    spec: str,
    overrides: dict[str, Any] | None,
    out: str | None,
    overwrite: bool = False,
    chief: bool = False,
    worker: int | None = None,
    oracle: str | None = None,
    limits: Limits | None = None,
) -> int:
    """`blockspec tune SPEC [--set ...] [--out DIR] [--overwrite] [--chief | --worker N]`.

    Args:
        spec: a spec path or zoo name.
        overrides: `--set` values by dotted key.
        out: the search folder (default `runs/<spec name>-tune`).
        overwrite: start afresh instead of resuming the folder's search.
        chief: run the oracle for workers (keras-tuner's chief), and write the files.
        worker: run trials for the chief as worker N.
        oracle: the chief's `HOST:PORT`.
        limits: bounds on untrusted input.

    Returns:
        0 when the search ended with at least one completed trial (a worker: when it ended),
        1 when it could not go on or no trial completed.

    Raises:
        SpecError: the spec is invalid or cannot be searched (the CLI prints it and exits 2).
    """
    if chief and worker is not None:
        raise SpecError("give --chief or --worker N, not both")
    if worker is not None and worker < 0:
        raise SpecError(f"--worker takes a number >= 0. Received: {worker}")
    host, port = oracle_address(oracle)
    import keras_tuner as kt  # imports TensorFlow

    from blockspec.tuning.search import Role, run_search

    console = Console()
    role = Role(chief=chief, worker=worker, host=host, port=port)
    try:
        result = run_search(
            spec,
            overrides or None,
            out,
            overwrite=overwrite,
            role=role,
            console=console,
            limits=limits or DEFAULT_LIMITS,
        )
    except SpecError:
        raise
    except kt.errors.FatalError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        return 1
    except RuntimeError as e:
        if "consecutive failures" not in str(e):
            raise
        console.print(f"[bold red]error:[/] the search stopped: {e}", highlight=False)
        return 1
    if worker is not None:
        console.print(f"Worker {role.tuner_id} done ({result.seconds:.0f} s).")
        return 0
    console.print(
        f"Search done: {result.trials} trials ({result.completed} completed, {result.failed} "
        f"failed) in {result.seconds:.0f} s. Files in {result.out_dir}."
    )
    if result.best_id is None:
        console.print("[bold red]error:[/] no trial completed; see the reasons in trials.csv.")
        return 1
    table = Table(
        title=f"best: trial {result.best_id}, {result.objective.name} = {result.best_score:.4f}"
    )
    table.add_column("hyperparameter")
    table.add_column("value", justify="right")
    for name, value in result.best_values.items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"Train the best: blockspec train {result.best_path}")
    return 0
