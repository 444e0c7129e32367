"""`training`: fitting, the run folder, resume, NaN, precision, distribution, evaluation with TTA."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from training_fixtures import tiny_model, tiny_spec

from blockspec.builder.errors import SpecError
from blockspec.training import callbacks as run_callbacks
from blockspec.training.commands import evaluate_command, train_command
from blockspec.training.evaluate import evaluate_run, tta_views
from blockspec.training.optim import EpochSchedule, make_optimizer, objectives
from blockspec.training.run_folder import RunFolder
from blockspec.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "training_fixtures.py"
SMALL = {"source": "synthetic", "samples": 320, "classes": 10}  # 256 + 64: no partial batch


def env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def run_fixture(out, train_cfg, *args, **kwargs):
    """The fixture trainer in a fresh process (`tests/training_fixtures.py`)."""
    kwargs.setdefault("env", env())
    return subprocess.Popen(
        [sys.executable, str(FIXTURES), str(out), json.dumps(train_cfg), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def read_history(run_dir):
    with open(Path(run_dir) / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """Three epochs of the tiny two-head model on digits, 16x16, with augmentation."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    spec = tiny_spec(
        {
            "epochs": 3,
            "data": {"source": "digits", "image_size": [16, 16]},
            "augment": [{"random_translation": 0.1}],
            "evaluate": {"tta": ["flip", "crops"]},
        },
        input_shape=(16, 16, 1),
    )
    result = train(spec, out, build=tiny_model, verbose=0)
    return spec, result


def test_run_folder_holds_every_file(digits_run):
    spec, result = digits_run
    out = result.out_dir
    assert result.epochs == 3 and result.stopped is None
    for name in (
        "model.keras",
        "spec.yaml",
        "run.json",
        "history.csv",
        "metrics.json",
        "curves.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    assert yaml.safe_load((out / "spec.yaml").read_text()) == spec.document
    rows = read_history(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "main_accuracy", "val_main_accuracy", "aux1_loss", "learning_rate"} <= set(
        rows[0]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 3
    accuracies = [float(r["val_main_accuracy"]) for r in rows]
    assert metrics["final"]["val_main_accuracy"] == pytest.approx(accuracies[-1])
    assert metrics["best"]["val_main_accuracy"]["value"] == pytest.approx(max(accuracies))
    assert metrics["best"]["val_loss"]["value"] == pytest.approx(
        min(float(r["val_loss"]) for r in rows)
    )
    info = json.loads((out / "run.json").read_text())
    assert info["class_names"] == [str(i) for i in range(10)]
    assert info["status"] == "finished" and info["epochs_done"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"model.keras", "spec.yaml", "run.json", "history.csv", "curves.png"} <= set(
        manifest["files"]
    )
    assert not (out / ".blockspec.lock").exists()  # released
    # Atomic writes leave no temporary files behind.
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_aux_loss_enters_with_weight_0_3(digits_run):
    from sklearn.datasets import load_digits

    _, result = digits_run
    model = result.model
    assert set(model.output_names) == {"main", "aux1"}
    # One batch of preprocessed digits: the total loss is main + 0.3 * aux, exactly.
    preprocess = keras.saving.load_model(result.model_path).get_layer("preprocess")
    digits = load_digits()
    x = np.asarray(preprocess(digits.images[:64].astype("float32")))
    y = digits.target[:64]
    logs = model.evaluate(x, {"main": y, "aux1": y}, batch_size=64, return_dict=True, verbose=0)
    assert logs["aux1_loss"] > 0.05
    assert logs["loss"] == pytest.approx(logs["main_loss"] + 0.3 * logs["aux1_loss"], rel=1e-5)
    # The history agrees, up to the batch weighting of Keras' running means: `loss` weighs each
    # batch by its size, the per-output losses weigh every batch alike, and an epoch ends in a
    # partial batch (1437 and 360 examples, batches of 32), whose loss can be far from the mean.
    h = {k: np.array(v) for k, v in result.history.items()}
    for prefix in ("", "val_"):
        main, aux, total = (h[f"{prefix}{k}"] for k in ("main_loss", "aux1_loss", "loss"))
        np.testing.assert_allclose(total, main + 0.3 * aux, rtol=5e-2)
        assert (np.abs(total - (main + aux)) > 0.5 * aux).all()
    spec = tiny_spec({})
    obj = objectives(spec.outputs, tiny_model(spec))
    assert obj.loss_weights == {"main": 1.0, "aux1": 0.3}
    assert obj.metrics == {"main": ["accuracy"], "aux1": []}


def test_inference_model_has_no_aux_output_and_takes_raw_digits(digits_run):
    from sklearn.datasets import load_digits

    _, result = digits_run
    model = keras.saving.load_model(result.model_path, safe_mode=True)
    assert model.input_shape == (None, 8, 8)

    def layer_names(m):
        for layer in m.layers:
            yield layer.name
            if isinstance(layer, keras.Model):
                yield from layer_names(layer)

    assert "aux1" not in set(layer_names(model)) and "aux1_dense" not in set(layer_names(model))
    digits = load_digits()
    out = model.predict(digits.images[:200], verbose=0)
    assert list(out) == ["main"]
    assert out["main"].shape == (200, 10)
    np.testing.assert_allclose(out["main"].sum(axis=1), 1.0, rtol=1e-5)
    assert (out["main"].argmax(1) == digits.target[:200]).mean() > 0.5


def test_tta_changes_predictions_and_is_reported(digits_run, capsys):
    _, result = digits_run
    plain = evaluate_run(result.out_dir, tta=[])
    assert plain.view_count == 1
    np.testing.assert_allclose(plain.tta_probabilities["main"], plain.probabilities["main"])
    tta = evaluate_run(result.out_dir, tta=["flip", "crops"])
    assert tta.split == "validation" and tta.examples == 360 and tta.view_count == 10
    np.testing.assert_allclose(tta.probabilities["main"], plain.probabilities["main"], atol=1e-5)
    assert np.abs(tta.tta_probabilities["main"] - tta.probabilities["main"]).max() > 0.01
    assert tta.changed["main"] > 0
    saved = json.loads((result.out_dir / "evaluate.json").read_text())
    assert saved["tta"] == ["flip", "crops"] and saved["views"] == 10
    assert evaluate_command(str(result.out_dir), None) == 0  # the spec's evaluate.tta
    printed = capsys.readouterr().out
    assert "TTA: flip, crops (10 views averaged)" in printed and "TTA accuracy" in printed
    assert f"{tta.accuracy['main']:.2%}" in printed
    assert f"{tta.tta_accuracy['main']:.2%}" in printed


def test_tta_views_are_crops_and_mirrors():
    images = keras.ops.convert_to_tensor(np.arange(2 * 6 * 6, dtype="float32").reshape(2, 6, 6, 1))
    views = tta_views(images, (4, 4), ["crops", "flip"])
    assert len(views) == 10
    arrays = [np.asarray(v) for v in views]
    np.testing.assert_array_equal(arrays[0], np.asarray(images)[:, 1:5, 1:5])  # center
    np.testing.assert_array_equal(arrays[1], np.asarray(images)[:, 0:4, 0:4])  # top-left
    np.testing.assert_array_equal(arrays[5], arrays[0][:, :, ::-1])  # mirror of the center
    same = tta_views(images, (6, 6), ["crops"])  # same size: shifts of a zero-padded image
    assert len(same) == 5 and all(v.shape == (2, 6, 6, 1) for v in same)
    assert np.asarray(same[1])[:, 0, 0, 0].tolist() == [0.0, 0.0]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                layer = self.model.get_layer("main_dense")
                kernel = layer.get_weights()[0]
                layer.set_weights([np.full_like(kernel, np.nan), layer.get_weights()[1]])

    spec = tiny_spec({"epochs": 3, "data": SMALL})
    result = train(spec, tmp_path / "nan", build=tiny_model, callbacks=[Poison()], verbose=0)
    assert result.stopped == "nan" and result.epochs == 1
    assert "The loss became NaN at epoch 2, batch 1" in result.message
    assert "last good checkpoint (epoch 1)" in result.message
    state = run_callbacks.load_state(result.out_dir)
    assert state["epoch"] == 1 and Path(state["weights_path"]).is_file()
    assert [int(r["epoch"]) for r in read_history(result.out_dir)] == [1]
    model = keras.saving.load_model(result.model_path, safe_mode=True)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    info = json.loads((result.out_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["stopped"] == "nan"
    assert info["reason"].startswith("The loss became NaN at epoch 2")


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_reaches_the_same_epoch_count(tmp_path):
    import h5py

    out = tmp_path / "resume"
    cfg = {"epochs": 3, "data": SMALL, "batch_size": 16}  # 16 steps of 0.1 s an epoch
    proc = run_fixture(out, cfg, "--slow", "0.1")
    state_file = out / "checkpoint" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state_file.is_file() and json.loads(state_file.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the next epoch
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = json.loads(state_file.read_text())["epoch"]
    assert 1 <= done_before < 3
    resumed = run_fixture(out, cfg, "--resume")
    log = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, log[-3000:]
    assert f"Resuming {out} after epoch {done_before} of 3." in log
    assert f"Epoch {done_before + 1}/3" in log and f"Epoch {done_before}/3" not in log
    assert json.loads(log.strip().splitlines()[-1])["epochs"] == 3
    assert [int(r["epoch"]) for r in read_history(out)] == [1, 2, 3]
    state = run_callbacks.load_state(out)
    assert state["epoch"] == 3
    with h5py.File(state["weights_path"]) as f:  # the optimizer went on counting its steps
        assert int(np.asarray(f["optimizer/vars/0"])) == 3 * 16


@pytest.mark.parametrize(
    "precision, jit",
    [pytest.param("mixed_float16", True, marks=pytest.mark.slow), ("mixed_bfloat16", False)],
)
def test_mixed_precision_and_jit_compile_run_on_cpu(tmp_path, precision, jit):
    spec = tiny_spec(
        {
            "epochs": 2,
            "data": SMALL,
            "precision": precision,
            "jit_compile": jit,
            "optimizer": {"adamw": {"learning_rate": 3e-3}},
            "schedule": {"cosine": {"warmup_epochs": 1}},
            "weight_decay": 1e-4,
            "label_smoothing": 0.1,
        }
    )
    result = train(spec, tmp_path / precision, build=tiny_model, verbose=0)
    assert result.epochs == 2 and result.stopped is None
    assert all(np.isfinite(v) for v in result.history["loss"])
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert keras.config.dtype_policy().name == "float32"  # restored
    model = keras.saving.load_model(result.model_path, safe_mode=True)
    assert model.get_layer("network").get_layer("conv1").dtype_policy.name == precision
    out = model.predict(np.random.rand(4, 8, 8, 1).astype("float32"), verbose=0)["main"]
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_schedules_and_optimizer():
    cosine = EpochSchedule("cosine", 0.1, warmup_steps=10, total_steps=110, alpha=0.0)
    lr = [float(cosine(s)) for s in (0, 4, 9, 10, 60, 110)]
    assert lr == pytest.approx([0.01, 0.05, 0.1, 0.1, 0.05, 0.0], abs=1e-6)
    step = EpochSchedule("step", 1.0, boundaries=[20, 40], factor=0.1)
    assert [float(step(s)) for s in (0, 19, 20, 39, 40)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    restored = EpochSchedule.from_config(cosine.get_config())
    assert float(restored(30)) == pytest.approx(float(cosine(30)))
    cfg = {
        "optimizer": {"sgd": {"learning_rate": 0.5, "momentum": 0.9}},
        "schedule": {"step": {"every": 2, "warmup_epochs": 1}},
        "weight_decay": 1e-4,
        "epochs": 5,
    }
    opt = make_optimizer(cfg, steps_per_epoch=10)
    assert opt.momentum == 0.9 and opt.weight_decay == pytest.approx(1e-4)
    schedule = opt._learning_rate
    assert schedule.boundaries == [20, 40] and schedule.warmup_steps == 10
    assert float(schedule(5)) == pytest.approx(0.3)
    assert float(schedule(45)) == pytest.approx(0.005)
    bias = keras.Variable(np.zeros(3), name="bias")
    kernel = keras.Variable(np.zeros(3), name="kernel")
    assert not opt._use_weight_decay(bias) and opt._use_weight_decay(kernel)


def test_label_smoothing_makes_one_hot_targets():
    spec = tiny_spec({})
    obj = objectives(spec.outputs, tiny_model(spec), label_smoothing=0.1)
    assert obj.one_hot == {"main": 10, "aux1": 10}
    assert isinstance(obj.loss["main"], keras.losses.CategoricalCrossentropy)
    assert obj.loss["main"].get_config()["label_smoothing"] == pytest.approx(0.1)


def test_spec_errors_name_the_train_path(tmp_path):
    bad = tiny_spec({"data": {"source": "digts"}})
    with pytest.raises(SpecError, match=r"train\.data\.source: unknown data source `digts`"):
        train(bad, tmp_path / "x", build=tiny_model)
    crop = tiny_spec({"augment": [{"random_crop": [12, 12]}]})
    with pytest.raises(SpecError, match=r"train\.augment\[0\]\.random_crop: `random_crop` size"):
        train(crop, tmp_path / "y", build=tiny_model)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus(tmp_path):
    proc = run_fixture(
        tmp_path / "m",
        {"epochs": 1, "data": SMALL, "distribute": "mirrored"},
        "--logical-cpus",
        "2",
    )
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log[-3000:]
    report = json.loads(log.strip().splitlines()[-1])
    assert report == {"epochs": 1, "replicas": 2, "stopped": None}
    assert (tmp_path / "m" / "model.keras").is_file()


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_end_with_identical_weights(tmp_path):
    import h5py

    out = tmp_path / "mw"
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    cfg = {"epochs": 2, "data": SMALL, "distribute": "multi_worker", "batch_size": 32}
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(run_fixture(out, cfg, env={**env(), "TF_CONFIG": json.dumps(tf_config)}))
    logs = [p.communicate(timeout=400)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
        assert json.loads(log.strip().splitlines()[-1]) == {
            "epochs": 2,
            "replicas": 2,
            "stopped": None,
        }
    chief, other = out, out / "worker-1"
    states = [run_callbacks.load_state(d) for d in (chief, other)]
    with h5py.File(states[0]["weights_path"]) as a, h5py.File(states[1]["weights_path"]) as b:
        names = []
        a.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        assert len(names) > 10
        for name in names:
            np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)
        assert int(np.asarray(a["optimizer/vars/0"])) == 2 * (256 // 32)  # global steps
    rows = read_history(chief)
    assert len(rows) == 2 and float(rows[1]["loss"]) < float(rows[0]["loss"])
    assert "val_main_accuracy" in rows[0]


DIGITS_SPEC = """\
spec: 1
name: digits_small
input: [16, 16, 1]
defaults:
  conv: {activation: relu, padding: same}
network:
  - conv: {filters: 32, kernel: 3}
  - max_pool: {size: 2}
    name: pool1
  - conv: {filters: 64, kernel: 3}
  - max_pool: {size: 2}
  - flatten: {}
  - dense: {units: 128, activation: relu}
  - dropout: 0.3
  - dense: {units: 10}
    name: main
  - global_avg_pool: {}
    from: pool1
  - dense: {units: 10}
    name: aux1
outputs:
  main: {activation: softmax, metrics: [accuracy]}
  aux1: {activation: softmax, loss_weight: 0.3, train_only: true}
train:
  data: {source: digits}
  epochs: 10
  optimizer: {adam: {learning_rate: 0.002}}
  schedule: {cosine: {warmup_epochs: 1}}
  augment: [random_translation: 0.1]
"""


@pytest.mark.slow
def test_train_command_fits_a_real_spec_and_the_model_loads_anywhere(tmp_path, capsys):
    path = tmp_path / "digits_small.yaml"
    path.write_text(DIGITS_SPEC)
    out = tmp_path / "run"
    with pytest.raises(SpecError, match="did you mean `digits`"):
        train_command(str(path), {"train.data.source": "digts"}, str(out), False)
    assert train_command(str(path), {"train.epochs": 6}, str(out), False) == 0
    assert "val_main_accuracy" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 6
    assert metrics["final"]["val_main_accuracy"] >= 0.95
    # A fresh interpreter without blockspec loads it safely and predicts on raw digits.
    code = (
        "import keras, sys; from sklearn.datasets import load_digits; d = load_digits(); "
        f"m = keras.saving.load_model({str(out / 'model.keras')!r}, safe_mode=True); "
        "p = m.predict(d.images, verbose=0); "
        "print(sorted(p), (p['main'].argmax(1) == d.target).mean(), "
        "any(k.startswith(('blockspec.training', 'blockspec.builder', 'blockspec.blocks')) for k in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env() | {"PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    names, accuracy, imported = (
        done.stdout.split("] ")[0] + "]",
        *done.stdout.split("] ")[1].split(),
    )
    assert names == "['main']" and float(accuracy) >= 0.95 and imported == "False"
    # Resuming a finished run trains nothing more and keeps the files.
    assert train_command(str(path), {"train.epochs": 6}, str(out), True) == 0
    assert len(read_history(out)) == 6


def test_a_crop_smaller_than_the_input_is_resized_back(tmp_path):
    spec = tiny_spec(
        {"epochs": 1, "data": SMALL, "augment": [{"random_crop": [6, 6]}, "random_flip"]}
    )
    result = train(spec, tmp_path / "crop", build=tiny_model, verbose=0)
    assert result.epochs == 1
    info = json.loads((result.out_dir / "run.json").read_text())
    assert info["image_size"] == [8, 8] and info["crop_size"] == [6, 6]
    model = keras.saving.load_model(result.model_path, safe_mode=True)
    fit = model.get_layer("fit_input")  # center crop 6x6, then resize to the 8x8 input
    assert [type(layer).__name__ for layer in fit.layers] == ["CenterCrop", "Resizing"]
    evaluation = evaluate_run(result.out_dir, tta=["crops"])
    assert evaluation.view_count == 5 and evaluation.examples == 64
    images = keras.ops.ones((2, 8, 8, 3))
    views = tta_views(images, (8, 8), ["crops"], crop_hw=(6, 6))
    assert all(tuple(v.shape) == (2, 8, 8, 3) for v in views)


def test_a_trial_run_writes_its_history_but_no_curves_model_or_per_epoch_checkpoint(tmp_path):
    spec = tiny_spec({"epochs": 3, "data": SMALL}, aux=False)
    saved: list[int] = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved.append(run_callbacks.load_state(tmp_path / "trial") is not None)

    result = train(
        spec,
        tmp_path / "trial",
        build=tiny_model,
        artifacts="trial",
        verbose=0,
        callbacks=[Watch()],
    )
    out = result.out_dir
    assert result.epochs == 3 and result.model_path is None
    assert [int(r["epoch"]) for r in read_history(out)] == [1, 2, 3]
    assert (out / "metrics.json").is_file() and (out / "spec.yaml").is_file()
    assert not (out / "model.keras").exists() and not (out / "curves.png").exists()
    # The trial checkpoints at most every TRIAL_CHECKPOINT_SECONDS: these epochs take less.
    assert saved == [False, False, False]
    with pytest.raises(ValueError, match="artifacts must be one of"):
        train(spec, tmp_path / "x", build=tiny_model, artifacts="none", verbose=0)


def test_checkpoints_every_n_seconds_keep_the_last_one_that_was_due(tmp_path, monkeypatch):
    clock = iter(range(0, 10_000, 40))  # each reading of the clock is 40 "seconds" later
    monkeypatch.setattr(run_callbacks.time, "monotonic", lambda: next(clock))
    model = tiny_model(tiny_spec({}, aux=False))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    folder = RunFolder.open(tmp_path, {}, name="t")
    recorder = run_callbacks.RunFiles(folder, checkpoint_every=100, curves=False)
    x, y = np.zeros((8, 8, 8, 1), "float32"), np.zeros(8, "int32")
    model.fit(x, {"main": y}, epochs=6, callbacks=[recorder], verbose=0)
    # Train begins at 40; epochs end at 80, 120, 160 (due: 120 s since 40), 200, 240, 280 (due).
    state = run_callbacks.load_state(tmp_path)
    assert state["epoch"] == 6 and len(state["history"]["epoch"]) == 6
    assert recorder.last_good_epoch == 6


def test_initial_epoch_continues_the_schedule_and_the_epoch_count(tmp_path):
    spec = tiny_spec(
        {
            "epochs": 4,
            "data": SMALL,
            "optimizer": {"sgd": {"learning_rate": 0.1}},
            "schedule": {"cosine": {}},
        },
        aux=False,
    )
    rates: list[float] = []

    class Rate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    result = train(
        spec, tmp_path / "more", build=tiny_model, initial_epoch=2, verbose=0, callbacks=[Rate()]
    )
    assert [int(r["epoch"]) for r in read_history(result.out_dir)] == [3, 4]
    assert result.epochs == 4  # as after a resume: the model's epochs, the two it held counted
    # Cosine over 4 epochs of 8 steps: epoch 3 starts at step 16, half way down.
    assert rates[0] == pytest.approx(0.05, rel=1e-3)
    assert int(result.model.optimizer.iterations.numpy()) == 32


def test_initial_weights_bring_the_optimizer_state_too(tmp_path):
    spec = tiny_spec({"epochs": 2, "data": SMALL}, aux=False)
    first = train(spec, tmp_path / "first", build=tiny_model, verbose=0)
    saved = tmp_path / "two_epochs.weights.h5"
    first.model.save_weights(str(saved))
    moments = [v.numpy() for v in first.model.optimizer.variables]
    assert any(np.abs(m).sum() > 0 for m in moments[2:])  # Adam's moments are not zeros
    seen = {}

    class Look(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["weights"] = self.model.get_weights()
            seen["optimizer"] = [v.numpy() for v in self.model.optimizer.variables]

    more = tiny_spec({"epochs": 3, "data": SMALL}, aux=False)
    train(
        more,
        tmp_path / "more",
        build=tiny_model,
        initial_epoch=2,
        initial_weights=saved,
        verbose=0,
        callbacks=[Look()],
    )
    for got, want in zip(seen["weights"], first.model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    # Every optimizer variable as saved; the step count as two epochs of 8 steps left it.
    for got, want in zip(seen["optimizer"], moments, strict=True):
        np.testing.assert_array_equal(got, want)
    assert int(moments[0]) == 16


def test_runs_sharing_their_data_see_the_batches_a_lone_run_sees(tmp_path):
    from blockspec.training import data as data_lib

    # The shuffle draws from its dataset's random state: a run must not inherit another's.
    spec = tiny_spec({"epochs": 2, "data": SMALL}, aux=False)
    alone = train(spec, tmp_path / "alone", build=tiny_model, verbose=0, artifacts="trial")
    with data_lib.shared_between_runs():
        first = train(spec, tmp_path / "first", build=tiny_model, verbose=0, artifacts="trial")
        second = train(spec, tmp_path / "second", build=tiny_model, verbose=0, artifacts="trial")
    for run in (first, second):
        assert run.history["loss"] == pytest.approx(alone.history["loss"], rel=1e-5)


def test_deterministic_runs_augment_alike(tmp_path):
    spec = tiny_spec(
        {
            "epochs": 2,
            "data": SMALL,
            "augment": [{"random_translation": 0.2}, "random_flip"],
            "deterministic": True,
        },
        aux=False,
    )
    first = train(spec, tmp_path / "a", build=tiny_model, verbose=0, artifacts="trial")
    second = train(spec, tmp_path / "b", build=tiny_model, verbose=0, artifacts="trial")
    assert first.history["loss"] == second.history["loss"]
    assert first.history["val_loss"] == second.history["val_loss"]
