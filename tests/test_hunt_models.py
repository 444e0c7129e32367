"""Networks and faults the zoo does not have, written from the docs alone (issues 14 and 15)."""

from __future__ import annotations

import textwrap

from test_roundtrip import round_trip

from blockspec.builder import resolve_spec


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
