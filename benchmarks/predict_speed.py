"""Prediction speed on this machine: face detection (images/s), classification (faces/s, batched as
workbench.serve.predictor does vs one face per model.predict call, the naive way), and a video end to end
(frames/s). Uses the reference CNN (speed does not depend on its weights) and the shipped ExpW photos.

    python benchmarks/predict_speed.py [--json benchmarks/results/predict_speed.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from workbench.cli import quiet_tensorflow

quiet_tensorflow()

import numpy as np  # noqa: E402
from results_file import write_results  # noqa: E402

from workbench.core.models.registry import make_model  # noqa: E402
from workbench.data import SAMPLE_EXPW  # noqa: E402
from workbench.data.decode import read_rgb, resize_face  # noqa: E402
from workbench.data.expw import parse_label_file  # noqa: E402
from workbench.serve.detect import DETECTORS, Box, make_detector, recall  # noqa: E402
from workbench.serve.predictor import Predictor  # noqa: E402


def detectors(labels: Path, images: Path | None) -> dict[str, dict]:
    """Each detector's recall at IoU >= 0.5 on labelled ExpW faces, and its images/s on their photos."""
    boxes = parse_label_file(labels)
    folder = images or labels.parent / "origin"
    photos = {name: read_rgb(folder / name) for name in sorted({b.image for b in boxes})}
    labelled = [(b.image, Box(b.left, b.top, b.right, b.bottom)) for b in boxes]
    out = {}
    for name in DETECTORS:
        detector = make_detector(name)
        detector.detect(next(iter(photos.values())))  # warm-up (MTCNN traces its graphs)
        t0 = time.perf_counter()
        r = recall(detector, photos, labelled)
        out[name] = {
            "recall": r,
            "faces": len(labelled),
            "photos": len(photos),
            "images_per_s": len(photos) / (time.perf_counter() - t0),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="benchmarks/results/predict_speed.json")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument(
        "--labels",
        default=str(SAMPLE_EXPW),
        help="an ExpW label.lst whose boxes score the detectors (default: the shipped 67 faces; "
        "this project's 368: ../shared/data/expw/label_origin_sample.lst)",
    )
    parser.add_argument(
        "--images", default=None, help="the photos of --labels (default: origin/ beside it)"
    )
    args = parser.parse_args()
    detector_rows = detectors(Path(args.labels), Path(args.images) if args.images else None)

    model = make_model("reference", (48, 48, 1), 7)  # the baseline's shape: 48x48 grey
    predictor = Predictor(model, min_face=32, threshold=0.0, batch_size=64, detector="haar")
    photos = [read_rgb(p) for p in sorted((SAMPLE_EXPW.parent / "origin").glob("*.jpg"))]

    t0 = time.perf_counter()
    faces = [predictor.detector.detect(p) for p in photos]
    detect_ips = len(photos) / (time.perf_counter() - t0)
    crops = np.stack(
        [
            resize_face(p[f.box.top : f.box.bottom, f.box.left : f.box.right], 48, 1)
            for p, fs in zip(photos, faces)
            for f in fs
        ]
    )
    crops = np.concatenate([crops] * max(1, 512 // len(crops)))[:512].astype(np.float32)

    predictor.classify(photos[0], faces[0])  # warm-up (graph tracing)
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
        *[
            (f"{name}: recall at IoU >= 0.5 ({r['faces']} labelled faces), images/s", None, r)
            for name, r in detector_rows.items()
        ],
        ("face detection (haar), images/s (shipped ExpW photos)", detect_ips),
        ("classification, faces/s, one face per model.predict (naive)", naive_fps),
        ("classification, faces/s, batches of 64 (workbench.serve.predictor)", batched_fps),
        ("ratio batched / naive", batched_fps / naive_fps),
        (
            f"video end to end, frames/s (360x360, {n_faces / args.frames:.1f} faces a frame)",
            video_fps,
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  value")
    for name, value, *extra in rows:
        text = (
            f"{extra[0]['recall']:.1%}, {extra[0]['images_per_s']:.2f}"
            if extra
            else f"{value:,.2f}"
        )
        print(f"{name:<{width}}  {text}")
    write_results(
        Path(args.json),
        {
            "detectors": detector_rows,
            "detect_images_per_s": detect_ips,
            "classify_faces_per_s_naive": naive_fps,
            "classify_faces_per_s_batched": batched_fps,
            "video_frames_per_s": video_fps,
            "faces_per_frame": n_faces / args.frames,
            "photos": len(photos),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
