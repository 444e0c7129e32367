"""`blockspec bench`: training and inference images/second and peak memory of a spec, here.

On a GPU the default is the fast path: mixed precision (`mixed_float16`) and XLA
(`jit_compile=True`); on a CPU, float32 without XLA. Data is one synthetic batch, resident on the
device, so the numbers are the model's, not the input pipeline's.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


@dataclass
class BenchReport:
    """What `bench_spec` measured.

    Attributes:
        spec: the spec's name.
        device: `GPU (<name>)` or `CPU (<model>, N cores)`.
        precision: the Keras dtype policy the model was built and trained under.
        jit: whether XLA compiled the steps.
        batch: images per step.
        input_shapes: each input's shape, batch excluded.
        steps: timed steps (after `warmup` untimed ones).
        train_images_per_s: training throughput (forward, backward, optimizer update).
        infer_images_per_s: inference throughput (forward, `training=False`, train-only outputs
            removed).
        train_step_ms: milliseconds per training step.
        peak_memory_bytes: GPU: the allocator's peak while benchmarking; CPU: the process's peak
            resident set size.
        memory_kind: which of the two `peak_memory_bytes` is.
        baseline_memory_bytes: on CPU, the process's peak RSS before the model was built.
        params: the model's parameter count.
    """

    spec: str
    device: str
    precision: str
    jit: bool
    batch: int
    input_shapes: dict[str, list[int]]
    steps: int
    warmup: int
    train_images_per_s: float
    infer_images_per_s: float
    train_step_ms: float
    peak_memory_bytes: int
    memory_kind: str
    baseline_memory_bytes: int = 0
    params: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        shapes = ", ".join("x".join(map(str, s)) for s in self.input_shapes.values())
        lines = [
            f"{self.spec} on {self.device}: {self.precision}, "
            f"jit_compile {'on' if self.jit else 'off'}, batch {self.batch}, input {shapes}, "
            f"{self.params:,} parameters",
            f"  training   {self.train_images_per_s:10.1f} images/s  "
            f"({self.train_step_ms:.1f} ms/step, {self.steps} steps after {self.warmup} warm-up)",
            f"  inference  {self.infer_images_per_s:10.1f} images/s",
        ]
        memory = f"  peak memory {_gib(self.peak_memory_bytes)} ({self.memory_kind}"
        if self.baseline_memory_bytes:
            memory += f"; {_gib(self.baseline_memory_bytes)} before building the model"
        lines.append(memory + ")")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def bench_spec(
    spec: Any,
    overrides: dict[str, Any] | None = None,
    *,
    batch: int | None = None,
    steps: int = 20,
    warmup: int = 3,
    precision: str = "auto",
    jit: bool | None = None,
    limits: Any = None,
) -> BenchReport:
    """Measures training and inference throughput and peak memory of a spec on this device.

    Args:
        spec: a zoo name, a path, a mapping or a `ResolvedSpec`.
        overrides: `--set` overrides (`{"input": [64, 64, 3]}`).
        batch: images per step; default the spec's `train.batch_size`, else 32.
        steps: timed steps, for training and for inference.
        warmup: untimed steps first (tracing, XLA compilation, allocator warm-up).
        precision: `auto` (mixed_float16 on GPU, float32 on CPU), `float32`, `mixed_float16`,
            `mixed_bfloat16`.
        jit: XLA; None means on with a GPU, off without.
        limits: `builder.load.Limits` for resolving.

    Returns:
        The report.

    Example:
        >>> print(bench_spec("resnet50", batch=8, steps=2).text())  # doctest: +SKIP
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision is one of {', '.join(PRECISIONS)}. Received: {precision!r}")
    if steps < 1 or warmup < 0 or (batch is not None and batch < 1):
        raise ValueError(
            f"steps and batch must be positive, warmup >= 0. Received: steps={steps}, "
            f"batch={batch}, warmup={warmup}"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from blockspec.builder.compile import compile_spec, dtype_policy
    from blockspec.builder.load import DEFAULT_LIMITS
    from blockspec.builder.resolve import resolve_spec

    gpus = tf.config.list_physical_devices("GPU")
    if precision == "auto":
        precision = "mixed_float16" if gpus else "float32"
    if jit is None:
        jit = bool(gpus)
    device = _device_name(gpus)
    baseline = 0 if gpus else _peak_rss_bytes()

    resolved = resolve_spec(spec, overrides, limits=limits or DEFAULT_LIMITS)
    batch = batch or int((resolved.train or {}).get("batch_size") or 32)
    with dtype_policy(precision):
        model = compile_spec(resolved).model
        notes: list[str] = []
        x, shapes = _inputs(resolved, batch, notes)
        optimizer, losses, labels = _objectives(resolved, model, batch, steps)
        model.compile(optimizer=optimizer, loss=losses, jit_compile=jit)
        if gpus:  # resident on the device: no host-to-device copy inside the timed steps
            with tf.device("/GPU:0"):
                x, labels = tf.nest.map_structure(tf.identity, (x, labels))
        train_seconds = _time_training(model, x, labels, steps, warmup)
        infer_seconds = _time_inference(_inference_model(resolved, model), x, steps, warmup, jit)
        if gpus:
            peak = int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
            kind = "GPU allocator peak"
        else:
            peak = _peak_rss_bytes()
            kind = "process peak RSS"
        params = int(model.count_params())
    return BenchReport(
        spec=resolved.name,
        device=device,
        precision=precision,
        jit=bool(jit),
        batch=batch,
        input_shapes=shapes,
        steps=steps,
        warmup=warmup,
        train_images_per_s=batch * steps / train_seconds,
        infer_images_per_s=batch * steps / infer_seconds,
        train_step_ms=1000 * train_seconds / steps,
        peak_memory_bytes=peak,
        memory_kind=kind,
        baseline_memory_bytes=baseline,
        params=params,
        notes=notes,
    )


def _device_name(gpus) -> str:
    """The device the benchmark runs on, for the report (its memory statistics reset)."""
    import tensorflow as tf

    if not gpus:
        return f"CPU ({_cpu_name()}, {os.cpu_count()} cores)"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    tf.config.experimental.reset_memory_stats("GPU:0")
    return f"GPU ({name})"


def _time_training(model, x, labels, steps: int, warmup: int) -> float:
    """Seconds for `steps` training steps, after `warmup` untimed ones."""
    for _ in range(warmup):
        model.train_on_batch(x, labels)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, labels)  # returns the loss: waits for the step
    return time.perf_counter() - start


def _time_inference(inference, x, steps: int, warmup: int, jit: bool) -> float:
    """Seconds for `steps` forward passes in inference mode, after the warm-up ones."""
    import tensorflow as tf

    forward = tf.function(lambda t: inference(t, training=False), jit_compile=jit)
    for _ in range(warmup or 1):
        _sync(forward(x))
    start = time.perf_counter()
    out = None
    for _ in range(steps):
        out = forward(x)
    _sync(out)
    return time.perf_counter() - start


def _inputs(resolved, batch: int, notes: list[str]):
    """One synthetic batch per input: normal floats, zero integers; None dimensions become 32."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    tensors, shapes = {}, {}
    for spec_input in resolved.inputs:
        shape = [32 if d is None else int(d) for d in spec_input.shape]
        if None in spec_input.shape:
            notes.append(f"input `{spec_input.name}`: unknown dimensions set to 32")
        dtype = spec_input.dtype
        if dtype == "string":
            raise ValueError(f"bench needs numeric inputs; `{spec_input.name}` is a string input")
        if dtype.startswith(("float", "bfloat")):
            value = tf.constant(rng.standard_normal((batch, *shape), dtype=np.float32))
            value = tf.cast(value, dtype)
        else:
            value = tf.zeros((batch, *shape), dtype=dtype)
        tensors[spec_input.name] = value
        shapes[spec_input.name] = shape
    x = next(iter(tensors.values())) if len(tensors) == 1 else tensors
    return x, shapes


def _objectives(resolved, model, batch: int, steps: int):
    """The optimizer and losses `blockspec train` would use, and one batch of targets."""
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(1)
    try:
        from blockspec.training.config import with_defaults
        from blockspec.training.optim import make_optimizer, objectives

        train = with_defaults(resolved.train)
        optimizer = make_optimizer(train, steps_per_epoch=max(1, steps))
        obj = objectives(resolved.outputs, model)
        losses, one_hot = obj.loss, obj.one_hot
    except ImportError:  # `training/` not installed: plain SGD and cross-entropy
        optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
        losses = {
            out.name: keras.losses.SparseCategoricalCrossentropy(
                from_logits=out.activation in (None, "linear")
            )
            for out in resolved.outputs
        }
        one_hot = {}
    labels = {}
    for out in resolved.outputs:
        shape = tuple(int(d) for d in model.get_layer(out.name).output.shape[1:])
        loss = losses[out.name]
        kind = type(loss).__name__ if not isinstance(loss, str) else loss
        if out.name in one_hot:
            labels[out.name] = tf.one_hot(rng.integers(0, one_hot[out.name], batch), shape[-1])
        elif "SparseCategorical" in kind or kind == "sparse_categorical_crossentropy":
            labels[out.name] = tf.constant(rng.integers(0, shape[-1], (batch, *shape[:-1])))
        elif "Binary" in kind or kind == "binary_crossentropy":
            labels[out.name] = tf.constant(rng.integers(0, 2, (batch, *shape)).astype("float32"))
        else:
            labels[out.name] = tf.zeros((batch, *shape))
    return optimizer, losses, labels


def _inference_model(resolved, model):
    """The model without its `train_only` outputs, sharing the trained layers."""
    import keras

    keep = [out for out in resolved.outputs if not out.train_only]
    if len(keep) == len(resolved.outputs):
        return model
    outputs = {out.name: model.get_layer(out.name).output for out in keep}
    return keras.Model(inputs=model.input, outputs=outputs, name=f"{model.name}_inference")


def _sync(outputs) -> None:
    """Waits for the device: reads one value of the result back to the host."""
    import tensorflow as tf

    first = tf.nest.flatten(outputs)[0]
    _ = first[0].numpy() if first.shape.rank else first.numpy()
