"""Layer step types: short snake_case names for Keras layers, with Keras-style arguments.

Each entry declares its own arguments (typed, for validation) and accepts the rest of the Keras
class's constructor arguments under their Keras names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from blockspec.builder.lazy import layers
from blockspec.builder.registry import (
    REQUIRED,
    Alias,
    Kernel,
    Positive,
    Rate,
    Size,
    keras_layer_table,
    odd,
    param,
    positive,
    register,
    rule,
)

Padding = Literal["valid", "same"]
Factorize = Literal["none", "stack3", "asymmetric"]


def _stacks3(args: dict[str, Any]) -> bool:
    return args.get("factorize", args.get("mode")) == "stack3"


def _numbers(value: Any) -> list:
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int)]


def _square(kernel: Any) -> bool:
    return not isinstance(kernel, list) or len(set(kernel)) == 1


# A kxk kernel (k > 3) written as 3x3s (`factorize: stack3`) must be odd: (k-1)/2 3x3s cover it.
StackKernel = Annotated[
    Kernel,
    rule(
        lambda kernel: all(int(k) % 2 == 1 or k <= 3 for k in _numbers(kernel)),
        "must be odd when `factorize` is stack3 (a stack of 3x3s covers odd sizes only)",
        when=lambda args: _stacks3(args) and _square(args.get("kernel")),
    ),
]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def conv2d(
    x,
    *,
    filters: Positive,
    kernel: StackKernel,
    strides: Size = 1,
    padding: Padding = "valid",
    activation: str | None = None,
    use_bias: bool = True,
    groups: Positive = 1,
    dilation_rate: Size = 1,
    factorize: Factorize = "none",
    name: str,
    **kwargs: Any,
):
    """2D convolution (keras.layers.Conv2D), or its factorised replacement.

    `stack3` replaces a kxk kernel (k odd, > 3) by (k-1)/2 stacked 3x3 convolutions; `asymmetric`
    replaces kxk by 1xk then kx1. Every replacement conv has `filters` channels and the other
    arguments; the stride goes to the first. Kernels it does not apply to (1x1, 3x3 for `stack3`)
    stay as they are, so a whole network can be rewritten with one default.
    """
    kwargs.update(activation=activation, use_bias=use_bias)
    kwargs.update(groups=groups, dilation_rate=dilation_rate)
    kh, kw = _pair(kernel)
    if factorize == "stack3" and kh == kw and kh > 3:  # odd: a declared rule of `kernel`
        kernels = [3] * ((kh - 1) // 2)
    elif factorize == "asymmetric" and kh == kw and kh > 1:
        kernels = [(1, kh), (kh, 1)]
    else:
        return layers.Conv2D(
            filters, (kh, kw), strides=strides, padding=padding, name=name, **kwargs
        )(x)
    for index, k in enumerate(kernels):
        stride = strides if index == 0 else 1
        x = layers.Conv2D(
            filters, k, strides=stride, padding=padding, name=f"{name}_f{index + 1}", **kwargs
        )(x)
    return x


def _keras_builder(class_name: str, rename: dict[str, str], multi_input: bool):
    def build(x, *, name: str, **args: Any):
        kwargs = {rename.get(k, k): v for k, v in args.items()}
        layer = getattr(layers, class_name)(name=name, **kwargs)
        return layer(x)

    build.__name__ = f"build_{class_name}"
    return build


def layer(
    name: str,
    class_name: str,
    params: dict[str, tuple[Any, Any]] | None = None,
    *,
    primary: str | None = None,
    rename: dict[str, str] | None = None,
    multi_input: bool = False,
    doc: str = "",
) -> None:
    """Registers the step type `name` for `keras.layers.<class_name>`.

    `params` maps each declared argument to (type hint, default); a hint may carry rules
    (`Positive`, `Rate`). `rename` maps a declared name to the Keras one, which a spec may also
    write (an alias: `kernel_size` for `kernel`).
    """
    rename = rename or {}
    declared = []
    for key, (hint, default) in (params or {}).items():
        if key in rename:
            hint = Annotated[hint, Alias(rename[key])]
        declared.append(param(key, hint, default))
    keras_args = keras_layer_table().get(class_name, frozenset())
    register(
        name,
        kind="layer",
        build=_keras_builder(class_name, rename, multi_input),
        params=declared,
        primary=primary,
        passthrough=keras_args - set(rename.values()) - {"name"},
        multi_input=multi_input,
        doc=doc or f"keras.layers.{class_name}.",
        source=f"blockspec.blocks.layers ({class_name})",
        extra={"keras_class": class_name, "rename": rename},
    )


_CONV = {
    "filters": (Positive, REQUIRED),
    "kernel": (Size, REQUIRED),
    "strides": (Size, 1),
    "padding": (Padding, "valid"),
    "activation": (str | None, None),
    "use_bias": (bool, True),
}

register(
    "conv",
    kind="layer",
    build=conv2d,
    passthrough=keras_layer_table()["Conv2D"] - {"kernel_size", "name"},
    doc="2D convolution (keras.layers.Conv2D); `kernel` is kernel_size; `factorize: stack3|asymmetric`.",
    source="blockspec.blocks.layers (Conv2D)",
    extra={"keras_class": "Conv2D", "rename": {"kernel": "kernel_size"}},
)
layer(
    "conv1d",
    "Conv1D",
    _CONV,
    rename={"kernel": "kernel_size"},
    doc="1D convolution (keras.layers.Conv1D).",
)
layer(
    "conv3d",
    "Conv3D",
    _CONV,
    rename={"kernel": "kernel_size"},
    doc="3D convolution (keras.layers.Conv3D).",
)
layer(
    "depthwise_conv",
    "DepthwiseConv2D",
    {k: v for k, v in _CONV.items() if k != "filters"} | {"depth_multiplier": (Positive, 1)},
    rename={"kernel": "kernel_size"},
    doc="Depthwise 2D convolution (keras.layers.DepthwiseConv2D).",
)
layer(
    "separable_conv",
    "SeparableConv2D",
    _CONV,
    rename={"kernel": "kernel_size"},
    doc="Depthwise-separable 2D convolution (keras.layers.SeparableConv2D).",
)
layer(
    "dense",
    "Dense",
    {"units": (Positive, REQUIRED), "activation": (str | None, None), "use_bias": (bool, True)},
    primary="units",
    doc="Fully connected layer (keras.layers.Dense).",
)
_POOL = {"size": (Size, 2), "strides": (Size | None, None), "padding": (Padding, "valid")}
layer(
    "max_pool",
    "MaxPooling2D",
    _POOL,
    primary="size",
    rename={"size": "pool_size"},
    doc="2D max pooling.",
)
layer(
    "avg_pool",
    "AveragePooling2D",
    _POOL,
    primary="size",
    rename={"size": "pool_size"},
    doc="2D average pooling.",
)
layer(
    "global_avg_pool",
    "GlobalAveragePooling2D",
    {"keepdims": (bool, False)},
    doc="Global average pooling.",
)
layer(
    "global_max_pool", "GlobalMaxPooling2D", {"keepdims": (bool, False)}, doc="Global max pooling."
)
layer(
    "batch_norm",
    "BatchNormalization",
    {},
    doc="Batch normalisation (keras.layers.BatchNormalization).",
)
layer(
    "layer_norm",
    "LayerNormalization",
    {},
    doc="Layer normalisation (keras.layers.LayerNormalization).",
)
layer(
    "dropout",
    "Dropout",
    {"rate": (Rate, REQUIRED)},
    primary="rate",
    doc="Dropout (`dropout: 0.5`).",
)
layer("flatten", "Flatten", {}, doc="Flatten all but the batch axis.")
layer(
    "reshape",
    "Reshape",
    {"target_shape": (list[int], REQUIRED)},
    primary="target_shape",
    doc="Reshape.",
)
layer(
    "zero_pad",
    "ZeroPadding2D",
    {"padding": (Any, 1)},
    primary="padding",
    doc="Zero padding (`zero_pad: 3`).",
)
layer(
    "upsample",
    "UpSampling2D",
    {"size": (Size, 2)},
    primary="size",
    doc="Nearest/bilinear upsampling.",
)
layer(
    "activation",
    "Activation",
    {"activation": (str, REQUIRED)},
    primary="activation",
    doc="An activation by name.",
)
layer("relu", "ReLU", {}, doc="ReLU (keras.layers.ReLU: max_value, negative_slope, threshold).")
layer("softmax", "Softmax", {"axis": (int, -1)}, primary="axis", doc="Softmax over an axis.")
layer(
    "rescaling",
    "Rescaling",
    {"scale": (float, REQUIRED), "offset": (float, 0.0)},
    primary="scale",
    doc="x * scale + offset.",
)
layer(
    "embedding",
    "Embedding",
    {"input_dim": (Positive, REQUIRED), "output_dim": (Positive, REQUIRED)},
    doc="Token embedding.",
)
_RNN = {"units": (Positive, REQUIRED), "return_sequences": (bool, False)}
layer("lstm", "LSTM", _RNN, primary="units", doc="LSTM recurrent layer.")
layer("gru", "GRU", _RNN, primary="units", doc="GRU recurrent layer.")
layer("simple_rnn", "SimpleRNN", _RNN, primary="units", doc="Fully connected recurrent layer.")
layer("add", "Add", {}, multi_input=True, doc="Element-wise sum of the tensors in `from`.")
layer(
    "concat",
    "Concatenate",
    {"axis": (int, -1)},
    primary="axis",
    multi_input=True,
    doc="Concatenate along `axis`.",
)
layer("multiply", "Multiply", {}, multi_input=True, doc="Element-wise product.")
layer("average", "Average", {}, multi_input=True, doc="Element-wise mean.")
layer("maximum", "Maximum", {}, multi_input=True, doc="Element-wise maximum.")


@register("lrn", kind="layer", primary="size", source="blockspec.blocks.layers")
def lrn(
    x,
    *,
    size: Annotated[int, positive(), odd()] = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    name: str,
):
    """Local response normalisation, Caffe/AlexNet semantics (alpha divided by size)."""
    from blockspec.blocks.lrn import LocalResponseNormalization

    return LocalResponseNormalization(size=size, alpha=alpha, beta=beta, k=k, name=name)(x)
