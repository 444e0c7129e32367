"""Loading: a spec file or zoo name -> one `Document`, `extends` and `imports` merged, `--set` applied.

YAML text is read by `builder/yaml_read.py` (values with the line and column of every node; its
names, `parse_yaml`, `Document`, `Limits`, ..., are importable from here too). `extends` and
`imports` are followed here (with cycle detection), and `--set` overrides are applied last.
Nothing here imports Keras.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from blockspec.builder.errors import Mark, Problem, SpecError, did_you_mean
from blockspec.builder.yaml_read import (  # noqa: F401 (the reader's names, importable here)
    DEFAULT_LIMITS,
    Document,
    Limits,
    Path_,
    _clip,
    format_path,
    parse_yaml,
    read_text,
)

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"


def zoo_names() -> list[str]:
    """Names of the zoo specs (`specs/*.yaml` and `specs/examples/*.yaml`)."""
    names = [p.stem for p in sorted(SPECS_DIR.glob("*.yaml"))]
    names += [p.stem for p in sorted((SPECS_DIR / "examples").glob("*.yaml"))]
    return names


def find_spec(name: str, relative_to: Path | None = None) -> Path:
    """A spec path from a path or a zoo name. Raises `FileNotFoundError` with suggestions."""
    looks_like_path = name.endswith((".yaml", ".yml", ".json")) or "/" in name or os.sep in name
    if looks_like_path:
        path = Path(name)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if path.is_file():
            return path
        if path.is_dir():
            raise FileNotFoundError(f"`{name}` is a folder, not a spec file (looked for {path})")
        raise FileNotFoundError(f"spec file `{name}` not found (looked for {path})")
    for candidate in (
        Path(name),
        SPECS_DIR / f"{name}.yaml",
        SPECS_DIR / "examples" / f"{name}.yaml",
    ):
        if candidate.is_file():
            return candidate
    folder = " (a folder of that name is here, but a spec is a file)" if Path(name).is_dir() else ""
    raise FileNotFoundError(f"no zoo spec named `{name}`{folder}.{did_you_mean(name, zoo_names())}")


def deep_merge(base: Any, over: Any) -> Any:
    """Mappings merge key by key (over wins); anything else, lists included, is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return over


def load_document(
    spec: str | os.PathLike | dict,
    overrides: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Document:
    """Loads a spec with `extends`, `imports` and overrides applied.

    Args:
        spec: a path, a zoo name, or an already parsed mapping.
        overrides: dotted keys to values (`{"vars.classes": 10}`); string values from the command
            line are parsed as YAML by `parse_override`.
        limits: size bounds.

    Returns:
        The merged document.
    """
    if isinstance(spec, dict):
        doc = Document(data=spec, file="<dict>")
        base_dir = Path.cwd()
    else:
        try:
            path = find_spec(str(spec))
        except FileNotFoundError as e:
            raise SpecError(Problem(str(e), mark=Mark(str(spec), 1, 1))) from None
        doc = _load_file(path, limits, stack=())
        base_dir = path.parent
    if (
        doc.data is not None
        and isinstance(doc.data, dict)
        and "imports" in doc.data
        and isinstance(spec, dict)
    ):
        doc = _apply_imports(doc, base_dir, limits, stack=())
    if overrides:
        doc = apply_overrides(doc, overrides)
    return doc


def _load_file(path: Path, limits: Limits, stack: tuple[Path, ...]) -> Document:
    resolved = path.resolve()
    display = _display(path)
    if resolved in stack:
        chain = " -> ".join(_display(p) for p in (*stack, resolved))
        raise SpecError(Problem(f"`extends`/`imports` cycle: {chain}", mark=Mark(display, 1, 1)))
    if len(stack) > 32:
        raise SpecError(
            Problem("`extends`/`imports` chain deeper than 32 files", mark=Mark(display, 1, 1))
        )
    doc = parse_yaml(read_text(path, limits), display, limits)
    if doc.data is None:
        raise SpecError(Problem("the spec file is empty", mark=Mark(display, 1, 1)))
    if not isinstance(doc.data, dict):
        raise SpecError(
            Problem(
                f"a spec must be a mapping of keys (spec, name, network, ...). Received: a {_kind(doc.data)}",
                mark=doc.mark(()),
            )
        )
    stack = (*stack, resolved)
    parent_ref = doc.data.get("extends")
    if parent_ref is not None:
        if not isinstance(parent_ref, str):
            raise SpecError(
                Problem(
                    f"`extends` takes a zoo name or a path. Received: {parent_ref!r}",
                    "extends",
                    doc.mark(("extends",)),
                )
            )
        try:
            parent_path = find_spec(parent_ref, relative_to=path.parent)
        except FileNotFoundError as e:
            raise SpecError(Problem(str(e), "extends", doc.mark(("extends",)))) from None
        parent = _load_file(parent_path, limits, stack)
        doc = _merge_documents(parent, doc)
        doc.data.pop("extends", None)
    return _apply_imports(doc, path.parent, limits, stack)


def _apply_imports(
    doc: Document, base_dir: Path, limits: Limits, stack: tuple[Path, ...]
) -> Document:
    imports = doc.data.get("imports")
    if imports is None:
        return doc
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise SpecError(
            Problem(
                f"`imports` takes a list of spec paths. Received: {imports!r}",
                "imports",
                doc.mark(("imports",)),
            )
        )
    own_blocks = doc.data.get("blocks") or {}
    if not isinstance(own_blocks, dict):
        own_blocks = {}  # the resolver reports `blocks` itself; keep it for that
        keep_own = False
    else:
        keep_own = True
    merged_blocks: dict[str, Any] = {}
    problems = []
    for index, ref in enumerate(imports):
        where = doc.mark(("imports", index)) or doc.mark(("imports",))
        try:
            path = find_spec(ref, relative_to=base_dir)
        except FileNotFoundError as e:
            problems.append(Problem(str(e), f"imports[{index}]", where))
            continue
        other = _load_file(path, limits, stack)
        other_blocks = other.data.get("blocks") or {}
        if not isinstance(other_blocks, dict):
            problems.append(
                Problem(
                    f"`blocks` of an imported spec must map block names to {{args, body}}. "
                    f"Received: {_clip(repr(other_blocks))}",
                    "blocks",
                    other.mark(("blocks",)),
                )
            )
            continue
        for name, body in other_blocks.items():
            if name in merged_blocks or name in own_blocks:
                problems.append(
                    Problem(
                        f"block `{name}` is defined twice (imported from {_display(path)})",
                        f"imports[{index}]",
                        where,
                    )
                )
                continue
            merged_blocks[name] = body
            for mpath, mark in other.marks.items():
                if mpath[:2] == ("blocks", name):
                    doc.marks[mpath] = mark
    if problems:
        raise SpecError(problems)
    if merged_blocks and keep_own:
        doc.data["blocks"] = {**merged_blocks, **own_blocks}
    doc.data.pop("imports", None)
    return doc


def _merge_documents(parent: Document, child: Document) -> Document:
    data = deep_merge(parent.data, child.data)
    replaced = [p for p, v in _walk(child.data, ()) if not isinstance(v, dict)]
    marks = {
        p: m
        for p, m in parent.marks.items()
        if not any(p[: len(r)] == r and len(p) > len(r) for r in replaced if r)
    }
    marks.update(child.marks)
    return Document(data=data, marks=marks, file=child.file)


def _walk(value: Any, path: Path_):
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))


def parse_override(text: str) -> tuple[str, Any]:
    """`"vars.classes=10"` -> `("vars.classes", 10)`; the value is read as YAML."""
    if "=" not in text:
        raise SpecError(
            Problem(
                f"--set takes KEY=VALUE (e.g. vars.classes=10). Received: {text!r}",
                mark=Mark("--set", 1, 1),
            )
        )
    key, _, value = text.partition("=")
    doc = parse_yaml(value, f"--set {key.strip()}")
    return key.strip(), doc.data


def apply_overrides(doc: Document, overrides: dict[str, Any]) -> Document:
    """Sets each dotted key (`train.epochs`, `network.3.conv.filters`) in a copy of `doc`."""
    import copy

    data = copy.deepcopy(doc.data) if doc.data is not None else {}
    problems = []
    for key, value in overrides.items():
        where = Mark(f"--set {key}", 1, 1)
        parts: list[Any] = [
            int(p) if re.fullmatch(r"-?[0-9]+", p) else p for p in str(key).split(".")
        ]
        if not key or any(p == "" for p in parts):
            problems.append(
                Problem(f"--set key must be a dotted path. Received: {key!r}", mark=where)
            )
            continue
        target = data
        ok = True
        for depth, part in enumerate(parts[:-1]):
            if isinstance(target, dict):
                if part not in target or not isinstance(target[part], (dict, list)):
                    target[part] = {}
                target = target[part]
            elif (
                isinstance(target, list)
                and isinstance(part, int)
                and -len(target) <= part < len(target)
            ):
                target = target[part]
            else:
                problems.append(
                    Problem(
                        f"--set cannot reach `{part}` in {format_path(tuple(parts[:depth]))}. Received: {key}",
                        mark=where,
                    )
                )
                ok = False
                break
        if not ok:
            continue
        last = parts[-1]
        if isinstance(target, list):
            if not (isinstance(last, int) and -len(target) <= last < len(target)):
                problems.append(Problem(f"--set index out of range. Received: {key}", mark=where))
                continue
        target[last] = value
        marks_path = tuple(parts)
        doc.marks = {p: m for p, m in doc.marks.items() if p[: len(marks_path)] != marks_path}
        doc.marks[marks_path] = where
    if problems:
        raise SpecError(problems)
    return Document(data=data, marks=doc.marks, file=doc.file)


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _kind(value: Any) -> str:
    return {
        dict: "mapping",
        list: "list",
        str: "string",
        int: "number",
        float: "number",
        bool: "boolean",
    }.get(type(value), type(value).__name__)
