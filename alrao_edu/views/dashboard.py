"""The interactive dashboard: pick a learning-rate interval, an architecture and a data set, press
Train, and watch Alrao learn beside SGD and Adam.

Training runs in a background thread, so the Train and Stop buttons keep working while it runs.
After each lock-step of the runs, the thread redraws the plots whenever the :class:`~.live.Throttle`
finds a redraw due, so drawing costs little beside training. ``Dashboard.run(blocking=True)``
trains in the calling thread instead, for scripts and nbval.

Importing this module is cheap: ipywidgets and plotly's ``FigureWidget`` (about a second, as
plotly imports nbformat) load when the first dashboard is built.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from functools import partial
from typing import Any

import torch

from ..training.architectures import build_model
from ..training.data import load_dataset
from ..training.devices import available_devices
from ..training.runs import Comparison
from . import figures
from .live import LiveFigure, Throttle, young_garbage_collected
from .settings import TrainingSettings, fit_problem, interval_problem

__all__ = ["Dashboard"]

logger = logging.getLogger(__name__)

ALL_LAYERS = "all layers"
# Every plot fills its grid cell (autosize) at a fixed height, so two fit side by side on a laptop.
FIGURE_LAYOUT = dict(height=400, autosize=True, margin=dict(l=70, r=20, t=90, b=60))
# The head figures list ten or more heads in a legend below the plot, which needs the extra room.
HEAD_FIGURE_LAYOUT = dict(FIGURE_LAYOUT, height=560, margin=dict(l=70, r=20, t=90, b=200))
LIVE_MAX_POINTS = 600  # per curve; a plot about 600 px wide cannot show more
# Titles and axes of the figures before the first training, as the figure builders name them.
PLACEHOLDERS = {
    "loss": ("Loss of every run", "training step (mini-batches)", "loss (nats per example)"),
    "accuracy": ("Test accuracy", "epoch (passes over the training set)", "test accuracy (%)"),
    "switch": ("Switch posterior over the heads", "training step (mini-batches)", "posterior weight"),
    "heads": ("Training loss of each head", "training step (mini-batches)", "loss (nats per example)"),
    "rates": ("Per-feature learning rates", "learning rate (log scale)", "number of features"),
    "movement": ("Which features learned", "feature learning rate (log scale)", "weight movement (L2 norm)"),
}


def _is_out_of_memory(error: BaseException) -> bool:
    out_of_memory = getattr(torch, "OutOfMemoryError", None)  # torch >= 2.5 names it
    if out_of_memory is not None and isinstance(error, out_of_memory):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _placeholder(name: str):
    import plotly.graph_objects as go

    title, x_title, y_title = PLACEHOLDERS[name]
    figure = go.Figure()
    figure.update_layout(
        title=dict(text=title),
        xaxis_title=x_title,
        yaxis_title=y_title,
        annotations=[dict(text="Press Train to draw this figure.", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)],
    )
    return figure


class Dashboard:
    """An ipywidgets dashboard that trains Alrao beside SGD and Adam baselines and plots it live.

    Display it as the last expression of a notebook cell. Keyword arguments set the initial
    value of the controls (see :class:`~alrao_edu.views.settings.TrainingSettings`: ``dataset``,
    ``arch``, ``width``, ``eta_min``, ``eta_max``, ``n_heads``, ``epochs``, ``batch_size``,
    ``seed``, ``device``, ``sgd_rates``, ``adam``, ``n_train``, ``n_test``).

    Args:
        blocking: whether the Train button trains in the calling thread (for scripts and nbval)
            instead of a background thread.
        redraw_interval: shortest time between two redraws of the plots, in seconds.
        live_plots: whether the plots, the progress bar and the status line follow training as
            it runs. Turned off, they are drawn once when training ends, which saves the drawing
            time on a slow machine. Can be changed while training runs.
        cpu_threads: PyTorch intra-op threads while training on the CPU, restored afterwards;
            ``None`` keeps PyTorch's setting. The default, 1, suits the lessons' small networks:
            on a shared 2-core machine, two threads made each step of the default CNN more than
            20 times slower (``benchmarks/dashboard_overhead.py --threads 0``).
        **defaults: initial settings, as above.

    Attributes:
        controls: the setting widgets (:class:`~alrao_edu.views.controls.Controls`).
        train_button, stop_button: the Train and Stop buttons.
        progress: an ``IntProgress`` counting lock-steps.
        status: an ``HTML`` line that reports what happens and every error, in plain words.
        layer_picker: chooses the layer of the rate histogram, or all layers.
        figures: the plots by name (``loss``, ``accuracy``, ``switch``, ``heads``, ``rates``,
            ``movement``), each a plotly ``FigureWidget``.
        records: the :class:`~alrao_edu.training.records.RunRecord` of each run of the last
            training, kept until Train is pressed again.
        comparison: the :class:`~alrao_edu.training.runs.Comparison` of the last training.
        last_error: the exception that ended the last training, or ``None``.
        train_seconds: wall time of the last training loop, from the first redraw to the last
            (steps, evaluations and redraws), or ``None`` before the first training.
        redraw_count, redraw_seconds: how many redraws the last training made, and their total
            wall time.
    """

    def __init__(
        self,
        *,
        blocking: bool = False,
        redraw_interval: float = 0.25,
        live_plots: bool = True,
        cpu_threads: int | None = 1,
        **defaults: Any,
    ) -> None:
        settings = TrainingSettings(**defaults)
        threads_valid = isinstance(cpu_threads, int) and not isinstance(cpu_threads, bool) and cpu_threads >= 1
        if cpu_threads is not None and not threads_valid:
            raise ValueError(f"Invalid cpu_threads: {cpu_threads!r}; expected None or an integer >= 1")
        devices = ["auto", *available_devices()]
        if settings.device not in devices:
            raise ValueError(f"Device {settings.device!r} is not available here; available: {', '.join(devices)}")

        import ipywidgets as widgets

        from .controls import Controls

        self.blocking = blocking
        self.live_plots = live_plots
        self.cpu_threads = cpu_threads
        self.records: list = []
        self.comparison: Comparison | None = None
        self.last_error: BaseException | None = None
        self.status_text = ""
        self.train_seconds: float | None = None
        self.redraw_count = 0
        self.redraw_seconds = 0.0
        self._thread: threading.Thread | None = None
        self._training_lock = threading.Lock()  # held from Train until training ends
        self._draw_lock = threading.Lock()  # the training thread and the layer picker both redraw
        self._stop_requested = threading.Event()
        self._throttle = Throttle(min_interval=redraw_interval)
        self._generation = 0  # counts trainings, so figure signatures change with each one
        self._showing_problem = False
        self._phase = "idle"  # loading, building or training: selects how an error is explained
        self._divergence_notes: dict[str, str] = {}

        self.controls = Controls(settings)
        self.train_button = widgets.Button(description="Train", button_style="success", icon="play")
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="progress")
        self.status = widgets.HTML()
        self.layer_picker = widgets.Dropdown(options=[ALL_LAYERS], value=ALL_LAYERS, description="layer")

        self._live = {
            name: LiveFigure(
                partial(self._build_figure, name),
                layout=HEAD_FIGURE_LAYOUT if name in ("switch", "heads") else FIGURE_LAYOUT,
            )
            for name in PLACEHOLDERS
        }
        self.figures = {name: live.widget for name, live in self._live.items()}

        self.train_button.on_click(self._on_train_clicked)
        self.stop_button.on_click(self._on_stop_clicked)
        self.layer_picker.observe(self._on_layer_picked, names="value")
        for control in self.controls.all:
            control.observe(self._on_setting_changed, names="value")

        two_columns = widgets.Layout(grid_template_columns="repeat(2, minmax(0, 1fr))", width="100%")
        self.widget = widgets.VBox(
            [
                self.controls.box,
                widgets.HBox([self.train_button, self.stop_button, self.progress]),
                self.status,
                widgets.GridBox(
                    [
                        self.figures["loss"],
                        self.figures["accuracy"],
                        self.figures["switch"],
                        self.figures["heads"],
                        widgets.VBox([self.layer_picker, self.figures["rates"]]),
                        self.figures["movement"],
                    ],
                    layout=two_columns,
                ),
            ]
        )
        self._check_settings()
        if not self._showing_problem:
            self._set_status("Ready: choose the settings and press Train.")

    # ---------------------------------------------------------------- display

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------- public API

    @property
    def is_training(self) -> bool:
        """Whether a training is running (from Train until it finishes, stops or fails)."""
        return self._training_lock.locked()

    def run(self, *, blocking: bool | None = None) -> bool:
        """Start training with the settings the controls show, as the Train button does.

        Args:
            blocking: train in the calling thread and return when training ends; ``None``
                uses the dashboard's ``blocking`` attribute.

        Returns whether training started: not while another training runs, nor with
        settings that cannot be trained (the status line explains why).
        """
        blocking = self.blocking if blocking is None else blocking
        problem = self._check_settings()
        if problem is not None:
            return False
        if not self._training_lock.acquire(blocking=False):
            logger.info("Train ignored: a training is already running")
            return False
        try:
            settings = self.controls.settings()
        except ValueError as error:
            self._training_lock.release()
            self._set_status(f"Invalid setting: {error}", error=True)
            return False

        self._stop_requested.clear()
        self.last_error = None
        self._set_training_controls(True)
        if blocking:
            self._train_safely(settings)
        else:
            self._thread = threading.Thread(target=self._train_safely, args=(settings,), name="alrao-edu-dashboard", daemon=True)
            self._thread.start()
        return True

    def stop(self) -> None:
        """Stop training after the current lock-step, as the Stop button does.

        The runs end between two steps, so every record stays whole. Safe to call from any thread.
        """
        self._stop_requested.set()
        comparison = self.comparison
        if comparison is not None and self.is_training:
            comparison.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background training to end; return whether it has ended."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.is_training

    def redraw(self, *, force: bool = False) -> None:
        """Copy what the records hold now into the plots, the progress bar and the status line.

        Figures whose inputs did not change since their last redraw are skipped unless ``force``.
        """
        with self._draw_lock:
            start = time.perf_counter()
            with young_garbage_collected():
                for name, live in self._live.items():
                    live.redraw(None if force else self._signature(name))
                comparison = self.comparison
                if comparison is not None:
                    self.progress.max = comparison.total_steps
                    self.progress.value = comparison.step_count
            end = time.perf_counter()
            self._throttle.record(start, end)
            self.redraw_count += 1
            self.redraw_seconds += end - start

    # --------------------------------------------------------------- training

    def _train_safely(self, settings: TrainingSettings) -> None:
        self._phase = "loading"
        try:
            self._train(settings)
        except Exception as error:  # noqa: BLE001 - shown in the status line, never as a traceback
            self.last_error = error
            self._set_status(self._explain(error, settings), error=True)
            logger.info("Training failed in phase %s", self._phase, exc_info=True)
            if _is_out_of_memory(error):
                self.comparison = None  # free the models before the next try
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        finally:
            self._set_training_controls(False)
            self._training_lock.release()

    def _train(self, settings: TrainingSettings) -> None:
        self._set_status(f"Loading the data set {settings.dataset}…")
        dataset = load_dataset(settings.dataset, n_train=settings.n_train, n_test=settings.n_test, seed=settings.seed)
        if self._stop_requested.is_set():
            self._set_status("Stopped before training started; the plots still show the previous training.")
            return

        self._phase = "building"
        specs = settings.specs()
        self._set_status(f"Building {len(specs)} runs: {settings.arch} on {settings.dataset}…")

        def network(seed: int):
            return build_model(settings.arch, dataset.input_shape, dataset.n_outputs, width=settings.width, seed=seed)

        comparison = Comparison(
            specs, network, dataset, seeds=(settings.seed,), epochs=settings.epochs,
            batch_size=settings.batch_size, device=settings.device,
        )

        self._phase = "training"
        self._generation += 1
        self._divergence_notes = {}
        self.comparison = comparison
        self.records = comparison.records
        alrao = self._alrao_record()
        self.layer_picker.options = [ALL_LAYERS, *(alrao.feature_layers if alrao else [])]
        self._throttle.reset()
        self.redraw_count = 0
        self.redraw_seconds = 0.0
        start = time.perf_counter()
        self.redraw()
        device = comparison.runs[0].device
        self._set_status(f"Training {len(specs)} runs on {device}: step 0 of {comparison.total_steps}.")

        threads = torch.get_num_threads()
        if device.type == "cpu" and self.cpu_threads is not None:
            torch.set_num_threads(self.cpu_threads)
        try:
            finished = comparison.train(self._after_step)
        finally:
            torch.set_num_threads(threads)
        self._note_divergences()
        self.redraw()
        self.train_seconds = time.perf_counter() - start
        if finished:
            self._set_status(
                f"Finished {comparison.step_count} steps in {self.train_seconds:.0f} s. {self._final_losses()}"
            )
        else:
            self._set_status(
                f"Stopped after step {comparison.step_count} of {comparison.total_steps}. The plots and records "
                "show the runs up to that step; press Train to start again."
            )

    def _after_step(self, comparison: Comparison) -> None:
        if self._stop_requested.is_set():
            comparison.stop()
        self._note_divergences()
        if self.live_plots and self._throttle.due():
            self._set_status(self._progress_text(comparison))
            self.redraw()

    def _note_divergences(self) -> None:
        for record in self.records:
            if record.diverged and record.label not in self._divergence_notes:
                self._divergence_notes[record.label] = (
                    f"{record.label} diverged at step {record.diverged_at} (its loss was not finite); the other runs go on."
                )

    def _progress_text(self, comparison: Comparison) -> str:
        steps_per_epoch = max(run.steps_per_epoch for run in comparison.runs)
        epochs = max(run.epochs for run in comparison.runs)
        epoch = min(comparison.step_count // steps_per_epoch + 1, epochs)
        return (
            f"Training {len(comparison.runs)} runs: epoch {epoch} of {epochs}, "
            f"step {comparison.step_count} of {comparison.total_steps}."
        )

    def _final_losses(self) -> str:
        parts = [
            f"{record.label} {record.final_test_loss:.3g}"
            for record in self.records
            if record.final_test_loss is not None and not record.diverged
        ]
        return f"Final test loss: {', '.join(parts)}." if parts else ""

    def _explain(self, error: BaseException, settings: TrainingSettings) -> str:
        if _is_out_of_memory(error):
            return (
                f"The device ({settings.device}) ran out of memory. Try a smaller batch size or width, "
                "or train on the cpu."
            )
        if self._phase == "loading" and isinstance(error, (RuntimeError, OSError)):
            return f"Could not load the data set {settings.dataset}: {error}"
        if self._phase == "building" and isinstance(error, ValueError):
            return f"Could not build the {settings.arch} runs for {settings.dataset}: {error}"
        return f"Training failed with {type(error).__name__}: {error}"

    # ------------------------------------------------------------------ plots

    def _alrao_record(self):
        return next((record for record in self.records if record.method == "alrao"), None)

    def _signature(self, name: str) -> tuple:
        records = self.records
        alrao = self._alrao_record()
        if name in ("loss", "accuracy"):
            lengths = tuple((len(r.train_loss), len(r.test_loss), r.diverged_at) for r in records)
            return self._generation, lengths
        if alrao is None:
            return (self._generation,)
        if name == "switch":
            return self._generation, len(alrao.switch_posterior), alrao.diverged_at
        if name == "heads":
            return self._generation, len(alrao.head_losses)
        if name == "rates":
            return self._generation, self.layer_picker.value
        return self._generation, len(alrao.feature_movement)

    def _build_figure(self, name: str):
        alrao = self._alrao_record()
        if not self.records or (alrao is None and name not in ("loss", "accuracy")):
            return _placeholder(name)
        if name == "loss":
            return figures.loss_figure(self.records, max_points=LIVE_MAX_POINTS)
        if name == "accuracy":
            return figures.accuracy_figure(self.records)
        if name == "switch":
            return figures.switch_posterior_figure(alrao, max_points=LIVE_MAX_POINTS)
        if name == "heads":
            return figures.head_loss_figure(alrao, max_points=LIVE_MAX_POINTS)
        if name == "rates":
            layer = self.layer_picker.value
            figure = figures.rate_histogram_figure(alrao, layer=None if layer == ALL_LAYERS else layer)
            figure.layout.updatemenus = ()  # the layer picker above the plot replaces plotly's menu
            return figure
        return figures.rate_movement_figure(alrao)

    # --------------------------------------------------------------- controls

    def _on_train_clicked(self, button) -> None:
        self.run()

    def _on_stop_clicked(self, button) -> None:
        self.stop()

    def _on_layer_picked(self, change: dict) -> None:
        if not self.records:
            return
        try:
            self.redraw()
        except Exception as error:  # noqa: BLE001 - shown in the status line, never as a traceback
            self._set_status(f"Could not draw the layer {change['new']}: {type(error).__name__}: {error}", error=True)
            logger.info("Redraw for layer %s failed", change["new"], exc_info=True)

    def _on_setting_changed(self, change: dict) -> None:
        self._check_settings()

    def _check_settings(self, *, training: bool | None = None) -> str | None:
        """Show why the settings cannot be trained and disable Train, or clear an earlier reason.

        ``training`` overrides :attr:`is_training`, for the moment training ends.
        """
        controls = self.controls
        problem = interval_problem(controls.eta_min.value, controls.eta_max.value) or fit_problem(
            controls.dataset.value, controls.arch.value
        )
        if self.is_training if training is None else training:
            return problem
        self.train_button.disabled = problem is not None
        if problem is not None:
            self._set_status(problem, error=True)
            self._showing_problem = True
        elif self._showing_problem:
            self._set_status("Ready: press Train.")
            self._showing_problem = False
        return problem

    def _set_training_controls(self, training: bool) -> None:
        self.controls.set_disabled(training)
        self.stop_button.disabled = not training
        if training:
            self.train_button.disabled = True
        else:
            self.train_button.disabled = False
            self._check_settings(training=False)

    def _set_status(self, text: str, *, error: bool = False) -> None:
        notes = [note for note in self._divergence_notes.values() if note not in text]
        if notes and not error:
            text = " ".join([text, *notes])
        self.status_text = text
        color = "#b00020" if error else "inherit"
        self.status.value = f'<span style="color: {color}">{html.escape(text)}</span>'
