"""The packages depend one way: a module never imports a package above its own, not even lazily.

Order, bottom to top: the compiler (`builder`, `blocks`) < `training` < `tuning` < `views` (the
user tools) < the command line (`cli`, `cli_support`). The compiler imports nothing from training,
tuning, the user tools or the command line. Imports are
read from the source (ast), every `import` statement anywhere in a module, so a lazy import inside
a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEVELS = {
    "builder": 0,
    "blocks": 0,
    "training": 1,
    "tuning": 2,
    "views": 3,
    "cli": 4,
    "cli_support": 4,
}
COMPILER = ("builder", "blocks")
# Known exceptions, each to be removed by moving the code (none now).
ALLOWED: set[tuple[str, str]] = set()


def package_of(module: str) -> str | None:
    """`blockspec.training.config` -> `training`; None for modules outside blockspec's packages."""
    parts = module.split(".")
    if parts[0] != "blockspec" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LEVELS else None


def imports(source: str, relpath: Path) -> list[tuple[int, str]]:
    """(line, package) of every blockspec package the source imports; relative ones resolved."""
    tree = ast.parse(source, str(relpath))
    package = ["blockspec", *relpath.parent.parts]
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], base]).strip(".")
            # `from blockspec import training` names a package too
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            target = package_of(name)
            if target is not None:
                found.add((node.lineno, target))
    return sorted(found)


def sources() -> dict[Path, str]:
    files = [ROOT / "cli.py", ROOT / "cli_support.py"]
    for package in LEVELS:
        if (ROOT / package).is_dir():
            files += sorted((ROOT / package).rglob("*.py"))
    return {path.relative_to(ROOT): path.read_text(encoding="utf-8") for path in files}


def violations(files: dict[Path, str]) -> list[str]:
    out = []
    for relpath, source in files.items():
        own = relpath.parts[0].removesuffix(".py")
        for line, target in imports(source, relpath):
            if LEVELS[target] > LEVELS[own] and (str(relpath), target) not in ALLOWED:
                out.append(f"{relpath}:{line} ({own}) imports {target}")
    return out


def test_no_package_imports_a_package_above_it():
    assert violations(sources()) == []


def test_the_compiler_imports_no_tool_training_tuning_or_cli():
    for relpath, source in sources().items():
        if relpath.parts[0] in COMPILER:
            found = [target for _, target in imports(source, relpath)]
            assert set(found) <= set(COMPILER), f"{relpath} imports {found}"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from blockspec.training.config import with_defaults\n", ["training"]),
        ("def f():\n    import blockspec.tuning.search\n", ["tuning"]),
        ("from blockspec import cli\n", ["cli"]),
        ("from ..views import schema\n", ["views"]),
        ("from blockspec.builder import registry\n", []),
    ],
)
def test_the_check_sees_lazy_and_relative_imports(source, expected):
    found = violations({Path("builder/probe.py"): source})
    assert [v.rsplit(" ", 1)[-1] for v in found] == expected
