"""Heads: `aux_classifier` (GoogLeNet) and `classifier` (pool or flatten, then an FC stack)."""

from __future__ import annotations

from typing import Annotated, Literal

from blockspec.builder.lazy import layers
from blockspec.builder.registry import Positive, Rate, positive, register_block


@register_block("aux_classifier", primary="classes")
def aux_classifier(
    x,
    *,
    classes: Positive,
    pool_size: Positive = 5,
    pool_strides: Positive = 3,
    filters: Positive = 128,
    units: Positive = 1024,
    dropout: Rate = 0.7,
    activation: str = "relu",
    name: str,
):
    """GoogLeNet's auxiliary classifier: avg pool 5/3, 1x1 conv 128, FC 1024, dropout 0.7, FC classes.

    Returns logits; the spec's `outputs` entry adds the softmax and the loss weight (0.3 in the
    paper) and marks it `train_only`. On a feature map smaller than the pool window (a small
    input image) the window shrinks to the map, so the head still builds. Layers: `{name}_pool`,
    `{name}_conv`, `{name}_fc`, `{name}_dropout`, `{name}_classifier`.
    """
    window = [min(pool_size, d) if d else pool_size for d in x.shape[1:3]]
    # 4x4 at 14x14 (inception 4a and 4d at a 224 input)
    x = layers.AveragePooling2D(window, strides=pool_strides, name=f"{name}_pool")(x)
    x = layers.Conv2D(filters, 1, activation=activation, name=f"{name}_conv")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(units, activation=activation, name=f"{name}_fc")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(classes, name=f"{name}_classifier")(x)


@register_block("classifier", primary="classes")
def classifier(
    x,
    *,
    classes: Positive,
    pool: Literal["avg", "max", "flatten"] = "avg",
    units: Annotated[list[int], positive()] = (),
    dropout: Rate = 0.0,
    activation: str = "relu",
    name: str,
):
    """Global pooling (or flatten), an FC stack with dropout, then FC `classes` (logits).

    VGG's head is `{pool: flatten, units: [4096, 4096], dropout: 0.5}`. Layers: `{name}_pool`,
    `{name}_fc1`, `{name}_dropout1`, ..., `{name}_predictions`.
    """
    if pool == "flatten":
        x = layers.Flatten(name=f"{name}_flatten")(x)
    elif pool == "max":
        x = layers.GlobalMaxPooling2D(name=f"{name}_pool")(x)
    else:
        x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    for index, width in enumerate(units, start=1):
        x = layers.Dense(width, activation=activation, name=f"{name}_fc{index}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
    return layers.Dense(classes, name=f"{name}_predictions")(x)
