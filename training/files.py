"""Atomic file writes: write a temporary file in the same folder, then `os.replace` it.

A run killed at any moment leaves each file either as it was or complete, never half written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# libyaml's emitter when PyYAML has it: the same text, about five times faster.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def atomic_write(path: str | Path, write: Callable[[str], None], suffix: str = "") -> Path:
    """Call `write(tmp_path)`, then move the temporary file onto `path` in one step.

    Args:
        path: the final file.
        write: writes the whole file to the path it is given.
        suffix: the temporary file's ending, for writers that check it (`.keras`, `.weights.h5`).

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


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
