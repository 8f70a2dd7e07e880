"""Plotly ``FigureWidget``s kept in step with figure builders, redrawn in batches and throttled.

A :class:`LiveFigure` owns one ``FigureWidget`` and a builder, a function that returns a fresh
``plotly.graph_objects.Figure`` from what training has recorded so far. :meth:`LiveFigure.redraw`
calls the builder and copies the new traces and layout into the widget inside one
``batch_update``, so the front end receives one message per redraw. A :class:`Throttle` decides
when the next redraw is due: never sooner than a fixed interval, and never so often that drawing
takes more than a fixed share of the wall time.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator

import numpy as np
import plotly.graph_objects as go

__all__ = ["LiveFigure", "Throttle", "young_garbage_collected"]

DEFAULT_MIN_INTERVAL_S = 0.25  # a few redraws a second look live and keep the kernel free
DEFAULT_DRAW_BUDGET = 0.05  # at most 5 % of the wall time goes to drawing (garbage collection adds some)


class Throttle:
    """A time-based gate for redraws.

    After a redraw that took ``c`` seconds, the next one is due once both
    ``min_interval`` seconds and ``c * (1 - budget) / budget`` seconds have passed, so drawing
    takes at most ``budget`` of the wall time even when the figures grow slow to build.

    Args:
        min_interval: shortest time between two redraws, in seconds.
        budget: largest share of the wall time spent drawing, in (0, 1).
        clock: a monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL_S,
        budget: float = DEFAULT_DRAW_BUDGET,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not min_interval >= 0:
            raise ValueError(f"Invalid min_interval: {min_interval!r}; expected a number of seconds >= 0")
        if not 0 < budget < 1:
            raise ValueError(f"Invalid budget: {budget!r}; expected a share of the wall time in (0, 1)")
        self.min_interval = min_interval
        self.budget = budget
        self.clock = clock
        self._last_end = -float("inf")
        self._wait = min_interval

    def due(self) -> bool:
        """Return whether enough time has passed since the last redraw."""
        return self.clock() - self._last_end >= self._wait

    def record(self, start: float, end: float) -> None:
        """Note a redraw that ran from ``start`` to ``end`` (clock readings)."""
        cost = max(end - start, 0.0)
        self._last_end = end
        self._wait = max(self.min_interval, cost * (1 - self.budget) / self.budget)

    def reset(self) -> None:
        """Make the next redraw due at once."""
        self._last_end = -float("inf")
        self._wait = self.min_interval


@contextmanager
def young_garbage_collected() -> Iterator[None]:
    """Pause the cyclic garbage collector for a block, then free the block's garbage at once.

    Plotly's figure objects reference their parents, so a rebuilt figure becomes cyclic garbage
    that only the collector frees. Left to the automatic collections, part of it survives long
    enough to reach the oldest generation, whose collections walk every object of a process that
    has torch and plotly loaded. In the dashboard benchmark they took about as much time as the
    redraws themselves. Paused, the collector keeps the block's objects in the youngest
    generation, and one collection of that generation at the end frees the garbage cheaply.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect(0)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype.kind == b.dtype.kind and bool(np.all(a == b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[key], b[key]) for key in a)
    try:
        return bool(a == b)
    except ValueError:
        # A list that contains numpy arrays: their == is element-wise, so compare item by item.
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
        return False


def _numeric_arrays(trace_json: dict) -> dict:
    """Turn the trace's ``x`` and ``y`` lists of numbers into float arrays, ``None`` into NaN.

    Plotly validates an array with one copy instead of one check per item and sends it as a
    binary buffer instead of JSON text. Plotly.js draws NaN as a gap, as it does ``None``.
    """
    for key in ("x", "y"):
        values = trace_json.get(key)
        if isinstance(values, (list, tuple)) and all(
            value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)) for value in values
        ):
            trace_json[key] = np.array([np.nan if value is None else value for value in values], dtype=float)
    return trace_json


def _trace_shape(trace_json: dict) -> tuple:
    return trace_json.get("type"), tuple(sorted(trace_json))


class LiveFigure:
    """A ``FigureWidget`` redrawn from a figure builder.

    Args:
        build: returns a complete ``go.Figure`` for the current state. It is called once here
            and once per :meth:`redraw`.
        layout: plotly layout properties that replace the builder's in every redraw, such as a
            fixed ``height`` for a dashboard grid.
    """

    def __init__(self, build: Callable[[], go.Figure], *, layout: dict | None = None) -> None:
        self.build = build
        self.layout_overrides = dict(layout or {})
        figure = build()
        figure.update_layout(self.layout_overrides)
        self.widget = go.FigureWidget(figure)
        self._sent_traces = [_numeric_arrays(trace.to_plotly_json()) for trace in figure.data]
        self._sent_layout = self._layout_json(figure)
        self._signature: Hashable = None
        self.redraws = 0  # how many redraws changed the widget

    def _layout_json(self, figure: go.Figure) -> dict:
        # The template is set once, by the constructor: it is large and never changes.
        layout = figure.layout.to_plotly_json()
        layout.pop("template", None)
        layout.update(self.layout_overrides)
        return layout

    def redraw(self, signature: Hashable = None) -> bool:
        """Rebuild the figure and copy what changed into the widget, in one batch.

        ``signature`` is a cheap summary of the builder's inputs (for example record lengths).
        When it equals the one of the last redraw, nothing is rebuilt. Returns whether the
        widget was updated.
        """
        if signature is not None and signature == self._signature:
            return False
        figure = self.build()
        traces = [_numeric_arrays(trace.to_plotly_json()) for trace in figure.data]
        layout = self._layout_json(figure)

        with self.widget.batch_update():
            same_shapes = [_trace_shape(t) for t in traces] == [_trace_shape(t) for t in self._sent_traces]
            if same_shapes:
                for index, (new, old) in enumerate(zip(traces, self._sent_traces)):
                    changed = {key: value for key, value in new.items() if not _same_value(value, old.get(key))}
                    if changed:
                        self.widget.data[index].update(changed, overwrite=True)
            else:
                # Adding or removing traces sends its own message; plotly cannot batch it.
                self.widget.data = ()
                self.widget.add_traces(list(figure.data))
            changed_layout = {key: value for key, value in layout.items() if not _same_value(value, self._sent_layout.get(key))}
            removed = [key for key in self._sent_layout if key not in layout]
            for key in removed:
                changed_layout[key] = None
            if changed_layout:
                self.widget.layout.update(changed_layout, overwrite=True)

        self._sent_traces = traces
        self._sent_layout = layout
        self._signature = signature
        self.redraws += 1
        return True

    def forget(self) -> None:
        """Make the next :meth:`redraw` rebuild even if its signature is unchanged."""
        self._signature = None
