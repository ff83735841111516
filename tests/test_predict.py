"""Prediction on real shipped ExpW photos, a video made of them, and bad inputs; model registration."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY

from workbench.data import SAMPLE_EXPW
from workbench.data.decode import read_rgb
from workbench.data.expw import parse_label_file
from workbench.serve.detect import (
    DEFAULT_DETECTOR,
    Box,
    Face,
    HaarDetector,
    crop,
    eye_angle,
    iou,
    make_detector,
)
from workbench.serve.predict import main as predict_main
from workbench.serve.predict import parse_args

pytestmark = pytest.mark.slow  # trains and registers a model first

ORIGIN = SAMPLE_EXPW.parent / "origin"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny model trained on real faces, logged and registered through `workbench.run --register`."""
    from workbench.run import main as run_main

    root = tmp_path_factory.mktemp("registry")
    sets = [x for s in TINY + [f"data.cache_dir={root / 'cache'}"] for x in ("--set", s)]
    # module-scoped, so not the function-scoped monkeypatch fixture
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        assert run_main(["baseline", *sets, "--register", "fer-tiny"]) == 0
        yield "models:/fer-tiny/latest"


def labelled_photos(label: int) -> list[Path]:
    """Shipped photos whose label.lst lines hold a face of this label, in file order."""
    return [
        ORIGIN / name
        for name in sorted({b.image for b in parse_label_file(SAMPLE_EXPW) if b.label == label})
    ]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_detector_finds_most_labelled_faces_of_the_shipped_photos():
    detector = HaarDetector()
    boxes = parse_label_file(SAMPLE_EXPW)
    hits = 0
    for b in boxes:
        found = [f.box for f in detector.detect(read_rgb(ORIGIN / b.image))]
        hits += (
            max((iou(Box(b.left, b.top, b.right, b.bottom), d) for d in found), default=0) >= 0.5
        )
    rate = hits / len(boxes)
    print(f"detector: {hits}/{len(boxes)} labelled faces found with IoU >= 0.5 ({rate:.1%})")
    assert rate >= 0.5


def test_the_command_line_default_detector_is_the_module_default():
    assert parse_args(["x.jpg"]).detector == DEFAULT_DETECTOR


def test_predictions_for_every_face_of_a_folder(registered, tmp_path, capsys):
    code = predict_main(["--model", registered, str(ORIGIN), "--out", str(tmp_path)])
    table = rows(tmp_path / "predictions.csv")
    summary = json.loads((tmp_path / "predictions.json").read_text())
    detector = make_detector(DEFAULT_DETECTOR)
    expected = {str(p): len(detector.detect(read_rgb(p))) for p in sorted(ORIGIN.glob("*.jpg"))}
    got = {f: sum(r["file"] == f for r in table) for f in expected}
    assert got == expected  # one row per detected face, in every photo
    assert sum(expected.values()) == len(table) == summary["faces"] > 60
    no_face = {f for f, n in expected.items() if n == 0}
    assert {p["file"] for p in summary["problems"]} == no_face
    assert code == (1 if no_face else 0)
    for f, n in expected.items():
        assert (tmp_path / "origin" / (Path(f).stem + ".annotated.jpg")).is_file() == (n > 0)
    probs = np.array([[float(r[k]) for k in r if k.startswith("p_")] for r in table])
    assert probs.shape[1] == 7 and np.allclose(probs.sum(axis=1), 1, atol=1e-3)
    assert all(
        r["label"] in {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
        for r in table
    )


def test_video_made_of_real_faces_is_processed_frame_by_frame(registered, tmp_path):
    video = tmp_path / "faces.mp4"
    photos = labelled_photos(3)[:4] + labelled_photos(5)[:2]  # happy and surprised people
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 6.0, (480, 360))
    for photo in photos:
        frame = cv2.resize(cv2.imread(str(photo)), (480, 360))
        for _ in range(3):
            writer.write(frame)
    writer.release()
    predict_main(
        ["--model", registered, str(video), "--out", str(tmp_path / "out"), "--every", "2"]
    )
    per_frame = rows(tmp_path / "out" / "faces.frames.csv")
    assert per_frame and {int(r["frame"]) for r in per_frame} <= set(range(0, 18, 2))
    assert all(
        float(r["time_s"]) == pytest.approx(int(r["frame"]) / 6.0, abs=1e-3) for r in per_frame
    )
    cap = cv2.VideoCapture(str(tmp_path / "out" / "faces.annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 18
    cap.release()
    assert len(rows(tmp_path / "out" / "predictions.csv")) == len(per_frame)


def test_bad_inputs_are_one_line_each_and_the_rest_is_processed(registered, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a JPEG")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    blank = tmp_path / "blank.png"
    # a plain grey card: no face in it
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    good = labelled_photos(3)[0]
    code = predict_main(
        [
            "--model",
            registered,
            str(corrupt),
            str(notes),
            str(blank),
            str(tmp_path / "missing.jpg"),
            str(good),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 1
    assert any("corrupt.jpg: unreadable or corrupt image" in line for line in err)
    assert any("notes.txt: unsupported format '.txt'" in line for line in err)
    assert any("blank.png: no face found" in line for line in err)
    assert any("missing.jpg: no such file" in line for line in err)
    assert len(err) == 4
    assert {r["file"] for r in rows(tmp_path / "out" / "predictions.csv")} == {str(good)}


def test_unknown_model_uri_is_a_one_line_error(registered, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        predict_main(["--model", "models:/no-such-model/1", str(ORIGIN), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith(
        "error: --model models:/no-such-model/1: cannot load it"
    )
    assert "\n" not in err


def test_inputs_sharing_a_name_get_outputs_of_their_own(registered, tmp_path):
    photo = labelled_photos(3)[0]
    rgb = read_rgb(photo)
    cv2.imwrite(str(tmp_path / "x.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "x.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "y.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert (
        predict_main(
            [
                "--model",
                registered,
                *(str(tmp_path / n) for n in ("x.jpg", "x.png", "y.png")),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.glob("*.annotated.jpg")) == [
        "x.jpg.annotated.jpg",
        "x.png.annotated.jpg",
        "y.annotated.jpg",
    ]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(tmp_path / "x.jpg", tmp_path / folder / "x.jpg")
    args = ["--model", registered, "a/x.jpg", "b/x.jpg", "--out", str(tmp_path / "same")]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert predict_main(args) == 0
    written = sorted(
        str(p.relative_to(tmp_path / "same")) for p in (tmp_path / "same").rglob("*.jpg")
    )
    assert written == ["a/x.jpg.annotated.jpg", "b/x.jpg.annotated.jpg"]


def test_a_read_only_out_folder_is_a_one_line_error(registered, read_only_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        predict_main(
            ["--model", registered, str(ORIGIN), "--out", str(read_only_dir / "predictions")]
        )
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert err.startswith(
        f"error: --out {read_only_dir / 'predictions'}: cannot write there (Read-only file system)"
    )


def test_a_full_disk_keeps_every_row_of_predictions_csv(registered, small_disk, capsys):
    photos = labelled_photos(3)[:12]
    code = predict_main(
        ["--model", registered, "--detector", "haar", *map(str, photos), "--out", str(small_disk)]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: /")]
    full = [line for line in err if "cannot write" in line]
    assert code == 1
    assert full and all("(No space left on device)" in line for line in full)
    assert all("no face found" in line for line in err if line not in full)  # a photo Haar misses
    found = {r["file"] for r in rows(small_disk / "predictions.csv")}
    failed = {line.split(": ")[1] for line in full}
    assert failed <= found  # the photos whose annotated copy did not fit still have their rows
    assert len(list(small_disk.glob("*.annotated.jpg"))) < len(found)
    assert not list(small_disk.glob("*.tmp*"))


def test_a_disk_that_fills_up_stops_the_copies_and_keeps_every_row(registered, small_disk, capsys):
    code = predict_main(
        ["--model", registered, "--detector", "haar", str(ORIGIN), "--out", str(small_disk)]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    faces = int(out.strip().splitlines()[-1].split(" files, ")[1].split(" faces")[0])
    assert faces > 40 and len(rows(small_disk / "predictions.csv")) == faces
    assert "no more annotated copies; the rows go on" in err
    assert not list(small_disk.glob("*.tmp*"))


def test_an_empty_folder_is_a_one_line_problem(registered, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = predict_main(
        ["--model", registered, str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    )
    assert code == 1
    assert (
        f"error: {tmp_path / 'empty'}: no images or videos in this folder"
        in capsys.readouterr().err
    )


# workbench.predict in a process of its own that reports its own peak memory (kB) on its last line.
MEASURED = (
    "import resource, runpy, sys\n"
    "sys.argv = ['workbench.predict', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('workbench.predict', run_name='__main__')\n"
    "finally:\n"
    "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def test_a_huge_photo_is_searched_on_a_smaller_copy_and_boxed_in_its_own_pixels(
    registered, tmp_path
):
    import subprocess
    import sys

    photo = labelled_photos(3)[0]
    rgb = read_rgb(photo)
    factor = 10000 / max(rgb.shape[:2])
    huge = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "huge.jpg"), cv2.cvtColor(huge, cv2.COLOR_RGB2BGR))
    del huge
    peaks = {}
    for name, path in (("small", photo), ("huge", tmp_path / "huge.jpg")):
        args = [
            "--model",
            registered,
            "--detector",
            "haar",
            str(path),
            "--out",
            str(tmp_path / name),
        ]
        done = subprocess.run(
            [sys.executable, "-c", MEASURED, *args], capture_output=True, text=True, timeout=600
        )
        assert "Traceback" not in done.stderr, done.stderr[-1500:]
        peaks[name] = int(done.stderr.strip().splitlines()[-1]) / 2**20  # GB
    assert peaks["huge"] < 3, peaks  # 14.8 GB when the whole photo was searched
    small = rows(tmp_path / "small" / "predictions.csv")
    big = rows(tmp_path / "huge" / "predictions.csv")

    def box(row, shrink=1.0):
        return Box(*(round(int(row[k]) / shrink) for k in ("left", "top", "right", "bottom")))

    assert max(iou(box(b, factor), box(small[0])) for b in big) > 0.6


def test_alignment_turns_the_crop_so_the_eyes_are_level():
    # Two marks where a detector put the eyes, the right one 20 px lower: after alignment they share a row.
    image = np.zeros((200, 200, 3), np.uint8)
    left, right = (70, 90), (130, 110)
    for x, y in (left, right):
        image[y - 2 : y + 3, x - 2 : x + 3] = 255
    face = Face(Box(40, 40, 160, 160), 1.0, eyes=(left, right))
    assert eye_angle(face) == pytest.approx(18.43, abs=0.01)
    aligned = crop(image, face, align=True)
    assert aligned.shape == (120, 120, 3)
    rows = [
        np.flatnonzero(aligned[:, :60].max(axis=(1, 2))),
        np.flatnonzero(aligned[:, 60:].max(axis=(1, 2))),
    ]
    assert abs(rows[0].mean() - rows[1].mean()) < 1.5  # level
    plain = crop(image, face, align=False)
    assert np.array_equal(plain, image[40:160, 40:160])  # without it: the box as it is


def test_the_predictor_averages_the_views_it_is_given(registered):
    """With flip, a face's probabilities are the mean of the face's and its mirror's; the shipped
    model predicts with the views its card was scored with."""
    from workbench.data.decode import resize_face
    from workbench.serve import shipped
    from workbench.serve.predict import default_tta
    from workbench.serve.predictor import Predictor, load_classifier

    model = load_classifier(registered)
    rgb = read_rgb(labelled_photos(3)[0])
    plain = Predictor(model, 32, 0.0, 64, "haar", align=False)
    faces = plain.detector.detect(rgb)
    size, channels = plain.size, plain.channels
    x = np.stack([resize_face(crop(rgb, f, False), size, channels) for f in faces]).astype(
        np.float32
    )
    face, mirror = np.asarray(model(x)), np.asarray(model(x[:, :, ::-1]))

    def probs(predictor):
        return np.array([list(p.values()) for _, _, p in predictor.classify(rgb, faces)])

    flip = Predictor(model, 32, 0.0, 64, "haar", align=False, tta="flip")
    np.testing.assert_allclose(probs(flip), (face + mirror) / 2, atol=1e-6)
    np.testing.assert_allclose(probs(plain), face, atol=1e-6)
    assert np.abs(face - mirror).max() > 1e-3  # the views differ, so the average is seen
    assert default_tta(None) == shipped.tta() and default_tta(registered) == "none"
