"""Input pipeline vs in-memory data, training throughput: >= 0.95x (the model never waits for data).

One small CNN (`MODEL`, 32x32x3 input, 10 classes, batch 64, SGD, CPU) is compiled once and fitted
on the pipelines `blockspec train` builds with `training.data` (`load_source`, `preprocess_model`,
`make_pipelines`: preprocess, cache, shuffle, batch, prefetch):
- `digits`: scikit-learn's 1,797 8x8 digits, resized to 32x32, grey to RGB, rescaled (28 batches);
- `folder`: a folder of 10,000 PNG images (48x48 RGB, 10 class folders): read, decode, resize to
  32x32, rescale (156 batches);
and on in-memory data with the same number of steps per epoch: one fixed batch of random tensors,
repeated (`Dataset.from_tensors(...).repeat()`), the ceiling: no input work at all.

Each `fit` runs `EPOCHS` epochs and takes the pipeline as `blockspec train` gives it to Keras
(`Pipelines.fit_arguments`: repeated, with the steps of an epoch, so one iterator serves the whole
fit), and a callback times each epoch (begin to end, no validation). After a warm-up pass over
each (tracing, decoding, cache fill), rounds alternate between them (order reversed every other
round); a pipeline's ratio is its median images/s over all its epochs divided by that of
in-memory data with the same steps per epoch.

The `*_restart` variants are the same pipelines without `.repeat()`: Keras then makes a new
iterator every epoch (the shuffle buffer refills, the map threads start again), as
`training.data` did before; they show what repeating gives.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench._common import Result, check, clear_keras, median, paired_ratio, quiet_tensorflow

COMMAND = "python bench/run.py --only pipeline"
MODEL = {
    "spec": 1,
    "name": "pipeline_cnn",
    "input": [32, 32, 3],
    "defaults": {"conv": {"activation": "relu", "padding": "same"}},
    "network": [
        {"conv": {"filters": 32, "kernel": 3}},
        {"conv": {"filters": 32, "kernel": 3}},
        {"max_pool": 2},
        {"conv": {"filters": 64, "kernel": 3}},
        {"conv": {"filters": 64, "kernel": 3}},
        {"max_pool": 2},
        {"conv": {"filters": 128, "kernel": 3}},
        {"global_avg_pool": {}},
        {"dense": 10, "name": "main"},
    ],
    "outputs": {"main": {"activation": "softmax", "loss": "sparse_categorical_crossentropy"}},
}
BATCH = 64
IMAGES = 10_000
QUICK_IMAGES = 200
ROUNDS = 3


def write_folder(root: Path, images: int, size: int = 48, classes: int = 10) -> Path:
    """`images` random RGB PNGs in `classes` class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"class_{i % classes}" / f"{i:05d}.png")
    return root


class EpochTimer:
    """A Keras callback recording each epoch's wall time."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = []
                self.steps: list[int] = []
                self._start = 0.0
                self._count = 0

            def on_epoch_begin(self, epoch, logs=None):
                self._count = 0
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self._count += 1

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)
                self.steps.append(self._count)

        return _Timer()


def pipelines(folder: Path):
    """name -> (dataset, steps per epoch); every batch holds BATCH images."""
    import numpy as np
    import tensorflow as tf

    from blockspec.training import data as data_lib

    out = {}
    for name, data in (
        ("digits", {"source": "digits", "validation_split": 0.0}),
        ("folder", {"source": "folder", "path": str(folder), "validation_split": 0.0}),
    ):
        source = data_lib.load_source(
            data, image_size=(32, 32), channels=3, classes=10, seed=0, base_dir=None
        )
        preprocess = data_lib.preprocess_model(source.raw_shape, (32, 32), 3, source.scale)
        pipes = data_lib.make_pipelines(
            source,
            preprocess,
            augment=[],
            fit=None,
            labels=lambda y: {"main": y},
            batch_size=BATCH,
            seed=0,
            drop_remainder=True,
        )
        out[name] = (pipes.fit_arguments(EPOCHS[name])["x"], pipes.steps_per_epoch)
        out[f"{name}_restart"] = (pipes.train, pipes.steps_per_epoch)
    rng = np.random.default_rng(0)
    batch = (
        tf.constant(rng.random((BATCH, 32, 32, 3), dtype=np.float32)),
        {"main": tf.constant(rng.integers(0, 10, BATCH, dtype=np.int32))},
    )
    memory = tf.data.Dataset.from_tensors(batch).repeat()
    for name in ("digits", "folder"):
        out[f"memory_{name}"] = (memory, out[name][1])
    return out


ORDER = ("memory_digits", "digits", "digits_restart", "memory_folder", "folder", "folder_restart")
EPOCHS = {"digits": 3, "folder": 2}


def measure(quick: bool) -> dict:
    quiet_tensorflow()
    import keras

    from blockspec.builder import build_model

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        folder = write_folder(Path(tmp) / "images", QUICK_IMAGES if quick else IMAGES)
        write_seconds = time.perf_counter() - started
        keras.utils.set_random_seed(0)
        model = build_model(MODEL)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
            loss={"main": "sparse_categorical_crossentropy"},
            jit_compile=False,
        )
        sets = pipelines(folder)

        def fit(name: str, epochs: int) -> list[float]:
            dataset, steps = sets[name]
            timer = EpochTimer()
            model.fit(
                dataset,
                steps_per_epoch=steps,
                epochs=epochs,
                verbose=0,
                callbacks=[timer],
                shuffle=False,
            )
            return [BATCH * n / s for n, s in zip(timer.steps, timer.seconds, strict=True)]

        first = {name: fit(name, 1)[0] for name in ORDER}  # trace, decode, fill the caches
        rates: dict[str, list[float]] = {name: [] for name in ORDER}
        rounds: dict[str, list[float]] = {name: [] for name in ORDER}  # each round's median
        for index in range(1 if quick else ROUNDS):
            for name in ORDER if index % 2 == 0 else ORDER[::-1]:
                family = "digits" if "digits" in name else "folder"
                epochs = fit(name, 1 if quick else EPOCHS[family])
                rates[name] += epochs
                rounds[name].append(median(epochs))
        steps_per_epoch = {name: sets[name][1] for name in ORDER}
    clear_keras()
    return {
        "first_epoch_images_per_s": first,
        "images_per_s": rates,
        "round_medians": rounds,
        "median": {name: median(r) for name, r in rates.items()},
        "steps_per_epoch": steps_per_epoch,
        "folder_write_seconds": write_seconds,
    }


def run(quick: bool = False) -> list[Result]:
    m = measure(quick)
    med = m["median"]
    results = []
    images = QUICK_IMAGES if quick else IMAGES
    for name, label in (("digits", "digits"), ("folder", f"a {images:,}-image folder")):
        ratio = med[name] / med[f"memory_{name}"]
        threshold, passed = check(ratio, ">=", 0.95, quick)
        results.append(
            Result(
                key=f"pipeline/{name}",
                target=f"input pipeline ({label}) vs in-memory data, training throughput",
                value=round(ratio, 3),
                unit="x",
                threshold=threshold,
                passed=passed,
                compared=(
                    f"`fit` of a 5-conv CNN (32x32x3, batch {BATCH}, SGD, CPU), "
                    f"{EPOCHS[name]} epochs of {m['steps_per_epoch'][name]} steps per fit, on "
                    f"the `training.data` {name} pipeline vs one in-memory batch repeated; "
                    f"median images/s over {len(m['images_per_s'][name])} epochs after a warm-up"
                ),
                details={
                    "median_images_per_s": round(med[name], 1),
                    "memory_median_images_per_s": round(med[f"memory_{name}"], 1),
                    # Each round's pipeline median over the in-memory median of the same round.
                    "median_of_round_ratios": round(
                        paired_ratio(
                            m["round_medians"][name], m["round_medians"][f"memory_{name}"]
                        ),
                        3,
                    ),
                    "restarting_ratio": round(med[f"{name}_restart"] / med[f"memory_{name}"], 3),
                    "restarting_median_of_round_ratios": round(
                        paired_ratio(
                            m["round_medians"][f"{name}_restart"],
                            m["round_medians"][f"memory_{name}"],
                        ),
                        3,
                    ),
                    "restarting_median_images_per_s": round(med[f"{name}_restart"], 1),
                    "first_epoch_images_per_s": {
                        k: round(v, 1) for k, v in m["first_epoch_images_per_s"].items()
                    },
                    "steps_per_epoch": m["steps_per_epoch"],
                    "epochs_images_per_s": {
                        k: [round(x, 1) for x in v] for k, v in m["images_per_s"].items()
                    },
                    "folder_write_s": round(m["folder_write_seconds"], 1),
                },
                command=COMMAND,
            )
        )
    return results
