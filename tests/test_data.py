"""Loaders on the shipped real samples: FER-2013 CSV, ExpW label.lst + originals, class folders; the cache."""

import gzip
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from workbench import CLASS_NAMES
from workbench.config import DataConfig
from workbench.data import DEFAULT_DATASET, SAMPLE_EXPW, load_faces
from workbench.data.decode import clip_box, resize_face
from workbench.data.expw import parse_label_file
from workbench.errors import WorkbenchError


def load(path, cache_dir, **kw):
    return load_faces(
        DataConfig(path=str(path) if path else None, cache_dir=str(cache_dir), **kw), seed=0
    )


# --- FER-2013 CSV -----------------------------------------------------------------------------


def test_fer_sample_is_the_default_with_official_split(cache_dir):
    faces = load(None, cache_dir, image_size=64, channels=3)
    assert faces.path == str(DEFAULT_DATASET) and faces.format == "fer2013"
    assert faces.images.shape == (3500, 64, 64, 3) and faces.images.dtype == np.uint8
    assert faces.class_counts() == {name: 500 for name in CLASS_NAMES}
    for split, per_class in (("train", 400), ("val", 50), ("test", 50)):
        assert np.bincount(faces.labels[faces.splits == split]).tolist() == [per_class] * 7
    # gray 48x48 -> RGB: the three channels are equal
    assert np.array_equal(faces.images[..., 0], faces.images[..., 2])
    assert len(set(faces.groups)) == 3500


def test_fer_pixels_match_the_csv(cache_dir):
    faces = load(None, cache_dir, image_size=64, channels=3)
    with gzip.open(DEFAULT_DATASET, "rt") as f:
        f.readline()
        emotion, pixels, usage = f.readline().strip().split(",")
    gray = np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
    assert faces.labels[0] == int(emotion)
    assert np.array_equal(faces.images[0], resize_face(gray, 64))


def test_fer_native_form_is_the_csv_pixels_untouched(cache_dir):
    """48x48 grey (the default): the very pixels of the CSV, no resampling."""
    faces = load(None, cache_dir)
    assert faces.images.shape == (3500, 48, 48, 1)
    with gzip.open(DEFAULT_DATASET, "rt") as f:
        f.readline()
        _, pixels, _ = f.readline().strip().split(",")
    assert np.array_equal(
        faces.images[0, :, :, 0], np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
    )


def test_resize_linear_is_cv2_resize_as_the_original_called_it(cache_dir):
    """data.resize=linear: bit-identical to the original's cv2.resize(crop, (64, 64))."""
    faces = load(SAMPLE_EXPW, cache_dir, image_size=64, channels=3, resize="linear")
    # shrunk
    b = next(
        b for b in parse_label_file(SAMPLE_EXPW) if min(b.bottom - b.top, b.right - b.left) > 100
    )
    bgr = cv2.imread(str(SAMPLE_EXPW.parent / "origin" / b.image))
    original = cv2.cvtColor(
        cv2.resize(bgr[b.top : b.bottom, b.left : b.right], (64, 64)), cv2.COLOR_BGR2RGB
    )
    i = list(faces.ids).index(f"{b.image}#{b.face_id}")
    assert np.array_equal(faces.images[i], original)
    area = load(SAMPLE_EXPW, cache_dir, image_size=64, channels=3)
    assert area.digest != faces.digest and not np.array_equal(area.images[i], original)


def _write_csv(path: Path, rows: list[str], header="emotion,pixels,Usage"):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def _fer_rows(n: int) -> list[str]:
    with gzip.open(DEFAULT_DATASET, "rt") as f:
        f.readline()
        return [f.readline().strip() for _ in range(n)]


def test_wrong_csv_header_names_file_and_column(tmp_path, cache_dir):
    bad = _write_csv(
        tmp_path / "faces.csv", ["0,1 2 3,Training"], header="label,pixel_values,Usage"
    )
    with pytest.raises(WorkbenchError, match=r"faces\.csv: header .* lacks column 'emotion'"):
        load(bad, cache_dir)


def test_bad_rows_are_skipped_counted_and_limited(tmp_path, cache_dir):
    rows = _fer_rows(200)
    rows[5] = "3,1 2 3,Training"  # not a square image
    rows[7] = "9," + rows[7].split(",")[1] + ",Training"  # no such label
    rows[9] = "2,,Training"  # no pixels
    path = _write_csv(tmp_path / "faces.csv", rows)
    faces = load(path, cache_dir, max_skip_fraction=0.05)
    assert len(faces) == 197 and len(faces.skipped) == 3
    assert faces.skipped[0].item == "faces.csv:7" and "not a square" in faces.skipped[0].reason
    assert "not a label 0..6" in faces.skipped[1].reason
    with pytest.raises(WorkbenchError, match=r"3 of 200 faces skipped .*max_skip_fraction=0.01"):
        load(path, cache_dir)  # default limit 1%


def test_bad_pixel_tokens_are_counted_skips_not_tracebacks(tmp_path, cache_dir):
    rows = _fer_rows(300)
    for i, token in zip((3, 5, 7, 9), ("abc", "300", "-5", "1.5")):
        emotion, pixels, usage = rows[i].split(",")
        rows[i] = f"{emotion},{token} {pixels.split(' ', 1)[1]},{usage}"
    faces = load(_write_csv(tmp_path / "faces.csv", rows), cache_dir, max_skip_fraction=0.05)
    assert len(faces) == 296
    reasons = [s.reason for s in faces.skipped]
    assert reasons == [
        "pixel 'abc' is not an integer 0..255",
        "pixel value 300 is outside 0..255",
        "pixel value -5 is outside 0..255",
        "pixel '1.5' is not an integer 0..255",
    ]


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path, cache_dir):
    path = tmp_path / "faces.csv"
    path.write_bytes(
        b"\xef\xbb\xbf" + _write_csv(tmp_path / "plain.csv", _fer_rows(50)).read_bytes()
    )
    assert len(load(path, cache_dir)) == 50


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            "truncated",
            r"faces\.csv\.gz: the file ends early .* truncated, copy or download it again",
        ),
        (
            "unclosed quote",
            r"faces\.csv\.gz: not a well-formed CSV \(.*EOF inside string.*\); look for an unclosed quote",
        ),
        ("latin-1 byte", r"faces\.csv\.gz: not UTF-8 text .*; save the CSV as UTF-8"),
    ],
)
def test_damaged_csv_files_are_one_line_errors(tmp_path, cache_dir, damage, message):
    text = _write_csv(tmp_path / "plain.csv", _fer_rows(100)).read_bytes()
    if damage == "unclosed quote":
        text += b'3,"12 13 14\n'
    if damage == "latin-1 byte":
        text = text[:5000] + b"\xe9" + text[5000:]
    packed = gzip.compress(text)
    path = tmp_path / "faces.csv.gz"
    path.write_bytes(packed[: len(packed) // 2] if damage == "truncated" else packed)
    with pytest.raises(WorkbenchError, match=message):
        load(path, cache_dir)


def test_a_usage_typo_is_refused_not_a_silent_random_split(tmp_path, cache_dir):
    rows = _fer_rows(60)
    emotion, pixels, _ = rows[4].split(",")
    rows[4] = f"{emotion},{pixels},Trainig"
    with pytest.raises(
        WorkbenchError,
        match=r"faces\.csv:6: Usage 'Trainig' is not one of Training, PublicTest, "
        r"PrivateTest \(1 such rows\)",
    ):
        load(_write_csv(tmp_path / "faces.csv", rows), cache_dir)


def test_missing_path_is_a_one_line_error(cache_dir):
    with pytest.raises(WorkbenchError, match="does not exist"):
        load("/nowhere/fer.csv", cache_dir)


def test_max_faces_samples_before_decoding(cache_dir):
    faces = load(None, cache_dir, max_faces=350)
    assert len(faces) == 350
    again = load(None, cache_dir, max_faces=350)
    assert np.array_equal(faces.ids, again.ids)


# --- cache ------------------------------------------------------------------------------------


def test_cache_hit_returns_the_same_faces_memory_mapped(cache_dir):
    first = load(SAMPLE_EXPW, cache_dir)
    entries = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    second = load(SAMPLE_EXPW, cache_dir)
    assert isinstance(second.images, np.memmap)
    assert np.array_equal(first.images, second.images) and np.array_equal(
        first.groups, second.groups
    )
    assert first.digest == second.digest == entries[0].name


def test_cache_key_changes_with_parameters_and_content(tmp_path, cache_dir):
    a = load(SAMPLE_EXPW, cache_dir).digest
    assert load(SAMPLE_EXPW, cache_dir, image_size=64).digest != a
    assert load(SAMPLE_EXPW, cache_dir, channels=3).digest != a
    copy = tmp_path / "expw"
    shutil.copytree(SAMPLE_EXPW.parent, copy)
    assert load(copy / "label.lst", cache_dir).digest == a  # content, not location
    lines = (copy / "label.lst").read_text().splitlines()
    (copy / "label.lst").write_text("\n".join(lines[1:]) + "\n")
    assert load(copy / "label.lst", cache_dir).digest != a


def test_interrupted_or_damaged_cache_entries_are_never_used(cache_dir):
    faces = load(SAMPLE_EXPW, cache_dir)
    entry = cache_dir / faces.digest
    # A killed writer leaves only a hidden temp folder; a damaged entry lacks its marker file.
    (cache_dir / ".deadbeef-tmp").mkdir()
    (entry / "meta.json").unlink()
    again = load(SAMPLE_EXPW, cache_dir)
    assert not isinstance(again.images, np.memmap)  # decoded afresh, and stored again
    assert (entry / "meta.json").is_file() and np.array_equal(again.images, faces.images)
    third = load(SAMPLE_EXPW, cache_dir)
    assert isinstance(third.images, np.memmap) and np.array_equal(third.images, faces.images)


# --- ExpW -------------------------------------------------------------------------------------


def test_clip_box_math():
    assert clip_box(10, 20, 60, 50, height=100, width=100) == (10, 20, 60, 50)
    # clipped to the image
    assert clip_box(-5, -3, 60, 120, height=100, width=50) == (
        0,
        0,
        50,
        100,
    )
    assert clip_box(10, 20, 20, 50, height=100, width=100) is None  # zero width
    assert clip_box(120, 0, 10, 130, height=100, width=100) is None  # entirely outside


def test_expw_sample_crops_rows_top_bottom_and_columns_left_right(cache_dir):
    faces = load(SAMPLE_EXPW, cache_dir, image_size=64, channels=3)
    boxes = parse_label_file(SAMPLE_EXPW)
    assert len(faces) == len(boxes) == 67 and faces.format == "expw"
    assert set(faces.groups) == {b.image for b in boxes}  # group id = source image
    assert len(set(faces.groups)) == 49
    b = boxes[0]
    image = cv2.cvtColor(
        cv2.imread(str(SAMPLE_EXPW.parent / "origin" / b.image)), cv2.COLOR_BGR2RGB
    )
    expected = resize_face(image[b.top : b.bottom, b.left : b.right], 64)
    i = list(faces.ids).index(f"{b.image}#{b.face_id}")
    assert np.array_equal(faces.images[i], expected)
    assert faces.labels[i] == b.label


def test_expw_confidence_filter_is_strictly_above(cache_dir):
    boxes = parse_label_file(SAMPLE_EXPW)
    faces = load(SAMPLE_EXPW, cache_dir, min_confidence=55)
    assert len(faces) == sum(b.confidence > 55 for b in boxes) > 0


def _expw_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "expw"
    shutil.copytree(SAMPLE_EXPW.parent, copy)
    return copy


def test_expw_bad_line_names_file_line_and_field(tmp_path, cache_dir):
    copy = _expw_copy(tmp_path)
    lines = (copy / "label.lst").read_text().splitlines()
    parts = lines[2].split()
    parts[2] = "top?"
    lines[2] = " ".join(parts)
    (copy / "label.lst").write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkbenchError, match=r"label\.lst:3: field face_box_top is 'top\?'"):
        load(copy, cache_dir)
    (copy / "label.lst").write_text("a.jpg 0 1 2\n")
    with pytest.raises(WorkbenchError, match=r"label\.lst:1: 4 fields, expected 8"):
        load(copy, cache_dir)


@pytest.mark.parametrize("name", ["/etc/hostname", "../secret.jpg", "a/../../b.jpg"])
def test_expw_image_names_cannot_leave_the_image_folder(tmp_path, name):
    label = tmp_path / "label.lst"
    label.write_text(f"ok.jpg 0 1 2 30 40 60.0 3\n{name} 0 1 2 30 40 60.0 3\n")
    with pytest.raises(
        WorkbenchError,
        match=rf"label\.lst:2: field image_name is '{re.escape(name)}'; expected a name inside",
    ):
        parse_label_file(label)


def test_expw_missing_corrupt_and_zero_area_faces_are_skipped(tmp_path, cache_dir):
    copy = _expw_copy(tmp_path)
    lines = (copy / "label.lst").read_text().splitlines()
    images = sorted({l.split()[0] for l in lines})
    (copy / "origin" / images[0]).unlink()  # missing
    (copy / "origin" / images[1]).write_bytes(b"not a jpeg")  # corrupt
    parts = lines[-1].split()
    parts[2:6] = ["50", "40", "40", "90"]  # left == right: zero area
    lines[-1] = " ".join(parts)
    (copy / "label.lst").write_text("\n".join(lines) + "\n")
    faces = load(copy, cache_dir, max_skip_fraction=0.2)
    lost = sum(l.split()[0] in images[:2] for l in lines) + 1
    assert len(faces) == 67 - lost and len(faces.skipped) == lost
    reasons = {s.reason for s in faces.skipped}
    assert reasons == {"missing or unreadable image", "zero-area box after clipping to the image"}
    with pytest.raises(WorkbenchError, match="max_skip_fraction"):
        load(copy, cache_dir)


def test_expw_needs_an_image_folder(tmp_path, cache_dir):
    lonely = tmp_path / "label.lst"
    shutil.copyfile(SAMPLE_EXPW, lonely)
    with pytest.raises(WorkbenchError, match="no image folder found.*data.images_dir"):
        load(lonely, cache_dir)
    faces = load_faces(
        DataConfig(
            path=str(lonely),
            images_dir=str(SAMPLE_EXPW.parent / "origin"),
            cache_dir=str(cache_dir),
        ),
        0,
    )
    assert len(faces) == 67


# --- class folders ----------------------------------------------------------------------------


def _folders_from_expw(root: Path, cache_dir: Path, with_splits: bool) -> list[tuple[Path, int]]:
    faces = load(SAMPLE_EXPW, cache_dir)
    written = []
    for i, (image, label) in enumerate(zip(faces.images, faces.labels)):
        split = ("train" if i % 3 else "test") if with_splits else ""
        folder = root / split / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"face{i}.{'png' if i % 2 else 'jpg'}"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        written.append((path, int(label)))
    return written


def test_class_folders_load_labels_and_optional_split(tmp_path, cache_dir):
    written = _folders_from_expw(tmp_path / "flat", cache_dir, with_splits=False)
    faces = load(tmp_path / "flat", cache_dir)
    assert faces.format == "folders" and len(faces) == len(written)
    by_id = dict(zip(faces.ids, faces.labels))
    for path, label in written:
        assert by_id[str(path.relative_to(tmp_path / "flat"))] == label
    assert set(faces.splits) == {""}
    _folders_from_expw(tmp_path / "split", cache_dir, with_splits=True)
    split_faces = load(tmp_path / "split", cache_dir)
    assert set(split_faces.splits) == {"train", "test"}


def test_class_folders_unknown_class_and_corrupt_image(tmp_path, cache_dir):
    root = tmp_path / "faces"
    _folders_from_expw(root, cache_dir, with_splits=False)
    (root / "happy" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    faces = load(root, cache_dir, max_skip_fraction=0.05)
    assert [s.item for s in faces.skipped] == ["happy/broken.jpg"]
    (root / "contempt").mkdir()
    with pytest.raises(WorkbenchError, match="unknown class folder 'contempt'"):
        load(root, cache_dir)


def test_class_folders_links_and_folders_named_like_images_are_counted_skips(tmp_path, cache_dir):
    root = tmp_path / "faces"
    written = _folders_from_expw(root, cache_dir, with_splits=False)
    (root / "sad" / "gone.jpg").symlink_to(root / "sad" / "no-such-file.jpg")
    (root / "sad" / "loop.png").symlink_to(root / "sad" / "loop.png")
    (root / "fear" / "album.jpg").mkdir()
    faces = load(root, cache_dir, max_skip_fraction=0.05)
    assert len(faces) == len(written)
    assert sorted(s.item for s in faces.skipped) == [
        "fear/album.jpg",
        "sad/gone.jpg",
        "sad/loop.png",
    ]
    assert all("not a readable file" in s.reason for s in faces.skipped)


def test_fixing_or_breaking_links_in_a_cached_folder_changes_its_skips(tmp_path, cache_dir):
    root = tmp_path / "faces"
    written = _folders_from_expw(root, cache_dir, with_splits=False)
    links = [root / "sad" / f"gone{i}.jpg" for i in range(4)]
    for link in links:
        link.symlink_to(root / "sad" / "no-such-file.jpg")
    with pytest.raises(WorkbenchError, match=f"4 of {len(written) + 4} faces skipped"):
        load(root, cache_dir)
    for link in links:
        link.unlink()
    assert load(root, cache_dir).skipped == []  # fixed: loads, from the cache
    (root / "fear" / "new.jpg").symlink_to(root / "fear" / "no-such-file.jpg")
    assert [s.item for s in load(root, cache_dir, max_skip_fraction=0.05).skipped] == [
        "fear/new.jpg"
    ]


def test_a_split_folder_beside_class_folders_is_refused(tmp_path, cache_dir):
    root = tmp_path / "faces"
    _folders_from_expw(root, cache_dir, with_splits=False)
    (root / "train" / "happy").mkdir(parents=True)
    with pytest.raises(
        WorkbenchError, match=r"faces: has split folders \(train\) beside other folders \(angry, "
    ):
        load(root, cache_dir)


def test_an_unwritable_cache_is_a_note_and_the_faces_still_load(read_only_dir, capsys):
    faces = load(None, read_only_dir / "cache")
    assert len(faces) == 3500
    err = capsys.readouterr().err
    assert (
        f"note: decoded faces not cached in {read_only_dir / 'cache'} (Read-only file system)"
        in err
    )


def test_a_full_cache_disk_is_a_note_and_leaves_no_temp_folder(small_disk, capsys):
    faces = load(None, small_disk)
    assert len(faces) == 3500
    err = capsys.readouterr().err
    assert (
        f"note: decoded faces not cached in {small_disk} (" in err
        and "the next run decodes again" in err
    )
    assert list(small_disk.iterdir()) == []


def test_temp_folders_of_dead_writers_are_removed_live_ones_kept(cache_dir):
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    cache_dir.mkdir(parents=True)
    stale = cache_dir / f".0123456789abcdef-{dead.pid}-x1"
    live = cache_dir / f".fedcba9876543210-{os.getpid()}-x2"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "images.npy").write_bytes(b"0" * 1000)
    load(None, cache_dir)
    assert not stale.exists() and live.exists()
    stale.mkdir()  # a writer killed after the entry was stored: a run reading the cache clears it
    load(None, cache_dir)
    assert not stale.exists()
