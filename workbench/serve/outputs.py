"""Where `workbench.predict` writes: rows streamed into predictions.csv, annotated copies, and
names under --out that never overwrite each other; every file appears whole or not at all."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import sys
from pathlib import Path

from workbench.errors import WorkbenchError


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
