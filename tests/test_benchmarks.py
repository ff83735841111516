"""The benchmark scripts run (their figures are the README's; a broken import shows only when run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_script(script: str, *args: str, timeout: int) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_the_throughput_benchmark_runs_every_row_and_writes_its_table(tmp_path):
    out = tmp_path / "throughput.json"
    tiny = ["--steps", "1", "--rounds", "1", "--warmup", "1"]
    run_script("throughput.py", *tiny, "--json", str(out), timeout=300)
    result = json.loads(out.read_text())
    assert result["rows"][0]["pipeline"] == "original"  # the original way is the first row
    assert len(result["images_per_second"]) == len(result["rows"])
    assert all(v > 0 for v in result["images_per_second"].values())
    assert result["ratio_default_over_original"] > 0


@pytest.mark.parametrize(
    "script", ["duplicates.py", "predict_speed.py", "shipped_model.py", "sweep_pruning.py"]
)
def test_the_other_benchmarks_import(script):
    run_script(script, "--help", timeout=120)
