"""Compile: a `ResolvedSpec` -> a Keras functional model.

Walks the resolved steps, looks each type up in the registry and calls Keras. A Keras error is
re-raised as a `SpecError` that names the step and where it was written.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from blockspec.builder import registry
from blockspec.builder.errors import Problem, SpecError
from blockspec.builder.lazy import (
    Deferred,
    DeferredError,
    contains_deferred,
    keras,
    layers,
    settle_all,
)
from blockspec.builder.load import DEFAULT_LIMITS, Limits
from blockspec.builder.shape_rules import axis_problem
from blockspec.builder.spec import ResolvedSpec, Step, layer_name


@dataclass
class Built:
    """A built model and what the builder knows about it.

    Attributes:
        model: the Keras model; `outputs` is a dict keyed by output name.
        tensors: the output tensor of every step, by full step name (stage outputs, aux taps).
        spec: the resolved spec it was built from.
    """

    model: Any
    tensors: dict[str, Any] = field(default_factory=dict)
    spec: ResolvedSpec | None = None
    settled: dict[int, Any] = field(default_factory=dict)  # deferred values as built, by id


class BuildContext:
    """State while building: step tensors, and the names reserved for outputs."""

    def __init__(self, spec: ResolvedSpec, reserved: set[str]):
        self.spec = spec
        self.reserved = reserved
        self.tensors: dict[str, Any] = {}
        self.registry_get = registry.get
        self.uses: list[Step] = []  # the user blocks being built, outermost first
        self.settled: dict[int, Any] = {}  # deferred `in_*` expressions evaluated (1.1), by id

    def build_steps(self, steps: list[Step], x: Any) -> Any:
        for step in steps:
            x = self.build_step(step, x)
        return x

    def build_step(self, step: Step, x: Any) -> Any:
        if step.sources is not None:
            inputs = [self.tensors[name] for name in step.sources]
            x = inputs[0] if len(inputs) == 1 else inputs
        before = {id(t) for t in self.tensors.values()} | {id(t) for t in _flat(x)}
        if contains_deferred(step.args):
            step = self.settle(step, x)
        try:
            if step.block is None and "axis" in step.args:  # validate knows only some ranks
                problem = axis_problem(step.args["axis"], tuple(_flat(x)[0].shape[1:]))
                if problem:
                    raise registry.ShapeError(problem)
            out = self._call(step, x)
            if not step.trainable:  # (1.1) `trainable: false` freezes every layer of the step
                for layer in _layers_between(out, before):
                    layer.trainable = False
        except SpecError:
            raise
        except MemoryError:
            raise
        except Exception as e:  # Keras raises ValueError, TypeError, ... for shape problems
            who = "" if isinstance(e, registry.ShapeError) else "Keras refused this step: "
            where = ""
            if self.uses:  # a step of a block's body: say where the block is used, too
                use = self.uses[-1]
                where = f" (in block `{use.block}`, used at {use.path.rsplit('.', 1)[0]})"
            raise SpecError(Problem(f"{who}{_first_lines(e)}{where}", step.path, step.mark)) from e
        self.tensors[step.name] = out
        return out

    def settle(self, step: Step, x: Any) -> Step:
        """`step` with its deferred expressions (`in_*` unknown to `validate`) evaluated on `x`.

        Each value is then checked against its argument's declared rules, as `validate` checks
        the others; a refusal names where the expression was written.
        """
        shape = tuple(_flat(x)[0].shape[1:])
        deferred = {k: v for k, v in step.args.items() if contains_deferred(v)}
        try:
            args = {**step.args, **settle_all(deferred, shape, self.settled)}
        except DeferredError as e:
            raise SpecError(Problem(str(e), e.deferred.path, e.deferred.mark)) from None
        entry = registry.get(step.type) if step.block is None else None
        if entry is not None and entry.kind != "combinator":
            known = {k: v for k, v in args.items() if not contains_deferred(v)}
            for key, message in registry.check_args(entry, known, set(deferred)):
                if key in deferred:
                    where = _first_deferred(deferred[key])
                    raise SpecError(Problem(message, where.path, where.mark))
        return replace(step, args=args)

    def _call(self, step: Step, x: Any) -> Any:
        if step.block is not None:
            self.uses.append(step)
            try:
                return self.build_steps(step.children[0], x)
            finally:
                self.uses.pop()
        entry = registry.get(step.type)
        if entry.kind == "combinator":
            return entry.build(self, step, x)
        if entry.multi_input and not isinstance(x, list):
            raise ValueError(f"`{step.type}` merges several tensors: give them with `from: [a, b]`")
        name = layer_name(step, self.reserved)
        if entry.kind == "keras":
            return call_layer(getattr(layers, step.type)(name=name, **step.args), x)
        return entry.build(x, name=name, **step.args)


def _first_deferred(value: Any) -> Deferred:
    if isinstance(value, Deferred):
        return value
    items = value.values() if isinstance(value, dict) else value
    return next(_first_deferred(v) for v in items if contains_deferred(v))


def _flat(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _layers_between(out: Any, stop: set[int]) -> list:
    """The layers on the paths from the tensors in `stop` (by id) to `out`: one step's layers."""
    # Private (Keras 3): a symbolic tensor's `_keras_history` names the layer and node made it.
    found, seen, todo = [], set(), _flat(out)
    while todo:
        tensor = todo.pop()
        if id(tensor) in stop or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        layer, node_index = history[0], history[1]
        if layer not in found:
            found.append(layer)
        todo += list(layer._inbound_nodes[node_index].input_tensors)
    return found


def call_layer(layer: Any, x: Any) -> Any:
    """Calls `layer` on `x` so that a model called without `training` computes in inference mode.

    Keras' image preprocessing layers declare `call(..., training=True)`. Called with `training`
    unset (`model(x)`, a SavedModel signature), Keras takes that default and stores it in the call
    context that every later layer of the same call reads, so the batch norms and dropouts after a
    `Resizing` ran in training mode and updated their statistics. Recording `training=False` on the
    node keeps inference the default; `fit` still passes `training=True`, which overrides it.
    """
    if _training_default(type(layer)) is True:
        return layer(x, training=False)
    return layer(x)


@functools.cache
def _training_default(layer_class: type) -> Any:
    parameter = inspect.signature(layer_class.call).parameters.get("training")
    return None if parameter is None else parameter.default


def compile_spec(
    spec: ResolvedSpec, inference: bool = False, limits: Limits | None = None
) -> Built:
    """Builds the Keras model of a resolved spec, refused if its weights exceed the limit.

    The layers are built with weight allocation deferred (`keras.StatelessScope`): each weight
    gets its shape but no memory until the total is checked against `limits.max_parameters`, so
    `dense: {units: 1000000000000}` is refused in milliseconds instead of exhausting memory.

    Args:
        spec: the resolved spec.
        inference: drop the outputs marked `train_only` (GoogLeNet's auxiliary heads).
        limits: bounds; default, the limits the spec was resolved under.

    Returns:
        The model, with every step's output tensor.

    Example:
        >>> built = compile_spec(resolve_spec("googlenet"))  # doctest: +SKIP
    """
    limits = limits or spec.limits or DEFAULT_LIMITS
    try:
        with _deferred_weights() as created:
            built = _build_graph(spec, inference)
            _check_parameters(created, limits, spec)
    except SpecError as e:
        if "stateless scope" not in str(e):
            raise
        # A layer that sets its weights while building cannot defer them: count afterwards.
        built = _build_graph(spec, inference)
        _check_parameters(built.model.weights, limits, spec)
    return built


def _check_parameters(variables, limits: Limits, spec: ResolvedSpec) -> None:
    sizes = [(math.prod(v.shape), v.path) for v in variables]
    total = sum(size for size, _ in sizes)
    if total > limits.max_parameters:
        size, largest = max(sizes)
        step = _step_of(largest.split("/")[0], spec.network)
        raise SpecError(
            Problem(
                f"the model has {total:,} parameters, more than the limit of "
                f"{limits.max_parameters:,} (raise it with --limit max_parameters=N); refused "
                f"before allocating them. Largest weight: `{largest}` ({size:,})",
                step.path if step else "network",
                step.mark if step else None,
            )
        )


def _step_of(layer_name: str, steps: list[Step]) -> Step | None:
    """The innermost step whose name starts `layer_name` (layer names start with their step's)."""
    best = None
    for step in steps:
        if layer_name.startswith(step.name):
            inner = _step_of(layer_name, [s for group in step.children for s in group])
            candidate = inner or step
            if best is None or len(candidate.name) > len(best.name):
                best = candidate
    return best


@contextlib.contextmanager
def dtype_policy(name: str):
    """Set Keras' global dtype policy for the layers built inside, then restore it."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


@contextlib.contextmanager
def _deferred_weights(allocate: bool = True):
    """Builds layers without allocating their weights; yields the list of weights created.

    On a clean exit the weights are allocated (as `keras.StatelessScope` itself does), unless
    `allocate` is false (a shape check: the model is thrown away); when the body raises, they
    are dropped, so a refused model leaves nothing to allocate later.
    """
    # Private: where Keras queues the variables created in a stateless scope (Keras 3.x).
    from keras.src.backend.common import global_state

    if global_state.get_global_attribute("stateless_scope") is not None:
        yield []  # a caller already defers: nothing is allocated here either
        return
    queue = global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)
    start = len(queue)
    created = _Tail(queue, start)
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield created
    except BaseException:
        del queue[start:]
        raise
    if not allocate:
        del queue[start:]
        return
    with keras.StatelessScope():  # leaving it allocates what was deferred
        pass


class _Tail:
    """The items appended to a list after `start` (a live view)."""

    def __init__(self, items: list, start: int):
        self.items, self.start = items, start

    def __iter__(self):
        return iter(self.items[self.start :])


def _build_graph(spec: ResolvedSpec, inference: bool = False) -> Built:
    """Builds the Keras model of a resolved spec.

    Args:
        spec: the resolved spec.
        inference: drop the outputs marked `train_only` (GoogLeNet's auxiliary heads).

    Returns:
        The model, with every step's output tensor.
    """
    reserved = {out.name for out in spec.outputs}
    ctx = BuildContext(spec, reserved)
    inputs = {}
    for spec_input in spec.inputs:
        tensor = keras.Input(shape=spec_input.shape, dtype=spec_input.dtype, name=spec_input.name)
        inputs[spec_input.name] = tensor
        ctx.tensors[spec_input.name] = tensor
    x = next(iter(inputs.values()))
    ctx.build_steps(spec.network, x)
    outputs = {}
    for out in spec.outputs:
        if inference and out.train_only:
            continue
        # Outputs compute in float32 under mixed precision (the Keras mixed-precision guide).
        layer = layers.Activation(out.activation or "linear", dtype="float32", name=out.name)
        outputs[out.name] = layer(ctx.tensors[out.source])
    model_inputs = x if len(inputs) == 1 else list(inputs.values())  # declared order
    try:
        model = keras.Model(inputs=model_inputs, outputs=outputs, name=spec.name)
    except ValueError as e:
        raise SpecError(Problem(f"Keras refused the model: {_first_lines(e)}", "network")) from e
    return Built(model=model, tensors=ctx.tensors, spec=spec, settled=ctx.settled)


def build_model(
    spec: Any,
    overrides: dict[str, Any] | None = None,
    inference: bool = False,
) -> Any:
    """Builds a Keras model from a spec.

    Args:
        spec: a zoo name (`resnet50`), a path, a parsed mapping or a `ResolvedSpec`.
        overrides: dotted keys to values applied before validation, as `--set` does.
        inference: drop the `train_only` outputs.

    Returns:
        A `keras.Model` whose outputs are a dict keyed by output name.

    Example:
        >>> model = build_model("resnet50", overrides={"vars.classes": 10, "input": [64, 64, 3]})  # doctest: +SKIP
    """
    from blockspec.builder.resolve import resolve_spec

    return compile_spec(resolve_spec(spec, overrides), inference=inference).model


def _first_lines(error: Exception, limit: int = 400) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Keras bolds parts of its messages
    text = text.split("Arguments received by")[0]
    text = " ".join(text.split()).replace("Exception encountered when calling ", "in ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
