"""Reading YAML: text -> plain Python values with the line and column of every node.

Safe by construction: PyYAML's safe composer builds the node tree and this module turns nodes into
dicts, lists and scalars itself, so no tag can construct an object. Sizes and depths are bounded
(`Limits`); YAML merge keys (`<<: *anchor`) merge under the mapping's own keys. `builder/load.py`
follows `extends` and `imports` and applies `--set` on top. Nothing here imports Keras.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blockspec.builder.errors import Mark, Problem, SpecError

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

    def counted(self, node, path: Path_) -> None:
        """One more value of the document (an alias or a merge key counts again): bounded."""
        self.count += 1
        if self.count > self.limits.max_nodes:
            raise self.fail(
                f"the document expands to more than {self.limits.max_nodes} values "
                "(anchors and aliases included): refused (limit)",
                node,
                path,
            )

    def convert(self, node, path: Path_, depth: int) -> Any:
        self.counted(node, path)
        if depth > self.limits.max_depth:
            raise self.fail(
                f"nesting deeper than {self.limits.max_depth} levels: refused (limit)", node, path
            )
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:value":  # a plain `=`: PyYAML reads it as text
                return node.value
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
            return self.mapping(node, path, depth)
        raise self.fail("unsupported YAML node", node, path)

    def mapping(self, node, path: Path_, depth: int) -> dict:
        """A mapping; merge keys (`<<: *anchor`) give keys that the mapping's own keys override.

        YAML's merge: a key of the mapping itself wins over a merged one, and of several merged
        mappings (`<<: [*a, *b]`) the first that has the key wins. Only a key written twice in
        the mapping itself is a duplicate.
        """
        merged, own = self.merged_pairs(node, path, depth), _own_pairs(node)
        out: dict = {}
        written: set = set()
        for key_node, value_node, mine in [(*p, False) for p in merged] + [(*p, True) for p in own]:
            key = self.convert(key_node, path, depth + 1)
            if isinstance(key, (dict, list)) or key is None:
                raise self.fail("a mapping key must be a plain word or number", key_node, path)
            if isinstance(key, bool):
                key = str(key).lower()
            if key in written and mine:
                raise self.fail(f"duplicate key `{key}` in a mapping", key_node, (*path, key))
            if key in out and not mine:
                continue  # merged twice (`<<: [*a, *b]`): the first mapping that has it wins
            item_path = (*path, key)
            if key in out:  # a merged key, overridden: forget the marks inside its value
                depth_ = len(item_path)
                for stale in [p for p in self.marks if p[:depth_] == item_path]:
                    del self.marks[stale]
            if mine:
                written.add(key)
            self.marks[item_path] = _mark(self.file, key_node.start_mark)
            out[key] = self.convert(value_node, item_path, depth + 1)
        return out

    def merged_pairs(self, node, path: Path_, depth: int) -> list:
        """The (key, value) pairs that `node`'s merge keys bring in, in priority order.

        Written here rather than taken from PyYAML's `flatten_mapping`, whose order of merged
        pairs changed between releases (6.0.2 and 6.0.4 disagree on `<<: [*a, *b]`): each merged
        mapping gives its own pairs, then those it merges itself; of several mappings the first
        comes first. Counted against the document's size limit (merges can nest exponentially).
        """
        if depth > self.limits.max_depth:
            raise self.fail(
                f"merge keys nest deeper than {self.limits.max_depth} levels: refused (limit)",
                node,
                path,
            )
        pairs: list = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise self.fail(
                        "invalid merge key: `<<` takes a mapping or a list of mappings",
                        source,
                        path,
                    )
                for pair in _own_pairs(source) + self.merged_pairs(source, path, depth + 1):
                    self.counted(source, path)
                    pairs.append(pair)
        return pairs


_MERGE = "tag:yaml.org,2002:merge"


def _own_pairs(node) -> list:
    """A mapping node's own (key, value) pairs: those not under a merge key."""
    return [(k, v) for k, v in node.value if k.tag != _MERGE]


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


def _clip(text: str, limit: int = 60) -> str:
    """`text` for a message, cut to `limit` characters (a 5,000-digit number stays readable)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
