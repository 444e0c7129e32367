"""Loading: YAML text -> plain Python values with the line and column of every node.

Safe by construction: PyYAML's safe composer builds the node tree and this module turns nodes into
dicts, lists and scalars itself, so no tag can construct an object. `extends` and `imports` are
followed here (with cycle detection), and `--set` overrides are applied last. Nothing here imports
Keras.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blockspec.builder.errors import Mark, Problem, SpecError, did_you_mean

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"

Path_ = tuple  # a spec path: keys and list indices, e.g. ("network", 7, "inception", "c3")


@dataclass
class Limits:
    """Bounds on untrusted input. Raise them with `--limit NAME=VALUE` on the command line."""

    max_file_bytes: int = 4 * 1024 * 1024
    max_depth: int = 64
    max_nodes: int = 50_000  # 80x the largest zoo spec; reading 50,000 nodes takes under a second
    max_steps: int = 20_000  # steps after `repeat` and block expansion
    max_repeat: int = 10_000
    max_parameters: int = 1_000_000_000  # weights of every layer, counted before any is allocated


DEFAULT_LIMITS = Limits()


@dataclass
class Document:
    """A loaded spec: the data, the marks of its nodes, the file it came from."""

    data: Any
    marks: dict[Path_, Mark] = field(default_factory=dict)
    file: str = "<spec>"

    def mark(self, path: Path_) -> Mark | None:
        """The mark of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.marks:
                return self.marks[path]
            if not path:
                return None
            path = path[:-1]


def format_path(path: Path_) -> str:
    """`("network", 7, "inception", "c3")` -> `network[7].inception.c3`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# YAML 1.1 reads `1e-4` as a string and `on`/`no` as booleans; a user means a float and a word.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _Bounded(yaml.composer.Composer):
    """The composer, with bounded depth and size."""

    limits: Limits = DEFAULT_LIMITS
    _depth = 0
    _nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1
        if self._depth > self.limits.max_depth:
            raise _LimitExceeded(
                f"nesting deeper than {self.limits.max_depth} levels", self.peek_event().start_mark
            )
        if self._nodes > self.limits.max_nodes:
            raise _LimitExceeded(
                f"more than {self.limits.max_nodes} YAML nodes", self.peek_event().start_mark
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Loader(_Bounded, yaml.SafeLoader):
    """Safe loader with YAML 1.2-style numbers and booleans and bounded depth and size."""


_Loader.yaml_implicit_resolvers = {
    key: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")
    ]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))

try:  # libyaml scans and parses 5-10x faster than PyYAML's pure-Python reader and scanner
    from yaml.cyaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml
    _CParser = None

if _CParser is not None:

    class _FastLoader(_Bounded, _CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """`_Loader` with libyaml's events; composing (and its bounds) stays in Python."""

        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

        def __init__(self, stream):
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

else:
    _FastLoader = None

# Where libyaml and PyYAML's pure-Python scanner disagree (found by differential fuzzing): libyaml
# accepts tabs as separators, `?` keys in flow collections, some `!` tags and a comment glued to a
# block scalar header that PyYAML refuses, and counts columns differently past non-ASCII text.
# Text with none of these reads the same with both (same values, same marks); other text (up to
# _REPARSE_CHARS) takes the pure-Python path, so what loads, and every message and mark, is PyYAML's.
_LIBYAML_DIFFERS = re.compile(r"[\t?!]|[|>][-+0-9]*#")


def _reads_alike(text: str) -> bool:
    return text.isascii() and _LIBYAML_DIFFERS.search(text) is None


class _LimitExceeded(Exception):
    def __init__(self, message: str, mark):
        super().__init__(message)
        self.message = message
        self.yaml_mark = mark


_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


def parse_yaml(text: str, file: str = "<spec>", limits: Limits = DEFAULT_LIMITS) -> Document:
    """Parses YAML text into a `Document`; every problem is a `SpecError` with its position.

    Args:
        text: YAML (or JSON) text.
        file: the name to show in messages.
        limits: size bounds.

    Returns:
        The document, with a mark for every mapping key and list item.
    """
    if "\x00" in text:
        raise SpecError(Problem("not a text file (it contains NUL bytes)", mark=Mark(file, 1, 1)))
    # Past _REPARSE_CHARS, reading fast and bounded matters more than PyYAML's exact dialect.
    alike = len(text) > _REPARSE_CHARS or _reads_alike(text)
    fast = _FastLoader if _FastLoader is not None and alike else None
    try:
        try:
            loader, node = _compose(fast or _Loader, text, limits)
        except (yaml.YAMLError, UnicodeError):
            if fast is None or len(text) > _REPARSE_CHARS:
                raise
            # libyaml words its errors differently: report what the pure-Python parser says
            # (only for text small enough that its 10x slower reading stays quick).
            loader, node = _compose(_Loader, text, limits)
    except _LimitExceeded as e:
        raise SpecError(
            Problem(f"{e.message}: refused (limit).", mark=_mark(file, e.yaml_mark))
        ) from None
    except yaml.MarkedYAMLError as e:
        where = e.problem_mark or e.context_mark
        raise SpecError(Problem(_syntax_message(e, text), mark=_mark(file, where))) from None
    except yaml.reader.ReaderError as e:  # a control character: located by its position
        at = e.position if isinstance(e.position, int) and 0 <= e.position <= len(text) else 0
        line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        what = "unacceptable character"
        if isinstance(e.character, int):
            what += f" #x{e.character:04x}"
        raise SpecError(
            Problem(f"YAML error: {what}: {e.reason}", mark=Mark(file, line, column))
        ) from None
    except yaml.YAMLError as e:
        raise SpecError(Problem(f"YAML error: {e}", mark=Mark(file, 1, 1))) from None
    doc = Document(data=None, file=file)
    if node is None:
        return doc
    converter = _Converter(loader, file, limits, doc.marks)
    doc.data = converter.convert(node, (), 0)
    doc.marks[()] = _mark(file, node.start_mark)
    return doc


_REPARSE_CHARS = 256 * 1024


def _syntax_message(error: yaml.MarkedYAMLError, text: str) -> str:
    """PyYAML's context and problem in one line, with a hint for unquoted `${...}` in `{...}`."""
    what = error.problem or error.context or "invalid YAML"
    start, end = error.context_mark, error.problem_mark
    if error.context and error.problem:
        started = ""
        if start is not None and (
            end is None or (start.line, start.column) != (end.line, end.column)
        ):
            started = f" (started at line {start.line + 1}, column {start.column + 1})"
        joint = ", " if error.problem.startswith("but ") else ": "
        what = f"{error.context}{started}{joint}{error.problem}"
    message = f"YAML syntax error: {what}"
    lines = text.splitlines()
    near = {m.line for m in (start, end) if m is not None and 0 <= m.line < len(lines)}
    if any("${" in lines[n] for n in near):
        message += '. Inside {...} or [...], quote expressions: "${a * 2}"'
    return message


def _compose(base: type, text: str, limits: Limits):
    """(loader, root node) of `text`, read with `base` bound to `limits`."""
    loader = type("_BoundLoader", (base,), {"limits": limits})(text)
    try:
        return loader, loader.get_single_node()
    except (ValueError, OverflowError):  # PyYAML's scanner calls chr() on `"\U00110000"`
        mark = loader.get_mark() if hasattr(loader, "get_mark") else None
        escape = text[mark.index : mark.index + 8] if mark is not None else "..."
        raise yaml.scanner.ScannerError(
            None, None, f"the escape `\\U{escape}` is past the last Unicode character", mark
        ) from None
    finally:
        loader.dispose()


def _mark(file: str, yaml_mark) -> Mark:
    if yaml_mark is None:
        return Mark(file, 1, 1)
    return Mark(file, yaml_mark.line + 1, yaml_mark.column + 1)


class _Converter:
    """Nodes -> Python values, counting alias expansions (billion laughs) and checking tags."""

    def __init__(self, loader, file: str, limits: Limits, marks: dict):
        self.loader = loader
        self.file = file
        self.limits = limits
        self.marks = marks
        self.count = 0

    def fail(self, message: str, node, path) -> SpecError:
        shown = format_path(path) if len(path) <= 12 else format_path(path[:12]) + "..."
        return SpecError(Problem(message, shown, _mark(self.file, node.start_mark)))

    def convert(self, node, path: Path_, depth: int) -> Any:
        self.count += 1
        if self.count > self.limits.max_nodes:
            raise self.fail(
                f"the document expands to more than {self.limits.max_nodes} values "
                "(anchors and aliases included): refused (limit)",
                node,
                path,
            )
        if depth > self.limits.max_depth:
            raise self.fail(
                f"nesting deeper than {self.limits.max_depth} levels: refused (limit)", node, path
            )
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                raise self.fail(
                    f"YAML tag `{node.tag}` is not allowed (specs hold plain data)", node, path
                )
            try:
                return self.loader.construct_object(node, deep=True)
            except yaml.YAMLError as e:
                raise self.fail(f"invalid value: {getattr(e, 'problem', e)}", node, path) from None
            except (ValueError, KeyError):  # `!!int abc`, `!!bool maybe`, an int of 5000 digits
                kind = node.tag.rsplit(":", 1)[-1]
                raise self.fail(
                    f"invalid value: not a valid {kind}. Received: {_clip(node.value)}", node, path
                ) from None
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.fail(
                    f"YAML tag `{node.tag}` is not allowed (specs hold plain data)", node, path
                )
            out = []
            for index, item in enumerate(node.value):
                item_path = (*path, index)
                self.marks[item_path] = _mark(self.file, item.start_mark)
                out.append(self.convert(item, item_path, depth + 1))
            return out
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise self.fail(
                    f"YAML tag `{node.tag}` is not allowed (specs hold plain data)", node, path
                )
            try:
                self.loader.flatten_mapping(node)  # `<<: *anchor` merge keys
            except yaml.YAMLError as e:
                raise self.fail(
                    f"invalid merge key: {getattr(e, 'problem', e)}", node, path
                ) from None
            out = {}
            for key_node, value_node in node.value:
                key = self.convert(key_node, path, depth + 1)
                if isinstance(key, (dict, list)) or key is None:
                    raise self.fail("a mapping key must be a plain word or number", key_node, path)
                if isinstance(key, bool):
                    key = str(key).lower()
                if key in out:
                    raise self.fail(f"duplicate key `{key}` in a mapping", key_node, (*path, key))
                item_path = (*path, key)
                self.marks[item_path] = _mark(self.file, key_node.start_mark)
                out[key] = self.convert(value_node, item_path, depth + 1)
            return out
        raise self.fail("unsupported YAML node", node, path)


def read_text(path: Path, limits: Limits = DEFAULT_LIMITS) -> str:
    """Reads a spec file with a size bound; a located `SpecError` if it cannot be read."""
    file = str(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SpecError(
            Problem(f"cannot read spec file: {e.strerror}", mark=Mark(file, 1, 1))
        ) from None
    if size > limits.max_file_bytes:
        raise SpecError(
            Problem(
                f"file larger than {limits.max_file_bytes} bytes: refused (limit). Received: {size} bytes",
                mark=Mark(file, 1, 1),
            )
        )
    try:  # bounded: a file that grows, or a /proc file that says it is empty, stops at the limit
        with path.open("rb") as handle:
            raw = handle.read(limits.max_file_bytes + 1)
    except OSError as e:
        raise SpecError(
            Problem(f"cannot read spec file: {e.strerror}", mark=Mark(file, 1, 1))
        ) from None
    if len(raw) > limits.max_file_bytes:
        raise SpecError(
            Problem(
                f"file larger than {limits.max_file_bytes} bytes: refused (limit)",
                mark=Mark(file, 1, 1),
            )
        )
    if b"\x00" in raw:
        raise SpecError(Problem("not a text file (it contains NUL bytes)", mark=Mark(file, 1, 1)))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(
            Problem(
                f"not UTF-8 text (byte {e.start}): is this a spec file?", mark=Mark(file, line, 1)
            )
        ) from None


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
        raise FileNotFoundError(f"spec file `{name}` not found (looked for {path})")
    for candidate in (
        Path(name),
        SPECS_DIR / f"{name}.yaml",
        SPECS_DIR / "examples" / f"{name}.yaml",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no zoo spec named `{name}`.{did_you_mean(name, zoo_names())}")


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


def _clip(text: str, limit: int = 60) -> str:
    """`text` for a message, cut to `limit` characters (a 5,000-digit number stays readable)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
