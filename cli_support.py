"""What every `blockspec` command shares: argument types, resolving, TensorFlow, the console.

- `spec_args`, `override_args`: the SPEC argument and `--set`/`--limit`, checked by argparse;
  `resolve` applies them (pure Python, so a mistake is reported before TensorFlow loads).
- `import_tensorflow`: imports TensorFlow, dropping the C++ log lines it prints unless `-v`.
- `console`, `columns`, `full_lines`: rich output at the page's width (wide when piped).
- `sigterm_interrupts`: SIGTERM stops a command as Ctrl-C does (`errors.Terminated`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from blockspec.builder.load import Limits, parse_override
from blockspec.errors import Terminated

# When stdout is a pipe or a log file, rich would wrap every line at 80 columns; it reads the
# page width from COLUMNS, so a wide page keeps paths and table rows on one line.
PIPE_COLUMNS = 4096

# What TensorFlow's C++ side prints while it is imported (absl/glog lines such as
# `I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers`, the oneDNN notice, the CPU
# instructions notice). TF_CPP_MIN_LOG_LEVEL does not reach the lines absl prints before it is
# initialised, so they are filtered from the import's stderr instead.
TF_IMPORT_NOISE = re.compile(
    r"^([IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\)"
    r"|To enable the following instructions:"
    r"|.*oneDNN custom operations are on)"
)


# ------------------------------------------------------------------ shared arguments


def set_item(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"takes KEY=VALUE (e.g. vars.classes=10); got {text!r}")
    return text


def keras_file(text: str) -> str:
    """`--save`'s path: a `.keras` (or legacy `.h5`) file in a folder that exists."""
    path = os.path.abspath(text)
    if not text.endswith((".keras", ".h5")) or os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"takes a file ending in .keras (or .h5); got {text!r}")
    if not os.path.isdir(os.path.dirname(path)):
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist")
    return text


def limit_item(text: str) -> tuple[str, int]:
    names = Limits.__dataclass_fields__
    key, _, value = text.partition("=")
    if key not in names or not value.isdigit():
        raise argparse.ArgumentTypeError(
            f"takes NAME=INTEGER, NAME one of {', '.join(names)}; got {text!r}"
        )
    return key, int(value)


def spec_args(parser: argparse.ArgumentParser, many: bool = False) -> None:
    parser.add_argument(
        "spec", nargs="+" if many else None, help="a spec file or a zoo name (see `blockspec list`)"
    )
    override_args(parser, "override a dotted key; VALUE is YAML (repeatable)")


def override_args(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--set", action="append", type=set_item, metavar="KEY=VALUE", help=help_text
    )
    parser.add_argument(
        "--limit",
        action="append",
        type=limit_item,
        metavar="NAME=N",
        help="raise a safety limit, e.g. max_steps=50000",
    )


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    return dict(parse_override(item) for item in items or [])


def limits_of(args) -> Limits:
    return Limits(**dict(args.limit or []))


def resolve_args(spec: str, args, extra_overrides: list[str] | None = None):
    """The resolved spec (pure Python: a typo in a path is reported before TensorFlow loads)."""
    from blockspec.builder.resolve import resolve_spec

    overrides = {**parse_overrides(args.set), **parse_overrides(extra_overrides)}
    return resolve_spec(spec, overrides, limits=limits_of(args))


def import_tensorflow(args) -> None:
    """Imports TensorFlow, dropping the C++ log lines it prints unless `-v` was given."""
    if getattr(args, "verbose", False) or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401

        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines()
    kept = [line for line in lines if line.strip() and not TF_IMPORT_NOISE.match(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def build_resolved(resolved, args, inference: bool = False):
    import_tensorflow(args)
    from blockspec.builder.compile import compile_spec

    return compile_spec(resolved, inference=inference)


def page_columns() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def make_console():
    from rich.console import Console

    return Console(width=max(80, page_columns()))


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# ------------------------------------------------------------------ the process


@contextlib.contextmanager
def full_lines() -> Iterator[None]:
    """A wide page for rich and shutil while stdout is not a terminal (restored afterwards)."""
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        yield
        return
    os.environ["COLUMNS"] = str(PIPE_COLUMNS)
    try:
        yield
    finally:
        os.environ.pop("COLUMNS", None)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises `Terminated` (a `KeyboardInterrupt`): a run stops as on Ctrl-C."""

    def terminate(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
