"""Run blockspec's benchmark suite: `python bench/run.py [--quick] [--only NAME,...]`.

Every target of the performance issue is one module here; each returns `Result`s (value, bound,
pass/fail, what was compared). `--quick` runs tiny sizes with no bounds, so CI can check that the
suite still works (tests/test_bench_quick.py). `--json FILE` writes the results and the machine,
`--markdown FILE` a table for BENCHMARKS.md.

Exit status: 0 when every module ran and no bound failed; 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Result, machine, quiet_tensorflow  # noqa: E402

# In the order they run: those that import no TensorFlow first, so their processes stay light.
MODULES = (
    "validate_time",
    "resolve_scaling",
    "build_time",
    "step_throughput",
    "pipeline",
    "tune_overhead",
)


def run(
    quick: bool = False, only: list[str] | None = None, log=print
) -> tuple[list[Result], dict[str, str]]:
    """Runs the selected benchmark modules; returns their results and the errors by module."""
    quiet_tensorflow()
    results: list[Result] = []
    errors: dict[str, str] = {}
    for name in only or MODULES:
        if name not in MODULES:
            raise SystemExit(f"unknown benchmark `{name}`; one of {', '.join(MODULES)}")
        started = time.perf_counter()
        log(f"== {name}{' (quick)' if quick else ''}")
        try:
            module = importlib.import_module(f"bench.{name}")
            found = module.run(quick=quick)
        except Exception:  # report it and go on with the other modules
            errors[name] = traceback.format_exc()
            log(errors[name])
            continue
        for result in found:
            log(result.line())
        log(f"   ({time.perf_counter() - started:.1f} s)")
        results += found
    return results, errors


def markdown(results: list[Result], info: dict) -> str:
    """A table of results with the machine, for BENCHMARKS.md."""
    lines = [
        f"Machine: {info.get('cpu')}, {info.get('cores')} cores, "
        f"{info.get('memory_gib', '?')} GiB; GPU: {info.get('gpu') or 'none'}; Python "
        f"{info.get('python')}, TensorFlow {info.get('tensorflow')}, Keras {info.get('keras')}; "
        f"load average at the end {info.get('load_average')}.",
        "",
        "| target | measured | bound | result | compared | command |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        verdict = {True: "pass", False: "FAIL", None: "-"}[r.passed]
        lines.append(
            f"| {r.target} | {r.value:g} {r.unit} | {r.threshold or '-'} | {verdict} | "
            f"{r.compared} | `{r.command}` |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no bounds (CI)")
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"run these only: {', '.join(MODULES)}"
    )
    parser.add_argument("--json", metavar="FILE", help="write results and machine as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write a results table (markdown)")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    started = time.perf_counter()
    results, errors = run(quick=args.quick, only=only)
    info = machine()
    info["command"] = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    info["seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"\n{len(results)} results in {info['seconds']} s on {info['cpu']} ({info['cores']} cores)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"machine": info, "results": [asdict(r) for r in results], "errors": errors},
                indent=2,
            )
        )
    if args.markdown:
        Path(args.markdown).write_text(markdown(results, info))
    failed = [r.key for r in results if r.passed is False]
    if errors or failed:
        print(f"errors: {', '.join(errors) or 'none'}; failed: {', '.join(failed) or 'none'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
