"""The benchmark suite in quick mode (tiny sizes, no bounds), so that `bench/` cannot rot.

`python bench/run.py` measures the performance targets (BENCHMARKS.md); here every module of it
runs once, small, and must produce finite numbers. A small `blockspec bench` run checks the command.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench/` is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from bench.run import MODULES, markdown, run  # noqa: E402

pytestmark = pytest.mark.slow


def test_every_benchmark_runs_in_quick_mode():
    lines: list[str] = []
    results, errors = run(quick=True, log=lines.append)
    assert not errors, "\n".join(errors.values())
    assert {r.key.split("/")[0] for r in results} == set(MODULES)
    for result in results:
        assert math.isfinite(result.value), result
        assert result.passed is None and not result.threshold  # quick mode judges nothing
        assert result.command.startswith("python bench/run.py")
        assert result.compared
    table = markdown(results, {"cpu": "test", "cores": 1})
    assert table.count("\n| ") == len(results) + 1  # header + one row per result


def test_resolve_scaling_spec_is_valid_and_builds():
    from bench.resolve_scaling import count_steps, generate
    from blockspec.builder import build_model, resolve_spec

    resolved = resolve_spec(__import__("yaml").safe_load(generate(16)))
    assert count_steps(resolved.network) > 16
    model = build_model(resolved)
    assert model.output_shape == (None, 10)


def test_blockspec_bench_reports_throughput_and_memory(capsys):
    from blockspec import cli

    code = cli.main(
        ["bench", "resnet18", "--set", "input=[32,32,3]", "--set", "vars.classes=10"]
        + ["--batch", "2", "--steps", "1", "--warmup", "1", "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["spec"] == "resnet18" and report["batch"] == 2
    assert report["train_images_per_s"] > 0 and report["infer_images_per_s"] > 0
    assert report["peak_memory_bytes"] > 0
    if report["device"].startswith("CPU"):  # the documented defaults
        assert report["precision"] == "float32" and report["jit"] is False
    else:
        assert report["precision"] == "mixed_float16" and report["jit"] is True


def test_blockspec_bench_refuses_a_bad_precision(capsys):
    from blockspec import cli

    with pytest.raises(SystemExit):
        cli.main(["bench", "resnet18", "--precision", "float8"])
    assert "invalid choice" in capsys.readouterr().err
