"""Prediction speed on this machine: face detection (images/s), classification (faces/s, batched as
workbench.serve.predict does vs one face per model.predict call, the naive way), and a video end to end
(frames/s). Uses the reference CNN (speed does not depend on its weights) and the shipped ExpW photos.

    python benchmarks/predict_speed.py [--json benchmarks/results/predict_speed.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from workbench.cli import quiet_tensorflow

quiet_tensorflow()

import numpy as np  # noqa: E402

from workbench.core.models.registry import make_model  # noqa: E402
from workbench.data import SAMPLE_EXPW  # noqa: E402
from workbench.data.decode import read_rgb, resize_face  # noqa: E402
from workbench.files import write_json_atomic  # noqa: E402
from workbench.serve.predict import Predictor  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="benchmarks/results/predict_speed.json")
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()

    model = make_model("reference", (48, 48, 1), 7)  # the baseline's shape: 48x48 grey
    predictor = Predictor(model, min_face=32, threshold=0.0, batch_size=64)
    photos = [read_rgb(p) for p in sorted((SAMPLE_EXPW.parent / "origin").glob("*.jpg"))]

    t0 = time.perf_counter()
    boxes = [predictor.detector.detect(p) for p in photos]
    detect_ips = len(photos) / (time.perf_counter() - t0)
    crops = np.stack(
        [
            resize_face(p[b.top : b.bottom, b.left : b.right], 48, 1)
            for p, bs in zip(photos, boxes)
            for b in bs
        ]
    )
    crops = np.concatenate([crops] * max(1, 512 // len(crops)))[:512].astype(np.float32)

    predictor.classify(photos[0], boxes[0] or [])  # warm-up (graph tracing)
    model.predict(crops[:1], verbose=0)
    t0 = time.perf_counter()
    for i in range(0, len(crops), 64):
        np.asarray(model(crops[i : i + 64], training=False))
    batched_fps = len(crops) / (time.perf_counter() - t0)
    naive = crops[:64]
    t0 = time.perf_counter()
    for face in naive:
        model.predict(face[None], verbose=0)
    naive_fps = len(naive) / (time.perf_counter() - t0)

    frames = [resize_face(p, 360)[:, :, :] for p in photos]  # 360x360 frames of real photos
    t0 = time.perf_counter()
    n_faces = 0
    for i in range(args.frames):
        n_faces += len(predictor.faces(frames[i % len(frames)], "video", i, i / 25))
    video_fps = args.frames / (time.perf_counter() - t0)

    rows = [
        ("face detection, images/s (shipped ExpW photos)", detect_ips),
        ("classification, faces/s, one face per model.predict (naive)", naive_fps),
        ("classification, faces/s, batches of 64 (workbench.serve.predict)", batched_fps),
        ("ratio batched / naive", batched_fps / naive_fps),
        (
            f"video end to end, frames/s (360x360, {n_faces / args.frames:.1f} faces a frame)",
            video_fps,
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value:,.2f}")
    out = write_json_atomic(
        Path(args.json),
        {
            "detect_images_per_s": detect_ips,
            "classify_faces_per_s_naive": naive_fps,
            "classify_faces_per_s_batched": batched_fps,
            "video_frames_per_s": video_fps,
            "faces_per_frame": n_faces / args.frames,
            "photos": len(photos),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
    )
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
