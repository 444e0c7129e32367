"""`render` -> `validate` -> `build` gives the same model, for every zoo spec and example (issue 14).

`render` prints what is built (vars, defaults, repeats and blocks applied); the printed spec must
validate and build into the same layers (names, classes, weight shapes) as the spec it came from.
"""

from __future__ import annotations

import textwrap

import pytest
from zoo_fixtures import EXAMPLES, ZOO, shapes_only, small_overrides, spec_id

from blockspec.builder import resolve_spec
from blockspec.builder.compile import compile_spec
from blockspec.views.render import render


def layers_of(spec) -> list[tuple]:
    """(name, class, weight shapes) of every layer, and the output names, built shapes-only."""

    def build():
        model = compile_spec(spec).model
        rows = [
            (layer.name, type(layer).__name__, tuple(tuple(w.shape) for w in layer.weights))
            for layer in model.layers
        ]
        frozen = sorted(layer.name for layer in model.layers if not layer.trainable)
        return rows, sorted(model.output_names), frozen

    return shapes_only(build)


def round_trip(tmp_path, spec) -> tuple:
    return layers_of(spec), layers_of(rendered(tmp_path, spec))


def tree(steps) -> list[tuple]:
    """What the compiler builds from: each step's type, name, arguments, inputs and children.

    A user block is built as the sequence of its body (its arguments are already in the body),
    which is how `render` prints it.
    """
    return [
        (
            "sequence" if s.block else s.type,
            s.name,
            {} if s.block else s.args,
            s.sources,
            s.trainable,
            [tree(c) for c in s.children],
        )
        for s in steps
    ]


def rendered(tmp_path, spec):
    path = tmp_path / "rendered.yaml"
    path.write_text(render(spec))
    again = resolve_spec(str(path))
    assert render(again) == path.read_text()  # a fixed point: rendering it again changes nothing
    return again


@pytest.mark.parametrize("path", [*ZOO, *EXAMPLES], ids=spec_id)
def test_render_then_validate_resolves_to_the_same_steps(tmp_path, path):
    """The compiler is a function of the resolved steps, inputs and outputs: same steps, same model."""
    spec = resolve_spec(str(path), small_overrides(path))
    again = rendered(tmp_path, spec)
    assert tree(again.network) == tree(spec.network)
    assert again.inputs == spec.inputs and again.outputs == spec.outputs


@pytest.mark.parametrize("name", ["nin_cifar", "digits_googlenet", "digits_lstm", "mobilenet"])
def test_render_validate_build_gives_the_same_layers(tmp_path, name):
    path = next(p for p in [*ZOO, *EXAMPLES] if p.stem == name)
    before, after = round_trip(tmp_path, resolve_spec(str(path), small_overrides(path)))
    assert before == after


def test_language_1_1_features_survive_a_round_trip(tmp_path):
    """Repeated sequences, `trainable: false`, a block's `from` and deferred `in_*` values."""
    source = tmp_path / "net.yaml"
    source.write_text(
        textwrap.dedent(
            """\
            spec: 1
            input: [16, 16, 3]
            blocks:
              up:
                args: {skip: null}
                body:
                  - conv: {filters: "${in_channels // 2}", kernel: 1}
                  - concat: {}
                    from: [conv, $skip]
            network:
              - conv: {filters: 4, kernel: 3, padding: same}
                name: enc0
                trainable: false
              - sequence: [conv: {filters: 4, kernel: 1}, relu:]
                repeat: 2
              - Conv2DTranspose: {filters: 6, kernel_size: 1}
              - up: {skip: enc0}
              - conv: {filters: "${in_channels}", kernel: 1}
            """
        )
    )
    before, after = round_trip(tmp_path, resolve_spec(str(source)))
    assert before == after
    assert before[2] == ["enc0"]  # frozen
    assert ("up_conv", "Conv2D", ((1, 1, 6, 3), (3,))) in before[0]
