"""What the command-line entry points share: --set overrides and one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.abc
import importlib.util
import logging
import os
import signal
import sys
import threading
import warnings

from workbench.errors import Terminated, WorkbenchError, note_stop, stopped_by


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5 (repeatable)",
    )
    add_verbose_argument(parser)


def positive_int(text: str) -> int:
    """argparse type: a count that must be at least 1 (0 would otherwise mean "the default" somewhere)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show TensorFlow's C++ log lines (hidden by default)",
    )


def quiet_tensorflow(verbose: bool = False) -> None:
    """TensorFlow's C++ log lines (start-up chatter, cuInit on a machine without a GPU, and an E-level
    `use_unbounded_threadpool` line per tf.data graph that TF itself calls harmless) and three
    known-harmless library warnings hide the output that matters. Python-level errors still raise;
    `verbose` keeps TensorFlow's own level. Must run before TensorFlow is imported."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # Lines logged while TensorFlow's libraries load ("before absl::InitializeLog()", cudart_stub)
        # ignore that level: the import itself runs with file descriptor 2 silenced.
        if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietImport) for f in sys.meta_path
        ):
            sys.meta_path.insert(0, _QuietImport("tensorflow"))
    # tf.function retracing notices: sweeps build one model per trial, so retracing is expected.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # Our tf.data input is shuffled by design; Keras warns about its own unused shuffle flag.
    warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed")
    # MLflow's schema hint for integer label columns in the dataset manifest (it has no missing values).
    warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer column")
    warnings.filterwarnings(
        "ignore", message=r"The specified dataset source can be interpreted in multiple ways"
    )


@contextlib.contextmanager
def _stderr_fd_silenced():
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds one top-level module (once) and runs its import with stderr silenced at the fd level."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                with _stderr_fd_silenced():
                    load(module)

            spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def user_errors():
    """WorkbenchError -> `error: ...` on one line, exit 2; Ctrl-C -> exit 130 and SIGTERM -> 143
    (the shell's codes for a process the signal ended), without a traceback."""
    previous = None
    note_stop(None)
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if (signum := stopped_by()) is not None:  # the stop, surfacing as another exception
            print("terminated", file=sys.stderr)
            sys.exit(128 + signum)
        if (full := disk_full(err)) is None:
            raise
        print(f"error: {full}", file=sys.stderr)
        sys.exit(2)
    except Terminated as err:
        print("terminated", file=sys.stderr)
        sys.exit(128 + err.signum)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


DISK_FULL = ("No space left on device", "database or disk is full")


def disk_full(err: BaseException) -> str | None:
    """One line for an error that a full disk caused, however deep in a library, else None."""
    text = str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        where = f" writing {err.filename}" if err.filename else ""
        return f"no space left on device{where}; free some space and run the same command again"
    if any(marker in text for marker in DISK_FULL):
        return (
            "no space left on device (the MLflow store or a file it writes); free some space and "
            "run the same command again"
        )
    return None


def _raise_terminated(signum, frame):
    note_stop(signum)
    raise Terminated(signum)


COMMANDS = {
    "run": ("workbench.run", "train, evaluate and log one experiment"),
    "sweep": ("workbench.sweep", "an Optuna study over an experiment's settings"),
    "reproduce": ("workbench.reproduce", "the original project's protocol beside the honest one"),
    "compare": ("workbench.compare", "a table and report of logged runs"),
    "predict": ("workbench.predict", "expressions of the faces in photos and videos"),
}


def main(argv: list[str] | None = None) -> int:
    """`fer-workbench COMMAND ...`: the console script; each command is also `python -m workbench.COMMAND`."""
    import importlib

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        import difflib

        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(
            f"error: unknown command '{argv[0]}'{hint}; commands: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    if not argv or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
        print(
            "usage: fer-workbench COMMAND [--help | arguments]\n\ncommands:\n" + "\n".join(lines),
            file=sys.stdout if argv[:1] in ([], ["-h"], ["--help"]) else sys.stderr,
        )
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
