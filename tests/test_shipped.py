"""The shipped model: its card describes these weights, and predict uses it when no --model is given."""

from __future__ import annotations

import pytest

from workbench import CLASS_NAMES
from workbench.serve import shipped
from workbench.serve.predict import load_classifier


def test_the_shipped_model_and_its_card_are_in_the_package():
    assert shipped.available(), f"{shipped.MODEL_FILE}: rebuild with tools/ship_model.py RUN_ID"
    card = shipped.card()
    assert card["file_bytes"] == shipped.MODEL_FILE.stat().st_size  # the card is of this file
    assert card["file_bytes"] < 5 * 2**20  # small enough for the wheel
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


def test_the_shipped_file_holds_weights_without_an_optimizer_state():
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(shipped.MODEL_FILE) as archive:
        weights = io.BytesIO(archive.read("model.weights.h5"))
    with h5py.File(weights) as h5:
        assert "optimizer" not in h5 and "layers" in h5
    assert getattr(shipped.load_model(), "optimizer", None) is None
