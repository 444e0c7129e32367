"""Hyperparameter search over a spec's search spaces, with keras-tuner: `blockspec tune`.

Importing this package does not import TensorFlow: `tuning.document` is pure Python; the
keras-tuner side lives in `tuning.hypermodel` (the spec as a HyperModel), `tuning.search`
(tuners, the trial table, trials.csv, the objective plot, best.yaml, the chief's oracle server)
and `tuning.commands` (the command-line entry point).
"""
