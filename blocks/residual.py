"""Residual units: `basic_residual` (ResNet-18/34) and `bottleneck_residual` (ResNet-50 and up)."""

from __future__ import annotations

from typing import Literal

from blockspec.builder.lazy import layers
from blockspec.builder.registry import Positive, register_block

Shortcut = Literal["auto", "projection", "identity"]


def _needs_projection(x, channels: int, strides: int, shortcut: str) -> bool:
    if shortcut == "auto":
        return strides != 1 or x.shape[-1] != channels
    return shortcut == "projection"


@register_block("basic_residual", primary="filters")
def basic_residual(
    x,
    *,
    filters: Positive,
    strides: Positive = 1,
    preact: bool = False,
    shortcut: Shortcut = "auto",
    use_bias: bool = False,
    epsilon: float = 1e-5,
    name: str,
):
    """Two 3x3 convolutions with a shortcut (torchvision's BasicBlock; `preact` for v2).

    `auto` projects the shortcut (1x1 conv + batch norm) when the stride or width changes.
    Layers: `{name}_0_conv` (projection), `{name}_1_conv`, `{name}_1_bn`, ..., `{name}_out`.
    """
    project = _needs_projection(x, filters, strides, shortcut)
    inner = x
    if preact:
        inner = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_preact_bn")(x)
        inner = layers.Activation("relu", name=f"{name}_preact_relu")(inner)
    source = inner if preact else x
    if project:
        shortcut_t = layers.Conv2D(
            filters, 1, strides=strides, use_bias=use_bias, name=f"{name}_0_conv"
        )(source)
        if not preact:
            shortcut_t = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_0_bn")(shortcut_t)
    else:
        shortcut_t = x
    h = layers.ZeroPadding2D(1, name=f"{name}_1_pad")(inner)
    h = layers.Conv2D(filters, 3, strides=strides, use_bias=use_bias, name=f"{name}_1_conv")(h)
    h = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_1_bn")(h)
    h = layers.Activation("relu", name=f"{name}_1_relu")(h)
    if preact:
        h = layers.Conv2D(filters, 3, padding="same", use_bias=use_bias, name=f"{name}_2_conv")(h)
        return layers.Add(name=f"{name}_out")([shortcut_t, h])
    h = layers.Conv2D(filters, 3, padding="same", use_bias=use_bias, name=f"{name}_2_conv")(h)
    h = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_2_bn")(h)
    h = layers.Add(name=f"{name}_add")([shortcut_t, h])
    return layers.Activation("relu", name=f"{name}_out")(h)


@register_block("bottleneck_residual", primary="filters")
def bottleneck_residual(
    x,
    *,
    filters: Positive,
    strides: Positive = 1,
    expansion: Positive = 4,
    stride_on: Literal["1x1", "3x3"] = "1x1",
    preact: bool = False,
    shortcut: Shortcut = "auto",
    use_bias: bool = True,
    epsilon: float = 1.001e-5,
    name: str,
):
    """1x1 reduce, 3x3, 1x1 expand (x`expansion`), with a shortcut.

    v1 as keras.applications.ResNet50: stride on the first 1x1 (`stride_on: 1x1`), conv bias, BN
    epsilon 1.001e-5; `stride_on: 3x3` is v1.5 (torchvision, NVIDIA). `preact` is v2 (BN-ReLU
    before each conv, no activation after the sum). Layer names follow keras.applications:
    `{name}_0_conv` (projection), `{name}_1_conv` ... `{name}_3_bn`, `{name}_add`, `{name}_out`.
    """
    out_channels = filters * expansion
    project = _needs_projection(x, out_channels, strides, shortcut)
    s1, s3 = (strides, 1) if stride_on == "1x1" else (1, strides)
    inner = x
    if preact:
        inner = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_preact_bn")(x)
        inner = layers.Activation("relu", name=f"{name}_preact_relu")(inner)
    if project:
        shortcut_t = layers.Conv2D(
            out_channels, 1, strides=strides, use_bias=use_bias, name=f"{name}_0_conv"
        )(inner if preact else x)
        if not preact:
            shortcut_t = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_0_bn")(shortcut_t)
    elif strides > 1:
        shortcut_t = layers.MaxPooling2D(1, strides=strides, name=f"{name}_0_pool")(x)
    else:
        shortcut_t = x
    h = inner
    for index, (width, kernel, stride) in enumerate(
        [(filters, 1, s1), (filters, 3, s3), (out_channels, 1, 1)], 1
    ):
        if preact and index > 1:
            h = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_{index - 1}_bn")(h)
            h = layers.Activation("relu", name=f"{name}_{index - 1}_relu")(h)
        h = layers.Conv2D(
            width,
            kernel,
            strides=stride,
            padding="same",
            use_bias=use_bias or (preact and index == 3),
            name=f"{name}_{index}_conv",
        )(h)
        if not preact:
            h = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_{index}_bn")(h)
            if index < 3:
                h = layers.Activation("relu", name=f"{name}_{index}_relu")(h)
    h = layers.Add(name=f"{name}_add")([shortcut_t, h])
    if preact:
        return h
    return layers.Activation("relu", name=f"{name}_out")(h)
