"""`python tests/kill_at.py MODULE:NAME before|after ARGS...`: `python -m workbench.run ARGS`, killed by
SIGKILL when MODULE.NAME is called (before it runs, or after it returns): a stop at a chosen instant."""

import importlib
import os
import runpy
import signal
import sys

target, when, *args = sys.argv[1:]
module_name, name = target.split(":")
module = importlib.import_module(module_name)
original = getattr(module, name)


def killed(*a, **kw):
    if when == "after":
        original(*a, **kw)
    os.kill(os.getpid(), signal.SIGKILL)


setattr(module, name, killed)
sys.argv = ["workbench.run", *args]
runpy.run_module("workbench.run", run_name="__main__")
