"""Errors of the training side that are not spec errors (those are `builder.errors.SpecError`)."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A run could not go on: data missing, loss became NaN, nothing to evaluate."""


class DataError(TrainingError):
    """A data source could not be read (a missing folder, an offline TFDS download, ...)."""
