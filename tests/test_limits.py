"""Hostile expansions: values built from references count against the limits as they are built.

Twelve lines of vars can describe 10^12 values (each var a list of ten references to the one
before), and 3,000 vars can nest a value 3,000 deep. Both are refused while the vars are read,
at the var that crosses the limit, in memory proportional to the spec's text; a message shows a
bounded excerpt of a value, never the value. No test here asserts a time: each asserts the
refusal, its place and the memory it took.
"""

from __future__ import annotations

import tracemalloc

import pytest

from blockspec.builder.errors import SpecError
from blockspec.builder.expr import Expansion, ExpressionError, evaluate
from blockspec.builder.load import Limits
from blockspec.builder.resolve import resolve_spec
from blockspec.builder.text import excerpt

HEAD = "spec: 1\nname: hostile\ninput: [4]\n"


def _fanout(levels: int, width: int = 10) -> str:
    """vars: v0 a list of `width` numbers; v{k} a list of `width` references to v{k-1}."""
    lines = [HEAD.rstrip(), "vars:", f"  v0: [{', '.join(['1'] * width)}]"]
    for k in range(1, levels):
        lines.append(f"  v{k}: [{', '.join([f'$v{k - 1}'] * width)}]")
    lines += ["network: [dense: 2]"]
    return "\n".join(lines) + "\n"


def _refused(text: str, tmp_path, limits: Limits | None = None) -> tuple[SpecError, int]:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as info:
            resolve_spec(str(path), limits=limits or Limits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, peak


def test_vars_that_expand_to_a_trillion_values_are_refused_at_the_var_that_crosses(tmp_path):
    error, peak = _refused(_fanout(12), tmp_path)  # 10^12 values written out
    (problem,) = error.problems
    # v4 holds 10^5 values: the first past 50,000.
    assert problem.path == "vars.v4"
    assert problem.mark is not None and problem.mark.line == 9
    assert "expands to more than 50000 values (vars and references included)" in str(problem)
    assert peak < 20 * 1024 * 1024, f"refusing took {peak:,} bytes"


def test_the_expansion_limit_is_the_node_limit(tmp_path):
    error, _ = _refused(_fanout(4), tmp_path, Limits(max_nodes=500))  # v2 holds 1,000 values
    assert [p.path for p in error.problems] == ["vars.v2"]
    assert "more than 500 values" in str(error)
    resolve_spec(_fanout_doc(4), limits=Limits(max_nodes=20_000))  # 10^4 values: allowed


def _fanout_doc(levels: int):
    from blockspec.builder.load import parse_yaml

    return parse_yaml(_fanout(levels))


def test_step_arguments_built_from_references_are_bounded_too(tmp_path):
    text = (
        HEAD
        + "vars:\n  a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
        + "network:\n  - dense: {units: 2, kernel_initializer: [$a, $a, $a, $a, $a, $a]}\n"
    )
    error, _ = _refused(text, tmp_path, Limits(max_nodes=50))
    (problem,) = error.problems
    assert problem.path == "network[0].dense.kernel_initializer"
    assert "expands to more than 50 values" in problem.message


@pytest.mark.parametrize("form", ["[$a{prev}]", "${{[a{prev}]}}"])
def test_three_thousand_nested_references_are_refused_not_a_recursion_error(tmp_path, form):
    lines = [HEAD.rstrip(), "vars:", "  a0: 1"]
    lines += [f"  a{k}: " + form.format(prev=k - 1) for k in range(1, 3000)]
    lines += ["network: [dense: 2]"]
    error, peak = _refused("\n".join(lines) + "\n", tmp_path)
    (problem,) = error.problems  # one refusal: the vars built on it are its echo
    assert problem.path == "vars.a65"  # a64 nests 64 deep: the limit
    assert "nests deeper than 64 levels" in problem.message
    assert peak < 20 * 1024 * 1024


def test_a_value_that_holds_itself_is_refused_not_walked():
    sizes = Expansion(max_nodes=1000, max_depth=10)
    loop: list = []
    loop.append(loop)
    assert "nests deeper than 10 levels" in sizes.problem(loop)


def test_measuring_is_linear_in_what_was_built():
    sizes = Expansion(max_nodes=10**15, max_depth=64)
    value: list = [0] * 10
    for _ in range(12):  # 10^12 values written out, 120 list slots in memory
        value = [value] * 10
        assert sizes.problem(value) is None
    nodes, depth = sizes.measure(value)
    assert depth == 13 and nodes > 10**12


def test_messages_show_an_excerpt_of_a_huge_value(tmp_path):
    # 40,000 values: within the limit, but a message must not print them.
    text = (
        HEAD
        + "vars:\n  a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]\n"
        + "  b: [$a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a, $a]\n"
        + "  c: [$b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b, $b]\n"
        + "  d: ${c + 1}\n"
        + "network:\n  - dense: {units: $c}\n"
    )
    error, _ = _refused(text, tmp_path)
    assert len(error.problems) == 2
    assert all(len(p.message) < 400 for p in error.problems), str(error)
    assert "arithmetic on a non-number ([[" in str(error)
    assert "`units` expected an integer. Received: units=[[" in str(error)


def test_expression_errors_show_excerpts():
    big = list(range(100_000))
    for text in ("x + 1", "x < 'a'", "round(1, x)"):
        with pytest.raises(ExpressionError) as info:
            evaluate(text, {"x": big})
        assert len(str(info.value)) < 300, text


def test_excerpt_is_bounded_for_any_value():
    deep: list = [1]
    for _ in range(3000):
        deep = [deep]
    assert len(excerpt(deep)) <= 80
    assert len(excerpt("x" * 10**7, 50)) == 50
    assert excerpt({"a": [1, 2]}) == "{'a': [1, 2]}"
