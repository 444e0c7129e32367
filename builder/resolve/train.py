"""`train`, resolved: its rules checked once, its values read once into a frozen `TrainConfig`.

The trainer reads `resolved.train_config` (or the same values as a dict, `as_dict()`) and checks
nothing again: every rule that needs no data and no Keras is here or in `train_rules`, including
the image geometry (one image input, `random_crop` within the images).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from blockspec.builder.resolve.common import contains_invalid
from blockspec.builder.resolve.train_freeze import check_freeze_and_stages, step_names
from blockspec.builder.resolve.train_keys import with_defaults
from blockspec.builder.resolve.train_rules import check_train
from blockspec.builder.spec import InputSpec, OutputSpec, Step


@dataclass(frozen=True)
class DataConfig:
    """`train.data`: the source and its keys (None: the source's default)."""

    source: str = "digits"
    image_size: tuple[int, int] | None = None
    validation_split: float = 0.2
    cache: bool | str = "auto"
    scale: float | None = None
    path: str | None = None
    validation_path: str | None = None
    x_key: str | None = None
    y_key: str | None = None
    name: str | None = None
    split: str | None = None
    validation: str | None = None
    test: str | None = None
    data_dir: str | None = None
    download: bool | None = None
    samples: int | None = None
    classes: int | None = None
    noise: float | None = None
    masks: bool = False


@dataclass(frozen=True)
class NamedArgs:
    """A one-key mapping of the language: `{adam: {learning_rate: 0.001}}`, `{cosine: {...}}`."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EarlyStoppingConfig:
    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best_weights: bool = True


@dataclass(frozen=True)
class StageConfig:
    """One of `train.stages`: its epochs, the step patterns it freezes, its optimizer.

    Attributes:
        epochs: how many epochs the stage trains.
        first_epoch: the epochs before it (stages count epochs together: a stage of 3 epochs
            after one of 2 trains epochs 3 to 5, 1-based).
        freeze: step-name patterns whose layers do not train in it.
        optimizer: its own optimizer (default: `train.optimizer`).
    """

    epochs: int
    first_epoch: int
    freeze: tuple[str, ...]
    optimizer: NamedArgs

    @property
    def end(self) -> int:
        """The epoch count after it: Keras' `epochs=` for its `fit`."""
        return self.first_epoch + self.epochs


@dataclass(frozen=True)
class TrainConfig:
    """The `train` section with every default applied. `as_dict()` gives `with_defaults`' form."""

    data: DataConfig = DataConfig()
    batch_size: int = 32
    epochs: int = 10
    optimizer: NamedArgs = NamedArgs("adam", {"learning_rate": 1e-3})
    schedule: NamedArgs | None = None
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: tuple[NamedArgs, ...] = ()
    precision: str = "float32"
    jit_compile: bool | str = False
    distribute: str = "none"
    early_stopping: EarlyStoppingConfig | None = None
    seed: int = 0
    deterministic: bool = False
    tta: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    stages: tuple[StageConfig, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_section(cls, train: dict[str, Any] | None) -> TrainConfig:
        """Reads a checked `train` mapping (values concrete) once, defaults applied."""
        full = with_defaults(train)
        data = dict(full["data"])
        if data.get("image_size") is not None:
            data["image_size"] = tuple(data["image_size"])
        schedule = full["schedule"]
        if isinstance(schedule, str):
            schedule = {schedule: {}}
        return cls(
            data=DataConfig(**data),
            batch_size=full["batch_size"],
            epochs=full["epochs"],
            optimizer=NamedArgs(*next(iter(full["optimizer"].items()))),
            schedule=_named(schedule) if schedule else None,
            weight_decay=full["weight_decay"],
            label_smoothing=full["label_smoothing"],
            augment=tuple(_named(step) for step in full["augment"]),
            precision=full["precision"],
            jit_compile=full["jit_compile"],
            distribute=full["distribute"],
            early_stopping=(
                EarlyStoppingConfig(**full["early_stopping"]) if full["early_stopping"] else None
            ),
            seed=full["seed"],
            deterministic=full["deterministic"],
            tta=tuple(full["evaluate"]["tta"] or ()),
            freeze=tuple(full["freeze"]),
            stages=_stages(full),
            raw=copy.deepcopy(train or {}),
        )

    def as_dict(self) -> dict[str, Any]:
        """The config as `with_defaults` returns it (a new dict): what older callers read."""
        return with_defaults(self.raw)

    def data_dict(self) -> dict[str, Any]:
        """`data` as a mapping, without the keys left at None."""
        return {k: v for k, v in asdict(self.data).items() if v is not None}


def _stages(full: dict[str, Any]) -> tuple[StageConfig, ...]:
    out, first = [], 0
    for stage in full["stages"]:
        optimizer = stage.get("optimizer", full["optimizer"])
        if isinstance(optimizer, str):
            optimizer = {optimizer: {}}
        epochs = int(stage["epochs"])
        out.append(StageConfig(epochs, first, tuple(stage.get("freeze") or ()), _named(optimizer)))
        first += epochs
    return tuple(out)


def _named(value: Any) -> NamedArgs:
    if isinstance(value, str):
        return NamedArgs(value, {})
    name, args = next(iter(value.items()))
    return NamedArgs(str(name), dict(args) if isinstance(args, dict) else {"value": args})


def resolve_train(
    resolver,
    raw: Any,
    inputs: list[InputSpec],
    outputs: list[OutputSpec],
    network: list[Step] | None = None,
) -> tuple[dict, TrainConfig | None]:
    """The `train` mapping (values concrete) and its `TrainConfig`; None when refused.

    `network` (the resolved steps) is what `freeze` patterns are matched against."""
    if raw is None:
        return {}, TrainConfig.from_section({})
    if not isinstance(raw, dict):
        resolver.error(("train",), f"`train` must be a mapping. Received: {raw!r}"[:200])
        return {}, None
    train = {
        k: resolver.value(v, ("train", k), resolver.vars, f"train/{k}") for k, v in raw.items()
    }
    if contains_invalid(train):
        return train, None
    screened = [
        found
        for key in ("optimizer", "augment", "schedule", "early_stopping")
        if key in train
        and (found := resolver.screen_object(("train", key), train[key], names_only=True))
    ]
    problems = check_train(train)
    problems += check_freeze_and_stages(train, step_names(network or []))
    for rel, message in problems:
        path = ("train", *_parts(rel))
        if not any(path[: len(refused)] == refused for refused in screened):  # said already
            resolver.error(path, message)
    if problems or screened:
        return train, None
    config = TrainConfig.from_section(train)
    for path, message in geometry_problems(inputs, config):
        resolver.error(path, message)
    return train, config


def _parts(rel: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in rel.split(".")) if rel else ()


def image_size_of(inputs: list[InputSpec], config: TrainConfig) -> tuple[int, int] | None:
    """The [H, W] the images are resized to: `data.image_size`, else the input's H, W if fixed."""
    if config.data.image_size:
        return tuple(config.data.image_size)
    if len(inputs) == 1 and len(inputs[0].shape) == 3 and None not in inputs[0].shape[:2]:
        return tuple(inputs[0].shape[:2])
    return None


def geometry_problems(inputs: list[InputSpec], config: TrainConfig) -> list[tuple[tuple, str]]:
    """What makes the data unable to feed the model input, known from the spec alone."""
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        return (
            [
                (
                    ("train",),
                    f"`train` fits models with one input; this spec has {len(inputs)}. "
                    f"Received: inputs=[{names}]",
                )
            ]
            if inputs
            else []
        )
    shape = tuple(inputs[0].shape)
    data = config.data
    if len(shape) != 3:
        if data.image_size or config.augment:
            where = ("train", "data", "image_size") if data.image_size else ("train", "augment")
            return [
                (
                    where,
                    "`image_size` and `augment` need an image input [H, W, C]. "
                    f"Received: input={list(shape)}",
                )
            ]
        if data.source in ("digits", "folder", "synthetic", "tfds"):
            return [
                (
                    ("train", "data", "source"),
                    f"data source `{data.source}` gives images; the model input is not an "
                    f"image [H, W, C]. Received: input={list(shape)}",
                )
            ]
        return []
    image_size = image_size_of(inputs, config)
    if image_size is None:
        return [
            (
                ("train", "data"),
                "the model input has no fixed height and width; set `train.data.image_size`. "
                f"Received: input={list(shape)}",
            )
        ]
    if data.masks and tuple(image_size) != tuple(shape[:2]):
        return [
            (
                ("train", "data", "image_size"),
                "per-pixel labels (`masks: true`) are made at the model input's size: leave "
                f"`image_size` out or make it {list(shape[:2])}. Received: "
                f"image_size={list(image_size)}",
            )
        ]
    return _crop_problems(config, image_size)


def _crop_problems(config: TrainConfig, image_size: tuple[int, int]) -> list[tuple[tuple, str]]:
    problems = []
    for index, step in enumerate(config.augment):
        if step.name not in ("random_crop", "RandomCrop"):
            continue
        size = step.args.get("size", step.args.get("value"))
        if size is None and "height" in step.args:  # the Keras class: RandomCrop(height, width)
            size = [step.args["height"], step.args.get("width")]
        if isinstance(size, dict) or size is None:
            continue
        if isinstance(size, list) and not all(isinstance(v, int) for v in size):
            continue  # refused by the augment rules
        crop = (size, size) if isinstance(size, int) else tuple(size)
        if crop[0] > image_size[0] or crop[1] > image_size[1]:
            problems.append(
                (
                    ("train", "augment", index, step.name),
                    f"`random_crop` size {list(crop)} is larger than the images "
                    f"(image_size {list(image_size)}). Received: size={list(crop)}",
                )
            )
    return problems
