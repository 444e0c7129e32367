"""Mobile units as keras.applications writes them: `depthwise_separable` (MobileNet) and
`inverted_residual` (MobileNetV2), with keras.applications' layer names when given its
`block_id`, so that the ImageNet weight files load by name."""

from __future__ import annotations

from blockspec.builder.expr import make_divisible
from blockspec.builder.lazy import layers
from blockspec.builder.registry import register_block


def _pad_for(x, kernel: int):
    # keras.applications' correct_pad: what `same` pads for a stride of 2, written out
    odd = [1 - (size or 0) % 2 for size in x.shape[1:3]]
    return tuple((kernel // 2 - adjust, kernel // 2) for adjust in odd)


@register_block("depthwise_separable", primary="filters")
def depthwise_separable(
    x,
    *,
    filters: int,
    strides: int = 1,
    alpha: float = 1.0,
    depth_multiplier: int = 1,
    block_id: int | None = None,
    name: str,
):
    """MobileNet's unit: 3x3 depthwise conv, BN, ReLU6, 1x1 conv to `int(filters * alpha)`, BN,
    ReLU6. A stride of 2 pads the bottom and right by one, then convolves `valid`.

    With `block_id` N the layers are keras.applications.MobileNet's (`conv_dw_N`, `conv_dw_N_bn`,
    `conv_pw_N`, ...); without it `{name}_dw`, `{name}_dw_bn`, `{name}_pw`, ...
    """
    dw, pw = (
        (f"conv_dw_{block_id}", f"conv_pw_{block_id}") if block_id else (f"{name}_dw", f"{name}_pw")
    )
    if strides != 1:
        pad = f"conv_pad_{block_id}" if block_id else f"{name}_pad"
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=pad)(x)
    x = layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        depth_multiplier=depth_multiplier,
        use_bias=False,
        name=dw,
    )(x)
    x = layers.BatchNormalization(name=f"{dw}_bn")(x)
    x = layers.ReLU(6.0, name=f"{dw}_relu")(x)
    x = layers.Conv2D(int(filters * alpha), 1, use_bias=False, name=pw)(x)
    x = layers.BatchNormalization(name=f"{pw}_bn")(x)
    return layers.ReLU(6.0, name=f"{pw}_relu")(x)


@register_block("inverted_residual", primary="filters")
def inverted_residual(
    x,
    *,
    filters: int,
    strides: int = 1,
    expansion: int = 6,
    alpha: float = 1.0,
    block_id: int | None = None,
    name: str,
):
    """MobileNetV2's unit: 1x1 expansion to `expansion` x the input's channels (none when
    `expansion` is 1), BN, ReLU6, 3x3 depthwise, BN, ReLU6, linear 1x1 projection to
    `make_divisible(int(filters * alpha), 8)`, BN, and a residual sum where the shapes allow.

    With `block_id` N the layers are keras.applications.MobileNetV2's (`block_N_expand`,
    `block_N_expand_BN`, ..., `block_N_add`; block 0 is `expanded_conv_...`); without it
    `{name}_expand`, ...
    """
    in_channels = x.shape[-1]
    out_channels = make_divisible(int(filters * alpha), 8)
    prefix = name if block_id is None else f"block_{block_id}" if block_id else "expanded_conv"
    bn = {"epsilon": 1e-3, "momentum": 0.999}
    h = x
    if expansion != 1:
        h = layers.Conv2D(expansion * in_channels, 1, use_bias=False, name=f"{prefix}_expand")(h)
        h = layers.BatchNormalization(**bn, name=f"{prefix}_expand_BN")(h)
        h = layers.ReLU(6.0, name=f"{prefix}_expand_relu")(h)
    if strides == 2:
        h = layers.ZeroPadding2D(_pad_for(h, 3), name=f"{prefix}_pad")(h)
    h = layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=False,
        name=f"{prefix}_depthwise",
    )(h)
    h = layers.BatchNormalization(**bn, name=f"{prefix}_depthwise_BN")(h)
    h = layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(h)
    h = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}_project")(h)
    h = layers.BatchNormalization(**bn, name=f"{prefix}_project_BN")(h)
    if in_channels == out_channels and strides == 1:
        return layers.Add(name=f"{prefix}_add")([x, h])
    return h
