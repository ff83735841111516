"""Split, balance, augmentation and model on the shipped real faces."""

import keras
import numpy as np
import pytest

from workbench import NUM_CLASSES
from workbench.config import DataConfig, ExperimentConfig, load_config
from workbench.core.augment import training_dataset
from workbench.core.models.registry import make_model
from workbench.core.settings import ORIGINAL_PROTOCOL, AugmentConfig
from workbench.core.split import honest_split, original_split
from workbench.data import SAMPLE_EXPW, load_faces
from workbench.experiment import prepare_faces


@pytest.fixture(scope="module")
def expw(tmp_path_factory):
    return load_faces(
        DataConfig(path=str(SAMPLE_EXPW), cache_dir=str(tmp_path_factory.mktemp("c"))), 0
    )


@pytest.fixture(scope="module")
def fer(tmp_path_factory):
    return load_faces(DataConfig(cache_dir=str(tmp_path_factory.mktemp("c"))), 0)


def imbalanced(faces):
    """The FER sample with classes cut to 20, 40, ... 140 training faces (val/test untouched)."""
    keep = []
    for c in range(NUM_CLASSES):
        train_c = np.flatnonzero((faces.labels == c) & (faces.splits == "train"))
        keep += list(train_c[: 20 * (c + 1)])
    keep += list(np.flatnonzero(faces.splits != "train"))
    return faces.subset(np.sort(np.array(keep)))


def test_grouped_split_keeps_each_source_image_in_one_split(expw):
    split = honest_split(expw, True, 0.15, 0.15, seed=3)
    sets = {k: set(expw.groups[v]) for k, v in split.items()}
    assert (
        not (sets["train"] & sets["val"])
        and not (sets["train"] & sets["test"])
        and not (sets["val"] & sets["test"])
    )
    # every face exactly once
    assert sorted(np.concatenate(list(split.values()))) == list(range(len(expw)))
    assert all(len(v) for v in split.values())


def test_official_split_is_used_when_present(fer):
    split = honest_split(fer, True, 0.15, 0.15, seed=0)
    assert {k: len(v) for k, v in split.items()} == {"train": 2800, "val": 350, "test": 350}
    assert set(fer.splits[split["test"]]) == {"test"}


def test_original_split_is_70_15_15():
    split = original_split(1000, seed=42)
    assert [len(split[k]) for k in ("train", "val", "test")] == [700, 150, 150]


def test_honest_smote_touches_only_training_and_balances_it(fer):
    faces = imbalanced(fer)
    plain = prepare_faces(faces, ExperimentConfig())
    smoted = prepare_faces(faces, ExperimentConfig(balance={"smote": True}))
    counts = np.bincount(smoted.train.labels, minlength=NUM_CLASSES)
    assert counts.tolist() == [140] * NUM_CLASSES
    assert smoted.synthetic["train"].sum() == 7 * 140 - len(plain.train)
    # validation and test are the very same real faces, natural distribution kept
    for part in ("val", "test"):
        assert np.array_equal(getattr(plain, part).ids, getattr(smoted, part).ids)
        assert not smoted.synthetic[part].any()
        assert not any(i.startswith("smote(") for i in getattr(smoted, part).ids)
    assert smoted.train.images.dtype == np.uint8
    assert plain.smote_k_used is None and smoted.smote_k_used == 5


def test_smote_k_above_the_smallest_class_is_clamped_and_the_used_k_reported(expw):
    counts = np.bincount(expw.labels, minlength=NUM_CLASSES)
    smallest = int(counts[counts > 0].min())
    prepared = prepare_faces(
        expw,
        ExperimentConfig(
            balance={"smote": True, "smote_k": 50}, protocol="original-smote-before-split"
        ),
    )
    assert prepared.smote_k_used == smallest - 1 < 50


def test_synthetic_faces_interpolate_two_real_training_faces_of_their_class(fer):
    from workbench.core.balance import smote

    train = imbalanced(fer).subset(np.flatnonzero(imbalanced(fer).splits == "train"))
    result = smote(train, k=5, seed=0)
    synth = np.flatnonzero(result.synthetic)
    assert (result.parents[~result.synthetic] == -1).all()
    for s in synth[:: max(1, len(synth) // 25)]:
        a, b = result.parents[s]
        assert train.labels[a] == train.labels[b] == result.faces.labels[s]
        x, pa, pb = (
            v.astype(np.float32).ravel()
            for v in (result.faces.images[s], train.images[a], train.images[b])
        )
        d = pb - pa
        t = float(np.dot(x - pa, d) / np.dot(d, d))
        assert -0.01 <= t <= 1.01
        assert np.abs(x - (pa + t * d)).max() <= 1.0  # on the segment, up to uint8 rounding


def test_original_protocol_resamples_before_splitting(expw):
    cfg = ExperimentConfig(protocol=ORIGINAL_PROTOCOL, balance={"smote": True, "smote_k": 3})
    prepared = prepare_faces(expw, cfg)
    total = sum(len(p) for p in prepared.parts().values())
    assert total == NUM_CLASSES * np.bincount(expw.labels).max()  # SMOTE saw every face
    # synthetics leak into evaluation
    assert prepared.synthetic["test"].any() or prepared.synthetic["val"].any()


def test_augment_strength_zero_is_identity_and_one_changes_faces(fer):
    from workbench.core.augment import build_augmenter, training_dataset

    images, labels = fer.images[:64], fer.labels[:64]
    none, full = AugmentConfig(strength=0.0), AugmentConfig(strength=1.0)
    assert build_augmenter(none, seed=0) is None
    x, y = next(iter(training_dataset(images, labels, 64, none, seed=1)))
    order = [
        np.flatnonzero((images == xi.numpy().astype(np.uint8)).all(axis=(1, 2, 3)))[0] for xi in x
    ]
    assert sorted(order) == list(range(64))  # a permutation of the very same faces
    assert np.array_equal(x.numpy(), images[order].astype(np.float32))
    assert np.array_equal(y.numpy().argmax(1), labels[order])
    xa, ya = next(iter(training_dataset(images, labels, 64, full, seed=1)))
    assert np.array_equal(ya.numpy().argmax(1), labels[order])  # same seeded shuffle
    diff = np.abs(xa.numpy() - images[order].astype(np.float32)).mean(axis=(1, 2, 3))
    assert (diff > 2.0).mean() > 0.9  # nearly every face is transformed
    assert 0 <= xa.numpy().min() and xa.numpy().max() <= 255.5


def test_reference_cnn_structure_follows_config():
    from workbench.core.models.registry import make_model

    model = make_model("reference", (64, 64, 3), 7, conv_dropout=0.3, dense_dropout=0.4)
    convs = [l for l in model.layers if l.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128, 256, 512]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    kinds = [l.__class__.__name__ for l in model.layers]
    assert kinds.count("BatchNormalization") == 5 and kinds.count("MaxPooling2D") == 5
    drops = [l.rate for l in model.layers if l.__class__.__name__ == "Dropout"]
    assert drops == [0.3] * 5 + [0.4]
    dense = [l for l in model.layers if l.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [1024, 7] and dense[-1].activation.__name__ == "softmax"
    assert model.output_shape == (None, 7)


def test_reference_dense_batchnorm_matches_the_original_layer_counts():
    """The original's scoring model: 5 Conv2D, 6 BatchNormalization, 5 MaxPooling2D, 6 Dropout, 2 Dense,
    the sixth BatchNormalization between Dense(1024) and its Dropout."""
    from workbench.core.models.registry import make_model

    model = make_model("reference", (64, 64, 3), 7, dense_batchnorm=True)
    kinds = [l.__class__.__name__ for l in model.layers]
    counts = {
        k: kinds.count(k)
        for k in ("Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout", "Dense")
    }
    assert counts == {
        "Conv2D": 5,
        "BatchNormalization": 6,
        "MaxPooling2D": 5,
        "Dropout": 6,
        "Dense": 2,
    }
    names = [l.name for l in model.layers]
    assert (
        names.index("dense")
        < names.index("dense_bn")
        < names.index("dense_dropout")
        < names.index("expression")
    )


@pytest.mark.parametrize(
    "name, params", [("vgg", (1.15e6, 1.2e6)), ("mini_xception", (50e3, 65e3))]
)
def test_modern_models_take_grey_48_and_have_their_size(name, params):
    from workbench.core.models.registry import flops_per_image, make_model

    model = make_model(name, (48, 48, 1), 7)
    assert model.output_shape == (None, 7)
    assert params[0] <= model.count_params() <= params[1]
    # convolutions reuse each weight many times
    assert flops_per_image(model) > 2 * model.count_params()


def test_config_refuses_an_image_the_model_cannot_take():
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="image_size 16 is too small for model reference"):
        load_config("baseline", ["data.image_size=16"])
    with pytest.raises(WorkbenchError, match="at least 1 filter"):
        load_config("baseline", ["model.filters=[0]"])
    assert load_config("baseline", ["data.image_size=16", "model.name=vgg"]).model.name == "vgg"
    with pytest.raises(
        WorkbenchError, match=r"data.image_size 48 is too small for model reference with 7 blocks"
    ):
        load_config("baseline", ["model.filters=[8,8,8,8,8,8,8]"])
    with pytest.raises(
        WorkbenchError, match=r"seed: Input should be greater than or equal to 0 \(got -1\)"
    ):
        load_config("baseline", ["seed=-1"])


def test_mixed_precision_keeps_the_softmax_float32_and_restores_the_policy():
    import keras

    from workbench.core import recipe
    from workbench.core.models.registry import make_model

    with recipe.dtype_policy("mixed_bfloat16"):
        model = make_model("vgg", (48, 48, 1), 7)
    assert keras.config.dtype_policy().name == "float32"
    assert model.get_layer("stage1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("expression").compute_dtype == "float32"
    assert recipe.resolve_precision("float32") == "float32"
    assert recipe.resolve_precision("auto") in ("float32", "mixed_bfloat16")  # no GPU here


def test_cosine_schedule_warms_up_then_decays():
    from workbench.core import recipe

    lr = recipe.learning_rate("cosine", 1e-3, steps_per_epoch=10, epochs=10, warmup_epochs=2)
    values = [float(lr(step)) for step in (0, 10, 20, 60, 99)]
    assert values[0] < values[1] < values[2] and abs(values[2] - 1e-3) < 1e-9
    assert values[2] > values[3] > values[4] >= 0

    assert recipe.learning_rate("constant", 1e-3, 10, 10, 0) == 1e-3
    assert recipe.learning_rate("plateau", 1e-3, 10, 10, 2) == 1e-3  # its callback needs a float


def test_constant_schedule_warms_up_like_cosine_then_holds_the_peak():
    """A sweep's pruner ranks epoch 1: it must be warm-up for both schedules, or it favours constant."""
    from workbench.core import recipe

    constant = recipe.learning_rate(
        "constant", 1e-3, steps_per_epoch=10, epochs=10, warmup_epochs=1
    )
    cosine = recipe.learning_rate("cosine", 1e-3, steps_per_epoch=10, epochs=10, warmup_epochs=1)
    for step in (0, 5, 10):
        assert float(constant(step)) == pytest.approx(float(cosine(step)))
    assert float(constant(0)) == 0.0
    assert [float(constant(s)) for s in (10, 50, 99)] == pytest.approx([1e-3] * 3)


def test_the_schedule_moves_the_learning_rate_every_step_and_one_trace_trains():
    """The cosine schedule reaches the optimizer through StepSchedule (a plain variable in the graph),
    step by step as the schedule says, and the training step is traced once (no variable made in it)."""
    from workbench.core import recipe

    lr = recipe.learning_rate("cosine", 1e-2, steps_per_epoch=3, epochs=2, warmup_epochs=1)
    model = make_model("mini_xception", (32, 32, 1), NUM_CLASSES)
    recipe.compile_model(
        model, recipe.make_optimizer("adamw", recipe.starting_rate(lr), 1e-4, 0.9), 0.1
    )
    seen, traces = [], []
    step = type(model).train_step

    def counted(self, data):
        traces.append(1)
        return step(self, data)

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (100, 32, 32, 1)).astype(np.uint8)
    y = rng.integers(0, NUM_CLASSES, 100)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(model), "train_step", counted)
        model.fit(
            # 100 faces, batch 32: 3 full batches an epoch
            training_dataset(x, y, 32, AugmentConfig(strength=0.0), 0),
            epochs=2,
            verbose=0,
            callbacks=[*recipe.schedule_callbacks(lr), Record()],
        )
    assert seen == pytest.approx([float(lr(s)) for s in range(6)])
    assert seen[0] == 0.0 and max(seen) == pytest.approx(1e-2)  # warm-up from 0 to the peak
    assert len(traces) == 1
