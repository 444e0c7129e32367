"""Data sources: where examples come from, split for training, validation and test.

A source yields raw examples, as a user would hand them to the exported model (digits: 8x8 arrays
of 0..16; a folder: decoded RGB images of any size, 0..255; npz arrays; synthetic shapes; a
TensorFlow Datasets name). `load_source` reads one as `train.data` says, checks what it read
(`data_checks`), and `describe` says in one line what a run trains on. Runs of one search share
what they read (`shared_between_runs`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from blockspec.training import data_checks as checks
from blockspec.training.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

_shared: dict[Any, Any] | None = None  # what runs share, inside `shared_between_runs`


@contextlib.contextmanager
def shared_between_runs() -> Iterator[None]:
    """Inside, runs that read the same data share it: read once, preprocessed and cached once.

    The trials of a search train on the same data with other models: without this each trial
    would read its source again (a folder: every image decoded again) and fill a new cache.
    `load_source`, `preprocess_model` and the preprocessed (cached) splits in `make_pipelines`
    return what an earlier call with the same arguments made. Nested uses share the outer one.
    """
    global _shared
    outer = _shared
    _shared = {} if outer is None else outer
    try:
        yield
    finally:
        _shared = outer


def shared(make: Callable[[], Any], *key: Any) -> Any:
    """`make()`, or inside `shared_between_runs` what an earlier call with the same key made.

    The key's parts are JSON-able values (anything else by its repr, so by identity for objects
    without one: keep such objects alive in what `make` returns).
    """
    if _shared is None:
        return make()
    text = json.dumps(key, sort_keys=True, default=repr)
    if text not in _shared:
        _shared[text] = make()
    return _shared[text]


@dataclass
class Split:
    """Unbatched `(image, label)` examples, all of one size, and how many there are."""

    dataset: tf.data.Dataset
    size: int


@dataclass
class Source:
    """What a data source gives.

    Attributes:
        train, validation, test: the splits (`validation`, `test` may be None).
        class_names: one name per label.
        raw_shape: the shape of one example as the source gives it (None for any size); the
            exported model's input shape.
        scale: what raw values are multiplied by.
        name: a short description, for messages.
    """

    train: Split
    validation: Split | None
    test: Split | None
    class_names: list[str]
    raw_shape: tuple[int | None, ...]
    scale: float
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- sources ---------------------------------------------------------------------------------------


def load_source(
    data: dict[str, Any],
    *,
    image_size: tuple[int, int] | None,
    channels: int | None,
    classes: int | None,
    seed: int,
    base_dir: str | Path | None = None,
) -> Source:
    """Read the source that `train.data` names.

    Args:
        data: the `train.data` mapping, defaults filled in.
        image_size: `[H, W]` images are resized to (None for non-image inputs).
        channels: the model input's channels (synthetic images are made with as many).
        classes: the main output's width (the default number of synthetic classes).
        seed: for splits and generated data.
        base_dir: relative `path`s are read from here (the spec's folder), else from the
            working directory.

    Returns:
        The `Source`.
    """
    return shared(
        lambda: _load_source(data, image_size, channels, classes, seed, base_dir),
        "source",
        data,
        image_size,
        channels,
        classes,
        seed,
        str(base_dir),
    )


def _load_source(data, image_size, channels, classes, seed, base_dir) -> Source:
    source = data.get("source", "digits")
    split = validation_fraction(data)
    if source == "digits":
        return _digits(data, split, seed)
    if source == "synthetic":
        from blockspec.training.synthetic import synthetic

        return synthetic(data, split, seed, image_size or (32, 32), channels or 3, classes or 10)
    if source == "npz":
        return _npz(data, split, seed, _resolve_path(data["path"], base_dir), classes)
    if source == "folder":
        return _folder(data, split, seed, _resolve_path(data["path"], base_dir), image_size)
    if source == "tfds":
        return _tfds(data, split, seed, image_size)
    raise DataError(f"unknown data source `{source}`")


def _resolve_path(path: str, base_dir: str | Path | None) -> Path:
    p = Path(os.path.expanduser(path))
    if p.is_absolute() or base_dir is None or p.exists():
        return p
    return Path(base_dir) / p


def _split_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train / validation indices."""
    index = np.arange(len(labels))
    if fraction <= 0:
        return index, index[:0]
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels)
    present = counts[counts > 0]
    held = int(np.ceil(len(labels) * fraction))
    # Stratify when every class can give one example to each side, and each side can hold
    # one of every class.
    fits = present.size and present.min() >= 2 and min(held, len(labels) - held) >= present.size
    stratify = labels if fits else None
    train, val = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def _array_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(tf.data.Dataset.from_tensor_slices((x, y)), len(y))


DIGITS_EXAMPLES = 1797  # scikit-learn's digits


def training_examples(data: dict[str, Any]) -> int | None:
    """How many training examples `train.data` gives, where that is known without reading it
    (digits, synthetic), split as `load_source` splits; None for the others."""
    fraction = validation_fraction(data)
    if data.get("source") == "digits":
        held = math.ceil(DIGITS_EXAMPLES * fraction) if fraction > 0 else 0  # as train_test_split
        return DIGITS_EXAMPLES - held
    if data.get("source") == "synthetic":
        from blockspec.training.synthetic import held_out, sample_count

        samples = sample_count(data)
        return samples - held_out(samples, fraction)
    return None


def validation_fraction(data: dict[str, Any]) -> float:
    """`train.data.validation_split`, 0.2 when not given (0 or null: no validation split)."""
    return float(data.get("validation_split", 0.2) or 0.0)


def _digits(data: dict, fraction: float, seed: int) -> Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype("float32")  # (1797, 8, 8), values 0..16
    y = digits.target.astype("int32")
    train, val = _split_indices(y, fraction, seed)
    return Source(
        train=_array_split(x[train], y[train]),
        validation=_array_split(x[val], y[val]) if len(val) else None,
        test=None,
        class_names=[str(c) for c in digits.target_names],
        raw_shape=(8, 8),
        scale=scale_of(data, 1.0 / 16.0),
        name="digits (scikit-learn, 8x8, 10 classes)",
    )


def scale_of(data: dict, default: float) -> float:
    """`data.scale`, else the source's default."""
    scale = data.get("scale")
    return float(default if scale is None else scale)


def _npz(data: dict, fraction: float, seed: int, path: Path, classes: int | None) -> Source:
    """An npz file: headers checked before reading, then every array checked (`data_checks`)."""
    if not path.is_file():
        raise DataError(f"npz file not found: {path}")
    keys = set(checks.npz_headers(path))
    x_key = data.get("x_key") or ("x" if "x" in keys else "x_train")
    y_key = data.get("y_key") or ("y" if "y" in keys else "y_train")
    for key in (x_key, y_key):
        if key not in keys:
            raise DataError(
                f"{path} has no array `{key}`. Arrays in it: {', '.join(sorted(keys)) or 'none'}. "
                "Set `train.data.x_key` / `y_key`."
            )
    parts = {"train": (x_key, y_key), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}
    read: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names = None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            for part, (xk, yk) in parts.items():
                if xk in keys and yk in keys:
                    read[part] = _checked_pair(path, xk, yk, arrays[xk], arrays[yk], classes)
            if "class_names" in keys:
                names = [str(n) for n in np.asarray(arrays["class_names"]).reshape(-1)]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} could not be read ({type(e).__name__}: {e})") from e
    x, y = read["train"]
    checks.check_counts(path, x_key, len(x), 0.0 if "val" in read else fraction)
    default_scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    read = {k: (v[0].astype("float32"), v[1]) for k, v in read.items()}
    x, y = read["train"]
    val = read.get("val")
    if val is None:
        train_idx, val_idx = _split_indices(y, fraction, seed)
        val = (x[val_idx], y[val_idx]) if len(val_idx) else None
        x, y = x[train_idx], y[train_idx]
    test = read.get("test")
    top = max(int(part[1].max(initial=0)) for part in ((x, y), val, test) if part is not None)
    return Source(
        train=_array_split(x, y),
        validation=_array_split(*val) if val is not None else None,
        test=_array_split(*test) if test is not None else None,
        class_names=names or [str(i) for i in range(top + 1)],
        raw_shape=tuple(int(d) for d in x.shape[1:]),
        scale=scale_of(data, default_scale),
        name=f"npz ({path})",
    )


def _checked_pair(path, x_key, y_key, x, y, classes) -> tuple[np.ndarray, np.ndarray]:
    checks.check_examples(path, x_key, x)
    y = checks.check_labels(path, y_key, y, classes)
    if len(x) != len(y):
        raise DataError(
            f"{path}: `{x_key}` has {len(x)} examples but `{y_key}` has {len(y)} labels"
        )
    return x, y


def _decode(image_size):
    height, width = image_size

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, "float32"), (height, width))
        image.set_shape((height, width, 3))
        return image, label

    return load


SKIPPED: dict[str, list[str]] = {}  # folder -> unreadable images skipped when it was last listed


def _list_folder(root: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Class folders, image paths and labels; every image decoded once, the bad ones skipped.

    An image that cannot train (truncated, a format TensorFlow does not decode under a known
    extension, over `data_checks.IMAGE_PIXEL_LIMIT` pixels) is skipped and counted here, before
    any epoch, rather than ending a run mid-epoch; an empty class folder is warned about.
    """
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders (expected {root}/<class name>/<images>)")
    found = [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((root / name).rglob("*"))
        if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
    ]
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        problems = list(pool.map(checks.image_problem, [f for f, _ in found]))
    paths = [str(f) for (f, _), p in zip(found, problems, strict=True) if p is None]
    labels = [label for (_, label), p in zip(found, problems, strict=True) if p is None]
    why = [f"{f} ({p})" for (f, _), p in zip(found, problems, strict=True) if p is not None]
    skipped = [str(f) for (f, _), p in zip(found, problems, strict=True) if p is not None]
    if skipped:
        # One bad file must not end a long run: skip it, count it, say which.
        shown = "; ".join(why[:3]) + ("; ..." if len(why) > 3 else "")
        print(
            f"warning: skipped {len(skipped)} image(s) in {root} that cannot train: {shown}",
            file=sys.stderr,
        )
    empty = [name for label, name in enumerate(classes) if label not in set(labels)]
    if empty and paths:
        print(
            f"warning: class folder(s) without a usable image in {root}: {', '.join(empty)}; "
            "the model keeps their classes, which training never shows it",
            file=sys.stderr,
        )
    SKIPPED[str(root)] = skipped
    if not paths:
        raise DataError(
            f"{root} has no usable images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders "
            f"({', '.join(classes)})" + (f"; {len(skipped)} skipped" if skipped else "")
        )
    return classes, paths, np.asarray(labels, dtype="int32")


def _folder(data: dict, fraction: float, seed: int, root: Path, image_size) -> Source:
    if image_size is None:
        raise DataError("data source `folder` needs an image input [H, W, C]")
    classes, paths, labels = _list_folder(root)
    load = _decode(image_size)

    def split(p, y):
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(p), y))
        return Split(ds.map(load, num_parallel_calls=AUTOTUNE), len(y))

    if data.get("validation_path"):
        val_root = _resolve_path(data["validation_path"], root.parent)
        val_classes, val_paths, val_labels = _list_folder(val_root)
        if val_classes != classes:
            raise DataError(
                f"the class folders of {val_root} ({', '.join(val_classes)}) differ from "
                f"those of {root} ({', '.join(classes)})"
            )
        train = split(paths, labels)
        val = split(val_paths, val_labels)
    else:
        train_idx, val_idx = _split_indices(labels, fraction, seed)
        paths_arr = np.asarray(paths)
        train = split(paths_arr[train_idx], labels[train_idx])
        val = split(paths_arr[val_idx], labels[val_idx]) if len(val_idx) else None
    return Source(
        train=train,
        validation=val,
        test=None,
        class_names=classes,
        raw_shape=(None, None, 3),
        scale=scale_of(data, 1.0 / 255.0),
        name=f"folder ({root}, {len(classes)} classes"
        + (
            f", {len(SKIPPED[str(root)])} unreadable images skipped)"
            if SKIPPED.get(str(root))
            else ")"
        ),
        extra={"skipped": list(SKIPPED.get(str(root), []))},
    )


def _tfds(data: dict, fraction: float, seed: int, image_size) -> Source:
    name = data["name"]
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(
            f"data source `tfds` (dataset `{name}`) needs the optional package "
            "tensorflow-datasets, which is not installed. Install it with "
            "`pip install 'blockspec[tfds]'` (or `pip install tensorflow-datasets`)."
        ) from e
    try:
        builder = tfds.builder(name, data_dir=data.get("data_dir"))
    except Exception as e:  # tfds raises its own DatasetNotFoundError
        raise DataError(f"TensorFlow Datasets has no dataset `{name}`: {e}") from e
    try:
        if data.get("download", True):
            builder.download_and_prepare()
    except Exception as e:
        raise DataError(
            f"could not download TFDS dataset `{name}` (offline?): {type(e).__name__}: {e}. "
            "Prepare it once on a machine with internet access and copy it into "
            "`train.data.data_dir`, or use another data source."
        ) from e
    info = builder.info
    splits = info.splits
    main = data.get("split") or "train"
    if main not in splits:
        raise DataError(
            f"TFDS dataset `{name}` has no split `{main}`; it has {', '.join(sorted(splits))}"
        )
    val_name = data.get("validation")
    test_name = data.get("test", "test" if "test" in splits and val_name != "test" else None)
    total = int(splits[main].num_examples)
    if val_name:
        train_spec, val_spec = main, val_name
        n_train, n_val = total, int(splits[val_name].num_examples)
    else:
        n_val = round(total * fraction)
        n_train = total - n_val
        train_spec, val_spec = f"{main}[:{n_train}]", (f"{main}[{n_train}:]" if n_val else None)
    features = info.features
    raw = tuple(features["image"].shape)
    resize = image_size is not None and tuple(raw[:2]) != tuple(image_size)

    def pick(example):
        image = tf.cast(example["image"], "float32")
        if resize:
            image = tf.image.resize(image, image_size)
            image.set_shape((*image_size, raw[-1]))
        return image, tf.cast(example["label"], "int32")

    def split(spec, count):
        if spec is None:
            return None
        ds = builder.as_dataset(split=spec, shuffle_files=False)
        return Split(ds.map(pick, num_parallel_calls=AUTOTUNE), count)

    n_test = int(splits[test_name].num_examples) if test_name else 0
    label = features["label"]
    names = list(getattr(label, "names", None) or range(int(label.num_classes)))
    return Source(
        train=split(train_spec, n_train),
        validation=split(val_spec, n_val),
        test=split(test_name, n_test),
        class_names=[str(n) for n in names],
        raw_shape=raw,
        scale=scale_of(data, 1.0 / 255.0),
        name=f"tfds ({name})",
    )


def check_source(source: Source, *, classes: int | None, input_shape) -> None:
    """What a source gives fits the model: its classes fit the output, its examples the input.

    Raises:
        DataError: naming the source and the values that do not fit.
    """
    if classes is not None and len(source.class_names) > classes:
        raise DataError(
            f"{source.name} has {len(source.class_names)} classes, more than the model's "
            f"{classes} outputs. Received: classes={len(source.class_names)}"
        )
    if len(input_shape) != 3:  # not an image: the examples must have the input's shape
        raw = tuple(source.raw_shape)
        want = tuple(input_shape)
        if len(raw) != len(want) or any(
            w is not None and r != w for r, w in zip(raw, want, strict=True)
        ):
            raise DataError(
                f"{source.name} gives examples of shape {list(raw)}; the model input is "
                f"{list(want)}. Received: shape={list(raw)}"
            )
    elif len(source.raw_shape) not in (2, 3) or (
        len(source.raw_shape) == 3 and source.raw_shape[-1] not in (None, 1, 3, 4)
    ):
        raise DataError(
            f"{source.name} gives examples of shape {list(source.raw_shape)}; an image input "
            "takes [H, W] or [H, W, C] with 1, 3 or 4 channels"
        )


def describe(source: Source, geometry: dict[str, Any]) -> str:
    """One line before the first epoch: the data, its counts per split, and the model input."""
    counts = [f"{source.train.size} training"]
    for name, split in (("validation", source.validation), ("test", source.test)):
        if split is not None and split.size:
            counts.append(f"{split.size} {name}")
    raw = "x".join("any" if d is None else str(d) for d in source.raw_shape)
    model = "x".join("any" if d is None else str(d) for d in geometry["input_shape"])
    how = []
    if geometry.get("image_size") and tuple(source.raw_shape[:2]) != tuple(geometry["image_size"]):
        how.append("resized to {}x{}".format(*geometry["image_size"]))
    have = 1 if len(source.raw_shape) == 2 else source.raw_shape[-1]
    if geometry.get("channels") and have not in (None, geometry["channels"]):
        how.append(f"{have} channel(s) made {geometry['channels']}")
    fitted = f" ({', '.join(how)})" if how else ""
    skipped = source.extra.get("skipped") or []
    skip = f"; {len(skipped)} unusable image(s) skipped" if skipped else ""
    return (
        f"Data: {source.name}: {', '.join(counts)} examples of {raw}{fitted}; "
        f"the model input is {model}{skip}."
    )
