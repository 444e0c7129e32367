"""tf.data pipelines over a data source (`sources`), and the preprocessing model.

Preprocessing (resize to `image_size`,
grey <-> RGB, rescale) is a small Keras model: the pipeline applies it once, before the cache, and the
exported model carries it, so `model.keras` takes raw images. Augmentation runs on the training
pipeline only, per example, after the cache; a center crop then fits `image_size` to the model
input when they differ (`random_crop` usually does that already while training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from blockspec.builder.compile import call_layer
from blockspec.training.errors import DataError
from blockspec.training.sources import (
    Source,
    Split,
    check_source,
    describe,
    load_source,
    shared,
    shared_between_runs,
)

__all__ = [
    "Pipelines",
    "Source",
    "Split",
    "check_source",
    "describe",
    "fit_to_input",
    "load_source",
    "make_pipelines",
    "preprocess_model",
    "resize_to_input",
    "shared",
    "shared_between_runs",
    "should_cache",
]

AUTOTUNE = tf.data.AUTOTUNE
CACHE_LIMIT_BYTES = 1 << 30
# Luminance weights (ITU-R BT.601), for RGB -> grey.
LUMA = (0.299, 0.587, 0.114)


@dataclass
class Pipelines:
    """Batched datasets ready for `fit` (labels keyed by output name)."""

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    steps_per_epoch: int
    validation_steps: int | None

    def fit_arguments(self, epochs: int, autotune: bool = True) -> dict[str, Any]:
        """`model.fit`'s data arguments for `epochs` epochs: both datasets repeated that often.

        One iterator then serves the whole fit: the shuffle buffer, the map threads and the
        prefetch carry on from one epoch to the next instead of starting again (measured: a stall
        of 50 ms to seconds at each epoch's start, `bench/pipeline.py`). Each epoch is still
        exactly one pass, reshuffled, as the steps match the finite datasets; repeating no more
        than `epochs` times keeps the prefetch from reading a pass that no epoch would use.

        Args:
            epochs: the epochs `fit` runs.
            autotune: let tf.data tune the parallelism and prefetch of the training pipeline
                as it runs (`tf.data.Options.autotune`; off, `AUTOTUNE` takes fixed defaults). A
                tune trial turns it off for the training split: deleting a long-lived autotuned
                iterator at the end of `fit` stalled for 0.2 to 2.6 s in about one trial in seven
                here, and none without (20-trial searches of digits_tune, same speed per epoch).
        """
        count = max(1, int(epochs))
        validating = self.validation is not None
        train = self.train.repeat(count)
        if not autotune:
            options = tf.data.Options()
            options.autotune.enabled = False
            train = train.with_options(options)
        return {
            "x": train,
            "steps_per_epoch": self.steps_per_epoch,
            "validation_data": self.validation.repeat(count) if validating else None,
            "validation_steps": self.validation_steps if validating else None,
        }


# -- preprocessing ---------------------------------------------------------------------------------


def preprocess_model(
    raw_shape: tuple[int | None, ...],
    image_size: tuple[int, int] | None,
    channels: int | None,
    scale: float,
    raw_dtype: str = "float32",
    name: str = "preprocess",
) -> keras.Model:
    """Raw examples -> model-ready images at `image_size`, with built-in Keras layers only.

    Args:
        raw_shape: one raw example's shape (`(8, 8)`, `(None, None, 3)`, ...).
        image_size: `(H, W)` to resize to; None for non-image inputs (no resize, no channels).
        channels: the model input's channels; grey is repeated to RGB, RGB turned to luminance.
        scale: raw values are multiplied by it.
        raw_dtype: the raw input's dtype.
        name: the model's name.

    Returns:
        A functional model; loadable with `safe_mode=True` and no blockspec import.
    """
    return shared(
        lambda: _preprocess_model(raw_shape, image_size, channels, scale, raw_dtype, name),
        "preprocess",
        raw_shape,
        image_size,
        channels,
        scale,
        raw_dtype,
        name,
    )


def _preprocess_model(raw_shape, image_size, channels, scale, raw_dtype, name) -> keras.Model:
    raw = keras.Input(shape=raw_shape, dtype=raw_dtype, name="image")
    x = raw
    if image_size is not None:
        if len(raw_shape) == 2:
            x = keras.layers.Reshape((*raw_shape, 1), name=f"{name}_add_channel")(x)
        if tuple(raw_shape[:2]) != tuple(image_size):
            x = call_layer(keras.layers.Resizing(*image_size, name=f"{name}_resize"), x)
        have = 1 if len(raw_shape) == 2 else raw_shape[-1]
        if channels is not None and have != channels:
            x = _adapt_channels(x, have, channels, name)
    if scale != 1.0:
        x = keras.layers.Rescaling(scale, name=f"{name}_rescale")(x)
    return keras.Model(raw, x, name=name)


def _adapt_channels(x, have: int, want: int, name: str):
    """Grey -> RGB by repeating the channel; RGB(A) -> grey or RGBA -> RGB by a fixed 1x1 conv."""
    if have == 1:
        return keras.layers.Concatenate(name=f"{name}_grey_to_rgb")([x] * want)
    weights = np.zeros((1, 1, have, want), dtype="float32")
    if want == 1 and have in (3, 4):
        weights[0, 0, :3, 0] = LUMA
    elif have == 4 and want == 3:
        weights[0, 0, :3, :3] = np.eye(3)
    else:
        raise DataError(f"cannot adapt {have} image channels to the model's {want}")
    conv = keras.layers.Conv2D(
        want, 1, use_bias=False, trainable=False, dtype="float32", name=f"{name}_channels"
    )
    y = conv(x)
    conv.set_weights([weights])
    return y


def fit_to_input(
    image_size, input_hw, crop_hw=None, name: str = "fit_input"
) -> keras.layers.Layer | None:
    """The deterministic view the model sees outside training; None when there is nothing to do.

    Training crops `crop_hw` at random from `image_size` images (`random_crop`); evaluation and the
    exported model take the center `crop_hw`, then resize it to the model input when it differs
    (a crop smaller than the input is a zoom). Without a crop, `crop_hw` is the input size.

    Args:
        image_size: `(H, W)` of the preprocessed images.
        input_hw: the model input's `(H, W)`.
        crop_hw: the training crop, or None.
        name: the layer's name.
    """
    if image_size is None:
        return None
    crop_hw = tuple(crop_hw or input_hw)
    layers = []
    if crop_hw != tuple(image_size):
        layers.append(keras.layers.CenterCrop(*crop_hw, name=f"{name}_crop"))
    if crop_hw != tuple(input_hw):
        layers.append(keras.layers.Resizing(*input_hw, name=f"{name}_resize"))
    if not layers:
        return None
    return layers[0] if len(layers) == 1 else keras.Sequential(layers, name=name)


def resize_to_input(crop_hw, input_hw) -> keras.layers.Layer | None:
    """After a training crop of `crop_hw`: the resize to the model input, or None."""
    if crop_hw is None or tuple(crop_hw) == tuple(input_hw):
        return None
    return keras.layers.Resizing(*input_hw, name="train_resize")


# -- pipelines -------------------------------------------------------------------------------------


def preprocessed(split: Split, preprocess: keras.Model) -> tf.data.Dataset:
    """Apply the preprocessing model to a split, in parallel batches; unbatched again."""
    return (
        split.dataset.batch(256)
        .map(lambda x, y: (preprocess(x, training=False), y), num_parallel_calls=AUTOTUNE)
        .unbatch()
    )


def _cached(split: Split, preprocess: keras.Model, cache: bool) -> tf.data.Dataset:
    """`split` preprocessed, then cached in memory with `cache` (shared between runs)."""

    def make():
        dataset = preprocessed(split, preprocess)
        return dataset.cache() if cache else dataset

    # What is kept holds the split and the model too, so their ids stay theirs.
    return shared(
        lambda: (make(), split, preprocess), "preprocessed", id(split), id(preprocess), cache
    )[0]


def should_cache(mode, size: int, shape) -> bool:
    """`cache: auto` caches in memory when the preprocessed split fits in 1 GiB."""
    if mode in (True, False):
        return mode
    nbytes = size * int(np.prod([d or 1 for d in shape])) * 4
    return nbytes <= CACHE_LIMIT_BYTES


def make_pipelines(
    source: Source,
    preprocess: keras.Model,
    *,
    augment: list[keras.layers.Layer],
    fit: keras.layers.Layer | None,
    train_fit: keras.layers.Layer | None = None,
    labels: Callable,
    features: Callable | None = None,
    batch_size: int,
    seed: int,
    cache: Any = "auto",
    drop_remainder: bool = False,
    deterministic: bool = False,
) -> Pipelines:
    """Training and validation datasets: preprocess, cache, shuffle, augment, batch, prefetch.

    Args:
        source: the data source.
        preprocess: raw -> image at `image_size`.
        augment: Keras preprocessing layers, applied per example to the training split.
        fit: `fit_to_input`: the validation images' way to the model input (None: as they are).
        train_fit: the training images' way to the model input after augmentation (None: as
            they are); a resize when `random_crop` is not the input size.
        labels: maps a batch of integer labels to the model's targets (a dict per output).
        features: maps a batch of images to the model's inputs (default: as they are).
        batch_size: global batch size.
        seed: shuffle seed.
        cache: `auto`, true or false.
        drop_remainder: drop the last partial batch (multi-worker training).
        deterministic: augment on one thread. Keras' random layers hand out their draws in the
            order they are called, so on several threads which example gets which draw varies
            from run to run; on one, two runs with the same seed augment alike.
    """
    shape = preprocess.output.shape[1:]

    def finisher(layer):
        def finish(x, y):
            if layer is not None:
                x = layer(x)
            return (features(x) if features else x), labels(y)

        return finish

    def augment_one(x, y):
        for layer in augment:
            x = layer(x, training=True)
        return x, y

    train = _cached(source.train, preprocess, should_cache(cache, source.train.size, shape))
    train = train.shuffle(min(max(source.train.size, 1), 10_000), seed=seed)
    if augment:
        train = train.map(augment_one, num_parallel_calls=None if deterministic else AUTOTUNE)
    train = train.batch(batch_size, drop_remainder=drop_remainder)
    steps = source.train.size // batch_size
    if not drop_remainder and source.train.size % batch_size:
        steps += 1
    # unbatch() loses the cardinality; restore it so Keras knows the epoch's length.
    train = train.apply(tf.data.experimental.assert_cardinality(steps))
    train = train.map(finisher(train_fit), num_parallel_calls=AUTOTUNE)
    train = train.prefetch(AUTOTUNE)
    validation, validation_steps = None, None
    if source.validation is not None and source.validation.size:
        validation = _cached(
            source.validation,
            preprocess,
            should_cache(cache, source.validation.size, shape),
        )
        validation_steps = -(-source.validation.size // batch_size)
        validation = (
            validation.batch(batch_size)
            .apply(tf.data.experimental.assert_cardinality(validation_steps))
            .map(finisher(fit), num_parallel_calls=AUTOTUNE)
            .prefetch(AUTOTUNE)
        )
    return Pipelines(train, validation, max(steps, 1), validation_steps)
