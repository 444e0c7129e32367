"""The JSON Schema (draft 2020-12) of the spec language, generated from the registry.

Editors use it for completion, hover help and checks while typing (see `docs/editor.md`). It is
built from the same tables the resolver uses (the registry's typed `Param`s, the resolver's key
lists, the `train` section's keys), so it cannot drift from what `blockspec validate` accepts.

The schema is looser than the resolver where JSON Schema cannot see far enough: it does not know
which user blocks a spec defines (any other identifier is accepted as a user block's type key,
with any arguments), it checks types but not cross-references (`from`, `$name`), and values may
always be a `$name`/`${expression}` string or a search space. `blockspec validate` stays the judge.
"""

from __future__ import annotations

import json
from typing import Any

from blockspec.builder import registry
from blockspec.builder.registry import StepType
from blockspec.builder.resolve.common import MAX_NAME
from blockspec.views.schema_types import (
    EXPRESSION_PATTERN,
    REF_EXPR,
    REF_STEP,
    REF_STEPS,
    args_mapping,
    keras_entries,
    step_type_schema,
    value_schema,
)

SCHEMA_ID = "https://blockspec.dev/schema/spec-1.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


# ----------------------------------------------------------------------------- sections


def _space_defs() -> dict[str, Any]:
    from blockspec.builder.spaces import SAMPLINGS

    number_or_expr = {"anyOf": [{"type": "number"}, REF_EXPR]}
    int_or_expr = {"anyOf": [{"type": "integer"}, REF_EXPR]}

    def ranged(kind: str, number: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "tune": {"const": kind},
                "min": number,
                "max": number,
                "step": number,
                "sampling": {"enum": list(SAMPLINGS), "default": "linear"},
                "default": number,
            },
            "required": ["tune", "min", "max"],
            "additionalProperties": False,
        }

    return {
        "search_space": {
            "description": "a hyperparameter: {tune: int|float|choice|bool, ...}; building "
            "without tuning uses `default` (or min, the first value, false)",
            "type": "object",
            "required": ["tune"],
            "anyOf": [
                ranged("int", int_or_expr),
                ranged("float", number_or_expr),
                {
                    "type": "object",
                    "properties": {
                        "tune": {"const": "choice"},
                        "values": {"type": "array", "minItems": 1},
                        "default": {},
                    },
                    "required": ["tune", "values"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"tune": {"const": "bool"}, "default": {"type": "boolean"}},
                    "required": ["tune"],
                    "additionalProperties": False,
                },
            ],
        },
        "step_choice": {
            "description": "a choice between whole steps: {tune: choice, values: [steps]}; "
            "`name` names the chosen step and its hyperparameter",
            "type": "object",
            "properties": {
                "tune": {"const": "choice"},
                "name": {"type": "string"},
                "values": {"type": "array", "items": REF_STEP, "minItems": 1},
                "default": REF_STEP,
            },
            "required": ["tune", "values"],
            "additionalProperties": False,
        },
    }


def _step_defs(known: dict[str, StepType]) -> dict[str, Any]:
    from blockspec.builder.resolve import STEP_KEYS

    step_keys = {
        "name": {
            "type": "string",
            # (1.1) `$n` and `enc${i}` are interpolated: checked when resolved
            "anyOf": [{"pattern": NAME_PATTERN, "maxLength": MAX_NAME}, {"pattern": r"\$"}],
            "description": "makes the step referable (`from`, `outputs`); unique in its scope",
        },
        "from": {
            "description": "the step(s) or input(s) this step reads; default: the previous step",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
        },
        "repeat": value_schema(
            {"type": "integer", "minimum": 0},
            "apply the step N times in a row, each with its own weights; `$i` is the index",
        ),
        "first": {
            "type": "object",
            "description": "with `repeat`: arguments for the first repetition only",
        },
        "last": {
            "type": "object",
            "description": "with `repeat`: arguments for the last repetition only",
        },
        "when": value_schema(
            {"type": "boolean"}, "the step exists only where this is true (per repetition)"
        ),
        "trainable": value_schema({"type": "boolean"}, "false freezes every layer the step makes"),
    }
    missing = set(STEP_KEYS) - set(step_keys)
    if missing:  # a new step key in the resolver must be described here
        raise RuntimeError(f"views.schema does not describe step keys {sorted(missing)}")
    type_properties = {name: {"$ref": f"#/$defs/type_{name}"} for name in known}
    return {
        # (1.1) a block may pass a list of steps by name: `body: $body`, `branches: $branches`
        "steps": {"anyOf": [{"type": "array", "items": REF_STEP}, REF_EXPR]},
        "step": {
            "description": "a step: one type key (layer, combinator, block, keras.layers class) "
            "and optionally name, from, repeat, first",
            "anyOf": [{"$ref": "#/$defs/plain_step"}, {"$ref": "#/$defs/step_choice"}],
        },
        "plain_step": {
            "type": "object",
            "properties": {**step_keys, **type_properties},
            # Any other identifier is a user block (from `blocks:` or `imports:`).
            "additionalProperties": {"$ref": "#/$defs/user_block_args"},
            "propertyNames": {"pattern": NAME_PATTERN},
            # Exactly one type key: a known type key allows only step keys beside it ...
            "dependentSchemas": {
                name: {"propertyNames": {"enum": [name, *STEP_KEYS]}} for name in known
            },
            # ... and there is at least one key that is not a step key (and no `tune`).
            "not": {
                "anyOf": [{"required": ["tune"]}, {"propertyNames": {"enum": list(STEP_KEYS)}}]
            },
        },
        "user_block_args": {
            "description": "arguments of a user block: a mapping, a positional list, empty, or "
            "(1.1) one value for a block of one argument (`unit: 64`, `unit: $width`)",
            "type": ["object", "array", "null", "string", "number", "boolean"],
        },
        **{f"type_{name}": step_type_schema(entry) for name, entry in known.items()},
        **{f"args_{name}": args_mapping(entry) for name, entry in known.items()},
    }


def _defaults_schema(known: dict[str, StepType]) -> dict[str, Any]:
    return {
        "description": "default arguments per step type, merged under each step's own",
        "type": "object",
        "properties": {
            name: {"$ref": f"#/$defs/args_{name}"}
            for name, entry in known.items()
            if entry.kind != "combinator"
        },
        "additionalProperties": {"type": "object"},
        "propertyNames": {"pattern": NAME_PATTERN},
    }


def _blocks_schema() -> dict[str, Any]:
    from blockspec.builder.resolve import BLOCK_KEYS

    block = {
        "type": "object",
        "properties": {
            "args": {
                "description": "argument name -> default (null = required); the order is the "
                "positional order",
                "type": ["object", "null"],
                "propertyNames": {"pattern": NAME_PATTERN, "not": {"enum": ["i", "name"]}},
            },
            "body": {**REF_STEPS, "minItems": 1},
            "description": {"type": "string"},
        },
        "required": ["body"],
        "additionalProperties": False,
    }
    if set(block["properties"]) != set(BLOCK_KEYS):
        raise RuntimeError(f"views.schema describes block keys other than {BLOCK_KEYS}")
    reserved = sorted(n for n, e in registry.all_types().items() if e.kind != "block")
    return {
        "description": "user blocks: {args, body}; used like built-in blocks",
        "type": "object",
        "additionalProperties": block,
        "propertyNames": {"pattern": NAME_PATTERN, "not": {"enum": reserved}},
    }


def _shape_schema(description: str = "") -> dict[str, Any]:
    dim = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}, REF_EXPR]}
    return value_schema(
        {"type": "array", "items": dim, "minItems": 1, "maxItems": 8},
        description or "a shape without the batch axis, e.g. [224, 224, 3]; null for any size",
    )


def _inputs_schema() -> dict[str, Any]:
    from blockspec.builder.resolve import _DTYPES

    one = {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "shape": _shape_schema(),
                    "dtype": {"enum": list(_DTYPES), "default": "float32"},
                },
                "required": ["shape"],
                "additionalProperties": False,
            },
            _shape_schema(),
        ]
    }
    return {
        "description": "several inputs: name -> {shape, dtype}",
        "type": "object",
        "minProperties": 1,
        "additionalProperties": one,
        "propertyNames": {"pattern": NAME_PATTERN},
    }


def _outputs_schema() -> dict[str, Any]:
    from blockspec.builder.resolve import OUTPUT_KEYS
    from blockspec.builder.resolve.outputs import ACTIVATIONS, LOSSES, METRICS

    metric = {"enum": list(METRICS)}
    properties = {
        "from": value_schema({"type": "string"}, "the step it reads; default: the same name"),
        "activation": value_schema(
            {"enum": [*ACTIVATIONS, None]}, "a final activation layer (softmax, sigmoid, ...)"
        ),
        "loss": value_schema({"enum": list(LOSSES)}, "a Keras loss name"),
        "loss_weight": value_schema({"type": "number", "minimum": 0}, default=1.0),
        "metrics": value_schema(
            {"anyOf": [metric, {"type": "array", "items": metric}]}, "Keras metric names"
        ),
        "train_only": value_schema(
            {"type": "boolean"}, "an auxiliary head: trained, removed from the inference model"
        ),
    }
    if set(properties) != set(OUTPUT_KEYS):
        raise RuntimeError(f"views.schema describes output keys other than {OUTPUT_KEYS}")
    return {
        "description": "output name -> {from, activation, loss, loss_weight, metrics, train_only}",
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {
            "type": ["object", "null"],
            "properties": properties,
            "additionalProperties": False,
        },
        "propertyNames": {"pattern": NAME_PATTERN},
    }


def _tune_schema() -> dict[str, Any]:
    from blockspec.builder.resolve import TUNE_KEYS, TUNERS
    from blockspec.builder.resolve.tune import SPLITS

    positive = {"type": "integer", "minimum": 1}
    properties: dict[str, Any] = {
        "tuner": {"enum": list(TUNERS), "description": "the keras-tuner search algorithm"},
        "objective": {
            "description": "a Keras metric name (val_accuracy) or {output, metric, direction}",
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {
                        "output": {"type": "string"},
                        "metric": {"type": "string"},
                        "direction": {"enum": ["min", "max"]},
                        "split": {"enum": list(SPLITS)},
                    },
                    "required": ["metric"],
                    "additionalProperties": False,
                },
            ],
        },
        "seed": value_schema({"type": "integer", "minimum": 0}),
        "factor": value_schema({"type": "integer", "minimum": 2}, "Hyperband's reduction factor"),
    }
    for key in TUNE_KEYS:
        properties.setdefault(key, value_schema(positive))
    return {
        "description": "how `blockspec tune` searches",
        "type": "object",
        "properties": {k: properties[k] for k in TUNE_KEYS},
        "additionalProperties": False,
    }


def _train_schema() -> dict[str, Any]:
    from blockspec.builder.resolve import train_keys as config

    positive = value_schema({"type": "integer", "minimum": 1})
    number = value_schema({"type": "number", "minimum": 0})
    one_key = {"type": "object", "minProperties": 1, "maxProperties": 1}
    data_keys = sorted(set().union(*config.DATA_KEYS.values()))
    known: dict[str, Any] = {
        "data": {
            "description": "source: " + " | ".join(config.SOURCES),
            "type": "object",
            "properties": {
                k: {"enum": list(config.SOURCES)} if k == "source" else {} for k in data_keys
            },
            "additionalProperties": False,
        },
        "batch_size": positive,
        "epochs": positive,
        "optimizer": {
            "description": "a Keras optimizer: `adam`, or {sgd: {learning_rate: 0.01}}",
            "anyOf": [{"type": "string"}, one_key],
        },
        "schedule": {
            "description": "one of " + ", ".join(config.SCHEDULES),
            "anyOf": [
                {"type": "null"},
                {**one_key, "propertyNames": {"enum": list(config.SCHEDULES)}},
            ],
        },
        "weight_decay": number,
        "label_smoothing": number,
        "augment": {"description": "Keras preprocessing steps (random_crop, ...)", "type": "array"},
        "precision": {"enum": list(config.PRECISIONS)},
        "jit_compile": {"enum": [True, False, "auto"]},
        "deterministic": {
            "type": "boolean",
            "description": "augment on one thread, so runs repeat exactly",
        },
        "distribute": {"enum": list(config.DISTRIBUTE)},
        "early_stopping": {
            "anyOf": [
                {"type": ["boolean", "null"]},
                {
                    "type": "object",
                    "propertyNames": {"enum": list(config.EARLY_STOPPING_KEYS)},
                },
            ]
        },
        "seed": value_schema({"type": "integer"}),
        "evaluate": {
            "type": ["object", "null"],
            "properties": {
                "tta": {"type": ["array", "null"], "items": {"enum": list(config.TTA_VIEWS)}}
            },
            "additionalProperties": False,
        },
    }
    known["freeze"] = {
        "type": "array",
        "items": {"type": "string"},
        "description": "(1.1) step-name patterns (shell patterns) whose layers do not train",
    }
    known["stages"] = {
        "type": "array",
        "description": "(1.1) phases in one run, each {epochs, freeze, optimizer}",
        "items": {"type": "object", "propertyNames": {"enum": ["epochs", "freeze", "optimizer"]}},
    }
    properties = {key: known.get(key, {}) for key in config.TRAIN_DEFAULTS}
    return {
        "description": "how `blockspec train` fits the model",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


# ----------------------------------------------------------------------------- the schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, draft 2020-12.

    Returns:
        A JSON-serialisable mapping; `blockspec schema` prints it.

    Example:
        >>> schema = json_schema()
        >>> schema["properties"]["spec"]
        {'const': 1, 'description': 'the language version'}
    """
    from blockspec.builder.resolve import SPEC_VERSION, TOP_KEYS

    known = {**registry.all_types(), **keras_entries()}
    properties: dict[str, Any] = {
        "spec": {"const": SPEC_VERSION, "description": "the language version"},
        "name": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "maxLength": MAX_NAME,
            "description": "the model's name (an identifier: it names layers and run folders)",
        },
        "description": {"type": "string", "description": "free text about the network"},
        "extends": {
            "type": "string",
            "description": "a zoo name (resnet50) or a path; this file is merged over it",
        },
        "imports": {
            "description": "spec files whose `blocks` become usable here",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        },
        "vars": {
            "description": "named values, used as $name or ${expression}",
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN, "not": {"const": "i"}},
        },
        "input": _shape_schema(
            "one input named `input`: its shape without the batch axis, e.g. [224, 224, 3]"
        ),
        "inputs": _inputs_schema(),
        "defaults": _defaults_schema(known),
        "blocks": _blocks_schema(),
        "network": {**REF_STEPS, "minItems": 1, "description": "the list of steps"},
        "outputs": _outputs_schema(),
        "train": _train_schema(),
        "tune": _tune_schema(),
        "weights": {
            "type": "string",
            "description": "(1.1) start from this weights file (.keras, .weights.h5, legacy .h5; "
            "relative to the spec's folder) or `imagenet`: by layer name and shape",
        },
        "weights_strict": {
            "type": "boolean",
            "description": "(1.1) refuse weights that do not all load",
        },
    }
    if list(properties) != list(TOP_KEYS):
        raise RuntimeError(f"views.schema describes top-level keys other than {TOP_KEYS}")
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "blockspec spec",
        "description": "A network as a composition of blocks (blockspec language version "
        f"{SPEC_VERSION}). Generated by `blockspec schema`.",
        "type": "object",
        "properties": properties,
        "required": ["spec"],
        "additionalProperties": False,
        "$defs": {
            "expression": {
                "type": "string",
                "pattern": EXPRESSION_PATTERN,
                "description": "$name (a var or block argument) or ${expression}",
            },
            **_space_defs(),
            **_step_defs(known),
        },
    }


def schema_text() -> str:
    """The schema as JSON text (stable: the same registry gives the same bytes)."""
    return json.dumps(json_schema(), indent=1, ensure_ascii=False) + "\n"
