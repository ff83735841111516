"""Whether a process still runs: how leftovers of killed processes (cache temps, checkpoints, study
runs) are told from those of live ones on the same machine."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only the existence check is made
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
