"""`outputs`: which step each output reads, its activation, loss, loss weight and metrics."""

from __future__ import annotations

import math
from typing import Any

from blockspec.builder.errors import did_you_mean, shorten
from blockspec.builder.resolve.common import INVALID, NAME_RULE, OUTPUT_KEYS, Scope, is_name
from blockspec.builder.spec import OutputSpec, Step

# Names Keras resolves without importing anything (keras 3: `keras.activations.get`,
# `keras.losses.get`, `Model.compile(metrics=...)`); tests/test_resolve_outputs.py pins them.
ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign",
    "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink",
    "threshold",
)  # fmt: skip
LOSSES = (
    "binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
    "categorical_focal_crossentropy", "categorical_hinge", "circle", "cosine_similarity", "ctc",
    "dice", "hinge", "huber", "kl_divergence", "log_cosh", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_error", "mean_squared_logarithmic_error",
    "poisson", "sparse_categorical_crossentropy", "squared_hinge", "tversky",
    "bce", "kld", "mae", "mape", "mse", "msle",
)  # fmt: skip
CROSSENTROPY = ("sparse_categorical_crossentropy", "categorical_crossentropy")
# Metrics Keras builds from a name alone (IoU, PrecisionAtRecall, ... need arguments: refused).
# (`crossentropy`/`ce` are compile's shorthands for a loss, not a metric: Keras refuses them.)
METRICS = (
    "accuracy", "acc", "auc", "binary_accuracy", "binary_crossentropy",
    "binary_io_u", "categorical_accuracy", "categorical_crossentropy", "categorical_hinge",
    "concordance_correlation", "cosine_similarity", "f1_score", "f_beta_score",
    "false_negatives", "false_positives", "hinge", "kl_divergence", "log_cosh_error",
    "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_error",
    "mean_squared_logarithmic_error", "pearson_correlation", "poisson", "precision",
    "r2_score", "recall", "root_mean_squared_error", "sparse_categorical_accuracy",
    "sparse_categorical_crossentropy", "sparse_top_k_categorical_accuracy", "squared_hinge",
    "top_k_categorical_accuracy", "true_negatives", "true_positives",
    "bce", "mae", "mape", "mse", "msle",
)  # fmt: skip

# What the data's labels become for an output (training/optim.py `objectives`), and the metrics
# Keras can compare with them: class ids (sparse crossentropy, the default loss) only meet the
# sparse metrics and `accuracy`; one-hot rows (categorical crossentropy, or label smoothing) meet
# all but, per pixel, the 2-D-only scores; one number per example (any other loss) meets all but
# those that need a score per class or targets of the output's rank.
CLASS_ID_METRICS = (
    "accuracy", "acc", "sparse_categorical_accuracy", "sparse_categorical_crossentropy",
    "sparse_top_k_categorical_accuracy",
)  # fmt: skip
TWO_D_METRICS = ("f1_score", "f_beta_score", "r2_score")
NOT_PER_NUMBER = (
    "binary_crossentropy", "bce", "categorical_crossentropy", "f1_score", "f_beta_score",
    "top_k_categorical_accuracy", "sparse_categorical_crossentropy",
)  # fmt: skip


def metric_target_problem(metric: str, loss: Any, smoothing: float, per_pixel: bool) -> str | None:
    """Why Keras cannot compute `metric` on the targets training makes for `loss`, or None."""
    loss = "sparse_categorical_crossentropy" if loss is None else loss  # training's default
    if not isinstance(loss, str):
        return None
    key = loss.lower()
    if key in CROSSENTROPY and (key == "categorical_crossentropy" or smoothing):
        if per_pixel and metric in TWO_D_METRICS:
            return (
                f"`{metric}` takes (batch, classes) scores, and this output gives one score per "
                "class per pixel"
            )
        return None
    if key == "sparse_categorical_crossentropy":
        if metric in CLASS_ID_METRICS:
            return None
        return (
            f"`{metric}` compares scores with targets of the same shape, but with "
            "`sparse_categorical_crossentropy` (the default loss) the targets are class ids. Use "
            "`loss: categorical_crossentropy` (one-hot targets) for it, or a metric for class "
            f"ids: {', '.join(CLASS_ID_METRICS[2:])}"
        )
    if metric in NOT_PER_NUMBER:
        return (
            f"`{metric}` needs a score per class or targets of the output's shape, but with "
            f"`{key}` the target is one number per example"
        )
    return None


class OutputsPart:
    """The resolver's `outputs` rules (mixed into `Resolver`)."""

    def resolve_outputs(self, raw: Any, top: Scope, network: list[Step]) -> list[OutputSpec]:
        if raw is None:
            if not network:
                return []
            return [OutputSpec(name="output", source=network[-1].name)]
        if not isinstance(raw, dict) or not raw:
            self.error(
                ("outputs",),
                "`outputs` maps output names to {from, activation, loss, ...}. "
                f"Received: {shorten(raw)}",
            )
            return []
        outputs = []
        for name, spec in raw.items():
            out = self.resolve_output(name, spec, top, network)
            if out is not None:
                outputs.append(out)
        if outputs and all(o.train_only for o in outputs):
            self.error(
                ("outputs",), "every output is `train_only`: the inference model would have none"
            )
        return outputs

    def resolve_output(
        self, name: Any, spec: Any, top: Scope, network: list[Step]
    ) -> OutputSpec | None:
        path = ("outputs", name)
        if not is_name(name):
            self.error(path, f"an output name is {NAME_RULE}. Received: {shorten(name)}")
            return None
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            self.error(
                path,
                "an output is a mapping {from, activation, loss, loss_weight, metrics, "
                f"train_only}}. Received: {shorten(spec)}",
            )
            return None
        # Key by key: an output may be named `tune` without becoming a search space.
        spec = {
            k: self.value(v, (*path, k), self.vars, f"outputs/{name}/{k}") for k, v in spec.items()
        }
        for key in spec:
            if key not in OUTPUT_KEYS:
                self.error(
                    (*path, key), f"unknown output key `{key}`.{did_you_mean(key, OUTPUT_KEYS)}"
                )
        if "from" in spec:  # (1.1) `from: "head${levels}"`, as a step's `from`
            spec["from"] = self.interpolate(spec["from"], (*path, "from"), self.vars, "outputs")
            if spec["from"] is INVALID:
                return None
        source_name = spec.get("from", name)
        source = top.lookup(source_name) if isinstance(source_name, str) else None
        dropped = top.absent_at(source_name) if source is None else None
        if dropped is not None:
            self.error(
                (*path, "from") if "from" in spec else path,
                f"output `{name}` reads step `{source_name}`, which does not exist: its `when` is "
                f"false or its `repeat` is 0 (at {self.doc.mark(dropped)}). Received: from={source_name}",
            )
            return None
        if source is None and (not network or top.is_broken(source_name)):
            return None  # the step it reads was refused, and said why
        if source is None:
            self.error(
                (*path, "from") if "from" in spec else path,
                f"output `{name}` reads no step: name a step with `from`, or name a step "
                f"`{name}`.{did_you_mean(source_name, top.visible())} Received: from={source_name}",
            )
            return None
        activation = self.keras_name(spec.get("activation"), (*path, "activation"), ACTIVATIONS)
        loss = self.keras_name(spec.get("loss"), (*path, "loss"), LOSSES)
        metrics = self.output_metrics(spec, path)
        weight = spec.get("loss_weight", 1.0)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight < 0
        ):
            self.error(
                (*path, "loss_weight"),
                f"`loss_weight` must be a finite number >= 0. Received: loss_weight={weight!r}",
            )
            weight = 1.0
        train_only = spec.get("train_only", False)
        if not isinstance(train_only, bool):
            self.error(
                (*path, "train_only"),
                f"`train_only` must be true or false. Received: {shorten(train_only)}",
            )
            train_only = False
        if activation == "softmax" and _activation_of(network, source) == "softmax":
            self.warn(
                (*path, "activation"),
                f"output `{name}` applies softmax to step `{source}`, which already ends in "
                "softmax: a softmax of probabilities trains poorly; drop one of them",
            )
        return OutputSpec(name, source, activation, loss, float(weight), metrics, train_only)

    def keras_name(self, value: Any, path: tuple, known) -> str | None:
        """`value` if it names a Keras object of that kind (`known`); else a problem and None."""
        what = {ACTIVATIONS: "activation", LOSSES: "loss", METRICS: "metric"}[known]
        if value is None or self.screen_object(path, value, names_only=True):
            return None
        if not isinstance(value, str) or value not in known:
            self.error(
                path,
                f"unknown {what}: give a Keras {what} name.{did_you_mean(value, known)} "
                f"Received: {what}={shorten(value)}",
            )
            return None
        return value

    def output_metrics(self, spec: dict, path: tuple) -> tuple[str, ...]:
        metrics = spec.get("metrics", [])
        if isinstance(metrics, str):
            metrics = [metrics]
        if not isinstance(metrics, list):
            self.error(
                (*path, "metrics"),
                f"`metrics` is a list of metric names. Received: {shorten(metrics)}",
            )
            return ()
        found = []
        for index, metric in enumerate(metrics):
            name = self.keras_name(metric, (*path, "metrics", index), METRICS)
            if name is not None:
                found.append(name)
        return tuple(found)


def metric_target_problems(
    raw: Any, outputs: list[OutputSpec], smoothing: float, per_pixel: bool
) -> list[tuple[tuple, str]]:
    """(path, message) of each output metric that cannot meet its output's training targets."""
    problems = []
    for out in outputs:
        written = raw.get(out.name) if isinstance(raw, dict) else None
        written = written.get("metrics") if isinstance(written, dict) else None
        indices = _written_indices(written, out.metrics)
        for kept, metric in enumerate(out.metrics):
            message = metric_target_problem(metric, out.loss, smoothing, per_pixel)
            if message:
                where = ("outputs", out.name, "metrics", *indices.get(kept, ()))
                problems.append((where, f"{message}. Received: metric={metric}"))
    return problems


def reported_names(outputs: list[OutputSpec]) -> list[str]:
    """What Keras names the numbers a trial reports, as training compiles the outputs: `loss`
    and each metric, prefixed by the output's name when the model has several, and `val_` each."""
    names = ["loss"]
    for out in outputs:
        prefix = f"{out.name}_" if len(outputs) > 1 else ""
        if len(outputs) > 1:
            names.append(f"{prefix}loss")
        names += [f"{prefix}{metric}" for metric in listed_metrics(out, outputs)]
    return [*names, *(f"val_{name}" for name in names)]


def listed_metrics(out: OutputSpec, outputs: list[OutputSpec]) -> list[str]:
    """The metrics training compiles for `out` (`training.optim.objectives` asks here): its
    own; when no output lists any, `accuracy` on the first output that is not train-only and
    has a crossentropy loss (the default loss is one)."""
    if any(o.metrics for o in outputs):
        return list(out.metrics)
    first = next((o for o in outputs if not o.train_only and _crossentropy(o.loss)), None)
    return ["accuracy"] if first is not None and first.name == out.name else []


def _crossentropy(loss: Any) -> bool:
    loss = "sparse_categorical_crossentropy" if loss is None else loss  # training's default
    return isinstance(loss, str) and loss.lower() in CROSSENTROPY


def watched_monitors(config) -> list[tuple[str, tuple, str]]:
    """What early stopping and a `reduce_on_plateau` schedule watch: (the key, where the monitor
    is written, its name). `validate` checks the names; training, that the data has them."""
    watched = []
    stopping = config.early_stopping
    if stopping is not None:
        raw = config.raw.get("early_stopping")
        path = ("train", "early_stopping", "monitor") if isinstance(raw, dict) else ("train",)
        watched.append(("early_stopping", path, stopping.monitor))
    if config.schedule is not None and config.schedule.name == "reduce_on_plateau":
        path = ("train", "schedule", "reduce_on_plateau", "monitor")
        key = "schedule.reduce_on_plateau"
        watched.append((key, path, config.schedule.args.get("monitor", "val_loss")))
    return watched


def monitor_problems(outputs: list[OutputSpec], config) -> list[tuple[tuple, str]]:
    """(path, message) of an early-stopping or reduce-on-plateau `monitor` no epoch reports
    (Keras cannot tell whether to maximise `val_acc`, and stopped the run at its start)."""
    watched = [(path, name) for _, path, name in watched_monitors(config)]
    reported, why = reported_names(outputs), ""
    data = config.data
    if data.source in ("digits", "synthetic") and not data.validation_split:
        reported = [n for n in reported if not n.startswith("val_")]
        why = " (no validation data: `validation_split` is 0)"
    return [
        (
            path,
            f"no epoch reports `{name}`{why}.{did_you_mean(name, reported)} An epoch reports "
            f"{', '.join(reported)}. Received: monitor={shorten(name)}",
        )
        for path, name in watched
        if reported and name not in reported
    ]


def _written_indices(written: Any, kept: tuple) -> dict[int, tuple[int]]:
    """Where each kept metric stands in the list written (refused ones were left out)."""
    if not isinstance(written, list):
        return {}
    found, position = {}, 0
    for index, entry in enumerate(written):
        if position < len(kept) and entry == kept[position]:
            found[position] = (index,)
            position += 1
    return found


def _activation_of(steps: list[Step], name: str) -> Any:
    """The `activation` argument of the step named `name` (searched through nested steps)."""
    for step in steps:
        if step.name == name:
            return step.args.get("activation")
        for children in step.children:
            found = _activation_of(children, name)
            if found is not None:
                return found
    return None
