"""The benchmark scripts run (their figures are the README's; a broken import shows only when run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_script(script: str, *args: str, timeout: int) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_the_throughput_benchmark_runs_every_row_and_writes_its_table(tmp_path):
    out = tmp_path / "throughput.json"
    tiny = ["--steps", "1", "--rounds", "1", "--warmup", "1"]
    run_script("throughput.py", *tiny, "--json", str(out), timeout=300)
    result = json.loads(out.read_text())
    assert result["rows"][0]["pipeline"] == "original"  # the original way is the first row
    assert len(result["images_per_second"]) == len(result["rows"])
    assert all(v > 0 for v in result["images_per_second"].values())
    assert result["ratio_default_over_original"] > 0


@pytest.mark.parametrize(
    "script",
    ["duplicates.py", "predict_speed.py", "shipped_model.py", "sweep_pruning.py", "tta_views.py"],
)
def test_the_other_benchmarks_import(script):
    run_script(script, "--help", timeout=120)


@pytest.mark.slow
def test_tta_views_scores_every_mode_on_both_official_test_sets(tmp_path, tracking_store):
    """A small cropping model logged to MLflow, scored on the bundled sample's 350 + 350 faces."""
    import keras
    import mlflow

    from workbench.core.models.registry import make_model
    from workbench.core.settings import TTA_MODES

    # the fixture set MLFLOW_TRACKING_URI first, so it is put back after the test
    mlflow.set_tracking_uri(tracking_store)
    keras.utils.set_random_seed(0)
    with mlflow.start_run():
        model = make_model("vgg", (48, 48, 1), 7, crop=40, filters=[4, 8])
        uri = mlflow.tensorflow.log_model(model, name="model").model_uri
    out = tmp_path / "views.json"
    sample = REPO / "workbench" / "samples" / "fer2013_sample.csv.gz"
    run_script("tta_views.py", uri, "--data", str(sample), "--json", str(out), timeout=600)
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == list(TTA_MODES)
    assert rows[0]["PublicTest"]["gain_over_centre"] == [0.0, 0.0, 0.0]  # "none" is the centre
    for r in rows:
        for name in ("PublicTest", "PrivateTest"):
            low, high = r[name]["accuracy_ci"]
            assert low <= r[name]["accuracy"] <= high and 0 <= r[name]["mcnemar_p"] <= 1
            low, high = r[name]["macro_f1_ci"]
            assert low <= r[name]["macro_f1"] <= high


@pytest.mark.slow
def test_time_to_accuracy_tables_each_recipe_and_reads_finished_runs_back(tmp_path):
    """Three recipes for one epoch on part of the bundled sample: a row each with its PublicTest curve
    and PrivateTest interval, paired against the first; run again, it trains nothing; --so-far
    tables an unfinished run's curve without testing it."""
    out = tmp_path / "tta.json"
    sample = REPO / "workbench" / "samples" / "fer2013_sample.csv.gz"
    sets = ["train.epochs=1", "data.max_faces=700", "model.filters=[8,16,16,16]"]  # small nets
    args = ["--data", str(sample), *(a for s in sets for a in ("--set", s))]
    script = [sys.executable, str(REPO / "benchmarks" / "time_to_accuracy.py"), *args]
    for attempt in (1, 2):
        proc = subprocess.run(
            [*script, "--json", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows = json.loads(out.read_text())["rows"]
        if attempt == 1:
            first = [r["run_id"] for r in rows]
            assert "step - accuracy" in proc.stdout  # Keras trained
    assert [r["run_id"] for r in rows] == first and "step - accuracy" not in proc.stdout
    assert [r["experiment"] for r in rows] == ["fer2013-original", "fer2013-fast", "fer2013"]
    for r in rows:
        assert len(r["curve"]) == r["epochs"] == 1 and r["train_minutes"] >= 0
        low, point, high = sorted(r["privatetest"]["accuracy"])
        assert low <= point <= high and r["privatetest"]["accuracy"][0] == point
    assert "vs_baseline" not in rows[0] and 0 <= rows[2]["vs_baseline"]["mcnemar_p"] <= 1
    assert "| fer2013-original | 1 (1) |" in (tmp_path / "tta.md").read_text()
    assert "Chance on PrivateTest: 0.143 uniform" in (tmp_path / "tta.md").read_text()
    assert "fer2013-fast" in (tmp_path / "tta.html").read_text()
    # --so-far trains nothing: a run stopped after 3 epochs is a row with its curve and no test.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer2013").experiment_id
    stopped = client.create_run(experiment, run_name="fer2013").info.run_id
    client.log_metric(stopped, "model_parameters", 1000.0)
    for step, acc in enumerate((0.30, 0.45, 0.40)):
        client.log_metric(stopped, "val_accuracy", acc, step=step)
        client.log_metric(stopped, "epoch_seconds", 60.0, step=step)
    client.set_terminated(stopped, "KILLED")
    proc = subprocess.run(
        [*script, "--json", str(out), "--so-far"]
        + ["--run", f"fer2013={stopped}", "--run", f"fer2013/variant={stopped}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step - accuracy" not in proc.stdout
    rows = json.loads((tmp_path / "tta_so_far.json").read_text())["rows"]
    assert [r["run_id"] for r in rows] == [*first[:2], stopped, stopped]
    assert rows[3]["experiment"] == "fer2013/variant"  # a --run that is no experiment: one more row
    assert rows[2]["privatetest"] is None and "vs_baseline" not in rows[2]
    assert rows[2]["curve"] == [[1.0, 0.3], [2.0, 0.45], [3.0, 0.4]]  # (minutes, accuracy)
    assert rows[2]["best_epoch"] == 2 and rows[2]["minutes_to_publictest"]["0.55"] is None
    assert 0 <= rows[1]["vs_baseline"]["mcnemar_p"] <= 1  # the tested rows still paired
    assert "| fer2013 | 3 (2) | 3.0 | - | 0.4500 |" in (tmp_path / "tta_so_far.md").read_text()
    assert "- (killed)" in (tmp_path / "tta_so_far.md").read_text()
