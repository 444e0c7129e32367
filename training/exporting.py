"""`blockspec export RUN|MODEL --format saved_model|onnx|litert [-o PATH] [--quantize int8|float16]`.

Writes the inference model in a serving or mobile format, reloads what it wrote with that format's
own runtime (`tf.saved_model.load`, onnxruntime, the LiteRT interpreter), runs both on the same
inputs and reports the largest difference. A run folder's `model.keras` already takes raw examples
(preprocessing inside, train-only heads gone); its data source gives the inputs, the
representative examples for int8, and the labels for the accuracy of each. A model file is taken
as it is, with generated inputs.

TensorFlow is imported by the functions that need it, so `cli.py` can add the arguments cheaply.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blockspec.training.errors import TrainingError

FORMATS = ("saved_model", "onnx", "litert")
QUANTIZE = ("int8", "float16")
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
SUFFIX = {"saved_model": "", "onnx": ".onnx", "litert": ".tflite"}
EXAMPLES = 512  # compared between Keras and the export (all of a smaller validation split)
REPRESENTATIVE = 200  # training examples that calibrate int8


class ExportError(TrainingError):
    """The model could not be exported, or the format's package is missing."""


@dataclass
class Export:
    """What `export_model` wrote and measured.

    Attributes:
        path: the exported file (a folder for saved_model).
        format, quantize: as asked.
        runtime: what reloaded it.
        examples, split: how many inputs were compared, and where they came from
            (`validation`, `test`, `train` of the run's data, or `generated`).
        difference: output name -> largest absolute difference from the Keras model.
        accuracy, exported_accuracy: of the main output on those examples (run folders only).
        changed: how many of those examples the export classifies differently from Keras.
    """

    path: Path
    format: str
    quantize: str | None
    runtime: str
    examples: int
    split: str
    difference: dict[str, float]
    seconds: float
    bytes: int
    accuracy: float | None = None
    exported_accuracy: float | None = None
    changed: int | None = None

    @property
    def max_difference(self) -> float:
        return max(self.difference.values())

    def lines(self) -> list[str]:
        kind = self.format + (f" {self.quantize}" if self.quantize else "")
        size = f"{self.bytes / 1e6:.2f} MB" if self.bytes >= 1e5 else f"{self.bytes / 1e3:.1f} kB"
        out = [
            f"wrote {self.path} ({kind}, {size}) in {self.seconds:.1f} s",
            f"reloaded with {self.runtime}; {self.examples} {self.split} examples: largest "
            f"|difference| {self.max_difference:.3g} ("
            + ", ".join(f"{k} {v:.3g}" for k, v in self.difference.items())
            + ")",
        ]
        if self.accuracy is not None and self.exported_accuracy is not None:
            change = self.exported_accuracy - self.accuracy
            out.append(
                f"accuracy on {self.examples} {self.split} examples: Keras {self.accuracy:.2%}, "
                f"{kind} {self.exported_accuracy:.2%} ({change:+.2%}; "
                f"{self.changed} predictions changed)"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "quantize": self.quantize,
            "runtime": self.runtime,
            "examples": self.examples,
            "split": self.split,
            "max_difference": self.max_difference,
            "difference": self.difference,
            "accuracy": self.accuracy,
            "exported_accuracy": self.exported_accuracy,
            "changed_predictions": self.changed,
            "seconds": self.seconds,
            "bytes": self.bytes,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `export` command's arguments (cli.py calls this)."""
    parser.add_argument("source", metavar="RUN|MODEL", help="a run folder or a .keras model file")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="default: RUN/export/model.<ext>, or beside MODEL"
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE,
        help="litert only: int8 (calibrated on the run's training data) or float16 weights",
    )


def export_command(
    source: str, format: str, output: str | None = None, quantize: str | None = None
) -> int:
    """`blockspec export`: print what was written and how far it is from the Keras model.

    Returns:
        0 on success, 2 when the export is refused (missing package, bad source, converter error).
    """
    try:
        result = export_model(source, format, output, quantize)
    except (TrainingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(result.lines()))
    return 0


def export_model(
    source: str | Path,
    format: str,
    output: str | Path | None = None,
    quantize: str | None = None,
    examples: int = EXAMPLES,
) -> Export:
    """Export a run folder's `model.keras` (or a `.keras` file), reload it and compare.

    Args:
        source: a run folder or a `.keras` model file.
        format: `saved_model`, `onnx` or `litert`.
        output: where to write (default: `RUN/export/model[_QUANT].<ext>`, or beside the file).
        quantize: `int8` or `float16`, for `litert`.
        examples: at most this many inputs are compared.

    Returns:
        An `Export`; a run folder also gets it as `export/<name>.json`.

    Raises:
        ExportError: an unknown format, a missing package, an unreadable source, a refusal by
            the converter.

    Example:
        >>> export_model("runs/digits_googlenet", "litert", quantize="int8")  # doctest: +SKIP
    """
    _check_request(format, quantize)
    model, run = _load_source(Path(source))
    data = _inputs(model, run, examples)
    path = Path(output) if output else _default_path(Path(source), run, format, quantize)
    check_target(path, format)
    start = time.perf_counter()
    _write(model, format, path, quantize, data)
    seconds = time.perf_counter() - start
    runtime, run_exported = _reload(format, path, [t.name for t in model.inputs])
    expected = _batched(lambda x: _keras_outputs(model, x), data.x)
    got = _batched(run_exported, data.x)
    difference = {k: float(abs(expected[k] - got[k]).max()) for k in expected}
    count = _count(data.x)
    result = Export(
        path, format, quantize, runtime, count, data.split, difference, seconds, _size(path)
    )
    if data.y is not None and run is not None:
        main = run.get("main_output") or next(iter(expected))
        result.accuracy = float((expected[main].argmax(-1) == data.y).mean())
        result.exported_accuracy = float((got[main].argmax(-1) == data.y).mean())
        result.changed = int((got[main].argmax(-1) != expected[main].argmax(-1)).sum())
    if run is not None:
        from blockspec.training import files

        files.write_json(path.parent / f"{path.stem or path.name}.json", result.to_json())
    return result


def _check_request(format: str, quantize: str | None) -> None:
    if format not in FORMATS:
        raise ExportError(f"--format is one of {', '.join(FORMATS)}. Received: {format!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ExportError(f"--quantize is int8 or float16. Received: {quantize!r}")
    if quantize and format != "litert":
        raise ExportError(f"--quantize {quantize} is for --format litert (asked: {format})")
    if format == "onnx":
        missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            raise ExportError(
                f"ONNX export needs {', '.join(ONNX_PACKAGES)} ({', '.join(missing)} missing): "
                "pip install blockspec[export]"
            )


def _load_source(source: Path):
    """(the Keras model, the run's `run.json` or None)."""
    import keras

    from blockspec.training import files
    from blockspec.training.evaluate import register_custom_layers
    from blockspec.training.trainer import RUN_FILE

    run = None
    path = source
    if source.is_dir():
        path = source / "model.keras"
        if not (source / RUN_FILE).is_file() or not path.is_file():
            raise ExportError(
                f"{source} is not a finished run folder (it needs {RUN_FILE} and model.keras)"
            )
        run = files.read_json(source / RUN_FILE)
    elif not source.is_file():
        raise ExportError(f"{source}: no such run folder or model file")
    register_custom_layers()
    try:
        return keras.saving.load_model(path, safe_mode=True), run
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors, ...
        raise ExportError(f"{path}: not a Keras model file ({_short(e)})") from e


@dataclass
class _Data:
    x: Any  # numpy inputs, as the model takes them (a list, one per input, for several)
    y: Any  # labels, or None
    split: str
    representative: Any  # numpy inputs for int8 calibration


def _inputs(model: Any, run: dict | None, count: int) -> _Data:
    """The run's held-out examples (and training examples to calibrate), else generated ones."""
    import numpy as np

    if run is None:
        rng = np.random.default_rng(0)
        x = [
            rng.uniform(0, 1, (min(count, 64), *[d or 32 for d in t.shape[1:]])).astype(t.dtype)
            for t in model.inputs
        ]
        x = x[0] if len(x) == 1 else x  # a model of several inputs takes a list
        return _Data(x, None, "generated", x)
    from blockspec.training import data as data_lib

    cfg = run["train"]
    image_size = run.get("image_size")
    source = data_lib.load_source(
        cfg["data"],
        image_size=tuple(image_size) if image_size else None,
        channels=run["input_shape"][-1] if image_size else None,
        classes=run.get("classes"),
        seed=int(cfg["seed"]),
        base_dir=run.get("base_dir"),
    )
    splits = (("validation", source.validation), ("test", source.test), ("train", source.train))
    split, held = next((n, s) for n, s in splits if s is not None and s.size)
    x, y = _take(held.dataset, count)
    representative, _ = _take(source.train.dataset, REPRESENTATIVE)
    return _Data(x, y, split, representative)


def _take(dataset: Any, count: int):
    import numpy as np

    xs, ys = [], []
    for x, y in dataset.take(count).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.asarray(ys)


def _default_path(source: Path, run: dict | None, format: str, quantize: str | None) -> Path:
    """`RUN/export/model[_int8].tflite`, `RUN/export/saved_model`; beside a model file,
    `NAME[_int8].tflite`, `NAME.onnx`, `NAME_saved_model`."""
    if run is not None:
        stem = "" if format == "saved_model" else "model"
        folder = source / "export"
    else:
        stem = source.name.removesuffix(".keras") + ("_" if format == "saved_model" else "")
        folder = source.parent
    suffix = "saved_model" if format == "saved_model" else SUFFIX[format]
    return folder / (stem + (f"_{quantize}" if quantize else "") + suffix)


def check_target(path: Path, format: str) -> None:
    """Refuses an output path whose replacement would delete what blockspec did not write: a
    folder, unless it is a SavedModel and a SavedModel is asked for (a file is overwritten)."""
    saved_model = (path / "saved_model.pb").is_file()
    if path.is_dir() and not (format == "saved_model" and saved_model):
        what = "a SavedModel" if saved_model else "a folder that holds no SavedModel"
        raise ExportError(
            f"{path} is {what}: writing the {format} model there would delete it, and "
            "blockspec never deletes what it did not write. Choose another -o."
        )


def _write(model: Any, format: str, path: Path, quantize: str | None, data: _Data) -> None:
    """Keras' own exporters, into a temporary path moved into place when complete."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as e:  # a folder that cannot be made or written (read-only, a file in the way)
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from e
    target = temporary / ("model" + SUFFIX[format])
    keras_format = "tf_saved_model" if format == "saved_model" else format
    model(_rows(data.x, 0, 1), training=False)  # Keras' ONNX export refuses a model never called
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(
                str(target),
                format=keras_format,
                verbose=False,
                **_options(quantize, data, [t.name for t in model.inputs]),
            )
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        target.replace(path)
    except Exception as e:  # converters raise anything: say which format refused, keep the cause
        raise ExportError(f"{format} export failed: {_short(e)}") from e
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _options(quantize: str | None, data: _Data, names: list[str]) -> dict[str, Any]:
    """TFLite converter settings for `--quantize` (Keras' litert export passes them on)."""
    if quantize is None:
        return {}
    import tensorflow as tf

    if quantize == "float16":
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {"supported_types": [tf.float16]},
        }

    def representative():  # several inputs: by name (the converter's order is not the model's)
        for i in range(_count(data.representative)):
            example = [a.astype("float32") for a in _listed(_rows(data.representative, i, i + 1))]
            yield example if len(example) == 1 else dict(zip(names, example, strict=True))

    return {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative}


def _reload(format: str, path: Path, inputs: list[str]):
    """(runtime name, a function numpy batch -> {output name: numpy}) for what was written;
    `inputs`: the Keras model's input names, in its order (a batch of several is a list)."""
    import numpy as np

    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        return "tf.saved_model.load", lambda x: _as_dict(loaded.serve(x), np)
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        keys = _feed_keys(inputs, [i.name for i in session.get_inputs()])
        names = [o.name for o in session.get_outputs()]

        def run_onnx(x):
            feed = dict(zip(keys, _listed(x), strict=True))
            return dict(zip(names, session.run(None, feed), strict=True))

        return "onnxruntime", run_onnx
    interpreter, runtime = _litert_interpreter(path)
    runner = interpreter.get_signature_runner()
    keys = _feed_keys(inputs, list(interpreter.get_signature_list()["serving_default"]["inputs"]))

    def run_litert(x):
        feed = dict(zip(keys, _listed(x), strict=True))
        return {k: np.asarray(v) for k, v in runner(**feed).items()}

    return runtime, run_litert


def _feed_keys(inputs: list[str], runtime: list[str]) -> list[str]:
    """The runtime's input names in the Keras model's input order: by name where the runtime
    kept the Keras names, else in the runtime's order."""
    return inputs if sorted(inputs) == sorted(runtime) else runtime


def _listed(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def _rows(x: Any, start: int, stop: int) -> Any:
    """Examples `start` to `stop` of a batch (of each input's, for several)."""
    return [a[start:stop] for a in x] if isinstance(x, list) else x[start:stop]


def _count(x: Any) -> int:
    return len(x[0]) if isinstance(x, list) else len(x)


def _litert_interpreter(path: Path):
    """ai_edge_litert's interpreter when installed, else TensorFlow's (deprecated there)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path)), "ai_edge_litert"
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=str(path)), "tf.lite.Interpreter"


def _keras_outputs(model: Any, x: Any) -> dict[str, Any]:
    import numpy as np

    return _as_dict(model(x, training=False), np)


def _as_dict(y: Any, np: Any) -> dict[str, Any]:
    if isinstance(y, dict):
        return {k: np.asarray(v) for k, v in y.items()}
    if isinstance(y, list | tuple):
        return {f"output_{i}": np.asarray(v) for i, v in enumerate(y)}
    return {"output_0": np.asarray(y)}


def _batched(fn, x: Any, batch: int = 64) -> dict[str, Any]:
    import numpy as np

    parts = [fn(_rows(x, i, i + batch)) for i in range(0, _count(x), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
