"""libyaml (the loader's fast path) reads specs exactly as PyYAML's pure-Python scanner does.

The loader takes libyaml's events when the text has none of the constructs the two disagree on
(`builder.yaml_read._reads_alike`); otherwise, and for every message, the pure-Python reader decides.
"""

from __future__ import annotations

import random

import pytest

from blockspec.builder import yaml_read as load
from blockspec.builder.errors import SpecError
from blockspec.builder.load import SPECS_DIR, parse_yaml


def _read(text: str, fast: bool):
    saved = load._FastLoader
    if not fast:
        load._FastLoader = None
    try:
        doc = parse_yaml(text, "f.yaml")
        return "ok", doc.data, doc.marks
    except SpecError as e:
        return "error", str(e)
    finally:
        load._FastLoader = saved


ZOO = sorted([*SPECS_DIR.glob("*.yaml"), *SPECS_DIR.glob("examples/*.yaml")])

# Each is read differently by libyaml and by PyYAML's pure-Python scanner.
DISAGREE = [
    "spec: 1\ninput:\t[8]\n",  # a tab after `:` (PyYAML: a syntax error)
    "a: {b: 1 ?}\n",  # `?` ending a flow scalar
    "a: [!, 2]\n",  # an empty tag
    "a: >#c\n  text\n",  # a comment glued to a block scalar header
    "a: {b: 1}\n\ufeff",  # a byte-order mark at the end
    "a: [\ufeff1, {b: 2}]\n",  # columns after a byte-order mark inside the text
]


@pytest.mark.skipif(load._FastLoader is None, reason="PyYAML built without libyaml")
@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_zoo_specs_read_the_same_on_both_paths(path):
    text = path.read_text()
    assert load._reads_alike(text), f"{path.name} would not take the fast path"
    assert _read(text, fast=True) == _read(text, fast=False)


@pytest.mark.parametrize("text", DISAGREE)
def test_text_libyaml_reads_differently_takes_the_pure_python_path(text):
    assert not load._reads_alike(text)
    assert _read(text, fast=True) == _read(text, fast=False)


def test_mutated_specs_read_the_same_on_both_paths():
    """A seeded differential fuzz: characters inserted, deleted and replaced in real specs."""
    rng = random.Random(20)
    alphabet = list(":-[]{},#&*|>'\"%@` \n\r?!\t.\\$<=+~_/^\x0b\x1b") + [
        "---", "...", "&x ", "*x", "<<: ", "%YAML 1.1\n", "|+\n", ">-\n", "\n- ", ": ", "#c\n",
        "0x1f", "1:20", ".inf", "~", "\u00e9",
    ]  # fmt: skip
    seeds = [p.read_text() for p in ZOO[:8]]
    compared = 0
    for _ in range(400):
        chars = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(chars) + 1)
            op = rng.random()
            if op < 0.3 and chars:
                del chars[min(at, len(chars) - 1)]
            elif op < 0.8:
                chars.insert(at, rng.choice(alphabet))
            elif chars:
                chars[min(at, len(chars) - 1)] = rng.choice(alphabet)
        text = "".join(chars)
        compared += load._reads_alike(text)
        assert _read(text, fast=True) == _read(text, fast=False), repr(text)
    assert compared > 100  # most mutations still take the fast path
