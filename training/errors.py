"""Errors of the training side that are not spec errors (those are `builder.errors.SpecError`).

Every one of them is a message for the user: the command line prints it and exits 2 (a NaN loss,
a run that failed while training, exits 1).
"""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A run could not go on: data missing, loss became NaN, nothing to evaluate."""


class DataError(TrainingError):
    """A data source could not be read, or its data cannot train the model (names the file)."""


class RunFolderError(TrainingError):
    """A run folder cannot be used: another run's, in use, not a run, or damaged (names it)."""


class WriteError(TrainingError):
    """A file could not be written (disk full, I/O error); the previous version is intact."""


class ModelFileError(TrainingError):
    """A saved model could not be loaded: damaged, truncated, or refused by safe mode."""
