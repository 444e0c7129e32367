"""Generated data sets: learnable, reproducible, free of downloads (`source: synthetic`).

`synthetic` gives one class per image (each class a fixed low-frequency pattern plus noise);
with `masks: true`, `synthetic_masks` gives one class per pixel (rectangles over a background),
a segmentation task. Examples are made on the fly from their index by stateless random ops.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from blockspec.training.sources import AUTOTUNE, Source, Split, scale_of

SAMPLES = 2048  # `samples` when the spec does not say


def sample_count(data: dict) -> int:
    """How many examples a `synthetic` source makes."""
    return int(data.get("samples", SAMPLES))


def held_out(samples: int, fraction: float) -> int:
    """How many of them validate: the last `round(samples * fraction)` indices."""
    return round(samples * fraction)


def synthetic(
    data: dict, fraction: float, seed: int, image_size, channels: int, default_classes: int
) -> Source:
    """A learnable task: each class is a fixed low-frequency pattern, each example adds noise.

    Examples are generated on the fly from their index (stateless random ops), so any size and
    count costs no memory and every run sees the same data.
    """
    if data.get("masks"):
        return synthetic_masks(data, fraction, seed, image_size, channels, default_classes)
    samples = sample_count(data)
    classes = int(data.get("classes") or default_classes)
    noise = float(data.get("noise", 0.5))
    height, width = (int(v) for v in image_size)
    rng = np.random.default_rng(seed)
    patterns = tf.constant(rng.uniform(0, 1, (classes, 8, 8, channels)).astype("float32"))
    n_val = held_out(samples, fraction)

    def example(index):
        label = tf.cast(index % classes, "int32")
        pattern = tf.image.resize(patterns[label], (height, width))
        grain = tf.random.stateless_normal(
            (height, width, channels), seed=tf.stack([tf.cast(seed, "int64"), index])
        )
        return pattern + noise * grain, label

    return _indexed(
        example,
        samples,
        n_val,
        class_names=[f"class_{i}" for i in range(classes)],
        raw_shape=(height, width, channels),
        scale=scale_of(data, 1.0),
        name=f"synthetic ({samples} examples, {classes} classes)",
    )


BOXES = 3  # rectangles per synthetic segmentation example


def synthetic_masks(
    data: dict, fraction: float, seed: int, image_size, channels: int, default_classes: int
) -> Source:
    """A segmentation task: up to `BOXES` rectangles of classes 1.. over a class-0 background,
    each class its own colour plus noise; the label is the class of every pixel, (H, W).

    Generated on the fly from the example's index, like `synthetic`.
    """
    samples = sample_count(data)
    classes = max(2, int(data.get("classes") or default_classes))
    noise = float(data.get("noise", 0.5))
    height, width = (int(v) for v in image_size)
    colours = tf.constant(np.random.default_rng(seed).uniform(0, 1, (classes, channels)), "float32")
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    n_val = held_out(samples, fraction)

    def example(index):
        mask = tf.zeros((height, width), "int32")
        for box in range(BOXES):
            draw = tf.random.stateless_uniform(
                (5,), seed=tf.stack([tf.cast(seed * BOXES + box, "int64"), index])
            )
            top = tf.cast(draw[0] * 0.75 * height, "int32")
            left = tf.cast(draw[1] * 0.75 * width, "int32")
            tall = 2 + tf.cast(draw[2] * 0.5 * height, "int32")
            wide = 2 + tf.cast(draw[3] * 0.5 * width, "int32")
            label = 1 + tf.cast(draw[4] * (classes - 1), "int32")
            inside = (rows >= top) & (rows < top + tall) & (cols >= left) & (cols < left + wide)
            mask = tf.where(inside, label, mask)
        grain = tf.random.stateless_normal(
            (height, width, channels), seed=tf.stack([tf.cast(seed, "int64"), -1 - index])
        )
        return tf.gather(colours, mask) + noise * grain, mask

    return _indexed(
        example,
        samples,
        n_val,
        class_names=["background", *(f"class_{i}" for i in range(1, classes))],
        raw_shape=(height, width, channels),
        scale=scale_of(data, 1.0),
        name=f"synthetic masks ({samples} examples, {classes} classes per pixel)",
    )


def _indexed(example, samples: int, n_val: int, **fields) -> Source:
    """A source whose examples are `example(index)`: the last `n_val` indices validate."""

    def split(start, count):
        ds = tf.data.Dataset.range(start, start + count).map(example, num_parallel_calls=AUTOTUNE)
        return Split(ds, count)

    return Source(
        train=split(0, samples - n_val),
        validation=split(samples - n_val, n_val) if n_val else None,
        test=None,
        **fields,
    )
