from __future__ import annotations

from pathlib import Path

import pytest

from workbench.cli import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # as the commands do

REPO = Path(__file__).resolve().parent.parent
# A small, fast net for tests of the machinery around training, not of the model.
SMALL_NET = ["model.filters=[8,16,16,16,16]", "model.dense_units=32"]
# ... on a few hundred real faces.
TINY = ["data.max_faces=280", "data.image_size=32", *SMALL_NET, "train.epochs=1"]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store for one test (artifacts beside it)."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for the whole test run (see tests/servers.py)."""
    from servers import start_postgres

    yield from start_postgres()


def _mount(target: Path, *args: str):
    """Mount for one test (real ENOSPC / EROFS, which chmod cannot give root); skipped where not allowed."""
    import subprocess

    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a test file system here ({done.stderr.strip() or 'mount failed'}); needs root"
        )
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 160 KiB tmpfs: writes past that fail with 'No space left on device'."""
    yield from _mount(tmp_path / "small", "-t", "tmpfs", "-o", "size=160k", "tmpfs")


@pytest.fixture
def store_disk(tmp_path: Path):
    """An 8 MiB tmpfs: room for a new MLflow store, not for a reference-model checkpoint."""
    yield from _mount(tmp_path / "store", "-t", "tmpfs", "-o", "size=8m", "tmpfs")


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """An empty folder mounted read-only ('Read-only file system', even for root)."""
    source = tmp_path / "ro-source"
    source.mkdir()
    yield from _mount(tmp_path / "ro", "--bind", "-o", "ro", str(source))
