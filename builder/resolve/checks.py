"""Small checks that collect `(path, message)` problems: keys, numbers, choices, one-key mappings.

Used by the `train` rules; paths are dotted and relative to the section (`data.source`).
"""

from __future__ import annotations

import math
from typing import Any

from blockspec.builder.errors import close_matches


def suggest(word: Any, candidates) -> str:
    """`; did you mean `x`?` for the closest candidate, else `.` (so a sentence always ends)."""
    close = close_matches(word, candidates, n=1)
    return f"; did you mean `{close[0]}`?" if close else "."


def unknown_choice(what: str, value: Any, allowed, key: str) -> str:
    """`unknown X `v`; did you mean `w`? Received: key='v'` (the choices when nothing is close)."""
    hint = suggest(value, allowed)
    if hint == ".":
        hint = f". Expected one of: {', '.join(str(a) for a in allowed)}."
    return f"unknown {what} `{value}`{hint} Received: {key}={value!r}"


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def unknown_keys(problems, prefix: str, mapping: dict, allowed, what: str) -> None:
    for key in mapping:
        if key not in allowed:
            problems.append(
                (
                    join(prefix, str(key)),
                    f"unknown {what} `{key}`{suggest(key, allowed)} "
                    f"Allowed: {', '.join(sorted(allowed))}.",
                )
            )


def positive_int(problems, mapping: dict, key: str, prefix: str = "") -> None:
    if key in mapping and (not is_int(mapping[key]) or mapping[key] < 1):
        problems.append(
            (
                join(prefix, key),
                f"`{key}` must be a positive integer. Received: {key}={mapping[key]!r}",
            )
        )


def boolean(problems, mapping: dict, key: str, prefix: str = "") -> None:
    if key in mapping and not isinstance(mapping[key], bool):
        problems.append(
            (join(prefix, key), f"`{key}` must be true or false. Received: {key}={mapping[key]!r}")
        )


def number(
    problems,
    mapping: dict,
    key: str,
    prefix: str = "",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if key not in mapping:
        return
    value = mapping[key]
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        bound = " and ".join(b for b in (lo, hi) if b)
        problems.append(
            (
                join(prefix, key),
                f"`{key}` must be a number{' ' + bound if bound else ''}. Received: {key}={value!r}",
            )
        )


def choice(problems, mapping: dict, key: str, allowed, what: str, prefix: str = "") -> None:
    if key in mapping and mapping[key] not in allowed:
        value = mapping[key]
        problems.append(
            (
                join(prefix, key),
                unknown_choice(what, value, allowed, key),
            )
        )


def size_pair(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(is_int(v) and v > 0 for v in value)
    )


def one_key(problems, path: str, value: Any, what: str) -> tuple[str, Any] | None:
    """`{name: args}` with exactly one key, or a problem."""
    if isinstance(value, str):
        return value, {}
    if not isinstance(value, dict) or len(value) != 1:
        problems.append(
            (path, f"{what} must be a mapping with exactly one key. Received: {path}={value!r}")
        )
        return None
    name, args = next(iter(value.items()))
    return str(name), args
