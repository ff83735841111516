"""User-facing errors: printed as one line by the command-line entry points, never as a traceback."""


class WorkbenchError(Exception):
    """Bad input or configuration the user can fix; the message names the file/field and the fix."""
