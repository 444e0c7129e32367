"""The inference model written as `model.keras`.

Train-only outputs are dropped, the preprocessing comes first, so the file takes raw examples as the
data source gives them (a digits 8x8 array of 0..16, a decoded image of any size, ...) and returns
`{output name: probabilities}`. Its parts are named for `blockspec evaluate`: `preprocess` (raw ->
`image_size`), an optional `fit_input` center crop, and `network` (the trained layers).
"""

from __future__ import annotations

from pathlib import Path

import keras

from blockspec.training import files


def inference_model(
    model: keras.Model,
    outputs,
    preprocess: keras.Model,
    fit: keras.layers.Layer | None = None,
    name: str = "model",
) -> keras.Model:
    """Raw input -> preprocess -> (center crop) -> the trained network, train-only heads removed.

    Args:
        model: the trained model (outputs keyed by output name, each from a layer of that name).
        outputs: the spec's `OutputSpec`s.
        preprocess: the data pipeline's preprocessing model.
        fit: the center crop from `image_size` to the model input, or None.
        name: the model's name.

    Returns:
        A new functional model sharing the trained layers (and so their weights).
    """
    keep = [o.name for o in outputs if not o.train_only]
    network = keras.Model(
        model.inputs, {n: model.get_layer(n).output for n in keep}, name="network"
    )
    raw = keras.Input(
        shape=preprocess.inputs[0].shape[1:], dtype=preprocess.inputs[0].dtype, name="image"
    )
    # Each part is called with `training=False` recorded on its node, so `model(x)` computes as
    # `model.predict(x)` does (see `builder.compile.call_layer`); `fit` still passes True.
    x = preprocess(raw, training=False)
    if fit is not None:
        x = fit(x, training=False)
    return keras.Model(raw, network(x, training=False), name=name)


def save_model(model: keras.Model, path: str | Path) -> Path:
    """`model.save` through a temporary file, so `path` is never half written."""
    return files.atomic_write(path, lambda tmp: model.save(tmp), suffix=".keras")
