"""Networks and faults the zoo does not have, written from the docs alone (issues 14 and 15)."""

from __future__ import annotations

import textwrap

import pytest
from test_roundtrip import round_trip

from blockspec import build_model
from blockspec.builder import resolve_spec
from blockspec.builder.errors import SpecError


def write(tmp_path, text: str, name: str = "net.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_render_keeps_defaults_of_auto_shortcut_projections(tmp_path):
    # `defaults.conv.use_bias: false` reaches the `auto` projection; render writes no `defaults`,
    # so `shortcut: auto` read again made a projection with a bias (params differed).
    spec = resolve_spec(
        write(
            tmp_path,
            """
            spec: 1
            input: [8, 8, 3]
            defaults:
              conv: {padding: same, use_bias: false}
              batch_norm: {momentum: 0.9}
            network:
              - conv: {filters: 4, kernel: 3}
              - residual: {body: [conv: {filters: 8, kernel: 3}]}
              - residual: {body: [conv: {filters: 8, kernel: 3}]}
              - residual: {body: [conv: {filters: 16, kernel: 3, strides: 2}]}
            """,
        )
    )
    original, again = round_trip(tmp_path, spec)
    assert original == again
    names = [row[0] for row in original[0]]
    assert len([n for n in names if n.endswith("_shortcut_conv")]) == 2  # the middle one: identity


def test_auto_shortcut_on_a_sequence_is_refused_located(tmp_path):
    # The `auto` projection is a 2D conv: on a sequence, Keras' "expected min_ndim=4" came out
    # with no file, line or spec path (`<spec>`), the projection steps carrying no location.
    path = write(
        tmp_path,
        """
        spec: 1
        input: [20, 6]
        network:
          - dense: 16
          - residual: {body: [dense: 32]}
        """,
    )
    with pytest.raises(SpecError) as info:
        build_model(path)
    message = str(info.value)
    assert "net.yaml:6:5  network[1].residual" in message
    assert "give `shortcut` explicitly" in message and "(None, 20, 16)" in message
