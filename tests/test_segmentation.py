"""Per-pixel outputs: the synthetic segmentation source, its rules, and the zoo's U-Net training."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from blockspec import cli
from blockspec.builder.errors import SpecError
from blockspec.builder.resolve import resolve_spec
from blockspec.builder.shapes import check_shapes
from blockspec.training import data as data_lib

UNET = "unet"
SMALL = {"input": [32, 32, 3], "vars.filters": 8}


def run(capsys, *args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text, text
    return code, " ".join(text.split())


def masks_source(classes=4, samples=16, seed=0):
    return data_lib.load_source(
        {"source": "synthetic", "masks": True, "samples": samples, "classes": classes,
         "validation_split": 0.25},
        image_size=(24, 20), channels=3, classes=classes, seed=seed,
    )  # fmt: skip


def test_masks_give_a_class_per_pixel_deterministically():
    source = masks_source()
    assert (source.train.size, source.validation.size) == (12, 4)
    assert source.class_names == ["background", "class_1", "class_2", "class_3"]
    [(x, y)] = list(source.train.dataset.take(1))
    [(x2, y2)] = list(masks_source().train.dataset.take(1))
    assert x.shape == (24, 20, 3) and y.shape == (24, 20) and y.dtype == "int32"
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(x, x2)
    labels = np.concatenate([m.numpy().ravel() for _, m in source.train.dataset])
    assert labels.min() == 0 and labels.max() <= 3 and len(set(labels)) >= 3
    assert 0.2 < (labels == 0).mean() < 0.95  # background and boxes both present


def test_the_unet_predicts_a_class_per_pixel_and_passes_the_shape_check():
    resolved = resolve_spec(UNET, SMALL)
    assert check_shapes(resolved) == []
    from blockspec.builder.compile import compile_spec

    model = compile_spec(resolved).model
    assert tuple(model.output["main"].shape) == (None, 32, 32, 4)


@pytest.mark.parametrize(
    "overrides, path, words",
    [
        ({"train.augment": [{"random_flip": "horizontal"}]}, "train.augment",
         "moves or changes images but not their per-pixel labels"),
        ({"train.evaluate": {"tta": ["flip"]}}, "train.evaluate.tta",
         "would mix other pixels' classes"),
        ({"train.data.image_size": [16, 16]}, "train.data.image_size",
         "made at the model input's size"),
        ({"train.data.masks": "yes"}, "train.data.masks", "`masks` must be true or false"),
    ],
)  # fmt: skip
def test_what_a_per_pixel_task_cannot_do_is_refused_located(overrides, path, words):
    with pytest.raises(SpecError) as e:
        resolve_spec(UNET, {**SMALL, **overrides})
    text = str(e.value)
    assert re.search(r"(unet\.yaml|--set [\w.]+):\d+:\d+  " + re.escape(path), text), text
    assert words in text


def test_a_pooled_output_on_per_pixel_labels_is_a_shape_error():
    network = [
        {"conv": {"filters": 8, "kernel": 3, "padding": "same"}},
        {"global_avg_pool": {}},
        {"dense": 4, "name": "logits"},
    ]
    resolved = resolve_spec(UNET, {"input": [32, 32, 3], "network": network})
    problems = check_shapes(resolved)
    assert len(problems) == 1
    assert "class id of every pixel (`masks: true`), so it needs the shape (batch, 32, 32," in str(
        problems[0]
    )


@pytest.mark.slow
def test_the_unet_trains_on_generated_masks_and_evaluates_per_pixel(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sets = [f"{k}={json.dumps(v)}" for k, v in SMALL.items()]
    sets += ["train.epochs=4", "train.data.samples=256"]
    args = [x for s in sets for x in ("--set", s)]
    code, text = run(capsys, "train", UNET, "--out", "run", *args)
    assert code == 0, text
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    source = data_lib.load_source(
        {"source": "synthetic", "masks": True, "samples": 256, "classes": 4, "noise": 0.3,
         "validation_split": 0.25},
        image_size=(32, 32), channels=3, classes=4, seed=0,
    )  # fmt: skip
    labels = np.concatenate([m.numpy().ravel() for _, m in source.validation.dataset])
    majority = np.bincount(labels).max() / labels.size  # always answering the commonest class
    assert history["best"]["val_accuracy"]["value"] > majority + 0.05, (history, majority)
    code, text = run(capsys, "evaluate", "run")
    assert code == 0 and "accuracy" in text
    code, text = run(capsys, "evaluate", "run", "--tta", "flip")
    assert code == 2 and "predicts a class per pixel" in text
