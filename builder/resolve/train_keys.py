"""The `train` section's keys, choices and defaults (the rules are in `train_rules`).

Pure Python: nothing here imports TensorFlow or Keras, so `blockspec validate` stays fast.

The shape of `train` (every key optional; the defaults below train offline on a fresh machine):

```yaml
train:
  data:
    source: digits          # digits | synthetic | folder | npz | tfds
    image_size: [32, 32]    # [H, W] the images are resized to; default: the model input's H, W
    validation_split: 0.2   # fraction held out for validation (0 <= v < 1), stratified, seeded
    cache: auto             # auto (in memory when it fits in 1 GiB) | true | false
    scale: 0.0625           # multiply raw values by this; default per source (digits 1/16,
                            # folder and tfds 1/255, npz 1/255 for uint8 arrays else 1, synthetic 1)
    # folder: path (a directory of class folders), validation_path (optional)
    # npz: path; x_key/y_key (default x, y; or x_train, y_train); x_test/y_test are the test split
    # tfds: name, split (default train), validation (a split name; default: carve
    #       validation_split out of `split`), test (split name or null), data_dir, download (true)
    # synthetic: samples (2048), classes (default: the main output's width), noise (0.5),
    #   masks (false; true: per-pixel labels, rectangles of classes 1.. on class 0, segmentation)
  batch_size: 32
  epochs: 10
  optimizer: {adam: {learning_rate: 0.001}}   # one key, a Keras optimizer name; or just `adam`
  schedule: null            # one key of: constant, warmup, step, cosine, reduce_on_plateau
                            #   constant: {warmup_epochs: 0}
                            #   warmup: {epochs: 1}                 (linear warmup, then constant)
                            #   step: {every: 10 | boundaries: [e1, e2], factor: 0.1, warmup_epochs: 0}
                            #   cosine: {warmup_epochs: 0, alpha: 0.0}   (alpha: final fraction)
                            #   reduce_on_plateau: {monitor: val_loss, factor: 0.1, patience: 5,
                            #                       min_delta: 0.0001, min_lr: 0.0}
  weight_decay: 0.0         # decoupled weight decay (Keras optimizers' `weight_decay`), biases
                            # and normalisation scales excluded
  label_smoothing: 0.0      # for (sparse_)categorical_crossentropy outputs
  augment: []               # steps of Keras preprocessing layers, on the training pipeline only:
                            #   random_crop: {size: [28, 28]} | [28, 28]
                            #   random_flip: horizontal | vertical | horizontal_and_vertical
                            #   random_translation: 0.1 | [0.1, 0.1] | {height: 0.1, width: 0.1}
                            #   random_rotation / random_zoom / random_contrast /
                            #   random_brightness: a factor, or a mapping of Keras arguments;
                            #   any other `random_*` layer, or a Keras class name (RandomErasing),
                            #   with its Keras arguments
  precision: float32        # float32 | mixed_float16 | mixed_bfloat16
  jit_compile: false        # true | false | auto (Keras' choice)
  distribute: none          # none | mirrored (all local GPUs, else all logical CPUs) | multi_worker
  early_stopping: false     # true, or {monitor: val_loss, patience: 5, min_delta: 0, mode: auto,
                            #           restore_best_weights: true}
  seed: 0
  deterministic: false      # true: augment on one thread, so two runs of a spec see the same
                            # augmented images (the input pipeline is then slower)
  evaluate: {tta: []}       # test-time augmentation views for `blockspec evaluate`: flip, crops
  freeze: []                # step-name patterns (shell patterns) whose layers do not train
  stages: []                # phases in one run, each {epochs, freeze, optimizer}; with stages,
                            # `epochs` and `freeze` go in each stage, and the run's epochs are
                            # their sum
```
"""

from __future__ import annotations

import copy
from typing import Any

SOURCES = ("digits", "synthetic", "folder", "npz", "tfds")
OPTIMIZERS = (
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamw",
    "adamax",
    "ftrl",
    "lamb",
    "lion",
    "muon",
    "nadam",
    "rmsprop",
    "sgd",
)
# Keyword arguments of each Keras optimizer (keras 3.15; `name` and `weight_decay` are set by
# blockspec). tests/test_check_phase.py compares them with the installed Keras.
_OPTIMIZER_COMMON = (
    "learning_rate", "clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum",
    "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps",
)  # fmt: skip
OPTIMIZER_ARGS = {
    name: (*_OPTIMIZER_COMMON, *own)
    for name, own in {
        "adadelta": ("rho", "epsilon"),
        "adafactor": ("beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold", "relative_step"),
        "adagrad": ("initial_accumulator_value", "epsilon"),
        "adam": ("beta_1", "beta_2", "epsilon", "amsgrad"),
        "adamw": ("beta_1", "beta_2", "epsilon", "amsgrad"),
        "adamax": ("beta_1", "beta_2", "epsilon"),
        "ftrl": (
            "learning_rate_power", "initial_accumulator_value", "l1_regularization_strength",
            "l2_regularization_strength", "l2_shrinkage_regularization_strength", "beta",
        ),
        "lamb": ("beta_1", "beta_2", "epsilon"),
        "lion": ("beta_1", "beta_2"),
        "muon": (
            "adam_beta_1", "adam_beta_2", "adam_weight_decay", "epsilon", "exclude_layers",
            "exclude_embeddings", "muon_a", "muon_b", "muon_c", "adam_lr_ratio", "momentum",
            "ns_steps", "nesterov", "rms_rate",
        ),
        "nadam": ("beta_1", "beta_2", "epsilon"),
        "rmsprop": ("rho", "momentum", "epsilon", "centered"),
        "sgd": ("momentum", "nesterov"),
    }.items()
}  # fmt: skip
SCHEDULES = ("constant", "warmup", "step", "cosine", "reduce_on_plateau")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTE = ("none", "mirrored", "multi_worker")
TTA_VIEWS = ("flip", "crops")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
# Keras preprocessing layers usable in `augment`, by snake_case name (Keras' class name works too).
AUGMENT_LAYERS = {
    "random_brightness": "RandomBrightness",
    "random_color_degeneration": "RandomColorDegeneration",
    "random_color_jitter": "RandomColorJitter",
    "random_contrast": "RandomContrast",
    "random_crop": "RandomCrop",
    "random_elastic_transform": "RandomElasticTransform",
    "random_erasing": "RandomErasing",
    "random_flip": "RandomFlip",
    "random_gaussian_blur": "RandomGaussianBlur",
    "random_grayscale": "RandomGrayscale",
    "random_hue": "RandomHue",
    "random_invert": "RandomInvert",
    "random_perspective": "RandomPerspective",
    "random_posterization": "RandomPosterization",
    "random_rotation": "RandomRotation",
    "random_saturation": "RandomSaturation",
    "random_sharpness": "RandomSharpness",
    "random_shear": "RandomShear",
    "random_translation": "RandomTranslation",
    "random_zoom": "RandomZoom",
}
# Layers whose scalar argument is one "factor" (the rest take a mapping of Keras arguments).
FACTOR_LAYERS = (
    "random_rotation",
    "random_zoom",
    "random_contrast",
    "random_brightness",
    "random_hue",
    "random_saturation",
    "random_sharpness",
    "random_shear",
    "random_color_degeneration",
    "random_grayscale",
)
# Ranges Keras' optimizers refuse outside, when they are made (after the data was read):
# (optimizer or "*" for all, argument) -> (lowest, highest), None for no bound.
OPTIMIZER_ARG_RANGES = {
    ("sgd", "momentum"): (0.0, 1.0),
    ("ftrl", "initial_accumulator_value"): (0.0, None),
    ("ftrl", "learning_rate_power"): (None, 0.0),
    ("ftrl", "l1_regularization_strength"): (0.0, None),
    ("ftrl", "l2_regularization_strength"): (0.0, None),
    ("ftrl", "l2_shrinkage_regularization_strength"): (0.0, None),
    ("*", "ema_momentum"): (0.0, 1.0),
}
CLIP_ARGS = ("clipnorm", "clipvalue", "global_clipnorm")  # Keras takes one of them at most
# The range Keras takes each factor in (low, high, low included): a factor outside was refused
# only when `train` made the layer, after the data was read.
FACTOR_RANGES = {
    "random_rotation": (-1.0, 1.0, True),
    "random_zoom": (-1.0, 1.0, False),
    "random_contrast": (0.0, 1.0, True),
    "random_brightness": (-1.0, 1.0, True),
    "random_hue": (0.0, 1.0, True),
    "random_saturation": (-1.0, 1.0, True),
    "random_sharpness": (0.0, 1.0, True),
    "random_shear": (0.0, 1.0, True),
    "random_color_degeneration": (-1.0, 1.0, True),
    "random_grayscale": (0.0, 1.0, True),
}

DATA_KEYS = {
    "common": ("source", "image_size", "validation_split", "cache", "scale"),
    "digits": (),
    "synthetic": ("samples", "classes", "noise", "masks"),
    "folder": ("path", "validation_path"),
    "npz": ("path", "x_key", "y_key"),
    "tfds": ("name", "split", "validation", "test", "data_dir", "download"),
}
SCHEDULE_KEYS = {
    "constant": ("warmup_epochs",),
    "warmup": ("epochs",),
    "step": ("every", "boundaries", "factor", "warmup_epochs"),
    "cosine": ("warmup_epochs", "alpha"),
    "reduce_on_plateau": ("monitor", "factor", "patience", "min_delta", "min_lr", "cooldown"),
}
EARLY_STOPPING_KEYS = ("monitor", "patience", "min_delta", "mode", "restore_best_weights")

TRAIN_DEFAULTS: dict[str, Any] = {
    "data": {"source": "digits", "validation_split": 0.2, "cache": "auto"},
    "batch_size": 32,
    "epochs": 10,
    "optimizer": {"adam": {"learning_rate": 1e-3}},
    "schedule": None,
    "weight_decay": 0.0,
    "label_smoothing": 0.0,
    "augment": [],
    "precision": "float32",
    "jit_compile": False,
    "distribute": "none",
    "early_stopping": False,
    "seed": 0,
    "deterministic": False,
    "evaluate": {"tta": []},
    "freeze": [],
    "stages": [],
}
EARLY_STOPPING_DEFAULTS = {
    "monitor": "val_loss",
    "patience": 5,
    "min_delta": 0.0,
    "mode": "auto",
    "restore_best_weights": True,
}


def with_defaults(train: dict[str, Any] | None) -> dict[str, Any]:
    """The `train` section with every default filled in (a new dict; `train` is not changed).

    Args:
        train: the spec's `train` mapping (already checked by `check_train`), or None.

    Returns:
        A dict with every key of `TRAIN_DEFAULTS`; `optimizer` normalised to
        `{name: {args}}`, `early_stopping` to a mapping or None.

    Example:
        >>> with_defaults({"epochs": 2})["optimizer"]
        {'adam': {'learning_rate': 0.001}}
    """
    train = copy.deepcopy(train or {})
    out = copy.deepcopy(TRAIN_DEFAULTS)
    data = train.pop("data", None) or {}
    out["data"].update(data)
    for key, value in train.items():
        out[key] = value
    if isinstance(out["optimizer"], str):
        out["optimizer"] = {out["optimizer"]: {}}
    name, args = next(iter(out["optimizer"].items()))
    out["optimizer"] = {name: dict(args or {})}
    es = out["early_stopping"]
    if es is True:
        out["early_stopping"] = dict(EARLY_STOPPING_DEFAULTS)
    elif isinstance(es, dict):
        out["early_stopping"] = {**EARLY_STOPPING_DEFAULTS, **es}
    else:
        out["early_stopping"] = None
    out["augment"] = list(out["augment"] or [])
    out["evaluate"] = {"tta": [], **(out["evaluate"] or {})}
    out["freeze"] = list(out["freeze"] or [])
    out["stages"] = [dict(stage) for stage in out["stages"] or []]
    if out["stages"]:  # the run's epochs are the stages' together
        out["epochs"] = sum(int(stage["epochs"]) for stage in out["stages"])
    return out
