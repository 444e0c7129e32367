"""`training.config`: the `train` section's checks and defaults (pure Python, no TensorFlow)."""

import os
import subprocess
import sys

import pytest

from blockspec.training.config import TRAIN_DEFAULTS, check_train, with_defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def messages(train):
    return dict(check_train(train))


def test_defaults_are_valid_and_offline():
    assert check_train({}) == []
    assert check_train(None) == []
    assert check_train(TRAIN_DEFAULTS) == []
    full = with_defaults({})
    assert full["data"]["source"] == "digits"
    assert full["optimizer"] == {"adam": {"learning_rate": 1e-3}}
    assert full["early_stopping"] is None
    assert full["distribute"] == "none"


def test_unknown_source_suggests_the_close_name():
    assert check_train({"data": {"source": "digts"}}) == [
        (
            "data.source",
            "unknown data source `digts`; did you mean `digits`? Received: source='digts'",
        )
    ]


def test_nothing_close_lists_the_choices():
    msg = messages({"data": {"source": "imagenet"}})["data.source"]
    assert "Expected one of: digits, synthetic, folder, npz, tfds" in msg
    assert "Received: source='imagenet'" in msg


def test_source_specific_keys():
    found = messages({"data": {"source": "npz", "name": "mnist"}})
    assert "(a key of source `tfds`)" in found["data.name"]
    assert "needs `path`" in found["data.path"]
    assert "needs `name`" in messages({"data": {"source": "tfds"}})["data.name"]
    assert check_train({"data": {"source": "folder", "path": "imgs", "image_size": [32, 32]}}) == []


@pytest.mark.parametrize(
    "train, path, text",
    [
        ({"optimizer": {"adamm": {}}}, "optimizer", "did you mean `adam`?"),
        ({"optimizer": {"sgd": {"learning_rate": -1}}}, "optimizer.sgd.learning_rate", "> 0.0"),
        ({"optimizer": {"sgd": {}, "adam": {}}}, "optimizer", "exactly one key"),
        (
            {"schedule": {"cosine": {"warmup_epochs": -1}}},
            "schedule.cosine.warmup_epochs",
            "non-negative",
        ),
        (
            {"schedule": {"cosine": {"warmup": 1}}},
            "schedule.cosine.warmup",
            "did you mean `warmup_epochs`?",
        ),
        ({"schedule": {"step": {}}}, "schedule.step", "needs `every`"),
        ({"schedule": {"cosin": {}}}, "schedule", "did you mean `cosine`?"),
        (
            {"augment": [{"random_flip": "horizontl"}]},
            "augment.0.random_flip",
            "did you mean `horizontal`?",
        ),
        (
            {"augment": [{"random_crop": {"size": [28]}}]},
            "augment.0.random_crop",
            "size: [height, width]",
        ),
        (
            {"augment": ["random_flip", {"random_zom": 0.1}]},
            "augment.1.random_zom",
            "did you mean `random_zoom`?",
        ),
        ({"precision": "fp16"}, "precision", "mixed_float16"),
        ({"distribute": "mirored"}, "distribute", "did you mean `mirrored`?"),
        ({"jit_compile": "yes"}, "jit_compile", "true, false or `auto`"),
        ({"deterministic": "yes"}, "deterministic", "must be true or false"),
        ({"epochs": 0}, "epochs", "positive integer. Received: epochs=0"),
        ({"batch_size": 3.5}, "batch_size", "positive integer"),
        ({"label_smoothing": 1.0}, "label_smoothing", "< 1.0"),
        ({"early_stopping": {"patience": -2}}, "early_stopping.patience", "non-negative"),
        ({"evaluate": {"tta": ["flips"]}}, "evaluate.tta.0", "did you mean `flip`?"),
        ({"data": {"validation_split": 1.5}}, "data.validation_split", "< 1.0"),
        ({"epoch": 3}, "epoch", "did you mean `epochs`?"),
    ],
)
def test_each_problem_names_its_path(train, path, text):
    found = messages(train)
    assert path in found, found
    assert text in found[path]


def test_every_problem_is_reported_at_once():
    problems = check_train(
        {"data": {"source": "digts"}, "epochs": -1, "precision": "half", "augment": "flip"}
    )
    assert {p for p, _ in problems} == {"data.source", "epochs", "precision", "augment"}


def test_weight_decay_belongs_to_train():
    found = messages({"optimizer": {"adamw": {"weight_decay": 0.1}}})
    assert "train.weight_decay" in found["optimizer.adamw.weight_decay"]


def test_with_defaults_normalises():
    full = with_defaults(
        {"optimizer": "sgd", "early_stopping": True, "data": {"image_size": [32, 32]}}
    )
    assert full["optimizer"] == {"sgd": {}}
    assert full["early_stopping"]["monitor"] == "val_loss"
    assert full["data"] == {
        "source": "digits",
        "validation_split": 0.2,
        "cache": "auto",
        "image_size": [32, 32],
    }


def test_importing_the_config_does_not_import_tensorflow():
    code = (
        "import sys, training, training.config, training.commands; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_the_resolver_reports_train_problems_with_their_place():
    from blockspec.builder import SpecError, resolve_spec

    spec = {
        "spec": 1,
        "name": "t",
        "input": [8, 8, 1],
        "network": [{"flatten": {}}, {"dense": {"units": 10}, "name": "main"}],
        "outputs": {"main": {"activation": "softmax"}},
        "train": {"data": {"source": "digts"}, "augment": [{"random_flip": "sideways"}]},
    }
    with pytest.raises(SpecError, match=r"train\.data\.source: unknown data source `digts`") as e:
        resolve_spec(spec)
    assert any(p.path == "train.augment[0].random_flip" for p in e.value.problems)
