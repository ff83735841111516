"""Training throughput: this pipeline (tf.data + Keras preprocessing layers) vs the original project's
legacy ImageDataGenerator(...).flow, same model, same faces, same batch size, in one process;
plus decoded-face cache load times (cold = decode, warm = cached .npy).

    python benchmarks/throughput.py [--steps 40 --rounds 5] [--data PATH] [--json benchmarks/results/throughput.json]

Prints a table and writes JSON. Run it on an otherwise idle machine: both pipelines share the cores.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from workbench.cli import quiet_tensorflow

quiet_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from workbench.augment import ORIGINAL_ROTATION_DEG, ORIGINAL_SHEAR_DEG, ORIGINAL_SHIFT, ORIGINAL_ZOOM, training_dataset  # noqa: E402
from workbench.config import ExperimentConfig  # noqa: E402
from workbench.data import DEFAULT_DATASET, load_faces  # noqa: E402
from workbench.experiment import seed_everything  # noqa: E402
from workbench.files import write_json_atomic  # noqa: E402
from workbench.model import build_model  # noqa: E402


def original_flow(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """The original project's input: legacy ImageDataGenerator with its ranges, on float32 arrays."""
    gen = tf.keras.preprocessing.image.ImageDataGenerator(
        rotation_range=ORIGINAL_ROTATION_DEG, width_shift_range=ORIGINAL_SHIFT, height_shift_range=ORIGINAL_SHIFT,
        shear_range=ORIGINAL_SHEAR_DEG, zoom_range=ORIGINAL_ZOOM, horizontal_flip=True)
    return gen.flow(images.astype(np.float32), tf.keras.utils.to_categorical(labels, 7), batch_size=batch_size, seed=seed)


def time_training(inputs: dict, cfg: ExperimentConfig, steps: int, warmup: int, rounds: int) -> dict[str, list[float]]:
    """Images/s of each input pipeline, each with its own freshly built model. The pipelines take turns,
    `rounds` times, so that a slow patch of a shared machine hits both alike; warm-up steps (graph
    tracing, tf.data autotune) are not timed."""
    models, data = {}, {}
    for name, make_input in inputs.items():
        seed_everything(cfg.seed, cfg.train.deterministic)
        models[name] = build_model(cfg.model, cfg.data.image_size, cfg.train.learning_rate)
        data[name] = make_input()
        models[name].fit(data[name], epochs=1, steps_per_epoch=warmup, verbose=0)
    rates: dict[str, list[float]] = {name: [] for name in inputs}
    for _ in tqdm(range(rounds), desc="timing rounds", unit="round"):
        for name in inputs:
            started = time.perf_counter()
            models[name].fit(data[name], epochs=1, steps_per_epoch=steps, verbose=0)
            rates[name].append(steps * cfg.train.batch_size / (time.perf_counter() - started))
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
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per pipeline and round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, the pipelines taking turns")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--data", default=str(DEFAULT_DATASET), help="dataset for the training and cache timings")
    parser.add_argument("--cache-data", nargs="*", default=[],
                        help="more datasets to time the cache on (e.g. the full FER-2013 CSV)")
    parser.add_argument("--json", default="benchmarks/results/throughput.json")
    args = parser.parse_args()

    cfg = ExperimentConfig()
    cfg.data.path = args.data
    faces = load_faces(cfg.data, cfg.seed)
    train = faces.subset(faces.splits == "train") if faces.has_official_split else faces
    images, labels, bs = train.images, train.labels, cfg.train.batch_size
    steps = min(args.steps, len(images) // bs)  # one fit call must not run past one pass of the flow

    rates = time_training({
        "original": lambda: original_flow(images, labels, bs, cfg.seed),
        "this": lambda: training_dataset(images, labels, bs, 1.0, cfg.seed).repeat(),
    }, cfg, steps, args.warmup, args.rounds)
    orig, ours = statistics.median(rates["original"]), statistics.median(rates["this"])
    rows = [
        ("train img/s, ImageDataGenerator.flow (original), median", orig),
        ("train img/s, tf.data + Keras layers (this), median", ours),
        ("ratio this / original", ours / orig),
    ]

    caches = {}
    for path in [args.data, *args.cache_data]:
        c = cfg.model_copy(deep=True)
        c.data.path = path
        caches[path] = time_cache(c)
        name = Path(path).name
        rows.append((f"cache cold load s, {name} ({caches[path]['faces']} faces)", caches[path]["cold_s"]))
        rows.append((f"cache warm load s, {name}", caches[path]["warm_s"]))
        rows.append((f"cache speed-up, {name}", caches[path]["speedup"]))
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS MiB (whole benchmark)", peak_rss_mib))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value:,.2f}")

    result = {
        "batch_size": bs, "steps": steps, "augment_strength": 1.0, "train_faces": int(len(images)),
        "rounds": args.rounds,
        "images_per_second": {"original_image_data_generator": orig, "tf_data_keras_layers": ours},
        "images_per_second_per_round": rates,
        "ratio": ours / orig, "cache": caches, "peak_rss_mib": peak_rss_mib,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "tensorflow": tf.__version__, "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
    }
    out = write_json_atomic(Path(args.json), result)
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
