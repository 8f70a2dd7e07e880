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

__all__ = [
    "accuracy_figure",
    "head_loss_figure",
    "loss_figure",
    "rate_histogram_figure",
    "rate_movement_figure",
    "run_name",
    "smooth",
    "sweep_heatmap_figure",
    "switch_posterior_figure",
]
