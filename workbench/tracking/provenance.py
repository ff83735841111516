"""Which code and library versions made a run: tags set on every kind of run."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "tensorflow",
    "keras",
    "mlflow",
    "optuna",
    "imbalanced-learn",
    "scikit-learn",
    "opencv-python-headless",
    "numpy",
    "pandas",
    "plotly",
)


REPO_ROOT = Path(__file__).resolve().parents[2]


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if not commit:
        return {"git_commit": "unknown"}
    return {
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower(),
    }


def provenance_tags() -> dict[str, str]:
    """Which code and library versions made a run: the same tags on every kind of run."""
    return {**git_state(), **package_versions()}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions
