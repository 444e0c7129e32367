"""`blockspec init`: a new spec, with comments that say what each part does.

Without `--from`, the scaffold is a small network that shows every part of the language once (a
user block, `defaults`, an auxiliary head, `train`, a commented `tune`); it validates, builds and
trains as written. With `--from NAME` it `extends` a zoo spec (or a file) and lists, as comments,
what can be overridden.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from blockspec.builder.load import find_spec, load_document
from blockspec.errors import UsageError

_TEMPLATE = """\
# {name}: a blockspec spec. Check it, draw it, train it:
#   blockspec validate {file}
#   blockspec plot {file} -o {name}.png
#   blockspec train {file}
# The language: docs/tutorial.md and docs/reference.md. Editor completion: docs/editor.md.
spec: 1
name: {name}
description: A small convolutional network for the 8x8 handwritten digits.

vars:                  # named values: $classes, ${{width * 2}}; --set vars.width=64 overrides
  classes: 10
  width: 16

input: [16, 16, 1]     # one example: height, width, channels (the 8x8 digits are resized)

defaults:              # arguments every `conv` step gets unless it gives its own
  conv: {{padding: same, activation: relu}}

blocks:                # your own blocks, used exactly like the built-in ones
  double_conv:
    args: {{filters: null}}          # null = required; the order is the positional order
    body:
      - conv: {{filters: $filters, kernel: 3}}
      - conv: {{filters: $filters, kernel: 3}}
      - max_pool: 2

network:
  - double_conv: {{filters: $width}}
    name: stage1                     # 8x8x16; a name makes a step referable (from:, outputs:)
  - double_conv: ["${{width * 2}}"]    # positional, in the order `args` declares
    name: stage2                     # 4x4x32
  - flatten: {{}}
  - dropout: 0.2                     # a scalar sets the step's primary argument
  - dense: $classes
    name: main
  # An auxiliary head: reads stage1, is trained with the main output, and is left out of the
  # exported (inference) model because its output is `train_only`.
  - classifier: {{classes: $classes, pool: flatten}}
    from: stage1
    name: aux

outputs:
  main: {{activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}}
  aux: {{activation: softmax, loss: sparse_categorical_crossentropy, loss_weight: 0.3, train_only: true}}

train:
  data: {{source: digits, image_size: [16, 16], validation_split: 0.2}}
  batch_size: 32
  epochs: 10
  optimizer: {{adam: {{learning_rate: 0.002}}}}

# To search: make values search spaces, e.g. `width: {{tune: int, min: 8, max: 64, step: 8}}`
# under vars, then uncomment this section and run `blockspec tune {file}`.
# tune:
#   tuner: random
#   objective: {{output: main, metric: accuracy, direction: max}}
#   max_trials: 10
"""


def _name_from(path: str) -> str:
    stem = Path(path).name.split(".")[0] if path not in ("", "-") else "my_net"
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem) or "my_net"
    return name if not name[0].isdigit() else f"net_{name}"


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def scaffold(path: str = "my_net.yaml", parent: str | None = None) -> str:
    """The text of a new spec.

    Args:
        path: where it will be written (its name becomes the spec's `name`; `extends` paths are
            made relative to its folder).
        parent: a zoo name or a spec path to start from (`extends`), or None for the template.

    Returns:
        YAML text with comments; it validates as it is.

    Example:
        >>> text = scaffold("my_net.yaml")
        >>> "blocks:" in text and "train_only: true" in text
        True
    """
    name = _name_from(path)
    file = path if path not in ("", "-") else f"{name}.yaml"
    if parent is None:
        return _TEMPLATE.format(name=name, file=file)
    return _extending(name, file, parent)


def _extending(name: str, file: str, parent: str) -> str:
    try:
        parent_path = find_spec(parent)
    except FileNotFoundError as e:
        raise UsageError(f"--from: {e}") from None
    data = load_document(parent).data or {}
    looks_like_path = parent.endswith((".yaml", ".yml", ".json")) or "/" in parent
    if looks_like_path:
        folder = Path(file).resolve().parent
        ref = os.path.relpath(parent_path.resolve(), folder)
    else:
        ref = parent
    lines = [
        f"# {name}: starts from `{parent}` (see all of it: blockspec render {parent}).",
        "# What this file says is merged over the parent: mappings key by key; lists (such as",
        "# `network`) replace the parent's whole list.",
        f"#   blockspec validate {file}",
        f"#   blockspec diff {parent} {file}",
        "spec: 1",
        f"name: {name}",
        f"extends: {ref}",
    ]
    variables = data.get("vars") or {}
    if variables:
        lines += ["", "vars:                  # the parent's values; change any of them"]
        lines += [f"  {key}: {_flow(value)}" for key, value in variables.items()]
    if "input" in data:
        lines += ["", f"# input: {_flow(data['input'])}"]
    defaults = data.get("defaults") or {}
    if defaults:
        lines += ["", "# defaults:             # e.g. --set defaults.conv.factorize=stack3"]
        lines += [f"#   {key}: {_flow(value)}" for key, value in defaults.items()]
    outputs = data.get("outputs") or {}
    if outputs:
        lines += ["", "# outputs:"]
        lines += [f"#   {key}: {_flow(value)}" for key, value in outputs.items()]
    train = data.get("train")
    if isinstance(train, dict) and train:
        lines += ["", "# train:               # uncomment what you change; the rest is inherited"]
        lines += [f"#   {key}: {_flow(value)}" for key, value in train.items()]
    else:
        lines += [
            "",
            "# train:",
            "#   data: {source: digits, image_size: [32, 32], validation_split: 0.2}",
            "#   epochs: 5",
        ]
    return "\n".join(lines) + "\n"
