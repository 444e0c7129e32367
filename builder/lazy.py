"""Lazy module handles, so that registering blocks does not import TensorFlow.

`blockspec validate` loads the registry (every block's arguments) in well under a second because
`blocks/` reaches Keras only through these handles, at build time.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Imports `module` on first attribute access."""

    def __init__(self, module: str):
        self._name = module
        self._module = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


keras = LazyModule("keras")
layers = LazyModule("keras.layers")
ops = LazyModule("keras.ops")
