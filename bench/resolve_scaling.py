"""Resolve + validate a generated spec of N written steps: < 2 s at 2,000, linear in N.

The generated spec mixes what real specs use: vars and `${...}` expressions, `defaults`, a user
block with positional arguments, built-in blocks, `residual` with a body, named steps and `add`
reading two of them with `from`. Each size is written to a file and resolved from the file, so the
time includes reading and parsing the YAML, as `blockspec validate` does.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

from bench._common import Result, check, median, timed

SIZES = (250, 500, 1000, 2000)
QUICK_SIZES = (25, 50)
COMMAND = "python bench/run.py --only resolve_scaling"


def generate(steps: int) -> str:
    """A valid spec with `steps` entries in `network` (plus a 2-step head); it also builds."""
    lines = [
        "spec: 1",
        f"name: generated_{steps}",
        "description: generated for bench/resolve_scaling.py",
        "vars: {width: 8, rate: 0.1}",
        "input: [32, 32, 16]",
        "defaults:",
        "  conv: {padding: same, activation: relu}",
        "blocks:",
        "  unit:",
        "    args: {filters: null, kernel: 3}",
        "    body:",
        "      - conv: {filters: $filters, kernel: $kernel}",
        "      - batch_norm: {}",
        "network:",
    ]
    for k in range(steps):
        kind = k % 8
        if kind == 0:
            lines += ['  - conv: {filters: "${width * 2}", kernel: 3}', f"    name: c{k}"]
        elif kind == 1:
            lines += ["  - batch_norm: {}"]
        elif kind == 2:
            lines += ["  - relu:"]
        elif kind == 3:
            lines += ["  - conv_bn: {filters: 16, kernel: 1}"]
        elif kind == 4:
            lines += [
                "  - residual:",
                "      body:",
                "        - conv: {filters: 16, kernel: 3}",
                "        - conv: {filters: 16, kernel: 3, activation: null}",
            ]
        elif kind == 5:
            lines += ["  - unit: [16, 3]"]
        elif kind == 6:
            lines += ["  - dropout: $rate"]
        else:
            lines += ["  - add: {}", f"    from: [c{k - 7}, unit_{k // 8 + 1}]"]
    lines += ["  - global_avg_pool: {}", "  - dense: {units: 10}"]
    return "\n".join(lines) + "\n"


def count_steps(steps) -> int:
    return sum(1 + sum(count_steps(c) for c in s.children) for s in steps)


def _pure_python_cpu(path: str, repeat: int) -> float:
    from blockspec.builder import yaml_read as load
    from blockspec.builder.resolve import resolve_spec

    saved, load._FastLoader = load._FastLoader, None
    try:
        cpu = []
        for _ in range(repeat):
            gc.collect()
            start = time.process_time()
            resolve_spec(path)
            cpu.append(time.process_time() - start)
    finally:
        load._FastLoader = saved
    return median(cpu)


def run(quick: bool = False) -> list[Result]:
    from blockspec.builder.load import load_document
    from blockspec.builder.resolve import resolve_spec

    sizes = QUICK_SIZES if quick else SIZES
    repeat = 1 if quick else 7
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in sizes:
            path = str(Path(tmp) / f"generated_{steps}.yaml")
            Path(path).write_text(generate(steps))
            resolved = resolve_spec(path)  # warm: imports, registry
            wall, cpu = [], []
            for _ in range(repeat):
                gc.collect()
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                resolve_spec(path)
                wall.append(time.perf_counter() - start_wall)
                cpu.append(time.process_time() - start_cpu)
            load = median(timed(lambda p=path: load_document(p), repeat))
            rows.append(
                {
                    "written_steps": steps,
                    "resolved_steps": count_steps(resolved.network),
                    "wall_s": round(median(wall), 4),
                    "cpu_s": round(median(cpu), 4),
                    "of_which_load_and_parse_wall_s": round(load, 4),
                    "us_per_step_cpu": round(1e6 * median(cpu) / steps, 1),
                }
            )
        # The same largest spec read by PyYAML's pure-Python scanner (the loader before libyaml).
        pure_cpu = _pure_python_cpu(path, repeat)
    largest, smallest = rows[-1], rows[0]
    largest["pure_python_yaml_cpu_s"] = round(pure_cpu, 4)
    # CPU time: on a shared machine, wall time also counts the other processes' turns. Both are
    # reported; the bound is checked on CPU time (the wall time of an otherwise idle machine).
    # Linear: the CPU time per step at the largest size stays within 1.25x of the smallest's.
    growth = largest["us_per_step_cpu"] / smallest["us_per_step_cpu"]
    threshold, passed = check(largest["cpu_s"], "<", 2.0, quick)
    growth_threshold, growth_passed = check(growth, "<=", 1.25, quick)
    compared = (
        f"`resolve_spec(path)` (read, parse YAML with marks, validate, resolve) of generated specs "
        f"of {', '.join(str(s) for s in sizes)} written steps; median CPU time of {repeat} (wall "
        "time in the details)"
    )
    return [
        Result(
            key=f"resolve_scaling/{largest['written_steps']}_steps",
            target="resolve + validate a generated spec with 2,000 steps",
            value=largest["cpu_s"],
            unit="s",
            threshold=threshold,
            passed=passed,
            compared=compared,
            details={"rows": rows},
            command=COMMAND,
        ),
        Result(
            key="resolve_scaling/linearity",
            target="time grows linearly with steps (us/step largest / smallest)",
            value=round(growth, 3),
            unit="x",
            threshold=growth_threshold,
            passed=growth_passed,
            compared=compared,
            details={"rows": rows},
            command=COMMAND,
        ),
    ]
