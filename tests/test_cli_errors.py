"""The command line's shape: one error hierarchy and its exit codes, usage errors told apart from
spec errors, TensorFlow's logs silenced, checks that need no TensorFlow done before importing it,
and full lines when the output is piped."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blockspec import cli, cli_support
from blockspec.errors import MissingTool, UsageError
from blockspec.training.errors import DataError, TrainingError

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
spec: 1
name: tiny
input: [8, 8, 1]
network:
  - flatten: {}
  - dense: 3
outputs:
  dense: {activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
train:
  data: {source: synthetic, samples: 64, classes: 3}
  batch_size: 32
  epochs: 1
"""


def _python(code: str, env_drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )


def _usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: blockspec" in err and "problem in spec" not in err
    return err


@pytest.mark.parametrize(
    "error, code",
    [
        (UsageError("--x: bad"), 2),
        (MissingTool("install it"), 2),
        (TrainingError("the loss is NaN"), 2),
        (DataError("no such folder"), 2),
        (KeyboardInterrupt(), 130),
    ],
)
def test_every_error_class_maps_to_its_exit_code_in_one_place(error, code, monkeypatch, capsys):
    def run(args):
        raise error

    commands = tuple(
        dataclasses.replace(c, run=run) if c.name == "list" else c for c in cli.COMMANDS
    )
    monkeypatch.setattr(cli, "COMMANDS", commands)
    assert cli.main(["list"]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == ("interrupted" if code == 130 else f"error: {error}")


def test_command_line_mistakes_are_usage_errors_not_spec_problems(capsys, tmp_path):
    err = _usage_error(capsys, ["evaluate", str(tmp_path), "--tta", "flip,flipp"])
    assert "argument --tta: unknown view 'flipp'" in err
    err = _usage_error(capsys, ["validate", "googlenet", "--limit", "max_stepz=3"])
    assert "argument --limit: takes NAME=INTEGER" in err and "max_steps" in err
    err = _usage_error(capsys, ["tune", "digits_tune", "--worker", "-1"])
    assert "argument --worker" in err
    err = _usage_error(capsys, ["tune", "digits_tune", "--oracle", "localhost"])
    assert "argument --oracle: takes HOST:PORT" in err
    assert cli.main(["init", "-", "--from", "resnet_9000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --from: no zoo spec named `resnet_9000`")
    assert "--from:1:1" not in err and "problem in spec" not in err


def test_evaluate_on_a_missing_folder_exits_2(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "no run folder" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path)]) == 2  # a folder, but no run in it
    assert "is not a finished run folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["tune", "train", "build", "summary", "bench"])
def test_a_missing_spec_is_reported_before_tensorflow_is_imported(command):
    code = (
        "import sys; from blockspec import cli; "
        f"rc = cli.main([{command!r}, 'missing.yaml']); "
        "print('TF' if 'tensorflow' in sys.modules else 'clean'); sys.exit(rc)"
    )
    result = _python(code)
    assert result.returncode == 2, result.stderr
    assert result.stdout.strip() == "clean"
    assert "spec file `missing.yaml` not found" in result.stderr


@pytest.mark.slow
def test_tensorflow_logs_are_silenced_unless_verbose(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    code = f"import sys; from blockspec import cli; sys.exit(cli.main(['build', {str(spec)!r}]))"
    result = _python(code, env_drop=("TF_CPP_MIN_LOG_LEVEL",))
    assert result.returncode == 0, result.stderr
    assert "Total params" in result.stdout
    for noise in ("oneDNN", "cudart", "absl", "cpu_feature_guard", "I0000", "W0000"):
        assert noise not in result.stderr, result.stderr


def test_tensorflow_import_noise_is_recognised():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795946312.792438   12220 cudart_stub.cc:31] Could not find cuda drivers",
        "E0000 00:00:1795946312.792438   12220 cuda_dnn.cc:8310] Unable to register cuDNN factory",
        "2026-01-01 10:00:00.000000: I tensorflow/core/util/port.cc:153] oneDNN custom operations "
        "are on. You may see slightly different numerical results",
        "2026-01-01 10:00:00.000000: E external/xla/cuda_blas.cc:1418] Unable to register cuBLAS",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow",
    ]
    for line in noise:
        assert cli_support.TF_IMPORT_NOISE.match(line), line
    assert not cli_support.TF_IMPORT_NOISE.match("Traceback (most recent call last):")
    assert not cli_support.TF_IMPORT_NOISE.match(
        "ImportError: libcudnn.so.9: cannot open shared object"
    )


@pytest.mark.slow
def test_full_lines_when_piped(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # pytest-xdist sets 80; an explicit width wins
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out_dir = tmp_path / ("a_run_folder_with_a_long_name_" * 4) / "run"
    assert cli.main(["train", str(spec), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert any(f"-> {out_dir}" in line for line in out.splitlines()), out  # one line, whole
    assert "1 epoch," in out and "1 epochs" not in out
    assert "COLUMNS" not in os.environ  # the wide page is only for the command's run
    assert cli.main(["validate", str(spec)]) == 0
    assert "2 steps, 1 output\n" in capsys.readouterr().out


def test_list_cuts_at_a_word_and_keeps_text_in_brackets(monkeypatch, capsys):
    from blockspec.views import catalog

    text = "A net for [224, 224, 3] images " + "with many words " * 20
    assert catalog.one_line(text, 40) == "A net for [224, 224, 3] images with ..."
    monkeypatch.setattr(catalog, "zoo_rows", lambda: [("bracketed", catalog.one_line(text))])
    monkeypatch.delenv("COLUMNS", raising=False)
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "A net for [224, 224, 3] images with many words" in out
    line = next(line for line in out.splitlines() if "bracketed" in line)
    shown = line.rstrip(" │").split("│")[-1].strip()
    assert shown.endswith(" ...") and text.startswith(shown.removesuffix(" ...") + " ")


def test_evaluate_says_when_tta_lowers_accuracy(monkeypatch, capsys, tmp_path):
    import numpy as np

    from blockspec.training import evaluate
    from blockspec.training.commands import evaluate_command

    def fake(run_dir, tta):
        return evaluate.Evaluation(
            split="validation",
            examples=360,
            views=["flip"],
            view_count=2,
            accuracy={"main": 0.975},
            tta_accuracy={"main": 0.517},
            changed={"main": 0.46},
            probabilities={"main": np.zeros((1, 10))},
        )

    monkeypatch.setattr(evaluate, "evaluate_run", fake)
    assert evaluate_command(str(tmp_path), ["flip"]) == 0
    out = capsys.readouterr().out
    assert "TTA lowers the accuracy of main (97.50% -> 51.70%)" in out
