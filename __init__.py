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
    load_document,
    load_spec,
    resolve_spec,
)


def build_model(
    spec,
    overrides=None,
    inference: bool = False,
    compile: bool = False,
    steps_per_epoch: int | None = None,
    weights=None,
    weights_strict: bool | None = None,
):
    """Builds a `keras.Model` from a spec (a zoo name, a path, a mapping or a `ResolvedSpec`).

    Args:
        spec: what to build.
        overrides: dotted keys to values applied before validation, as `--set` does.
        inference: drop the `train_only` outputs (auxiliary heads).
        compile: compile with the spec's losses, loss weights, metrics and `train.optimizer`,
            as `blockspec train` does.
        steps_per_epoch: batches per epoch; needed with `compile=True` when `train.schedule` is set.
        weights: start from these weights (a `.keras`, `.weights.h5` or legacy `.h5` file, or
            `imagenet` for a zoo spec): by layer name and shape, then by structure; the report
            line is printed. It replaces the spec's `weights:` key; a `backbone` step's own
            `weights` load into its layers either way.
        weights_strict: refuse weights that do not all load (None: the spec's
            `weights_strict`).

    Example:
        >>> ready = build_model("googlenet", compile=True)  # doctest: +SKIP
        >>> ready.fit(images, {"main": labels, "aux1": labels, "aux2": labels})  # doctest: +SKIP
    """
    from blockspec.builder.compile import compile_spec

    resolved = resolve_spec(spec, overrides)
    model = compile_spec(resolved, inference=inference).model
    from blockspec.builder.spec_weights import load_spec_weights

    load_spec_weights(model, resolved, weights, weights_strict)
    if compile:
        from blockspec.training.optim import compile_for_spec

        compile_for_spec(model, resolved, steps_per_epoch)
    return model


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
