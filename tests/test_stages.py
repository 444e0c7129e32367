"""(1.1) `train.freeze` and `train.stages`: validate's refusals, frozen layers (batch norms
included) unchanged through training, two stages in one run, and `--resume` inside a stage."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from blockspec.builder import SpecError, resolve_spec

SPEC = """\
spec: 1
name: staged
input: [8, 8, 1]
network:
  - conv: {filters: 4, kernel: 3}
    name: stem
  - batch_norm: {}
    name: stem_bn
  - global_avg_pool: {}
  - dense: 10
    name: main
outputs:
  main: {activation: softmax}
train:
  batch_size: 64
  data: {source: digits}
"""
TWO_STAGES = """\
  stages:
    - {epochs: 1, freeze: ["stem*"], optimizer: {adam: {learning_rate: 0.01}}}
    - {epochs: 2, optimizer: {adam: {learning_rate: 0.001}}}
"""


def write(tmp_path, text: str):
    path = tmp_path / "staged.yaml"
    path.write_text(text)
    return path


def problems(path) -> list[str]:
    with pytest.raises(SpecError) as info:
        resolve_spec(str(path))
    return [str(p) for p in info.value.problems]


# ----------------------------------------------------------------------------- validate
def test_a_freeze_pattern_that_matches_nothing_is_refused_where_written(tmp_path):
    path = write(tmp_path, SPEC + '  freeze: [stme, "conv[1-3]*"]\n')
    found = problems(path)
    assert any(
        "staged.yaml:17:12" in p and "`stme` matches no step" in p and "`stem`" in p for p in found
    ), found
    assert any("freeze[1]" in p and "conv[1-3]*" in p for p in found), found


def test_freeze_patterns_choose_steps_and_their_nested_steps(tmp_path):
    from blockspec.builder.resolve.train_freeze import chosen_steps

    resolved = resolve_spec(str(write(tmp_path, SPEC + "  freeze: ['stem*']\n")))
    assert resolved.train_config.freeze == ("stem*",)
    assert chosen_steps(resolved.network, ["stem*"]) == {"stem", "stem_bn"}


def test_stage_keys_and_the_conflicts_are_refused_where_written(tmp_path):
    text = SPEC.replace("  batch_size", "  epochs: 4\n  freeze: [stem]\n  batch_size") + (
        "  stages:\n"
        "    - {epochs: 1, frezee: [stem]}\n"
        "    - {freeze: [nothere], optimizer: {adam: {learning_rate: -1}}}\n"
    )
    found = "\n".join(problems(write(tmp_path, text)))
    assert "train.epochs: give `epochs` in each of `train.stages`" in found
    assert "train.freeze: give `freeze` in each of `train.stages`" in found
    assert "train.stages[0].frezee: unknown stage key `frezee`" in found and "`freeze`" in found
    assert "train.stages[1]: a stage needs `epochs`" in found
    assert "train.stages[1].freeze[0]: `nothere` matches no step" in found
    assert "train.stages[1].optimizer.adam.learning_rate" in found
    assert "staged.yaml:21:" in found  # the second stage's line


def test_stages_count_epochs_on(tmp_path):
    config = resolve_spec(str(write(tmp_path, SPEC + TWO_STAGES))).train_config
    assert config.epochs == 3
    assert [(s.first_epoch, s.end) for s in config.stages] == [(0, 1), (1, 3)]
    assert config.stages[0].freeze == ("stem*",) and config.stages[1].freeze == ()
    assert config.stages[1].optimizer.args == {"learning_rate": 0.001}


# ----------------------------------------------------------------------------- training
class Snapshots(keras.callbacks.Callback):
    """Every weight of the model (moving statistics included) at the start and after each
    epoch, by variable path."""

    def __init__(self):
        super().__init__()
        self.at: dict[str, dict[str, np.ndarray]] = {}

    def take(self, key: str) -> None:
        self.at[key] = {w.path: np.array(w.numpy()) for w in self.model.weights}

    def on_train_begin(self, logs=None):
        self.at.setdefault("start", None) or self.take("start")

    def on_epoch_end(self, epoch, logs=None):
        self.take(f"epoch{epoch + 1}")


def changed(before: dict, after: dict, prefix: str) -> dict[str, bool]:
    return {k: not np.array_equal(before[k], after[k]) for k in before if k.split("/")[0] == prefix}


@pytest.mark.slow
def test_frozen_steps_and_their_batch_norm_statistics_stay_unchanged(tmp_path):
    from blockspec.training import trainer

    resolved = resolve_spec(str(write(tmp_path, SPEC + "  epochs: 1\n  freeze: ['stem*']\n")))
    snaps = Snapshots()
    trainer.train(resolved, tmp_path / "run", callbacks=[snaps], verbose=0)
    start, end = snaps.at["start"], snaps.at["epoch1"]
    bn = changed(start, end, "stem_bn")
    assert len(bn) == 4 and not any(bn.values()), bn  # gamma, beta, moving mean and variance
    assert not any(changed(start, end, "stem").values())
    assert all(changed(start, end, "main_dense").values())


@pytest.mark.slow
def test_two_stages_run_in_one_run_then_resume_inside_the_second(tmp_path, capsys):
    from blockspec.training import trainer

    resolved = resolve_spec(str(write(tmp_path, SPEC + TWO_STAGES)))
    snaps = Snapshots()

    class StopAfterStageOne(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # after the checkpoint of epoch 1 is written
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        trainer.train(resolved, out, callbacks=[snaps, StopAfterStageOne()], verbose=0)
    first = capsys.readouterr().out
    assert "Stage 1 of 2: epochs 1-1, freezing stem* (2 of 6 layers frozen)" in first
    assert not any(changed(snaps.at["start"], snaps.at["epoch1"], "stem").values())
    assert not any(changed(snaps.at["start"], snaps.at["epoch1"], "stem_bn").values())

    again = Snapshots()
    result = trainer.train(resolved, out, resume=True, callbacks=[again], verbose=0)
    text = capsys.readouterr().out
    assert "Resuming" in text and "after epoch 1 of 3" in text
    assert (
        "Stage 2 of 2: epochs 2-3, training every step (1 of 6 layers frozen, 1 of them batch "
        "norms kept in inference mode)" in text
    )
    assert "Stage 1 of 2" not in text
    assert result.epochs == 3 and result.history["epoch"] == [0, 1, 2]
    assert all(changed(snaps.at["epoch1"], again.at["epoch3"], "stem").values())
    # Keras' fine-tuning guide: the batch norm of a step unfrozen for fine-tuning stays in
    # inference mode; its statistics and scale do not move.
    assert not any(changed(snaps.at["epoch1"], again.at["epoch3"], "stem_bn").values())
