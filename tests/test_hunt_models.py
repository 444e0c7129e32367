"""Networks and faults the zoo does not have, written from the docs alone (issues 14 and 15)."""

from __future__ import annotations

import textwrap

import keras
import pytest
from test_roundtrip import round_trip

from blockspec import build_model
from blockspec.builder import resolve_spec
from blockspec.builder.errors import SpecError


def write(tmp_path, text: str, name: str = "net.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_render_keeps_defaults_of_auto_shortcut_projections(tmp_path):
    # `defaults.conv.use_bias: false` reaches the `auto` projection; render writes no `defaults`,
    # so `shortcut: auto` read again made a projection with a bias (params differed).
    spec = resolve_spec(
        write(
            tmp_path,
            """
            spec: 1
            input: [8, 8, 3]
            defaults:
              conv: {padding: same, use_bias: false}
              batch_norm: {momentum: 0.9}
            network:
              - conv: {filters: 4, kernel: 3}
              - residual: {body: [conv: {filters: 8, kernel: 3}]}
              - residual: {body: [conv: {filters: 8, kernel: 3}]}
              - residual: {body: [conv: {filters: 16, kernel: 3, strides: 2}]}
            """,
        )
    )
    original, again = round_trip(tmp_path, spec)
    assert original == again
    names = [row[0] for row in original[0]]
    assert len([n for n in names if n.endswith("_shortcut_conv")]) == 2  # the middle one: identity


def test_auto_shortcut_on_a_sequence_is_refused_located(tmp_path):
    # The `auto` projection is a 2D conv: on a sequence, Keras' "expected min_ndim=4" came out
    # with no file, line or spec path (`<spec>`), the projection steps carrying no location.
    path = write(
        tmp_path,
        """
        spec: 1
        input: [20, 6]
        network:
          - dense: 16
          - residual: {body: [dense: 32]}
        """,
    )
    with pytest.raises(SpecError) as info:
        build_model(path)
    message = str(info.value)
    assert "net.yaml:6:5  network[1].residual" in message
    assert "give `shortcut` explicitly" in message and "(None, 20, 16)" in message


@pytest.mark.slow
def test_resume_inside_a_stage_says_which_batch_norms_stay_frozen(tmp_path, capsys):
    # Resumed inside stage 2 (not at its start), the stage line lost "1 of them batch norms kept
    # in inference mode" that the uninterrupted run printed: the same layers, told otherwise.
    from test_stages import SPEC, TWO_STAGES

    from blockspec.training import trainer

    path = tmp_path / "staged.yaml"
    path.write_text(SPEC + TWO_STAGES)
    resolved = resolve_spec(str(path))

    class StopInsideStageTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # after the checkpoint of epoch 2 (the first of stage 2)
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.train(resolved, tmp_path / "run", callbacks=[StopInsideStageTwo()], verbose=0)
    capsys.readouterr()
    trainer.train(resolved, tmp_path / "run", resume=True, verbose=0)
    text = capsys.readouterr().out
    assert "after epoch 2 of 3" in text
    assert (
        "Stage 2 of 2: epochs 2-3, training every step (1 of 6 layers frozen, 1 of them batch "
        "norms kept in inference mode)" in text
    ), text


TWO_INPUTS = """
spec: 1
name: two_inputs
inputs:
  img: {shape: [8, 8, 1]}
  meta: {shape: [3]}
network:
  - conv: {filters: 4, kernel: 3}
    from: img
  - batch_norm: {}
  - global_avg_pool: {}
    name: pooled
  - concat: {}
    from: [pooled, meta]
  - dropout: 0.5
  - dense: 5
    name: main
outputs:
  main: {activation: softmax}
"""


@pytest.mark.slow
@pytest.mark.parametrize("format, quantize", [("onnx", None), ("litert", "int8")])
def test_a_model_of_two_inputs_exports_and_agrees(tmp_path, format, quantize):
    # The check fed one generated array to a model of two inputs: every format failed with
    # Keras' "expects 2 named input(s)"; int8 calibration fed the inputs in the wrong order.
    from blockspec.training.exporting import export_model

    model = build_model(write(tmp_path, TWO_INPUTS), inference=True)
    path = tmp_path / "two.keras"
    model.save(path)
    result = export_model(path, format, quantize=quantize)
    assert result.examples == 64 and result.split == "generated"
    assert set(result.difference) == {"main"}
    assert result.difference["main"] < (0.05 if quantize else 1e-5)


def test_rendered_and_run_specs_keep_weights_and_backbone_files_findable(tmp_path):
    # `render` dropped the top-level `weights`/`weights_strict`; a backbone's `spec`, and the
    # `weights` paths, stayed relative to the spec's folder in what `render` prints and in the
    # document a run folder keeps as `spec.yaml`: neither validated anywhere else.
    import yaml

    from blockspec.views.render import render

    (tmp_path / "nets").mkdir()
    (tmp_path / "run_here").mkdir()
    write(
        tmp_path,
        """
        spec: 1
        input: [8, 8, 3]
        network:
          - conv: {filters: 4, kernel: 3}
            name: c1
          - dense: 2
        """,
        "nets/other.yaml",
    )
    path = write(
        tmp_path,
        """
        spec: 1
        input: [8, 8, 3]
        weights: ../w/model.keras
        weights_strict: true
        network:
          - backbone: {spec: ../nets/other.yaml, until: c1, weights: ../w/bb.weights.h5}
          - global_avg_pool: {}
        """,
        "run_here/net.yaml",
    )
    resolved = resolve_spec(path)
    printed = yaml.safe_load(render(resolved))
    assert printed["weights"] == str(tmp_path / "run_here/../w/model.keras")
    assert printed["weights_strict"] is True
    backbone = printed["network"][0]["backbone"]
    assert backbone["spec"] == str(tmp_path / "nets/other.yaml")
    assert backbone["weights"] == str(tmp_path / "run_here/../w/bb.weights.h5")
    kept = tmp_path / "elsewhere.yaml"  # what a run folder keeps, read from another folder
    kept.write_text(yaml.safe_dump(resolved.document, sort_keys=False))
    again = resolve_spec(str(kept))
    assert again.weights == resolved.weights
    assert [s.name for s in again.network[0].children[0]] == ["c1"]


def test_imagenet_without_a_cache_folder_says_where_to_put_the_file(tmp_path, monkeypatch):
    # The default cache folder came from `keras.config.keras_home()`, which Keras 3.15 lacks:
    # `--weights imagenet` was an AttributeError traceback instead of the offline message.
    from blockspec.builder import spec_weights
    from blockspec.builder.weights import WeightsError

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setattr(spec_weights, "IMAGENET_TABLE", tmp_path / "table.json")
    (tmp_path / "table.json").write_text(
        '{"net": {"select": [], "files": [{"when": {}, "top": '
        '["net.h5", "http://127.0.0.1:9/net.h5", "' + "0" * 32 + '"]}]}}'
    )
    with pytest.raises(WeightsError) as info:
        spec_weights.imagenet_weights("net")
    assert f"Put the file at {tmp_path / 'kh' / 'models' / 'net.h5'}" in str(info.value)


def test_diff_of_specs_with_expressions_left_for_the_build(tmp_path):
    # `in_channels` after a step without a shape rule is evaluated when built; `diff` met those values
    # while printing (json: "Deferred is not JSON serializable", a traceback) and called the
    # same expression in both specs a change.
    from blockspec.views.diff import diff_specs

    text = """
        spec: 1
        input: [8, 8, 3]
        network:
          - SeparableConv2D: {filters: 6, kernel_size: 2, strides: 2}
          - conv: {filters: "${in_channels // 2}", kernel: 1}
          - conv: {filters: %d, kernel: 1}
        """
    a = resolve_spec(write(tmp_path, text % 4, "a.yaml"))
    b = resolve_spec(write(tmp_path, text.replace("// 2", "// 3") % 5, "b.yaml"))
    assert diff_specs(a, a).same
    lines = [line for change in diff_specs(a, b).changes for line in change.lines()]
    assert "~ conv_1.filters: ${in_channels // 2} -> ${in_channels // 3}" in lines
    assert "~ conv_2.filters: 4 -> 5" in lines


KERAS_CASES = [
    ("Conv2DTranspose", {"filters": 6, "kernel_size": 3, "strides": 2}, (7, 8, 3)),
    ("Conv2DTranspose", {"filters": 6, "kernel_size": 3, "strides": 2, "padding": "same"}, (7, 8, 3)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [2, 3], "strides": [2, 1], "output_padding": [1, 0]}, (5, 6, 3)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "dilation_rate": 2}, (5, 6, 3)),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 4, "strides": 2, "padding": "same", "output_padding": 1}, (5, 6, 3)),
    ("Conv1DTranspose", {"filters": 3, "kernel_size": 5, "strides": 3}, (9, 2)),
    ("Conv3DTranspose", {"filters": 3, "kernel_size": 2, "strides": 2}, (3, 4, 5, 2)),
    ("UpSampling2D", {"size": [2, 3]}, (5, 7, 4)),
    ("UpSampling1D", {}, (5, 4)),
    ("UpSampling3D", {"size": 2}, (2, 3, 4, 1)),
    ("Conv2D", {"filters": 5, "kernel_size": 3, "strides": 2}, (9, 10, 3)),
    ("Conv1D", {"filters": 5, "kernel_size": 4, "padding": "same", "strides": 3}, (11, 3)),
    ("MaxPooling2D", {"pool_size": 3, "strides": 2}, (9, 10, 3)),
    ("AveragePooling2D", {"pool_size": [2, 3], "padding": "same"}, (9, 10, 3)),
    ("MaxPooling2D", {}, (9, 10, 3)),
    ("GlobalAveragePooling2D", {"keepdims": True}, (9, 10, 3)),
    ("Dense", {"units": 7}, (9, 3)),
    ("BatchNormalization", {}, (9, 10, 3)),
]  # fmt: skip


@pytest.mark.parametrize("name, args, shape", KERAS_CASES)
def test_shape_rules_of_raw_keras_classes_agree_with_keras(name, args, shape):
    # After a raw Keras class (a U-Net's `Conv2DTranspose`) `validate` knew no shape, so
    # `repeat`, `when` or `name` reading `in_*` after it were refused; the common classes now
    # have rules, each as Keras computes it.
    from blockspec.builder.shape_rules import output_shape

    layer = getattr(keras.layers, name)(**args)
    expected = tuple(layer.compute_output_shape((None, *shape))[1:])
    assert output_shape(name, args, [shape]) == expected


def test_in_shape_names_after_a_transposed_convolution_validate(tmp_path):
    spec = resolve_spec(
        write(
            tmp_path,
            """
            spec: 1
            input: [8, 8, 3]
            network:
              - Conv2DTranspose: {filters: 6, kernel_size: 2, strides: 2}
              - conv: {filters: 4, kernel: 1}
                repeat: "${in_height // 8}"
                name: up${i}
            """,
        )
    )
    assert [s.name for s in spec.network] == ["Conv2DTranspose", "up0", "up1"]


def test_export_to_a_place_that_cannot_be_written_is_one_line(tmp_path, capsys):
    # `-o` under a file (or a read-only folder) raised FileExistsError/FileNotFoundError from
    # mkdir/mkdtemp: a traceback, before the export's own error handling.
    from blockspec import cli

    model = build_model(write(tmp_path, TWO_INPUTS), inference=True)
    model.save(tmp_path / "two.keras")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = cli.main(
        ["export", str(tmp_path / "two.keras"), "--format", "onnx", "-o", str(blocker / "x.onnx")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot write {blocker / 'x.onnx'}" in err and "Traceback" not in err


def test_build_of_a_feature_extractor_without_train_or_loss(tmp_path, capsys):
    # `build` refused a network ending in a feature map for "the default loss", though the spec
    # says nothing of training: a backbone could not be built and saved to start another from.
    from blockspec import cli

    path = write(
        tmp_path, "spec: 1\ninput: [8, 8, 3]\nnetwork:\n  - conv: {filters: 2, kernel: 3}\n"
    )
    saved = tmp_path / "features.keras"
    assert cli.main(["build", path, "--save", str(saved)]) == 0
    assert saved.is_file()
    with open(path, "a") as f:  # with a `train` section the default loss applies again
        f.write("train: {epochs: 1}\n")
    assert cli.main(["build", path]) == 2
    assert "(the default loss)" in capsys.readouterr().err
