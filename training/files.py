"""Atomic file writes: write a temporary file in the same folder, then `os.replace` it.

A run killed at any moment leaves each file either as it was or complete, never half written.
Every checkpoint, model and record a run writes goes through `atomic_write`, which also turns a
full disk or an I/O error into a `WriteError` ("disk full while writing X; the previous X is
intact") and never leaves its temporary file behind. Writers that go through h5py (Keras weights)
are given a size: the free space is checked first, as h5py has crashed the process (SIGSEGV)
when the disk filled under it.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from blockspec.training.errors import WriteError

# libyaml's emitter when PyYAML has it: the same text, about five times faster.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
# `.<name>.<8 characters of mkstemp>.tmp<suffix>`: what `atomic_write` names its temporary files.
TEMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9.]+)?$")
FREE_MARGIN = 1 << 20  # bytes kept free beyond a writer's size, for the file system's own needs


def atomic_write(
    path: str | Path,
    write: Callable[[str], None],
    suffix: str = "",
    size: int | None = None,
) -> Path:
    """Call `write(tmp_path)`, then move the temporary file onto `path` in one step.

    Args:
        path: the final file.
        write: writes the whole file to the path it is given.
        suffix: the temporary file's ending, for writers that check it (`.keras`, `.weights.h5`).
        size: about how many bytes `write` writes; when given, a disk without that much free
            space is refused before `write` starts.

    Returns:
        `path` as a `Path`.

    Raises:
        WriteError: the disk is full, or the file system refused the write; `path` is as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if size is not None:
            free = shutil.disk_usage(path.parent).free
            if free < size + FREE_MARGIN:
                raise OSError(errno.ENOSPC, f"{free} bytes free, {size} needed")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from e
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # h5py reports HDF5 write failures as either
        _remove(tmp)
        raise _write_error(path, e) from e
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _write_error(path: Path, error: BaseException) -> WriteError:
    previous = (
        f"the previous {path.name} is intact" if path.exists() else f"{path.name} was not written"
    )
    if isinstance(error, OSError) and error.errno in _FULL:
        return WriteError(f"disk full while writing {path}; {previous}")
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return WriteError(f"could not write {path} ({reason}); {previous}")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files an earlier, killed `atomic_write` left in `folder`.

    Only names `atomic_write` makes are touched; call it only on a folder no other process is
    writing (a locked run folder).

    Returns:
        The files removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for f in folder.iterdir():
        if TEMP_PATTERN.match(f.name) and f.is_file() and not f.is_symlink():
            _remove(str(f))
            removed.append(f)
    return removed


def write_bytes(path: str | Path, data: bytes, *, check_space: bool = False) -> Path:
    """Write `data` atomically; with `check_space`, a disk without room for it is refused first."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write, size=len(data) if check_space else None)


def weights_h5(model) -> bytes:
    """`model.save_weights`' `.weights.h5` file, made in memory.

    HDF5 then never writes to the disk itself: the bytes go through `write_bytes`, where a full
    disk is an `OSError` Python sees (h5py writing to a full disk has crashed the process).
    """
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(
            model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set()
        )
    finally:
        store.close()
    return buffer.getvalue()


def write_weights(path: str | Path, model) -> Path:
    """`model.save_weights(path)`, atomically and through memory (see `weights_h5`)."""
    try:
        data = weights_h5(model)
    except (ImportError, AttributeError, TypeError):  # a Keras without these internals
        return atomic_write(
            path, model.save_weights, suffix=".weights.h5", size=weights_bytes(model)
        )
    return write_bytes(path, data, check_space=True)


def weights_bytes(model) -> int:
    """About the size of `model.save_weights`' file: every variable, the optimizer's included."""
    optimizer = getattr(model, "optimizer", None)
    variables = [*model.weights, *(getattr(optimizer, "variables", None) or [])]
    total = 0
    for v in variables:
        count = math.prod(int(d) for d in v.shape)
        try:
            itemsize = np.dtype(str(getattr(v, "dtype", "float32"))).itemsize
        except TypeError:  # bfloat16 and friends numpy does not name
            itemsize = 4
        total += count * itemsize
    return total + 64 * 1024


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_csv(path: str | Path, header: list[str], rows: list[list[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, paths and tuples, as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def yaml_text(value: Any, **options: Any) -> str:
    """`yaml.safe_dump(value, **options)`, with libyaml's emitter when there is one."""
    return yaml.dump(value, Dumper=_DUMPER, **options)
