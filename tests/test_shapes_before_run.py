"""`build`, `train` and `tune` run the shape check before reading data or writing a file."""

from __future__ import annotations

import pytest

from blockspec import cli

SPEC = """\
spec: 1
name: flat_mistake
input: [8, 8, 1]
network:
  - conv: {filters: 4, kernel: 3}
  - dense: 10
    name: main
outputs:
  main: {activation: softmax, loss: sparse_categorical_crossentropy}
train: {epochs: 1, data: {source: digits}}
"""


@pytest.mark.parametrize("command", ["build", "train", "tune"])
def test_a_shape_mistake_is_refused_located_before_anything_is_written(
    command, tmp_path, monkeypatch, capsys
):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    args = [command, str(spec)] + ([] if command == "build" else ["--out", "out"])
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "spec.yaml:6:5  network[1].dense" in err
    assert "(batch, classes)" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
