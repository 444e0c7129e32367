"""blockspec: declarative architecture builder for Keras 3.

    from blockspec import load_spec, build_model
    model = build_model("resnet50", overrides={"vars.classes": 10, "input": [64, 64, 3]})

`import blockspec` does not import TensorFlow; `build_model` does, when called. The repository's
folders (`builder/`, `blocks/`, `training/`, `tuning/`, `views/`, `cli.py`, `specs/`) are this
package's modules and data (setup.cfg maps the repository root to `blockspec`).
"""

__version__ = "0.2.0"

from blockspec import blocks  # noqa: E402, F401  (registers the built-in step types)
from blockspec.builder import (  # noqa: E402
    Limits,
    Mark,
    Problem,
    ResolvedSpec,
    SpecError,
    build_model,
    load_document,
    load_spec,
    resolve_spec,
)

__all__ = [
    "Limits",
    "Mark",
    "Problem",
    "ResolvedSpec",
    "SpecError",
    "__version__",
    "build_model",
    "load_document",
    "load_spec",
    "resolve_spec",
]
