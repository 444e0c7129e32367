"""`blockspec tune`, without training: names, conditional spaces, the objective, best.yaml's document."""

from __future__ import annotations

import keras_tuner as kt
import pytest
import yaml

from blockspec.builder.errors import SpecError
from blockspec.builder.load import load_document
from blockspec.builder.resolve import resolve_spec
from blockspec.builder.spaces import is_space
from blockspec.tuning.document import SpaceIndex, concrete_document
from blockspec.tuning.hypermodel import SpecHyperModel, TunerChooser
from blockspec.tuning.search import objective_of

SPEC = """
spec: 1
name: names
input: [8, 8, 1]
vars:
  width: {tune: int, min: 8, max: 32, step: 8, default: 16}
defaults:
  conv: {activation: relu, padding: same}
network:
  - conv: {filters: $width, kernel: 3}
    name: stem
  - tune: choice
    values:
      - basic_residual: {filters: {tune: int, min: 8, max: 16, step: 8}}
      - conv: {filters: 8, kernel: {tune: choice, values: [3, 5]}}
  - conv: {filters: {tune: int, min: 8, max: 64, step: 8, default: 32}, kernel: 3}
    repeat: {tune: int, min: 1, max: 3}
    name: stage3
  - global_avg_pool: {}
  - dropout: {tune: float, min: 0.0, max: 0.5, step: 0.25}
  - dense: 10
    name: main
outputs:
  main: {activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
train:
  data: {source: synthetic, samples: 32}
  batch_size: {tune: choice, values: [16, 32]}
  optimizer: {adam: {learning_rate: {tune: float, min: 1.0e-4, max: 1.0e-2, sampling: log}}}
"""


def _doc(tmp_path, text=SPEC, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_document(str(path))


def _space(doc):
    """The keras-tuner search space a tuner discovers for `doc` (no model is built)."""
    model = SpecHyperModel(doc, kt.Objective("val_loss", "min"))
    model.declaring = True
    tuner = kt.RandomSearch(
        hypermodel=model,
        objective=model.objective,
        max_trials=1,
        directory=str(doc.file) + ".kt",
        overwrite=True,
    )
    return model, tuner.oracle.get_space()


def test_one_hyperparameter_per_space_named_from_the_spec_path(tmp_path):
    doc = _doc(tmp_path)
    _, space = _space(doc)
    names = [hp.name for hp in space.space]
    assert len(names) == len(set(names))
    for name in (
        "vars/width",
        "stage3/filters",
        "stage3/repeat",
        "train/batch_size",
        "train/optimizer/adam/learning_rate",
    ):
        assert name in names
    # Every name is the resolver's, whichever branch of the step choice a trial takes.
    met = set()
    for label in ("basic_residual", "conv"):
        hp = space.copy()
        hp.values["choice"] = label
        hp.ensure_active_values()
        chooser = TunerChooser(hp, SpaceIndex(doc))
        resolved = resolve_spec(SpaceIndex(doc).marked, chooser=chooser)
        met |= {h.name for h in resolved.hyperparameters}
    assert met == set(names)
    kinds = {hp.name: type(hp).__name__ for hp in space.space}
    assert kinds["stage3/filters"] == "Int"
    assert kinds["train/batch_size"] == "Choice"
    assert kinds["choice"] == "Choice"
    lr = next(hp for hp in space.space if hp.name == "train/optimizer/adam/learning_rate")
    assert type(lr).__name__ == "Float" and lr.sampling == "log"
    assert next(hp for hp in space.space if hp.name == "stage3/filters").default == 32


def test_a_choice_among_steps_makes_the_spaces_inside_it_conditional(tmp_path):
    doc = _doc(tmp_path)
    model, space = _space(doc)
    conditions = {hp.name: [(c.name, list(c.values)) for c in hp.conditions] for hp in space.space}
    inside = {name: c for name, c in conditions.items() if c}
    assert sorted(c for cs in inside.values() for c in cs) == [
        ("choice", ["basic_residual"]),
        ("choice", ["conv"]),
    ]
    # A trial that takes the plain conv neither has nor reports the residual's filters.
    hp = space.copy()
    hp.values["choice"] = "conv"
    hp.ensure_active_values()
    residual = next(n for n, c in inside.items() if c[0][1] == ["basic_residual"])
    kernel = next(n for n, c in inside.items() if c[0][1] == ["conv"])
    assert residual not in hp.values and kernel in hp.values
    resolved, _ = model.resolve(hp)
    reported = {h.name for h in resolved.hyperparameters}
    assert residual not in reported and kernel in reported


def test_values_of_several_types_are_searched_by_label(tmp_path):
    text = SPEC.replace("vars:\n", "vars:\n  mixed: {tune: choice, values: [null, 2, relu, 2]}\n")
    model, space = _space(_doc(tmp_path, text))
    hp = next(h for h in space.space if h.name == "vars/mixed")
    assert list(hp.values) == ["null", "2", "relu", "2_3"]
    for label, value in (("null", None), ("2", 2), ("relu", "relu")):
        chosen = space.copy()
        chosen.values["vars/mixed"] = label
        chosen.ensure_active_values()
        resolved, _ = model.resolve(chosen)
        assert [h.value for h in resolved.hyperparameters if h.name == "vars/mixed"] == [value]


def test_the_objective_understands_outputs(tmp_path):
    one = resolve_spec(_doc(tmp_path))
    assert objective_of(one, {"output": "main", "metric": "accuracy"}).name == "val_accuracy"
    assert objective_of(one, {"output": "main", "metric": "accuracy"}).direction == "max"
    assert objective_of(one, None).name == "val_loss"
    assert objective_of(one, None).direction == "min"
    assert objective_of(one, {"metric": "accuracy", "split": "train"}).name == "accuracy"
    two = resolve_spec(
        _doc(
            tmp_path,
            SPEC.replace(
                "  - global_avg_pool: {}",
                "  - global_avg_pool: {}\n  - dense: 10\n    name: aux",
            ).replace(
                "outputs:\n",
                "outputs:\n  aux: {from: aux, activation: softmax, loss_weight: 0.3, train_only: true}\n",
            ),
            "two.yaml",
        )
    )
    main = objective_of(two, {"output": "main", "metric": "accuracy"})
    assert (main.name, main.direction) == ("val_main_accuracy", "max")
    assert objective_of(two, {"output": "aux", "metric": "loss"}).name == "val_aux_loss"
    assert objective_of(two, {"metric": "loss"}).name == "val_loss"
    assert objective_of(two, {"metric": "accuracy", "direction": "min"}).direction == "min"
    assert objective_of(two, "val_main_loss").direction == "min"
    with pytest.raises(SpecError, match="output `main` reports no metric `auc`"):
        objective_of(one, {"output": "main", "metric": "auc"})


def _no_spaces(value) -> bool:
    if isinstance(value, dict):
        return not (is_space(value) and isinstance(value["tune"], str)) and all(
            _no_spaces(v) for v in value.values()
        )
    if isinstance(value, list):
        return all(_no_spaces(v) for v in value)
    return True


def _steps(steps):
    out = []
    for step in steps:
        out.append((step.type, step.args))
        for child in step.children:
            out += _steps(child)
    return out


@pytest.mark.parametrize("label", ["basic_residual", "conv"])
def test_best_yaml_round_trip(tmp_path, label):
    """The concrete document resolves, with no search space, to what the trial built."""
    doc = _doc(tmp_path)
    model, space = _space(doc)
    hp = space.copy()
    hp.values.update({"choice": label, "vars/width": 24, "stage3/repeat": 3})
    hp.values["train/optimizer/adam/learning_rate"] = 0.0042
    hp.ensure_active_values()
    tuned, _ = model.resolve(hp)
    document = model.concrete(hp)
    assert _no_spaces(document)
    text = yaml.safe_dump(document, sort_keys=False)
    path = tmp_path / "best.yaml"
    path.write_text(text)
    again = resolve_spec(str(path))
    assert again.hyperparameters == []
    assert _steps(again.network) == _steps(tuned.network)
    assert again.train == tuned.train
    assert again.train["optimizer"]["adam"]["learning_rate"] == 0.0042
    assert document["vars"]["width"] == 24
    assert list(document["network"][1]) == [label]


def test_a_block_argument_default_is_replaced_where_it_is_written(tmp_path):
    text = """
spec: 1
name: blockargs
input: [8, 8, 1]
blocks:
  unit:
    args: {filters: {tune: int, min: 4, max: 12, step: 4}}
    body:
      - conv: {filters: $filters, kernel: 3, padding: same}
network:
  - unit: {}
    name: body
  - global_avg_pool: {}
  - dense: 10
"""
    doc = _doc(tmp_path, text)
    model, space = _space(doc)
    assert [hp.name for hp in space.space] == ["body/filters"]
    hp = space.copy()
    hp.values["body/filters"] = 8
    document = model.concrete(hp)
    assert document["blocks"]["unit"]["args"]["filters"] == 8


def test_a_space_resolved_once_per_use_is_refused(tmp_path):
    text = """
spec: 1
name: twice
input: [8, 8, 1]
blocks:
  unit:
    args: {}
    body:
      - conv: {filters: {tune: int, min: 4, max: 12, step: 4}, kernel: 3, padding: same}
network:
  - unit: {}
    name: a
  - unit: {}
    name: b
  - global_avg_pool: {}
  - dense: 10
"""
    with pytest.raises(SpecError, match="resolved once per use"):
        _space(_doc(tmp_path, text))


def test_an_unused_space_gets_its_default(tmp_path):
    text = (
        SPEC
        + "blocks:\n  spare:\n    args: {}\n    body:\n      - dense: {units: {tune: int, min: 3, max: 9, default: 5}}\n"
    )
    doc = _doc(tmp_path, text)
    document = concrete_document(SpaceIndex(doc), {})
    assert document["blocks"]["spare"]["body"][0]["dense"]["units"] == 5
    assert document["network"][1] == {"basic_residual": {"filters": 8}}  # first value, min
    assert document["vars"]["width"] == 16
    assert _no_spaces(document)


@pytest.mark.parametrize("label", ["basic_residual", "conv"])
def test_a_named_step_choice_names_its_hyperparameter_and_the_chosen_step(tmp_path, label):
    text = SPEC.replace(
        "  - tune: choice\n    values:", "  - tune: choice\n    name: middle\n    values:"
    )
    doc = _doc(tmp_path, text)
    model, space = _space(doc)
    names = {hp.name for hp in space.space}
    assert {"middle", "middle/basic_residual/filters", "middle/conv/kernel"} <= names
    assert not any(n == "choice" or n.startswith("choice/") for n in names)
    hp = space.copy()
    hp.values["middle"] = label
    hp.ensure_active_values()
    tuned, _ = model.resolve(hp)
    assert tuned.network[1].name == "middle"
    # best.yaml keeps the name on the chosen step, so it builds the same layers.
    document = model.concrete(hp)
    assert document["network"][1]["name"] == "middle" and label in document["network"][1]
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert _steps(resolve_spec(str(path)).network) == _steps(tuned.network)


def test_a_named_step_choice_refuses_names_on_its_steps(tmp_path):
    text = SPEC.replace(
        "  - tune: choice\n    values:", "  - tune: choice\n    name: middle\n    values:"
    )
    text = text.replace(
        "      - conv: {filters: 8, kernel: {tune: choice, values: [3, 5]}}",
        "      - conv: {filters: 8, kernel: {tune: choice, values: [3, 5]}}\n        name: other",
    )
    with pytest.raises(SpecError) as e:
        resolve_spec(_doc(tmp_path, text))
    message = str(e.value)
    assert "network[1].values[1].name: the choice is named, so its steps take that name" in message
    assert "spec.yaml:17:9" in message  # the `name` of the second value
