"""Bounded text of values for messages: a spec's value may be huge, a message never is."""

from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple = 4, 8, 6, 8
_REPR.maxset, _REPR.maxfrozenset, _REPR.maxdeque, _REPR.maxarray = 8, 8, 8, 8
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 120, 60, 60


def excerpt(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, without ever writing out the whole value.

    Lists, mappings and strings are cut while the text is made (`reprlib`), so a value of 10^8
    items costs as much as one of ten.

    Example:
        >>> excerpt(list(range(10**6)), 30)
        '[0, 1, 2, 3, 4, 5, 6, 7, ...]'
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
