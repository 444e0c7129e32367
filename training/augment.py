"""`train.augment` steps -> Keras preprocessing layers (applied on the input pipeline only)."""

from __future__ import annotations

from typing import Any

import keras

from blockspec.training.config import AUGMENT_LAYERS, FACTOR_LAYERS


class AugmentError(ValueError):
    """An augment step Keras refused; `path` is relative to `train`."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


# Layers whose one factor has other Keras names (`random_zoom: 0.2` zooms both sides alike).
SCALAR_ARGUMENTS = {"random_zoom": ("height_factor",), "random_shear": ("x_factor", "y_factor")}


def augment_layers(
    steps: list[Any], *, seed: int, value_range=(0.0, 1.0)
) -> list[keras.layers.Layer]:
    """One Keras layer per `augment` step, in order.

    Args:
        steps: the `train.augment` list (checked by `check_train`).
        seed: base seed; step `i` gets `seed + i`.
        value_range: the range of the preprocessed images (brightness and contrast need it).

    Returns:
        The layers; the pipeline calls each with `training=True`.

    Example:
        >>> [type(l).__name__ for l in augment_layers(["random_flip"], seed=0)]
        ['RandomFlip']
    """
    layers = []
    for i, step in enumerate(steps):
        if isinstance(step, str):
            step = {step: None}
        name, args = next(iter(step.items()))
        path = f"augment.{i}.{name}"
        try:
            layers.append(_layer(name, args, seed + i, value_range, i))
        except (TypeError, ValueError) as e:
            raise AugmentError(path, f"Keras refused `{name}`: {e} Received: {args!r}") from e
    return layers


def _layer(name: str, args: Any, seed: int, value_range, index: int) -> keras.layers.Layer:
    layer_name = f"augment_{index}_{name.lower()}"
    cls = getattr(keras.layers, AUGMENT_LAYERS.get(name, name))
    if name == "random_crop":
        size = args.get("size") if isinstance(args, dict) else args
        height, width = (size, size) if isinstance(size, int) else size
        return cls(height, width, seed=seed, name=layer_name)
    if name == "random_flip":
        mode = (args.get("mode") if isinstance(args, dict) else args) or "horizontal"
        return cls(mode, seed=seed, name=layer_name)
    if name == "random_translation":
        if isinstance(args, dict):
            kwargs = {k: v for k, v in args.items() if k not in ("height", "width")}
            height, width = args.get("height", 0.0), args.get("width", 0.0)
        else:
            kwargs = {}
            height, width = (args, args) if not isinstance(args, list) else (args * 2)[:2]
        kwargs.setdefault("fill_mode", "constant")
        kwargs.setdefault("seed", seed)
        return cls(height, width, name=layer_name, **kwargs)
    kwargs = dict(args) if isinstance(args, dict) else {}
    if args is not None and not isinstance(args, dict):  # the scalar form: the one factor
        factor = tuple(args) if isinstance(args, list) else args
        kwargs.update({key: factor for key in SCALAR_ARGUMENTS.get(name, ("factor",))})
    if name in FACTOR_LAYERS and name in ("random_brightness", "random_contrast"):
        kwargs.setdefault("value_range", value_range)
    if "seed" in _init_args(cls):
        kwargs.setdefault("seed", seed)
    return cls(name=layer_name, **kwargs)


def _init_args(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)
