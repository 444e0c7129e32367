"""What a hostile tester found that `validate` let through and `train` then refused late.

Each test names the late refusal it pins; the fixes are in the check phase (builder/resolve/),
the trainer or the command line.
"""

from __future__ import annotations

import re

import pytest
import yaml

from blockspec import cli

LOCATED = re.compile(r"\S+:\d+:\d+  ")

BASE = {
    "spec": 1,
    "name": "hunt",
    "input": [8, 8, 1],
    "network": [
        {"conv": {"filters": 4, "kernel": 3, "padding": "same"}},
        {"global_avg_pool": {}},
        {"dense": 10, "name": "main"},
    ],
    "outputs": {"main": {"activation": "softmax", "metrics": ["accuracy"]}},
    "train": {"data": {"source": "digits"}, "epochs": 1},
}


def _spec(tmp_path, train=None, outputs=None, **top):
    doc = {**BASE, **top}
    doc["train"] = {**BASE["train"], **(train or {})}
    doc["outputs"] = {"main": {**BASE["outputs"]["main"], **(outputs or {})}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _refused(capsys, argv, *expected):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert LOCATED.search(err), err
    for text in expected:
        assert text in err, err
    return err


# numpy seeds its generator with 0 <= seed < 2**32: `keras.utils.set_random_seed(-1)` raised a
# ValueError with a traceback after the run folder was made.
@pytest.mark.parametrize("seed", [-1, 2**32, 2**40])
def test_train_seed_out_of_numpy_range_is_refused_by_validate(tmp_path, capsys, seed):
    path = _spec(tmp_path, train={"seed": seed})
    _refused(capsys, ["validate", path], "train.seed", f"seed={seed}")


def test_train_seed_at_the_ends_of_the_range_is_accepted(tmp_path, capsys):
    for seed in (0, 2**32 - 1):
        assert cli.main(["validate", _spec(tmp_path, train={"seed": seed})]) == 0


# The data gives one class id per example; with sparse crossentropy (the default loss) Keras
# fed those ids to `precision`, `auc`, `f1_score`, ... and `model.fit` raised a shape error.
@pytest.mark.parametrize("metric", ["auc", "precision", "f1_score", "top_k_categorical_accuracy"])
def test_a_metric_that_needs_one_hot_targets_with_class_ids_is_refused(tmp_path, capsys, metric):
    path = _spec(tmp_path, outputs={"metrics": ["accuracy", metric]})
    err = _refused(capsys, ["validate", path], "outputs.main.metrics[1]", f"`{metric}`")
    assert "categorical_crossentropy" in err  # says how to get one-hot targets


def test_the_same_metrics_with_one_hot_targets_are_accepted(tmp_path):
    metrics = ["auc", "precision", "f1_score", "top_k_categorical_accuracy"]
    one_hot = _spec(tmp_path, outputs={"loss": "categorical_crossentropy", "metrics": metrics})
    assert cli.main(["validate", one_hot]) == 0
    smoothed = _spec(tmp_path, outputs={"metrics": metrics}, train={"label_smoothing": 0.1})
    assert cli.main(["validate", smoothed]) == 0


def test_a_metric_that_needs_scores_with_a_number_per_example_is_refused(tmp_path, capsys):
    path = _spec(
        tmp_path,
        outputs={"loss": "mse", "activation": None, "metrics": ["mae", "binary_crossentropy"]},
    )
    _refused(capsys, ["validate", path], "outputs.main.metrics[1]", "`binary_crossentropy`")


# `crossentropy` and `ce` are Keras' shorthands for a loss, not a metric: compile raised
# "Could not interpret metric identifier".
def test_crossentropy_shorthand_is_not_a_metric(tmp_path, capsys):
    path = _spec(tmp_path, outputs={"metrics": ["ce"]})
    _refused(capsys, ["validate", path], "outputs.main.metrics[0]", "unknown metric")


def test_tune_seed_above_numpy_range_is_refused_by_validate(tmp_path, capsys):
    path = _spec(tmp_path, tune={"tuner": "bayesian", "seed": 2**32})
    _refused(capsys, ["validate", path], "tune.seed", "at most 4294967295")


# A failure blockspec did not foresee (a Keras error mid-fit, a bug) printed a 40-line traceback:
# now one bounded line, exit 1, and `-v` shows the traceback.
def test_an_unforeseen_error_is_one_line_not_a_traceback(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("Graph execution error:\n" + "  File x, line 1\n" * 500)

    parser = cli.build_parser

    def patched():
        p = parser()
        for action in p._subparsers._group_actions[0].choices.values():
            action.set_defaults(run=boom)
        return p

    monkeypatch.setattr(cli, "build_parser", patched)
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RuntimeError: Graph execution error:" in err
    assert len(err) < 600 and "-v" in err
    with pytest.raises(RuntimeError):
        cli.main(["list", "-v"])


# Labels of shape (N, K) were read as one-hot by their argmax whatever they held: two class ids
# per example trained silently on the larger one's position.
def test_npz_labels_with_several_columns_that_are_not_one_hot_are_refused(tmp_path):
    import numpy as np

    from blockspec.training.data_checks import check_labels
    from blockspec.training.errors import DataError

    one_hot = np.eye(10)[[3, 1, 4]]
    assert check_labels(tmp_path / "d.npz", "y", one_hot, 10).tolist() == [3, 1, 4]
    with pytest.raises(DataError, match=r"`y` has 2 columns that are not one-hot rows"):
        check_labels(tmp_path / "d.npz", "y", np.array([[1, 7], [2, 0], [0, 0]]), 10)


TUNED = {"vars": {"width": {"tune": "int", "min": 4, "max": 8, "step": 4, "default": 4}}}


def _tuned(tmp_path, objective, outputs=None):
    doc = {**BASE, **TUNED, "tune": {"tuner": "random", "objective": objective}}
    doc["network"] = [{"conv": {"filters": "$width", "kernel": 3}}, *BASE["network"][1:]]
    doc["outputs"] = outputs or BASE["outputs"]
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


# A plain objective name that no trial reports was found only after the first trial trained.
def test_a_plain_objective_name_no_trial_reports_is_refused_by_validate(tmp_path, capsys):
    err = _refused(capsys, ["validate", _tuned(tmp_path, "val_acc")], "tune.objective")
    assert "val_accuracy" in err
    for name in ("val_accuracy", "accuracy", "val_loss", "loss"):
        assert cli.main(["validate", _tuned(tmp_path, name)]) == 0, name


def test_a_plain_objective_name_of_several_outputs_takes_their_prefixes(tmp_path, capsys):
    net = [*BASE["network"], {"dense": 10, "name": "aux", "from": "main"}]
    outputs = {
        "main": {"activation": "softmax", "metrics": ["accuracy"]},
        "aux": {"activation": "softmax", "train_only": True, "loss_weight": 0.3},
    }
    path = _tuned(tmp_path, "val_main_accuracy", outputs)
    doc = yaml.safe_load(open(path))
    doc["network"][-1:] = net[-2:]
    open(path, "w").write(yaml.safe_dump(doc, sort_keys=False))
    assert cli.main(["validate", path]) == 0, capsys.readouterr().err
    for name in ("val_aux_loss", "loss"):
        doc["tune"]["objective"] = name
        open(path, "w").write(yaml.safe_dump(doc, sort_keys=False))
        assert cli.main(["validate", path]) == 0, name
    doc["tune"]["objective"] = "val_accuracy"  # no prefix only with one output
    open(path, "w").write(yaml.safe_dump(doc, sort_keys=False))
    _refused(capsys, ["validate", path], "tune.objective", "val_main_accuracy")


# A space resolved only at its default: a float space feeding `filters` failed every trial
# ("no trial completed"), a dropout space reaching 1.5 the trials that picked it.
def test_a_space_that_breaks_a_rule_at_an_edge_is_refused_by_validate(tmp_path, capsys):
    doc = {**BASE, "vars": {"width": {"tune": "float", "min": 8, "max": 32}}}
    doc["network"] = [{"conv": {"filters": "$width", "kernel": 3}}, *BASE["network"][1:]]
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    err = _refused(capsys, ["validate", str(path)], "network[0].conv.filters", "vars/width=8.0)")
    doc["vars"]["width"] = {"tune": "int", "min": 8, "max": 32, "step": 8}
    doc["network"].insert(1, {"dropout": {"tune": "float", "min": 0.0, "max": 1.5}})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    err = _refused(capsys, ["validate", str(path)], "network[1].dropout")
    assert "=1.5)" in err


def test_a_space_inside_a_choice_is_tried_with_that_choice_picked(tmp_path, capsys):
    inner = {"dropout": {"tune": "float", "min": 0.1, "max": 2.0}}
    doc = {**BASE}
    doc["network"] = [
        {"tune": "choice", "values": [{"relu": None}, inner]},
        *BASE["network"],
    ]
    path = tmp_path / "nested.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    _refused(capsys, ["validate", str(path)], "dropout", "=2.0)")


# `random_zoom: 0.2` and `random_shear: 0.2` (the documented scalar form) passed validate and
# then Keras refused them ("missing height_factor"); factors out of Keras' range likewise, after
# the data was read and unlocated.
def test_the_scalar_form_of_zoom_and_shear_makes_their_layers():
    from blockspec.training.augment import augment_layers

    zoom, shear = augment_layers([{"random_zoom": 0.2}, {"random_shear": 0.3}], seed=0)
    assert zoom.height_factor == 0.2 and shear.x_factor == shear.y_factor == (-0.3, 0.3)


@pytest.mark.parametrize(
    "step", [{"random_zoom": -1}, {"random_rotation": -5}, {"random_hue": [0.1, 2]}]
)
def test_an_augment_factor_outside_keras_range_is_refused_by_validate(tmp_path, capsys, step):
    path = _spec(tmp_path, train={"augment": [step]})
    name = next(iter(step))
    _refused(capsys, ["validate", path], f"train.augment[0].{name}", "takes a factor from")


# `RandomCrop` by its Keras name takes height and width: a crop larger than the images passed
# validate, and the model then met images of the crop's size mid-fit.
def test_a_keras_randomcrop_larger_than_the_images_is_refused_by_validate(tmp_path, capsys):
    path = _spec(tmp_path, train={"augment": [{"RandomCrop": {"height": 20, "width": 20}}]})
    _refused(capsys, ["validate", path], "train.augment[0].RandomCrop", "larger than the images")
    path = _spec(tmp_path, train={"augment": [{"RandomCrop": {"height": 6, "width": 6}}]})
    assert cli.main(["validate", path]) == 0


# `monitor: val_acc` (no epoch reports it) stopped the run at its start with Keras' "cannot
# determine whether that metric should be maximized", after the data was read.
@pytest.mark.parametrize(
    "train, where",
    [
        ({"early_stopping": {"monitor": "val_acc"}}, "train.early_stopping.monitor"),
        (
            {"schedule": {"reduce_on_plateau": {"monitor": "val_acc"}}},
            "train.schedule.reduce_on_plateau.monitor",
        ),
    ],
)
def test_a_monitor_no_epoch_reports_is_refused_by_validate(tmp_path, capsys, train, where):
    err = _refused(capsys, ["validate", _spec(tmp_path, train=train)], where)
    assert "Did you mean `val_accuracy`" in err
    good = {k: {n: {"monitor": "val_accuracy"}} for k, v in train.items() for n in v}
    good = good if "schedule" in train else {"early_stopping": {"monitor": "val_accuracy"}}
    assert cli.main(["validate", _spec(tmp_path, train=good)]) == 0


# Keras' optimizers check these when made, after the data was read: unlocated ("<spec>").
@pytest.mark.parametrize(
    "optimizer, where",
    [
        ({"sgd": {"momentum": 2.0}}, "train.optimizer.sgd.momentum"),
        ({"ftrl": {"learning_rate_power": 1.0}}, "train.optimizer.ftrl.learning_rate_power"),
        ({"adam": {"gradient_accumulation_steps": 1}}, "gradient_accumulation_steps"),
        ({"adam": {"clipnorm": 1.0, "clipvalue": 0.5}}, "train.optimizer.adam.clipvalue"),
    ],
)
def test_optimizer_arguments_keras_refuses_are_refused_by_validate(
    tmp_path, capsys, optimizer, where
):
    _refused(capsys, ["validate", _spec(tmp_path, train={"optimizer": optimizer})], where)


def test_optimizer_arguments_in_range_are_accepted(tmp_path):
    optimizer = {"sgd": {"momentum": 0.9, "clipnorm": 1.0, "gradient_accumulation_steps": 2}}
    assert cli.main(["validate", _spec(tmp_path, train={"optimizer": optimizer})]) == 0


# `blockspec export RUN --format onnx -o DIR` deleted DIR (shutil.rmtree) and the user's files
# in it, to put the .onnx file there.
def test_export_never_replaces_a_folder_it_did_not_write(tmp_path):
    from blockspec.training.exporting import ExportError, check_target

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for format in ("onnx", "litert", "saved_model"):
        with pytest.raises(ExportError, match="never deletes what it did not write"):
            check_target(mine, format)
    (mine / "saved_model.pb").write_bytes(b"")
    check_target(mine, "saved_model")  # an earlier SavedModel export is replaced
    with pytest.raises(ExportError, match="is a SavedModel"):
        check_target(mine, "onnx")
    check_target(tmp_path / "model.onnx", "onnx")  # a new file, or one to overwrite
    assert (mine / "notes.txt").read_text() == "mine"


# `build --save DIR`, `--save model.txt` or a missing folder: Keras' ValueError after building.
@pytest.mark.parametrize("save", [".", "model.txt", "no_such_folder/model.keras"])
def test_build_save_needs_a_keras_file_in_a_folder_that_exists(tmp_path, capsys, save):
    path = _spec(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["build", path, "--save", str(tmp_path / save)])
    assert info.value.code == 2
    assert "--save" in capsys.readouterr().err


# `tune --out` into a train run's folder (or `--out .`) wrote trials/, best.yaml and trials.csv
# among its files, and `--overwrite` then deleted files of those names whoever wrote them.
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_tune_refuses_a_folder_that_holds_no_search(tmp_path, capsys, overwrite):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "best.yaml").write_text("mine")
    (out / "notes.txt").write_text("mine")
    path = _tuned(tmp_path, "val_accuracy")
    code = cli.main(["tune", path, "--out", str(out), *overwrite])
    err = capsys.readouterr().err
    assert code == 2 and "holds no blockspec search" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["best.yaml", "notes.txt"]
    assert (out / "best.yaml").read_text() == "mine"


# With no validation data a `val_` monitor never acts (Keras warns each epoch): refused, by
# validate where the spec tells (digits, synthetic), else once the data is read.
def test_a_val_monitor_without_validation_data_is_refused(tmp_path, capsys):
    import numpy as np

    train = {"early_stopping": True, "data": {"source": "digits", "validation_split": 0}}
    err = _refused(capsys, ["validate", _spec(tmp_path, train=train)], "train: no epoch reports")
    assert "(no validation data: `validation_split` is 0)" in err
    assert "Did you mean `loss`" in err
    ok = {**train, "early_stopping": {"monitor": "loss"}}
    assert cli.main(["validate", _spec(tmp_path, train=ok)]) == 0
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 40)
    np.savez(tmp_path / "d.npz", x=rng.uniform(0, 1, (40, 8, 8, 1)).astype("float32"), y=y)
    npz = {"source": "npz", "path": str(tmp_path / "d.npz"), "validation_split": 0}
    spec = _spec(tmp_path, train={"early_stopping": True, "data": npz})
    assert cli.main(["train", spec, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train.early_stopping watches `val_loss`, but this run has no validation data" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "run").glob("*.keras"))  # stopped before the first epoch


def test_a_folder_given_as_a_spec_or_a_weights_file_is_named_a_folder(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    assert cli.main(["validate", "nets"]) == 2
    assert "a folder of that name is here, but a spec is a file" in capsys.readouterr().err
    assert cli.main(["validate", "nets/"]) == 2
    assert "`nets/` is a folder, not a spec file" in capsys.readouterr().err
    assert cli.main(["build", _spec(tmp_path), "--weights", "nets"]) == 2
    assert "nets is a folder, not a weights file" in capsys.readouterr().err


def test_validate_and_training_agree_on_which_output_reports_accuracy(tmp_path, capsys):
    """With no metrics listed, training gives `accuracy` to the first live crossentropy output,
    here the second; validate used to look only at the first output and refused its name."""
    from blockspec import build_model
    from blockspec.builder.resolve import resolve_spec
    from blockspec.training.optim import objectives

    doc = {
        **BASE,
        "network": [
            {"flatten": {}, "name": "f"},
            {"dense": 1, "name": "a"},
            {"dense": 10, "from": "f", "name": "b"},
        ],
        "outputs": {"a": {"loss": "mse"}, "b": {"activation": "softmax"}},
        "train": {**BASE["train"], "early_stopping": {"monitor": "val_b_accuracy"}},
    }
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err
    model = build_model(str(path))
    compiled = objectives(resolve_spec(str(path)).outputs, model)
    assert compiled.metrics == {"a": [], "b": ["accuracy"]}
