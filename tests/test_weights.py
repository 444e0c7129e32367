"""Weights into built models (builder/weights.py), offline: every file here is made by the test from
models with random weights, in keras.applications' legacy `.h5` layout and Keras 3's formats."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from blockspec.builder.compile import build_model
from blockspec.builder.spec_weights import (
    build_with_weights,
    fetch_file,
    imagenet_weights,
    weights_file,
)
from blockspec.builder.weights import WeightsError, file_sha256, load_weights

SMALL = "digits_googlenet"


def randomize(model, seed: int = 0) -> None:
    """Random weights everywhere, batch-norm scales and variances positive."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "variance" in w.path or "gamma" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        else:
            w.assign(rng.normal(0, 0.05, w.shape).astype("float32"))


def save_legacy_h5(model, path) -> None:
    """keras.applications' ImageNet file layout: `layer_names` on the file, a group per layer
    with `weight_names`, a dataset per weight (what `keras.applications.X(weights=path)` reads)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{w.path}:0" for w in layer.weights]  # a nested model's: `stem/stem_conv/...`
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, w in zip(names, layer.weights, strict=True):
                group.create_dataset(name, data=np.asarray(w))


def outputs(model, x):
    """The main output, called directly (no `predict`: its tracing costs seconds per model)."""
    y = model(x, training=False)
    return np.asarray(y["main"] if isinstance(y, dict) else y)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A trained-looking small model, saved as `.keras` and `.weights.h5`; and inputs."""
    folder = tmp_path_factory.mktemp("weights")
    model = build_model(SMALL)
    randomize(model, seed=3)
    model.save(folder / "small.keras")
    model.save_weights(folder / "small.weights.h5")
    x = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 1)).astype("float32")
    return folder, outputs(model, x), x


@pytest.mark.slow
def test_resnet50_takes_keras_applications_legacy_h5(tmp_path):
    """The zoo's resnet50 has keras.applications' layer names: its legacy file loads by name,
    and the two models compute the same."""
    app = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    randomize(app)
    path = tmp_path / "r50.h5"
    save_legacy_h5(app, path)
    randomize(app, seed=1)
    app.load_weights(path)  # keras.applications' own reading of its legacy files
    reference = app
    zoo = build_model("resnet50", {"input": [64, 64, 3]})
    report = load_weights(zoo, path)
    assert (report.loaded, report.total, report.skipped) == (320, 320, [])
    assert report.sha256 == file_sha256(path) and len(report.sha256) == 64
    assert report.by_order == 0 and report.pairs["conv2_block1_1_conv"] == "conv2_block1_1_conv"
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    features = [
        np.asarray(keras.Model(reference.input, reference.get_layer("avg_pool").output)(x)),
        np.asarray(keras.Model(zoo.input, zoo.get_layer("predictions").input)(x)),
    ]
    assert np.abs(features[0] - features[1]).max() < 1e-5 * max(1.0, np.abs(features[0]).max())
    assert np.abs(outputs(reference, x) - outputs(zoo, x)).max() < 1e-5

    head10 = build_model("resnet50", {"input": [64, 64, 3], "vars.classes": 10})
    report = load_weights(head10, path)
    assert (report.loaded, report.total) == (318, 320)
    assert "skipped predictions: kernel (2048, 10) vs (2048, 1000)" in report.line()
    before = [np.asarray(w) for w in head10.weights]
    with pytest.raises(WeightsError, match=r"r50\.h5: weights_strict refuses.*predictions"):
        load_weights(head10, path, strict=True)
    assert all(
        np.array_equal(a, np.asarray(w)) for a, w in zip(before, head10.weights, strict=True)
    )


@pytest.mark.parametrize("name", ["small.keras", "small.weights.h5"])
def test_keras3_sources_load_by_name(small, name):
    folder, expected, x = small
    model = build_model(SMALL)
    report = load_weights(model, folder / name, strict=True)
    assert report.loaded == report.total and report.by_order == 0
    np.testing.assert_allclose(outputs(model, x), expected, atol=1e-6)


def test_inference_model_takes_what_it_has_and_leaves_the_aux_head(small):
    folder, expected, x = small
    model = build_model(SMALL, inference=True)  # no aux head: its file layers go unused
    report = load_weights(model, folder / "small.keras", strict=True)
    assert report.loaded == report.total and report.unused
    assert "layers of the file unused" in report.line()
    np.testing.assert_allclose(outputs(model, x), expected, atol=1e-6)


def test_keras3_file_with_other_names_loads_by_structure(tmp_path):
    def net(prefix: str):
        inp = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(4, 3, name=f"{prefix}conv")(inp)
        h = keras.layers.BatchNormalization(name=f"{prefix}bn")(h)
        h = keras.layers.Flatten()(h)
        return keras.Model(inp, keras.layers.Dense(3, name=f"{prefix}out")(h))

    source, target = net("a_"), net("b_")
    randomize(source, seed=5)
    source.save_weights(tmp_path / "a.weights.h5")
    report = load_weights(target, tmp_path / "a.weights.h5")
    assert report.loaded == report.total == report.by_order == 8
    x = np.ones((1, 8, 8, 1), "float32")
    np.testing.assert_allclose(outputs(target, x), outputs(source, x))
    untouched = net("c_")
    report = load_weights(untouched, tmp_path / "a.weights.h5", match="name")
    assert report.loaded == 0 and "c_conv: not in the file" in report.line()


def test_partial_transfer_reports_the_skipped_head(small):
    folder, _, _ = small
    model = build_model(SMALL, {"vars.classes": 5})
    report = load_weights(model, folder / "small.weights.h5")
    assert report.loaded < report.total
    assert "main_dense: kernel (160, 5) vs (160, 10)" in report.line()
    with pytest.raises(WeightsError, match="weights_strict refuses a partial load"):
        load_weights(model, folder / "small.weights.h5", strict=True)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a weights file at all", b"\x89HDF\r\n\x1a\n" + bytes(200), b"PK\x03\x04junk"],
)
def test_damaged_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.h5"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"broken\.h5: not a readable weights file"):
        load_weights(build_model(SMALL), path)


def test_truncated_weights_and_wrong_files_are_clear_errors(small, tmp_path):
    folder, _, _ = small
    data = (folder / "small.weights.h5").read_bytes()
    (tmp_path / "cut.weights.h5").write_bytes(data[: len(data) // 2])
    model = build_model(SMALL)
    with pytest.raises(WeightsError, match=r"cut\.weights\.h5: "):
        load_weights(model, tmp_path / "cut.weights.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=[1, 2, 3])
    with pytest.raises(WeightsError, match=r"other\.h5: an HDF5 file without Keras weights"):
        load_weights(model, tmp_path / "other.h5")
    with pytest.raises(WeightsError, match=r"missing\.h5: cannot read"):
        load_weights(model, tmp_path / "missing.h5")
    with pytest.raises(WeightsError, match=r"nothere\.h5: no such weights file"):
        weights_file("nothere.h5", base_dir=tmp_path)


def test_build_with_weights_resolves_paths_and_reports(small):
    folder, expected, x = small
    model, report = build_with_weights(SMALL, folder / "small.keras")
    assert report.to_json()["sha256"] == file_sha256(folder / "small.keras")
    np.testing.assert_allclose(outputs(model, x), expected, atol=1e-6)


def test_imagenet_offline_says_where_to_put_the_file(tmp_path):
    with pytest.raises(WeightsError) as info:
        fetch_file("r50.h5", "http://127.0.0.1:9/r50.h5", "0" * 32, cache_dir=str(tmp_path))
    message = str(info.value)
    assert "cannot download r50.h5" in message and "no network" in message
    assert f"Put the file at {tmp_path / 'models' / 'r50.h5'}" in message
    assert "--weights PATH" in message
    with pytest.raises(WeightsError, match="no ImageNet weights for `resnet18`.*resnet50, "):
        imagenet_weights("resnet18")


def test_imagenet_file_in_the_cache_is_used_without_network(tmp_path):
    """A file already in the Keras cache with the right hash is taken as it is."""
    import hashlib

    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / "r50.h5"
    cached.write_bytes(b"weights")
    md5 = hashlib.md5(b"weights").hexdigest()
    assert fetch_file("r50.h5", "http://127.0.0.1:9/r50.h5", md5, str(tmp_path)) == cached
