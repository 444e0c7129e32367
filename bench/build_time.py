"""Build time, spec -> model, against keras.applications: <= 1.10x for ResNet-152, InceptionV3
and the largest catalogue members (EfficientNetB7, EfficientNetV2L, ConvNeXtXLarge).

The spec side is `builder.build_model(NAME, overrides)`: it reads the zoo file (and, for
ResNet-152, the ResNet-50 file it extends), parses the YAML, validates and resolves, then builds
the Keras model with initialised weights. The other side is `keras.applications.<Net>(weights=
None)`, the same network at the same (default) input size and 1,000 classes: the overrides pick
the family member and set keras' default input (EfficientNetB7 600x600, EfficientNetV2L 480x480). The two alternate in one process
(A B, B A, ...) with `keras.backend.clear_session()` untimed between builds; medians are compared.
"""

from __future__ import annotations

import time

from bench._common import (
    Result,
    check,
    clear_keras,
    interleave,
    median,
    paired_ratio,
    quiet_tensorflow,
)

COMMAND = "python bench/run.py --only build_time"
# (zoo spec, keras.applications class, overrides that make the spec that class)
PAIRS = (
    ("resnet152", "ResNet152", {}),
    ("inception_v3", "InceptionV3", {}),
    ("efficientnet", "EfficientNetB7", {"vars.variant": 7, "input": [600, 600, 3]}),
    ("efficientnetv2", "EfficientNetV2L", {"vars.variant": "l", "input": [480, 480, 3]}),
    ("convnext", "ConvNeXtXLarge", {"vars.size": "xlarge"}),
)
QUICK_PAIRS = (("resnet50", "ResNet50", {}),)


def measure(
    spec: str, application: str, rounds: int, warmup: int = 1, overrides: dict | None = None
) -> dict:
    """Interleaved build times of the spec and of keras.applications, in seconds."""
    quiet_tensorflow()
    import keras

    from blockspec.builder import build_model
    from blockspec.builder.compile import compile_spec
    from blockspec.builder.resolve import resolve_spec

    keras_fn = getattr(keras.applications, application)
    resolve_times: list[float] = []

    def spec_side() -> float:
        start = time.perf_counter()
        resolved = resolve_spec(spec, overrides)  # read + parse + validate + resolve, every time
        resolve_times.append(time.perf_counter() - start)
        compile_spec(resolved)
        return time.perf_counter() - start

    def keras_side() -> None:
        keras_fn(weights=None)

    for _ in range(warmup):  # first builds import and trace what later builds reuse
        build_model(spec, overrides)
        clear_keras()
        keras_fn(weights=None)
        clear_keras()
    times = interleave({"spec": spec_side, "keras": keras_side}, rounds, between=clear_keras)
    return {
        "spec_seconds": times["spec"],
        "keras_seconds": times["keras"],
        "spec_median": median(times["spec"]),
        "keras_median": median(times["keras"]),
        "resolve_median": median(resolve_times),
        "rounds": rounds,
    }


def run(quick: bool = False) -> list[Result]:
    results = []
    for spec, application, overrides in QUICK_PAIRS if quick else PAIRS:
        m = measure(
            spec,
            application,
            rounds=1 if quick else 9,
            warmup=0 if quick else 1,
            overrides=overrides,
        )
        ratio = m["spec_median"] / m["keras_median"]
        threshold, passed = check(ratio, "<=", 1.10, quick)
        results.append(
            Result(
                key=f"build_time/{spec}",
                target=f"build time, spec -> model, {spec} vs keras.applications.{application}",
                value=round(ratio, 3),
                unit="x",
                threshold=threshold,
                passed=passed,
                compared=(
                    f"`build_model('{spec}', {overrides})` (file read, YAML parse, validate, "
                    "resolve, build) vs "
                    f"`keras.applications.{application}(weights=None)`, default input, 1000 "
                    f"classes; {m['rounds']} interleaved rounds, medians"
                ),
                details={
                    "spec_median_s": round(m["spec_median"], 3),
                    "keras_median_s": round(m["keras_median"], 3),
                    "median_of_paired_ratios": round(
                        paired_ratio(m["spec_seconds"], m["keras_seconds"]), 3
                    ),
                    "of_which_resolve_median_s": round(m["resolve_median"], 4),
                    "spec_s": [round(t, 3) for t in m["spec_seconds"]],
                    "keras_s": [round(t, 3) for t in m["keras_seconds"]],
                },
                command=COMMAND,
            )
        )
        clear_keras()
    return results
