"""Lines of a spec or of Python, as docs/zoo.md counts them: non-blank lines that are not comments;
for Python, docstrings left out and, given names, only those top-level functions, classes and
assignments (decorators included).

    python tools/count_lines.py specs/nasnet.yaml
    python tools/count_lines.py blocks/nasnet.py
    python tools/count_lines.py .../keras/src/applications/nasnet.py NASNet _normal_a_cell
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) or not node.body:
            continue
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            if isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def _named_lines(tree: ast.Module, names: set[str]) -> set[int]:
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
        elif isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) in names for t in node.targets
        ):
            start = node.lineno
        else:
            continue
        lines.update(range(start, node.end_lineno + 1))
    return lines


def count(path: str, names: set[str] | None = None) -> int:
    text = Path(path).read_text()
    code = [(i, s.strip()) for i, s in enumerate(text.splitlines(), 1)]
    code = [(i, s) for i, s in code if s and not s.startswith("#")]
    if not path.endswith(".py"):
        return len(code)
    tree = ast.parse(text)
    skip = _docstring_lines(tree)
    keep = _named_lines(tree, names) if names else None
    return sum(1 for i, _ in code if i not in skip and (keep is None or i in keep))


if __name__ == "__main__":
    print(count(sys.argv[1], set(sys.argv[2:]) or None))
