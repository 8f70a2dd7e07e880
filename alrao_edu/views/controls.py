"""The dashboard's input widgets: what to train, and the learning-rate interval control.

:class:`Controls` builds one ipywidgets control per training setting, lays them out in
:attr:`Controls.box` and reads them back as :class:`~alrao_edu.views.settings.TrainingSettings`.
It contains no training logic: the dashboard decides what the values mean.
"""

from __future__ import annotations

import math

import ipywidgets as widgets

from ..training.architectures import architecture_names
from ..training.data import dataset_names
from ..training.devices import available_devices
from .settings import SGD_RATE_CHOICES, TrainingSettings

__all__ = ["Controls"]

# The interval slider spans 1e-7 to 1e2 unless the defaults lie outside; a quarter decade per notch.
SLIDER_LOG10_MIN = -7.0
SLIDER_LOG10_MAX = 2.0
SLIDER_LOG10_STEP = 0.25
MAX_WIDTH = 8
MAX_HEADS = 20
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
MAX_SEED = 2**31 - 1

_LABEL_STYLE = {"description_width": "initial"}


def _rounded_rate(log10_value: float) -> float:
    # Three significant digits, so 10 ** -2.25 reads 0.00562 and not 0.005623413251903491.
    return float(f"{10.0 ** log10_value:.3g}")


def _format_interval(eta_min: float, eta_max: float) -> str:
    if eta_min > 0 and eta_max > 0 and math.isfinite(eta_min) and math.isfinite(eta_max):
        decades = math.log10(eta_max / eta_min)
        return f"[{eta_min:g}, {eta_max:g}], {decades:.3g} decades"
    return f"[{eta_min:g}, {eta_max:g}]"


class Controls:
    """One widget per training setting, laid out in :attr:`box`.

    The learning-rate interval has two views kept in step: :attr:`interval`, a range slider
    over log10 rates, and the number boxes :attr:`eta_min` and :attr:`eta_max`, which hold the
    exact values that training uses. The boxes accept any number, an inverted interval
    included, so the dashboard can explain what is wrong with it.

    Args:
        defaults: the initial value of every control.
    """

    def __init__(self, defaults: TrainingSettings) -> None:
        self.dataset = widgets.Dropdown(options=dataset_names(), value=defaults.dataset, description="data set", style=_LABEL_STYLE)
        self.arch = widgets.Dropdown(options=architecture_names(), value=defaults.arch, description="architecture", style=_LABEL_STYLE)
        self.width = widgets.IntSlider(
            value=defaults.width, min=1, max=max(MAX_WIDTH, defaults.width), description="width ×", style=_LABEL_STYLE
        )
        devices = ["auto", *available_devices()]
        self.device = widgets.Dropdown(options=devices, value=defaults.device, description="device", style=_LABEL_STYLE)

        low = min(SLIDER_LOG10_MIN, math.floor(math.log10(defaults.eta_min)))
        high = max(SLIDER_LOG10_MAX, math.ceil(math.log10(defaults.eta_max)))
        self.interval = widgets.FloatRangeSlider(
            value=(math.log10(defaults.eta_min), math.log10(defaults.eta_max)),
            min=low,
            max=high,
            step=SLIDER_LOG10_STEP,
            readout_format=".2f",
            description="log10 learning rate",
            style=_LABEL_STYLE,
            layout=widgets.Layout(width="420px"),
        )
        self.eta_min = widgets.FloatText(value=defaults.eta_min, description="η_min", style=_LABEL_STYLE, layout=widgets.Layout(width="150px"))
        self.eta_max = widgets.FloatText(value=defaults.eta_max, description="η_max", style=_LABEL_STYLE, layout=widgets.Layout(width="150px"))
        self.interval_readout = widgets.Label(value=_format_interval(defaults.eta_min, defaults.eta_max))
        self._syncing = False
        self.interval.observe(self._on_slider, names="value")
        self.eta_min.observe(self._on_box, names="value")
        self.eta_max.observe(self._on_box, names="value")

        self.n_heads = widgets.IntSlider(
            value=defaults.n_heads, min=1, max=max(MAX_HEADS, defaults.n_heads), description="heads", style=_LABEL_STYLE
        )
        self.epochs = widgets.BoundedIntText(
            value=defaults.epochs, min=1, max=max(MAX_EPOCHS, defaults.epochs), description="epochs", style=_LABEL_STYLE,
            layout=widgets.Layout(width="140px"),
        )
        self.batch_size = widgets.BoundedIntText(
            value=defaults.batch_size, min=1, max=max(MAX_BATCH_SIZE, defaults.batch_size), description="batch size",
            style=_LABEL_STYLE, layout=widgets.Layout(width="160px"),
        )
        self.seed = widgets.BoundedIntText(
            value=defaults.seed, min=0, max=MAX_SEED, description="seed", style=_LABEL_STYLE, layout=widgets.Layout(width="150px")
        )

        rates = sorted(set(SGD_RATE_CHOICES) | set(defaults.sgd_rates))
        self.sgd_rates = {
            rate: widgets.Checkbox(
                value=rate in defaults.sgd_rates, description=f"{rate:g}", indent=False, layout=widgets.Layout(width="70px")
            )
            for rate in rates
        }
        self.adam = widgets.Checkbox(
            value=defaults.adam, description="Adam (lr 0.001)", indent=False, layout=widgets.Layout(width="140px")
        )
        self._n_train = defaults.n_train
        self._n_test = defaults.n_test

        self.box = widgets.VBox(
            [
                widgets.HBox([self.dataset, self.arch, self.width, self.device]),
                widgets.HBox([self.interval, self.eta_min, self.eta_max, self.interval_readout]),
                widgets.HBox([self.n_heads, self.epochs, self.batch_size, self.seed]),
                widgets.HBox([widgets.Label("Baselines: SGD at"), *self.sgd_rates.values(), self.adam]),
            ]
        )

    @property
    def all(self) -> list[widgets.Widget]:
        """Every input widget, for disabling them all while training."""
        return [
            self.dataset, self.arch, self.width, self.device, self.interval, self.eta_min, self.eta_max,
            self.n_heads, self.epochs, self.batch_size, self.seed, *self.sgd_rates.values(), self.adam,
        ]

    def set_disabled(self, disabled: bool) -> None:
        for control in self.all:
            control.disabled = disabled

    def settings(self) -> TrainingSettings:
        """Read the settings that the controls show; raise ``ValueError`` if one is invalid."""
        return TrainingSettings(
            dataset=self.dataset.value,
            arch=self.arch.value,
            width=self.width.value,
            eta_min=self.eta_min.value,
            eta_max=self.eta_max.value,
            n_heads=self.n_heads.value,
            epochs=self.epochs.value,
            batch_size=self.batch_size.value,
            seed=self.seed.value,
            device=self.device.value,
            sgd_rates=tuple(rate for rate, box in self.sgd_rates.items() if box.value),
            adam=self.adam.value,
            n_train=self._n_train,
            n_test=self._n_test,
        )

    def set_interval(self, eta_min: float, eta_max: float) -> None:
        """Set both ends at once (the boxes and, where it can show them, the slider)."""
        self._syncing = True
        try:
            self.eta_min.value = eta_min
            self.eta_max.value = eta_max
        finally:
            self._syncing = False
        self._on_box()

    # The slider and the boxes update each other; _syncing stops the echo.

    def _on_slider(self, change: dict) -> None:
        if self._syncing:
            return
        low, high = change["new"]
        self._syncing = True
        try:
            self.eta_min.value = _rounded_rate(low)
            self.eta_max.value = _rounded_rate(high)
        finally:
            self._syncing = False
        self.interval_readout.value = _format_interval(self.eta_min.value, self.eta_max.value)

    def _on_box(self, change: dict | None = None) -> None:
        if self._syncing:
            return
        eta_min, eta_max = self.eta_min.value, self.eta_max.value
        self.interval_readout.value = _format_interval(eta_min, eta_max)
        usable = all(value > 0 and math.isfinite(value) for value in (eta_min, eta_max))
        if not usable or eta_min > eta_max:
            return  # the slider cannot show it; the dashboard reports the problem
        low = min(max(math.log10(eta_min), self.interval.min), self.interval.max)
        high = min(max(math.log10(eta_max), self.interval.min), self.interval.max)
        self._syncing = True
        try:
            self.interval.value = (low, high)
        finally:
            self._syncing = False
