"""GoogLeNet's inception module (v1)."""

from __future__ import annotations

from blockspec.builder.lazy import layers
from blockspec.builder.registry import Positive, register_block


@register_block("inception")
def inception(
    x,
    *,
    c1: Positive,
    c3r: Positive,
    c3: Positive,
    c5r: Positive,
    c5: Positive,
    pool_proj: Positive,
    activation: str = "relu",
    name: str,
):
    """Four parallel paths, concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1.

    The 1x1 convolutions before the 3x3 and 5x5 reduce the channels (`c3r`, `c5r`). Arguments in
    the order of the paper's Table 1 (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
    Layers use bvlc_googlenet's names: `{name}_1x1`, `{name}_3x3_reduce`, `{name}_3x3`, ...
    """

    def conv(t, filters, kernel, suffix):
        return layers.Conv2D(
            filters, kernel, padding="same", activation=activation, name=f"{name}_{suffix}"
        )(t)

    b1 = conv(x, c1, 1, "1x1")
    b2 = conv(conv(x, c3r, 1, "3x3_reduce"), c3, 3, "3x3")
    b3 = conv(conv(x, c5r, 1, "5x5_reduce"), c5, 5, "5x5")
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv(b4, pool_proj, 1, "pool_proj")
    return layers.Concatenate(name=f"{name}_output")([b1, b2, b3, b4])
