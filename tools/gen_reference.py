"""Writes docs/reference.md, the language reference, from the registry, the schema and the configs.

Every step type with its arguments (type, default), primary argument, positional order, Keras
arguments passed through, and docstring; the top-level keys, step keys, expression functions and
search-space forms; the output keys; every `train` key with its default, the data sources with
their keys, schedules, optimizers and augment layers; every `tune` key with its default.
tests/test_docs.py checks that the committed file is what this script writes, so the reference
cannot drift from the code: after adding or changing a block, run

    python tools/gen_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blockspec.builder import registry  # noqa: E402
from blockspec.builder.registry import StepType  # noqa: E402
from blockspec.views.schema import json_schema  # noqa: E402

OUTPUT = ROOT / "docs" / "reference.md"

_KINDS = (
    ("layer", "Layers", "Short names for Keras layers, with Keras-style arguments."),
    ("combinator", "Combinators", "Steps made of steps: they wire their children together."),
    ("block", "Built-in blocks", "Python functions of a tensor, in `blocks/`."),
)


def _flow(value: Any) -> str:
    import yaml

    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type_section(entry: StepType) -> list[str]:
    lines = [f"### `{entry.name}`", ""]
    doc = entry.doc.strip()
    if doc:
        lines += [doc, ""]
    if entry.params:
        lines += ["| argument | type | default |", "|---|---|---|"]
        for param in entry.params.values():
            default = "required" if param.required else f"`{_flow(param.default)}`"
            kind = _cell(registry.describe(param.annotation))
            lines.append(f"| `{param.name}` | {kind} | {default} |")
        lines.append("")
    else:
        lines += ["No arguments of its own.", ""]
    notes = []
    if entry.primary:
        notes.append(f"A scalar sets `{entry.primary}` (`{entry.name}: ...`).")
    if entry.params and entry.kind != "combinator":
        notes.append("A list gives the arguments in the order above.")
    if entry.multi_input:
        notes.append("Reads several tensors: `from: [a, b]`.")
    if notes:
        lines += [" ".join(notes), ""]
    if entry.passthrough:
        names = ", ".join(f"`{n}`" for n in sorted(entry.passthrough))
        keras_class = entry.extra.get("keras_class", "")
        lines += [f"Also passed to `keras.layers.{keras_class}` as they are: {names}.", ""]
    return lines


# One line per key; the keys themselves and their defaults come from the code, and a key the
# code knows but this table does not stops the generator (so the reference cannot miss one).
OUTPUT_DOC = {
    "from": "the step it reads; default: the step of the output's name",
    "activation": "a final activation layer of the output's name (`softmax`, `sigmoid`, ...)",
    "loss": "a Keras loss name (`sparse_categorical_crossentropy`, ...)",
    "loss_weight": "the loss's weight in the total (default 1.0)",
    "metrics": "Keras metric names; Keras reports them as `<output>_<metric>`",
    "train_only": "an auxiliary head: trained, removed from the inference model (default false)",
}
TRAIN_DOC = {
    "data": "where the examples come from: `source` and its keys (below)",
    "batch_size": "examples per step",
    "epochs": "passes over the training data",
    "optimizer": "one key, a Keras optimizer name, with its arguments; or just the name",
    "schedule": "a learning-rate schedule, one key (below); null: constant",
    "weight_decay": "decoupled weight decay; biases and normalisation scales excluded",
    "label_smoothing": "for (sparse_)categorical_crossentropy outputs",
    "augment": "steps of Keras preprocessing layers, on the training pipeline only (below)",
    "precision": "the dtype policy",
    "jit_compile": "XLA-compile the train step (`auto`: Keras' choice)",
    "distribute": "`none`, `mirrored` (all local GPUs) or `multi_worker`",
    "early_stopping": "true (the defaults below) or a mapping of them",
    "seed": "seeds the split, the shuffling, the initial weights and augmentation",
    "deterministic": "augment on one thread, so two runs see the same images (slower)",
    "evaluate": "`{tta: [...]}`: the test-time augmentation views of `blockspec evaluate` "
    "(`flip`, `crops`); none by default",
    "freeze": "(1.1) step-name patterns (shell patterns, `conv[1-3]*`) whose layers do not "
    "train; a step's nested steps freeze with it; frozen batch norms run in inference mode",
    "stages": "(1.1) phases in one run, each `{epochs, freeze, optimizer}` (optimizer default: "
    "`optimizer`); epochs count on across stages; with stages, `epochs` and `freeze` go in "
    "each stage; `--resume` continues inside the right stage",
}
DATA_DOC = {
    "source": "the data source (below)",
    "image_size": "[H, W] the images are resized to; default: the model input's",
    "validation_split": "the fraction held out for validation (stratified, seeded)",
    "cache": "`auto` (in memory when it fits in 1 GiB), true or false",
    "scale": "raw values are multiplied by it; default per source",
    "samples": "how many examples (default 2048)",
    "classes": "how many classes (default: the main output's width)",
    "noise": "the noise added to each class's pattern (default 0.5)",
    "masks": "true: one class per pixel (rectangles of classes 1.. over class 0), a segmentation "
    "task: outputs of shape (H, W, classes), no `augment`, no test-time augmentation",
    "path": "the folder of class folders (`folder`) or the `.npz` file (`npz`)",
    "validation_path": "a separate folder of class folders for validation",
    "x_key": "the array of examples in the file (default `x`, or `x_train`)",
    "y_key": "the array of labels in the file (default `y`, or `y_train`)",
    "name": "the TensorFlow Datasets name",
    "split": "the training split (default `train`)",
    "validation": "a validation split name; default: `validation_split` of `split`",
    "test": "a test split name, or null",
    "data_dir": "where TensorFlow Datasets keeps its files",
    "download": "allow TensorFlow Datasets to download (default true)",
}
SOURCE_DOC = {
    "digits": "scikit-learn's 1,797 handwritten digits, 8x8 grey; works offline",
    "synthetic": "generated class patterns with noise; works offline",
    "folder": "a directory of class folders of images",
    "npz": "arrays in a NumPy `.npz` file (`x_test`/`y_test`, when present, are the test split)",
    "tfds": "a TensorFlow Datasets name (needs the `tfds` extra)",
}
TUNE_DOC = {
    "tuner": ("`random`", "the keras-tuner search: random, bayesian, hyperband or grid"),
    "objective": (
        "`val_loss`",
        "a Keras metric name (`val_accuracy`) or `{output, metric, direction, split}`",
    ),
    "max_trials": ("{max_trials}", "trials to run (hyperband: a cap on its own schedule)"),
    "max_epochs": ("`train.epochs`", "hyperband: the most epochs a trial trains"),
    "executions_per_trial": ("1", "fits per trial, averaged"),
    "factor": ("3", "hyperband: the reduction factor between brackets"),
    "hyperband_iterations": ("1", "hyperband: how many times its schedule runs"),
    "seed": ("{seed}", "the search's random seed"),
}


def _documented(keys, doc: dict, what: str) -> None:
    missing = [k for k in keys if k not in doc]
    if missing:
        raise SystemExit(f"tools/gen_reference.py: describe the {what} {missing} in its table")


def _outputs_section() -> list[str]:
    from blockspec.builder.resolve import OUTPUT_KEYS

    _documented(OUTPUT_KEYS, OUTPUT_DOC, "output keys")
    out = [
        "## Outputs",
        "",
        "`outputs` maps an output name to these keys (all optional). Without `outputs`, the last",
        "step is the one output.",
        "",
        "| key | meaning |",
        "|---|---|",
    ]
    out += [f"| `{key}` | {_cell(OUTPUT_DOC[key])} |" for key in OUTPUT_KEYS]
    return [*out, ""]


def _train_section() -> list[str]:
    from blockspec.training import config

    defaults = config.TRAIN_DEFAULTS
    _documented(defaults, TRAIN_DOC, "train keys")
    out = [
        "## Training (`train`)",
        "",
        "How `blockspec train` fits the model. Every key is optional; the defaults train offline.",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
    ]
    for key, default in defaults.items():
        shown = "see below" if key == "data" else f"`{_flow(default)}`"
        out.append(f"| `{key}` | {_cell(shown)} | {_cell(TRAIN_DOC[key])} |")
    out += _data_section(config)
    out += ["### Schedules", "", "| schedule | keys |", "|---|---|"]
    for name, keys in config.SCHEDULE_KEYS.items():
        out.append(f"| `{name}` | {', '.join(f'`{k}`' for k in keys)} |")
    out += ["", "### Early stopping", "", "`early_stopping: true` means:", ""]
    out += [f"- `{k}`: `{_flow(v)}`" for k, v in config.EARLY_STOPPING_DEFAULTS.items()]
    out += ["", "### Optimizers", "", ", ".join(f"`{n}`" for n in config.OPTIMIZERS) + ".", ""]
    out += [
        "### Augment layers",
        "",
        "Each is a step: `random_flip: horizontal`, `random_crop: {size: [28, 28]}`. A scalar",
        "is the one factor of " + ", ".join(f"`{n}`" for n in config.FACTOR_LAYERS) + ".",
        "",
        ", ".join(f"`{n}` ({c})" for n, c in config.AUGMENT_LAYERS.items()) + ".",
        "",
        f"Precisions: {', '.join(f'`{p}`' for p in config.PRECISIONS)}. Test-time augmentation "
        f"views: {', '.join(f'`{v}`' for v in config.TTA_VIEWS)}.",
        "",
    ]
    return out


def _data_section(config) -> list[str]:
    keys = config.DATA_KEYS
    _documented([k for ks in keys.values() for k in ks], DATA_DOC, "data keys")
    _documented(config.SOURCES, SOURCE_DOC, "data sources")
    data_defaults = config.TRAIN_DEFAULTS["data"]
    out = ["", "### Data sources", "", "Keys of every source:", ""]
    for key in keys["common"]:
        default = f" (default `{_flow(data_defaults[key])}`)" if key in data_defaults else ""
        out.append(f"- `{key}`: {DATA_DOC[key]}{default}.")
    out += ["", "| source | what | its own keys |", "|---|---|---|"]
    for source in config.SOURCES:
        own = "; ".join(f"`{k}`: {DATA_DOC[k]}" for k in keys.get(source, ())) or "none"
        out.append(f"| `{source}` | {_cell(SOURCE_DOC[source])} | {_cell(own)} |")
    return [*out, ""]


def _tune_section() -> list[str]:
    from blockspec.builder.resolve import TUNE_KEYS
    from blockspec.tuning import search

    _documented(TUNE_KEYS, TUNE_DOC, "tune keys")
    numbers = {"max_trials": search.DEFAULT_MAX_TRIALS, "seed": search.DEFAULT_SEED}
    out = [
        "## Tuning (`tune`)",
        "",
        "How `blockspec tune` searches the spec's search spaces ([tuning.md](tuning.md)).",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
    ]
    for key in TUNE_KEYS:
        default, meaning = TUNE_DOC[key]
        out.append(f"| `{key}` | {default.format(**numbers)} | {_cell(meaning)} |")
    return [*out, ""]


# Language 1.1 in words, with whole specs that tests/test_language_1_1.py validates.
_LANGUAGE_1_1 = """\
## Blocks that take steps, names and shapes

Every version-1 spec stays valid; these are the additions of language 1.1. Each example
below is a whole spec, and `tests/test_language_1_1.py` validates every one.

### Optional parts and computed names

`when` keeps a step (per repetition, `i` defined) only where it is true; `repeat: 0` gives no
step; `last` overrides the last repetition as `first` does the first (with `repeat: 1`, `first`
applies, then `last`); `trainable: false` freezes the step's layers; `shortcut: none` is the
residual's body alone; `name` and `from` interpolate `${...}` (per repetition; an output's
`from` too, over vars). A `from` or output naming a step left out is refused with both
locations. A step list left empty by `when` or `repeat: 0` (a branch, a shortcut) is the
identity, as `[]` is.

```yaml
spec: 1
input: [16, 16, 3]
vars: {pool: false}
network:
  - conv: {filters: 8, kernel: 3, padding: same}
    name: stem
    trainable: false
  - max_pool: 2
    when: $pool
  - conv: {filters: 8, kernel: 3, padding: same}
    repeat: 3
    name: enc${i}
    last: {filters: 16}
  - residual: {body: [conv: {filters: 16, kernel: 1}], shortcut: none, activation: relu}
```

### Blocks that take steps, names and scalars

`$name` stands wherever the language takes a value, a list of steps or a step name: a block
argument may hold steps (`body: $body`) or the name of a step outside the block
(`from: [conv, $skip]`, looked up where the block is used). Everything written where a block
is used (its arguments, `${...}` inside them, the defaults in its `args`) is evaluated there, in
the caller's scope. A block with one argument takes it as a scalar (`width: 8`); a list is
always the positional form. Expressions may also give strings
(`shortcut: "${'identity' if s == 1 else 'none'}"`).

```yaml
spec: 1
input: [16, 16, 3]
blocks:
  unit:
    args: {body: null}
    body: [residual: {body: $body}]
  up:
    args: {skip: null}
    body:
      - conv: {filters: 4, kernel: 1}
      - concat: {}
        from: [conv, $skip]
  width:
    args: {filters: null}
    body: [conv: {filters: $filters, kernel: 1}]
network:
  - conv: {filters: 4, kernel: 3, padding: same}
    name: enc0
  - conv: {filters: 4, kernel: 3, padding: same}
    name: enc1
  - unit: {body: [conv: {filters: 4, kernel: 3, padding: same}]}
  - up: {skip: "enc${1 - i}"}
    repeat: 2
  - width: 8
```

### Shapes: `in_channels`, `in_height`, `in_width`, `in_length`, `in_shape`

An expression may read the shape of the input of the step it is written in: `in_channels`
(the last axis), `in_height` and `in_width` (images), `in_length` (sequences), `in_shape` (the
whole shape as a list, batch axis left out; it cannot be indexed). In a block's arguments,
written where the block is used, that is the block's input; a default in the block's `args`
such as `channels: $in_channels` is the block's input too. Under `repeat` each repetition reads
its own input; a step reading several tensors reads the first's.

`validate` infers shapes in pure Python: every layer type above, every built-in block, the
combinators and user blocks have a shape rule (a step type declares one beside its
arguments: `register(..., extra={"shape": rule})`, see `builder/shape_rules.py`), and so do the
common raw Keras classes (`Conv1DTranspose` to `Conv3DTranspose`, `UpSampling1D` to
`UpSampling3D`, `Conv1D` to `Conv3D`, `Dense`, `MaxPooling2D`, `AveragePooling2D`, the global
2D poolings, normalisations, dropouts and activations; `KERAS_RULES`). After a step without
one (another raw Keras class such as `SeparableConv2D`, a Python block registered without a
rule), an argument that reads `in_*` is evaluated when the model is built, and a refusal
still names where it was written. A step key that shapes the network (`repeat`, `when`,
`name`, `from`, `trainable`) cannot wait: `validate` refuses it there. An axis the input does
not have (`in_length` of an image) is refused with the input's shape.

```yaml
spec: 1
input: [32, 32, 3]
vars: {width: 0.5}
blocks:
  se:                                  # squeeze-excite: the width follows the input
    args: {squeeze: null, channels: $in_channels}
    body:
      - residual:
          shortcut: identity
          merge: multiply
          body:
            - global_avg_pool: {keepdims: true}
            - conv: {filters: $squeeze, kernel: 1, activation: relu}
            - conv: {filters: $channels, kernel: 1, activation: sigmoid}
  transition:                          # DenseNet: half the channels, half the side
    args: {}
    body:
      - conv: {filters: "${in_channels // 2}", kernel: 1}
      - avg_pool: 2
network:
  - conv: {filters: "${make_divisible(64 * width, 8)}", kernel: 3, padding: same}
  - se: {squeeze: "${in_channels // 4}"}
  - transition: {}
  - avg_pool:
      size: ["${in_height}", "${in_width}"]
  - dense: 10
```
"""


def _expression_lines() -> list[str]:
    from blockspec.builder.expr import FUNCTIONS

    names = " ".join(FUNCTIONS)
    return [
        "Any value may be `$name` (a var or block argument), `${expression}` (arithmetic",
        "`+ - * / // % **`, comparisons, `and or not`, `a if c else b`, and the functions",
        f"`{names}`), or a search space. Nothing else: no attribute access, no imports.",
        "A string that is not exactly one `$name` or `${...}` stays a string. In a flow mapping",
        '(`{...}`) quote an expression: `conv: {filters: "${b * 2}", kernel: 3}`.',
        "",
        "| form | keys |",
        "|---|---|",
    ]


def generate() -> str:
    """The text of docs/reference.md."""
    from blockspec.builder.resolve import STEP_KEYS, TOP_KEYS

    schema = json_schema()
    types = registry.all_types()
    out = [
        "# Language reference",
        "",
        "<!-- Generated by `python tools/gen_reference.py` from the registry; do not edit. -->",
        "",
        "This page lists every key and every step type that a spec can use, with the arguments",
        "each type takes. It is generated from the code, so it is always current. For a guided",
        "introduction read the [tutorial](tutorial.md); for editor completion see",
        "[editor.md](editor.md).",
        "",
        "## Top-level keys",
        "",
        "| key | meaning |",
        "|---|---|",
    ]
    for key in TOP_KEYS:
        description = schema["properties"][key].get("description", "")
        required = " Required." if key in schema["required"] else ""
        out.append(f"| `{key}` | {_cell(description.rstrip('.'))}.{required} |")
    out += ["", "## Step keys", "", "Besides its one type key, a step may have:", ""]
    step_keys = schema["$defs"]["plain_step"]["properties"]
    for key in STEP_KEYS:
        out.append(f"- `{key}`: {step_keys[key].get('description', '')}.")
    out += [
        "",
        "The value under the type key is a mapping (keywords), a list (positional, in the order",
        "of the table), a scalar (the type's primary argument) or nothing.",
        "",
        "## Values",
        "",
        *_expression_lines(),
    ]
    for form in schema["$defs"]["search_space"]["anyOf"]:
        kind = form["properties"]["tune"]["const"]
        keys = ", ".join(f"`{k}`" for k in form["properties"] if k != "tune")
        need = ", ".join(f"`{k}`" for k in form.get("required", []) if k != "tune")
        out.append(
            f"| `{{tune: {kind}}}` | {keys}" + (f" (required: {need})" if need else "") + " |"
        )
    out += [
        "",
        "A `choice` may list whole steps; a step may be a choice: "
        "`{tune: choice, values: [{conv: ...}, {conv_bn: ...}]}`.",
        "",
        *_LANGUAGE_1_1.splitlines(),
        "",
        *_outputs_section(),
        *_train_section(),
        *_tune_section(),
    ]
    for kind, title, intro in _KINDS:
        entries = sorted((e for e in types.values() if e.kind == kind), key=lambda e: e.name)
        out += [f"## {title}", "", intro, ""]
        for entry in entries:
            out += _type_section(entry)
    # Lambda, TFSMLayer, ... run code or load files: refused in specs, so not listed.
    keras_names = sorted(n for n in registry.keras_layer_table() if not registry.refused(n))
    out += [
        "## Any `keras.layers` class",
        "",
        "A step type written as a Keras class name takes that class's constructor arguments",
        "under their Keras names (`Conv2DTranspose: {filters: 8, kernel_size: 3}`). Known:",
        "",
        ", ".join(f"`{n}`" for n in keras_names) + ".",
        "",
    ]
    return "\n".join(out)


def main() -> int:
    text = generate()
    if OUTPUT.exists() and OUTPUT.read_text() == text:
        print(f"{OUTPUT.relative_to(ROOT)} is up to date")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
