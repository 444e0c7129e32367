"""`blockspec evaluate`: a run's accuracy with and without test-time augmentation (TTA).

TTA averages the predictions over views of each image, as AlexNet's ten crops did:
- `crops`: the center view plus the four corner crops of the model's input size. When the images
  (`image_size`) are larger than the input, the crops come from the image; when they are the same
  size, from the image padded with zeros by an eighth of its size (so they are shifts);
- `flip`: the horizontal mirror of every view.

The views are made after `preprocess` (at `image_size`), with the run's own `model.keras`.
"""

from __future__ import annotations

import importlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from blockspec.builder.resolve.train_rules import per_pixel_labels
from blockspec.errors import UsageError
from blockspec.training import data as data_lib
from blockspec.training.errors import ModelFileError, RunFolderError, TrainingError
from blockspec.training.run_folder import RunFolder, read_record
from blockspec.training.trainer import RUN_FILE


@dataclass
class Evaluation:
    """Accuracy per output, with and without TTA.

    Attributes:
        split: the data evaluated (`test`, `validation`, or `train` when nothing was held out).
        examples: how many.
        views: the TTA views (`flip`, `crops`) and how many predictions each example averages.
        accuracy, tta_accuracy: output name -> accuracy.
        changed: output name -> fraction of examples whose predicted class TTA changed.
        probabilities, tta_probabilities: output name -> (examples, classes) arrays.
    """

    split: str
    examples: int
    views: list[str]
    view_count: int
    accuracy: dict[str, float]
    tta_accuracy: dict[str, float]
    changed: dict[str, float]
    probabilities: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    tta_probabilities: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "examples": self.examples,
            "tta": self.views,
            "views": self.view_count,
            "accuracy": self.accuracy,
            "tta_accuracy": self.tta_accuracy,
            "changed_predictions": self.changed,
        }


def tta_views(
    images: tf.Tensor, input_hw: tuple[int, int], views: list[str], crop_hw=None
) -> list[tf.Tensor]:
    """The views of a batch of preprocessed images, each of the model's input size.

    Args:
        images: `(batch, h, w, c)` at `image_size`.
        input_hw: the model input's `(H, W)`.
        views: any of `flip`, `crops`.
        crop_hw: the training crop (`random_crop`), when the run had one; views are crops of
            this size, resized to the input when it differs.

    Returns:
        The center view first, then the others (5 with crops, doubled by flip).
    """
    height, width = crop_hw or input_hw
    h, w = int(images.shape[1]), int(images.shape[2])
    center = images
    if (h, w) != (height, width):
        center = keras.layers.CenterCrop(height, width)(images)
    out = [center]
    if "crops" in views:
        canvas = images
        if h < height + 2 or w < width + 2:
            pad_h, pad_w = max(1, height // 8), max(1, width // 8)
            canvas = tf.pad(center, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
        ch, cw = int(canvas.shape[1]), int(canvas.shape[2])
        for top, left in ((0, 0), (0, cw - width), (ch - height, 0), (ch - height, cw - width)):
            out.append(canvas[:, top : top + height, left : left + width, :])
    if "flip" in views:
        out += [tf.reverse(v, axis=[2]) for v in list(out)]
    if (height, width) != tuple(input_hw):
        out = [tf.image.resize(v, input_hw) for v in out]
    return out


def register_custom_layers() -> None:
    """Import every module of `blocks` (and the compiler), so blockspec's Keras layers are
    registered and a `model.keras` that uses them (LRN, ...) loads with `safe_mode=True`."""
    import pkgutil

    for package in ("blockspec.blocks", "blockspec.builder"):
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            if package == "blockspec.blocks" or info.name == "compile":
                importlib.import_module(f"{package}.{info.name}")


def evaluate_run(
    run_dir: str | Path, tta: list[str] | None = None, batch_size: int | None = None
) -> Evaluation:
    """Evaluate a run folder's `model.keras` on its held-out data, with and without TTA.

    Args:
        run_dir: a folder written by `blockspec train`.
        tta: views (`flip`, `crops`); None: the spec's `train.evaluate.tta` (none by default).
        batch_size: default: the run's batch size.

    Returns:
        An `Evaluation`; also written to `run_dir/evaluate.json`.
    """
    run_dir = Path(run_dir)
    model_path = run_dir / "model.keras"
    if not (run_dir / RUN_FILE).is_file() or not model_path.is_file():
        raise TrainingError(
            f"{run_dir} is not a finished run folder (it needs {RUN_FILE} and model.keras; "
            "`blockspec train SPEC --out DIR` writes them)"
        )
    with RunFolder.attach(run_dir) as folder:
        result = _evaluate(run_dir, model_path, tta, batch_size)
        folder.write_json("evaluate.json", result.to_json())
    return result


def load_model_file(path: str | Path) -> keras.Model:
    """`keras.saving.load_model(path, safe_mode=True)`, every failure a `ModelFileError`.

    Safe mode refuses what would run code on loading (a `Lambda` layer, a class from a module
    such as `os`); a truncated or damaged file is told as such, not as "File not found".
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path} not found")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is damaged or truncated: not a .keras archive ({path.stat().st_size} bytes)"
        )
    register_custom_layers()
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # Keras raises ValueError, TypeError, KeyError, OSError, ...
        text = " ".join(str(e).split())[:300] or type(e).__name__
        if "safe_mode" in text or "safe mode" in text or "arbitrary code" in text:
            raise ModelFileError(f"{path} is refused by safe mode: {text}") from e
        raise ModelFileError(f"{path} cannot be loaded ({type(e).__name__}: {text})") from e


def _evaluate(run_dir: Path, model_path: Path, tta, batch_size) -> Evaluation:
    info = read_record(run_dir / RUN_FILE, "; train the run again with --overwrite")
    try:
        cfg = info["train"]
        views = list(
            # Off unless asked for: a flip or a shifted crop is not the same class for every
            # data set (a mirrored digit is another digit).
            tta if tta is not None else (cfg.get("evaluate", {}).get("tta") or [])
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise RunFolderError(
            f"{run_dir / RUN_FILE} is damaged (no `{e}`); train the run again with --overwrite"
        ) from e
    if views and per_pixel_labels(cfg):
        raise UsageError(
            f"{run_dir} predicts a class per pixel: test-time augmentation averages the "
            "predictions of flipped and shifted images, which would mix other pixels' classes. "
            f"Evaluate it without --tta. Received: tta={views}"
        )
    model = load_model_file(model_path)
    try:
        preprocess = model.get_layer("preprocess")
        network = model.get_layer("network")
    except ValueError as e:
        raise ModelFileError(f"{model_path} is not a model blockspec trained ({e})") from e
    image_size = info.get("image_size")
    input_shape = info["input_shape"]
    if image_size is None and views:
        raise TrainingError(
            f"test-time augmentation needs an image model; this run's input is {input_shape}"
        )
    source = data_lib.load_source(
        cfg["data"],
        image_size=tuple(image_size) if image_size else None,
        channels=input_shape[-1] if image_size else None,
        classes=info.get("classes"),
        seed=int(cfg["seed"]),
        base_dir=info.get("base_dir"),
    )
    split_name, split = next(
        (n, s)
        for n, s in (
            ("test", source.test),
            ("validation", source.validation),
            ("train", source.train),
        )
        if s is not None and s.size
    )
    outputs = [o["name"] for o in info["outputs"] if not o["train_only"]]
    input_hw = (
        tuple(d or s for d, s in zip(input_shape[:2], image_size, strict=True))
        if image_size
        else None
    )

    @tf.function(reduce_retracing=True)
    def predict(x):
        return network(x, training=False)

    plain: dict[str, list[np.ndarray]] = {n: [] for n in outputs}
    averaged: dict[str, list[np.ndarray]] = {n: [] for n in outputs}
    labels = []
    count = 1
    for x, y in split.dataset.batch(batch_size or int(cfg["batch_size"])):
        images = preprocess(x, training=False)
        if image_size is None:
            batch_views = [images]
        else:
            batch_views = tta_views(images, input_hw, views, info.get("crop_size"))
        count = len(batch_views)
        predictions = [predict(v) for v in batch_views]
        for n in outputs:
            stack = np.stack([np.asarray(p[n], dtype="float32") for p in predictions])
            plain[n].append(stack[0])
            averaged[n].append(stack.mean(axis=0))
        labels.append(np.asarray(y))
    truth = np.concatenate(labels)
    probabilities = {n: np.concatenate(v) for n, v in plain.items()}
    tta_probabilities = {n: np.concatenate(v) for n, v in averaged.items()}
    accuracy, tta_accuracy, changed = {}, {}, {}
    for n in outputs:
        before, after = probabilities[n].argmax(-1), tta_probabilities[n].argmax(-1)
        accuracy[n] = float((before == truth).mean())
        tta_accuracy[n] = float((after == truth).mean())
        changed[n] = float((before != after).mean())
    result = Evaluation(
        split=split_name,
        examples=len(truth),
        views=views,
        view_count=count,
        accuracy=accuracy,
        tta_accuracy=tta_accuracy,
        changed=changed,
        probabilities=probabilities,
        tta_probabilities=tta_probabilities,
    )
    return result
