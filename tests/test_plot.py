"""`blockspec plot`: pictures of branches, merges and aux heads; a clear word when `dot` is missing."""

from __future__ import annotations

import re
import shutil

import pytest

from blockspec import cli
from blockspec.builder.resolve import resolve_spec
from blockspec.views.plot import GraphvizMissing, plot_graph, write_plot

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="graphviz's `dot` is not installed (.ci/run installs it)"
)

SPEC = """\
spec: 1
name: branchy
input: [16, 16, 3]
defaults:
  conv: {padding: same, activation: relu}
blocks:
  twin:
    args: {width: 8}
    body:
      - parallel:
          branches:
            - [conv: {filters: $width, kernel: 1}]
            - [conv: {filters: $width, kernel: 3}, conv: {filters: $width, kernel: 3}]
network:
  - conv_bn: {filters: 8, strides: 2}
    name: stem
  - twin: {width: 4}
    name: mix
  - residual: [conv: {filters: 8, kernel: 3}]
    name: res
  - global_avg_pool: {}
    from: mix
    name: side_pool
  - dense: 10
    name: aux
  - global_avg_pool: {}
    from: res
  - dense: 10
    name: main
outputs:
  main: {activation: softmax}
  aux: {activation: softmax, loss_weight: 0.3, train_only: true}
"""


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "branchy.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def resolved(spec_file):
    return resolve_spec(str(spec_file))


@pytest.fixture(scope="module")
def built(resolved):
    from blockspec.builder.compile import compile_spec

    return compile_spec(resolved)


def _nodes(source: str) -> dict[str, str]:
    """DOT node id -> its attribute text."""
    return dict(re.findall(r"^\s*(n\d+) \[(.*?)\]$", source, flags=re.M | re.S))


def _node_with(source: str, text: str) -> str:
    found = [attrs for attrs in _nodes(source).values() if text in attrs]
    assert found, f"no node mentions {text!r}"
    return found[0]


def test_collapsed_picture_shows_blocks_branches_merges_and_the_aux_head(resolved):
    source = plot_graph(resolved).source
    assert 'label="mix  (twin)"' in source  # the user block is a framed group
    assert "concat" in source and '"+"' in source  # the parallel's and the residual's merges
    assert "mix_b1_conv" in source and "mix_b2_conv_2" in source  # both branches
    assert "dashed" in _node_with(source, "aux\ndense")  # the aux head ...
    assert "dashed" in _node_with(source, "side_pool")  # ... and what only it reads
    assert "dashed" in _node_with(source, "train only")  # its output
    assert "dashed" not in _node_with(source, "main\ndense")
    assert "dashed" not in _node_with(source, "stem\nconv_bn")  # feeds both heads


def test_expand_draws_the_keras_layers(resolved, built):
    collapsed = plot_graph(resolved, built).source
    expanded = plot_graph(resolved, built, expand=True).source
    assert len(_nodes(expanded)) > len(_nodes(collapsed))
    assert "stem_bn" in expanded and "BatchNormalization" in expanded  # inside the conv_bn box
    assert "8x8x8" in collapsed  # shapes once built


@needs_dot
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<svg")])
def test_png_and_svg_are_written(resolved, tmp_path, suffix, magic):
    path = write_plot(plot_graph(resolved), tmp_path / f"net{suffix}")
    data = path.read_bytes()
    assert magic in data[:400]
    assert len(data) > 1000


@needs_dot
def test_plot_command(spec_file, tmp_path, capsys):
    target = tmp_path / "net.svg"
    assert cli.main(["plot", str(spec_file), "-o", str(target)]) == 0
    assert target.read_text().count("<g id=") > 10
    assert f"wrote {target}" in capsys.readouterr().out


def test_missing_dot_is_one_line_that_says_how_to_install_it(
    resolved, spec_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` here
    with pytest.raises(GraphvizMissing, match="apt-get install graphviz") as caught:
        write_plot(plot_graph(resolved), tmp_path / "net.png")
    assert "\n" not in str(caught.value) and "brew install graphviz" in str(caught.value)
    assert cli.main(["plot", str(spec_file), "-o", str(tmp_path / "net.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install graphviz" in err
    # The DOT source needs no `dot`.
    assert cli.main(["plot", str(spec_file), "-o", str(tmp_path / "net.dot")]) == 0
    assert (tmp_path / "net.dot").read_text().startswith("digraph branchy")


def test_unknown_picture_format_is_refused(resolved, tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.svg"):
        write_plot(plot_graph(resolved), tmp_path / "net.jpeg")


def test_search_spaces_are_shown_on_their_steps_and_in_the_title():
    from blockspec.builder.resolve import resolve_spec

    source = plot_graph(resolve_spec("digits_tune")).source
    assert "~ rate: tune float 0..0.4 step 0.2" in _node_with(source, "dropout")
    assert "~ repeat: tune int 1..3" in _node_with(source, "stage2")
    assert "~ step: tune choice basic_residual | conv" in _node_with(source, "choice")
    title = source.split("label=", 1)[1].split("labeljust", 1)[0]
    assert "~ vars.width: tune int 8..32 step 8" in title
    assert "~ train.optimizer.adam.learning_rate: tune float 0.0001..0.01 log" in title
