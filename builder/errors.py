"""`SpecError` and source positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mark:
    """A position in a spec file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec."""

    message: str
    path: str = ""
    mark: Mark | None = None

    def __str__(self) -> str:
        where = str(self.mark) if self.mark else "<spec>"
        path = f"{self.path}: " if self.path else ""
        return f"{where}  {path}{self.message}"


class SpecError(ValueError):
    """A spec broke one or more rules. `problems` lists each; `str()` shows them all, one per line."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = "1 problem" if count == 1 else f"{count} problems"
        super().__init__(f"{head} in spec:\n" + "\n".join(f"  {p}" for p in self.problems))


def close_matches(word: Any, candidates, n: int = 3) -> list[str]:
    """The candidates closest to `word`, best first (the one fuzzy matcher of the code base)."""
    import difflib

    return difflib.get_close_matches(str(word), [str(c) for c in candidates], n=n, cutoff=0.6)


def did_you_mean(word: Any, candidates) -> str:
    """` Did you mean `x`?` for the closest candidates, or ''.

    Example:
        >>> did_you_mean("kernal", ["kernel", "filters"])
        ' Did you mean `kernel`?'
    """
    close = close_matches(word, candidates)
    if not close:
        return ""
    if len(close) == 1:
        return f" Did you mean `{close[0]}`?"
    return " Did you mean " + ", ".join(f"`{c}`" for c in close) + "?"


def clip(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, ending in `...` when cut (a bounded excerpt).

    Example:
        >>> clip("x" * 100, 10)
        'xxxxxxx...'
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten(value: Any, limit: int = 80) -> str:
    """`repr(value)`, clipped: how a message shows a received value."""
    return clip(repr(value), limit)
