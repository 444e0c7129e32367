"""The distribution: one import package, `blockspec`, whose wheel carries the zoo.

The wheel is built from the repository, unpacked into a folder outside it and put first on the
path of a fresh interpreter that runs in another folder, beside a user's own `blocks/`,
`training.py` and `cli.py` that must not shadow blockspec's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import blockspec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            out,
            ROOT,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (path,) = out.glob("blockspec-*.whl")
    return path


def test_wheel_holds_one_package_with_the_zoo(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"blockspec"}
    assert "blockspec/specs/googlenet.yaml" in names
    assert "blockspec/specs/examples/digits_googlenet.yaml" in names
    assert "blockspec/specs/examples/digits_tune.yaml" in names
    assert "blockspec/specs/references/googlenet.yaml" in names
    assert "blockspec/builder/keras_layers.json" in names
    assert "blockspec/cli.py" in names
    assert not any(
        n.startswith(("blockspec/tests/", "blockspec/bench/", "blockspec/tools/")) for n in names
    )
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "blockspec = blockspec.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_installed_wheel_validates_and_builds_a_zoo_spec_beside_shadowing_modules(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    project = tmp_path / "project"  # a user's project with names blockspec once took
    (project / "blocks").mkdir(parents=True)
    (project / "blocks" / "__init__.py").write_text(
        "raise ImportError('the user blocks package')\n"
    )
    (project / "training.py").write_text("raise ImportError('the user training module')\n")
    (project / "cli.py").write_text("raise ImportError('the user cli module')\n")
    env = os.environ | {"PYTHONPATH": f"{project}{os.pathsep}{site}", "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(*args):
        return subprocess.run(
            [sys.executable, *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = run("-m", "blockspec.cli", "validate", "digits_googlenet")
    assert done.returncode == 0, done.stderr
    assert "ok   digits_googlenet" in done.stdout
    code = (
        "import blockspec; from blockspec import build_model; "
        "m = build_model('resnet18', overrides={'vars.classes': 10, 'input': [32, 32, 3]}); "
        "print(blockspec.__file__); print(m.count_params())"
    )
    done = run("-c", code)
    assert done.returncode == 0, done.stderr
    file, params = done.stdout.split()[-2:]
    assert Path(file).is_relative_to(site)
    assert int(params) > 11_000_000
    version = run("-m", "blockspec.cli", "--version")
    assert version.stdout.strip() == f"blockspec {blockspec.__version__}"


def test_version_flag(capsys):
    from blockspec import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"blockspec {blockspec.__version__}"
