"""Data sources, preprocessing and the tf.data pipeline of `training.data`."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from blockspec.training import data as data_lib
from blockspec.training.augment import AugmentError, augment_layers
from blockspec.training.errors import DataError


def load(data, image_size=(16, 16), channels=1, classes=10, seed=0, base_dir=None):
    return data_lib.load_source(
        {"validation_split": 0.2, **data},
        image_size=image_size,
        channels=channels,
        classes=classes,
        seed=seed,
        base_dir=base_dir,
    )


def arrays(split):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in split.dataset], strict=True)
    return np.stack(xs), np.array(ys)


def test_digits_are_raw_8x8_with_a_stratified_split():
    source = load({"source": "digits"})
    assert (source.train.size, source.validation.size) == (1437, 360)
    assert source.raw_shape == (8, 8)
    assert source.scale == pytest.approx(1 / 16)
    assert source.class_names == [str(i) for i in range(10)]
    x, y = arrays(source.validation)
    assert x.shape == (360, 8, 8) and x.max() == 16.0
    assert np.bincount(y).min() >= 35  # every digit is in the validation split


@pytest.mark.parametrize(
    "data",
    [
        {"source": "digits"},
        {"source": "digits", "validation_split": 0.1},
        {"source": "digits", "validation_split": 0},
        {"source": "synthetic", "samples": 101, "validation_split": 0.3},
    ],
)
def test_a_known_source_size_is_what_loading_gives(data):
    """Schedules span epochs of `training_examples` batches before any data is read."""
    from blockspec.training.sources import training_examples

    assert training_examples({"validation_split": 0.2, **data}) == load(data).train.size


def test_a_source_without_validation_split_is_sized_with_the_same_default():
    from blockspec.training.sources import training_examples

    data = {"source": "synthetic", "samples": 50}  # no validation_split: both take 0.2
    source = data_lib.load_source(data, image_size=(8, 8), channels=1, classes=3, seed=0)
    assert training_examples(data) == source.train.size == 40


def test_preprocess_resizes_rescales_and_adapts_grey_to_rgb():
    source = load({"source": "digits"})
    x, _ = arrays(source.validation)
    grey = data_lib.preprocess_model((8, 8), (16, 16), 1, source.scale)
    rgb = data_lib.preprocess_model((8, 8), (16, 16), 3, source.scale)
    g, c = np.asarray(grey(x[:4])), np.asarray(rgb(x[:4]))
    assert g.shape == (4, 16, 16, 1) and c.shape == (4, 16, 16, 3)
    assert 0.0 <= g.min() and g.max() <= 1.0 and g.max() > 0.9
    np.testing.assert_allclose(c[..., 0], g[..., 0])
    np.testing.assert_allclose(c[..., 2], g[..., 0])


def test_preprocess_rgb_to_grey_uses_luminance():
    red = np.zeros((1, 5, 7, 3), "float32")
    red[..., 0] = 255.0
    model = data_lib.preprocess_model((None, None, 3), (4, 4), 1, 1 / 255)
    out = np.asarray(model(red))
    assert out.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(out, 0.299, rtol=1e-5)


def test_synthetic_is_deterministic_and_learnable():
    from sklearn.linear_model import LogisticRegression

    spec = {"source": "synthetic", "samples": 400, "classes": 4, "noise": 0.5}
    first = load(spec, image_size=(12, 12), channels=3)
    again = load(spec, image_size=(12, 12), channels=3)
    assert (first.train.size, first.validation.size) == (320, 80)
    assert first.raw_shape == (12, 12, 3)
    assert first.class_names == ["class_0", "class_1", "class_2", "class_3"]
    x, y = arrays(first.train)
    np.testing.assert_array_equal(x, arrays(again.train)[0])
    vx, vy = arrays(first.validation)
    assert sorted(set(y)) == [0, 1, 2, 3]
    fit = LogisticRegression(max_iter=500).fit(x.reshape(len(x), -1), y)
    assert fit.score(vx.reshape(len(vx), -1), vy) > 0.9


def write_image(path, size, color, mode="RGB"):
    from PIL import Image

    image = Image.new(mode, size, color)
    image.save(path)


def make_folder(root, sizes=((20, 14), (9, 30), (32, 32))):
    for name, color in (("cat", (250, 10, 10)), ("dog", (10, 10, 250))):
        (root / name).mkdir(parents=True)
        for i in range(6):
            size = sizes[i % len(sizes)]
            if i == 5:
                write_image(root / name / f"{i}.png", size, 128, mode="L")  # grey file
            elif i == 4:
                write_image(root / name / f"{i}.jpg", size, color)
            else:
                write_image(root / name / f"{i}.png", size, color)
        (root / name / "notes.txt").write_text("not an image")
    return root


def test_folder_of_class_folders_any_size(tmp_path):
    root = make_folder(tmp_path / "pets")
    source = load({"source": "folder", "path": "pets"}, image_size=(12, 12), base_dir=tmp_path)
    assert source.class_names == ["cat", "dog"]
    assert source.train.size + source.validation.size == 12
    assert source.raw_shape == (None, None, 3)
    x, y = arrays(source.train)
    assert x.shape[1:] == (12, 12, 3)
    red = x[(y == 0) & (x[..., 0].mean(axis=(1, 2)) > 200)]
    assert len(red) > 0 and red[..., 2].max() < 30
    # A validation folder instead of a split; the classes must match.
    (tmp_path / "val").mkdir()
    make_folder(tmp_path / "val" / "pets")
    other = load(
        {"source": "folder", "path": str(root), "validation_path": str(tmp_path / "val" / "pets")},
        image_size=(12, 12),
    )
    assert (other.train.size, other.validation.size) == (12, 12)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        load({"source": "folder", "path": str(tmp_path / "nope")})
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="has no usable images"):
        load({"source": "folder", "path": str(tmp_path / "empty")})


def test_npz_arrays_with_a_test_split(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 255, (50, 10, 10, 3), dtype="uint8"),
        y_train=np.arange(50) % 5,
        x_test=rng.integers(0, 255, (20, 10, 10, 3), dtype="uint8"),
        y_test=np.arange(20) % 5,
        class_names=np.array(["a", "b", "c", "d", "e"]),
    )
    source = load({"source": "npz", "path": str(path)}, image_size=(10, 10), channels=3)
    assert (source.train.size, source.validation.size, source.test.size) == (40, 10, 20)
    assert source.class_names == ["a", "b", "c", "d", "e"]
    assert source.scale == pytest.approx(1 / 255)
    assert source.raw_shape == (10, 10, 3)
    with pytest.raises(DataError, match="has no array `pixels`"):
        load({"source": "npz", "path": str(path), "x_key": "pixels"})
    with pytest.raises(DataError, match="not found"):
        load({"source": "npz", "path": str(tmp_path / "missing.npz")})


def test_npz_float_arrays_and_one_hot_labels(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, x=np.ones((10, 4, 4), "float64"), y=np.eye(3)[np.arange(10) % 3])
    source = load({"source": "npz", "path": str(path), "validation_split": 0.0})
    x, y = arrays(source.train)
    assert source.validation is None and source.scale == 1.0
    assert x.dtype == np.float32 and list(y) == list(np.arange(10) % 3)


def test_tfds_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DataError, match=r"pip install 'blockspec\[tfds\]'"):
        load({"source": "tfds", "name": "mnist"})


class FakeBuilder:
    """The part of `tfds.core.DatasetBuilder` the source uses, over in-memory examples."""

    def __init__(self, name, offline=False):
        self.name, self.offline = name, offline
        count = {"train": 30, "test": 10}
        self.info = types.SimpleNamespace(
            splits={k: types.SimpleNamespace(num_examples=v) for k, v in count.items()},
            features={
                "image": types.SimpleNamespace(shape=(28, 28, 1)),
                "label": types.SimpleNamespace(names=["zero", "one", "two"], num_classes=3),
            },
        )
        self.images = np.arange(40 * 28 * 28, dtype="uint8").reshape(40, 28, 28, 1)
        self.labels = np.arange(40) % 3

    def download_and_prepare(self):
        if self.offline:
            raise ConnectionError("Failed to resolve host")

    def as_dataset(self, split, shuffle_files=False):
        name, _, rest = split.partition("[")
        lo, hi = (0, 30) if name == "train" else (30, 40)
        if rest:
            a, b = rest.rstrip("]").split(":")
            lo, hi = lo + int(a or 0), (lo + int(b) if b else hi)
        return tf.data.Dataset.from_tensor_slices(
            {"image": self.images[lo:hi], "label": self.labels[lo:hi]}
        )


def fake_tfds(offline=False):
    module = types.ModuleType("tensorflow_datasets")
    module.builder = lambda name, data_dir=None: FakeBuilder(name, offline)
    return module


def test_tfds_by_name(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds())
    source = load({"source": "tfds", "name": "mnist"}, image_size=(16, 16))
    assert (source.train.size, source.validation.size, source.test.size) == (24, 6, 10)
    assert source.class_names == ["zero", "one", "two"]
    assert source.raw_shape == (28, 28, 1)
    x, y = arrays(source.test)
    assert x.shape == (10, 16, 16, 1) and list(y) == list(np.arange(30, 40) % 3)


def test_tfds_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(offline=True))
    with pytest.raises(DataError, match=r"could not download TFDS dataset `mnist` \(offline\?\)"):
        load({"source": "tfds", "name": "mnist"})


def test_pipeline_augments_training_only_and_fits_the_input():
    source = load({"source": "digits"})
    preprocess = data_lib.preprocess_model(source.raw_shape, (16, 16), 1, source.scale)
    layers = augment_layers([{"random_crop": [12, 12]}, "random_flip"], seed=1)
    pipes = data_lib.make_pipelines(
        source,
        preprocess,
        augment=layers,
        fit=data_lib.fit_to_input((16, 16), (12, 12)),
        labels=lambda y: {"main": y, "aux1": y},
        batch_size=64,
        seed=0,
    )
    assert pipes.steps_per_epoch == 23 and pipes.validation_steps == 6
    assert int(pipes.train.cardinality()) == 23
    x, y = next(iter(pipes.train))
    assert x.shape == (64, 12, 12, 1) and set(y) == {"main", "aux1"}
    vx, _ = next(iter(pipes.validation))
    full = preprocess(arrays(source.validation)[0][:64])
    # Validation is the deterministic center crop; training crops are random.
    np.testing.assert_allclose(vx.numpy(), np.asarray(full)[:, 2:14, 2:14, :], atol=1e-6)
    x2, _ = next(iter(pipes.train))
    assert not np.allclose(x.numpy(), x2.numpy())


def test_cache_decision():
    assert data_lib.should_cache("auto", 1000, (32, 32, 3))
    assert not data_lib.should_cache("auto", 1_000_000, (224, 224, 3))
    assert data_lib.should_cache(True, 10**9, (224, 224, 3))


def test_augment_layers_from_steps():
    layers = augment_layers(
        [
            {"random_crop": {"size": [28, 28]}},
            {"random_flip": "horizontal"},
            {"random_translation": 0.1},
            {"random_rotation": 0.05},
            {"random_brightness": 0.2},
            {"RandomZoom": {"height_factor": 0.1}},
        ],
        seed=0,
    )
    names = [type(layer).__name__ for layer in layers]
    assert names == [
        "RandomCrop",
        "RandomFlip",
        "RandomTranslation",
        "RandomRotation",
        "RandomBrightness",
        "RandomZoom",
    ]
    assert (layers[0].height, layers[0].width) == (28, 28)
    assert layers[1].mode == "horizontal"
    assert layers[2].height_factor == 0.1 and layers[2].width_factor == 0.1
    with pytest.raises(AugmentError, match="Keras refused `random_zoom`") as e:
        augment_layers(["random_flip", {"random_zoom": {"zoom": 2}}], seed=0)
    assert e.value.path == "augment.1.random_zoom"


def test_corrupt_images_in_a_folder_are_skipped_and_counted(tmp_path, capsys):
    root = make_folder(tmp_path / "pets")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (root / "dog" / "empty.jpg").write_bytes(b"")
    source = load({"source": "folder", "path": str(root)}, image_size=(12, 12))
    assert source.train.size + source.validation.size == 12  # the good ones, all of them
    assert sorted(Path(p).name for p in source.extra["skipped"]) == ["broken.png", "empty.jpg"]
    assert "2 unreadable images skipped" in source.name
    assert "skipped 2 image(s)" in capsys.readouterr().err
    x, _ = arrays(source.train)  # the pipeline reads every remaining file
    assert x.shape[1:] == (12, 12, 3)


def test_a_full_disk_while_saving_keeps_the_previous_model(tmp_path, monkeypatch):
    import errno

    import keras

    from blockspec.training.errors import WriteError
    from blockspec.training.export import save_model

    def model(units):
        x = keras.Input((3,))
        return keras.Model(x, keras.layers.Dense(units, name="d")(x))

    target = tmp_path / "model.keras"
    save_model(model(2), target)
    good = target.read_bytes()

    real_save = keras.Model.save

    def fill_the_disk(self, path, *args, **kwargs):
        real_save(self, path, *args, **kwargs)
        with open(path, "r+b") as f:
            f.truncate(100)  # half written when the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", fill_the_disk)
    with pytest.raises(WriteError, match="disk full while writing .*model.keras; the previous"):
        save_model(model(5), target)
    assert target.read_bytes() == good  # the previous good model, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temporary left behind
    assert keras.saving.load_model(target).output_shape == (None, 2)


def test_fit_arguments_repeat_each_split_once_per_epoch_reshuffled():
    source = load({"source": "digits"}, image_size=(8, 8))
    preprocess = data_lib.preprocess_model(source.raw_shape, (8, 8), 1, source.scale)
    pipes = data_lib.make_pipelines(
        source, preprocess, augment=[], fit=None, labels=lambda y: y, batch_size=100, seed=0
    )
    args = pipes.fit_arguments(2)
    assert args["steps_per_epoch"] == pipes.steps_per_epoch == 15  # 1437 examples
    assert args["validation_steps"] == pipes.validation_steps == 4  # 360
    assert int(args["x"].cardinality()) == 2 * 15
    assert int(args["validation_data"].cardinality()) == 2 * 4
    labels = [y.numpy() for _, y in args["x"]]
    first, second = np.concatenate(labels[:15]), np.concatenate(labels[15:])
    # Each epoch is exactly one pass over the training split, in another order.
    assert len(first) == len(second) == source.train.size
    np.testing.assert_array_equal(np.sort(first), np.sort(second))
    assert not np.array_equal(first, second)
    val = [y.numpy() for _, y in args["validation_data"]]
    np.testing.assert_array_equal(np.concatenate(val[:4]), np.concatenate(val[4:]))


def test_runs_share_sources_and_caches_only_when_asked():
    data = {"source": "digits"}
    assert load(data) is not load(data)
    with data_lib.shared_between_runs():
        source = load(data)
        assert load(data) is source and load(data, seed=1) is not source
        preprocess = data_lib.preprocess_model(source.raw_shape, (16, 16), 1, source.scale)
        assert data_lib.preprocess_model(source.raw_shape, (16, 16), 1, source.scale) is preprocess

        def pipes():
            return data_lib.make_pipelines(
                source, preprocess, augment=[], fit=None, labels=lambda y: y, batch_size=64, seed=0
            )

        # The preprocessed, cached split is the same dataset: filled once for every run.
        cached = pipes().train._input_dataset
        while not isinstance(cached, type(tf.data.Dataset.range(1).cache())):
            cached = cached._input_dataset
        again = pipes().train._input_dataset
        while not isinstance(again, type(cached)):
            again = again._input_dataset
        assert again is cached
    assert load(data) is not source


def test_fit_arguments_can_turn_autotune_off_for_the_training_split():
    source = load({"source": "digits"}, image_size=(8, 8))
    preprocess = data_lib.preprocess_model(source.raw_shape, (8, 8), 1, source.scale)
    pipes = data_lib.make_pipelines(
        source, preprocess, augment=[], fit=None, labels=lambda y: y, batch_size=100, seed=0
    )
    assert pipes.fit_arguments(1)["x"].options().autotune.enabled is not False
    assert pipes.fit_arguments(1, autotune=False)["x"].options().autotune.enabled is False
