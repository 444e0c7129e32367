"""Fault injection (issue 13): each fault ends as a message naming the file, exit 2, no traceback,
and nothing outside the run folder changes.

Runs go through `blockspec.cli.main` on a tiny spec over a generated npz (one epoch, 32 examples);
disk and I/O errors are injected with monkeypatch rather than by filling a disk.
"""

import errno
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from blockspec import cli
from blockspec.training import callbacks as run_callbacks
from blockspec.training import data as data_lib
from blockspec.training import files
from blockspec.training.errors import DataError, RunFolderError, WriteError
from blockspec.training.run_folder import LOCK_FILE, RunFolder, contained, run_dir_for

SPEC = """\
spec: 1
name: tiny
input: [8, 8, 1]
network:
  - conv: {filters: 4, kernel: 3}
  - flatten: {}
  - dense: 3
    name: logits
outputs:
  main: {from: logits, activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
train:
  data: {source: npz, path: data.npz, validation_split: 0.25}
  batch_size: 16
  epochs: EPOCHS
"""


def write_npz(path, x=None, y=None, **more):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (32, 8, 8)).astype("float32") if x is None else x
    y = np.arange(len(x)) % 3 if y is None else y
    np.savez(path, x=x, y=y, **more)
    return path


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder with `spec.yaml` (1 epoch) and `data.npz`; the CLI runs in it."""
    (tmp_path / "spec.yaml").write_text(SPEC.replace("EPOCHS", "1"))
    write_npz(tmp_path / "data.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file under `root` (but `skip`) with a hash of its bytes."""
    found = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and (skip is None or skip not in f.parents):
            found[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return found


def run(capsys, *args):
    """`blockspec ARGS`: (exit code, stdout + stderr); never a traceback."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text, text
    return code, " ".join(text.split())  # rich wraps long lines: compare words


def refused(capsys, work, *args, run_dir="run"):
    before = snapshot(work, work / run_dir)
    code, text = run(capsys, *args)
    assert code == 2, text
    assert snapshot(work, work / run_dir) == before  # nothing outside the run folder changed
    return text


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run (and its evaluate.json), to copy and damage."""
    root = tmp_path_factory.mktemp("finished")
    (root / "spec.yaml").write_text(SPEC.replace("EPOCHS", "2"))
    write_npz(root / "data.npz")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert cli.main(["train", "spec.yaml", "--out", "run"]) == 0
        assert cli.main(["evaluate", "run"]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def copied(finished, tmp_path, monkeypatch):
    shutil.copytree(finished, tmp_path / "w")
    monkeypatch.chdir(tmp_path / "w")
    return tmp_path / "w"


# -- a run folder belongs to one run ---------------------------------------------------------------


def test_a_second_process_is_refused_naming_the_holder(work, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (work / "run").mkdir()
        lock = {"pid": holder.pid, "host": socket.gethostname(), "since": "10:00"}
        (work / "run" / LOCK_FILE).write_text(json.dumps(lock))
        text = refused(capsys, work, "train", "spec.yaml", "--out", "run")
        assert f"run is in use by another blockspec run (pid {holder.pid} on" in text
        assert sorted(p.name for p in (work / "run").iterdir()) == [LOCK_FILE]  # untouched
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_stale_lock_is_taken_over_and_released(work, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (work / "run").mkdir()
    lock = {"pid": gone.pid, "host": socket.gethostname(), "since": "09:00"}
    (work / "run" / LOCK_FILE).write_text(json.dumps(lock))
    code, text = run(capsys, "train", "spec.yaml", "--out", "run")
    assert code == 0, text
    assert not (work / "run" / LOCK_FILE).exists()
    info = json.loads((work / "run" / "run.json").read_text())
    assert info["status"] == "finished" and info["reason"] == "all epochs ran"


@pytest.mark.slow
def test_training_again_is_refused_and_overwrite_clears_only_what_blockspec_wrote(copied, capsys):
    (copied / "spec.yaml").write_text(SPEC.replace("EPOCHS", "1"))
    (copied / "run" / "notes.txt").write_text("mine")
    (copied / "run" / "logs" / "mine.txt").write_text("mine too")
    text = refused(capsys, copied, "train", "spec.yaml", "--out", "run")
    assert "run holds a run of 'tiny' (finished, 2 epochs done)" in text
    assert "--resume" in text and "--overwrite" in text
    old_events = list((copied / "run" / "logs").rglob("events.out.tfevents.*"))
    assert old_events and (copied / "run" / "evaluate.json").is_file()
    code, text = run(capsys, "train", "spec.yaml", "--out", "run", "--overwrite")
    assert code == 0, text
    run_dir = copied / "run"
    assert (run_dir / "notes.txt").read_text() == "mine"  # never deleted: not blockspec's
    assert (run_dir / "logs" / "mine.txt").read_text() == "mine too"
    assert not (run_dir / "evaluate.json").exists()  # the old run's, gone with it
    assert not any(p.exists() for p in old_events)  # TensorBoard sees one run
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1
    assert not (run_dir / "checkpoint" / "epoch-2.weights.h5").exists()


@pytest.mark.slow
def test_resume_and_overwrite_together_resume_this_specs_run_and_replace_another(copied, capsys):
    """What a scheduler that restarts a job can always pass (docs/tutorial.md)."""
    code, text = run(capsys, "train", "spec.yaml", "--out", "run", "--resume", "--overwrite")
    assert code == 0, text  # the same spec, finished: nothing left to run, the run is kept
    assert json.loads((copied / "run" / "metrics.json").read_text())["epochs"] == 2
    (copied / "spec.yaml").write_text(SPEC.replace("EPOCHS", "1"))
    code, text = run(capsys, "train", "spec.yaml", "--out", "run", "--resume", "--overwrite")
    assert code == 0, text  # another spec: replaced
    assert json.loads((copied / "run" / "metrics.json").read_text())["epochs"] == 1
    code, text = run(capsys, "train", "spec.yaml", "--out", "fresh", "--resume")
    assert code == 0 and "Nothing to resume in fresh: starting a fresh run." in text


def test_a_run_of_an_older_blockspec_is_named_and_left_alone(work, capsys):
    old = work / "run"
    (old / "checkpoint").mkdir(parents=True)
    (old / "run.json").write_text(json.dumps({"name": "tiny", "status": "finished"}))
    (old / "spec.yaml").write_text("spec: 1\n")
    (old / "checkpoint" / "epoch-1.weights.h5").write_bytes(b"weights")
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    for flags in ((), ("--resume",), ("--overwrite",)):
        text = refused(capsys, work, "train", "spec.yaml", "--out", "run", *flags)
        assert "holds a run of an older blockspec (before run folders had a manifest.json)" in text
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_non_empty_folder_that_is_not_a_run_is_refused(work, capsys, overwrite):
    args = ["train", "spec.yaml", "--out", "."] + (["--overwrite"] if overwrite else [])
    before = snapshot(work)
    code, text = run(capsys, *args)
    assert code == 2
    assert ". is not empty and holds no blockspec run (no manifest.json; it has data.npz" in text
    assert snapshot(work) == before


@pytest.mark.parametrize("name", ["..", "../../x", "/tmp/x", "a/b", "." * 300, ""])
def test_spec_names_never_become_paths_outside_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = run_dir_for(name, None).resolve()
    assert (tmp_path / "runs").resolve() in folder.parents
    assert len(folder.name) <= 64


def test_a_path_that_escapes_its_folder_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunFolderError, match="would be written outside"):
        contained(tmp_path / "runs", "link")
    with pytest.raises(RunFolderError, match="would be written outside"):
        contained(tmp_path / "runs", "../x")


@pytest.mark.slow
def test_resume_with_other_epochs_says_what_differs(copied, capsys):
    (copied / "spec.yaml").write_text(SPEC.replace("EPOCHS", "1"))  # the run had 2
    text = refused(capsys, copied, "train", "spec.yaml", "--out", "run", "--resume")
    assert "this one differs in: train.epochs: 2 in the run, 1 now." in text
    assert "cannot be resumed to another number of epochs" in text
    assert "Resuming" not in text and "of 1" not in text


@pytest.mark.slow
def test_resume_of_a_finished_run_says_nothing_is_left(copied, capsys):
    (copied / "spec.yaml").write_text(SPEC.replace("EPOCHS", "2"))
    code, text = run(capsys, "train", "spec.yaml", "--out", "run", "--resume")
    assert code == 0, text
    assert "run has completed all 2 epochs: nothing left to train." in text


def test_a_failed_run_ends_failed_with_its_reason_and_is_replaced_next_time(work, capsys):
    write_npz(work / "data.npz", y=(np.arange(32) % 3) + 5)  # labels 5..7 for 3 classes
    text = refused(capsys, work, "train", "spec.yaml", "--out", "run")
    assert "data.npz: `y` holds label 7 (index 2), out of range for the model's 3 classes" in text
    info = json.loads((work / "run" / "run.json").read_text())
    assert info["status"] == "failed" and "out of range" in info["reason"]
    assert "no epoch completed, nothing kept" in info["reason"]
    write_npz(work / "data.npz", y=np.arange(32) % 4)  # still wrong: the folder is reused
    code, text = run(capsys, "train", "spec.yaml", "--out", "run")
    assert code == 2 and "removed" in text and "holds label 3 (index 3)" in text


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_prints_the_resume_command(work, capsys, monkeypatch):
    (work / "spec.yaml").write_text(SPEC.replace("EPOCHS", "2"))
    original = run_callbacks.RunFiles.on_epoch_end

    def interrupt(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_callbacks.RunFiles, "on_epoch_end", interrupt)
    code = cli.main(["train", "spec.yaml", "--out", "run", "--set", "train.batch_size=8"])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    info = json.loads((work / "run" / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert info["reason"] == "interrupted (Ctrl-C); the checkpoint of epoch 1 is kept"
    command = "blockspec train spec.yaml --set train.batch_size=8 --out run --resume"
    assert f"Resume with:\n  {command}" in err
    monkeypatch.setattr(run_callbacks.RunFiles, "on_epoch_end", original)
    code, text = run(capsys, *shlex.split(command)[1:])
    assert code == 0 and "Resuming run after epoch 1 of 2." in text
    assert json.loads((work / "run" / "run.json").read_text())["epochs_done"] == 2


def test_sigterm_stops_a_run_as_ctrl_c_does(work, capsys, monkeypatch):
    (work / "spec.yaml").write_text(SPEC.replace("EPOCHS", "2"))
    original = run_callbacks.RunFiles.on_epoch_end

    def terminate(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill` or a job scheduler sends

    monkeypatch.setattr(run_callbacks.RunFiles, "on_epoch_end", terminate)
    before = signal.getsignal(signal.SIGTERM)
    code = cli.main(["train", "spec.yaml", "--out", "run", "--set", "train.batch_size=8"])
    err = capsys.readouterr().err
    assert code == 143 and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is before  # the handler lives only while a command runs
    info = json.loads((work / "run" / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert info["reason"] == "terminated (SIGTERM); the checkpoint of epoch 1 is kept"
    assert "Resume with:\n  blockspec train spec.yaml" in err


def _state(run_dir: Path) -> Path:
    return run_dir / "checkpoint" / "state.json"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: _state(r).write_text("{not json"), "checkpoint/state.json is damaged"),
        (
            lambda r: _state(r).write_text(
                json.dumps({"epoch": 2, "weights": "../../spec.yaml", "history": {}})
            ),
            "state.json names the weights file '../../spec.yaml'",
        ),
        (
            lambda r: (r / "checkpoint" / "epoch-2.weights.h5").write_bytes(b"\x89HDF\r\n"),
            "epoch-2.weights.h5 cannot be loaded",
        ),
        (lambda r: (r / "manifest.json").write_text("[1, 2"), "run/manifest.json is damaged"),
    ],
)
def test_damaged_run_files_are_named_on_resume(copied, capsys, damage, message):
    damage(copied / "run")
    text = refused(capsys, copied, "train", "spec.yaml", "--out", "run", "--resume")
    assert message in text


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "run.json").write_text("{"), "run/run.json is damaged"),
        (
            lambda r: (r / "model.keras").write_bytes((r / "model.keras").read_bytes()[:500]),
            "run/model.keras is damaged or truncated: not a .keras archive (500 bytes)",
        ),
    ],
)
def test_damaged_files_are_named_by_evaluate(copied, capsys, damage, message):
    damage(copied / "run")
    text = refused(capsys, copied, "evaluate", "run")
    assert message in text


def test_an_unsafe_model_is_refused_by_evaluate(copied, capsys):
    import zipfile

    import keras

    model = copied / "run" / "model.keras"
    x = keras.Input((3,))
    keras.Model(x, keras.layers.Lambda(lambda t: t * 2)(x)).save(model)
    text = refused(capsys, copied, "evaluate", "run")
    assert "run/model.keras is refused by safe mode: Requested the deserialization of a" in text
    keras.Model(x, keras.layers.Dense(2, name="d")(x)).save(model)
    with zipfile.ZipFile(model) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    config = json.loads(parts["config.json"])
    dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    dense.update(module="os", class_name="system", registered_name=None)
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(model, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    text = refused(capsys, copied, "evaluate", "run")
    assert "run/model.keras cannot be loaded (TypeError:" in text


# -- writes survive a full disk --------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_at_the_first_checkpoint_is_a_message(work, capsys, monkeypatch):
    real = shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        return usage._replace(free=1000)

    monkeypatch.setattr(files.shutil, "disk_usage", nearly_full)
    text = refused(capsys, work, "train", "spec.yaml", "--out", "run")
    assert (
        "disk full while writing run/checkpoint/epoch-1.weights.h5; epoch-1.weights.h5 was" in text
    )
    assert not [p for p in (work / "run").rglob("*") if ".tmp" in p.name]
    info = json.loads((work / "run" / "run.json").read_text())
    assert info["status"] == "failed" and info["reason"].startswith("disk full while writing")


def test_an_h5py_error_mid_write_keeps_the_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "epoch-1.weights.h5"
    target.write_bytes(b"previous")

    def h5py_fails(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("Can't decrement id ref count (unable to extend file)")

    with pytest.raises(WriteError, match="could not write .*; the previous epoch-1.weights.h5 is"):
        files.atomic_write(target, h5py_fails, suffix=".weights.h5")

    def disk_full(tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match="disk full while writing .*; the previous .* is intact"):
        files.atomic_write(target, disk_full, suffix=".weights.h5")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_stale_temp_files_of_killed_writes_are_removed(tmp_path):
    folder = RunFolder.open(tmp_path / "run", {}, name="t")
    folder.write_text("spec.yaml", "x")
    folder.close()
    stale = tmp_path / "run" / ".model.keras.ab_c1234.tmp.keras"
    stale.write_bytes(b"left by a killed run")
    theirs = tmp_path / "run" / ".hidden.tmp"  # not a name atomic_write makes
    theirs.write_text("keep")
    RunFolder.open(tmp_path / "run", {}, name="t", overwrite=True).close()
    assert not stale.exists() and theirs.exists()


# -- data is checked before training ---------------------------------------------------------------


def _header_claiming(path: Path, shape) -> None:
    """An npz whose `x` header claims `shape` while holding 16 bytes."""
    import io
    import zipfile

    x = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        x, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    y = io.BytesIO()
    np.save(y, np.zeros(2, "int64"))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", x.getvalue() + b"0" * 16)
        z.writestr("y.npy", y.getvalue())


NPZ_FAULTS = [
    ({"y": (np.arange(32) % 3) - 1}, "holds a negative label: -1 at index 0"),
    ({"y": (np.arange(32) % 3) + 0.5}, "holds fractional or NaN labels, e.g. label 0.5 at index 0"),
    ({"y": np.arange(32) % 3 + 3}, "holds label 5 (index 2), out of range for the model's 3"),
    ({"x": np.array([["a"] * 8] * 8 * 4).reshape(4, 8, 8)}, "`x` holds <U1 values, not numbers"),
    ({"x": np.float32(1.0), "y": np.int64(1)}, "`x` is a single value, not an array of examples"),
    ({"x": np.zeros((0, 8, 8), "float32"), "y": np.zeros(0, "int64")}, "holds 0 example(s)"),
    ({"x": np.zeros((1, 8, 8), "float32"), "y": np.zeros(1, "int64")}, "holds 1 example(s)"),
    (
        {"x": np.where(np.eye(8)[None] > 0, np.nan, 0).repeat(4, 0).astype("float32")},
        "`x` holds 32 NaN or infinite value(s), e.g. at index (0, 0, 0): nan",
    ),
    ({"x": np.zeros((3, 8, 8), "float32"), "y": np.array([0, 1, 2])}, None),
]


@pytest.mark.parametrize("arrays, message", NPZ_FAULTS)
def test_npz_faults_are_data_errors_naming_file_problem_and_value(tmp_path, arrays, message):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    data = {"source": "npz", "path": str(path), "validation_split": 0.25}
    if message is None:  # 3 examples, 25% held out: 2 for training, 1 for validation
        data["validation_split"] = 0.9
        message = "validation_split 0.9 of 3 examples leaves 0 for training and 3 for validation"
    with pytest.raises(DataError) as caught:
        data_lib.load_source(data, image_size=(8, 8), channels=1, classes=3, seed=0)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_random_bytes_and_huge_headers_are_refused_before_reading(tmp_path):
    noise = tmp_path / "noise.npz"
    noise.write_bytes(os.urandom(256))
    with pytest.raises(DataError, match="noise.npz is not an npz archive"):
        data_lib.load_source(
            {"source": "npz", "path": str(noise)}, image_size=None, channels=None, classes=3, seed=0
        )
    huge = tmp_path / "huge.npz"
    _header_claiming(huge, (10**12,))
    with pytest.raises(DataError, match=r"array `x` declares 7.3 TiB \(shape \(1000000000000,\)"):
        data_lib.load_source(
            {"source": "npz", "path": str(huge)}, image_size=None, channels=None, classes=3, seed=0
        )


def test_npz_fault_through_the_cli_exits_2(work, capsys):
    (work / "data.npz").write_bytes(b"PK\x03\x04" + os.urandom(100))
    text = refused(capsys, work, "train", "spec.yaml", "--out", "run")
    assert "data.npz" in text and ("not an npz archive" in text or "damaged npz" in text)


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height grey pixels, with a few bytes of data."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_folder_images_that_cannot_train_are_skipped_before_training(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "pets"
    for name in ("cat", "dog", "fox"):
        (root / name).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        for name in ("cat", "dog"):
            image = Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype="uint8"))
            image.save(root / name / f"{i}.png")
    good = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype="uint8"))
    good.save(tmp_path / "whole.jpg", quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    good.save(root / "cat" / "tiff.jpg", format="TIFF")
    _png_claiming(root / "dog" / "bomb.png", 9000, 9000)  # 81 megapixels
    _png_claiming(root / "dog" / "huge.png", 30000, 30000)  # PIL's own bomb check
    source = data_lib.load_source(
        {"source": "folder", "path": str(root)}, image_size=(12, 12), channels=3, classes=3, seed=0
    )
    err = capsys.readouterr().err
    assert source.train.size + source.validation.size == 8
    skipped = sorted(Path(p).name for p in source.extra["skipped"])
    assert skipped == ["bomb.png", "huge.png", "tiff.jpg", "truncated.jpg"]
    assert "skipped 4 image(s)" in err and "TIFF data, which TensorFlow does not decode" in err
    assert "class folder(s) without a usable image" in err and "fox" in err
    assert "4 unreadable images skipped" in source.name


@pytest.mark.slow
def test_train_says_what_data_it_trains_on_before_the_first_epoch(work, capsys, monkeypatch):
    import keras

    spec = SPEC.replace("EPOCHS", "1").replace("[8, 8, 1]", "[16, 16, 3]")
    (work / "spec.yaml").write_text(spec)
    printed_before_fit = []
    real_fit = keras.Model.fit

    def fit(self, *args, **kwargs):
        printed_before_fit.append(capsys.readouterr().out)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    code, text = run(capsys, "train", "spec.yaml", "--out", "run")
    assert code == 0, text
    line = "24 training, 8 validation examples of 8x8 (resized to 16x16, 1 channel(s) made 3);"
    assert f"Data: npz (data.npz): {line} the model input is 16x16x3." in " ".join(
        printed_before_fit[0].split()
    )
