"""Plotly figures for a run: curves, confusion matrices, per-class F1, grids of test faces.

Each figure is written as interactive HTML and, where kaleido finds Chrome/Chromium, as PNG.
"""

from __future__ import annotations

import contextlib
import html
import os
import sys
import threading
import warnings
from pathlib import Path

import kaleido
import numpy as np
import plotly.graph_objects as go
from choreographer.browsers.chromium import Chromium
from plotly.offline import get_plotlyjs, get_plotlyjs_version
from plotly.subplots import make_subplots

from workbench import CLASS_NAMES
from workbench.core.metrics import Evaluation

PNG_HINT = "install Chromium (Debian: apt-get install chromium) to get PNGs too"


def curves(history: dict[str, list[float]]) -> go.Figure:
    panels = [
        m for m in ("loss", "accuracy", "macro_f1") if history.get(m) or history.get(f"val_{m}")
    ]
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[p.replace("_", "-") for p in panels]
    )
    for col, metric in enumerate(panels, start=1):
        for prefix, dash in (("", "solid"), ("val_", "dash")):
            values = history.get(prefix + metric)
            if values:
                epochs = list(range(1, len(values) + 1))
                fig.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=values,
                        name=f"{'val' if prefix else 'train'} {metric}",
                        line={"dash": dash},
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_layout(title="Training curves", width=480 * len(panels), height=420)
    return fig


def confusion(ev: Evaluation, normalized: bool, split: str = "test") -> go.Figure:
    z = ev.confusion_normalized if normalized else ev.confusion
    text = [[f"{v:.2f}" if normalized else str(int(v)) for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(CLASS_NAMES),
            y=list(CLASS_NAMES),
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalized else None,
        )
    )
    fig.update_layout(
        title=f"Confusion matrix on {split}" + (" (row-normalised)" if normalized else " (counts)"),
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        width=620,
        height=560,
    )
    return fig


def per_class_f1(ev: Evaluation, split: str = "test") -> go.Figure:
    f1 = [ev.report[name]["f1-score"] for name in CLASS_NAMES]
    support = [int(ev.report[name]["support"]) for name in CLASS_NAMES]
    fig = go.Figure(
        go.Bar(
            x=list(CLASS_NAMES),
            y=f1,
            text=[f"{v:.2f}" for v in f1],
            customdata=support,
            hovertemplate="%{x}: F1 %{y:.3f}, support %{customdata}<extra></extra>",
        )
    )
    fig.add_hline(
        y=ev.report["macro avg"]["f1-score"], line_dash="dash", annotation_text="macro F1"
    )
    fig.update_layout(
        title=f"Per-class F1 on {split}",
        yaxis_range=[0, 1],
        yaxis_title="F1",
        width=720,
        height=420,
    )
    return fig


def face_grid(
    images: np.ndarray, ev: Evaluation, index: np.ndarray, title: str, cols: int = 5
) -> go.Figure:
    rows = max(1, -(-len(index) // cols))
    titles = [
        f"true {CLASS_NAMES[ev.y_true[i]]}<br>pred {CLASS_NAMES[ev.y_pred[i]]} {ev.probs[i].max():.2f}"
        for i in index
    ]
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, vertical_spacing=0.12, horizontal_spacing=0.02
    )
    for k, i in enumerate(index):
        # go.Image wants RGB
        face = images[i] if images.shape[-1] == 3 else np.repeat(images[i], 3, axis=-1)
        fig.add_trace(
            go.Image(z=face, hovertemplate=f"{titles[k]}<extra></extra>"),
            row=k // cols + 1,
            col=k % cols + 1,
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, width=170 * cols, height=200 * rows + 60, margin={"t": 90})
    return fig


def prediction_grid(images: np.ndarray, ev: Evaluation, seed: int, n: int = 10) -> go.Figure:
    index = np.random.default_rng(seed).choice(len(images), min(n, len(images)), replace=False)
    return face_grid(
        images, ev, np.sort(index), f"{len(index)} test faces: true and predicted labels"
    )


def confident_mistakes(images: np.ndarray, ev: Evaluation, n: int = 10) -> go.Figure:
    wrong = np.flatnonzero(ev.y_pred != ev.y_true)
    order = wrong[np.argsort(-ev.probs[wrong].max(axis=1))][:n]
    return face_grid(images, ev, order, f"The {len(order)} most confident mistakes")


def duplicate_pairs(
    evaluated: np.ndarray, train: np.ndarray, pairs: list[tuple[int, int, str]], title: str
) -> go.Figure:
    """Faces of an evaluated split beside the training face each copies: (evaluated index, training
    index, "exact" or "near") per pair, one pair a row."""
    fig = make_subplots(
        rows=max(1, len(pairs)),
        cols=2,
        subplot_titles=[t for _, _, kind in pairs for t in (f"evaluated ({kind})", "training")],
        vertical_spacing=0.04,
        horizontal_spacing=0.02,
    )
    for row, (i, j, _) in enumerate(pairs, start=1):
        for col, face in ((1, evaluated[i]), (2, train[j])):
            rgb = face if face.shape[-1] == 3 else np.repeat(face, 3, axis=-1)
            fig.add_trace(go.Image(z=rgb), row=row, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(
        title=title, width=420, height=170 * max(1, len(pairs)) + 80, margin={"t": 80}
    )
    return fig


RENDER_TIMEOUT_S = (
    60  # a first PNG takes ~2 s (Chromium starting); a render never waits longer than this
)


def find_browser() -> str | None:
    """The Chrome/Chromium kaleido would start (BROWSER_PATH first), if it exists and can run."""
    path = Chromium.find_browser(skip_local=False)
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


def _bounded(fn, timeout: float):
    """fn() in a daemon thread; raises TimeoutError if it has not returned within `timeout` seconds
    (kaleido's server can die in its own thread and leave a caller waiting forever)."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True, name="png-render")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"PNG rendering took over {timeout:.0f} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _png_note(reason: str) -> None:
    global _PNG_NOTE_SHOWN
    if not _PNG_NOTE_SHOWN:
        print(f"note: PNG figures skipped ({reason}); the HTML figures are logged", file=sys.stderr)
        _PNG_NOTE_SHOWN = True


@contextlib.contextmanager
def png_renderer():
    """Yields True while a kaleido server (one Chromium for all figures: ~0.15 s a PNG, not ~2 s) is up.

    kaleido 1.x needs Chrome/Chromium: without one, or if it does not answer in time, say so once,
    plainly, and yield False. Nothing here waits without a bound.
    """
    if find_browser() is None:
        _png_note(f"no Chrome/Chromium found; {PNG_HINT}")
        yield False
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        try:
            _bounded(lambda: kaleido.start_sync_server(silence_warnings=True), RENDER_TIMEOUT_S)
            _bounded(
                lambda: go.Figure().to_image(format="png", width=10, height=10), RENDER_TIMEOUT_S
            )
            available = True
        except (
            Exception
        ) as err:  # kaleido raises its own error types for a missing or broken browser
            available = False
            _png_note(f"the browser did not render: {type(err).__name__}; {PNG_HINT}")
        try:
            yield available
        finally:
            _stop_renderer()


_PNG_NOTE_SHOWN = False


def _stop_renderer() -> None:
    try:
        _bounded(lambda: kaleido.stop_sync_server(silence_warnings=True), RENDER_TIMEOUT_S)
    except Exception:
        pass


PLOTLY_JS = "plotly.min.js"


def _page(title: str, body: str, plotly_js: str | None) -> str:
    """A page that loads plotly.js from `plotly_js` (a path beside or above it: works offline) and,
    where that is absent or not served (the UI's HTML preview), from plotly's CDN."""
    cdn = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
    loader = (f"<script src='{plotly_js}'></script>" if plotly_js else "") + (
        f"<script>window.Plotly || document.write(\"<script src='{cdn}'><\\/script>\")</script>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{loader}"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222} table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left} th{color:#555;font-weight:600}"
    ".warn{color:#b00020;font-weight:600}"
)


def write_figures(
    figs: dict[str, go.Figure], out_dir: Path, png: bool = True, plotly_js: str | None = PLOTLY_JS
) -> list[Path]:
    """name.html for every figure, plus name.png where a browser is available. The pages load
    plotly.js (4.8 MB) from `plotly_js`: by default a copy written once beside them; a path to a
    shared copy; or None, plotly's CDN (sweep trials: many small runs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [ensure_plotly_js(out_dir)] if plotly_js == PLOTLY_JS else []
    for name, fig in figs.items():
        page = _page(
            fig.layout.title.text or name,
            fig.to_html(full_html=False, include_plotlyjs=False),
            plotly_js,
        )
        (out_dir / f"{name}.html").write_text(page)
        written.append(out_dir / f"{name}.html")
    if png:
        with png_renderer() as available:
            for name, fig in figs.items() if available else ():
                try:
                    _bounded(
                        lambda f=fig, n=name: f.write_image(out_dir / f"{n}.png"), RENDER_TIMEOUT_S
                    )
                except Exception as err:  # noqa: BLE001 - one failed PNG must not lose the run
                    _png_note(f"{name}.png: {type(err).__name__}")
                    break
                written.append(out_dir / f"{name}.png")
    return written


def header_table(rows: list[tuple[str, str]], warnings_: list[str] = ()) -> str:
    """A report's header: what was run on what, and how it scored against chance."""
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<p class='warn'>{html.escape(w)}</p>" for w in warnings_)
    return f"{notes}<table>{cells}</table>"


def ensure_plotly_js(folder: Path, name: str = PLOTLY_JS) -> Path:
    path = folder / name
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}"
        tmp.write_text(get_plotlyjs())
        tmp.replace(path)
    return path


def shared_plotly_name() -> str:
    return f"plotly-{get_plotlyjs_version()}.min.js"


def write_report(
    figs: dict[str, go.Figure],
    path: Path,
    title: str,
    header: str = "",
    plotly_js: str | None = PLOTLY_JS,
) -> Path:
    """All figures on one page under `header`; plotly.js as in write_figures (by default a copy
    beside it, written once per folder): the page stays small and works offline."""
    if plotly_js == PLOTLY_JS:
        ensure_plotly_js(path.parent)
    parts = [f"<h1>{html.escape(title)}</h1>", header]
    parts += [fig.to_html(full_html=False, include_plotlyjs=False) for fig in figs.values()]
    path.write_text(_page(title, "".join(parts), plotly_js))
    return path
