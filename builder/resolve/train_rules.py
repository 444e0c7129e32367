"""The rules of the `train` section: `check_train` lists every problem, each with its place.

Pure Python: the resolver calls it once; training trusts what it gets.
"""

from __future__ import annotations

from typing import Any

from blockspec.builder.resolve.checks import (
    boolean,
    choice,
    is_int,
    is_number,
    number,
    one_key,
    positive_int,
    size_pair,
    suggest,
    unknown_choice,
    unknown_keys,
)
from blockspec.builder.resolve.common import not_finite
from blockspec.builder.resolve.train_keys import (
    AUGMENT_LAYERS,
    CLIP_ARGS,
    DATA_KEYS,
    DISTRIBUTE,
    EARLY_STOPPING_KEYS,
    FACTOR_LAYERS,
    FACTOR_RANGES,
    FLIP_MODES,
    OPTIMIZER_ARG_RANGES,
    OPTIMIZER_ARGS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULE_KEYS,
    SCHEDULES,
    SOURCES,
    TRAIN_DEFAULTS,
    TTA_VIEWS,
)

MAX_SEED = 2**32 - 1  # numpy (`keras.utils.set_random_seed`) takes 0 <= seed < 2**32


def per_pixel_labels(train: Any) -> bool:
    """Whether `train.data` gives one label per pixel (`synthetic` with `masks: true`)."""
    data = train.get("data") if isinstance(train, dict) else None
    return (
        isinstance(data, dict) and data.get("source") == "synthetic" and data.get("masks") is True
    )


def check_train(train: Any) -> list[tuple[str, str]]:
    """Every problem in a spec's `train` section.

    Args:
        train: the `train` mapping, values concrete (vars and expressions evaluated).

    Returns:
        `(path, message)` pairs; `path` is relative to `train`, dotted, list indices as numbers
        (`data.source`, `schedule.cosine.warmup_epochs`, `augment.1.random_flip`); `message` in
        Keras' wording.
        Empty when the section is valid.

    Example:
        >>> check_train({"data": {"source": "digts"}})
        [('data.source', "unknown data source `digts`; did you mean `digits`? Received: source='digts'")]
    """
    problems: list[tuple[str, str]] = []
    if train is None:
        return problems
    if not isinstance(train, dict):
        return [("", f"`train` must be a mapping. Received: train={train!r}")]
    unknown_keys(problems, "", train, TRAIN_DEFAULTS, "train key")
    if "data" in train:
        _check_data(problems, train["data"])
    positive_int(problems, train, "batch_size")
    positive_int(problems, train, "epochs")
    if "optimizer" in train:
        _check_optimizer(problems, train["optimizer"])
    if train.get("schedule") is not None:
        _check_schedule(problems, train["schedule"])
    number(problems, train, "weight_decay", low=0.0)
    number(problems, train, "label_smoothing", low=0.0, high=1.0, high_open=True)
    if "augment" in train:
        _check_augment(problems, train["augment"])
        if per_pixel_labels(train) and train["augment"]:
            problems.append(
                (
                    "augment",
                    "`augment` moves or changes images but not their per-pixel labels "
                    "(`data.masks: true`): leave it out for a segmentation task. "
                    f"Received: {len(train['augment'])} augment step(s)",
                )
            )
    choice(problems, train, "precision", PRECISIONS, "precision")
    if "jit_compile" in train and train["jit_compile"] not in (True, False, "auto"):
        problems.append(
            (
                "jit_compile",
                "`jit_compile` must be true, false or `auto`. "
                f"Received: jit_compile={train['jit_compile']!r}",
            )
        )
    choice(problems, train, "distribute", DISTRIBUTE, "distribution strategy")
    if "early_stopping" in train:
        _check_early_stopping(problems, train["early_stopping"])
    boolean(problems, train, "deterministic")
    if "seed" in train and not (is_int(train["seed"]) and 0 <= train["seed"] <= MAX_SEED):
        problems.append(
            (
                "seed",
                f"`seed` must be an integer from 0 to {MAX_SEED} (numpy's range). "
                f"Received: seed={train['seed']!r}",
            )
        )
    if "evaluate" in train:
        _check_evaluate(problems, train["evaluate"])
        tta = train["evaluate"].get("tta") if isinstance(train["evaluate"], dict) else None
        if per_pixel_labels(train) and tta:
            problems.append(
                (
                    "evaluate.tta",
                    "test-time augmentation averages flipped and shifted predictions, which "
                    "would mix other pixels' classes in a per-pixel task (`masks: true`): leave "
                    f"it out. Received: tta={tta!r}",
                )
            )
    return problems


def _check_data(problems, data: Any) -> None:
    if not isinstance(data, dict):
        problems.append(("data", f"`data` must be a mapping. Received: data={data!r}"))
        return
    source = data.get("source", "digits")
    if source not in SOURCES:
        problems.append(
            (
                "data.source",
                unknown_choice("data source", source, SOURCES, "source"),
            )
        )
        allowed = set().union(*DATA_KEYS.values())
    else:
        allowed = set(DATA_KEYS["common"]) | set(DATA_KEYS[source])
    for key in data:
        if key not in allowed:
            others = [s for s, keys in DATA_KEYS.items() if key in keys and s != "common"]
            hint = f" (a key of source `{others[0]}`)." if others else suggest(key, allowed)
            problems.append(
                (
                    f"data.{key}",
                    f"unknown key `{key}` for data source `{source}`{hint} "
                    f"Allowed: {', '.join(sorted(allowed))}.",
                )
            )
    if (
        "image_size" in data
        and data["image_size"] is not None
        and not size_pair(data["image_size"])
    ):
        problems.append(
            (
                "data.image_size",
                "`image_size` must be [height, width], two positive integers. "
                f"Received: image_size={data['image_size']!r}",
            )
        )
    number(problems, data, "validation_split", "data", low=0.0, high=1.0, high_open=True)
    if "cache" in data and data["cache"] not in (True, False, "auto"):
        problems.append(
            (
                "data.cache",
                f"`cache` must be true, false or `auto`. Received: cache={data['cache']!r}",
            )
        )
    if "scale" in data and data["scale"] is not None:
        number(problems, data, "scale", "data", low=0.0, low_open=True)
    if source in ("folder", "npz"):
        path = data.get("path")
        if not isinstance(path, str) or not path:
            problems.append(
                (
                    "data.path",
                    f"data source `{source}` needs `path` "
                    f"({'a directory of class folders' if source == 'folder' else 'an .npz file'}). "
                    f"Received: path={path!r}",
                )
            )
    if source == "tfds":
        name = data.get("name")
        if not isinstance(name, str) or not name:
            problems.append(
                (
                    "data.name",
                    "data source `tfds` needs `name`, a TensorFlow Datasets name (mnist, "
                    f"cifar10, ...). Received: name={name!r}",
                )
            )
        boolean(problems, data, "download", "data")
    if source == "synthetic":
        positive_int(problems, data, "samples", "data")
        if "classes" in data and data["classes"] is not None:
            positive_int(problems, data, "classes", "data")
        number(problems, data, "noise", "data", low=0.0)
        boolean(problems, data, "masks", "data")
    for key in ("x_key", "y_key", "validation_path", "split", "validation", "test", "data_dir"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            problems.append(
                (f"data.{key}", f"`{key}` must be a string. Received: {key}={data[key]!r}")
            )


def _check_optimizer(problems, value: Any) -> None:
    found = one_key(problems, "optimizer", value, "`optimizer`")
    if found is None:
        return
    name, args = found
    if name.lower() not in OPTIMIZERS:
        problems.append(
            (
                "optimizer",
                unknown_choice("optimizer", name, OPTIMIZERS, "optimizer"),
            )
        )
        return
    if args is None:
        return
    if not isinstance(args, dict):
        problems.append(
            (
                f"optimizer.{name}",
                f"the arguments of optimizer `{name}` must be a mapping. Received: {args!r}",
            )
        )
        return
    number(problems, args, "learning_rate", f"optimizer.{name}", low=0.0, low_open=True)
    given = {k: v for k, v in args.items() if k != "weight_decay"}  # said below
    what = f"argument of optimizer `{name}`"
    unknown_keys(problems, f"optimizer.{name}", given, OPTIMIZER_ARGS[name.lower()], what)
    for key, arg in args.items():
        if key != "learning_rate" and not_finite(arg):
            problems.append(
                (
                    f"optimizer.{name}.{key}",
                    f"`{key}` must be a finite number. Received: {key}={arg!r}",
                )
            )
    _check_optimizer_ranges(problems, name.lower(), args, f"optimizer.{name}")
    if "weight_decay" in args:
        problems.append(
            (
                f"optimizer.{name}.weight_decay",
                "set weight decay with `train.weight_decay`, not inside the optimizer. "
                f"Received: weight_decay={args['weight_decay']!r}",
            )
        )


def _check_optimizer_ranges(problems, name: str, args: dict, prefix: str) -> None:
    """The bounds Keras' optimizer classes check when they are made, checked here first."""
    for key, arg in args.items():
        bounds = OPTIMIZER_ARG_RANGES.get((name, key)) or OPTIMIZER_ARG_RANGES.get(("*", key))
        if bounds is not None and is_number(arg):  # not a number: refused above
            number(problems, args, key, prefix, low=bounds[0], high=bounds[1])
    steps = args.get("gradient_accumulation_steps")
    if steps not in (None, 0) and not (is_int(steps) and steps >= 2):
        problems.append(
            (
                f"{prefix}.gradient_accumulation_steps",
                "`gradient_accumulation_steps` must be an integer >= 2 (or 0: none). "
                f"Received: gradient_accumulation_steps={steps!r}",
            )
        )
    clips = [key for key in CLIP_ARGS if args.get(key) is not None]
    if len(clips) > 1:
        problems.append(
            (
                f"{prefix}.{clips[1]}",
                f"give one of {', '.join(CLIP_ARGS)}: Keras clips gradients one way. "
                f"Received: {', '.join(clips)}",
            )
        )


def _check_schedule(problems, value: Any) -> None:
    found = one_key(problems, "schedule", value, "`schedule`")
    if found is None:
        return
    name, args = found
    if name not in SCHEDULES:
        problems.append(
            (
                "schedule",
                unknown_choice("schedule", name, SCHEDULES, "schedule"),
            )
        )
        return
    prefix = f"schedule.{name}"
    if args is None:
        args = {}
    if not isinstance(args, dict):
        problems.append(
            (prefix, f"the arguments of schedule `{name}` must be a mapping. Received: {args!r}")
        )
        return
    unknown_keys(problems, prefix, args, SCHEDULE_KEYS[name], f"argument of schedule `{name}`")
    for key in ("warmup_epochs", "patience", "cooldown"):
        if key in args and (not is_int(args[key]) or args[key] < 0):
            problems.append(
                (
                    f"{prefix}.{key}",
                    f"`{key}` must be a non-negative integer. Received: {key}={args[key]!r}",
                )
            )
    positive_int(problems, args, "epochs", prefix)
    positive_int(problems, args, "every", prefix)
    number(problems, args, "factor", prefix, low=0.0, high=1.0, low_open=True, high_open=True)
    number(problems, args, "alpha", prefix, low=0.0, high=1.0)
    number(problems, args, "min_lr", prefix, low=0.0)
    number(problems, args, "min_delta", prefix, low=0.0)
    if "boundaries" in args:
        b = args["boundaries"]
        if (
            not isinstance(b, list)
            or not b
            or not all(is_int(v) and v > 0 for v in b)
            or sorted(set(b)) != b
        ):
            problems.append(
                (
                    f"{prefix}.boundaries",
                    "`boundaries` must be a non-empty increasing list of epochs. "
                    f"Received: boundaries={b!r}",
                )
            )
        if "every" in args:
            problems.append((prefix, "give `every` or `boundaries`, not both. Received: both"))
    if name == "step" and "every" not in args and "boundaries" not in args:
        problems.append(
            (prefix, "schedule `step` needs `every` (epochs) or `boundaries` (a list of epochs).")
        )
    if "monitor" in args and not isinstance(args["monitor"], str):
        problems.append(
            (
                f"{prefix}.monitor",
                f"`monitor` must be a metric name. Received: monitor={args['monitor']!r}",
            )
        )


def _check_augment(problems, steps: Any) -> None:
    if steps is None:
        return
    if not isinstance(steps, list):
        problems.append(
            ("augment", f"`augment` must be a list of steps. Received: augment={steps!r}")
        )
        return
    known = list(AUGMENT_LAYERS) + list(AUGMENT_LAYERS.values())
    for i, step in enumerate(steps):
        path = f"augment.{i}"
        if isinstance(step, str):
            step = {step: None}
        if not isinstance(step, dict) or len(step) != 1:
            problems.append(
                (
                    path,
                    "an augment step must be a mapping with exactly one key, a Keras "
                    f"preprocessing layer. Received: {step!r}",
                )
            )
            continue
        name, args = next(iter(step.items()))
        path = f"{path}.{name}"
        if name not in known:
            problems.append(
                (
                    path,
                    unknown_choice("augmentation", name, known, "step"),
                )
            )
            continue
        _check_augment_args(problems, path, name, args)


def _check_augment_args(problems, path: str, name: str, args: Any) -> None:
    if name == "random_crop":
        size = args.get("size") if isinstance(args, dict) else args
        if isinstance(args, dict):
            unknown_keys(problems, path, args, ("size", "seed"), "argument of `random_crop`")
        if is_int(size) and size > 0:
            return
        if not size_pair(size):
            problems.append(
                (
                    path,
                    "`random_crop` needs `size: [height, width]` (positive integers). "
                    f"Received: size={size!r}",
                )
            )
    elif name == "random_flip":
        mode = args.get("mode", "horizontal") if isinstance(args, dict) else args
        if mode is not None and mode not in FLIP_MODES:
            problems.append(
                (
                    path,
                    unknown_choice("flip mode", mode, FLIP_MODES, "mode"),
                )
            )
    elif name == "random_translation":
        if isinstance(args, dict):
            unknown_keys(
                problems,
                path,
                args,
                ("height", "width", "fill_mode", "fill_value", "interpolation", "seed"),
                "argument of `random_translation`",
            )
            factors = [args.get("height", 0.0), args.get("width", 0.0)]
        elif isinstance(args, list):
            factors = args
        else:
            factors = [args]
        if not (1 <= len(factors) <= 2) or not all(is_number(f) and 0 <= f <= 1 for f in factors):
            problems.append(
                (
                    path,
                    "`random_translation` takes a factor (fraction of the size, 0 to 1), "
                    f"[height, width], or {{height, width}}. Received: {args!r}",
                )
            )
    elif name in FACTOR_LAYERS:
        if args is not None and not isinstance(args, dict) and not is_number(args):
            if not (isinstance(args, list) and all(is_number(v) for v in args)):
                problems.append(
                    (
                        path,
                        f"`{name}` takes a factor or a mapping of Keras arguments. "
                        f"Received: {args!r}",
                    )
                )
                return
        factor = args.get("factor") if isinstance(args, dict) else args
        factors = factor if isinstance(factor, list) else [factor]
        low, high, closed = FACTOR_RANGES[name]
        if any(
            is_number(f) and not ((f >= low if closed else f > low) and f <= high) for f in factors
        ):
            where = f"{path}.factor" if isinstance(args, dict) else path
            problems.append(
                (
                    where,
                    f"`{name}` takes a factor from {low:g} to {high:g}"
                    f"{'' if closed else f' ({low:g} excluded)'}. Received: factor={factor!r}",
                )
            )
    elif args is not None and not isinstance(args, dict):
        problems.append((path, f"`{name}` takes a mapping of Keras arguments. Received: {args!r}"))


def _check_early_stopping(problems, value: Any) -> None:
    if isinstance(value, bool) or value is None:
        return
    if not isinstance(value, dict):
        problems.append(
            (
                "early_stopping",
                "`early_stopping` must be true, false or a mapping "
                f"({', '.join(EARLY_STOPPING_KEYS)}). Received: early_stopping={value!r}",
            )
        )
        return
    unknown_keys(problems, "early_stopping", value, EARLY_STOPPING_KEYS, "early_stopping key")
    if "patience" in value and (not is_int(value["patience"]) or value["patience"] < 0):
        problems.append(
            (
                "early_stopping.patience",
                "`patience` must be a non-negative integer. "
                f"Received: patience={value['patience']!r}",
            )
        )
    choice(problems, value, "mode", ("auto", "min", "max"), "mode", "early_stopping")


def _check_evaluate(problems, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        problems.append(
            ("evaluate", f"`evaluate` must be a mapping ({{tta: [...]}}). Received: {value!r}")
        )
        return
    unknown_keys(problems, "evaluate", value, ("tta",), "evaluate key")
    tta = value.get("tta")
    if tta is None:
        return
    if not isinstance(tta, list):
        problems.append(
            (
                "evaluate.tta",
                f"`tta` must be a list of views ({', '.join(TTA_VIEWS)}). Received: {tta!r}",
            )
        )
        return
    for i, view in enumerate(tta):
        if view not in TTA_VIEWS:
            problems.append(
                (
                    f"evaluate.tta.{i}",
                    unknown_choice("test-time augmentation", view, TTA_VIEWS, "view"),
                )
            )
