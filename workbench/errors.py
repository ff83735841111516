"""User-facing errors: printed as one line by the command-line entry points, never as a traceback."""


class WorkbenchError(Exception):
    """Bad input or configuration the user can fix; the message names the file/field and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop, kill, a scheduler's limit), raised in the main thread so runs end KILLED
    and temp files are cleaned like on Ctrl-C; the process then exits 128 + the signal, as unhandled."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum
