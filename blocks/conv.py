"""Convolutional blocks: `conv_bn`, `factorized_conv`, `vgg_stage`, `mlpconv`."""

from __future__ import annotations

from typing import Annotated, Literal

from blockspec.blocks.layers import Factorize, Padding, StackKernel, conv2d
from blockspec.builder.lazy import layers
from blockspec.builder.registry import Kernel, Positive, Size, positive, register_block

Order = Literal["conv_bn_act", "bn_act_conv", "conv_act_bn"]


@register_block("conv_bn", primary="filters")
def conv_bn(
    x,
    *,
    filters: Positive,
    kernel: StackKernel = 3,
    strides: Size = 1,
    padding: Padding = "same",
    activation: str | None = "relu",
    order: Order = "conv_bn_act",
    use_bias: bool = False,
    factorize: Factorize = "none",
    epsilon: float = 1e-3,
    momentum: float = 0.99,
    scale: bool = True,
    name: str,
):
    """Convolution, batch normalisation and activation, in the `order` given.

    `bn_act_conv` is the pre-activation order of ResNet v2. `scale: false` drops the batch norm's
    gamma (keras.applications InceptionV3's `conv2d_bn`: a ReLU follows, so a scale is redundant).
    Layers: `{name}_conv`, `{name}_bn`, `{name}_act`.
    """
    steps = order.split("_")
    for part in steps:
        if part == "conv":
            x = conv2d(
                x,
                filters=filters,
                kernel=kernel,
                strides=strides,
                padding=padding,
                factorize=factorize,
                use_bias=use_bias,
                name=f"{name}_conv",
            )
        elif part == "bn":
            x = layers.BatchNormalization(
                epsilon=epsilon, momentum=momentum, scale=scale, name=f"{name}_bn"
            )(x)
        elif activation is not None:
            x = layers.Activation(activation, name=f"{name}_act")(x)
    return x


@register_block("factorized_conv", primary="filters")
def factorized_conv(
    x,
    *,
    filters: Positive,
    kernel: StackKernel = 5,
    mode: Literal["stack3", "asymmetric"] = "asymmetric",
    strides: Size = 1,
    padding: Padding = "same",
    activation: str | None = "relu",
    use_bias: bool = True,
    name: str,
):
    """A kxk convolution written as smaller ones: `stack3` (3x3s) or `asymmetric` (1xk, kx1).

    5x5 as two 3x3 uses 18 weights per channel pair instead of 25; 3x3 as 1x3 + 3x1 uses 6 instead
    of 9. Layers: `{name}_f1`, `{name}_f2`, ...
    """
    return conv2d(
        x,
        filters=filters,
        kernel=kernel,
        strides=strides,
        padding=padding,
        factorize=mode,
        activation=activation,
        use_bias=use_bias,
        name=name,
    )


@register_block("vgg_stage", primary="filters")
def vgg_stage(
    x,
    *,
    filters: Positive,
    convs: Positive = 2,
    kernel: Kernel = 3,
    activation: str = "relu",
    batch_norm: bool = False,
    pool: bool = True,
    name: str,
):
    """`convs` same-padded convolutions, then a 2x2/2 max pool (VGG).

    Layers follow keras.applications: `{name}_conv1`, ..., `{name}_pool`; with `batch_norm` each
    conv is followed by `{name}_bn1`, ... and its activation (torchvision's `vgg16_bn`).
    """
    for index in range(1, convs + 1):
        if batch_norm:
            x = layers.Conv2D(filters, kernel, padding="same", name=f"{name}_conv{index}")(x)
            x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn{index}")(x)
            x = layers.Activation(activation, name=f"{name}_act{index}")(x)
        else:
            x = layers.Conv2D(
                filters, kernel, padding="same", activation=activation, name=f"{name}_conv{index}"
            )(x)
    if pool:
        x = layers.MaxPooling2D(2, strides=2, name=f"{name}_pool")(x)
    return x


@register_block("mlpconv")
def mlpconv(
    x,
    *,
    filters: Annotated[list[int], positive()],
    kernel: Kernel,
    strides: Size = 1,
    padding: Padding = "valid",
    activation: str = "relu",
    name: str,
):
    """Network-in-Network's MLPConv: a kxk convolution, then 1x1 convolutions (a micro MLP).

    `filters` lists the output channels: the kxk conv's first, then each 1x1's. Layers:
    `{name}_conv`, `{name}_cccp1`, `{name}_cccp2`, ... (the Caffe model's names).
    """
    x = layers.Conv2D(
        filters[0],
        kernel,
        strides=strides,
        padding=padding,
        activation=activation,
        name=f"{name}_conv",
    )(x)
    for index, width in enumerate(filters[1:], start=1):
        x = layers.Conv2D(width, 1, activation=activation, name=f"{name}_cccp{index}")(x)
    return x
