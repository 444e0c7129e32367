"""Hostile specs: refused in under 2 s with a clear message, and nothing in them is executed.

Every payload below would create a marker file if anything ran it (`yaml.unsafe_load`, `eval`,
a Keras `Lambda`); the tests check the marker never appears, and that the payloads are real
(the unsafe loader or `eval` does create it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blockspec import cli
from blockspec.builder.errors import SpecError
from blockspec.builder.resolve import resolve_spec

ROOT = Path(__file__).resolve().parent.parent
HEAD = "spec: 1\ninput: [8]\n"


def _hostile(marker: Path) -> dict[str, tuple[str, str]]:
    """name -> (spec text, regex the refusal must match). `marker` is what a payload would create."""
    touch = f"touch {marker}"
    big_flow = ", ".join(["1"] * 1_000_000)
    laughs = "".join(
        f"  {b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    return {
        "tag_os_system": (
            f"{HEAD}network:\n  - dense: !!python/object/apply:os.system [{touch!r}]\n",
            r"YAML tag `tag:yaml\.org,2002:python/object/apply:os\.system` is not allowed",
        ),
        "tag_subprocess": (
            f"{HEAD}name: !!python/object/apply:subprocess.check_output [[touch, '{marker}']]\n"
            "network: [dense: 4]\n",
            r"YAML tag `tag:yaml\.org,2002:python/object/apply:subprocess\.check_output`",
        ),
        "tag_open_for_writing": (
            f"{HEAD}description: !!python/object/apply:builtins.open ['{marker}', w]\n"
            "network: [dense: 4]\n",
            r"YAML tag `tag:yaml\.org,2002:python/object/apply:builtins\.open` is not allowed",
        ),
        "tag_top_level": (
            f"!!python/object/apply:os.system [{touch!r}]\n",
            r"YAML tag .*os\.system` is not allowed",
        ),
        "expr_dunder_import": (
            f"{HEAD}network:\n  - dense: \"${{__import__('os').system('{touch}')}}\"\n",
            r"calling `__import__` is not allowed in expressions",
        ),
        "expr_open": (
            f"{HEAD}network:\n  - dense: \"${{open('{marker}', 'w')}}\"\n",
            r"calling `open` is not allowed in expressions",
        ),
        "expr_exec": (
            f"{HEAD}network:\n  - dense:\n      units: ${{exec(\"import os; os.system('{touch}')\")}}\n",
            r"calling `exec` is not allowed in expressions",
        ),
        "expr_subclasses_walk": (
            f'{HEAD}network:\n  - dense: "${{().__class__.__base__.__subclasses__()}}"\n',
            r"attribute access is not allowed in expressions \(`\.__subclasses__`\)",
        ),
        "expr_builtins_name": (
            f'{HEAD}vars: {{b: "${{__builtins__}}"}}\nnetwork: [dense: 4]\n',
            r"the name `__builtins__` is not allowed in expressions",
        ),
        "expr_exponent_bomb": (
            f'{HEAD}network:\n  - dense: "${{10 ** 10 ** 10}}"\n',
            r"exponent too large \(at most 64\)",
        ),
        "expr_tower_bomb": (
            f'{HEAD}network:\n  - dense: "${{9 ** 9 ** 9 ** 9}}"\n',
            r"exponent too large \(at most 64\)",
        ),
        "expr_round_bomb": (
            f'{HEAD}network:\n  - dense: "${{round(5, -10000000)}}"\n',
            r"round\(\) takes ndigits between -16 and 16",
        ),
        "expr_multiplication_bomb": (
            f'{HEAD}vars: {{n: 999999999}}\nnetwork:\n  - dense: "${{n * n * n * n}}"\n',
            r"expression value exceeds 1e\+15",
        ),
        "repeat_bomb": (
            f"{HEAD}network:\n  - dense: 4\n    repeat: 100000000\n",
            r"`repeat` above the limit of 10000: refused",
        ),
        "repeat_expression_bomb": (
            f'{HEAD}network:\n  - dense: 4\n    repeat: "${{10 ** 12}}"\n',
            r"`repeat` above the limit of 10000: refused",
        ),
        "nested_repeat_bomb": (
            f"{HEAD}network:\n  - sequence: [{{dense: 4, repeat: 10000}}]\n    repeat: 10000\n",
            r"the network expands to more than 20000 steps",
        ),
        "million_element_flow_list": (
            f"{HEAD}vars: {{x: [{big_flow}]}}\nnetwork: [dense: 4]\n",
            r"more than 50000 YAML nodes: refused \(limit\)",
        ),
        "million_element_block_list": (
            # 4 bytes an element: just under the 4 MiB file limit
            f"{HEAD}network: [dense: 4]\nitems:\n" + "- 1\n" * 1_000_000,
            r"more than 50000 YAML nodes: refused \(limit\)",
        ),
        "deep_nesting": (
            f"{HEAD}vars: {{x: {'[' * 10_000}{']' * 10_000}}}\nnetwork: [dense: 4]\n",
            r"nesting deeper than 64 levels: refused \(limit\)",
        ),
        "deep_mapping_nesting": (
            f"{HEAD}vars: {{x: {'{a: ' * 10_000}1{'}' * 10_000}}}\nnetwork: [dense: 4]\n",
            r"nesting deeper than 64 levels: refused \(limit\)",
        ),
        "billion_laughs": (
            f"{HEAD}network: [dense: 4]\nvars:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            + laughs,
            r"the document expands to more than 50000 values \(anchors and aliases included\)",
        ),
        "merge_key_bomb": (  # each mapping merges the one before twice: 2**30 keys
            f"{HEAD}network: [dense: 4]\nvars:\n  a0: &a0 {{k: 1, j: 2}}\n"
            + "".join(f"  a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}\n" for i in range(1, 31)),
            r"the document expands to more than 50000 values \(anchors and aliases included\)",
        ),
        "recursive_merge_key": (
            f"{HEAD}network: [dense: 4]\nvars:\n  x: &x {{<<: *x}}\n",
            r"merge keys nest deeper than 64 levels: refused \(limit\)",
        ),
        "recursive_alias": (
            f"{HEAD}network: [dense: 4]\nvars:\n  x: &x [*x, *x]\n",
            r"nesting deeper than 64 levels: refused \(limit\)",
        ),
        "lambda_layer": (
            f"{HEAD}network:\n  - Lambda: {{function: \"lambda x: __import__('os').system('{touch}')\"}}\n",
            r"`Lambda` cannot be used in a spec: it runs Python code",
        ),
        "keras_object_by_module": (
            f"{HEAD}network:\n  - dense: {{units: 4, activation: "
            f"{{class_name: system, module: os, config: {{command: '{touch}'}}}}}}\n",
            r"`activation` names a Keras object by `module`",
        ),
        "huge_integer_literal": (
            f"{HEAD}network:\n  - dense: {'9' * 100_000}\n",
            r"invalid value: not a valid int",
        ),
    }


@pytest.fixture()
def cases(tmp_path):
    marker = tmp_path / "executed.marker"
    written = {}
    for name, (text, pattern) in _hostile(marker).items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        written[name] = (path, pattern)
    return marker, written


def test_each_hostile_spec_is_refused_and_runs_nothing(cases):
    # Time bounds belong in bench/; this asserts what is refused, located, and that nothing runs.
    marker, written = cases
    for name, (path, pattern) in written.items():
        with pytest.raises(SpecError, match=pattern) as info:
            resolve_spec(str(path))
        assert all(p.mark is not None for p in info.value.problems), f"{name}: unlocated"
        assert len(str(info.value)) < 2000, f"{name}: the message itself is a flood"
        assert not marker.exists(), f"{name} executed its payload"


def test_the_cli_refuses_every_hostile_spec_in_one_fresh_process(cases):
    marker, written = cases
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "validate", *(str(p) for p, _ in written.values())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("FAIL ") == len(written)
    assert not marker.exists()


def test_the_payloads_are_real(tmp_path):
    """Control: what the checks above refuse does run under an unsafe loader or `eval`."""
    marker = tmp_path / "executed.marker"
    text, _ = _hostile(marker)["tag_open_for_writing"]
    yaml.unsafe_load(text)
    assert marker.exists()
    marker.unlink()
    eval(f"open({str(marker)!r}, 'w').close()")  # what `${open(...)}` would do under eval
    assert marker.exists()


def test_a_set_override_with_a_tag_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "executed.marker"
    code = cli.main(
        [
            "validate",
            "googlenet",
            "--set",
            f"vars.classes=!!python/object/apply:os.system ['touch {marker}']",
        ]
    )
    assert code == 2
    assert "is not allowed" in capsys.readouterr().err
    assert not marker.exists()


def test_extending_a_python_file_runs_nothing(tmp_path):
    marker = tmp_path / "executed.marker"
    script = tmp_path / "evil.py"
    script.write_text(f"import os\nos.system('touch {marker}')\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("spec: 1\nextends: evil.py\n")
    with pytest.raises(SpecError, match="no zoo spec named `evil.py`"):
        resolve_spec(str(spec))
    spec.write_text(f"spec: 1\nextends: {script}\n")
    with pytest.raises(SpecError, match="a spec must be a mapping"):
        resolve_spec(str(spec))
    assert not marker.exists()


def test_parameter_bomb_is_refused_before_any_weight_is_allocated():
    """`dense: 10**12` after a flatten would need terabytes; it is refused in the builder, fast."""
    pytest.importorskip("keras")
    from blockspec.builder.compile import compile_spec

    spec = resolve_spec(
        {"spec": 1, "input": [64, 64, 3], "network": [{"flatten": {}}, {"dense": 10**12}]}
    )
    from keras.src.backend.common import global_state

    with pytest.raises(SpecError, match=r"the model has 12,289,000,000,000,000 parameters"):
        compile_spec(spec)  # allocating them would end this process
    assert not global_state.get_global_attribute("uninitialized_variables")


def test_a_refused_build_leaves_no_weight_to_allocate_later():
    """A limit or shape refusal drops the deferred weights: the next build does not allocate them."""
    keras = pytest.importorskip("keras")
    from keras.src.backend.common import global_state

    from blockspec.builder.compile import compile_spec

    huge_then_broken = {
        "spec": 1,
        "input": [1000],
        "network": [{"dense": 10**9}, {"conv": {"filters": 3, "kernel": 3}}],
    }
    with pytest.raises(SpecError, match="Keras refused this step"):
        compile_spec(resolve_spec(huge_then_broken))
    assert not global_state.get_global_attribute("uninitialized_variables")
    built = compile_spec(resolve_spec({"spec": 1, "input": [4], "network": [{"dense": 2}]}))
    assert built.model.count_params() == 10
    assert all(v.value is not None for v in built.model.weights)
    assert keras.ops.convert_to_numpy(built.model.weights[0].value).shape == (4, 2)


def test_the_parameter_limit_is_raised_with_a_flag(tmp_path, capsys):
    pytest.importorskip("keras")
    spec = tmp_path / "wide.yaml"
    spec.write_text("spec: 1\ninput: [100]\nnetwork:\n  - dense: 100\n")
    assert cli.main(["build", str(spec), "--limit", "max_parameters=10000"]) == 2
    assert "more than the limit of 10,000" in capsys.readouterr().err
    assert cli.main(["build", str(spec), "--limit", "max_parameters=20000"]) == 0


@pytest.mark.parametrize("command", ["train", "tune"])
def test_train_and_tune_take_the_limits_too(tmp_path, capsys, command):
    pytest.importorskip("keras")
    spec = tmp_path / "wide.yaml"
    spec.write_text("spec: 1\ninput: [100]\nnetwork:\n  - dense: 100\n")
    args = [command, str(spec), "--out", str(tmp_path / "out"), "--limit", "max_steps=0"]
    assert cli.main(args) == 2
    assert "expands to more than 0 steps" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_models_load_in_safe_mode_and_custom_layers_are_registered(tmp_path):
    """No spec can produce a Lambda layer; blockspec's own layers are registered serialisable."""
    keras = pytest.importorskip("keras")
    import numpy as np

    import blockspec.blocks  # noqa: F401  (imports the custom layers)
    from blockspec.builder import build_model

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    ours = [
        c
        for c in subclasses(keras.layers.Layer)
        if c.__module__.startswith(("blockspec.blocks", "blockspec.builder", "blockspec.training"))
    ]
    for cls in ours:
        name = keras.saving.get_registered_name(cls)
        assert name.startswith("blockspec>"), f"{cls.__qualname__} is not registered"
        assert keras.saving.get_registered_object(name) is cls

    model = build_model("googlenet", {"vars.classes": 5, "input": [64, 64, 3]})
    kinds = {type(layer).__name__ for layer in model.layers}  # functional: every layer
    assert "Lambda" not in kinds and "LocalResponseNormalization" in kinds
    path = tmp_path / "googlenet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    for name, value in model(x).items():
        np.testing.assert_allclose(value, loaded(x)[name], atol=1e-5)


def test_expressions_print_no_warning(capfd):
    """`ast.parse` warns on `1if x` to stderr; a spec's expression must not write past the report."""
    import warnings

    from blockspec.builder.expr import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate("1if x else 2", {"x": True}) == 1
    assert capfd.readouterr().err == ""
