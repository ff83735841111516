"""Where every benchmark's JSON goes: its figures plus the machine they were measured on, written
atomically (temporary file, then rename)."""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

from workbench.files import write_json_atomic


def cpu_model() -> str:
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return platform.processor()
    return found.group(1).strip() if found else platform.processor()


def machine() -> dict:
    import tensorflow as tf

    from workbench.core.recipe import cpu_has_bf16

    return {
        "cpu": cpu_model(),
        "cpu_bf16": cpu_has_bf16(),
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
