"""One check phase: what build, train or tune refused late, `validate` now refuses first (issue 12).

`LATE_REFUSALS` is the list of those refusals, each with where it used to be raised and the bad
spec that pins its message now; a new late refusal belongs in it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from blockspec import cli
from blockspec.builder import SpecError, resolve_spec
from blockspec.builder.resolve.outputs import ACTIVATIONS, LOSSES, METRICS
from blockspec.builder.resolve.train import TrainConfig
from blockspec.builder.resolve.train_keys import OPTIMIZER_ARGS, with_defaults
from blockspec.builder.resolve.tune import TuneConfig, searchable_problems
from blockspec.builder.spec import Step, layer_name

CORPUS = Path(__file__).resolve().parent / "bad_specs"
LOCATED = re.compile(r"\S+:\d+:\d+  ")

# (where it was refused before, the bad spec that validate refuses now)
LATE_REFUSALS = (
    ("compile: Keras, unknown output activation", "96_output_unknown_activation"),
    ("train: keras.losses.get", "97_output_unknown_loss"),
    ("train: Model.compile metrics", "98_output_unknown_metric"),
    ("tune: keras-tuner Hyperband", "99_tune_hyperband_factor_one"),
    ("tune: keras-tuner seed", "100_tune_seed_not_integer"),
    ("tune: search.objective_of", "101_tune_objective_split_test"),
    ("train: NaN loss", "102_loss_weight_nan"),
    ("train: NaN optimizer state", "103_optimizer_argument_inf"),
    ("train: Keras deserialisation (loss)", "104_keras_object_in_loss"),
    ("train: Keras deserialisation (augment)", "105_keras_object_in_augment"),
    ("train: Keras deserialisation (optimizer)", "106_keras_object_in_optimizer_argument"),
    ("train: trainer.image_geometry crop", "107_random_crop_larger_than_images"),
    ("train/plot: the name became a path", "108_spec_name_is_a_path"),
    ("train: trainer.image_geometry image input", "112_train_image_size_without_image_input"),
    ("tune: search.check_searchable", "111_tune_hyperband_epochs_space"),
    ("tune: search._metric_name", "113_tune_objective_metric_not_reported"),
    ("train: optim.make_optimizer", "114_optimizer_unknown_argument"),
)


@pytest.mark.parametrize("where, stem", LATE_REFUSALS, ids=[s for _, s in LATE_REFUSALS])
def test_validate_refuses_what_was_refused_late(where, stem, capsys):
    code = cli.main(["validate", str(CORPUS / f"{stem}.yaml")])
    err = capsys.readouterr().err
    assert code == 2, where
    assert LOCATED.search(err) and "Traceback" not in err, err


def test_every_section_is_checked_in_one_pass():
    with pytest.raises(SpecError) as info:
        resolve_spec(str(CORPUS / "110_every_section_at_once.yaml"))
    sections = {p.path.split(".")[0].split("[")[0] for p in info.value.problems}
    assert sections == {"network", "outputs", "train", "tune"}


def test_a_set_var_that_nothing_reads_is_a_typo(capsys):
    assert cli.main(["validate", "googlenet", "--set", "vars.clases=10"]) == 2
    err = capsys.readouterr().err
    assert "--set vars.clases:1:1  vars.clases: --set gives var `clases`" in err
    assert "Did you mean `classes`?" in err
    assert cli.main(["validate", "googlenet", "--set", "vars.classes=10"]) == 0


SOFTMAX_TWICE = {
    "spec": 1,
    "input": [8],
    "network": [{"dense": {"units": 4, "activation": "softmax"}, "name": "main"}],
    "outputs": {"main": {"activation": "softmax"}},
}


def test_softmax_into_a_softmax_output_is_a_warning(tmp_path, capsys):
    import yaml

    resolved = resolve_spec(SOFTMAX_TWICE)
    assert [w.path for w in resolved.warnings] == ["outputs.main.activation"]
    assert "already ends in softmax" in resolved.warnings[0].message
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(SOFTMAX_TWICE))
    assert cli.main(["validate", str(path)]) == 0
    assert "warning: " in capsys.readouterr().err
    logits = {**SOFTMAX_TWICE, "network": [{"dense": 4, "name": "main"}]}
    assert resolve_spec(logits).warnings == ()


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "..", "a-b", "1abc", "a" * 65, ""])
def test_spec_and_step_names_are_identifiers(name):
    spec = {"spec": 1, "name": name, "input": [8], "network": [{"dense": 4, "name": name}]}
    with pytest.raises(SpecError) as info:
        resolve_spec(spec)
    assert {p.path for p in info.value.problems} == {"name", "network[0].name"}


def test_a_file_name_that_is_not_an_identifier_gives_a_safe_default_name(tmp_path):
    path = tmp_path / "01-my net.yaml"
    path.write_text("spec: 1\ninput: [8]\nnetwork: [dense: 4]\n")
    assert resolve_spec(str(path)).name == "spec_01_my_net"


def test_train_and_tune_resolve_to_frozen_typed_configs():
    resolved = resolve_spec("googlenet")
    train = resolved.train_config
    assert isinstance(train, TrainConfig) and isinstance(resolved.tune_config, TuneConfig)
    assert (train.optimizer.name, train.batch_size) == ("sgd", 64)
    assert [step.name for step in train.augment] == ["random_crop", "random_flip"]
    assert train.as_dict() == with_defaults(resolved.train)
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.epochs = 3
    assert resolve_spec({"spec": 1, "input": [8], "network": [{"dense": 4}]}).train_config == (
        TrainConfig.from_section({})
    )


@pytest.mark.parametrize(
    "name, overrides",
    [("googlenet", {"input": [64, 64, 3]}), ("unet", {"input": [32, 32, 3]}), ("digits_tune", {})],
)
def test_the_resolved_spec_is_frozen_and_compiling_never_edits_it(name, overrides):
    from blockspec.builder.compile import compile_spec
    from blockspec.builder.shapes import check_shapes

    resolved = resolve_spec(name, overrides)
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.network[0].args = {}
    before = repr(resolved)
    assert check_shapes(resolved) == []
    compile_spec(resolved)
    compile_spec(resolved, inference=True)
    assert repr(resolved) == before


def test_searchable_rules_live_in_the_compiler():
    train = TrainConfig.from_section({"distribute": "multi_worker"})
    problems = searchable_problems(TuneConfig(), train, [])
    assert [p.problem().path for p in problems] == ["train.distribute"]
    spec = {
        "spec": 1,
        "input": [8, 8, 1],
        "network": [{"flatten": {}}, {"dense": 10}],
        "train": {"distribute": "multi_worker"},
        "tune": {"max_trials": 2},
    }
    with pytest.raises(SpecError, match=r"train\.distribute: a search trains each trial"):
        resolve_spec(spec)


def test_layer_names_never_say_a_name_twice():
    def named(name, kind):
        return layer_name(Step(type=kind, name=name), {name})

    assert named("aux1", "aux_classifier") == "aux1_aux_classifier"  # the zoo's names
    assert named("aux", "aux_classifier") == "aux_classifier"
    assert named("dense", "dense") == "dense_step"
    assert layer_name(Step(type="dense", name="fc"), {"main"}) == "fc"


def test_keras_name_tables_match_the_installed_keras():
    import inspect

    import keras
    from keras.src.activations import ALL_OBJECTS_DICT as activations
    from keras.src.losses import ALL_OBJECTS_DICT as losses

    assert set(ACTIVATIONS) == set(activations)
    assert set(LOSSES) <= set(losses)
    assert {n for n in losses if n.islower() and n != "bce"} <= set(LOSSES) | {"kld", "mae"}
    for metric in set(METRICS) - {"acc", "ce", "crossentropy"}:  # compile's own shorthands
        found = keras.metrics.get(metric)
        assert found() if isinstance(found, type) else found, metric  # a name alone builds it
    from blockspec.training.optim import _optimizer_class  # the class training makes

    for name, args in OPTIMIZER_ARGS.items():
        signature = inspect.signature(_optimizer_class(name).__init__).parameters
        assert set(args) == set(signature) - {"self", "kwargs", "name", "weight_decay"}, name
