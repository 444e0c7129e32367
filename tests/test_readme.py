"""The README says true things: its limits are the defaults, its example spec loads, CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from blockspec.builder import resolve_spec
from blockspec.builder.expr import MAX_EXPRESSION_CHARS, MAX_NODES
from blockspec.builder.load import Limits

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_limits_table_matches_the_defaults():
    section = README.split("## Limits", 1)[1]
    rows = dict(re.findall(r"^\| `(\w+)`[^|]*\| ([^|]+) \|$", section, flags=re.M))
    defaults = Limits()
    assert set(rows) == set(defaults.__dataclass_fields__)
    for name, text in rows.items():
        text = text.strip()
        value = int(text.split()[0]) * 1024 * 1024 if "MiB" in text else int(text.replace(",", ""))
        assert value == getattr(defaults, name), name
    assert f"at most {MAX_EXPRESSION_CHARS} characters, {MAX_NODES} syntax nodes" in section


def test_first_spec_example_builds(tmp_path):
    from blockspec.builder import build_model

    block = README.split("## A first spec", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    path = tmp_path / "tiny.yaml"
    path.write_text(block)
    assert yaml.safe_load(block)["name"] == "tiny_inception"
    model = build_model(str(path))
    assert model.output_names == ["main"]


def test_the_two_commands_and_ci():
    commands = re.findall(r"```bash\n(.+?)\n```", README.split("## A first spec", 1)[0])
    assert commands[0] == "python -m pip install -e . && blockspec train digits_googlenet"
    assert commands[1] == 'python -m pip install -e ".[dev]" && python -m pytest -n 2'
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
    assert resolve_spec("digits_googlenet").train["data"]["source"] == "digits"  # offline
