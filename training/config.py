"""The `train` section, as training reads it: names kept from before the rules moved.

The keys, defaults and rules of `train` belong to the spec language, so they live in
`builder/resolve/` (`train_keys`, `train_rules`, `train`), where `validate` checks them once;
this module re-exports them for the trainer. Pure Python: nothing here imports TensorFlow.
"""

from __future__ import annotations

from blockspec.builder.resolve.train import TrainConfig
from blockspec.builder.resolve.train_keys import (
    AUGMENT_LAYERS,
    DATA_KEYS,
    DISTRIBUTE,
    EARLY_STOPPING_DEFAULTS,
    EARLY_STOPPING_KEYS,
    FACTOR_LAYERS,
    FLIP_MODES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULE_KEYS,
    SCHEDULES,
    SOURCES,
    TRAIN_DEFAULTS,
    TTA_VIEWS,
    with_defaults,
)
from blockspec.builder.resolve.checks import unknown_choice
from blockspec.builder.resolve.train_rules import check_train

__all__ = [
    "AUGMENT_LAYERS",
    "DATA_KEYS",
    "DISTRIBUTE",
    "EARLY_STOPPING_DEFAULTS",
    "EARLY_STOPPING_KEYS",
    "FACTOR_LAYERS",
    "FLIP_MODES",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "SCHEDULE_KEYS",
    "SOURCES",
    "TRAIN_DEFAULTS",
    "TTA_VIEWS",
    "TrainConfig",
    "check_train",
    "unknown_choice",
    "with_defaults",
]
