"""The corpus of malformed specs: each is refused with a located message, never a traceback.

Each `tests/bad_specs/NN_name.yaml` states what it must produce in its leading comments:

    # expect: REGEX          (one or more; each must match one problem, `file:line:col  path: text`)
    # expect-line: N         (the line of the problem the first `expect` matched)
    # expect-problems: N     (exactly N problems: one cause is reported once, not echoed)
    # stage: build           (resolves; refused while building the Keras model)
    # limit: NAME=N          (resolved and built under that limit, as `--limit NAME=N` does)

Files that cannot be committed (empty, binary, 50 MB) are generated in a temporary folder below.
Helper files (the other half of a cycle, an imported file) live in `tests/bad_specs/support/`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from blockspec import cli
from blockspec.builder.errors import SpecError
from blockspec.builder.load import Limits
from blockspec.builder.resolve import resolve_spec

CORPUS = Path(__file__).resolve().parent / "bad_specs"
ROOT = CORPUS.parent.parent
FILES = sorted(CORPUS.glob("[0-9][0-9]*_*.yaml"), key=lambda p: int(p.name.split("_")[0]))
LOCATED = re.compile(r"\S+:\d+:\d+  ")


@dataclass
class Case:
    path: Path
    expect: list[str] = field(default_factory=list)
    line: int | None = None
    problems: int | None = None
    stage: str = "resolve"
    limits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Case:
        case = cls(path)
        for raw in path.read_bytes().decode("utf-8", "replace").splitlines():
            if not raw.startswith("#"):
                break
            key, _, value = raw[1:].strip().partition(":")
            value = value.strip()
            if key == "expect":
                case.expect.append(value)
            elif key == "expect-line":
                case.line = int(value)
            elif key == "expect-problems":
                case.problems = int(value)
            elif key == "stage":
                case.stage = value
            elif key == "limit":
                name, _, number = value.partition("=")
                case.limits[name.strip()] = int(number)
        return case

    def limit_args(self) -> list[str]:
        return [arg for name, n in self.limits.items() for arg in ("--limit", f"{name}={n}")]


def test_the_corpus_is_big_enough():
    assert len(FILES) >= 50
    for path in FILES:
        assert Case.read(path).expect, f"{path.name} states no `# expect:`"


def refusal(case: Case) -> SpecError:
    """The `SpecError` the case produces at its stage."""
    limits = Limits(**case.limits)
    if case.stage == "build":
        from blockspec.builder.compile import compile_spec

        resolved = resolve_spec(str(case.path), limits=limits)  # resolves: the build refuses it
        with pytest.raises(SpecError) as info:
            compile_spec(resolved)
        return info.value
    with pytest.raises(SpecError) as info:
        resolve_spec(str(case.path), limits=limits)
    return info.value


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_refused_with_the_expected_located_message(path):
    case = Case.read(path)
    error = refusal(case)
    lines = [str(problem) for problem in error.problems]
    for problem in error.problems:
        assert problem.mark is not None, f"unlocated problem: {problem}"
        assert problem.mark.line >= 1 and problem.mark.column >= 1, str(problem)
    first = None
    for pattern in case.expect:
        matched = [
            p for p, text in zip(error.problems, lines, strict=True) if re.search(pattern, text)
        ]
        assert matched, f"no problem matches {pattern!r}; got:\n" + "\n".join(lines)
        first = first or matched[0]
    if case.line is not None:
        assert first.mark.line == case.line, f"expected line {case.line}: {first}"
    if case.problems is not None:
        assert len(lines) == case.problems, "expected {} problem(s), got:\n{}".format(
            case.problems, "\n".join(lines)
        )


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_cli_exits_2_without_traceback(path, capsys):
    case = Case.read(path)
    command = "build" if case.stage == "build" else "validate"
    code = cli.main([command, str(path), *case.limit_args()])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in out + err
    assert LOCATED.search(err), f"no file:line:col in: {err}"


SAMPLE = [
    p for p in FILES if p.name.split("_")[0] in ("01", "10", "22", "43", "53", "57", "72", "75")
]


def test_cli_subprocess_sample_exits_2_without_traceback():
    """The real command line, in a fresh interpreter, on a sample of the corpus at once."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "validate", *map(str, SAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("FAIL ") == len(SAMPLE)


# ------------------------------------------------------------------ generated cases


def _refused(path: Path, pattern: str) -> SpecError:
    """Refused, located. (How fast is measured in bench/, not asserted here: issue 16.)"""
    with pytest.raises(SpecError, match=pattern) as info:
        resolve_spec(str(path))
    assert all(p.mark is not None for p in info.value.problems)
    return info.value


def test_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_bytes(b"")
    error = _refused(path, "the spec file is empty")
    assert error.problems[0].mark.line == 1


def test_binary_file_with_nul_bytes(tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_bytes(bytes(range(256)) * 64)
    _refused(path, r"not a text file \(it contains NUL bytes\)")


def test_binary_file_without_nul_bytes(tmp_path):
    path = tmp_path / "picture.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(1, 256)) * 16)
    error = _refused(path, r"not UTF-8 text \(byte 0\)")
    assert error.problems[0].mark.line == 1


def test_utf16_file(tmp_path):
    path = tmp_path / "utf16.yaml"
    path.write_text("spec: 1\ninput: [8]\nnetwork: [dense: 4]\n", encoding="utf-16")
    _refused(path, "not a text file|not UTF-8 text")


def test_50_megabyte_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as out:
        out.write(b"spec: 1\ninput: [8]\nnetwork:\n")
        line = b"  - dense: 4\n" * 4096
        while out.tell() < 50 * 1024 * 1024:
            out.write(line)
    error = _refused(path, r"file larger than 4194304 bytes: refused \(limit\)")
    assert "Received: 5" in str(error)  # 52,4xx,xxx bytes
    assert cli.main(["validate", str(path)]) == 2


def test_50_megabyte_file_passes_with_a_raised_limit_up_to_the_node_limit(tmp_path):
    """`--limit max_file_bytes=...` lets it be read; the node limit then refuses it, still soon."""
    path = tmp_path / "huge.yaml"
    path.write_bytes(
        b"spec: 1\ninput: [8]\nnetwork:\n" + b"  - dense: 4\n" * (50 * 1024 * 1024 // 13)
    )
    with pytest.raises(SpecError, match=r"more than 50000 YAML nodes: refused \(limit\)"):
        resolve_spec(str(path), limits=Limits(max_file_bytes=64 * 1024 * 1024))


def test_directory_and_fifo_are_not_spec_files(tmp_path):
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(SpecError, match="is a folder, not a spec file"):
        resolve_spec(str(folder))
    if hasattr(os, "mkfifo"):  # reading a FIFO would block forever
        fifo = tmp_path / "pipe.yaml"
        os.mkfifo(fifo)
        _refused(fifo, "not found")


def test_missing_file_suggests_a_zoo_name():
    with pytest.raises(SpecError, match=r"no zoo spec named `googlnet`\. Did you mean `googlenet`"):
        resolve_spec("googlnet")


def test_a_file_that_says_it_is_empty_is_still_read_with_the_bound():
    """`/proc` files report size 0: the bound holds while reading, not only from `stat`."""
    proc = Path("/proc/self/maps")
    if not proc.is_file() or proc.stat().st_size != 0:
        pytest.skip("needs a /proc file that reports size 0")
    from blockspec.builder.load import read_text

    with pytest.raises(SpecError, match=r"file larger than 100 bytes: refused \(limit\)"):
        read_text(proc, Limits(max_file_bytes=100))


def test_a_syntax_error_at_the_end_of_a_big_file_is_refused(tmp_path):
    """libyaml finds it; the slow pure-Python reparse (for PyYAML's wording) is skipped."""
    path = tmp_path / "big.yaml"
    step = "  - dense: 4  # a comment makes the file big, not the node count\n"
    path.write_text("spec: 1\ninput: [8]\nnetwork:\n" + step * 15_000 + "  - dense: [4\n")
    assert path.stat().st_size > 512 * 1024
    error = _refused(path, "YAML syntax error")
    assert error.problems[0].mark.line > 15_000
