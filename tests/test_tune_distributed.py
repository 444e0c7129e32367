"""A distributed search on keras-tuner's chief/worker protocol: a chief and two workers on 127.0.0.1."""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tune_search import SPEC

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_a_chief_and_two_workers(tmp_path):
    spec = tmp_path / "tiny_tune.yaml"
    spec.write_text(SPEC.replace("max_trials: 2", "max_trials: 4"))
    out, port = tmp_path / "out", free_port()
    base = [sys.executable, str(ROOT / "cli.py"), "tune", str(spec), "--out", str(out)]
    base += ["--oracle", f"127.0.0.1:{port}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("chief", "w1", "w2")}
    procs = {
        "chief": subprocess.Popen(
            [*base, "--chief"], env=env, stdout=logs["chief"], stderr=subprocess.STDOUT
        )
    }
    try:
        deadline = time.time() + 120
        while not listening(port):
            assert procs["chief"].poll() is None, (tmp_path / "chief.log").read_text()
            assert time.time() < deadline, "the chief never listened"
            time.sleep(0.2)
        for n, name in ((1, "w1"), (2, "w2")):
            procs[name] = subprocess.Popen(
                [*base, "--worker", str(n)], env=env, stdout=logs[name], stderr=subprocess.STDOUT
            )
        codes = {name: p.wait(timeout=300) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        for f in logs.values():
            f.close()
    text = {name: (tmp_path / f"{name}.log").read_text() for name in logs}
    assert codes == {"chief": 0, "w1": 0, "w2": 0}, text
    with open(out / "trials.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["COMPLETED"] * 4
    ran = {name: set(re.findall(r"\[tuner\d\] trial (\d+) ", text[name])) for name in ("w1", "w2")}
    assert ran["w1"] and ran["w2"], text  # both workers ran trials
    assert ran["w1"] | ran["w2"] == {r["trial"] for r in table}
    assert not ran["w1"] & ran["w2"]
    assert (out / "best.yaml").is_file() and "Search done: 4 trials" in text["chief"]
