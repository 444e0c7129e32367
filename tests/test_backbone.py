"""(1.1) The `backbone:` step and the top-level `weights:` / `weights_strict:` keys, offline: the
weights files are saved here from small models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from blockspec import build_model, cli
from blockspec.builder import SpecError, resolve_spec

SMALL = {f"vars.conv{i}": 1 for i in (2, 3, 4, 5)}  # one unit a stage: quick to build
HEAD = """\
spec: 1
name: tiny_bb
input: [32, 32, 3]
network:
  - backbone: {BACKBONE}
  - global_avg_pool: {}
  - dense: 10
    name: main
outputs:
  main: {activation: softmax}
"""
BACKBONE = "{spec: resnet18, until: conv3, vars: {conv2: 1, conv3: 1}}"


def spec_file(tmp_path, backbone: str = BACKBONE, extra: str = ""):
    path = tmp_path / "tiny_bb.yaml"
    path.write_text(HEAD.replace("{BACKBONE}", backbone) + extra)
    return path


def refused(path) -> str:
    with pytest.raises(SpecError) as info:
        resolve_spec(str(path))
    return str(info.value)


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """resnet18 (one unit a stage, 32x32) with random weights, saved as .weights.h5."""
    folder = tmp_path_factory.mktemp("r18")
    model = build_model("resnet18", overrides={**SMALL, "input": [32, 32, 3]})
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    path = folder / "r18.weights.h5"
    model.save_weights(path)
    return path, {layer.name: [np.asarray(w) for w in layer.weights] for layer in model.layers}


# ----------------------------------------------------------------------------- validate
def test_validate_resolves_a_backbone_without_tensorflow(tmp_path):
    path = spec_file(tmp_path)
    code = (
        "import sys; from blockspec.builder import resolve_spec; "
        f"r = resolve_spec({str(path)!r}); "
        "print([s.name for s in r.network[0].children[0]]); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, tf_loaded = out.stdout.strip().splitlines()
    assert names == "['conv1_pad', 'conv1', 'pool1_pad', 'pool1', 'conv2', 'conv3']"
    assert tf_loaded == "False"


@pytest.mark.parametrize(
    "backbone, expected",
    [
        ("{spec: resnet81, until: conv3}", "no zoo spec named `resnet81`"),
        ("{spec: resnet18, until: conv9}", "`until` names no step of `resnet18`"),
        ("{spec: resnet18, until: cnv3}", "did you mean `conv3_2`"),
        ("{spec: resnet18, vars: {convv2: 1}}", "the backbone spec has no var `convv2`"),
        ("{spec: resnet18, vars: {conv2: -1}}", "backbone spec `resnet18` is refused"),
        ("{spec: resnet18, weights: nothere.txt}", "names a .keras, .weights.h5 or legacy"),
        ("{until: conv3}", "missing required argument `spec` for `backbone`"),
        ("{spec: resnet18, trainable: maybe}", "trainable"),
        ("{spec: resnet18, util: conv3}", "util"),
    ],
)
def test_backbone_refusals_are_located_at_the_step(tmp_path, backbone, expected):
    text = refused(spec_file(tmp_path, backbone))
    assert "tiny_bb.yaml:5:" in text and "network[0].backbone" in text, text
    assert expected.lower() in text.lower(), text


def test_a_backbone_step_name_taken_here_is_refused(tmp_path):
    path = spec_file(tmp_path, extra="")
    path.write_text(
        path.read_text().replace(
            "  - global_avg_pool: {}", "  - global_avg_pool: {}\n    name: conv3"
        )
    )
    assert "conv3" in refused(path)


def test_weights_keys_are_checked_by_validate_which_reads_no_file(tmp_path):
    path = spec_file(tmp_path, extra="weights: start.txt\nweights_strict: 1\n")
    text = refused(path)
    assert "tiny_bb.yaml:11:1  weights: `weights` names a .keras, .weights.h5" in text
    assert "weights_strict: `weights_strict` must be true or false" in text
    path = spec_file(tmp_path, extra="weights: later.weights.h5\n")
    assert resolve_spec(str(path)).weights == str(tmp_path.resolve() / "later.weights.h5")


def test_a_missing_weights_file_is_refused_at_build(tmp_path, capsys):
    backbone = BACKBONE.replace("}}", "}, weights: nothere.weights.h5}")
    code = cli.main(["build", str(spec_file(tmp_path, backbone))])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "tiny_bb.yaml:5:" in err and "network[0].backbone.weights" in err
    assert "nothere.weights.h5: no such weights file" in err
    code = cli.main(["build", str(spec_file(tmp_path, extra="weights: gone.weights.h5\n"))])
    err = capsys.readouterr().err
    assert code == 2 and "gone.weights.h5: no such weights file" in err
    assert "tiny_bb.yaml:11:1  weights: " in err  # where the spec names it
    code = cli.main(["build", str(tmp_path / "tiny_bb.yaml"), "--weights", "typo.weights.h5"])
    assert code == 2 and "error: typo.weights.h5: no such weights file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- build
def test_backbone_builds_with_the_backbone_own_layer_names(tmp_path):
    model = build_model(str(spec_file(tmp_path)))
    other = build_model("resnet18", overrides={**SMALL, "input": [32, 32, 3]})
    ours = [layer.name for layer in model.layers]
    theirs = [layer.name for layer in other.layers]
    until = theirs.index("conv3_out") + 1
    assert ours[:until] == theirs[:until]
    assert ours[until:] == ["global_avg_pool", "main_dense", "main"]
    assert model.output_shape == {"main": (None, 10)} or model.output_shape == (None, 10)


def test_backbone_weights_load_by_name_into_its_layers(tmp_path, resnet_weights, capsys):
    path, values = resnet_weights
    backbone = f"{{spec: resnet18, until: conv3, vars: {{conv2: 1, conv3: 1}}, weights: {path}}}"
    model = build_model(str(spec_file(tmp_path, backbone)))
    line = capsys.readouterr().out
    assert "backbone `backbone`: loaded" in line and "from r18.weights.h5" in line, line
    loaded = int(line.split("loaded ")[1].split(" of ")[0])
    assert loaded == sum(len(model.get_layer(n).weights) for n in values if _has(model, n))
    for name in ("conv1_conv", "conv2_1_conv", "conv3_2_bn"):
        for ours, theirs in zip(model.get_layer(name).weights, values[name], strict=True):
            np.testing.assert_array_equal(np.asarray(ours), theirs)
    head = np.asarray(model.get_layer("main_dense").weights[0])
    assert not np.all((head >= 0.5) & (head <= 1.5))  # the head kept its initial weights


def _has(model, name: str) -> bool:
    try:
        model.get_layer(name)
    except ValueError:
        return False
    return True


def test_a_frozen_backbone_freezes_all_its_layers(tmp_path):
    backbone = BACKBONE.replace("}}", "}, trainable: false}")
    model = build_model(str(spec_file(tmp_path, backbone)))
    frozen = {layer.name for layer in model.layers if layer.weights and not layer.trainable}
    assert {"conv1_conv", "conv1_bn", "conv3_2_conv"} <= frozen
    assert model.get_layer("main_dense").trainable
    assert len(model.trainable_weights) == 2  # the head's kernel and bias


def test_the_backbone_input_must_fit(tmp_path):
    path = spec_file(tmp_path)
    path.write_text(path.read_text().replace("[32, 32, 3]", "[32, 32, 1]"))
    with pytest.raises(SpecError) as info:
        build_model(str(path))
    text = str(info.value)
    assert "network[0].backbone" in text and "[224, 224, 3]" in text and "[32, 32, 1]" in text


def test_weights_key_loads_relative_to_the_spec_and_the_flag_overrides_it(tmp_path, capsys):
    path = spec_file(tmp_path)
    model = build_model(str(path))
    for w in model.weights:
        w.assign(np.full(w.shape, 0.5, dtype="float32"))
    model.save_weights(tmp_path / "start.weights.h5")
    path.write_text(path.read_text() + "weights: start.weights.h5\nweights_strict: true\n")
    again = build_model(str(path))
    assert all(np.all(np.asarray(w) == 0.5) for w in again.weights)
    assert f"loaded {len(model.weights)} of {len(model.weights)} tensors" in capsys.readouterr().out
    fresh = build_model(str(spec_file(tmp_path)))
    fresh.save_weights(tmp_path / "other.weights.h5")
    code = cli.main(["build", str(path), "--weights", str(tmp_path / "other.weights.h5")])
    assert code == 0
    assert "from other.weights.h5" in capsys.readouterr().out


def test_weights_strict_key_refuses_a_partial_file(tmp_path, resnet_weights, capsys):
    weights, _ = resnet_weights
    path = spec_file(tmp_path, extra=f"weights: {weights}\nweights_strict: true\n")
    code = cli.main(["build", str(path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "weights_strict refuses a partial load" in err and "Traceback" not in err


@pytest.mark.slow
def test_train_records_every_weights_file(tmp_path, resnet_weights):
    weights, _ = resnet_weights
    backbone = (
        f"{{spec: resnet18, until: conv2, vars: {{conv2: 1}}, weights: {weights}, "
        "trainable: false}"
    )
    path = spec_file(tmp_path, backbone)
    text = path.read_text().replace("[32, 32, 3]", "[16, 16, 3]")
    path.write_text(
        text + "train: {epochs: 1, batch_size: 64, data: {source: synthetic, samples: 64}}\n"
    )
    out = tmp_path / "run"
    assert cli.main(["train", str(path), "--out", str(out)]) == 0
    record = json.loads((out / "weights.json").read_text())
    assert record["backbones"]["backbone"]["path"] == str(weights.resolve())
    assert len(record["backbones"]["backbone"]["sha256"]) == 64


def test_summary_gives_the_backbone_step_its_layers(tmp_path):
    from blockspec.builder.compile import compile_spec
    from blockspec.views.summary import stats

    s = stats(compile_spec(resolve_spec(str(spec_file(tmp_path)))))
    by_name = {step.name: step for step in s.steps}
    backbone = by_name["backbone"]
    assert backbone.params > 0 and backbone.conv_params > 0 and backbone.madds > 0
    assert sum(step.params for step in s.steps) == s.params  # every layer has its step
    assert "conv1_conv" in backbone.layers and "main_dense" in by_name["main"].layers
