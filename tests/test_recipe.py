"""The recipe pieces: random crops (centre at test time), random erasing, mixup/cutmix, test-time
views (flip, ten-crop, dense, warped), the plateau's keys and its resume, and configs from before
`train.tta`."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from workbench.config import config_from_dict, load_config
from workbench.core.augment import training_dataset
from workbench.core.models.inputs import FaceCrop
from workbench.core.models.registry import make_model
from workbench.core.settings import AugmentConfig, TrainConfig
from workbench.core.tta import WARPS, offsets, predict, views, warp

RNG = np.random.default_rng(0)
FACES = RNG.integers(0, 256, (32, 48, 48, 1)).astype(np.uint8)
LABELS = np.arange(32) % 7
PLAIN = AugmentConfig(strength=0.0)


def crop_origin(face: np.ndarray, crop: np.ndarray) -> tuple[int, int]:
    """Where `crop` lies in `face` (the faces are noise: one place matches)."""
    c = crop.shape[0]
    found = [
        (t, l)
        for t in range(face.shape[0] - c + 1)
        for l in range(face.shape[1] - c + 1)  # noqa: E741
        if np.array_equal(face[t : t + c, l : l + c], crop)
    ]
    assert len(found) == 1
    return found[0]


def batches(augment: AugmentConfig, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    keras.utils.set_random_seed(seed)
    return [(x.numpy(), y.numpy()) for x, y in training_dataset(FACES, LABELS, 16, augment, seed)]


@pytest.fixture(autouse=True, scope="module")
def deterministic():
    tf.config.experimental.enable_op_determinism()  # as every run does (train.deterministic)


def test_training_crops_are_random_parts_of_each_face_and_seeded():
    layer = FaceCrop(40, seed=3)
    x = FACES.astype(np.float32)
    out = layer(x, training=True).numpy()
    assert out.shape == (32, 40, 40, 1)
    origins = {crop_origin(f[..., 0], o[..., 0]) for f, o in zip(x, out, strict=True)}
    assert len(origins) > 10  # each face its own place, not one box for the batch
    assert all(0 <= t <= 8 and 0 <= l <= 8 for t, l in origins)  # noqa: E741
    again = FaceCrop(40, seed=3)(x, training=True).numpy()
    assert np.array_equal(out, again)
    assert not np.array_equal(out, FaceCrop(40, seed=4)(x, training=True).numpy())


def test_at_test_time_a_cropping_model_sees_only_the_centre_of_the_face():
    keras.utils.set_random_seed(0)
    model = make_model("vgg", (48, 48, 1), 7, crop=40, filters=[4, 8])
    assert model.input_shape == (None, 48, 48, 1)  # a logged model takes the whole face
    x = FACES.astype(np.float32)
    assert np.array_equal(FaceCrop(40)(x).numpy(), x[:, 4:44, 4:44])
    border = x.copy()
    border[:, :4], border[:, -4:], border[:, :, :4], border[:, :, -4:] = 0, 255, 17, 99
    np.testing.assert_allclose(predict(model, border, "none")[0], predict(model, x, "none")[0])


def test_ten_crop_averages_the_corner_and_centre_crops_and_their_mirrors():
    keras.utils.set_random_seed(0)
    model = make_model("vgg", (48, 48, 1), 7, crop=40, filters=[4, 8])
    after_crop = keras.Model(model.get_layer("scale").input, model.output)
    x = FACES[:8].astype(np.float32)
    crops = [x[:, t : t + 40, l : l + 40] for t, l in [(4, 4), (0, 0), (0, 8), (8, 0), (8, 8)]]
    views = [v for c in crops for v in (c, c[:, :, ::-1])]
    expected = np.mean([after_crop.predict(v, verbose=0) for v in views], axis=0)
    probs, plain = predict(model, x, "tencrop")
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain, after_crop.predict(crops[0], verbose=0), rtol=1e-5)
    flipped, _ = predict(model, x, "flip")
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_dense_averages_every_crop_two_pixels_apart_and_their_mirrors():
    keras.utils.set_random_seed(0)
    model = make_model("vgg", (48, 48, 1), 7, crop=40, filters=[4, 8])
    after_crop = keras.Model(model.get_layer("scale").input, model.output)
    x = FACES[:8].astype(np.float32)
    starts = [0, 2, 4, 6, 8]
    crops = [x[:, t : t + 40, l : l + 40] for t in starts for l in starts]
    views = [v for c in crops for v in (c, c[:, :, ::-1])]
    expected = np.mean([after_crop.predict(v, verbose=0) for v in views], axis=0)
    probs, plain = predict(model, x, "dense")
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain, after_crop.predict(x[:, 4:44, 4:44], verbose=0), rtol=1e-5)
    assert offsets(48, 43, "dense") == [0, 2, 4, 5]  # an odd margin still reaches the far edge


def test_warp_zooms_and_turns_each_face_about_its_centre():
    ramp = np.tile(np.arange(48, dtype=np.float32), (2, 48, 1))[..., None]  # each pixel: its column
    inner = slice(8, 40)
    zoomed = warp(ramp, 2.0, 0.0)  # twice the size: each pixel samples halfway to the centre
    np.testing.assert_allclose(zoomed[:, inner, inner], 23.5 + (ramp[:, inner, inner] - 23.5) / 2)
    x = FACES[:2].astype(np.float32)
    np.testing.assert_allclose(warp(x, 1.0, 180.0), x[:, ::-1, ::-1], atol=1e-3)
    assert warp(x, 1.0, 0.0) is x


def test_warped_is_ten_crop_of_the_face_and_of_its_four_warps():
    keras.utils.set_random_seed(0)
    model = make_model("vgg", (48, 48, 1), 7, crop=40, filters=[4, 8])
    x = FACES[:8].astype(np.float32)
    assert len(list(views(x, "warped", 40))) == 10 * len(WARPS) == 50
    expected = np.mean([predict(model, warp(x, *w), "tencrop")[0] for w in WARPS], axis=0)
    probs, plain = predict(model, x, "warped")
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain, predict(model, x, "none")[0], rtol=1e-5)
    trained = load_config("fer2013").augment  # the views stay inside the faces it trains on
    assert max(abs(d) for _, d in WARPS) <= trained.rotation_deg
    assert max(abs(z - 1) for z, _ in WARPS) <= trained.zoom


def test_erasing_noises_one_patch_of_each_face_and_is_seeded():
    first = batches(AugmentConfig(strength=0.0, erasing=1.0))
    assert first[0][0].shape == (16, 48, 48, 1)
    plain = batches(PLAIN)
    for (x, y), (p, q) in zip(first, plain, strict=True):
        assert np.array_equal(y, q)  # same faces in the same order, only pixels change
        changed = x != p
        assert changed.any(axis=(1, 2, 3)).mean() > 0.9
        for face in changed[..., 0]:  # a rectangle: the changed rows all change the same columns
            rows, cols = np.flatnonzero(face.any(1)), np.flatnonzero(face.any(0))
            if len(rows):
                assert face[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].mean() > 0.9
                assert face.mean() < 0.34  # Keras' default patch: at most a third of the face
    again = batches(AugmentConfig(strength=0.0, erasing=1.0))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize(
    "augment",
    [
        AugmentConfig(strength=0.0, mixup_alpha=0.4),
        AugmentConfig(strength=0.0, cutmix_alpha=1.0),
        AugmentConfig(strength=0.0, mixup_alpha=0.4, cutmix_alpha=1.0),
    ],
    ids=["mixup", "cutmix", "both"],
)
def test_mixing_blends_faces_and_their_labels_alike_and_is_seeded(augment):
    mixed, plain = batches(augment), batches(PLAIN)
    for (x, y), (p, _) in zip(mixed, plain, strict=True):
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
        assert ((y > 1e-6).sum(axis=1) <= 2).all()  # two faces' labels at most
        assert (y.max(axis=1) < 1 - 1e-3).mean() > 0.5  # most labels are mixtures
        assert not np.array_equal(x, p) and 0 <= x.min() and x.max() <= 255.5
    again = batches(augment)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(mixed, again, strict=True))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(mixed, again, strict=True))


def test_configs_and_logged_runs_with_tta_flip_still_load():
    assert TrainConfig.model_validate({"tta_flip": True}).tta == "flip"
    assert TrainConfig.model_validate({"tta_flip": "False"}).tta == "none"  # a logged param
    tree = load_config("baseline").model_dump(mode="json")
    tree["train"].pop("tta")
    tree["train"]["tta_flip"] = True
    assert config_from_dict(tree, "an old run's config.yaml").train.tta == "flip"


def test_crop_and_ten_crop_are_checked_against_the_face():
    from workbench.errors import WorkbenchError

    with pytest.raises(
        WorkbenchError, match="augment.crop 48 must be smaller than data.image_size"
    ):
        load_config("fer2013", ["augment.crop=48"])
    with pytest.raises(WorkbenchError, match="tencrop needs augment.crop"):
        load_config("fer2013", ["augment.crop=null", "train.tta=tencrop"])
    with pytest.raises(WorkbenchError, match="dense needs augment.crop"):
        load_config("fer2013", ["augment.crop=null", "train.tta=dense"])
    with pytest.raises(WorkbenchError, match="warped needs augment.crop"):
        load_config("fer2013", ["augment.crop=null", "train.tta=warped"])
    with pytest.raises(WorkbenchError, match="augment.crop 12 is too small for model vgg"):
        load_config("fer2013", ["augment.crop=12"])


def test_the_plateau_schedule_takes_its_factor_and_patience_from_the_config():
    from workbench.core.checkpoint import BestAndCheckpoint
    from workbench.core.train import FitHooks, callbacks_for

    recipe = TrainConfig(schedule="plateau", plateau_factor=0.75, plateau_patience=5)
    val = (FACES.astype(np.float32), LABELS)
    found = callbacks_for(recipe, val, BestAndCheckpoint("val_accuracy", None, None), FitHooks())
    plateau = [c for c in found if isinstance(c, keras.callbacks.ReduceLROnPlateau)]
    assert [(p.factor, p.patience, p.monitor) for p in plateau] == [(0.75, 5, "val_accuracy")]


def tiny_model(rate: float = 1e-5, dropout: float = 0.0) -> keras.Model:
    from workbench.core import recipe

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Dropout(dropout)(x) if dropout else x
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    return recipe.compile_model(model, recipe.make_optimizer("sgd", rate, 0.0, 0.9), 0.0)


def test_a_resumed_fit_cuts_the_rate_and_stops_at_the_epochs_an_uninterrupted_one_does(tmp_path):
    """Keras' plateau and early stopping count from the start of each fit; resumed, they continue
    from the checkpoint's epochs (the cut after the last one included), and a run that early stopping
    had ended is not trained again."""
    from workbench.core.train import FitHooks, fit

    recipe = TrainConfig(
        batch_size=16,
        learning_rate=1e-5,  # too small to move a prediction: every epoch ties epoch 0
        optimizer="sgd",
        schedule="plateau",
        plateau_factor=0.5,
        plateau_patience=2,
        early_stopping_patience=4,
        monitor="val_accuracy",
    )

    def history(folder, epochs: int) -> dict[str, list[float]]:
        keras.utils.set_random_seed(0)
        hooks = FitHooks(checkpoint_dir=tmp_path / folder, verbose=False)
        train = recipe.model_copy(update={"epochs": epochs})
        return fit(
            tiny_model(), (FACES, LABELS), (FACES, LABELS), train, PLAIN, 0, hooks=hooks
        ).history

    whole = history("whole", 12)
    assert len(set(whole["val_accuracy"])) == 1
    # cuts after epochs 2 and 4 (0-based; the logged rate is the one each epoch trained with), stop at 4
    assert whole["learning_rate"] == pytest.approx([1e-5] * 3 + [5e-6] * 2)
    history("cut", 3)  # stopped after epoch 2, before its cut reached the checkpoint
    resumed = history("cut", 12)
    assert resumed["learning_rate"] == pytest.approx(whole["learning_rate"])
    assert len(history("whole", 12)["loss"]) == 5  # early stopping had ended it: nothing more


@pytest.mark.parametrize(
    "augment, dropout",
    [(AugmentConfig(strength=1.0, rotation_deg=20, zoom=0.2, flip=True), 0.0), (PLAIN, 0.5)],
    ids=["augmentation", "dropout"],
)
def test_a_resumed_fit_draws_new_augmentations_and_dropout_masks(tmp_path, augment, dropout):
    """A resumed fit does not replay its first epoch's random draws (the same faces augmented alike,
    the same dropout masks): at a rate too small to move the weights, its epoch's training loss would
    then equal the first epoch's. Resumed twice from one checkpoint, it draws the same."""
    import shutil

    from workbench.core.train import FitHooks, fit

    train = TrainConfig(batch_size=16, learning_rate=1e-9, optimizer="sgd", schedule="constant")

    def losses(folder, epochs: int) -> list[float]:
        keras.utils.set_random_seed(0)
        hooks = FitHooks(checkpoint_dir=tmp_path / folder, verbose=False)
        fitted = fit(
            tiny_model(1e-9, dropout),
            (FACES, LABELS),
            (FACES, LABELS),
            train.model_copy(update={"epochs": epochs}),
            augment,
            0,
            hooks=hooks,
        )
        return fitted.history["loss"]

    first = losses("a", 1)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    resumed = losses("a", 2)
    assert resumed[0] == first[0]
    assert resumed[1] != pytest.approx(first[0], rel=1e-4)
    assert losses("b", 2) == resumed


def test_resnet_takes_40_px_crops_and_has_its_size():
    from workbench.core.models.registry import flops_per_image

    model = make_model("resnet", (48, 48, 1), 7, crop=40)
    assert model.output_shape == (None, 7)
    assert 2.7e6 <= model.count_params() <= 2.9e6  # ResNet-18 at half its widths
    assert model.get_layer("stage4_block1a_conv").output.shape[1:3] == (5, 5)
    assert flops_per_image(model) > 2 * model.count_params()


def test_a_cropping_model_saved_loads_in_a_fresh_process_and_predicts_the_same(tmp_path):
    """Keras finds FaceCrop only once its module is imported: predict and the shipped-model loader
    import it themselves."""
    import subprocess
    import sys

    keras.utils.set_random_seed(0)
    model = make_model("vgg", (48, 48, 1), 7, crop=40, filters=[4, 8])
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", FACES[:4].astype(np.float32))
    code = (
        "import numpy as np; from workbench.serve import shipped; "
        f"m = shipped.load_model({str(tmp_path / 'm.keras')!r}); "
        f"np.save({str(tmp_path / 'p.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    expected = model.predict(FACES[:4].astype(np.float32), verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-5, atol=1e-6)
