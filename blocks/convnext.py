"""ConvNeXt's stage (Liu et al. 2022) as keras.applications.ConvNeXt* builds it."""

from __future__ import annotations

from blockspec.builder.lazy import layers
from blockspec.builder.registry import register_block


@register_block("convnext_stage", primary="filters")
def convnext_stage(x, *, filters: int, blocks: int, layer_scale: float | None = 1e-6, name: str):
    """`blocks` ConvNeXt units on `filters` channels, each: 7x7 depthwise conv, layer norm,
    pointwise 4x expansion (a Dense on the channels), GELU, pointwise projection, LayerScale
    (`layer_scale`: its initial value; `null`: none), and a residual sum.

    Stochastic depth is the identity at inference (keras.applications' default rate is 0, a
    linear `{unit}_identity`). Units are `{name}_block_0` ... with keras' layer names
    (`stage_0_block_0_depthwise_conv`, `..._layernorm`, `..._pointwise_conv_1`, ...).
    """
    from blockspec.blocks.layer_scale import LayerScale

    for index in range(blocks):
        unit = f"{name}_block_{index}"
        h = layers.Conv2D(
            filters, 7, padding="same", groups=filters, name=f"{unit}_depthwise_conv"
        )(x)
        h = layers.LayerNormalization(epsilon=1e-6, name=f"{unit}_layernorm")(h)
        h = layers.Dense(4 * filters, name=f"{unit}_pointwise_conv_1")(h)
        h = layers.Activation("gelu", name=f"{unit}_gelu")(h)
        h = layers.Dense(filters, name=f"{unit}_pointwise_conv_2")(h)
        if layer_scale is not None:
            h = LayerScale(layer_scale, filters, name=f"{unit}_layer_scale")(h)
        h = layers.Activation("linear", name=f"{unit}_identity")(h)
        x = layers.Add(name=f"{unit}_add")([x, h])
    return x
