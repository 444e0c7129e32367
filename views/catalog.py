"""`blockspec list`: the zoo specs and the step types, one line each.

Descriptions are shortened at a word boundary and escaped, so that text in square brackets
(`[224, 224, 3]`) is printed as written rather than read as rich markup.
"""

from __future__ import annotations

import textwrap

from blockspec.builder import registry
from blockspec.builder.errors import SpecError
from blockspec.builder.load import SPECS_DIR, parse_yaml, read_text

DESCRIPTION_WIDTH = 110


def one_line(text: str, width: int = DESCRIPTION_WIDTH) -> str:
    """`text` on one line, cut at a word boundary with ` ...` when longer than `width`."""
    return textwrap.shorten(" ".join(str(text).split()), width=width, placeholder=" ...")


def zoo_rows() -> list[tuple[str, str]]:
    """(name, description) of every zoo spec, the examples after the main zoo."""
    rows = []
    for path in [
        *sorted(SPECS_DIR.glob("*.yaml")),
        *sorted((SPECS_DIR / "examples").glob("*.yaml")),
    ]:
        try:
            data = parse_yaml(read_text(path), str(path)).data or {}
        except SpecError:
            data = {}
        description = data.get("description", "") if isinstance(data, dict) else ""
        rows.append((path.stem, one_line(description)))
    return rows


def type_rows() -> list[tuple[str, str, str]]:
    """(type, kind, first line of its documentation) of every registered step type."""
    entries = sorted(registry.all_types().items(), key=lambda kv: (kv[1].kind, kv[0]))
    return [(name, entry.kind, one_line(entry.summary_line())) for name, entry in entries]


def tables():
    """The two rich tables `blockspec list` prints."""
    from rich.markup import escape
    from rich.table import Table

    zoo = Table(title="zoo specs")
    zoo.add_column("name")
    zoo.add_column("description")
    for name, description in zoo_rows():
        zoo.add_row(escape(name), escape(description))
    types = Table(title="step types")
    for column in ("type", "kind", "does"):
        types.add_column(column)
    for row in type_rows():
        types.add_row(*(escape(cell) for cell in row))
    return zoo, types
