"""What the command-line entry points share: --set overrides and one-line errors instead of tracebacks."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings

from workbench.errors import WorkbenchError


def add_config_arguments(parser: argparse.ArgumentParser, default: str = "baseline") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=5 (repeatable)")


def quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter and three known-harmless library warnings hide the output
    that matters; real errors still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # tf.function retracing notices: sweeps build one model per trial, so retracing is expected.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # Our tf.data input is shuffled by design; Keras warns about its own unused shuffle flag.
    warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed")
    # MLflow's schema hint for integer label columns in the dataset manifest (it has no missing values).
    warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer column")
    warnings.filterwarnings("ignore", message=r"The specified dataset source can be interpreted in multiple ways")


@contextlib.contextmanager
def user_errors():
    """WorkbenchError -> `error: ...` on one line, exit 2; Ctrl-C -> exit 130 without a traceback."""
    try:
        yield
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
