"""Resident memory over a long search: 20 tiny trials in one process.

Each trial builds a new model; keras-tuner clears the Keras session before each build, so memory
should stay flat. This prints the RSS after every trial and the growth from the first trial to the
last, and exits 1 when the growth is 150 MB or more.

    python bench/tune_memory.py [--trials 20] [--limit-mb 150]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SPEC = """
spec: 1
name: memory_probe
input: [8, 8, 1]
vars:
  width: {tune: int, min: 4, max: 16, step: 4}
defaults:
  conv: {activation: relu, padding: same}
network:
  - conv: {filters: $width, kernel: 3}
  - tune: choice
    values:
      - conv: {filters: {tune: choice, values: [4, 8]}, kernel: 3}
      - max_pool: {size: 2}
  - global_avg_pool: {}
  - dense: 10
    name: main
outputs:
  main: {activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
train:
  data: {source: synthetic, samples: 64, validation_split: 0.25}
  batch_size: 16
  epochs: 1
  optimizer: {adam: {learning_rate: {tune: float, min: 1.0e-4, max: 1.0e-2, sampling: log}}}
tune:
  tuner: random
  objective: {output: main, metric: accuracy}
"""

SAMPLES: list[float] = []


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--limit-mb", type=float, default=150.0)
    args = parser.parse_args()

    import keras
    from rich.console import Console

    from blockspec.tuning.search import run_search

    class Probe(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            SAMPLES.append(rss_mb())

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "memory_probe.yaml"
        spec.write_text(SPEC)
        result = run_search(
            str(spec),
            {"tune.max_trials": args.trials},
            Path(tmp) / "out",
            callbacks=[Probe()],
            console=Console(quiet=True),
        )
    for i, mb in enumerate(SAMPLES, 1):
        print(f"trial {i:3d}: RSS {mb:8.1f} MB")
    growth = SAMPLES[-1] - SAMPLES[0]
    print(
        f"{result.trials} trials ({result.completed} completed) in {result.seconds:.0f} s; "
        f"RSS after trial 1: {SAMPLES[0]:.1f} MB, after trial {len(SAMPLES)}: "
        f"{SAMPLES[-1]:.1f} MB, growth {growth:+.1f} MB (limit {args.limit_mb:.0f} MB), "
        f"peak {max(SAMPLES):.1f} MB"
    )
    return 0 if growth < args.limit_mb else 1


if __name__ == "__main__":
    sys.exit(main())
