"""blockspec's builder: load -> validate and resolve -> compile.

`import blockspec.builder` does not import TensorFlow; `build_model` does, when called.
"""

from blockspec.builder.errors import Mark, Problem, SpecError
from blockspec.builder.load import Limits, load_document
from blockspec.builder.resolve import resolve_spec
from blockspec.builder.spec import ResolvedSpec


def load_spec(spec, overrides=None, **kwargs) -> ResolvedSpec:
    """Loads, validates and resolves a spec (a path, a zoo name or a mapping). Alias of `resolve_spec`."""
    return resolve_spec(spec, overrides, **kwargs)


def build_model(spec, overrides=None, inference: bool = False):
    """Builds a `keras.Model` from a spec; see `builder.compile.build_model`."""
    from blockspec.builder.compile import build_model as _build

    return _build(spec, overrides, inference)


__all__ = [
    "Limits",
    "Mark",
    "Problem",
    "ResolvedSpec",
    "SpecError",
    "build_model",
    "load_document",
    "load_spec",
    "resolve_spec",
]
