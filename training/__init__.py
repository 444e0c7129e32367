"""Training and evaluation of resolved specs: `blockspec train` and `blockspec evaluate`.

Importing this package (or `training.config`) does not import TensorFlow, so `blockspec validate`
can call `check_train` cheaply. The TensorFlow side lives in `training.trainer` (fit a spec),
`training.data` (tf.data pipelines), `training.evaluate` (test-time augmentation) and
`training.commands` (the command-line entry points).
"""

from blockspec.training.config import TRAIN_DEFAULTS, check_train, with_defaults
from blockspec.training.errors import DataError, TrainingError

__all__ = ["TRAIN_DEFAULTS", "DataError", "TrainingError", "check_train", "with_defaults"]
