"""Output shapes in pure Python, so that `validate` can give expressions `in_channels` & co.

A shape here is a tuple without the batch axis (`(32, 32, 3)`), an axis that cannot be known
is `None`, and a shape of unknown rank is `None` as a whole. Each step type's rule maps its
input shapes and its arguments to its output shape; a type without a rule gives `None`, and
the expressions after it that read `in_*` are evaluated when the model is built (`lazy.Deferred`).

A step type declares its rule beside its parameters: `register(..., extra={"shape": rule})`,
`rule(shapes, args) -> shape`, `shapes` the input shapes (one per tensor read). The built-in
layers' rules are in `RULES` below (they are registered in `blocks/`, which imports Keras lazily).

Example:
    >>> output_shape("conv", {"filters": 8, "kernel": 3, "strides": 2, "padding": "same"},
    ...              [(32, 32, 3)])
    (16, 16, 8)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from blockspec.builder.expr import (  # the names for the input of a step (1.1)
    SHAPE_NAMES,
    make_divisible,
)

Shape = tuple  # of int | None, batch axis left out


def _known(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(value: Any, rank: int) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value) if len(value) == rank else [None] * rank
    return [value] * rank


def _window(length, kernel, stride, padding, dilation=1):
    """The length after a convolution or pooling window (Keras' rule); None when unknown."""
    if not all(_known(v) for v in (length, kernel, stride, dilation)) or stride <= 0:
        return None
    if padding == "same":
        return -(-length // stride)
    if padding != "valid":
        return None
    span = (kernel - 1) * dilation + 1
    return max(0, (length - span) // stride + 1)


def _conv_rule(rank: int, channels: Callable[[Shape, dict], Any]):
    def rule(shapes: list, args: dict) -> Shape | None:
        shape = shapes[0]
        if shape is None or len(shape) != rank + 1:
            return None
        kernels = _pair(args.get("kernel"), rank)
        strides = _pair(args.get("strides", 1), rank)
        dilation = _pair(args.get("dilation_rate", 1), rank)
        plan = _factorized(args.get("factorize", "none"), kernels, rank)
        spatial = list(shape[:-1])
        for step, step_kernels in enumerate(plan):
            spatial = [
                _window(n, k, s if step == 0 else 1, args.get("padding", "valid"), d)
                for n, k, s, d in zip(spatial, step_kernels, strides, dilation, strict=True)
            ]
        return (*spatial, channels(shape, args))

    return rule


def _factorized(factorize: str, kernels: list, rank: int) -> list[list]:
    """The kernels of each convolution a (possibly factorised) conv is built as."""
    if rank != 2 or len(set(kernels)) != 1 or not _known(kernels[0]):
        return [kernels]
    k = kernels[0]
    if factorize == "stack3" and k > 3:
        return [[3, 3]] * ((k - 1) // 2)
    if factorize == "asymmetric" and k > 1:
        return [[1, k], [k, 1]]
    return [kernels]


def _filters(_shape: Shape, args: dict) -> Any:
    return args.get("filters")


def _depthwise(shape: Shape, args: dict) -> Any:
    channels, multiplier = shape[-1], args.get("depth_multiplier", 1)
    return channels * multiplier if _known(channels) and _known(multiplier) else None


def _pool(shapes: list, args: dict) -> Shape | None:
    shape = shapes[0]
    if shape is None or len(shape) != 3:
        return None
    sizes = _pair(args.get("size", 2), 2)
    strides = _pair(args.get("strides") or args.get("size", 2), 2)
    padding = args.get("padding", "valid")
    spatial = [_window(n, k, s, padding) for n, k, s in zip(shape[:2], sizes, strides, strict=True)]
    return (*spatial, shape[2])


def _global_pool(shapes: list, args: dict) -> Shape | None:
    shape = shapes[0]
    if shape is None or len(shape) < 2:
        return None
    return (1,) * (len(shape) - 1) + (shape[-1],) if args.get("keepdims") else (shape[-1],)


def _same(shapes: list, _args: dict) -> Shape | None:
    return shapes[0]


def _last(units_key: str):
    def rule(shapes: list, args: dict) -> Shape | None:
        shape = shapes[0]
        return None if shape is None or not shape else (*shape[:-1], args.get(units_key))

    return rule


def _flatten(shapes: list, _args: dict) -> Shape | None:
    shape = shapes[0]
    if shape is None:
        return None
    return (math.prod(shape),) if all(_known(n) for n in shape) else (None,)


def _reshape(shapes: list, args: dict) -> Shape | None:
    target, shape = args.get("target_shape"), shapes[0]
    if not isinstance(target, list) or not all(_known(n) for n in target):
        return None
    if -1 in target:
        if shape is None or not all(_known(n) for n in shape):
            return tuple(None if n == -1 else n for n in target)
        rest = math.prod(n for n in target if n != -1) or 1
        return tuple(math.prod(shape) // rest if n == -1 else n for n in target)
    return tuple(target)


def _zero_pad(shapes: list, args: dict) -> Shape | None:
    shape, padding = shapes[0], args.get("padding", 1)
    if shape is None or len(shape) != 3:
        return None
    if _known(padding):
        pads = [(padding, padding)] * 2
    elif isinstance(padding, list) and len(padding) == 2 and all(_known(p) for p in padding):
        pads = [(p, p) for p in padding]
    elif (
        isinstance(padding, list)
        and len(padding) == 2
        and all(isinstance(p, list) and len(p) == 2 and all(_known(n) for n in p) for p in padding)
    ):
        pads = [tuple(p) for p in padding]
    else:
        return None
    spatial = [n + a + b if _known(n) else None for n, (a, b) in zip(shape[:2], pads, strict=True)]
    return (*spatial, shape[2])


def _upsample(shapes: list, args: dict) -> Shape | None:
    shape = shapes[0]
    if shape is None or len(shape) != 3:
        return None
    sizes = _pair(args.get("size", 2), 2)
    spatial = [
        n * s if _known(n) and _known(s) else None for n, s in zip(shape[:2], sizes, strict=True)
    ]
    return (*spatial, shape[2])


def _embedding(shapes: list, args: dict) -> Shape | None:
    return None if shapes[0] is None else (*shapes[0], args.get("output_dim"))


def _recurrent(shapes: list, args: dict) -> Shape | None:
    shape = shapes[0]
    if shape is None or len(shape) != 2:
        return None
    units = args.get("units")
    return (shape[0], units) if args.get("return_sequences") else (units,)


def _concat(shapes: list, args: dict) -> Shape | None:
    if any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        return None
    axis = args.get("axis", -1)
    rank = len(shapes[0])
    if not _known(axis) or axis == 0 or not -rank - 1 <= axis <= rank:
        return None
    index = axis - 1 if axis > 0 else rank + axis
    out = list(shapes[0])
    parts = [s[index] for s in shapes]
    out[index] = sum(parts) if all(_known(n) for n in parts) else None
    return tuple(out)


def _dense_block(shapes: list, args: dict) -> Shape | None:
    shape = shapes[0]
    if shape is None or not shape or not _known(shape[-1]):
        return None
    return (*shape[:-1], shape[-1] + args.get("blocks") * args.get("growth_rate", 32))


def _dense_transition(shapes: list, args: dict) -> Shape | None:
    shape = shapes[0]
    if shape is None or len(shape) != 3:
        return None
    channels = int(shape[2] * args.get("reduction", 0.5)) if _known(shape[2]) else None
    return (_window(shape[0], 2, 2, "valid"), _window(shape[1], 2, 2, "valid"), channels)


def _strided(channels: Callable[[dict], Any], strides: int | None = None):
    """A residual unit: each side divided by `strides` (rounded up), `channels(args)` out.
    `strides`: a block's fixed stride (NASNet's reduction cell), else its argument's."""

    def rule(shapes: list, args: dict) -> Shape | None:
        shape, stride = shapes[0], strides or args.get("strides", 1)
        if shape is None or len(shape) != 3 or not _known(stride):
            return None
        spatial = [-(-n // stride) if _known(n) else None for n in shape[:2]]
        return (*spatial, channels(args))

    return rule


def _vgg_stage(shapes: list, args: dict) -> Shape | None:
    shape = shapes[0]
    if shape is None or len(shape) != 3:
        return None
    if not args.get("pool", True):
        return (*shape[:2], args.get("filters"))
    return (*(_window(n, 2, 2, "valid") for n in shape[:2]), args.get("filters"))


def _classes(_shapes: list, args: dict) -> Shape | None:
    return (args.get("classes"),)


def _same_size(channels: Callable[[dict], Any]):
    """A block that keeps the height and width: `channels(args)` out."""

    def rule(shapes: list, args: dict) -> Shape | None:
        shape = shapes[0]
        return None if shape is None or len(shape) != 3 else (*shape[:2], channels(args))

    return rule


def _depthwise_separable(shapes: list, args: dict) -> Shape | None:
    # MobileNet pads the bottom and right by one before a strided, `valid` 3x3
    shape, stride = shapes[0], args.get("strides", 1)
    if shape is None or len(shape) != 3 or not _known(stride):
        return None
    if stride != 1:
        spatial = [_window(n + 1, 3, stride, "valid") if _known(n) else None for n in shape[:2]]
    else:
        spatial = list(shape[:2])
    return (*spatial, int(args.get("filters") * args.get("alpha", 1.0)))


def _factorized_conv(shapes: list, args: dict) -> Shape | None:
    return _conv_rule(2, _filters)(shapes, {**args, "factorize": args.get("mode", "asymmetric")})


RULES: dict[str, Callable[[list, dict], Shape | None]] = {
    # Python blocks (`blocks/`): a stride divides each side, rounded up (keras' `correct_pad`
    # before a `valid` convolution, or `same` padding)
    "resnet_v2_stack": _strided(lambda a: 4 * a.get("filters")),
    "mbconv_stage": _strided(lambda a: a.get("filters")),
    "efficientnetv2_stage": _strided(lambda a: a.get("filters")),
    "inverted_residual": _strided(
        lambda a: make_divisible(int(a.get("filters") * a.get("alpha", 1.0)), 8)
    ),
    "mobilenet_v3_unit": _strided(lambda a: make_divisible(a.get("filters") * a.get("alpha", 1.0), 8)),
    "nasnet_reduction_cell": _strided(lambda a: 4 * a.get("filters"), strides=2),
    "nasnet_normal_cell": _same_size(lambda a: 6 * a.get("filters")),
    "convnext_stage": _same_size(lambda a: a.get("filters")),
    "inception": _same_size(lambda a: a["c1"] + a["c3"] + a["c5"] + a["pool_proj"]),
    "depthwise_separable": _depthwise_separable,
    "factorized_conv": _factorized_conv,
    "mlpconv": _conv_rule(2, lambda _shape, a: a.get("filters")[-1]),
    "basic_residual": _strided(lambda a: a.get("filters")),
    "bottleneck_residual": _strided(lambda a: a.get("filters") * a.get("expansion", 4)),
    "vgg_stage": _vgg_stage,
    "classifier": _classes,
    "aux_classifier": _classes,
    "dense_block": _dense_block,
    "dense_transition": _dense_transition,
    "conv": _conv_rule(2, _filters),
    "conv_bn": _conv_rule(2, _filters),
    "conv1d": _conv_rule(1, _filters),
    "conv3d": _conv_rule(3, _filters),
    "separable_conv": _conv_rule(2, _filters),
    "depthwise_conv": _conv_rule(2, _depthwise),
    "dense": _last("units"),
    "max_pool": _pool,
    "avg_pool": _pool,
    "global_avg_pool": _global_pool,
    "global_max_pool": _global_pool,
    "flatten": _flatten,
    "reshape": _reshape,
    "zero_pad": _zero_pad,
    "upsample": _upsample,
    "embedding": _embedding,
    "lstm": _recurrent,
    "gru": _recurrent,
    "simple_rnn": _recurrent,
    "concat": _concat,
    **dict.fromkeys(
        ("batch_norm", "layer_norm", "dropout", "activation", "relu", "softmax", "rescaling",
         "lrn", "add", "multiply", "average", "maximum"),
        _same,
    ),
}  # fmt: skip


def _transposed(rank: int):
    """Keras' `ConvNDTranspose` (its `compute_conv_transpose_output_shape`)."""

    def length(n, kernel, stride, padding, output_padding, dilation):
        if not all(_known(v) for v in (n, kernel, stride, dilation)) or padding not in (
            "valid",
            "same",
        ):
            return None
        kernel = (kernel - 1) * dilation + 1
        if padding == "valid":
            extra = max(kernel, stride) - kernel if output_padding is None else output_padding
            return (n - 1) * stride + kernel + extra
        return (
            n * stride if output_padding is None else (n - 1) * stride + kernel % 2 + output_padding
        )

    def rule(shapes: list, args: dict) -> Shape | None:
        shape = shapes[0]
        if shape is None or len(shape) != rank + 1 or _channels_first(args):
            return None
        padding = args.get("output_padding")
        spatial = [
            length(n, k, s, args.get("padding", "valid"), p, d)
            for n, k, s, p, d in zip(
                shape[:-1],
                _pair(args.get("kernel_size"), rank),
                _pair(args.get("strides", 1), rank),
                [None] * rank if padding is None else _pair(padding, rank),
                _pair(args.get("dilation_rate", 1), rank),
                strict=True,
            )
        ]
        return (*spatial, args.get("filters"))

    return rule


def _upsampling(rank: int):
    """Keras' `UpSamplingND` (1D: `size` on the length)."""

    def rule(shapes: list, args: dict) -> Shape | None:
        shape = shapes[0]
        if shape is None or len(shape) != rank + 1 or _channels_first(args):
            return None
        sizes = _pair(args.get("size", 2), rank)
        spatial = [
            n * f if _known(n) and _known(f) else None
            for n, f in zip(shape[:-1], sizes, strict=True)
        ]
        return (*spatial, shape[-1])

    return rule


def _channels_first(args: dict) -> bool:
    return args.get("data_format") not in (None, "channels_last")


def _keras_names(rule: Callable, renamed: dict[str, str], defaults: dict | None = None):
    """A short type's rule for the Keras class of that layer, written with Keras' names."""

    def keras_rule(shapes: list, args: dict) -> Shape | None:
        if _channels_first(args):
            return None
        given = {renamed.get(k, k): v for k, v in args.items()}
        return rule(shapes, {**(defaults or {}), **given})

    return keras_rule


# Any `keras.layers` class written by its name (`Conv2DTranspose: {...}`): the common ones.
KERAS_RULES: dict[str, Callable] = {
    "Conv1DTranspose": _transposed(1),
    "Conv2DTranspose": _transposed(2),
    "Conv3DTranspose": _transposed(3),
    "UpSampling1D": _upsampling(1),
    "UpSampling2D": _upsampling(2),
    "UpSampling3D": _upsampling(3),
    "Conv1D": _keras_names(_conv_rule(1, _filters), {"kernel_size": "kernel"}),
    "Conv2D": _keras_names(_conv_rule(2, _filters), {"kernel_size": "kernel"}),
    "Conv3D": _keras_names(_conv_rule(3, _filters), {"kernel_size": "kernel"}),
    "Dense": _last("units"),
    "MaxPooling2D": _keras_names(_pool, {"pool_size": "size"}, {"size": 2}),
    "AveragePooling2D": _keras_names(_pool, {"pool_size": "size"}, {"size": 2}),
    "GlobalAveragePooling2D": _keras_names(_global_pool, {}),
    "GlobalMaxPooling2D": _keras_names(_global_pool, {}),
    **dict.fromkeys(
        ("BatchNormalization", "LayerNormalization", "Dropout", "SpatialDropout2D",
         "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"),
        _same,
    ),
}  # fmt: skip
RULES.update(KERAS_RULES)


def output_shape(type_name: str, args: dict, shapes: list, rule: Callable | None = None) -> Any:
    """The output shape of a step of `type_name` reading `shapes`; None when it cannot be known.

    `rule` is the step type's own declared rule (`extra["shape"]`), which wins over `RULES`.
    A rule that fails on arguments it did not expect gives None: the shape is then learnt when
    the model is built, and the arguments' own checks say what is wrong.
    """
    rule = rule or RULES.get(type_name)
    if rule is None or not shapes:
        return None
    try:
        out = rule(shapes, args)
    except (TypeError, ValueError, ArithmeticError, IndexError, KeyError):
        return None
    if out is None:
        return None
    return tuple(n if _known(n) and n >= 0 else None for n in out)


def merged_shape(how: str, shapes: list) -> Shape | None:
    """The shape of branch outputs merged by a `parallel` or `residual` (`concat`, `add`, ...)."""
    if len(shapes) == 1:
        return shapes[0]
    if how == "concat":
        return _concat(shapes, {"axis": -1})
    if any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        return None
    return tuple(_broadcast(axis) for axis in zip(*shapes, strict=True))  # add, multiply, ...


def _broadcast(sizes: tuple) -> Any:
    """One axis of tensors merged element-wise: a size of 1 stretches to the others'."""
    rest = {n for n in sizes if n != 1}
    if not rest:
        return 1
    return rest.pop() if len(rest) == 1 and None not in rest else None


class ShapeSlot:
    """An `in_*` name whose value `validate` could not infer: the expression reading it waits."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}: known when built>"


def describe(shape: Shape | None) -> str:
    return "unknown" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def shape_env(shape: Shape | None, unavailable: Callable[[str], Any]) -> dict[str, Any]:
    """The `in_*` names for a step whose input has `shape` (None: not known until built).

    An axis the input has but whose size is not known yet is a `ShapeSlot`; an axis the input
    does not have (`in_length` of an image) is `unavailable(reason)`.
    """
    if shape is None:
        return {name: ShapeSlot(name) for name in SHAPE_NAMES}
    axes = {"in_channels": -1} if shape else {}
    if len(shape) == 3:
        axes.update(in_height=0, in_width=1)
    elif len(shape) == 2:
        axes["in_length"] = 0
    env: dict[str, Any] = {}
    for name in SHAPE_NAMES[:4]:
        if name not in axes:
            what = (
                "a sequence (length, channels)"
                if name == "in_length"
                else "an image (height, width, channels)"
            )
            env[name] = unavailable(
                f"`{name}` is for {what}; the input of this step has shape {describe(shape)}"
            )
            continue
        size = shape[axes[name]]
        env[name] = size if _known(size) else ShapeSlot(name)
    env["in_shape"] = list(shape) if all(_known(n) for n in shape) else ShapeSlot("in_shape")
    return env


def axis_problem(axis: Any, shape: Shape | None) -> str | None:
    """Why `axis` (an int or a list of ints, batch axis 0) does not fit an input of `shape`."""
    if shape is None:
        return None
    rank = len(shape) + 1
    axes = axis if isinstance(axis, list) else [axis]
    if not all(_known(a) for a in axes) or all(-rank <= a < rank for a in axes):
        return None
    return (
        f"`axis` is out of range: the input of this step has shape {describe(shape)} after the "
        f"batch axis, so its axes are {-rank} to {rank - 1}. Received: axis={axis}"
    )
