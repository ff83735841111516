"""Training throughput of each model, input form and precision, against the original project's way
(reference CNN at 64x64 RGB, float32, legacy ImageDataGenerator(...).flow), in one process on the same
faces; plus decoded-face cache load times (cold = decode, warm = cached .npy).

    python benchmarks/throughput.py [--steps 20 --rounds 3] [--data PATH] [--json benchmarks/results/throughput.json]

Prints a table and writes JSON. Run it on an otherwise idle machine: the rows share the cores.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.cli import positive_int, quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from results_file import write_results  # noqa: E402
from tqdm import tqdm  # noqa: E402

from workbench import NUM_CLASSES  # noqa: E402
from workbench.config import ExperimentConfig, load_config  # noqa: E402
from workbench.core import recipe  # noqa: E402
from workbench.core.augment import ORIGINAL, training_dataset  # noqa: E402
from workbench.data import DEFAULT_DATASET, load_faces  # noqa: E402
from workbench.experiment import build_compiled_model, seed_everything  # noqa: E402


@dataclass
class Row:
    name: str
    model: str
    size: int
    channels: int
    precision: str
    pipeline: str  # "original" (ImageDataGenerator) or "tf.data"
    crop: int | None = None  # augment.crop: the net sees crop x crop of the size x size face


def rows_to_time(default_precision: str) -> list[Row]:
    rows = [
        Row(
            "original way: reference@64 RGB fp32, ImageDataGenerator",
            "reference",
            64,
            3,
            "float32",
            "original",
        ),
        Row("reference@64 RGB fp32, tf.data", "reference", 64, 3, "float32", "tf.data"),
        Row("reference@48 grey fp32, tf.data", "reference", 48, 1, "float32", "tf.data"),
        Row("reference@48 grey bf16, tf.data", "reference", 48, 1, "mixed_bfloat16", "tf.data"),
        Row(
            f"vgg@48 grey {default_precision}, tf.data", "vgg", 48, 1, default_precision, "tf.data"
        ),
        Row(
            f"vgg@40 crop grey {default_precision}, tf.data",
            "vgg",
            48,
            1,
            default_precision,
            "tf.data",
            crop=40,
        ),
        Row(
            f"resnet@40 crop grey {default_precision}, tf.data",
            "resnet",
            48,
            1,
            default_precision,
            "tf.data",
            crop=40,
        ),
        Row(
            f"mini_xception@48 grey {default_precision}, tf.data",
            "mini_xception",
            48,
            1,
            default_precision,
            "tf.data",
        ),
    ]
    return rows


def original_flow(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """The original project's input: legacy ImageDataGenerator with its ranges, on float32 arrays."""
    gen = tf.keras.preprocessing.image.ImageDataGenerator(
        rotation_range=ORIGINAL.rotation_deg,
        width_shift_range=ORIGINAL.shift,
        height_shift_range=ORIGINAL.shift,
        shear_range=ORIGINAL.shear_deg,
        zoom_range=ORIGINAL.zoom,
        horizontal_flip=True,
    )
    flow = gen.flow(
        images.astype(np.float32),
        tf.keras.utils.to_categorical(labels, NUM_CLASSES),
        batch_size=batch_size,
        seed=seed,
    )

    def forever():  # a fit longer than one pass must not run out of batches (as the original's did)
        while True:
            for i in range(len(flow)):
                yield flow[i]

    return forever()


class BatchClock(keras.callbacks.Callback):
    """When each training batch ended."""

    def __init__(self):
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def time_training(
    rows: list[Row],
    faces_by_shape: dict,
    cfg: ExperimentConfig,
    steps: int,
    warmup: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Images/s of each row: its own freshly built model and input, timed `rounds` times after warm-up
    steps (graph tracing, tf.data autotune), then freed before the next row. One row at a time: input
    pipelines left alive beside a timed one keep their threads busy and slow it down (measured: 4x)."""
    bs = cfg.train.batch_size
    a = cfg.augment
    rates: dict[str, list[float]] = {}
    for row in tqdm(rows, desc="timing", unit="row"):
        images, labels = faces_by_shape[(row.size, row.channels)]
        keras.backend.clear_session()
        gc.collect()
        seed_everything(cfg.seed, False)
        c = cfg.model_copy(deep=True)
        c.model.name = row.model
        c.augment.crop = row.crop
        model, schedule = build_compiled_model(c, images.shape[1:], steps, row.precision)
        if row.pipeline == "original":
            data = original_flow(images, labels, bs, cfg.seed)
        else:
            data = training_dataset(images, labels, bs, a, cfg.seed).repeat()
        clock = BatchClock()
        model.fit(
            data,
            epochs=1,
            steps_per_epoch=warmup + rounds * steps,
            verbose=0,
            callbacks=[clock, *schedule],
        )
        # Rounds are consecutive windows of one fit call: steady-state training, as in a run's epochs
        # (each fit call would otherwise pay its own set-up and a new input iterator).
        rates[row.name] = [
            steps
            * bs
            / (clock.ends[warmup + (r + 1) * steps - 1] - clock.ends[warmup + r * steps - 1])
            for r in range(rounds)
        ]
        del model, data
    return rates


def time_cache(cfg: ExperimentConfig) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data_cfg = cfg.data.model_copy(update={"cache_dir": tmp})
        t0 = time.perf_counter()
        faces = load_faces(data_cfg, cfg.seed)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_faces(data_cfg, cfg.seed)
        warm = time.perf_counter() - t0
    return {"faces": len(faces), "cold_s": cold, "warm_s": warm, "speedup": cold / warm}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=20, help="timed training steps per pipeline and round"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds, the pipelines taking turns"
    )
    parser.add_argument(
        "--warmup", type=positive_int, default=10, help="untimed steps first (tracing, autotune)"
    )
    parser.add_argument(
        "--data", default=str(DEFAULT_DATASET), help="dataset for the training and cache timings"
    )
    parser.add_argument(
        "--cache-data",
        nargs="*",
        default=[],
        help="more datasets to time the cache on (e.g. the full FER-2013 CSV)",
    )
    parser.add_argument("--json", default="benchmarks/results/throughput.json")
    args = parser.parse_args()

    cfg = load_config("baseline")
    faces_by_shape = {}
    for size, channels in ((64, 3), (48, 1)):
        data_cfg = cfg.data.model_copy(
            update={"path": args.data, "image_size": size, "channels": channels}
        )
        faces = load_faces(data_cfg, cfg.seed)
        train = (
            faces.subset(np.flatnonzero(faces.splits == "train"))
            if faces.has_official_split
            else faces
        )
        faces_by_shape[(size, channels)] = (train.images, train.labels)
    bs = cfg.train.batch_size
    images = faces_by_shape[(48, 1)][0]
    # one fit call must not run past one pass of the flow
    steps = min(args.steps, len(images) // bs)
    default_precision = recipe.resolve_precision("auto")
    rows_spec = rows_to_time(default_precision)
    rates = time_training(rows_spec, faces_by_shape, cfg, steps, args.warmup, args.rounds)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    orig = medians[rows_spec[0].name]
    default_row = next(
        r.name
        for r in rows_spec
        if r.model == cfg.model.name
        and r.size == cfg.data.image_size
        and r.channels == cfg.data.channels
        and r.precision == default_precision
    )
    rows = [(f"train img/s, {name}, median", rate) for name, rate in medians.items()]
    rows.append((f"ratio default path ({default_row}) / original way", medians[default_row] / orig))

    caches = {}
    for path in [args.data, *args.cache_data]:
        c = cfg.model_copy(deep=True)
        c.data.path = path
        caches[path] = time_cache(c)
        name = Path(path).name
        rows.append(
            (f"cache cold load s, {name} ({caches[path]['faces']} faces)", caches[path]["cold_s"])
        )
        rows.append((f"cache warm load s, {name}", caches[path]["warm_s"]))
        rows.append((f"cache speed-up, {name}", caches[path]["speedup"]))
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS MiB (whole benchmark)", peak_rss_mib))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value:,.2f}")

    result = {
        "batch_size": bs,
        "steps": steps,
        "augment": cfg.augment.model_dump(),
        "train_faces": int(len(images)),
        "rounds": args.rounds,
        "rows": [r.__dict__ for r in rows_spec],
        "images_per_second": medians,
        "images_per_second_per_round": rates,
        "default_row": default_row,
        "ratio_default_over_original": medians[default_row] / orig,
        "cache": caches,
        "peak_rss_mib": peak_rss_mib,
    }
    write_results(Path(args.json), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
