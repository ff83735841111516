"""The README's pictures: the MLflow UI's runs list and the header of a run's report.html.

    python tools/screenshots.py [--store sqlite:///mlruns/mlflow.db] [--experiment baseline] [--out docs]

Starts `mlflow ui` on a free 127.0.0.1 port (stopped at the end) and drives Debian's Chromium headless.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

UI_VIEW = "workflowType=machine_learning"
COLUMNS = ("test_accuracy", "test_macro_f1", "test_chance_uniform", "beats_chance")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                if r.read() == b"OK":
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: mlflow ui did not answer on {base} within {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    parser.add_argument("--experiment", default="baseline")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    browser_path = shutil.which("chromium")
    if browser_path is None:
        raise SystemExit("error: needs Chromium (apt-get install chromium)")
    client = mlflow.MlflowClient(args.store)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"error: no experiment {args.experiment!r} in {args.store}")
    runs = client.search_runs(
        [experiment.experiment_id],
        "attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    with_report = next(
        r
        for r in runs
        if any(
            a.path == "figures/report.html" for a in client.list_artifacts(r.info.run_id, "figures")
        )
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            args.store,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(base, server)
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
            browser = pw.chromium.launch(
                executable_path=browser_path, headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1900, "height": 700})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs?{UI_VIEW}")
            page.get_by_text(runs[0].info.run_name, exact=True).first.wait_for()
            # the assistant's side panel, if it opened
            close = page.get_by_role("button", name="Close")
            if close.count():
                close.first.click()
            for (
                column
            ) in COLUMNS:  # what a reader wants beside each run (the UI remembers the choice)
                page.get_by_role("button", name="Columns").first.click()
                page.get_by_placeholder("Search").fill(column)
                try:
                    page.get_by_text(column, exact=True).last.click(timeout=5_000)
                except PlaywrightTimeout:
                    print(f"note: no column {column} in this experiment's runs")
                page.keyboard.press("Escape")
            page.wait_for_timeout(1500)
            page.screenshot(path=out / "ui-runs.png")
            folder = mlflow.artifacts.download_artifacts(
                f"runs:/{with_report.info.run_id}/figures", dst_path=tmp, tracking_uri=args.store
            )
            report = browser.new_context(
                offline=True, viewport={"width": 1100, "height": 560}
            ).new_page()
            report.goto((Path(folder) / "report.html").as_uri())
            report.wait_for_selector(".main-svg")
            report.screenshot(path=out / "report-header.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"wrote {out / 'ui-runs.png'} and {out / 'report-header.png'} (report of run {with_report.info.run_id})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
