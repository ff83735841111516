"""Where every benchmark's JSON goes: its figures plus the machine they were measured on, written
atomically (temporary file, then rename)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from workbench.files import write_json_atomic


def machine() -> dict:
    import tensorflow as tf

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def write_results(path: Path, figures: dict) -> Path:
    out = write_json_atomic(path, figures | {"machine": machine()})
    print(f"\nwritten {out}")
    return out
