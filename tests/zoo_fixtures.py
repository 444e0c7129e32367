"""Every zoo spec and example, and the overrides that make each one small enough to build fast."""

from __future__ import annotations

import math
from pathlib import Path

import keras

from blockspec.builder.load import SPECS_DIR, load_document

ZOO = sorted(SPECS_DIR.glob("*.yaml"))
EXAMPLES = sorted((SPECS_DIR / "examples").glob("*.yaml"))
SMALL_SIDE = 64
# Where 64x64 is too small: AlexNet's three valid 3/2 pools after 11x11/4 need 67;
# InceptionV3 and InceptionResNetV2 need 75 (keras.applications' own minimum).
MIN_SIDE = {"alexnet": 67, "inception_v3": 75, "inception_resnet_v2": 75}


def spec_id(path: Path) -> str:
    return path.stem if path.parent == SPECS_DIR else f"examples/{path.stem}"


def small_overrides(path: Path) -> dict:
    """10 classes, and an input side of at most 64 (or the spec's minimum)."""
    data = load_document(str(path)).data
    overrides = {}
    if "classes" in (data.get("vars") or {}):
        overrides["vars.classes"] = 10
    shape = data.get("input")
    side = max(SMALL_SIDE, MIN_SIDE.get(path.stem, 0))
    if isinstance(shape, list) and len(shape) == 3 and isinstance(shape[0], int):
        if shape[0] > side:
            overrides["input"] = [side, side, shape[2]]
    return overrides


# Fewer repeated units, for tests of a mechanism (not of a count): the same block types, built
# faster. resnet101/152 repeat resnet50's units; densenet and nasnet their own.
FEWER_UNITS = {
    "resnet101": {"vars.conv4": 2},
    "resnet152": {"vars.conv3": 2, "vars.conv4": 2},
    "densenet": {"vars.conv4": 2, "vars.conv5": 2},
    "nasnet": {"vars.n": 1},
}


def size(weights) -> int:
    """How many numbers the weights hold."""
    return sum(math.prod(w.shape) for w in weights)


def shapes_only(fn):
    """Runs `fn` with weights that have shapes but no values (nothing is initialised)."""
    try:
        with keras.StatelessScope(initialize_variables=False):
            return fn()
    finally:
        keras.backend.clear_session()  # forgets the uninitialised variables


def parameter_counts(spec, overrides=None, inference: bool = False) -> tuple[int, int]:
    """(trainable, total) parameters of a spec's model, counted without values (`shapes_only`)."""
    from blockspec.builder import build_model

    def count():
        model = build_model(spec, overrides=overrides, inference=inference)
        return size(model.trainable_weights), size(model.weights)

    return shapes_only(count)
