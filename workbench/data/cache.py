"""Decoded faces cached on disk, keyed by the source files' digest and the preprocessing parameters.

Each entry is a folder of .npy arrays written to a temporary folder and renamed into place, so a
killed run never leaves a half-written entry behind, and a second load memory-maps the arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from workbench import processes
from workbench.data.faces import Faces, Skipped

CACHE_VERSION = 1  # bump when decoding changes in a way the parameters don't show
ARRAYS = ("images", "labels", "groups", "splits", "ids")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fer-workbench"


def cache_root(configured: str | None) -> Path:
    """`data.cache_dir` when set, else the user's cache."""
    return Path(configured).expanduser() if configured else default_cache_dir()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sources_digest(root: Path, files: Iterable[Path], workers: int | None = None) -> str:
    """Content digest of the files read (names relative to root), independent of where root lies."""
    files = sorted(set(files))
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        digests = list(pool.map(file_digest, files))
    h = hashlib.sha256()
    for path, digest in zip(files, digests):
        name = path.relative_to(root) if path.is_relative_to(root) else path.name
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def cache_key(fmt: str, source_digest: str, params: dict) -> str:
    blob = json.dumps(
        {"v": CACHE_VERSION, "format": fmt, "sources": source_digest, "params": params},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def load(cache_dir: Path, key: str) -> Faces | None:
    if cache_dir.is_dir():
        # a run that only reads the cache also clears dead writers' temps
        drop_stale_temps(cache_dir)
    entry = cache_dir / key
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        shutil.rmtree(entry, ignore_errors=True)  # no marker: not a complete entry, decode again
        return None
    try:
        meta = json.loads(meta_path.read_text())
        arrays = {
            name: np.load(entry / f"{name}.npy", mmap_mode="r" if name == "images" else None)
            for name in ARRAYS
        }
    except (OSError, ValueError, KeyError):
        shutil.rmtree(entry, ignore_errors=True)  # damaged entry: drop it, decode again
        return None
    return Faces(
        **arrays,
        format=meta["format"],
        path=meta["path"],
        digest=meta["digest"],
        skipped=[Skipped(**s) for s in meta["skipped"]],
    )


def drop_stale_temps(cache_dir: Path) -> None:
    """Temp folders (`.<key>-<pid>-*`) of writers that died (kill -9, power cut) would stay forever:
    FER-2013's is 421 MB. A live writer's is left alone."""
    for tmp in cache_dir.glob(".*-*-*"):
        parts = tmp.name[1:].split("-")
        if len(parts) >= 3 and parts[1].isdigit() and not processes.alive(int(parts[1])):
            shutil.rmtree(tmp, ignore_errors=True)


def store(cache_dir: Path, key: str, faces: Faces) -> bool:
    """Write the entry; False (and a one-line note) when the folder cannot take it: the run goes on
    without the cache rather than failing on a read-only or full disk."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        drop_stale_temps(cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-{os.getpid()}-", dir=cache_dir))
    except OSError as err:
        _note_not_cached(cache_dir, err)
        return False
    try:
        for name in ARRAYS:
            array = getattr(faces, name)
            np.save(tmp / f"{name}.npy", array.astype(str) if array.dtype == object else array)
        meta = {
            "format": faces.format,
            "path": faces.path,
            "digest": faces.digest,
            "skipped": [asdict(s) for s in faces.skipped],
        }
        # meta.json last: its presence marks a complete entry.
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, cache_dir / key)
        except OSError:
            pass  # another process stored the same entry first; theirs is identical
    except OSError as err:
        _note_not_cached(cache_dir, err)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _note_not_cached(cache_dir: Path, err: OSError) -> None:
    reason = err.strerror or f"{err}: is the disk full?"  # numpy's short write has no errno
    print(
        f"note: decoded faces not cached in {cache_dir} ({reason}); the next run decodes again "
        "(set data.cache_dir to a writable folder)",
        file=sys.stderr,
    )
