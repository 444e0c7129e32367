"""EfficientNetV2's stage (Tan & Le 2021) as keras.applications.EfficientNetV2* builds it: fused
MBConv units (one full convolution in place of expansion + depthwise) or MBConv units with
squeeze-excite, with keras' layer names so that its weight files load by name."""

from __future__ import annotations

from blockspec.builder.lazy import layers
from blockspec.builder.registry import register_block


def _squeeze_excite(x, inputs: int, ratio: float, activation: str, name: str):
    # keras.applications.efficientnet_v2: the squeeze width is a fraction of the unit's input
    channels = x.shape[-1]
    se = layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = layers.Reshape((1, 1, channels), name=f"{name}se_reshape")(se)
    se = layers.Conv2D(
        max(1, int(inputs * ratio)),
        1,
        padding="same",
        activation=activation,
        name=f"{name}se_reduce",
    )(se)
    se = layers.Conv2D(channels, 1, padding="same", activation="sigmoid", name=f"{name}se_expand")(
        se
    )
    return layers.Multiply(name=f"{name}se_excite")([x, se])


def _conv_bn(x, filters, kernel, strides, activation, name, conv, bn, act):
    x = layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}{conv}"
    )(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}{bn}")(x)
    if act:
        x = layers.Activation(activation, name=f"{name}{act}")(x)
    return x


def _unit(x, filters, kernel, strides, expand_ratio, se_ratio, fused, activation, drop, name):
    # keras.applications.efficientnet_v2.MBConvBlock and FusedMBConvBlock
    inputs, channels = x, x.shape[-1]
    width = channels * expand_ratio
    if expand_ratio != 1:
        size, step = (kernel, strides) if fused else (1, 1)
        x = _conv_bn(
            x, width, size, step, activation, name, "expand_conv", "expand_bn", "expand_activation"
        )
    if not fused:
        x = layers.DepthwiseConv2D(
            kernel, strides=strides, padding="same", use_bias=False, name=f"{name}dwconv2"
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}bn")(x)
        x = layers.Activation(activation, name=f"{name}activation")(x)
    if 0 < se_ratio <= 1:
        x = _squeeze_excite(x, channels, se_ratio, activation, name)
    alone = fused and expand_ratio == 1  # the projection is the unit's only convolution
    x = _conv_bn(
        x,
        filters,
        kernel if alone else 1,
        strides if alone else 1,
        activation,
        name,
        "project_conv",
        "project_bn",
        "project_activation" if alone else None,
    )
    if strides == 1 and channels == filters:
        if drop:
            x = layers.Dropout(drop, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


@register_block("efficientnetv2_stage", primary="filters")
def efficientnetv2_stage(
    x,
    *,
    filters: int,
    repeats: int = 1,
    kernel: int = 3,
    strides: int = 1,
    expand_ratio: int = 4,
    se_ratio: float = 0.0,
    fused: bool = False,
    activation: str = "swish",
    drop_connect_rate: float = 0.0,
    first_index: int = 0,
    total_blocks: int = 1,
    name: str,
):
    """A stage of EfficientNetV2's units (keras.applications.EfficientNetV2B0 to L).

    `fused: true`: a kxk convolution expanding `expand_ratio` x (carrying `strides`), BN,
    activation, 1x1 projection to `filters`, BN (at `expand_ratio` 1 the kxk projection alone,
    BN, activation). `fused: false`: 1x1 expansion, BN, activation, kxk depthwise, BN,
    activation, squeeze-excite (`se_ratio` x the unit's input), 1x1 projection, BN. Where shapes
    allow, a residual sum after stochastic depth (rate `drop_connect_rate * index /
    total_blocks`, `index` counting units over the network from `first_index`). Units are
    `{name}a_`, `{name}b_`, ... with keras' layer names (`block4a_dwconv2`, `block4a_se_reduce`).
    """
    for index in range(repeats):
        x = _unit(
            x,
            filters,
            kernel,
            strides if index == 0 else 1,
            expand_ratio,
            se_ratio,
            fused,
            activation,
            drop_connect_rate * (first_index + index) / float(total_blocks),
            f"{name}{chr(index + 97)}_",
        )
    return x
