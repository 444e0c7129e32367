"""`blockspec export` (training/exporting.py): each format is written, reloaded with its own runtime
and compared with the Keras model; quantized LiteRT models report their accuracy change."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from training_fixtures import tiny_model, tiny_spec

from blockspec import cli
from blockspec.training.exporting import ExportError, export_model
from blockspec.training.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs of the tiny two-head model on the digits at 16x16 (the aux head is train-only)."""
    out = tmp_path_factory.mktemp("export") / "tiny"
    spec = tiny_spec(
        {"epochs": 2, "data": {"source": "digits", "image_size": [16, 16]}},
        input_shape=(16, 16, 1),
    )
    train(spec, out, build=tiny_model, verbose=0)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("format", "name", "tolerance"),
    [("saved_model", "saved_model", 1e-6), ("litert", "model.tflite", 1e-5)],
)
def test_format_reloads_and_agrees_with_keras(run, format, name, tolerance):
    result = export_model(run, format)
    assert result.path == run / "export" / name and result.path.exists()
    assert list(result.difference) == ["main"]  # the train-only aux head is not exported
    assert result.max_difference < tolerance
    assert result.split == "validation" and result.examples == 360
    assert result.exported_accuracy == result.accuracy > 0.3
    recorded = json.loads((run / "export" / f"{result.path.stem}.json").read_text())
    assert recorded["max_difference"] == result.max_difference


def test_onnx_reloads_with_onnxruntime_and_agrees(run, tmp_path):
    """A model file, not a run: generated inputs, written beside it unless -o says where."""
    model = tmp_path / "tiny.keras"
    shutil.copy(run / "model.keras", model)
    result = export_model(model, "onnx")
    assert result.path == tmp_path / "tiny.onnx" and result.runtime == "onnxruntime"
    assert result.split == "generated" and result.accuracy is None
    assert result.max_difference < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize(("quantize", "tolerance"), [("float16", 0.01), ("int8", 0.2)])
def test_quantized_litert_reports_its_accuracy_change(run, quantize, tolerance, capsys):
    assert cli.main(["export", str(run), "--format", "litert", "--quantize", quantize]) == 0
    printed = capsys.readouterr().out
    assert f"model_{quantize}.tflite (litert {quantize}," in printed
    assert "Keras" in printed and "predictions changed" in printed
    recorded = json.loads((run / "export" / f"model_{quantize}.json").read_text())
    assert 0 < recorded["max_difference"] < tolerance  # quantized: close, not equal
    assert abs(recorded["exported_accuracy"] - recorded["accuracy"]) < 0.05


def test_missing_onnx_packages_say_what_to_install(run, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name)
    )
    assert cli.main(["export", str(run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "tf2onnx missing" in err and "pip install blockspec[export]" in err
    assert "Traceback" not in err


def test_refusals_are_one_line_errors(run, tmp_path, capsys):
    assert cli.main(["export", str(run), "--format", "onnx", "--quantize", "int8"]) == 2
    assert "--quantize int8 is for --format litert" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path), "--format", "litert"]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 not a model")
    assert cli.main(["export", str(broken), "--format", "litert"]) == 2
    err = capsys.readouterr().err
    assert "broken.keras: not a Keras model file" in err and "Traceback" not in err
    with pytest.raises(ExportError, match="no such run folder or model file"):
        export_model(tmp_path / "nothing", "litert")
