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
import contextlib
import csv
import errno
import io
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.cli import add_verbose_argument, positive_int, quiet_tensorflow, user_errors
from workbench.errors import WorkbenchError
from workbench.serve import DEFAULT_DETECTOR, MIN_FACE

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
UNCERTAIN = "uncertain"
# Faces are found on a copy no larger than this (a 10000 px photo would need ~15 GB to search); the
# boxes are mapped back to the photo and the faces cut from it, so only faces that end up under
# --min-face on the copy are missed.
DETECT_MAX_SIDE = 2560


@dataclass
class FacePrediction:
    file: str
    frame: int | None
    time_s: float | None
    face: int
    left: int
    top: int
    right: int
    bottom: int
    label: str
    probability: float
    probabilities: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict:
        d = asdict(self)
        probs = d.pop("probabilities")
        return d | {f"p_{k}": round(v, 6) for k, v in probs.items()}


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


def load_classifier(uri: str | None):
    """The model at an MLflow URI, or the shipped one when no URI is given (said on one line)."""
    if uri is None:
        from workbench.serve import shipped

        if not shipped.available():
            raise WorkbenchError(
                f"no --model given and this install has no shipped model ({shipped.MODEL_FILE}); "
                "pass --model runs:/<run_id>/model"
            )
        print(f"using {shipped.describe()}")
        return shipped.load_model()
    import mlflow
    from mlflow.exceptions import MlflowException

    from workbench.core.models import inputs  # noqa: F401  (registers FaceCrop for the loader)
    from workbench.tracking import store

    mlflow.set_tracking_uri(store.tracking_uri())
    try:
        model = mlflow.tensorflow.load_model(uri)
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WorkbenchError(f"--model {uri}: cannot load it ({first[:200]})") from None
    return model


class Predictor:
    def __init__(
        self,
        model,
        min_face: int,
        threshold: float,
        batch_size: int,
        detector: str = DEFAULT_DETECTOR,
        align: bool = True,
    ):
        from workbench import CLASS_NAMES
        from workbench.serve.detect import make_detector

        self.model, self.threshold, self.batch_size = model, threshold, batch_size
        self.size = int(model.input_shape[1])
        self.channels = int(model.input_shape[-1])  # 1 = a grey model (FER-2013's form), 3 = RGB
        self.classes = list(CLASS_NAMES)
        self.detector = make_detector(detector, min_face)
        self.align = align

    def classify(self, rgb, faces):
        """(label, top probability, all probabilities) per face, in batches."""
        import numpy as np

        from workbench.data.decode import resize_face
        from workbench.serve.detect import crop

        if not faces:
            return []
        crops = np.stack(
            [resize_face(crop(rgb, f, self.align), self.size, self.channels) for f in faces]
        ).astype(np.float32)
        probs = np.concatenate(
            [
                np.asarray(self.model(crops[i : i + self.batch_size], training=False))
                for i in range(0, len(crops), self.batch_size)
            ]
        )
        out = []
        for p in probs:
            k = int(p.argmax())
            label = self.classes[k] if p[k] >= self.threshold else UNCERTAIN
            out.append(
                (label, round(float(p[k]), 6), {c: float(v) for c, v in zip(self.classes, p)})
            )
        return out

    def detect(self, rgb):
        import cv2

        scale = DETECT_MAX_SIDE / max(rgb.shape[:2])
        if scale >= 1:
            return self.detector.detect(rgb)
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return [face.scaled(1 / scale) for face in self.detector.detect(small)]

    def faces(self, rgb, file: str, frame=None, time_s=None) -> list[FacePrediction]:
        found = self.detect(rgb)
        return [
            FacePrediction(
                file,
                frame,
                time_s,
                i,
                f.box.left,
                f.box.top,
                f.box.right,
                f.box.bottom,
                label,
                p,
                probs,
            )
            for i, (f, (label, p, probs)) in enumerate(zip(found, self.classify(rgb, found)))
        ]


def annotate(bgr, predictions: list[FacePrediction]):
    import cv2

    thickness = max(1, round(min(bgr.shape[:2]) / 300))
    for f in predictions:
        colour = (160, 160, 160) if f.label == UNCERTAIN else (40, 200, 40)
        cv2.rectangle(bgr, (f.left, f.top), (f.right, f.bottom), colour, thickness)
        text = f"{f.label} {f.probability:.0%}"
        scale = min(1.0, max(0.4, (f.right - f.left) / 250))
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y = f.top - 4 if f.top - th - 8 > 0 else f.bottom + th + 4
        cv2.rectangle(bgr, (f.left, y - th - 4), (f.left + tw + 4, y + 4), colour, -1)
        cv2.putText(
            bgr,
            text,
            (f.left + 2, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return bgr


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


def write_rows(path: Path, rows: list[dict], fields: list[str]) -> None:
    from workbench.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:  # closed before the rename
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


class RowStream:
    """predictions.csv written as the files are done, into a temp file that is renamed at the end
    whatever happened: rows that do not fit (a full disk) are cut off whole and counted in `lost`."""

    def __init__(self, path: Path, fields: list[str]):
        from workbench.files import atomic_path

        self.path, self.fields, self.written, self.lost = path, fields, 0, 0
        self._publish = contextlib.ExitStack()
        tmp = self._publish.enter_context(atomic_path(path))
        self.file = open(tmp, "wb", buffering=0)  # unbuffered: a failed write leaves nothing behind
        self.good = 0
        self._write(self._text([], header=True))

    def _text(self, rows: list[dict], header: bool = False) -> bytes:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.fields)
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return text.getvalue().encode()

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[self.file.write(view) :]
        except OSError:
            self.file.truncate(self.good)  # back to the last whole row
            self.file.seek(self.good)
            raise
        self.good += len(data)

    def add(self, rows: list[dict]) -> None:
        try:
            self._write(self._text(rows))
        except OSError as err:
            self.lost += len(rows)
            raise WorkbenchError(
                f"cannot add its rows to {self.path.name} ({err.strerror or err})"
            ) from None
        self.written += len(rows)

    def close(self) -> None:
        self.file.close()
        self._publish.close()


def write_image(path: Path, bgr) -> None:
    """Encode in memory, then write: cv2.imwrite only says False on a full or read-only disk."""
    import cv2

    from workbench.files import atomic_path

    ok, encoded = cv2.imencode(path.suffix, bgr)
    if not ok:
        raise WorkbenchError(f"cannot encode the annotated image as {path.suffix}")
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(encoded.tobytes())
    except OSError as err:
        kind = NoRoom if err.errno == errno.ENOSPC else WorkbenchError
        raise kind(f"cannot write {path} ({err.strerror or err})") from None


class NoRoom(WorkbenchError):
    """The output folder is full."""


def output_names(files: list[tuple[Path, Path]]) -> list[Path]:
    """Each input's output stem: `x.jpg` -> `x`, unless two inputs would share it (`x.jpg`, `x.png`):
    then both keep their extension (`x.jpg`, `x.png`), so no output overwrites another. Inputs that still would (`a/x.jpg`, `b/x.jpg`) keep the folders they were given with (`a/x.jpg`)."""
    stems = [rel.with_name(rel.stem) for _, rel in files]
    names = [rel if stems.count(stem) > 1 else stem for (_, rel), stem in zip(files, stems)]
    return [
        inside(path) if names.count(name) > 1 else name for (path, _), name in zip(files, names)
    ]


def inside(path: Path) -> Path:
    """`path` as a name under --out: its parts without the root, `.` or `..`."""
    return Path(*[p for p in path.parts if p not in (path.anchor, ".", "..")])


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


def finish(out: Path, rows: RowStream, result: dict) -> bool:
    """predictions.csv published (with every row that fit), then predictions.json; False (said on
    one line) when either could not hold everything."""
    from workbench.files import write_json_atomic

    try:
        rows.close()
    except OSError as err:
        raise WorkbenchError(
            f"--out {out}: cannot finish predictions.csv ({err.strerror or err})"
        ) from None
    held = "every face found" if not rows.lost else f"{rows.written} faces, {rows.lost} did not fit"
    try:
        write_json_atomic(out / "predictions.json", result)
    except OSError as err:
        print(
            f"error: --out {out}: cannot write predictions.json ({err.strerror or err}); "
            f"predictions.csv holds {held}",
            file=sys.stderr,
        )
        return False
    if rows.lost:
        print(f"error: --out {out} is full: predictions.csv holds {held}", file=sys.stderr)
    return not rows.lost


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
            model, args.min_face, args.threshold, args.batch_size, args.detector, args.align
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
