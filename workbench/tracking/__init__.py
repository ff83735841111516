"""What a run leaves behind: the MLflow store and runs (runs), and the plotly figures and report pages
(figures)."""
