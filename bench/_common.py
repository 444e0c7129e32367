"""What every benchmark module shares: results, interleaved timing, medians, the machine.

Ratios are measured in one process with the two sides interleaved (A, B, B, A, A, B, ...), so that
a slow minute on a shared machine slows both sides alike, and reported as medians.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """One measured target.

    Attributes:
        key: short id (`build_time/resnet152`).
        target: the target as the issue words it.
        value: the measured number (a ratio, seconds, ...).
        unit: `x` for ratios, `s` for seconds, `%` for shares.
        threshold: the bound as text (`<= 1.10`); empty in quick mode.
        passed: True/False against the bound; None in quick mode or when there is no bound.
        compared: exactly what was compared, in words.
        details: the numbers behind `value` (medians of each side, repetitions, sizes).
        command: the command that produced it.
    """

    key: str
    target: str
    value: float
    unit: str
    threshold: str = ""
    passed: bool | None = None
    compared: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    command: str = ""

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "----"}[self.passed]
        bound = f" (target {self.threshold})" if self.threshold else ""
        return f"{verdict}  {self.key:<34} {self.value:10.3f} {self.unit}{bound}"


def check(value: float, op: str, bound: float, quick: bool) -> tuple[str, bool | None]:
    """(threshold text, passed) for `value op bound`; no verdict in quick mode."""
    if quick:
        return "", None
    ok = {"<=": value <= bound, "<": value < bound, ">=": value >= bound, ">": value > bound}[op]
    return f"{op} {bound:g}", ok


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a[i] / b[i] (each pair measured back to back)."""
    return median([x / y for x, y in zip(a, b, strict=True)])


def interleave(
    sides: dict[str, Callable[[], float | None]],
    rounds: int,
    between: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Runs each side once per round, alternating which goes first (A B, B A, A B, ...).

    A side returns its own measurement (seconds, images/s, ...) or None, in which case its wall
    time is recorded. `between` runs, untimed, after every call (e.g. `clear_session`).
    """
    names = list(sides)
    out: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            start = time.perf_counter()
            measured = sides[name]()
            elapsed = time.perf_counter() - start
            out[name].append(elapsed if measured is None else measured)
            if between is not None:
                between()
    return out


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall times of `repeat` calls of `fn`."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine and software a run measured, for BENCHMARKS.md (imports no TensorFlow)."""
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for package in ("tensorflow", "keras", "keras-tuner", "numpy", "pyyaml"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    try:
        info["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, ValueError, AttributeError):
        pass
    if "tensorflow" in sys.modules:  # only ask for GPUs when a benchmark already loaded TF
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        info["gpu"] = [
            tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus
        ] or None
    return info


def clear_keras() -> None:
    """Frees what earlier models held, outside any timed region."""
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()
    gc.collect()
