"""Stages of keras.applications networks: `resnet_v2_stack` (ResNet V2), `dense_block` and
`dense_transition` (DenseNet). Each is the keras.applications function of the same job, with its
layer names, so that the ImageNet weight files load by name."""

from __future__ import annotations

from blockspec.builder.lazy import layers
from blockspec.builder.registry import register_block


def _bn_relu(x, name: str, epsilon: float):
    x = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _preact_unit(x, filters: int, stride: int, project: bool, epsilon: float, name: str):
    # keras.applications.resnet.residual_block_v2
    preact = _bn_relu(x, f"{name}_preact", epsilon)
    if project:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(preact)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
    else:
        shortcut = x
    h = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_1_conv")(preact)
    h = _bn_relu(h, f"{name}_1", epsilon)
    h = layers.ZeroPadding2D(1, name=f"{name}_2_pad")(h)
    h = layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=f"{name}_2_conv")(h)
    h = _bn_relu(h, f"{name}_2", epsilon)
    h = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(h)
    return layers.Add(name=f"{name}_out")([shortcut, h])


@register_block("resnet_v2_stack", primary="filters")
def resnet_v2_stack(
    x, *, filters: int, blocks: int, strides: int = 2, epsilon: float = 1.001e-5, name: str
):
    """A stage of pre-activation bottleneck units (ResNet V2, keras.applications' stack).

    The first unit projects its shortcut (1x1 conv on the pre-activation); the last one carries
    the stage's stride (3x3 conv; shortcut a 1x1 max pool), as keras.applications.ResNet50V2 does.
    Units are `{name}_block1` ... `{name}_block{blocks}` (`conv2_block1_1_conv`, ...).
    """
    for index in range(1, blocks + 1):
        stride = strides if index == blocks else 1
        x = _preact_unit(x, filters, stride, index == 1, epsilon, f"{name}_block{index}")
    return x


@register_block("dense_block", primary="blocks")
def dense_block(
    x,
    *,
    blocks: int,
    growth_rate: int = 32,
    bottleneck: int = 4,
    epsilon: float = 1.001e-5,
    name: str,
):
    """`blocks` DenseNet units, each concatenating `growth_rate` new channels to its input.

    A unit is BN-ReLU-1x1 conv (`bottleneck` x growth_rate), BN-ReLU-3x3 conv (growth_rate), then
    a concatenation: `{name}_block1_0_bn` ... `{name}_block1_concat` as keras.applications.DenseNet.
    """
    for index in range(1, blocks + 1):
        unit = f"{name}_block{index}"
        h = _bn_relu(x, f"{unit}_0", epsilon)
        h = layers.Conv2D(bottleneck * growth_rate, 1, use_bias=False, name=f"{unit}_1_conv")(h)
        h = _bn_relu(h, f"{unit}_1", epsilon)
        h = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{unit}_2_conv")(h)
        x = layers.Concatenate(name=f"{unit}_concat")([x, h])
    return x


@register_block("dense_transition", primary="reduction")
def dense_transition(x, *, reduction: float = 0.5, epsilon: float = 1.001e-5, name: str):
    """DenseNet's transition: BN-ReLU, a 1x1 conv to `reduction` x the input's channels, 2x2/2
    average pool. Layers `{name}_bn`, `{name}_relu`, `{name}_conv`, `{name}_pool`."""
    x = _bn_relu(x, name, epsilon)
    channels = int(x.shape[-1] * reduction)
    x = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)
