"""The shape check: build a resolved spec symbolically, weights never allocated, and check outputs.

Rules that need shapes cannot be checked by the resolver (pure Python): a kernel larger than its
input, branches that do not concatenate, a `dense` on a feature map feeding a loss that wants one
class per example. `check_shapes` finds them before any data is read or file written:
`blockspec validate --shapes`, and train and tune before they start.
"""

from __future__ import annotations

from typing import Any

from blockspec.builder.errors import Problem, SpecError
from blockspec.builder.load import DEFAULT_LIMITS
from blockspec.builder.resolve.train_rules import per_pixel_labels
from blockspec.builder.spec import ResolvedSpec, Step, walk

# Every data source yields one integer class id per example (`training/data.py`): these losses
# compare it with a (batch, classes) output, the others with a (batch, 1) one.
CLASS_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy")
DEFAULT_LOSS = "sparse_categorical_crossentropy"  # what `train` uses for an output without `loss`
KNOWN_CLASSES = {"digits": 10}  # classes of the built-in sources that have a fixed number


def check_shapes(spec: ResolvedSpec) -> list[Problem]:
    """Every shape problem of a resolved spec, each located at its step.

    The model is built in a `keras.StatelessScope` whose weights are dropped, never allocated,
    so a model of a billion parameters is checked in the time its graph takes to build. Then
    each output's shape is checked against its loss and the labels the data sources give.

    Args:
        spec: a resolved spec (`resolve_spec`).

    Returns:
        The problems; empty when the spec builds and its outputs fit their losses.

    Example:
        >>> check_shapes(resolve_spec("digits_googlenet"))  # doctest: +SKIP
        []
    """
    from blockspec.builder.compile import _build_graph, _check_parameters, _deferred_weights

    limits = spec.limits or DEFAULT_LIMITS
    try:
        with _deferred_weights(allocate=False) as created:
            built = _build_graph(spec)
            _check_parameters(created, limits, spec)
    except SpecError as e:
        if "stateless scope" not in str(e):
            return list(e.problems)
        try:  # a layer that sets its weights while building cannot defer them
            built = _build_graph(spec)
        except SpecError as again:
            return list(again.problems)
    return output_problems(
        spec, {o.name: tuple(built.tensors[o.source].shape) for o in spec.outputs}
    )


def output_problems(spec: ResolvedSpec, shapes: dict[str, tuple]) -> list[Problem]:
    """Problems of outputs whose shapes (batch axis first) do not fit their losses or the data."""
    problems = []
    for out in spec.outputs:
        shape = shapes[out.name]
        loss = out.loss if out.loss is not None else DEFAULT_LOSS
        if not isinstance(loss, str):
            continue  # a Keras loss config: its own rules
        said = f"`{loss}`" if out.loss is not None else f"`{loss}` (the default loss)"
        message = _loss_problem(spec, loss.lower(), said, shape)
        if message:
            step = _find(spec.network, out.source)
            problems.append(
                Problem(
                    f"output `{out.name}` reads this step, of shape {_shape(shape)}: {message}",
                    step.path if step else f"outputs.{out.name}",
                    step.mark if step else None,
                )
            )
    return problems


def _loss_problem(spec: ResolvedSpec, key: str, said: str, shape: tuple) -> str | None:
    """Why an output of `shape` cannot meet the data's labels through the loss `key`, or None."""
    if key not in CLASS_LOSSES:
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            return (
                f"{said} compares it with one number per example (the data's labels), so it "
                f"needs the shape (batch, 1)"
            )
        return None
    if per_pixel_labels(spec.train):
        image = tuple(spec.inputs[0].shape[:2]) if spec.inputs else None
        if len(shape) != 4 or (image and None not in shape[1:3] and tuple(shape[1:3]) != image):
            size = f"{image[0]}, {image[1]}" if image else "height, width"
            return (
                f"{said} compares it with the data's class id of every pixel (`masks: true`), "
                f"so it needs the shape (batch, {size}, classes): the input's size with one "
                f"score per class"
            )
    elif len(shape) != 2:
        return (
            f"{said} compares it with one class id per example, so it needs the shape "
            f"(batch, classes); pool or flatten the feature map before the last `dense` "
            f"(`global_avg_pool`)"
        )
    classes = _data_classes(spec.train)
    if classes and shape[-1] is not None and shape[-1] < classes[1]:
        return (
            f"the data (`{classes[0]}`) has {classes[1]} classes, but it gives "
            f"{shape[-1]} scores: class ids {shape[-1]} and up would have none"
        )
    return None


def _data_classes(train: dict[str, Any]) -> tuple[str, int] | None:
    """(source, classes) when the spec's training data has a number of classes known in advance."""
    if not train:
        return None
    data = train.get("data") or {}
    source = data.get("source", "digits") if isinstance(data, dict) else None
    if source in KNOWN_CLASSES:
        return source, KNOWN_CLASSES[source]
    classes = data.get("classes") if source == "synthetic" else None
    if isinstance(classes, int) and not isinstance(classes, bool):
        return source, classes
    return None


def _find(steps: list[Step], name: str) -> Step | None:
    return next((step for step in walk(steps) if step.name == name), None)


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("batch" if i == 0 else str(d) for i, d in enumerate(shape)) + ")"
