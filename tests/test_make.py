"""`make help` lists every target of the Makefile with its comment."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_make_help_lists_every_phony_target_with_its_comment():
    done = subprocess.run(
        ["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    listed = dict(line.split(None, 1) for line in done.stdout.strip().splitlines())
    phony = re.search(r"^\.PHONY: (.*)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    assert set(phony) <= set(listed), set(phony) - set(listed)
    assert listed["run"].startswith("The main job")
