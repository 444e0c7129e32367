"""Where each search space is written, and the concrete document a search's values give.

`best.yaml` is the source document with every `{tune: ...}` mapping replaced by a value. The
resolver reports each space it meets to its chooser with a path, but a space can be met far from
where it is written (a block argument's default is resolved where the block is used). So before
resolving, `SpaceIndex` marks the `tune` value of every space with the space's path in the
document (a `str` subclass: the resolver compares and copies it like any string); the chooser reads
the mark back. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from blockspec.builder.load import Document, format_path
from blockspec.builder.resolve import (
    _labels,  # the resolver's labels of structured choices: names agree
)
from blockspec.builder.spaces import default_value, is_space

PathT = tuple  # ("network", 3, "conv", "filters")


class _Where(str):
    """A space's `tune` value (`int`, `choice`, ...) that knows where the space is written."""

    path: PathT = ()


def where(space: dict) -> PathT | None:
    """The document path a marked space is written at, or None (a space the resolver made)."""
    kind = space.get("tune")
    return kind.path if isinstance(kind, _Where) else None


def space_at(node: Any) -> bool:
    """A search space: a mapping whose `tune` is a kind (the top level's `tune:` section is not)."""
    return is_space(node) and isinstance(node["tune"], str)


def contains_space(value: Any) -> bool:
    if isinstance(value, dict):
        return space_at(value) or any(contains_space(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_space(v) for v in value)
    return False


def is_structured(values: list) -> bool:
    """A choice among mappings or lists (steps, optimizers) is searched by label."""
    return any(isinstance(v, (dict, list)) for v in values)


class SpaceIndex:
    """Every search space of a document, by path; and a marked copy of the document to resolve.

    Args:
        document: the merged source document (`extends`, `imports`, `--set` applied).

    Example:
        >>> index = SpaceIndex(Document({"vars": {"w": {"tune": "int", "min": 1, "max": 4}}}))
        >>> list(index.nodes)
        [('vars', 'w')]
    """

    def __init__(self, document: Document):
        self.document = document
        self.nodes: dict[PathT, dict] = {}
        self.marked = Document(
            data=self._mark(document.data, ()), marks=document.marks, file=document.file
        )
        self.by_text = {format_path(p): p for p in self.nodes}

    def _mark(self, node: Any, path: PathT) -> Any:
        if isinstance(node, dict):
            out = {k: self._mark(v, (*path, k)) for k, v in node.items()}
            if space_at(node):
                self.nodes[path] = node
                kind = _Where(node["tune"])
                kind.path = path
                out["tune"] = kind
            return out
        if isinstance(node, list):
            return [self._mark(v, (*path, i)) for i, v in enumerate(node)]
        return node

    def locate(self, space: dict, text: str) -> PathT | None:
        """The document path of a space the resolver met (`text` is the path it reported)."""
        path = where(space)
        if path is not None:
            return path
        return self.by_text.get(text)


def concrete_document(
    index: SpaceIndex, values: dict[PathT, Any], data: Any | None = None
) -> dict[str, Any]:
    """The source document with every search space replaced by a value.

    Args:
        index: the document's spaces.
        values: document path -> the value the chooser gave that space (for a choice among steps
            or other mappings: the chosen label).
        data: the document to rewrite (default: the index's).

    Returns:
        A new document without search spaces. A space the resolution never met (inside a block
        nobody uses) gets its default, as building without tuning would.
    """

    def walk(node: Any, path: PathT) -> Any:
        if space_at(node):
            chosen = walk(pick(node, path), _chosen_path(node, path, values.get(path)))
            if "name" in node and isinstance(chosen, dict):  # a named choice among steps
                chosen = {**chosen, "name": node["name"]}
            return chosen
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        return copy.deepcopy(node)

    def pick(node: dict, path: PathT) -> Any:
        if path in values:
            value = values[path]
            if node["tune"] == "choice" and is_structured(node["values"]):
                return node["values"][_labels(node["values"]).index(value)]
            return value
        return default_value(node)

    return walk(index.document.data if data is None else data, ())


def _chosen_path(node: dict, path: PathT, value: Any) -> PathT:
    """Where the chosen value of a choice sits (nested spaces inside it have paths under it)."""
    if node["tune"] != "choice":
        return path
    options = node["values"]
    if value is None:
        index = options.index(node["default"]) if "default" in node else 0
    elif is_structured(options):
        index = _labels(options).index(value)
    else:
        index = options.index(value) if value in options else 0
    return (*path, "values", index)


def rebase_data_paths(document: dict, spec_dir: Path | None, out_dir: Path) -> dict:
    """Relative `train.data.path` / `validation_path`, rewritten relative to `out_dir`.

    `blockspec train` reads relative data paths from the spec's folder; `best.yaml` lives in the
    search folder, so its paths must point from there.
    """
    data = (document.get("train") or {}).get("data")
    if spec_dir is None or not isinstance(data, dict):
        return document
    for key in ("path", "validation_path"):
        value = data.get(key)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            target = (spec_dir / value).resolve()
            data[key] = os.path.relpath(target, out_dir.resolve())
    return document
