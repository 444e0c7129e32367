"""The errors a command-line user can meet that are neither spec nor training errors.

The whole hierarchy, and the exit code of each, is in `cli.EXIT_CODES`:
- `builder.errors.SpecError`: the spec breaks a rule (located: file:line:col and spec path);
- `UsageError` (here): a command-line mistake, such as an unknown `--tta` view or a run folder that
  does not exist;
- `MissingTool` (here): a program or package a command needs is not installed (graphviz's `dot`);
- `training.errors.TrainingError` and its `DataError`: a run could not go on;
- `Terminated` (here): SIGTERM, taken as Ctrl-C is (a run ends "interrupted", resumable).

This module imports nothing, so every layer may raise these.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A command-line mistake; `str()` names the option and what was received."""


class MissingTool(RuntimeError):
    """A program or package a command needs is missing; `str()` says how to install it."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM: `kill`, a job scheduler, a container stopping).

    It is a `KeyboardInterrupt`, so everything that keeps a run whole on Ctrl-C (the run folder's
    `run.json` ends "interrupted", the checkpoint stays, the resume command is printed) does the
    same here; the command line exits 143 (128 + SIGTERM) instead of 130.
    """
