"""Plotly figures built from run records.

Every builder takes :class:`~alrao_edu.training.records.RunRecord` objects and
returns a new ``plotly.graph_objects.Figure``. The builders never touch a model, so the same
functions serve the static HTML report, the notebooks and the live dashboard.
The dashboard builds a figure once, wraps it in a ``FigureWidget`` and then
replaces the ``x``/``y`` of existing traces. So each builder documents the
order and names of the traces it creates. That order depends only on the
records given, not on how far they have trained.

Conventions:

* Steps count optimizer steps from 1 (mini-batches); step 0 is the start.
* Values that are not finite (``inf`` after a head diverged, ``nan``) are
  drawn as gaps.
* Per-step curves longer than ``max_points`` are thinned to about that many
  points after smoothing, so a figure stays light in a browser.
* A run that diverged gets an ``x`` marker with the text
  ``"diverged at step k"`` where its curve ends. When it has no point on the
  curve (it diverged before the first evaluation, say), a note
  ``"<name>: diverged at step k"`` sits at the bottom of the plot instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from ..training.records import RunRecord
from ..training.sweep import interval_grid

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

DEFAULT_SMOOTHING = 0.9  # EMA weight: about the last 10 steps count
DEFAULT_MAX_POINTS = 2000
RATE_COLORSCALE = "Viridis"
ALRAO_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2")
ADAM_COLOR = "#ff7f0e"
DIVERGED_SYMBOL = "x"
# Head figures put the legend below the plot, so it does not cover the colour bar on the right.
HEAD_LEGEND = dict(title=dict(text="head"), orientation="h", yanchor="top", y=-0.25)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the builders (public ones are used by the dashboard too)


def smooth(values: Sequence[float], weight: float = DEFAULT_SMOOTHING) -> list[float | None]:
    """Smooth a curve with a bias-corrected exponential moving average.

    ``s_t = weight * s_{t-1} + (1 - weight) * x_t``, divided by ``1 - weight**n``
    where n counts the finite values seen so far, so the first points are not
    pulled towards zero. Non-finite values are skipped (their output is
    ``None``) and do not enter the average. ``weight = 0`` returns the values.
    """
    if not (isinstance(weight, (int, float)) and 0 <= weight < 1):
        raise ValueError(f"Invalid smoothing weight: {weight!r}; expected a number in [0, 1)")
    result: list[float | None] = []
    average, seen = 0.0, 0
    for value in values:
        if value is None or not math.isfinite(value):
            result.append(None)
            continue
        seen += 1
        average = weight * average + (1 - weight) * value
        result.append(average / (1 - weight**seen))
    return result


def run_name(record: RunRecord, *, with_seed: bool = True) -> str:
    """Name of a run in legends: the method and rate (``record.label``), then the seed."""
    return f"{record.label}, seed {record.seed}" if with_seed else record.label


def _finite_or_none(values: Sequence[float]) -> list[float | None]:
    return [value if value is not None and math.isfinite(value) else None for value in values]


def _thin(xs: Sequence, ys: Sequence, max_points: int) -> tuple[list, list]:
    stride = max(1, math.ceil(len(xs) / max_points))
    if stride == 1:
        return list(xs), list(ys)
    keep = list(range(0, len(xs), stride))
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)  # keep the end, where a diverged run's marker sits
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _rate_color(rate: float, low: float, high: float) -> str:
    if high <= low:
        position = 0.5
    else:
        position = (math.log10(rate) - math.log10(low)) / (math.log10(high) - math.log10(low))
    # Stop before Viridis' pale yellow end, which is hard to see on white.
    return plotly.colors.sample_colorscale(RATE_COLORSCALE, [0.85 * min(max(position, 0.0), 1.0)])[0]


def _run_colors(records: Sequence[RunRecord]) -> dict[str, str]:
    """Map each label to a colour: SGD by its rate on a log scale, Alrao in reds and purples, Adam orange."""
    sgd_rates = [r.lr for r in records if r.method == "sgd"]
    low, high = (min(sgd_rates), max(sgd_rates)) if sgd_rates else (1.0, 1.0)
    colors: dict[str, str] = {}
    alrao_labels = 0
    for record in records:
        if record.label in colors:
            continue
        if record.method == "sgd":
            colors[record.label] = _rate_color(record.lr, low, high)
        elif record.method == "alrao":
            colors[record.label] = ALRAO_COLORS[alrao_labels % len(ALRAO_COLORS)]
            alrao_labels += 1
        else:
            colors[record.label] = ADAM_COLOR
    return colors


def _several_seeds(records: Sequence[RunRecord]) -> bool:
    return len({r.seed for r in records}) > 1


def _last_point(xs: Sequence, ys: Sequence) -> tuple | None:
    for x, y in zip(reversed(xs), reversed(ys)):
        if y is not None:
            return x, y
    return None


def _diverged_trace(record: RunRecord, name: str, color: str, point: tuple | None, legendgroup: str) -> go.Scatter:
    """Build the ``x`` marker where a diverged run's curve ends (an empty trace for other runs)."""
    xs, ys, text = [], [], []
    if record.diverged and point is not None:
        xs, ys = [point[0]], [point[1]]
        text = [f"diverged at step {record.diverged_at}"]
    return go.Scatter(
        x=xs,
        y=ys,
        text=text,
        mode="markers+text",
        textposition="top center",
        marker=dict(symbol=DIVERGED_SYMBOL, size=11, color=color, line=dict(width=2, color=color)),
        textfont=dict(color=color),
        name=f"{name} diverged",
        legendgroup=legendgroup,
        showlegend=False,
        hovertemplate="%{text}<extra>" + name + "</extra>",
    )


def _mark_divergence(figure: go.Figure, record: RunRecord, name: str, color: str, point: tuple | None, x: float) -> None:
    """Add the divergence marker trace; a run with no point to mark also gets a note at ``x`` on the x-axis."""
    figure.add_trace(_diverged_trace(record, name, color, point, name))
    if record.diverged and point is None:
        figure.add_annotation(
            x=x,
            y=0,
            xref="x",
            yref="paper",
            yanchor="bottom",
            showarrow=False,
            text=f"{name}: diverged at step {record.diverged_at}",
            font=dict(color=color),
        )


def _only_alrao(record: RunRecord, figure: str) -> None:
    if not isinstance(record, RunRecord):
        raise TypeError(f"{figure} takes one RunRecord, got {type(record).__name__}")
    if record.method != "alrao":
        raise ValueError(f"{figure} needs an Alrao run; got a {record.method!r} run ({record.label})")


def _head_colors(record: RunRecord) -> list[str]:
    low, high = record.eta_min, record.eta_max
    return [_rate_color(rate, low, high) for rate in record.head_learning_rates]


def _rate_colorbar_trace(record: RunRecord) -> go.Scatter:
    """Build an invisible trace that only draws a colour bar of log10 rates, with the interval's ends labelled."""
    low, high = math.log10(record.eta_min), math.log10(record.eta_max)
    ticks = sorted({low, high, *range(math.ceil(low), math.floor(high) + 1)})
    labels = [f"{10 ** t:g}" for t in ticks]
    labels[0] = f"η_min = {record.eta_min:g}"
    labels[-1] = f"η_max = {record.eta_max:g}"
    # Viridis clipped at 0.85, as the head colours are.
    colorscale = [[p, plotly.colors.sample_colorscale(RATE_COLORSCALE, [0.85 * p])[0]] for p in np.linspace(0, 1, 11)]
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        name="head rate scale",
        showlegend=False,
        hoverinfo="skip",
        marker=dict(
            color=[low],
            cmin=low,
            cmax=high if high > low else low + 1,
            colorscale=colorscale,
            showscale=True,
            colorbar=dict(title=dict(text="head rate"), tickvals=ticks, ticktext=labels),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Builders


def loss_figure(
    records: Sequence[RunRecord],
    *,
    smoothing: float = DEFAULT_SMOOTHING,
    max_points: int = DEFAULT_MAX_POINTS,
) -> go.Figure:
    """Plot the training loss per step (smoothed, solid) and test loss per epoch (dashed) of every run.

    Log y-axis. Runs with the same label (method and rate) share a colour.

    Traces, three per record in the order given: ``"<name>"`` (x: steps 1..n,
    y: EMA of the training loss with weight ``smoothing``),
    ``"<name> test"`` (x: ``eval_steps``, y: test loss) and
    ``"<name> diverged"`` (the divergence marker, empty unless the run
    diverged). ``<name>`` is :func:`run_name`, without the seed when all
    records share one seed. The train trace carries the legend entry and the
    three share a ``legendgroup``, so a click on the legend hides the run.
    """
    records = list(records)
    colors = _run_colors(records)
    with_seed = _several_seeds(records)
    figure = go.Figure()
    for record in records:
        name = run_name(record, with_seed=with_seed)
        color = colors[record.label]
        steps = list(range(1, len(record.train_loss) + 1))
        train_x, train_y = _thin(steps, smooth(record.train_loss, smoothing), max_points)
        figure.add_scatter(
            x=train_x,
            y=train_y,
            mode="lines",
            name=name,
            legendgroup=name,
            line=dict(color=color, width=2.5 if record.method == "alrao" else 1.5),
            hovertemplate="step %{x}<br>training loss %{y:.4g}<extra>" + name + "</extra>",
        )
        figure.add_scatter(
            x=list(record.eval_steps),
            y=_finite_or_none(record.test_loss),
            mode="lines+markers",
            name=f"{name} test",
            legendgroup=name,
            showlegend=False,
            line=dict(color=color, dash="dash", width=1.5),
            marker=dict(size=5),
            hovertemplate="step %{x}<br>test loss %{y:.4g}<extra>" + name + "</extra>",
        )
        end = _last_point(train_x, train_y)
        if record.diverged and end is not None:
            end = (record.diverged_at, end[1])
        _mark_divergence(figure, record, name, color, end, record.diverged_at)
    figure.update_layout(
        title=dict(
            text="Loss of every run",
            subtitle=dict(text=f"solid: training loss per step (EMA weight {smoothing:g}); dashed: test loss per epoch"),
        ),
        xaxis_title="training step (mini-batches)",
        yaxis_title="loss (nats per example, log scale)",
        yaxis_type="log",
        legend_title_text="run",
        hovermode="closest",
    )
    return figure


def accuracy_figure(records: Sequence[RunRecord]) -> go.Figure:
    """Plot the test accuracy per epoch of every run (the test mean squared error for regression records).

    Traces, two per record in the order given: ``"<name>"`` (x: epoch, y: test
    accuracy in %, or the test MSE on a log axis when no record has an
    accuracy) and ``"<name> diverged"`` (the divergence marker, empty unless
    the run diverged). ``<name>`` is as in :func:`loss_figure`.
    """
    records = list(records)
    colors = _run_colors(records)
    with_seed = _several_seeds(records)
    classification = any(r.test_accuracy for r in records) or not any(r.test_mse for r in records)
    figure = go.Figure()
    for record in records:
        name = run_name(record, with_seed=with_seed)
        color = colors[record.label]
        epochs = [step / record.steps_per_epoch for step in record.eval_steps]
        if classification:
            values = [None if value is None else 100 * value for value in _finite_or_none(record.test_accuracy)]
            hover = "epoch %{x:.3g}<br>test accuracy %{y:.2f} %"
        else:
            values = _finite_or_none(record.test_mse)
            hover = "epoch %{x:.3g}<br>test MSE %{y:.4g}"
        epochs = epochs[: len(values)]
        figure.add_scatter(
            x=epochs,
            y=values,
            mode="lines+markers",
            name=name,
            legendgroup=name,
            line=dict(color=color, width=1.5),
            marker=dict(size=5),
            hovertemplate=hover + "<extra>" + name + "</extra>",
        )
        end = _last_point(epochs, values)
        position = record.diverged_at / record.steps_per_epoch if record.diverged else None
        if record.diverged and end is not None:
            end = (position, end[1])
        _mark_divergence(figure, record, name, color, end, position)
    if classification:
        figure.update_layout(
            title=dict(text="Test accuracy", subtitle=dict(text="measured at the end of each epoch")),
            yaxis_title="test accuracy (%)",
        )
    else:
        figure.update_layout(
            title=dict(text="Test mean squared error", subtitle=dict(text="measured at the end of each epoch")),
            yaxis_title="test MSE (squared target units, log scale)",
            yaxis_type="log",
        )
    figure.update_layout(xaxis_title="epoch (passes over the training set)", legend_title_text="run")
    return figure


def rate_histogram_figure(record: RunRecord, *, layer: str | None = None, bins: int = 30) -> go.Figure:
    """Plot histograms of an Alrao run's per-feature learning rates, on a log x-axis.

    The bins are ``bins`` intervals of equal width in log10 rate, spanning the
    run's interval ``[eta_min, eta_max]``. Each histogram is drawn as a filled
    step line (exact on a log axis, unlike bars).

    Traces, in order: ``"all layers"``, then one per layer in
    ``record.feature_layers`` order, named by the layer. Only one is visible
    at a time: ``layer`` (None: all layers), and a dropdown menu switches.
    """
    _only_alrao(record, "rate_histogram_figure")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"Invalid bins: {bins!r}; expected an integer >= 1")
    names = ["all layers", *record.feature_layers]
    if layer is not None and layer not in names:
        raise ValueError(f"Unknown layer {layer!r}; the run's layers are: {', '.join(names)}")
    visible_index = names.index(layer) if layer is not None else 0

    low, high = math.log10(record.eta_min), math.log10(record.eta_max)
    if high <= low:
        low, high = low - 0.5, high + 0.5  # one rate: a bin around it
    edges = np.logspace(low, high, bins + 1)
    rates_by_layer = [
        [rate for name in record.feature_layers for rate in record.feature_rates[name]],
        *(record.feature_rates[name] for name in record.feature_layers),
    ]

    figure = go.Figure()
    for index, (name, rates) in enumerate(zip(names, rates_by_layer)):
        counts, _ = np.histogram(np.asarray(rates, dtype=float), bins=edges)
        figure.add_scatter(
            x=edges.tolist(),
            y=[*counts.tolist(), int(counts[-1])],  # repeat the last count so the step closes
            mode="lines",
            line=dict(shape="hv", color=ALRAO_COLORS[0]),
            fill="tozeroy",
            name=name,
            visible=index == visible_index,
            hovertemplate="rate from %{x:.2e}<br>%{y} features<extra>" + name + "</extra>",
        )
    buttons = [
        dict(
            label=f"{name} ({len(rates)} features)",
            method="update",
            args=[{"visible": [i == index for i in range(len(names))]}],
        )
        for index, (name, rates) in enumerate(zip(names, rates_by_layer))
    ]
    figure.update_layout(
        title=dict(
            text="Per-feature learning rates",
            subtitle=dict(text=f"drawn once, log-uniform in [{record.eta_min:g}, {record.eta_max:g}]; {run_name(record)}"),
        ),
        xaxis_title="learning rate (log scale)",
        xaxis_type="log",
        yaxis_title="number of features",
        showlegend=False,
        updatemenus=[dict(buttons=buttons, active=visible_index, x=1.0, xanchor="right", y=1.15, yanchor="bottom")],
    )
    return figure


def switch_posterior_figure(
    record: RunRecord,
    *,
    log_y: bool = False,
    max_points: int = DEFAULT_MAX_POINTS,
) -> go.Figure:
    """Plot the switch posterior weight of each head over the steps of an Alrao run.

    Traces, in order: one per head, ``"head j (η = rate)"`` for j = 0..H-1
    (x: steps 0..n, where step 0 is the prior; y: posterior weight), coloured
    by the head's rate on a log colour scale; then ``"head rate scale"``, an
    invisible trace that draws the colour bar with the interval's ends labelled.
    """
    _only_alrao(record, "switch_posterior_figure")
    posterior = np.asarray(record.switch_posterior, dtype=float).reshape(-1, len(record.head_learning_rates))
    steps = list(range(len(posterior)))
    colors = _head_colors(record)
    figure = go.Figure()
    for head, (rate, color) in enumerate(zip(record.head_learning_rates, colors)):
        name = f"head {head} (η = {rate:.3g})"
        xs, ys = _thin(steps, posterior[:, head].tolist(), max_points)
        figure.add_scatter(
            x=xs,
            y=ys,
            mode="lines",
            name=name,
            line=dict(color=color, width=1.5),
            hovertemplate="step %{x}<br>weight %{y:.3g}<extra>" + name + "</extra>",
        )
    figure.add_trace(_rate_colorbar_trace(record))
    figure.update_layout(
        title=dict(
            text="Switch posterior over the heads",
            subtitle=dict(text=f"the weight of each head in Alrao's output; {run_name(record)}"),
        ),
        xaxis_title="training step (mini-batches; 0 is the prior)",
        yaxis_title="posterior weight" + (" (log scale)" if log_y else ""),
        yaxis_type="log" if log_y else "linear",
        legend=HEAD_LEGEND,
    )
    if record.diverged:
        figure.add_annotation(text=f"run diverged at step {record.diverged_at}", x=1, y=1, xref="paper", yref="paper", showarrow=False)
    return figure


def head_loss_figure(
    record: RunRecord,
    *,
    smoothing: float = DEFAULT_SMOOTHING,
    max_points: int = DEFAULT_MAX_POINTS,
) -> go.Figure:
    """Plot each head's training loss over the steps of an Alrao run, smoothed, on a log y-axis.

    A head's loss is its own negative log-likelihood on the mini-batch, as if
    it were the only output. Steps where a head's loss was not finite are gaps.

    Traces, in order: one per head, ``"head j (η = rate)"`` (x: steps 1..n,
    y: EMA with weight ``smoothing``), coloured as in
    :func:`switch_posterior_figure`; then ``"head rate scale"`` (the colour bar).
    """
    _only_alrao(record, "head_loss_figure")
    losses = np.asarray(record.head_losses, dtype=float).reshape(-1, len(record.head_learning_rates))
    steps = list(range(1, len(losses) + 1))
    colors = _head_colors(record)
    figure = go.Figure()
    for head, (rate, color) in enumerate(zip(record.head_learning_rates, colors)):
        name = f"head {head} (η = {rate:.3g})"
        xs, ys = _thin(steps, smooth(losses[:, head].tolist(), smoothing), max_points)
        figure.add_scatter(
            x=xs,
            y=ys,
            mode="lines",
            name=name,
            line=dict(color=color, width=1.5),
            hovertemplate="step %{x}<br>loss %{y:.4g}<extra>" + name + "</extra>",
        )
    figure.add_trace(_rate_colorbar_trace(record))
    figure.update_layout(
        title=dict(
            text="Training loss of each head",
            subtitle=dict(text=f"EMA weight {smoothing:g}; {run_name(record)}"),
        ),
        xaxis_title="training step (mini-batches)",
        yaxis_title="loss (nats per example, log scale)",
        yaxis_type="log",
        legend=HEAD_LEGEND,
    )
    return figure


def rate_movement_figure(record: RunRecord, *, evaluation: int = -1, log_y: bool = True) -> go.Figure:
    """Plot each feature's learning rate against how far its incoming weights moved.

    Movement is the Euclidean norm of the change of the feature's incoming
    parameters since the start, as measured at evaluation ``evaluation``
    (default: the last one, at the end of training). On a log y-axis,
    features that did not move at all are not drawn.

    Traces, in order: one per layer in ``record.feature_layers`` order, named
    by the layer (x: rates, y: movements). With no evaluation yet the traces
    are empty.
    """
    _only_alrao(record, "rate_movement_figure")
    movement = record.feature_movement[evaluation] if record.feature_movement else {}
    when = "no evaluation yet"
    if record.feature_movement:
        step = record.eval_steps[evaluation] if len(record.eval_steps) == len(record.feature_movement) else None
        when = f"after step {step}" if step is not None else "at the last evaluation"
    colors = plotly.colors.qualitative.Plotly
    figure = go.Figure()
    for index, layer in enumerate(record.feature_layers):
        figure.add_scatter(
            x=record.feature_rates[layer] if layer in movement else [],
            y=_finite_or_none(movement.get(layer, [])),
            mode="markers",
            name=layer,
            marker=dict(size=5, opacity=0.7, color=colors[index % len(colors)]),
            hovertemplate="rate %{x:.2e}<br>moved %{y:.3g}<extra>" + layer + "</extra>",
        )
    figure.update_layout(
        title=dict(
            text="Which features learned",
            subtitle=dict(text=f"movement of each feature's incoming weights, {when}; {run_name(record)}"),
        ),
        xaxis_title="feature learning rate (log scale)",
        xaxis_type="log",
        yaxis_title="weight movement (L2 norm of the change" + (", log scale)" if log_y else ")"),
        yaxis_type="log" if log_y else "linear",
        legend_title_text="layer",
    )
    return figure


def sweep_heatmap_figure(records: Sequence[RunRecord]) -> go.Figure:
    """Plot the triangle heat map of final test loss over learning-rate intervals.

    Each cell is an interval ``(10^a, 10^b)`` with ``a <= b``: an Alrao run
    with ``eta_min = 10^a`` and ``eta_max = 10^b``, or on the diagonal a plain
    SGD run at rate ``10^a``. A cell shows the mean final test loss over the
    seeds that did not diverge (:func:`~alrao_edu.training.sweep.interval_grid`);
    a cell where every seed diverged reads "diverged". Adam records are ignored.

    Traces: one ``go.Heatmap`` named ``"final test loss"`` (x: log10 eta_max,
    y: log10 eta_min, z: mean loss, ``None`` below the diagonal).
    """
    grid = interval_grid(records)
    lows, highs, z = grid.lows, grid.highs, grid.mean_test_loss
    text: list[list[str]] = []
    for loss_row, diverged_row, runs_row in zip(z, grid.diverged, grid.runs):
        text_row = []
        for loss, diverged, runs in zip(loss_row, diverged_row, runs_row):
            if loss is not None:
                text_row.append(f"{loss:.3f}" + (f" ({diverged} diverged)" if diverged else ""))
            else:
                text_row.append("diverged" if runs else "")
        text.append(text_row)

    figure = go.Figure(
        go.Heatmap(
            x=highs,
            y=lows,
            z=z,
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis_r",
            colorbar=dict(title=dict(text="test loss")),
            name="final test loss",
            hovertemplate="interval (1e%{y}, 1e%{x})<br>final test loss %{text}<extra></extra>",
        )
    )
    figure.update_layout(
        title=dict(
            text="Final test loss over learning-rate intervals",
            subtitle=dict(text="Alrao with eta_min = 10^a and eta_max = 10^b; the diagonal is plain SGD at 10^a"),
        ),
        xaxis_title="b = log10 eta_max",
        yaxis_title="a = log10 eta_min",
        xaxis=dict(tickmode="array", tickvals=highs, ticktext=[f"{b:g}" for b in highs]),
        # Rows top to bottom by increasing a, so the runs fill the upper-right triangle as in a table.
        yaxis=dict(tickmode="array", tickvals=lows, ticktext=[f"{a:g}" for a in lows], autorange="reversed"),
    )
    return figure
