"""The command line: exit codes, located errors without tracebacks, no TensorFlow in validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blockspec import cli

ROOT = Path(__file__).resolve().parent.parent
FIVE_MISTAKES = (ROOT / "tests" / "five_mistakes.yaml").read_text()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blockspec.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_validate_reports_every_mistake_with_its_line_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(FIVE_MISTAKES)
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "5 problems in spec" in result.stderr
    for line in ("bad.yaml:5:", "bad.yaml:6:", "bad.yaml:7:", "bad.yaml:8:", "bad.yaml:10:"):
        assert line in result.stderr, line


def test_validate_never_imports_tensorflow():
    # How fast it answers is measured in bench/ (validate_time); here: what it loads.
    code = "import sys, cli; rc = cli.main(['validate', 'googlenet']); print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'clean'); sys.exit(rc)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("clean")


def test_validate_many_specs_and_ok_line(capsys):
    assert cli.main(["validate", "googlenet", "digits_googlenet"]) == 0
    out = capsys.readouterr().out
    assert "ok   googlenet" in out and "ok   digits_googlenet" in out


def test_set_is_applied_and_bad_set_is_refused(capsys):
    assert cli.main(["validate", "googlenet", "--set", "vars.classes=-4"]) == 2
    assert "`units` must be positive. Received: units=-4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a usage error: argparse's, with the usage line
        cli.main(["validate", "googlenet", "--set", "novalue"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --set: takes KEY=VALUE" in err and "usage: blockspec validate" in err
    assert "problem in spec" not in err


def test_unknown_zoo_name_suggests(capsys):
    assert cli.main(["validate", "googlnet"]) == 2
    assert "no zoo spec named `googlnet`. Did you mean `googlenet`" in capsys.readouterr().err


def test_render_is_a_spec_that_builds_the_same_model(tmp_path, capsys):
    from blockspec.builder import build_model

    overrides = ["--set", "vars.classes=10", "--set", "input=[96,96,3]"]
    assert cli.main(["render", "googlenet", *overrides]) == 0
    rendered = capsys.readouterr().out
    doc = yaml.safe_load(rendered)
    assert "blocks" not in doc and "vars" not in doc and "defaults" not in doc
    assert doc["network"][0]["conv"]["activation"] == "relu"  # defaults applied
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered)
    original = build_model("googlenet", {"vars.classes": 10, "input": [96, 96, 3]})
    again = build_model(str(path))
    assert original.count_params() == again.count_params()
    assert sorted(layer.name for layer in original.layers) == sorted(
        layer.name for layer in again.layers
    )


def test_build_saves_and_inference_drops_aux(tmp_path, capsys):
    import keras

    target = tmp_path / "g.keras"
    assert cli.main(["build", "digits_googlenet", "--inference", "--save", str(target)]) == 0
    model = keras.saving.load_model(target, safe_mode=True)
    assert model.output_names == ["main"]
    assert "Total params" in capsys.readouterr().out


def test_summary_side_by_side(capsys):
    assert cli.main(["summary", "digits_googlenet", "googlenet", "--set", "vars.classes=10"]) == 0
    out = capsys.readouterr().out
    assert "side by side" in out and "FC parameters" in out and "multiply-adds" in out
    assert "digits_googlenet" in out and "googlenet" in out
    # Each spec's per-step table, then the shared totals.
    assert out.count("┃ step ") == 2
    assert out.index("┃ step ") < out.index("totals, side by side")


def test_summary_per_step_numbers(capsys):
    assert cli.main(["summary", "googlenet"]) == 0
    out = capsys.readouterr().out
    # conv1: 7x7x3x64 + 64 = 9,472 parameters; 112x112x64 = 802,816 neurons.
    assert "9,472" in out and "802,816" in out
    assert "13,378,280" in out  # googlenet with both aux heads


def test_list_shows_zoo_and_blocks(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("googlenet", "inception", "bottleneck_residual", "aux_classifier", "parallel"):
        assert word in out


@pytest.mark.parametrize(
    "command", ["validate", "build", "summary", "render", "list", "train", "evaluate"]
)
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "Example:" in capsys.readouterr().out


def test_summary_shows_the_deployed_fc_layer_beside_vgg(capsys):
    # The seed: GoogLeNet's single FC layer is ~1% of VGG's FC parameters (aux heads are train-only).
    assert cli.main(["summary", "googlenet", "vgg16", "--set", "input=[224,224,3]"]) == 0
    out = capsys.readouterr().out
    assert "deployed FC parameters" in out
    assert "1,025,000" in out and "123,642,856" in out


def test_summary_counts_recurrent_layers():
    from blockspec.builder.compile import compile_spec
    from blockspec.builder.resolve import resolve_spec
    from blockspec.views.summary import stats

    s = stats(compile_spec(resolve_spec("digits_lstm")))
    recurrent = [step for step in s.steps if step.type in ("lstm", "gru", "bidirectional")]
    assert recurrent and all(step.madds > 0 for step in recurrent)
    assert s.depth >= len(recurrent) + 1


def test_summary_prints_published_numbers_beside_the_measured(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert cli.main(["summary", "googlenet"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "inception_4c" in line)
    # Table 1 prints 463K for 4c; the module's weights (with biases) are 510,104.
    assert "510,104" in row and "463K / 100M" in row


def test_masked_sequences_count_their_multiply_adds():
    """After an `embedding` with `mask_zero`, Keras calls the LSTM on [sequence, mask]."""
    from blockspec.builder.compile import compile_spec
    from blockspec.builder.resolve import resolve_spec
    from blockspec.views.summary import stats

    def lstm_madds(mask_zero: bool) -> int:
        spec = {
            "spec": 1,
            "inputs": {"tokens": {"shape": [20], "dtype": "int32"}},
            "network": [
                {"embedding": {"input_dim": 100, "output_dim": 16, "mask_zero": mask_zero}},
                {"lstm": 32},
                {"dense": 2},
            ],
        }
        s = stats(compile_spec(resolve_spec(spec)))
        return next(step.madds for step in s.steps if step.type == "lstm")

    # (16 x 128 kernel + 32 x 128 recurrent kernel) x 20 time steps
    assert lstm_madds(False) == lstm_madds(True) == (16 * 128 + 32 * 128) * 20
