"""NASNet-A's cells (Zoph et al. 2018) as keras.applications.NASNetMobile and NASNetLarge build
them, with keras' layer names so that its weight files load by name.

A cell reads two tensors, `from: [x, p]`: the previous cell's output and the one before it
(`from: [x, x]` is keras' first cell, whose `p` is `x` itself, left unadjusted). Its ten operations pair up in five sums, each a
separable-conv stack or a pooling, concatenated; the language could write one cell, but not
keras' names for it inside a block, nor `p`'s adjustment, which depends on both inputs' shapes.
"""

from __future__ import annotations

from blockspec.builder.lazy import layers
from blockspec.builder.registry import register_block

_BN = {"momentum": 0.9997, "epsilon": 1e-3}


def _pad_for(x, kernel: int):
    # keras.applications' correct_pad: what `same` pads for a stride of 2, written out
    odd = [1 - (size or 0) % 2 for size in x.shape[1:3]]
    return tuple((kernel // 2 - adjust, kernel // 2) for adjust in odd)


def _separable(x, filters: int, kernel: int, block_id: str, strides: int = 1):
    # keras' _separable_conv_block: ReLU, sep conv, BN, ReLU, sep conv, BN
    x = layers.Activation("relu", name=f"separable_conv_1_relu_{block_id}")(x)
    padding = "same"
    if strides == 2:
        x = layers.ZeroPadding2D(_pad_for(x, kernel), name=f"separable_conv_1_pad_{block_id}")(x)
        padding = "valid"
    x = layers.SeparableConv2D(
        filters,
        kernel,
        strides=strides,
        padding=padding,
        use_bias=False,
        name=f"separable_conv_1_{block_id}",
    )(x)
    x = layers.BatchNormalization(**_BN, name=f"separable_conv_1_bn_{block_id}")(x)
    x = layers.Activation("relu", name=f"separable_conv_2_relu_{block_id}")(x)
    x = layers.SeparableConv2D(
        filters, kernel, padding="same", use_bias=False, name=f"separable_conv_2_{block_id}"
    )(x)
    return layers.BatchNormalization(**_BN, name=f"separable_conv_2_bn_{block_id}")(x)


def _adjust(p, ip, filters: int, block_id: str):
    # keras' _adjust_block: `p` brought to `ip`'s size (a factorised reduction) or width
    if p.shape[-2] != ip.shape[-2]:
        p = layers.Activation("relu", name=f"adjust_relu_1_{block_id}")(p)
        p1 = layers.AveragePooling2D(1, strides=2, name=f"adjust_avg_pool_1_{block_id}")(p)
        p1 = layers.Conv2D(filters // 2, 1, use_bias=False, name=f"adjust_conv_1_{block_id}")(p1)
        p2 = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"adjust_pad_2_{block_id}")(p)
        p2 = layers.Cropping2D(((1, 0), (1, 0)), name=f"adjust_crop_2_{block_id}")(p2)
        p2 = layers.AveragePooling2D(1, strides=2, name=f"adjust_avg_pool_2_{block_id}")(p2)
        p2 = layers.Conv2D(filters // 2, 1, use_bias=False, name=f"adjust_conv_2_{block_id}")(p2)
        p = layers.Concatenate(name=f"adjust_concat_{block_id}")([p1, p2])
        return layers.BatchNormalization(**_BN, name=f"adjust_bn_{block_id}")(p)
    if p.shape[-1] != filters:
        p = layers.Activation("relu", name=f"adjust_relu_projection_{block_id}")(p)
        p = layers.Conv2D(filters, 1, use_bias=False, name=f"adjust_conv_projection_{block_id}")(p)
        return layers.BatchNormalization(**_BN, name=f"adjust_bn_{block_id}")(p)
    return p


def _inputs(x, filters: int, kind: str, block_id: str):
    """`(h, p)`: the cell's 1x1 of `x` (ReLU, conv, BN) and its adjusted `p`."""
    ip, p = (x[0], x[1]) if isinstance(x, (list, tuple)) else (x, x)
    if p is not ip:  # keras' first cell has no `p`: it reads `x` twice, unadjusted
        p = _adjust(p, ip, filters, block_id)
    h = layers.Activation("relu", name=f"{kind}_relu_1_{block_id}")(ip)
    h = layers.Conv2D(filters, 1, use_bias=False, name=f"{kind}_conv_1_{block_id}")(h)
    return layers.BatchNormalization(**_BN, name=f"{kind}_bn_1_{block_id}")(h), p


@register_block("nasnet_normal_cell", primary="filters", multi_input=True)
def nasnet_normal_cell(x, *, filters: int, block_id: str | int | None = None, name: str):
    """NASNet-A's normal cell (keras' `_normal_a_cell`) on `from: [x, p]`: five sums of
    separable convolutions (5x5, 3x3) and 3x3 average pools of the 1x1-projected `x` and the
    adjusted `p`, concatenated with `p` (6 x `filters` channels). Layers as keras names them for
    its `block_id` (`normal_conv_1_0`, `separable_conv_1_normal_left1_0`, ...; default `name`).
    """
    block_id = name if block_id is None else block_id
    h, p = _inputs(x, filters, "normal", block_id)

    def add(parts, index):
        return layers.Add(name=f"normal_add_{index}_{block_id}")(parts)

    def pool(t, side):
        return layers.AveragePooling2D(
            3, strides=1, padding="same", name=f"normal_{side}_{block_id}"
        )(t)

    x1 = add(
        [
            _separable(h, filters, 5, f"normal_left1_{block_id}"),
            _separable(p, filters, 3, f"normal_right1_{block_id}"),
        ],
        1,
    )
    x2 = add(
        [
            _separable(p, filters, 5, f"normal_left2_{block_id}"),
            _separable(p, filters, 3, f"normal_right2_{block_id}"),
        ],
        2,
    )
    x3 = add([pool(h, "left3"), p], 3)
    x4 = add([pool(p, "left4"), pool(p, "right4")], 4)
    x5 = add([_separable(h, filters, 3, f"normal_left5_{block_id}"), h], 5)
    return layers.Concatenate(name=f"normal_concat_{block_id}")([p, x1, x2, x3, x4, x5])


@register_block("nasnet_reduction_cell", primary="filters", multi_input=True)
def nasnet_reduction_cell(x, *, filters: int, block_id: str | int | None = None, name: str):
    """NASNet-A's reduction cell (keras' `_reduction_a_cell`) on `from: [x, p]`: halves the
    size; separable convolutions (5x5, 7x7, 3x3) of stride 2 and 3x3 pools in four sums,
    concatenated (4 x `filters` channels). Layers as keras names them for its `block_id`
    (`reduction_conv_1_stem_1`, `separable_conv_1_reduction_left1_stem_1`, ...).
    """
    block_id = name if block_id is None else block_id
    h, p = _inputs(x, filters, "reduction", block_id)
    h3 = layers.ZeroPadding2D(_pad_for(h, 3), name=f"reduction_pad_1_{block_id}")(h)

    def sep(t, kernel, side, strides=2):
        return _separable(t, filters, kernel, f"reduction_{side}_{block_id}", strides)

    def pool(kind, t, side, strides=2, padding="valid"):
        return kind(3, strides=strides, padding=padding, name=f"reduction_{side}_{block_id}")(t)

    x1 = layers.Add(name=f"reduction_add_1_{block_id}")([sep(h, 5, "left1"), sep(p, 7, "right1")])
    x2 = layers.Add(name=f"reduction_add_2_{block_id}")(
        [pool(layers.MaxPooling2D, h3, "left2"), sep(p, 7, "right2")]
    )
    x3 = layers.Add(name=f"reduction_add3_{block_id}")(
        [pool(layers.AveragePooling2D, h3, "left3"), sep(p, 5, "right3")]
    )
    x4 = pool(layers.AveragePooling2D, x1, "left4", strides=1, padding="same")
    x4 = layers.Add(name=f"reduction_add_4b_{block_id}")([x2, x4])
    x5 = layers.Add(name=f"reduction_add4_{block_id}")(
        [sep(x1, 3, "left4", strides=1), pool(layers.MaxPooling2D, h3, "right5")]
    )
    return layers.Concatenate(name=f"reduction_concat_{block_id}")([x2, x3, x4, x5])
