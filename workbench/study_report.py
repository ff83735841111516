"""Optuna's own plotly figures for a study (optimization history, importances, parallel coordinates,
slice, contour, intermediate values); a figure that cannot be drawn yet is noted, not fatal."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go
from optuna import visualization as vis

FIGURES = {
    "optimization_history": vis.plot_optimization_history,
    "param_importances": vis.plot_param_importances,
    "parallel_coordinate": vis.plot_parallel_coordinate,
    "slice": vis.plot_slice,
    "contour": vis.plot_contour,
    "intermediate_values": vis.plot_intermediate_values,
}


def study_figures(study: optuna.Study) -> tuple[dict[str, go.Figure], list[str]]:
    figs, notes = {}, []
    for name, plot in FIGURES.items():
        try:
            figs[name] = plot(study)
        except (
            ValueError,
            RuntimeError,
            ZeroDivisionError,
        ) as err:  # e.g. importances need 2+ complete trials
            notes.append(f"{name}: not drawn ({err})")
    return figs, notes
