"""The shipped model: its card describes these weights, and predict uses it when no --model is given."""

from __future__ import annotations

import pytest
from conftest import REPO, SHARED_DATA, SMALL_NET

from workbench import CLASS_NAMES
from workbench.serve import shipped
from workbench.serve.predictor import load_classifier


def test_the_shipped_model_and_its_card_are_in_the_package():
    assert shipped.available(), f"{shipped.MODEL_FILE}: rebuild with tools/ship_model.py RUN_ID"
    card = shipped.card()
    assert card["file_bytes"] == shipped.MODEL_FILE.stat().st_size  # the card is of this file
    assert card["file_bytes"] <= 10 * 10**6  # small enough for the wheel
    assert card["data"]["digest"] and card["mlflow"]["run_id"] and card["date"]
    assert set(card["test"]["per_class_f1"]) == set(CLASS_NAMES)
    assert card["test"]["chance"] == pytest.approx(1 / 7)
    assert card["config"]["name"].startswith("fer2013")  # a FER-2013 experiment
    assert (shipped.SHIPPED_DIR / "MODEL_CARD.md").read_text().count(card["mlflow"]["run_id"]) == 1


def test_the_card_figures_are_those_of_the_shipped_weights():
    """Re-evaluated on the bundled sample's PrivateTest faces: new weights with an old card fail here."""
    card = shipped.card()
    check = shipped.sample_check(shipped.load_model(), shipped.tta())
    written = card["sample_check"]
    assert check["faces"] == written["faces"] == 350 and check["digest"] == written["digest"]
    assert check["accuracy"] == pytest.approx(written["accuracy"], abs=1e-6)
    assert check["macro_f1"] == pytest.approx(written["macro_f1"], abs=1e-6)
    # ... and the whole PrivateTest, recomputed when the model was shipped, is the run's own figure
    assert card["privatetest_recomputed"]["accuracy"] == pytest.approx(card["test"]["accuracy"])
    assert check["accuracy"] > 2 * check["chance_uniform"]  # it learnt something


def test_no_model_argument_means_the_shipped_model_said_on_one_line(capsys):
    model = load_classifier(None)
    out = capsys.readouterr().out
    assert out.startswith("using the shipped model") and out.count("\n") == 1
    assert "PrivateTest accuracy" in out and "chance" in out
    assert model.input_shape[1:] == (48, 48, 1) and model.output_shape[-1] == len(CLASS_NAMES)


def assert_weights_only(path) -> None:
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive:
        weights = io.BytesIO(archive.read("model.weights.h5"))
    with h5py.File(weights) as h5:
        assert "optimizer" not in h5 and "layers" in h5
    assert getattr(shipped.load_model(path), "optimizer", None) is None


def test_the_shipped_file_holds_weights_without_an_optimizer_state():
    assert_weights_only(shipped.MODEL_FILE)


def fewer_photos(root, photos: int = 24):
    """The real data, with the first `photos` labelled ExpW photos only: MTCNN takes about a second a
    photo here, and the other sets stay whole."""
    root.mkdir()
    for name in ("fer2013", "ferplus", "ckplus48"):
        (root / name).symlink_to(SHARED_DATA / name)
    expw = root / "expw"
    expw.mkdir()
    for name in ("faces96", "origin_sample"):
        (expw / name).symlink_to(SHARED_DATA / "expw" / name)
    lines = (SHARED_DATA / "expw" / "label_origin_sample.lst").read_text().splitlines()
    kept = {line.split()[0] for line in lines[:photos]}
    (expw / "label_origin_sample.lst").write_text(
        "".join(f"{line}\n" for line in lines if line.split()[0] in kept)
    )
    return root


def tool(script: str, *args: str, shared=SHARED_DATA) -> None:
    """A repository script on the real data, which must succeed."""
    import subprocess
    import sys

    command = [sys.executable, script, *args, "--shared", str(shared)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "ckplus48").is_dir(), reason="needs ../shared/data")
def test_ship_model_writes_a_card_recomputed_from_the_file_on_every_set(tmp_path, monkeypatch):
    """A distilled run shipped to a folder: the file gives the run's figure again, the card scores the
    file on every evaluation set with intervals, and names the teacher with its own figure."""
    import json

    from workbench.config import load_config
    from workbench.experiment import run_experiment

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    # 48 px: the shipped size
    small = [
        *SMALL_NET,
        "train.epochs=1",
        f"data.cache_dir={tmp_path / 'cache'}",
        "tracking.experiment=ship",
    ]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    big = run_experiment(load_config("baseline", small))
    student = run_experiment(load_config("baseline", [*small, f"distill.teacher_run={big.run_id}"]))
    out, shared = tmp_path / "shipped", fewer_photos(tmp_path / "shared")
    tool(
        "tools/ship_model.py",
        student.run_id,
        "--tracking-uri",
        uri,
        "--out",
        str(out),
        "--tta",
        "none",  # the run tested with flip: the card is the file's own figures without it
        shared=shared,
    )
    card = json.loads((out / "card.json").read_text())
    check = card["run_check"]  # rounded to 6 places
    assert check["tta"] == "flip"
    assert check["accuracy"] == pytest.approx(student.metrics["test_accuracy"], abs=1e-6)
    assert card["test"]["tta"] == "none" and set(card["test"]["per_class_f1"]) == set(CLASS_NAMES)
    for key in ("accuracy", "macro_f1"):
        logged = student.metrics[f"test_notta_{key}"]
        assert card["test"][key] == pytest.approx(logged, abs=1e-6), key
    rows = card["evaluation"]
    for name in (
        "FER-2013 PrivateTest",
        "ExpW faces96 crops",
        "CK+48, six shared classes",
        "FER+ joined Training faces vs FER+ majority",
    ):
        low, high = rows[name]["accuracy_ci"]
        assert low <= rows[name]["accuracy"] <= high and rows[name]["faces"] > 100, name
    assert (
        rows["FER-2013 PrivateTest"]["faces"] == 3589
        and rows["CK+48, six shared classes"]["faces"] == 927
    )
    assert card["teacher"]["run_id"] == big.run_id
    assert card["teacher"]["accuracy"] == pytest.approx(big.metrics["test_accuracy"])
    page = (out / "MODEL_CARD.md").read_text()
    assert f"Distilled from** run {big.run_id}" in page and "| ExpW faces96 crops | 5,705 |" in page
    assert_weights_only(out / "model.keras")

    # The shipped candidate against today's shipped model, face by face, with its card's views.
    bench = tmp_path / "bench.json"
    candidate = ["--candidate", str(out / "model.keras"), "--json", str(bench)]
    tool("benchmarks/shipped_model.py", *candidate, shared=shared)
    figures = json.loads(bench.read_text())
    assert figures["candidate"]["tta"] == card["test"]["tta"] == "none"
    assert figures["faces_per_second"] > 0 and figures["candidate"]["faces_per_second"] > 0
    for name, pair in figures["candidate"]["paired"].items():
        gain, low, high = pair["accuracy_gain"]
        assert low <= gain <= high and 0 <= pair["mcnemar_p"] <= 1, name
        assert figures["candidate"]["rows"][name]["accuracy"] == pytest.approx(
            rows[name]["accuracy"]
        )  # the card's figures are the file's
