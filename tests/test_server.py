"""The multi-machine topology, natively: a real PostgreSQL, a real `mlflow server` on 127.0.0.1 with
served artifacts, a 1-epoch `workbench.run` and a tiny sweep logging to it over HTTP, read back through
the server's REST API; then a real headless Chromium drives the MLflow UI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from conftest import TINY
from servers import free_port, missing

pytestmark = pytest.mark.slow  # PostgreSQL, an MLflow server and a browser

RUN_NAMES = ("server run lr 0.001", "server run lr 0.003")


def get(base: str, route: str, **query) -> bytes:
    url = f"{base}{route}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    backend = postgres.create_database("mlflow_server")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(root / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if get(base, "/health") == b"OK":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield base, postgres
    os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def logged(mlflow_server, tmp_path_factory):
    """Two 1-epoch runs and a 2-trial sweep, logged over HTTP by separate processes, as remote workers would."""
    base, postgres = mlflow_server
    work = tmp_path_factory.mktemp("client")
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=base,
        TF_CPP_MIN_LOG_LEVEL="3",
        XDG_CACHE_HOME=str(work / "cache"),
    )
    for name, lr in zip(RUN_NAMES, ("0.001", "0.003")):
        sets = TINY + [f"train.learning_rate={lr}", f"tracking.run_name={name}"]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "workbench.run",
                "baseline",
                *(x for s in sets for x in ("--set", s)),
            ],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    storage = postgres.create_database("optuna_server")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.sweep",
            "--trials",
            "2",
            "--study",
            "srv",
            "--no-final",
            *(x for s in TINY for x in ("--set", s)),
        ],
        cwd=work,
        env=dict(env, OPTUNA_STORAGE=storage),
        check=True,
        capture_output=True,
        timeout=300,
    )
    exp_id = json.loads(
        get(base, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="baseline")
    )["experiment"]["experiment_id"]
    runs = post(
        base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 100}
    )["runs"]
    return base, exp_id, runs


def by_name(runs, name):
    return next(r for r in runs if r["info"]["run_name"] == name)


def tags(run) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_runs_and_artifacts_come_back_through_the_rest_api(logged):
    base, exp_id, runs = logged
    run = by_name(runs, RUN_NAMES[0])
    assert run["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert {"test_accuracy", "test_macro_f1", "test_balanced_accuracy", "val_macro_f1"} <= set(
        metrics
    )
    assert params["train.learning_rate"] == "0.001" and params["protocol"] == "split-then-resample"
    run_id = run["info"]["run_id"]
    listing = json.loads(get(base, "/api/2.0/mlflow/artifacts/list", run_id=run_id, path="figures"))
    names = {f["path"] for f in listing["files"]}
    assert {"figures/confusion_matrix.html", "figures/curves.html"} <= names
    if shutil.which("chromium"):
        png = get(base, "/get-artifact", path="figures/confusion_matrix.png", run_uuid=run_id)
        assert png.startswith(b"\x89PNG")
    config = get(base, "/get-artifact", path="config.yaml", run_uuid=run_id).decode()
    assert "learning_rate: 0.001" in config
    history = json.loads(
        get(base, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="val_accuracy")
    )
    assert len(history["metrics"]) == 1


def test_the_logged_model_loads_through_the_server(logged, monkeypatch):
    import mlflow
    import numpy as np

    base, _, runs = logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", base)
    mlflow.set_tracking_uri(base)
    model = mlflow.pyfunc.load_model(f"runs:/{by_name(runs, RUN_NAMES[0])['info']['run_id']}/model")
    # 32x32 grey, as TINY trains
    probs = np.asarray(model.predict(np.zeros((2, 32, 32, 1), np.float32)))
    assert probs.shape == (2, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_sweep_trials_are_nested_runs_on_the_server(logged):
    base, _, runs = logged
    study = [
        r
        for r in runs
        if tags(r).get("sweep.role") == "study" and tags(r).get("optuna.study") == "srv"
    ]
    trials = [
        r
        for r in runs
        if tags(r).get("sweep.role") == "trial" and tags(r).get("optuna.study") == "srv"
    ]
    assert len(study) == 1 and len(trials) == 2
    assert {tags(t)["mlflow.parentRunId"] for t in trials} == {study[0]["info"]["run_id"]}
    assert sorted(tags(t)["optuna.trial"] for t in trials) == ["0", "1"]
    listing = json.loads(
        get(base, "/api/2.0/mlflow/artifacts/list", run_id=study[0]["info"]["run_id"], path="study")
    )
    assert "study/trials.csv" in {f["path"] for f in listing["files"]}


def test_compare_ranks_the_server_runs(logged, tmp_path, monkeypatch, capsys):
    from workbench.studies.ranking import main as compare_main

    base, _, runs = logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", base)
    ids = [by_name(runs, n)["info"]["run_id"] for n in RUN_NAMES]
    assert (
        compare_main(
            [
                *["--runs", *ids, "--metric", "test_accuracy"],
                *["--out", str(tmp_path / "c.html"), "--to-mlflow"],
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(rows) == 2 and all(i[:8] in out for i in ids)
    accs = [by_name(runs, n)["data"]["metrics"] for n in RUN_NAMES]
    accs = sorted(
        (next(m["value"] for m in a if m["key"] == "test_accuracy") for a in accs), reverse=True
    )
    assert f"{accs[0]:.4f}" in rows[0]  # ranked best first
    html = (tmp_path / "c.html").read_text()
    assert "Per-class test F1 across runs" in html and "Validation curves" in html
    import mlflow

    client = mlflow.MlflowClient(base)
    (logged_compare,) = client.search_runs(
        [client.get_experiment_by_name("comparisons").experiment_id]
    )
    assert set(logged_compare.data.tags["compared_runs"].split(",")) == set(ids)
    assert "compare/table.txt" in {
        a.path for a in client.list_artifacts(logged_compare.info.run_id, "compare")
    }
    with pytest.raises(SystemExit) as exit_:
        compare_main(["--runs", "0123456789abcdef0123456789abcdef"])
    assert exit_.value.code == 2 and "no such run" in capsys.readouterr().err


def test_browser_finds_runs_compares_them_and_shows_the_confusion_matrix(logged, tmp_path):
    if not shutil.which("chromium"):
        missing("Debian's chromium", "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    base, exp_id, runs = logged
    ids = [by_name(runs, n)["info"]["run_id"] for n in RUN_NAMES]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)

        # MLflow 3's UI opens on its GenAI overview; the training runs table is the "Model training" view.
        page.goto(f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning")
        for name in RUN_NAMES:
            page.get_by_text(name, exact=True).first.wait_for()
        page.screenshot(path=shots / "1-experiment.png")

        runs_param = urllib.parse.quote(json.dumps(ids))
        page.goto(
            f"{base}/#/compare-runs?runs={runs_param}&experiments={urllib.parse.quote(json.dumps([exp_id]))}"
        )
        page.get_by_text("test_accuracy").first.wait_for()
        for name in RUN_NAMES:
            page.get_by_text(name).first.wait_for()
        page.screenshot(path=shots / "2-compare.png", full_page=True)

        page.goto(
            f"{base}/#/experiments/{exp_id}/runs/{ids[0]}/artifacts/figures/confusion_matrix.png"
        )
        page.get_by_text("figures/confusion_matrix.png").first.wait_for()
        # The preview is the PNG itself (620x560), loaded through the server's artifact proxy.
        page.wait_for_function(
            "() => Array.from(document.images).some(i => i.complete && i.naturalWidth >= 600)"
        )
        page.screenshot(path=shots / "3-confusion-matrix.png")
        browser.close()
    print(f"screenshots: {shots}")
    assert len(list(shots.glob("*.png"))) == 3
