"""User-facing errors: printed as one line by the command-line entry points, never as a traceback."""


class WorkbenchError(Exception):
    """Bad input or configuration the user can fix; the message names the file/field and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop, kill, a scheduler's limit), raised in the main thread so runs end KILLED
    and temp files are cleaned like on Ctrl-C; the process then exits 128 + the signal, as unhandled."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


# The signal that asked this process to stop, once one did: an exception that TensorFlow raises in
# place of Terminated (the signal landed while it traced a graph) is still the stop, not a failure.
_STOPPED_BY: list[int] = []


def stopped_by() -> int | None:
    return _STOPPED_BY[-1] if _STOPPED_BY else None


def is_stop(err: BaseException) -> bool:
    """`err` ends this process because it was asked to stop (Ctrl-C, SIGTERM), not because it failed."""
    return isinstance(err, KeyboardInterrupt) or stopped_by() is not None


def note_stop(signum: int | None) -> None:
    """Record the stop (None: a new command starts, nothing asked it to stop)."""
    if signum is None:
        _STOPPED_BY.clear()
    else:
        _STOPPED_BY.append(signum)
