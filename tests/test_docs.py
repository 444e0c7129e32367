"""The docs say what the code does: every YAML example loads, the reference is current, pictures and
links exist, and every command's help has an example and fits a terminal of 80 columns."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

from blockspec import cli
from blockspec.builder import registry
from blockspec.builder.load import zoo_names
from blockspec.builder.resolve import resolve_spec
from blockspec.views.render import render
from blockspec.views.scaffold import scaffold

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def blocks(page: Path, language: str) -> list[tuple[int, str]]:
    """(line, text) of each fenced block of `language` in `page`."""
    text = page.read_text()
    return [
        (text[: m.start()].count("\n") + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == language
    ]


def _is_fragment(block: str) -> bool:
    return block.lstrip().startswith("# fragment")


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- YAML examples


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_yaml_example_loads(page: Path, tmp_path):
    """Whole specs resolve. `# file: NAME` saves a block as NAME, for later `extends: NAME`."""
    examples = [(line, b) for line, b in blocks(page, "yaml") if not _is_fragment(b)]
    for index, (line, block) in enumerate(examples):
        named = re.match(r"\s*# file: (\S+)", block)
        path = tmp_path / (named.group(1) if named else f"example_{index}.yaml")
        path.write_text(block)
        try:
            resolve_spec(str(path))
        except Exception as e:  # report which example, then fail
            pytest.fail(f"{page.name}:{line}: the example does not load:\n{e}")


def test_the_tutorial_spec_is_what_init_writes(tmp_path):
    tutorial = dict(
        (re.match(r"\s*# file: (\S+)", b).group(1), b)
        for _, b in blocks(DOCS / "tutorial.md", "yaml")
        if b.lstrip().startswith("# file:")
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours = tmp_path / "a" / "my_net.yaml"
    ours.write_text(tutorial["my_net.yaml"])
    theirs = tmp_path / "b" / "my_net.yaml"
    theirs.write_text(scaffold(str(theirs)))
    assert render(resolve_spec(str(ours))) == render(resolve_spec(str(theirs)))


def test_the_python_block_example_registers_and_builds(tmp_path):
    page = DOCS / "adding_blocks.md"
    code = blocks(page, "python")[0][1]
    example = next(b for _, b in blocks(page, "yaml") if "squeeze_excite" in b)
    assert "squeeze_excite" not in registry.all_types()
    try:
        exec(compile(code, str(page), "exec"), {"__name__": "docs_example"})
        assert "squeeze_excite" in registry.all_types()
        path = tmp_path / "se_net.yaml"
        path.write_text(example)
        from blockspec.builder.compile import compile_spec

        model = compile_spec(resolve_spec(str(path))).model
        names = {layer.name for layer in model.layers}
        assert {"se1_squeeze", "se1_reduce", "se1_expand", "se1_scale"} <= names
    finally:
        registry._REGISTRY.pop("squeeze_excite", None)  # leave the registry as the tests found it


# ----------------------------------------------------------------------------- generated files


def test_reference_is_current():
    generated = _load_tool("gen_reference").generate()
    current = (DOCS / "reference.md").read_text()
    assert current == generated, "docs/reference.md is stale: run python tools/gen_reference.py"


def test_reference_lists_every_step_type():
    text = (DOCS / "reference.md").read_text()
    for name in registry.all_types():
        assert f"### `{name}`" in text, name


def test_every_zoo_spec_has_its_picture():
    missing = [n for n in zoo_names() if not (DOCS / "pictures" / f"{n}.svg").is_file()]
    assert not missing, f"run python tools/gen_pictures.py {' '.join(missing)}"


# Every page a reader of the repository sees; the docs never send them outside it.
READ = [*PAGES, ROOT / "README.md", ROOT / "BENCHMARKS.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)|<(\w+://[^>]+)>|\b(https?://\S+|www\.\S+)")


@pytest.mark.parametrize("page", READ, ids=lambda p: p.name)
def test_links_and_pictures_exist_and_stay_in_the_repository(page: Path):
    """Plain mentions in code blocks are allowed; a link or a bare address outside them is not."""
    text = FENCE.sub("", page.read_text())
    for match in LINK.finditer(text):
        target = match.group(1) or ""
        assert (
            not re.match(r"[a-z]+:|www\.", target) and not match.group(2) and not match.group(3)
        ), f"{page.name} links outside the repository: {match.group(0)}"
        if target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"
        assert path.is_relative_to(ROOT), f"{page.name} links to {target}, outside the repository"


def test_anchors_into_the_reference_exist():
    """`reference.md#training-train`: GitHub's anchor of the heading, which must exist."""
    headings = re.findall(r"^#+ (.+)$", (DOCS / "reference.md").read_text(), flags=re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    for page in READ:
        for anchor in re.findall(r"reference\.md#([\w-]+)", page.read_text()):
            assert anchor in anchors, f"{page.name}: no section #{anchor} in reference.md"


def test_the_reference_documents_train_and_tune_with_defaults():
    from blockspec.builder.resolve import TUNE_KEYS
    from blockspec.training.config import DATA_KEYS, SOURCES, TRAIN_DEFAULTS

    text = (DOCS / "reference.md").read_text()
    train = text.split("## Training (`train`)", 1)[1].split("\n## ", 1)[0]
    for key in TRAIN_DEFAULTS:
        assert f"| `{key}` |" in train, key
    assert "| `batch_size` | `32` |" in train and "| `epochs` | `10` |" in train
    for source in SOURCES:
        assert f"| `{source}` |" in train, source
    for key in {k for keys in DATA_KEYS.values() for k in keys}:
        assert f"`{key}`" in train, key
    tune = text.split("## Tuning (`tune`)", 1)[1].split("\n## ", 1)[0]
    for key in TUNE_KEYS:
        assert f"| `{key}` |" in tune, key


# ----------------------------------------------------------------------------- help texts


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help_has_an_example_and_fits_80_columns(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.build_parser().parse_args([command, "--help"] if command else ["--help"])
    text = out.getvalue()
    assert "Example: blockspec" in text
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long
