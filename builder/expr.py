"""A small, whitelisted evaluator for `${...}` expressions.

Specs are untrusted: no `eval`. The expression is parsed with `ast` and walked here; only arithmetic,
comparisons, boolean logic, conditional expressions, names from the environment and a fixed set of
functions are allowed. Sizes are bounded so that `${10 ** 10 ** 10}` is refused, not computed.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from collections.abc import Mapping
from typing import Any

from blockspec.builder.text import excerpt

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_NUMBER = 10**15  # far beyond any width, depth or size a network uses

_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_EXPR = re.compile(r"^\$\{(.*)\}$", re.DOTALL)


class ExpressionError(ValueError):
    """An expression is malformed, uses something not allowed, or is too large."""


class Unavailable:
    """A name an expression may not read here, and why (`in_length` of an image)."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return "<unavailable>"


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """The MobileNet rounding: nearest multiple of `divisor`, never more than 10% below `value`."""
    if divisor <= 0:
        raise ExpressionError(
            f"make_divisible needs a positive divisor. Received: divisor={divisor}"
        )
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def _round(value, ndigits=None):
    if ndigits is None:
        return round(value)
    # round(5, -10**7) computes 10**(10**7): bound the digits so that it cannot hang.
    if isinstance(ndigits, bool) or not isinstance(ndigits, int) or abs(ndigits) > 16:
        raise ExpressionError(
            f"round() takes ndigits between -16 and 16. Received: {excerpt(ndigits)}"
        )
    return round(value, ndigits)


FUNCTIONS = {
    "min": min,
    "max": max,
    "round": _round,
    "int": int,
    "float": float,
    "ceil": math.ceil,
    "floor": math.floor,
    "abs": abs,
    "make_divisible": make_divisible,
}

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


SHAPE_NAMES = ("in_channels", "in_height", "in_width", "in_length", "in_shape")


def suggestions(name: str, env: Mapping[str, Any]) -> list[str]:
    """The names to suggest for a misspelt `name`: `in_*` only for a name that starts `in`."""
    return [k for k in env if name.startswith("in") or k not in SHAPE_NAMES]


def reference(value: Any) -> tuple[str, str] | None:
    """('name', n) for `$n`, ('expr', e) for `${e}`, None for anything else."""
    if not isinstance(value, str) or not value.startswith("$"):
        return None
    match = _REF.match(value)
    if match:
        return "name", match.group(1)
    match = _EXPR.match(value)
    if match:
        return "expr", match.group(1)
    return None


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """Evaluates one expression over `env`.

    Args:
        text: the expression, without `${` `}`.
        env: names usable in it (vars, block arguments, `i`).

    Returns:
        The value.

    Example:
        >>> evaluate("max(1, round(3 * depth))", {"depth": 0.5})
        2
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"expression longer than {MAX_EXPRESSION_CHARS} characters. Received: {len(text)} characters"
        )
    try:
        with warnings.catch_warnings():  # `1if x else 2` warns on stderr, past the CLI's report
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"invalid expression syntax ({e.msg}). Received: ${{{text}}}") from e
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise ExpressionError(f"expression has more than {MAX_NODES} parts. Received: {nodes}")
    _screen(tree, text)
    return _Evaluator(env, text).visit(tree.body)


def names_read(text: str) -> set[str]:
    """The names an expression reads, after the checks `evaluate` makes before evaluating.

    Raises `ExpressionError` for what `evaluate` would refuse whatever the names' values (syntax,
    size, a construct not allowed), so that an expression left for later is screened now.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        return set()  # `evaluate` says why
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return set()
    _screen(tree, text)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called


_ALLOWED_NODES = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.UnaryOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.Call, ast.List, ast.Tuple, ast.operator, ast.unaryop, ast.boolop,
    ast.cmpop,
)  # fmt: skip


def _screen(tree: ast.AST, text: str) -> None:
    """Refuses a disallowed construct anywhere before any part is evaluated, naming the worst."""
    nodes = list(ast.walk(tree))
    received = f"Received: ${{{text}}}"
    for node in nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in FUNCTIONS:
                raise ExpressionError(
                    f"calling `{node.func.id}` is not allowed in expressions; allowed functions: "
                    f"{', '.join(FUNCTIONS)}. {received}"
                )
    for node in nodes:
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ExpressionError(f"the name `{node.id}` is not allowed in expressions. {received}")
    for node in nodes:
        if isinstance(node, ast.Attribute):
            raise ExpressionError(
                f"attribute access is not allowed in expressions (`.{node.attr}`). {received}"
            )
    for node in nodes:
        if isinstance(node, ast.Subscript):
            hint = ""
            if isinstance(node.value, ast.Name) and node.value.id == "in_shape":
                hint = (
                    " `in_shape` is passed whole; for one axis use `in_height`, `in_width`, "
                    "`in_channels` or `in_length`."
                )
            raise ExpressionError(f"subscripting is not allowed in expressions.{hint} {received}")
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(
                f"`{type(node).__name__}` is not allowed in expressions. {received}"
            )
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
            raise ExpressionError(
                f"calling the result of an expression is not allowed in expressions. {received}"
            )


class _Evaluator:
    def __init__(self, env: Mapping[str, Any], text: str):
        self.env = env
        self.text = text

    def fail(self, what: str) -> ExpressionError:
        return ExpressionError(f"{what} is not allowed in expressions. Received: ${{{self.text}}}")

    def check(self, value: Any) -> Any:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ExpressionError(
                    f"expression is not a finite number. Received: ${{{self.text}}}"
                )
            if abs(value) > MAX_NUMBER:
                raise ExpressionError(
                    f"expression value exceeds {MAX_NUMBER:.0e}. Received: ${{{self.text}}}"
                )
            return value
        if isinstance(value, (list, tuple)):
            return value
        raise self.fail(f"a value of type {type(value).__name__}")

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float, str, bool)) or node.value is None:
                return self.check(node.value)
            raise self.fail(f"the constant {node.value!r}")
        if isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise self.fail(f"the name `{node.id}`")
            if node.id in self.env:
                value = self.env[node.id]
                if isinstance(value, Unavailable):
                    raise ExpressionError(f"{value.reason}. Received: ${{{self.text}}}")
                return value
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            from blockspec.builder.errors import did_you_mean

            hint = did_you_mean(node.id, suggestions(node.id, self.env))
            raise ExpressionError(
                f"unknown name `{node.id}` in expression.{hint} Received: ${{{self.text}}}"
            )
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.visit(node.left), self.visit(node.right)
            self.number(left), self.number(right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > MAX_NUMBER):
                raise ExpressionError(
                    f"exponent too large (at most 64). Received: ${{{self.text}}}"
                )
            if isinstance(node.op, ast.Mult) and abs(left) * abs(right) > MAX_NUMBER:
                raise ExpressionError(
                    f"expression value exceeds {MAX_NUMBER:.0e}. Received: ${{{self.text}}}"
                )
            try:
                return self.check(_BINARY[type(node.op)](left, right))
            except ZeroDivisionError as e:
                raise ExpressionError(f"division by zero. Received: ${{{self.text}}}") from e
            except OverflowError as e:
                raise ExpressionError(f"number too large. Received: ${{{self.text}}}") from e
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            operand = self.visit(node.operand)
            if not isinstance(node.op, ast.Not):
                self.number(operand)  # `-'a'` is a TypeError in Python
            return self.check(_UNARY[type(node.op)](operand))
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                value = True
                for item in node.values:
                    value = self.visit(item)
                    if not value:
                        return value
                return value
            value = False
            for item in node.values:
                value = self.visit(item)
                if value:
                    return value
            return value
        if isinstance(node, ast.Compare):
            left = self.visit(node.left)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _COMPARE:
                    raise self.fail(f"the operator {type(op).__name__}")
                right = self.visit(comparator)
                try:
                    if not _COMPARE[type(op)](left, right):
                        return False
                except TypeError as e:
                    raise ExpressionError(
                        f"cannot compare {excerpt(left)} and {excerpt(right)}. Received: ${{{self.text}}}"
                    ) from e
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else "this"
                raise ExpressionError(
                    f"calling `{name}` is not allowed in expressions; allowed functions: "
                    f"{', '.join(FUNCTIONS)}. Received: ${{{self.text}}}"
                )
            if node.keywords:
                raise self.fail("a keyword argument")
            args = [self.visit(a) for a in node.args]
            try:
                return self.check(FUNCTIONS[node.func.id](*args))
            except ExpressionError:
                raise
            except (TypeError, ValueError, OverflowError) as e:
                raise ExpressionError(f"{node.func.id}(): {e}. Received: ${{{self.text}}}") from e
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.visit(e) for e in node.elts]
        if isinstance(node, ast.Attribute):
            raise self.fail("attribute access")
        if isinstance(node, ast.Subscript):
            raise self.fail("subscripting")
        raise self.fail(f"`{type(node).__name__}`")

    def number(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(
                f"arithmetic on a non-number ({excerpt(value)}). Received: ${{{self.text}}}"
            )


class Expansion:
    """Measures values as if written out, references included, as the resolver builds them.

    `$a` puts the very object of var `a` into a list, so twelve lines of vars can describe 10^12
    values while holding a hundred. Each list or mapping is measured once, when it is made, from
    the sizes of its items (remembered by identity), so measuring costs as much as building; a
    value past `max_nodes` values or `max_depth` levels is refused before anything walks it.

    Example:
        >>> sizes = Expansion(max_nodes=100, max_depth=8)
        >>> a = [1] * 10
        >>> sizes.problem([a] * 5)      # 5 + 5 * 10 values: within the limit
        >>> sizes.problem([[a] * 10] * 10)[:40]
        'the value expands to more than 100 value'
    """

    def __init__(self, max_nodes: int, max_depth: int):
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self._sizes: dict[int, tuple[Any, int, int]] = {}  # id -> (value kept alive, nodes, depth)

    def measure(self, value: Any) -> tuple[int, int]:
        """(values, nesting depth) of `value` written out; a scalar is (1, 0).

        Iterative: a value nested thousands deep is measured without recursion. Counts stop
        growing past the limit (`max_nodes + 1`).
        """
        if not isinstance(value, (list, tuple, dict)):
            return 1, 0
        stack, open_ = [(value, False)], set()
        while stack:
            item, done = stack.pop()
            if id(item) in self._sizes:
                continue
            if not done and id(item) in open_:  # a value that holds itself: endless when written
                self._sizes[id(item)] = (item, self.max_nodes + 1, self.max_depth + 1)
                continue
            children = [
                c
                for c in (item.values() if isinstance(item, dict) else item)
                if isinstance(c, (list, tuple, dict))
            ]
            if not done:
                open_.add(id(item))
                stack.append((item, True))
                stack += [(c, False) for c in children if id(c) not in self._sizes]
                continue
            nodes, depth = 1 + len(item) - len(children), 1
            for child in children:
                _, child_nodes, child_depth = self._sizes[id(child)]
                nodes += child_nodes
                depth = max(depth, child_depth + 1)
            self._sizes[id(item)] = (item, min(nodes, self.max_nodes + 1), depth)
        _, nodes, depth = self._sizes[id(value)]
        return nodes, depth

    def problem(self, value: Any) -> str | None:
        """Why `value` is refused (too many values, or nested too deep), or None."""
        nodes, depth = self.measure(value)
        if depth > self.max_depth:
            return (
                f"the value nests deeper than {self.max_depth} levels (vars and references "
                f"included): refused (limit)"
            )
        if nodes > self.max_nodes:
            return (
                f"the value expands to more than {self.max_nodes} values (vars and references "
                f"included): refused (limit)"
            )
        return None
