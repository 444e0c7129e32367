"""Checks of data before any training: each refusal a `DataError` naming the file, the problem
and the value; each image that cannot be decoded skipped and counted while the folder is listed.

Limits (documented in docs/tutorial.md, section 4 "Train"):
- `NPZ_LIMIT_BYTES`: the arrays of an npz file together may declare at most 4 GiB; the headers
  are read (and checked against what the file holds) before any array is.
- `IMAGE_PIXEL_LIMIT`: an image of more than 8192 x 8192 pixels is skipped (a PNG
  decompression bomb declares far more than it holds).
- NaN or infinite inputs are refused: one of them makes every loss NaN.
- Labels are integers (or integral floats) in `[0, classes)`.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from blockspec.builder.text import excerpt
from blockspec.training.errors import DataError

NPZ_LIMIT_BYTES = 4 << 30
IMAGE_PIXEL_LIMIT = 8192 * 8192
# The formats tf.io.decode_image reads; PIL's names. A TIFF named `.jpg` is not one of them.
DECODABLE = ("PNG", "JPEG", "BMP", "GIF")
MIN_EXAMPLES = 2


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def npz_headers(path: Path, limit: int = NPZ_LIMIT_BYTES) -> dict[str, tuple]:
    """`{array name: (shape, dtype)}` of an npz, from its headers alone, without reading data.

    Raises:
        DataError: not an npz archive, a damaged or lying header, pickled objects, or arrays
            that together declare more than `limit` bytes.
    """
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path} is not an npz archive (a zip of .npy arrays, as numpy.savez writes). "
            f"Received: {path.read_bytes()[:16]!r}..."
        )
    arrays, total = {}, 0
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    continue
                name = member.filename[: -len(".npy")]
                with archive.open(member) as f:
                    shape, dtype, offset = _read_header(f)
                if dtype.hasobject:
                    raise DataError(
                        f"{path}: array `{name}` holds Python objects (pickled data), which "
                        f"blockspec does not load. Received: dtype={dtype}"
                    )
                nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if nbytes > member.file_size - offset:
                    raise DataError(
                        f"{path}: array `{name}` declares {_size(nbytes)} (shape {shape}, "
                        f"{dtype}) but the file holds {_size(member.file_size - offset)}: "
                        "it is truncated or its header is wrong"
                    )
                total += nbytes
                arrays[name] = (shape, dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is a damaged npz archive ({type(e).__name__}: {e})") from e
    if total > limit:
        raise DataError(
            f"{path} declares {_size(total)} of arrays, over the limit of {_size(limit)} "
            "(`training.data_checks.NPZ_LIMIT_BYTES`); use a folder source for large data"
        )
    return arrays


def _read_header(f) -> tuple[tuple, np.dtype, int]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:  # numpy's only reader of the 3.0 header (utf-8 field names) is private
        shape, _, dtype = fmt._read_array_header(f, version)
    return tuple(int(d) for d in shape), np.dtype(dtype), f.tell()


def check_examples(path: Path, key: str, x: np.ndarray) -> None:
    """Numbers, one example per row, finite; a `DataError` naming the array otherwise."""
    where = f"{path}: `{key}`"
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where} holds {x.dtype} values, not numbers. Received: dtype={x.dtype}")
    if x.ndim == 0:
        raise DataError(f"{where} is a single value, not an array of examples. Received: shape=()")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            first = np.argwhere(bad)[0]
            raise DataError(
                f"{where} holds {int(bad.sum())} NaN or infinite value(s), e.g. at index "
                f"{tuple(int(i) for i in first)}: {x[tuple(first)]}. Clean the data first "
                "(one such input makes the loss NaN)."
            )


def check_labels(path: Path, key: str, y: np.ndarray, classes: int | None) -> np.ndarray:
    """Integer labels in `[0, classes)` (a one-hot matrix is read by its argmax), as int32."""
    where = f"{path}: `{key}`"
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where} holds {y.dtype} labels, not integers. Received: dtype={y.dtype}")
    if y.ndim == 0:
        raise DataError(f"{where} is a single value, not one label per example. Received: shape=()")
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot: each row one 1 among 0s
        not_one_hot = ~np.isin(y, (0, 1)).all(axis=1) | (y.sum(axis=1) != 1)
        if not_one_hot.any():
            row = int(np.argmax(not_one_hot))
            raise DataError(
                f"{where} has {y.shape[1]} columns that are not one-hot rows (one 1 among 0s), "
                f"e.g. row {row}: {excerpt(y[row].tolist())}; give one class id per example "
                f"or one-hot rows. Received: shape={y.shape}"
            )
        y = y.argmax(axis=1)
    if y.ndim > 1 and int(np.prod(y.shape[1:])) != 1:
        raise DataError(f"{where} needs one label per example. Received: shape={y.shape}")
    y = y.reshape(len(y))
    if y.dtype.kind == "f":
        broken = ~np.isfinite(y) | (y != np.round(y))
        if broken.any():
            i = int(np.argmax(broken))
            raise DataError(
                f"{where} holds fractional or NaN labels, e.g. label {y[i]} at index {i}; "
                "labels are class numbers 0, 1, 2, ..."
            )
    if len(y) and y.min() < 0:
        i = int(np.argmin(y))
        raise DataError(f"{where} holds a negative label: {y[i]} at index {i}")
    if classes is not None and len(y) and y.max() >= classes:
        i = int(np.argmax(y))
        raise DataError(
            f"{where} holds label {y[i]} (index {i}), out of range for the model's {classes} "
            f"classes (labels 0 to {classes - 1}). Widen the output or fix the labels."
        )
    return y.astype("int32")


def check_counts(path: Path, key: str, n: int, fraction: float) -> None:
    """At least two examples, and a validation split that leaves some on both sides."""
    if n < MIN_EXAMPLES:
        raise DataError(
            f"{path}: `{key}` holds {n} example(s); training needs at least {MIN_EXAMPLES}"
        )
    held = int(np.ceil(n * fraction)) if fraction > 0 else 0
    if fraction > 0 and (held < 1 or n - held < 1):
        raise DataError(
            f"{path}: validation_split {fraction} of {n} examples leaves {n - held} for "
            f"training and {held} for validation; each needs one at least"
        )


def image_problem(path: Path, limit: int = IMAGE_PIXEL_LIMIT) -> str | None:
    """Why an image file cannot train (None: it decodes). Decodes every pixel, once."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format not in DECODABLE:
                    return f"{image.format} data, which TensorFlow does not decode"
                if image.width * image.height > limit:
                    return f"{image.width}x{image.height} pixels, over the limit of {limit:,}"
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"over the pixel limit ({e})"
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        return f"cannot be decoded ({e})"
    return None
