"""The package as a user installs it: the built wheel in a fresh environment, run from an empty folder."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import pytest
from conftest import REPO, SMALL_NET

from workbench import CLASS_NAMES

pytestmark = pytest.mark.slow  # builds a wheel and a fresh environment

PHOTO = "angry_actor_279.jpg"  # a shipped ExpW photo with one face


def test_the_built_wheel_runs_a_baseline_and_predicts_a_photo_from_an_empty_folder(tmp_path):
    src = tmp_path / "src"  # a copy, so that building leaves nothing in the working tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("workbench", "experiments"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("fer_workbench-*.whl")

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=300)
    site = Path(
        subprocess.run(
            [
                fresh / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # The dependencies come from the test's own environment (no network); the project only from the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            fresh / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env["BROWSER_PATH"] = "/nonexistent"  # PNG export is not what this test is about

    def in_empty(*cmd):
        return subprocess.run(cmd, cwd=empty, env=env, capture_output=True, text=True, timeout=600)

    done = in_empty(
        fresh / "bin" / "fer-workbench",
        "run",
        "baseline",
        "--set",
        "train.epochs=1",
        "--set",
        "data.max_faces=700",
        *(a for s in SMALL_NET for a in ("--set", s)),  # the wheel is under test, not the model
        "--set",
        f"data.cache_dir={tmp_path / 'cache'}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # the wheel's own sample
    assert f"on {site / 'workbench' / 'samples' / 'fer2013_sample.csv.gz'}" in done.stdout
    assert "test accuracy" in done.stdout and (empty / "mlruns" / "mlflow.db").is_file()

    # `predict PHOTO` with no other argument: the shipped model, MTCNN, an annotated copy of the photo
    shutil.copy(REPO / "workbench" / "samples" / "expw" / "origin" / PHOTO, empty / "photo.jpg")
    done = in_empty(fresh / "bin" / "python", "-m", "workbench.predict", "photo.jpg")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("using the shipped model")
    assert str(site / "workbench" / "shipped" / "MODEL_CARD.md") in done.stdout
    before = cv2.imread(str(empty / "photo.jpg"))
    after = cv2.imread(str(empty / "predictions" / "photo.annotated.jpg"))
    assert after.shape == before.shape and (after != before).any()  # boxes and labels drawn
    with open(empty / "predictions" / "predictions.csv", newline="") as f:
        labels = [row["label"] for row in csv.DictReader(f)]
    assert labels and set(labels) <= set(CLASS_NAMES)

    listing = subprocess.run(
        [fresh / "bin" / "fer-workbench"], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0 and all(
        c in listing.stdout for c in ("run", "sweep", "reproduce", "predict", "compare")
    )
