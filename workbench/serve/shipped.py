"""The model that ships with the package, so that `python -m workbench.predict photo.jpg` works on a
fresh install: a Keras file trained by the `fer2013` experiment, and its model card (card.json, and
MODEL_CARD.md for people). `tools/ship_model.py RUN_ID` rebuilds both from an MLflow run.

The card holds a re-evaluation on the bundled sample's 350 PrivateTest faces (FER-2013 faces the
model never trained on), computed by `sample_check` below; a test recomputes it from the weights, so
the card cannot drift from them."""

from __future__ import annotations

import json
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped"
MODEL_FILE = SHIPPED_DIR / "model.keras"
CARD_FILE = SHIPPED_DIR / "card.json"


def available() -> bool:
    return MODEL_FILE.is_file() and CARD_FILE.is_file()


def card(folder: Path = SHIPPED_DIR) -> dict:
    return json.loads((folder / CARD_FILE.name).read_text())


def tta(folder: Path = SHIPPED_DIR) -> str:
    """The test-time augmentation the card's figures were computed with (older cards: `tta_flip`)."""
    from workbench.core.settings import tta_of

    test = card(folder)["test"]
    return test["tta"] if "tta" in test else tta_of(test.get("tta_flip"))


def save_without_optimizer(model, path: Path) -> None:
    """The model's architecture and weights, without the optimizer's state a trained model carries
    (AdamW's two moments would triple the file): what predict needs and no more."""
    # from_config, not clone_model: Keras compiles a clone of a compiled model, optimizer included.
    bare = model.__class__.from_config(model.get_config())
    bare.set_weights(model.get_weights())
    bare.save(path)


def load_model(path: Path = MODEL_FILE):
    import keras

    from workbench.core.models import inputs  # noqa: F401  (registers FaceCrop for the loader)

    return keras.saving.load_model(path, compile=False)


def official_split(path: str | None, size: int, channels: int = 1):
    """(a FER-2013 CSV's official split: Training, PublicTest as val, PrivateTest as test; the file's
    data digest): the bundled sample by default."""
    from workbench.config import DataConfig
    from workbench.core.protocol import prepare
    from workbench.core.settings import BalanceConfig, SplitConfig
    from workbench.data import load_faces

    faces = load_faces(DataConfig(path=path, image_size=size, channels=channels), seed=0)
    split = prepare(faces, "split-then-resample", SplitConfig(), BalanceConfig(), seed=0)
    return split, faces.digest


def privatetest(path: str | None, size: int, channels: int = 1):
    """(the PrivateTest faces of a FER-2013 CSV, the file's data digest): the bundled sample's 350
    faces by default, or the whole file's 3,589 with `path`."""
    split, digest = official_split(path, size, channels)
    return split.test, digest


def sample_check(model, tta: str, path: str | None = None) -> dict:
    """Accuracy, macro-F1 and per-class F1 on the PrivateTest faces of a FER-2013 CSV (see privatetest)."""
    from workbench import CLASS_NAMES
    from workbench.core.metrics import chance_levels, evaluate
    from workbench.core.tta import predict

    test, digest = privatetest(path, int(model.input_shape[1]), int(model.input_shape[-1]))
    probs, _ = predict(model, test.images, tta)
    m = evaluate(test.labels, probs, prefix="").metrics
    return {
        "faces": len(test),
        "digest": digest[:16],
        "accuracy": round(m["accuracy"], 6),
        "macro_f1": round(m["macro_f1"], 6),
        "per_class_f1": {c: round(m[f"f1_{c}"], 6) for c in CLASS_NAMES},
    } | {k: round(v, 6) for k, v in chance_levels(test.labels).items()}


def describe() -> str:
    c = card()
    t = c["test"]
    return (
        f"the shipped model ({c['model']}, trained on {c['data']['name']}: PrivateTest accuracy "
        f"{t['accuracy']:.3f}, macro-F1 {t['macro_f1']:.3f}, chance {t['chance']:.3f}; "
        f"card: {SHIPPED_DIR / 'MODEL_CARD.md'})"
    )
