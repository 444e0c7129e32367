"""What a spec's `train` section asks of its model, checked before anything trains: the section
itself (`check_train`), the input's geometry against the data, and the outputs' layer names.
"""

from __future__ import annotations

from typing import Any

import keras

from blockspec.builder.errors import Problem, SpecError
from blockspec.builder.spec import ResolvedSpec
from blockspec.training.config import check_train, with_defaults
from blockspec.training.errors import TrainingError


def checked_train(resolved: ResolvedSpec) -> dict[str, Any]:
    """`resolved.train` with defaults, or `SpecError` listing every problem (paths from `train`)."""
    problems = check_train(resolved.train)
    if problems:
        raise SpecError([Problem(msg, path=train_path(path)) for path, msg in problems])
    return with_defaults(resolved.train)


def train_path(path: str) -> str:
    """`augment.1.random_flip` (check_train's form) -> `train.augment[1].random_flip`."""
    from blockspec.builder.load import format_path

    parts = tuple(int(p) if p.isdigit() else p for p in path.split(".")) if path else ()
    return format_path(("train", *parts))


def image_geometry(resolved: ResolvedSpec, cfg: dict) -> dict[str, Any]:
    """Input shape, `image_size` and channels; `SpecError` when the data cannot feed the input."""
    if len(resolved.inputs) != 1:
        names = ", ".join(i.name for i in resolved.inputs)
        raise SpecError(
            Problem(
                f"`train` fits models with one input; this spec has {len(resolved.inputs)}. "
                f"Received: inputs=[{names}]",
                path="inputs",
            )
        )
    shape = tuple(resolved.inputs[0].shape)
    data = cfg["data"]
    if len(shape) != 3:
        if data.get("image_size") or cfg["augment"]:
            raise SpecError(
                Problem(
                    "`image_size` and `augment` need an image input [H, W, C]. "
                    f"Received: input={list(shape)}",
                    path="train.data" if data.get("image_size") else "train.augment",
                )
            )
        if data["source"] in ("digits", "folder", "synthetic", "tfds"):
            raise SpecError(
                Problem(
                    f"data source `{data['source']}` gives images; the model input is not an "
                    f"image [H, W, C]. Received: input={list(shape)}",
                    path="train.data.source",
                )
            )
        return {
            "input_shape": shape,
            "image_size": None,
            "channels": None,
            "input_hw": None,
            "crop_hw": None,
        }
    if shape[0] is None or shape[1] is None:
        if not data.get("image_size"):
            raise SpecError(
                Problem(
                    "the model input has no fixed height and width; set `train.data.image_size`. "
                    f"Received: input={list(shape)}",
                    path="train.data.image_size",
                )
            )
    image_size = tuple(data.get("image_size") or shape[:2])
    input_hw = tuple(d if d is not None else s for d, s in zip(shape[:2], image_size, strict=True))
    crop_hw = None
    for i, step in enumerate(cfg["augment"]):
        if isinstance(step, dict) and "random_crop" in step:
            args = step["random_crop"]
            size = args.get("size") if isinstance(args, dict) else args
            crop_hw = (size, size) if isinstance(size, int) else tuple(size)
            if crop_hw[0] > image_size[0] or crop_hw[1] > image_size[1]:
                raise SpecError(
                    Problem(
                        f"`random_crop` size {list(crop_hw)} is larger than the images "
                        f"(image_size {list(image_size)}). Received: size={list(crop_hw)}",
                        path=f"train.augment[{i}].random_crop",
                    )
                )
    return {
        "input_shape": shape,
        "image_size": image_size,
        "channels": shape[2],
        "input_hw": input_hw,
        "crop_hw": crop_hw,
    }


def check_contract(model: keras.Model, resolved: ResolvedSpec) -> list[str]:
    names = [o.name for o in resolved.outputs]
    missing = []
    for name in names:
        try:
            model.get_layer(name)
        except ValueError:
            missing.append(name)
    if missing:
        raise TrainingError(
            f"the model has no layer named like its output(s) {', '.join(missing)}; "
            "every output must end in a layer of the output's name"
        )
    return names
