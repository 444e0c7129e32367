"""The shape check (`blockspec validate --shapes`, `builder.shapes.check_shapes`): a symbolic build
with no weight allocated, shape errors at the step (and where a block is used), and each output's
shape checked against its loss and the data's labels."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

from blockspec.builder.resolve import resolve_spec

pytest.importorskip("keras")

from blockspec.builder.shapes import check_shapes  # noqa: E402

HEAD = "spec: 1\nname: shapes\ninput: [16, 16, 3]\n"


def _problems(tmp_path, body: str):
    path = tmp_path / "shapes.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    return check_shapes(resolve_spec(str(path)))


def test_a_dense_on_a_feature_map_before_a_class_loss_is_refused_at_the_dense(tmp_path):
    (problem,) = _problems(
        tmp_path,
        """
        network:
          - conv: {filters: 8, kernel: 3}
          - dense: 10
            name: main
        outputs:
          main: {activation: softmax, loss: sparse_categorical_crossentropy}
        """,
    )
    assert problem.path == "network[1].dense"
    assert problem.mark is not None and problem.mark.line == 7
    assert problem.message.startswith(
        "output `main` reads this step, of shape (batch, 14, 14, 10): "
        "`sparse_categorical_crossentropy` compares it with one class id per example"
    )
    assert "global_avg_pool" in problem.message


def test_the_default_loss_is_checked_too_and_said_to_be_the_default(tmp_path):
    (problem,) = _problems(tmp_path, "network:\n  - conv: {filters: 8, kernel: 3}\n")
    assert "(the default loss)" in problem.message
    assert problem.path == "network[0].conv"


def test_a_regression_loss_wants_one_number_per_example(tmp_path):
    (problem,) = _problems(
        tmp_path,
        """
        network:
          - global_avg_pool: {}
          - dense: 4
            name: main
        outputs:
          main: {loss: mse}
        """,
    )
    assert "`mse` compares it with one number per example" in problem.message
    assert "(batch, 1)" in problem.message


def test_fewer_scores_than_the_data_has_classes(tmp_path):
    (problem,) = _problems(
        tmp_path,
        """
        network:
          - global_avg_pool: {}
          - dense: 5
        train: {data: {source: digits}}
        """,
    )
    assert "the data (`digits`) has 10 classes, but it gives 5 scores" in problem.message


def test_a_shape_error_in_a_block_names_the_step_and_where_the_block_is_used(tmp_path):
    (problem,) = _problems(
        tmp_path,
        """
        blocks:
          unit:
            args: {k: 3}
            body:
              - conv: {filters: 8, kernel: $k}
        network:
          - conv: {filters: 8, kernel: 3}
          - unit: {k: 30}
          - global_avg_pool: {}
          - dense: 10
        """,
    )
    assert problem.path == "blocks.unit.body[0].conv"
    assert problem.mark is not None and problem.mark.line == 9
    assert problem.message.endswith("(in block `unit`, used at network[1])")


def test_a_good_spec_has_no_problem_and_no_weight_is_allocated(tmp_path):
    from keras.src.backend.common import global_state

    queue = global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)
    before_queue = len(queue)
    before_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # 16*16*3 inputs x 200,000 units: 153.6 million weights, 614 MB if they were allocated.
    problems = _problems(
        tmp_path,
        """
        network:
          - flatten: {}
          - dense: 200000
          - dense: 10
        """,
    )
    assert problems == []
    assert len(queue) == before_queue
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_rss
    assert grown < 300_000, f"the check grew the process by {grown:,} KiB"


def test_the_parameter_limit_is_part_of_the_check(tmp_path):
    (problem,) = _problems(tmp_path, "network:\n  - flatten: {}\n  - dense: 10000000\n")
    assert "more than the limit of 1,000,000,000" in problem.message


@pytest.mark.parametrize("name", ["digits_googlenet", "digits_lstm", "nin_cifar"])
def test_zoo_specs_pass(name):
    assert check_shapes(resolve_spec(name)) == []


def test_validate_shapes_on_the_command_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "network:\n  - conv: {filters: 8, kernel: 3}\n  - dense: 10\n")
    plain = subprocess.run(
        [sys.executable, "-m", "blockspec.cli", "validate", str(path)],
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 0, plain.stderr
    shaped = subprocess.run(
        [sys.executable, "-m", "blockspec.cli", "validate", "--shapes", str(path)],
        capture_output=True,
        text=True,
    )
    assert shaped.returncode == 2
    assert "bad.yaml:6:5  network[1].dense: output `output` reads this step" in shaped.stderr
    assert "Traceback" not in shaped.stderr
