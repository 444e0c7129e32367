"""Training-step throughput of the built model vs keras.applications: >= 0.98x.

Both models are the same network at the same input size and class count, compiled alike (SGD,
learning rate 0.01, momentum 0.9; sparse categorical cross-entropy; no metrics; `jit_compile`
off on CPU, on with a GPU) and trained on the same fixed batch with `train_on_batch`, which waits
for the step to finish. After warm-up steps (tracing), blocks of steps alternate between the two
models (A B, B A, ...); each block gives images/second and the medians are compared.

On CPU the inputs are small (ResNet-152 at 64x64, InceptionV3 at 75x75, its minimum) so a run
stays short; with a GPU they are the networks' default sizes.
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

COMMAND = "python bench/run.py --only step_throughput"
# (zoo spec, keras.applications class, CPU input, GPU input)
PAIRS = (
    ("resnet152", "ResNet152", (64, 64, 3), (224, 224, 3)),
    ("inception_v3", "InceptionV3", (75, 75, 3), (299, 299, 3)),
)
QUICK_PAIRS = (("vgg16", "VGG16", (32, 32, 3), (32, 32, 3)),)  # few layers: quick to trace
CLASSES = 10


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def measure(
    spec: str,
    application: str,
    shape: tuple[int, int, int],
    batch: int,
    steps: int,
    rounds: int,
    jit: bool,
    warmup: int = 3,
) -> dict:
    quiet_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from blockspec.builder import build_model

    ours = build_model(spec, {"input": list(shape), "vars.classes": CLASSES})
    theirs = getattr(keras.applications, application)(
        weights=None, input_shape=shape, classes=CLASSES
    )
    output = next(iter(ours.output_names)) if isinstance(ours.output, dict) else None
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, *shape), dtype=np.float32))
    y = tf.constant(rng.integers(0, CLASSES, batch))
    for model, loss in ((ours, {output: "sparse_categorical_crossentropy"}), (theirs, None)):
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
            loss=loss if output and model is ours else "sparse_categorical_crossentropy",
            jit_compile=jit,
        )
    labels = {"spec": {output: y} if output else y, "keras": y}
    models = {"spec": ours, "keras": theirs}
    for name, model in models.items():  # trace and warm up
        for _ in range(warmup):
            model.train_on_batch(x, labels[name])

    def side(name: str):
        def block() -> float:
            start = time.perf_counter()
            for _ in range(steps):
                models[name].train_on_batch(x, labels[name])
            return batch * steps / (time.perf_counter() - start)

        return block

    rates = interleave({"spec": side("spec"), "keras": side("keras")}, rounds)
    result = {
        "spec_images_per_s": rates["spec"],
        "keras_images_per_s": rates["keras"],
        "spec_median": median(rates["spec"]),
        "keras_median": median(rates["keras"]),
        "params": (ours.count_params(), theirs.count_params()),
        "layers": (len(ours.layers), len(theirs.layers)),
    }
    models.clear()
    del ours, theirs
    clear_keras()
    return result


def run(quick: bool = False, batch: int | None = None) -> list[Result]:
    gpu = _has_gpu()
    results = []
    for spec, application, cpu_shape, gpu_shape in QUICK_PAIRS if quick else PAIRS:
        shape = gpu_shape if gpu else cpu_shape
        size = batch or (2 if quick else (64 if gpu else 16))
        steps, rounds, warmup = (1, 1, 1) if quick else (5, 12, 3)
        m = measure(spec, application, shape, size, steps, rounds, jit=gpu, warmup=warmup)
        ratio = m["spec_median"] / m["keras_median"]
        threshold, passed = check(ratio, ">=", 0.98, quick)
        results.append(
            Result(
                key=f"step_throughput/{spec}",
                target=f"training-step throughput, {spec} vs keras.applications.{application}",
                value=round(ratio, 3),
                unit="x",
                threshold=threshold,
                passed=passed,
                compared=(
                    f"`train_on_batch` on one fixed batch of {size} at {shape[0]}x{shape[1]}x"
                    f"{shape[2]}, {CLASSES} classes, SGD momentum 0.9, jit_compile={gpu}; "
                    f"{rounds} interleaved blocks of {steps} steps, medians "
                    f"({'GPU' if gpu else 'CPU'})"
                ),
                details={
                    "spec_median_images_per_s": round(m["spec_median"], 2),
                    "keras_median_images_per_s": round(m["keras_median"], 2),
                    "median_of_paired_ratios": round(
                        paired_ratio(m["spec_images_per_s"], m["keras_images_per_s"]), 3
                    ),
                    "params_spec_keras": m["params"],
                    "layers_spec_keras": m["layers"],
                    "spec_images_per_s": [round(r, 2) for r in m["spec_images_per_s"]],
                    "keras_images_per_s": [round(r, 2) for r in m["keras_images_per_s"]],
                },
                command=COMMAND,
            )
        )
    return results
