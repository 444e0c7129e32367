"""`diff`, `init`, `render` and `summary --by-block` on the command line."""

from __future__ import annotations

import pytest

from blockspec import cli
from blockspec.builder.resolve import resolve_spec
from blockspec.views.diff import diff_specs
from blockspec.views.render import render
from blockspec.views.scaffold import scaffold

SMALL = """\
spec: 1
name: small
input: [16, 16, 3]
defaults:
  conv: {padding: same, activation: relu}
blocks:
  pair:
    args: {width: null}
    body:
      - conv: {filters: $width, kernel: 3}
      - conv: {filters: $width, kernel: 3}
network:
  - pair: [8]
    name: stage1
  - max_pool: 2
  - residual: [conv: {filters: 8, kernel: 3}]
    name: res
    repeat: 2
  - global_avg_pool: {}
  - dense: 10
    name: main
outputs:
  main: {activation: softmax, loss: sparse_categorical_crossentropy}
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return str(path)


# ----------------------------------------------------------------------------- diff


def test_diff_names_each_change_by_step(small, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(tmp_path)
    small = "small.yaml"
    rc = cli.main(
        ["diff", small, small, "--set-b", "defaults.conv.factorize=stack3"]
        + ["--set-b", "network.0.pair=[16]", "--set-b", "network.2.repeat=3"]
    )
    out = capsys.readouterr().out
    assert rc == 1  # they differ, as diff(1) says
    assert "~ stage1.width: 8 -> 16" in out
    assert "~ stage1_conv_1.filters: 8 -> 16" in out
    assert "~ stage1_conv_1.factorize: none -> stack3" in out
    assert "+ res_3: residual" in out
    assert "only in B (+)" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_diff_of_the_same_spec_says_so_and_exits_0(small, capsys):
    assert cli.main(["diff", small, small]) == 0
    assert "no differences" in capsys.readouterr().out


def test_diff_unified_shows_the_resolved_yaml(small, capsys):
    assert cli.main(["diff", small, small, "--set-b", "network.4.dense=12", "--unified"]) == 1
    out = capsys.readouterr().out
    assert "@@" in out
    assert "-- dense: {activation: null, use_bias: true, units: 10}" in out
    assert "+- dense: {activation: null, use_bias: true, units: 12}" in out


def test_diff_between_zoo_specs_lists_added_steps():
    d = diff_specs(resolve_spec("googlenet"), resolve_spec("digits_googlenet"))
    kinds = d.counts()
    assert kinds["removed"] and kinds["added"] and kinds["changed"]
    assert any(c.path == "input" for c in d.changes)


# ----------------------------------------------------------------------------- init


def test_init_writes_a_spec_that_validates(tmp_path, capsys):
    target = tmp_path / "my_net.yaml"
    assert cli.main(["init", str(target)]) == 0
    text = target.read_text()
    assert text.startswith("# my_net") and "train_only: true" in text and "blocks:" in text
    spec = resolve_spec(str(target))
    assert spec.name == "my_net"
    assert [o.name for o in spec.outputs] == ["main", "aux"]
    assert spec.output("aux").train_only
    assert cli.main(["validate", str(target)]) == 0
    # A second init does not overwrite it.
    assert cli.main(["init", str(target)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["init", str(target), "--force"]) == 0


def test_init_from_a_zoo_spec_extends_it(tmp_path):
    target = tmp_path / "my_googlenet.yaml"
    assert cli.main(["init", str(target), "--from", "googlenet"]) == 0
    text = target.read_text()
    assert "extends: googlenet" in text
    spec = resolve_spec(str(target))
    assert spec.name == "my_googlenet"
    assert len(spec.network) == len(resolve_spec("googlenet").network)


def test_init_from_a_file_uses_a_relative_path(tmp_path, small):
    (tmp_path / "sub").mkdir()
    text = scaffold(str(tmp_path / "sub" / "child.yaml"), small)
    assert "extends: ../small.yaml" in text
    (tmp_path / "sub" / "child.yaml").write_text(text)
    assert resolve_spec(str(tmp_path / "sub" / "child.yaml")).name == "child"


def test_init_to_stdout_and_unknown_parent(capsys):
    assert cli.main(["init", "-"]) == 0
    assert "spec: 1" in capsys.readouterr().out
    assert cli.main(["init", "-", "--from", "resnet_9000"]) == 2
    assert "no zoo spec named `resnet_9000`" in capsys.readouterr().err


# ----------------------------------------------------------------------------- render


def test_render_is_a_spec_that_renders_to_itself(small, tmp_path, capsys):
    assert cli.main(["render", small]) == 0
    first = capsys.readouterr().out
    again = tmp_path / "again.yaml"
    again.write_text(first)
    assert render(resolve_spec(str(again))) == first
    assert "res_2" in first and "factorize: none" in first  # repeats unrolled, defaults shown


# ----------------------------------------------------------------------------- summary --by-block


def test_summary_by_block_groups_parameters(small, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main(["summary", small, "--by-block"]) == 0
    out = capsys.readouterr().out
    assert "small: by block" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 6}
    assert {"pair", "residual", "dense"} <= set(rows)
    assert "user block" in rows["pair"] and "combinator" in rows["residual"]
    assert all(len(line) <= 80 for line in out.splitlines())


def test_by_block_adds_up_to_the_model(small):
    from blockspec.builder.compile import compile_spec
    from blockspec.views.summary import by_block, stats

    built = compile_spec(resolve_spec(small))
    groups = by_block(built)
    assert sum(g.params for g in groups) == stats(built).params
    residual = next(g for g in groups if g.name == "residual")
    assert residual.count == 2 and residual.params == 2 * (3 * 3 * 8 * 8 + 8)


def test_schema_diff_init_and_plain_plot_never_import_tensorflow(small, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, cli\n"
        f"assert cli.main(['schema', '-o', {str(tmp_path / 's.json')!r}]) == 0\n"
        f"assert cli.main(['diff', 'googlenet', {small!r}]) == 1\n"
        f"assert cli.main(['init', {str(tmp_path / 'n.yaml')!r}]) == 0\n"
        f"assert cli.main(['plot', {small!r}, '-o', {str(tmp_path / 'n.dot')!r}]) == 0\n"
        "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'clean')\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("clean")


def test_diff_shows_search_spaces(capsys):
    # The dropout's space has the constant's value as its default: only the space differs.
    rc = cli.main(
        [
            "diff",
            "digits_tune",
            "digits_tune",
            "--set-b",
            "network.5.dropout=0.0",
            "--set-b",
            "vars.width={tune: int, min: 8, max: 64, step: 8, default: 8}",
        ]
    )
    assert rc == 1
    out = capsys.readouterr().out
    assert "- dropout.rate (search space): tune float 0..0.4 step 0.2" in out
    assert "~ vars.width (search space): tune int 8..32 step 8 -> tune int 8..64 step 8" in out
