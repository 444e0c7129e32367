"""`blockspec validate SPEC` of every zoo spec, whole process: < 1 s, TensorFlow never imported.

Each spec is validated in a fresh process started the way a user starts it (the installed
`blockspec` console script next to this Python, else `python -m cli`), timed from spawn to exit.
A separate process checks that validating imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench._common import ROOT, Result, check, median, timed

COMMAND = "python bench/run.py --only validate_time"
QUICK_SPECS = ("googlenet", "resnet50")


def validate_command() -> list[str]:
    script = Path(sys.executable).parent / "blockspec"
    if script.is_file():
        return [str(script), "validate"]
    return [sys.executable, "-m", "cli", "validate"]


def zoo_specs() -> list[str]:
    from blockspec.builder.load import zoo_names

    return zoo_names()


def imports_tensorflow(specs: list[str]) -> list[str]:
    """Heavy modules imported while validating `specs` in one process ("?" if it could not run)."""
    code = (
        "import sys, cli\n"
        f"cli.main(['validate', *{specs!r}])\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    for line in out.stdout.splitlines():
        if line.startswith("HEAVY:"):
            return [m for m in line[len("HEAVY:") :].split(",") if m]
    return ["?"]


def run(quick: bool = False) -> list[Result]:
    specs = [s for s in zoo_specs() if not quick or s in QUICK_SPECS]
    repeat = 1 if quick else 5
    command = validate_command()
    env = dict(os.environ)
    rows = {}
    failed = []
    for spec in specs:
        result = subprocess.run(
            [*command, spec], cwd=ROOT, capture_output=True, text=True, env=env, check=False
        )
        if result.returncode != 0:
            failed.append(spec)
        rows[spec] = round(
            median(
                timed(
                    lambda s=spec: subprocess.run(
                        [*command, s],
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        env=env,
                        check=False,
                    ),
                    repeat,
                )
            ),
            4,
        )
    slowest = max(rows, key=rows.get)
    heavy = imports_tensorflow(specs)
    threshold, passed = check(rows[slowest], "<", 1.0, quick)
    if passed is not None:
        passed = passed and not heavy and not failed
    compared = (
        f"`{' '.join(Path(c).name for c in command)} SPEC` as a fresh process, spawn to exit, "
        f"median of {repeat} per spec; slowest of {len(specs)} zoo specs"
    )
    return [
        Result(
            key="validate_time/slowest_zoo_spec",
            target="`blockspec validate` of any zoo spec, whole process",
            value=rows[slowest],
            unit="s",
            threshold=threshold,
            passed=passed,
            compared=compared,
            details={
                "slowest": slowest,
                "seconds_per_spec": rows,
                "heavy_modules_imported": heavy,
                "specs_that_failed_validation": failed,
                # With PYTHONDONTWRITEBYTECODE set, every process compiles its modules afresh.
                "bytecode_cache": not os.environ.get("PYTHONDONTWRITEBYTECODE"),
            },
            command=COMMAND,
        )
    ]
