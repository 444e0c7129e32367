"""Sizes a newcomer can hold: no module over 500 code lines, no function over 100 lines.

Code lines are the lines that hold a token other than a comment (docstrings count); a function is
measured from its `def` to its last line, docstring included. Tests, benchmarks and tools are
left out: they are read one case at a time.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE = 500
MAX_FUNCTION = 100
SKIPPED = {"tests", "bench", "tools", "build", "docs", "specs"}
_NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def code_lines(source: str) -> int:
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines)


def modules() -> dict[str, str]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIPPED or rel.parts[0].startswith("."):
            continue
        found[str(rel)] = path.read_text(encoding="utf-8")
    return found


def test_the_count_sees_code_not_comments_or_blank_lines():
    assert code_lines('"""Doc."""\n\n# a comment\nx = (\n    1\n)\n') == 4


def test_no_module_over_500_code_lines():
    sizes = {rel: code_lines(source) for rel, source in modules().items()}
    assert len(sizes) > 50  # the package was found
    assert {rel: n for rel, n in sizes.items() if n > MAX_MODULE} == {}


def test_no_function_over_100_lines():
    long = {}
    for rel, source in modules().items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION:
                    long[f"{rel}:{node.lineno} {node.name}"] = length
    assert long == {}
