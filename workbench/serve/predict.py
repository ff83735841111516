"""`python -m workbench.predict [--model MODEL_URI] PATH [PATH ...]`: expressions of the faces in photos,
folders and videos, with the model shipped with the workbench or one it logged (any MLflow model URI).

    python -m workbench.predict photo.jpg
    python -m workbench.predict --model runs:/<run_id>/model photos/ clip.mp4 --out predictions/
    python -m workbench.predict --model models:/fer-baseline/latest group.jpg --every 5 --threshold 0.4

Writes an annotated copy of each image, an annotated video plus a per-frame CSV for each video, and
predictions.csv / predictions.json for every face found. A bad file is reported on one line and the
others are still processed; the exit status is 1 if any file had a problem, 2 for a bad model or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from workbench.cli import add_verbose_argument, positive_int, quiet_tensorflow, user_errors
from workbench.core.settings import TTA_MODES
from workbench.errors import WorkbenchError
from workbench.serve import DEFAULT_DETECTOR, MIN_FACE
from workbench.serve.outputs import NoRoom, RowStream, finish, output_names, write_image, write_rows
from workbench.serve.predictor import (
    UNCERTAIN,
    FacePrediction,
    Predictor,
    annotate,
    load_classifier,
)

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m workbench.predict", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--model",
        default=None,
        help="MLflow model URI: runs:/<run_id>/model, models:/<name>/<version|alias|latest> "
        "(default: the model shipped with the workbench, see workbench/shipped/MODEL_CARD.md)",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="images, folders of images, videos"
    )
    parser.add_argument(
        "--out", default="predictions", help="output folder (default ./predictions)"
    )
    add_verbose_argument(parser)
    parser.add_argument(
        "--min-face",
        type=positive_int,
        default=MIN_FACE,
        help=f"smallest face side in pixels (default {MIN_FACE})",
    )
    parser.add_argument(
        "--every",
        type=positive_int,
        default=1,
        help="videos: classify every N-th frame (default 1)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help=f"below this top probability a face is labelled '{UNCERTAIN}' (default 0: always a label)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        default=None,
        help="test-time views averaged per face (default: the shipped model's card's; none for "
        "a --model URI)",
    )
    parser.add_argument(
        "--detector",
        choices=["mtcnn", "haar"],
        default=DEFAULT_DETECTOR,
        help="mtcnn (finds profiles and small faces, gives eye landmarks; default) or haar (faster, "
        "frontal faces only)",
    )
    parser.add_argument(
        "--no-align",
        dest="align",
        action="store_false",
        help="do not turn faces so the eyes are level (alignment needs mtcnn's landmarks)",
    )
    args = parser.parse_args(argv)
    if args.every < 1 or args.min_face < 1 or not 0 <= args.threshold <= 1:
        parser.error("--every and --min-face must be positive, --threshold in [0, 1]")
    return args


def default_tta(model_uri: str | None) -> str:
    """The shipped model's figures were computed with its card's views; a logged model's, unknown."""
    from workbench.serve import shipped

    return shipped.tta() if model_uri is None else "none"


def expand(paths: list[str]) -> list[tuple[Path, Path]]:
    """(file, name relative to its argument) for every file to process; folders are searched recursively."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXT | VIDEO_EXT
            )
            files += [(f, Path(p.name) / f.relative_to(p)) for f in found] or [(p, Path(p.name))]
        else:
            files.append((p, Path(p.name)))
    return files


def image_faces(predictor: Predictor, path: Path):
    """(the photo as RGB, its faces), or a one-line error."""
    from workbench.data.decode import read_rgb

    rgb = read_rgb(path)
    if rgb is None:
        raise WorkbenchError("unreadable or corrupt image")
    found = predictor.faces(rgb, str(path))
    if not found:
        raise WorkbenchError(
            f"no face found (try a smaller --min-face than {predictor.detector.min_face})"
        )
    return rgb, found


def process_video(
    predictor: Predictor, path: Path, out_video: Path, out_csv: Path, every: int, fields: list[str]
) -> list[FacePrediction]:
    import cv2
    from tqdm import tqdm

    from workbench.files import atomic_path

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise WorkbenchError("unreadable video (not a video file, or a codec OpenCV lacks)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer = None
    found: list[FacePrediction] = []
    last: list[FacePrediction] = []
    frame = 0
    with (
        atomic_path(out_video) as tmp_video,
        tqdm(total=total, desc=path.name, unit="frame", leave=False) as bar,
    ):
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if writer is None:
                writer = cv2.VideoWriter(
                    str(tmp_video),
                    cv2.VideoWriter_fourcc(*"mp4v"),
                    fps,
                    (bgr.shape[1], bgr.shape[0]),
                )
            if frame % every == 0:
                last = predictor.faces(
                    cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), str(path), frame, round(frame / fps, 3)
                )
                found += last
            writer.write(annotate(bgr, last))  # frames in between keep the last boxes
            frame += 1
            bar.update()
        cap.release()
        if writer is None:
            raise WorkbenchError("the video has no frames OpenCV can decode")
        writer.release()
    write_rows(out_csv, [f.row() for f in found], fields)
    if not found:
        raise WorkbenchError(
            f"no face found in {frame} frames (annotated video and empty CSV written)"
        )
    return found


def summary(model: str | None, files: list, results: list[FacePrediction], problems) -> dict:
    return {
        "model": model or "shipped",
        "files": len(files),
        "faces": len(results),
        "problems": [{"file": f, "error": e} for f, e in problems],
        "faces_found": [f.row() for f in results],
    }


@dataclass
class Outputs:
    """Where each input's results go: its rows in predictions.csv, its annotated copy beside it.
    Once --out is full the annotated copies stop, so the room left goes to the rows."""

    out: Path
    rows: RowStream
    every: int
    fields: list[str]
    annotate: bool = True
    found: list[FacePrediction] = field(default_factory=list)  # every face with its row written

    def process(self, predictor: Predictor, path: Path, name: Path) -> None:
        import cv2

        suffix = path.suffix.lower()
        if not path.exists():
            raise WorkbenchError("no such file or folder")
        if path.is_dir():
            raise WorkbenchError("no images or videos in this folder")
        if suffix in VIDEO_EXT:
            video, frames = self.out / f"{name}.annotated.mp4", self.out / f"{name}.frames.csv"
            found = process_video(predictor, path, video, frames, self.every, self.fields)
            self.rows.add([f.row() for f in found])
            self.found += found
            return
        if suffix not in IMAGE_EXT:
            raise WorkbenchError(
                f"unsupported format '{suffix or path.name}': expected an image "
                f"({', '.join(sorted(IMAGE_EXT))}) or a video ({', '.join(sorted(VIDEO_EXT))})"
            )
        rgb, found = image_faces(predictor, path)
        self.rows.add([f.row() for f in found])
        self.found += found
        if self.annotate:
            bgr = annotate(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), found)
            try:
                write_image(self.out / f"{name}.annotated.jpg", bgr)
            except NoRoom as err:
                self.annotate = False
                raise NoRoom(f"{err}: no more annotated copies; the rows go on") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow(args.verbose)
    # one bar: ours, over the files
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with user_errors():
        from tqdm import tqdm

        from workbench import CLASS_NAMES
        from workbench.files import writable_dir

        out = writable_dir(Path(args.out), "--out")
        model = load_classifier(args.model)
        predictor = Predictor(
            model,
            args.min_face,
            args.threshold,
            args.batch_size,
            args.detector,
            args.align,
            args.tta or default_tta(args.model),
        )
        fields = list(FacePrediction.__dataclass_fields__)[:-1] + [f"p_{c}" for c in CLASS_NAMES]
        files = expand(args.paths)
        problems: list[tuple[str, str]] = []
        outputs = Outputs(out, RowStream(out / "predictions.csv", fields), args.every, fields)
        for (path, _), name in zip(tqdm(files, desc="files", unit="file"), output_names(files)):
            try:
                outputs.process(predictor, path, name)
            except WorkbenchError as err:
                problems.append((str(path), str(err)))
                tqdm.write(f"error: {path}: {err}", file=sys.stderr)
        results = outputs.found
        complete = finish(out, outputs.rows, summary(args.model, files, results, problems))
        counts = {}
        for f in results:
            counts[f.label] = counts.get(f.label, 0) + 1
        print(
            f"{len(files)} files, {len(results)} faces ({', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'}), "
            f"{len(problems)} with problems; results in {out}/ (predictions.csv, predictions.json)"
        )
        return 1 if problems or not complete else 0
