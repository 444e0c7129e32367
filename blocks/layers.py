"""Layer step types: short snake_case names for Keras layers, with Keras-style arguments.

Each entry declares its own arguments (typed, for validation) and accepts the rest of the Keras
class's constructor arguments under their Keras names.
"""

from __future__ import annotations

from typing import Any, Literal

from blockspec.builder.lazy import layers
from blockspec.builder.registry import REQUIRED, Param, Size, StepType, keras_layer_table, register

Padding = Literal["valid", "same"]
Factorize = Literal["none", "stack3", "asymmetric"]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def conv2d(
    x,
    *,
    filters: int,
    kernel: Size,
    strides: Size = 1,
    padding: str = "valid",
    factorize: str = "none",
    name: str,
    **kwargs: Any,
):
    """A Conv2D, or its factorised replacement.

    `stack3` replaces a kxk kernel (k odd, > 3) by (k-1)/2 stacked 3x3 convolutions; `asymmetric`
    replaces kxk by 1xk then kx1. Every replacement conv has `filters` channels and the other
    arguments; the stride goes to the first. Kernels it does not apply to (1x1, 3x3 for `stack3`)
    stay as they are, so a whole network can be rewritten with one default.
    """
    kh, kw = _pair(kernel)
    if factorize == "stack3" and kh == kw and kh > 3:
        if kh % 2 == 0:
            raise ValueError(f"factorize=stack3 needs an odd kernel. Received: kernel={kernel}")
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
    build=None,
    doc: str = "",
) -> None:
    """Registers the step type `name` for `keras.layers.<class_name>`."""
    rename = rename or {}
    declared = {k: Param(k, t, d) for k, (t, d) in (params or {}).items()}
    keras_args = keras_layer_table().get(class_name, frozenset())
    passthrough = frozenset(keras_args - set(rename.values()) - set(declared) - {"name"})
    register(
        StepType(
            name=name,
            kind="layer",
            params=declared,
            build=build or _keras_builder(class_name, rename, multi_input),
            primary=primary,
            passthrough=passthrough,
            multi_input=multi_input,
            doc=doc or f"keras.layers.{class_name}.",
            source=f"blockspec.blocks.layers ({class_name})",
            extra={"keras_class": class_name, "rename": rename},
        )
    )


_CONV = {
    "filters": (int, REQUIRED),
    "kernel": (Size, REQUIRED),
    "strides": (Size, 1),
    "padding": (Padding, "valid"),
    "activation": (str | None, None),
    "use_bias": (bool, True),
}

layer(
    "conv",
    "Conv2D",
    {**_CONV, "groups": (int, 1), "dilation_rate": (Size, 1), "factorize": (Factorize, "none")},
    build=conv2d,
    rename={"kernel": "kernel_size"},
    doc="2D convolution (keras.layers.Conv2D); `kernel` is kernel_size; `factorize: stack3|asymmetric`.",
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
    {k: v for k, v in _CONV.items() if k != "filters"} | {"depth_multiplier": (int, 1)},
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
    {"units": (int, REQUIRED), "activation": (str | None, None), "use_bias": (bool, True)},
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
    {"rate": (float, REQUIRED)},
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
    {"input_dim": (int, REQUIRED), "output_dim": (int, REQUIRED)},
    doc="Token embedding.",
)
_RNN = {"units": (int, REQUIRED), "return_sequences": (bool, False)}
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


def _lrn(x, *, name: str, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
    from blockspec.blocks.lrn import LocalResponseNormalization

    return LocalResponseNormalization(size=size, alpha=alpha, beta=beta, k=k, name=name)(x)


register(
    StepType(
        name="lrn",
        kind="layer",
        params={
            "size": Param("size", int, 5),
            "alpha": Param("alpha", float, 1e-4),
            "beta": Param("beta", float, 0.75),
            "k": Param("k", float, 2.0),
        },
        build=_lrn,
        primary="size",
        doc="Local response normalisation, Caffe/AlexNet semantics (alpha divided by size).",
        source="blockspec.blocks.layers",
    )
)
