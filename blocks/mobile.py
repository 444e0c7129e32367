"""Mobile units as keras.applications writes them: `depthwise_separable` (MobileNet) and
`inverted_residual` (MobileNetV2), with keras.applications' layer names when given its
`block_id`, so that the ImageNet weight files load by name."""

from __future__ import annotations

from typing import Literal

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


def _squeeze_excite(x, inputs: int, ratio: float, activation: str, name: str):
    # keras.applications.efficientnet: the squeeze width is a fraction of the unit's input
    channels = x.shape[-1]
    se = layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = layers.Reshape((1, 1, channels), name=f"{name}se_reshape")(se)
    se = layers.Conv2D(
        max(1, int(inputs * ratio)), 1, activation=activation, name=f"{name}se_reduce"
    )(se)
    se = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}se_expand")(se)
    return layers.Multiply(name=f"{name}se_excite")([x, se])


def _mbconv(x, filters, kernel, strides, expand_ratio, se_ratio, activation, drop, name):
    # keras.applications.efficientnet.block
    inputs, channels = x, x.shape[-1]
    if expand_ratio != 1:
        x = layers.Conv2D(channels * expand_ratio, 1, use_bias=False, name=f"{name}expand_conv")(x)
        x = layers.BatchNormalization(name=f"{name}expand_bn")(x)
        x = layers.Activation(activation, name=f"{name}expand_activation")(x)
    if strides == 2:
        x = layers.ZeroPadding2D(_pad_for(x, kernel), name=f"{name}dwconv_pad")(x)
    x = layers.DepthwiseConv2D(
        kernel,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=False,
        name=f"{name}dwconv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}bn")(x)
    x = layers.Activation(activation, name=f"{name}activation")(x)
    if 0 < se_ratio <= 1:
        x = _squeeze_excite(x, channels, se_ratio, activation, name)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}project_conv")(x)
    x = layers.BatchNormalization(name=f"{name}project_bn")(x)
    if strides == 1 and channels == filters:
        if drop > 0:
            x = layers.Dropout(drop, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


@register_block("mbconv_stage", primary="filters")
def mbconv_stage(
    x,
    *,
    filters: int,
    repeats: int = 1,
    kernel: int = 3,
    strides: int = 1,
    expand_ratio: int = 6,
    se_ratio: float = 0.25,
    activation: str = "swish",
    drop_connect_rate: float = 0.0,
    first_index: int = 0,
    total_blocks: int = 1,
    name: str,
):
    """A stage of EfficientNet's MBConv units (keras.applications.EfficientNetB0-B7).

    A unit: 1x1 expansion (x`expand_ratio`, none at 1), BN, activation, kxk depthwise (the first
    unit carries `strides`), BN, activation, squeeze-excite (width `se_ratio` x the unit's input),
    1x1 projection to `filters`, BN, and where shapes allow a residual sum after stochastic depth
    (Dropout with rate `drop_connect_rate * index / total_blocks`, `index` counting units over
    the whole network from `first_index`). Units are `{name}a_`, `{name}b_`, ... with keras'
    layer names (`block2a_expand_conv`, `block2a_se_reduce`, ...).
    """
    for index in range(repeats):
        drop = drop_connect_rate * (first_index + index) / float(total_blocks)
        stride = strides if index == 0 else 1
        x = _mbconv(
            x,
            filters,
            kernel,
            stride,
            expand_ratio,
            se_ratio,
            activation,
            drop,
            f"{name}{chr(index + 97)}_",
        )
    return x


def _v3_activation(x, activation: str, name: str):
    # keras.applications.mobilenet_v3's relu and hard_swish (unnamed there)
    if activation == "relu":
        return layers.ReLU(name=name)(x)
    return layers.Activation("hard_swish", name=name)(x)


@register_block("mobilenet_v3_unit", primary="filters")
def mobilenet_v3_unit(
    x,
    *,
    filters: int,
    expansion: float,
    kernel: int = 3,
    strides: int = 1,
    se_ratio: float | None = None,
    activation: Literal["relu", "hard_swish"] = "relu",
    block_id: int,
    alpha: float = 1.0,
    name: str,
):
    """MobileNetV3's unit (keras.applications' `_inverted_res_block`): 1x1 expansion to
    `make_divisible(in * expansion)` (none for block 0), BN, activation, kxk depthwise, BN,
    activation, squeeze-excite with a hard sigmoid (`se_ratio`; null: none), linear 1x1
    projection to `make_divisible(filters * alpha)`, BN, a residual sum where shapes allow.
    Layers `expanded_conv_{block_id}_expand`, ... as keras names them (block 0: `expanded_conv_`).
    """
    shortcut, infilters = x, x.shape[-1]
    width = make_divisible(infilters * expansion, 8)
    out = make_divisible(filters * alpha, 8)
    prefix = f"expanded_conv_{block_id}_" if block_id else "expanded_conv_"
    bn = {"epsilon": 1e-3, "momentum": 0.999}
    if block_id:
        x = layers.Conv2D(width, 1, use_bias=False, name=f"{prefix}expand")(x)
        x = _v3_activation(
            layers.BatchNormalization(**bn, name=f"{prefix}expand_bn")(x),
            activation,
            f"{prefix}expand_act",
        )
    if strides == 2:
        x = layers.ZeroPadding2D(_pad_for(x, kernel), name=f"{prefix}depthwise_pad")(x)
    x = layers.DepthwiseConv2D(
        kernel,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=False,
        name=f"{prefix}depthwise",
    )(x)
    x = _v3_activation(
        layers.BatchNormalization(**bn, name=f"{prefix}depthwise_bn")(x),
        activation,
        f"{prefix}depthwise_act",
    )
    if se_ratio:
        se = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}squeeze_excite_avg_pool")(
            x
        )
        se = layers.Conv2D(
            make_divisible(width * se_ratio, 8), 1, name=f"{prefix}squeeze_excite_conv"
        )(se)
        se = layers.ReLU(name=f"{prefix}squeeze_excite_relu")(se)
        se = layers.Conv2D(width, 1, name=f"{prefix}squeeze_excite_conv_1")(se)
        # keras' hard_sigmoid, relu6(x + 3) * (1 / 6), with the same arithmetic in named layers
        se = layers.Rescaling(1.0, offset=3.0, name=f"{prefix}squeeze_excite_plus3")(se)
        se = layers.ReLU(6.0, name=f"{prefix}squeeze_excite_relu6")(se)
        se = layers.Rescaling(1.0 / 6.0, name=f"{prefix}squeeze_excite_hard_sigmoid")(se)
        x = layers.Multiply(name=f"{prefix}squeeze_excite_mul")([x, se])
    x = layers.Conv2D(out, 1, use_bias=False, name=f"{prefix}project")(x)
    x = layers.BatchNormalization(**bn, name=f"{prefix}project_bn")(x)
    if strides == 1 and infilters == out:
        x = layers.Add(name=f"{prefix}add")([shortcut, x])
    return x
