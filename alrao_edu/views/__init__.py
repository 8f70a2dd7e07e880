"""The view layer: plotly figures from run records, the HTML report and the command line."""

from .figures import (
    accuracy_figure,
    head_loss_figure,
    loss_figure,
    rate_histogram_figure,
    rate_movement_figure,
    run_name,
    smooth,
    sweep_heatmap_figure,
    switch_posterior_figure,
)
from .report import format_table, render_report, results_dict, summarize, write_report, write_results

__all__ = [
    "accuracy_figure",
    "format_table",
    "head_loss_figure",
    "loss_figure",
    "rate_histogram_figure",
    "rate_movement_figure",
    "render_report",
    "results_dict",
    "run_name",
    "smooth",
    "summarize",
    "sweep_heatmap_figure",
    "switch_posterior_figure",
    "write_report",
    "write_results",
]
