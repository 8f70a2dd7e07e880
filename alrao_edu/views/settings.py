"""Settings of one dashboard training, with their defaults and checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..training.architectures import ARCHITECTURES
from ..training.data import DATASETS
from ..training.runs import MethodSpec

__all__ = ["SGD_RATE_CHOICES", "TrainingSettings", "interval_problem"]

# SGD baselines offered as check boxes: one per decade over the rates that usually matter.
SGD_RATE_CHOICES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def interval_problem(eta_min: float, eta_max: float) -> str | None:
    """Explain in plain words why ``[eta_min, eta_max]`` cannot be trained, or return ``None``.

    Unlike the core, which accepts ``eta_min == eta_max`` (Alrao is then plain SGD), the
    dashboard rejects an empty interval: drawing every rate from one value shows nothing.
    """
    for name, value in (("η_min", eta_min), ("η_max", eta_max)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            return f"{name} must be a positive learning rate; it is {value}."
    if eta_min > eta_max:
        return f"The interval is inverted: η_min = {eta_min:g} is above η_max = {eta_max:g}. Swap the two ends."
    if eta_min == eta_max:
        return (
            f"The interval is empty: η_min = η_max = {eta_min:g}, so every feature would get the same rate. "
            "Widen it, for example to several decades."
        )
    return None


def fit_problem(dataset: str, arch: str) -> str | None:
    """Explain why architecture ``arch`` cannot take the inputs of ``dataset``, or return ``None``."""
    shape = DATASETS[dataset].input_shape
    if ARCHITECTURES[arch].accepts(shape):
        return None
    fitting = [name for name, info in ARCHITECTURES.items() if info.accepts(shape)]
    return (
        f"The architecture {arch} does not fit the data set {dataset} (inputs of shape {shape}). "
        f"Architectures that fit: {', '.join(fitting)}."
    )


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= {minimum}")


@dataclass(frozen=True)
class TrainingSettings:
    """Everything one press of Train uses. The defaults fit a classroom session on a CPU.

    Args:
        dataset: a name from ``alrao_edu.training.data.dataset_names()``; ``digits`` is
            embedded, so the default works offline.
        arch: a name from ``alrao_edu.training.architectures.architecture_names()``; the small
            CNN with BatchNorm is the default because Alrao needs protection against huge
            activations.
        width: multiplier of the hidden units or filters.
        eta_min, eta_max: Alrao's learning-rate interval (1e-5 to 10, the CIFAR-10
            setting of Blier, Wolinski and Ollivier, 2019).
        n_heads: Alrao's number of classifier heads (10 in the same setting).
        epochs: passes over the training set; three take under a minute on a laptop CPU.
        batch_size: mini-batch size (32 in the same setting).
        seed: seeds the weights, the mini-batch order and Alrao's rates.
        device: ``"auto"`` or a name from ``available_devices()``.
        sgd_rates: one SGD baseline per rate.
        adam: whether to train an Adam baseline with its defaults.
        n_train, n_test: keep only this many training or test examples (``None``: all).
    """

    dataset: str = "digits"
    arch: str = "cnn"
    width: int = 1
    eta_min: float = 1e-5
    eta_max: float = 10.0
    n_heads: int = 10
    epochs: int = 3
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    sgd_rates: tuple[float, ...] = (0.01, 0.1)
    adam: bool = True
    n_train: int | None = None
    n_test: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown data set {self.dataset!r}; valid names are: {', '.join(DATASETS)}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"Unknown architecture {self.arch!r}; valid names are: {', '.join(ARCHITECTURES)}")
        _check_int("width", self.width, 1)
        _check_int("n_heads", self.n_heads, 1)
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seed", self.seed, 0)
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        for name in ("eta_min", "eta_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"Invalid {name}: {value!r}; expected a finite number > 0")
        for rate in self.sgd_rates:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"Invalid SGD rate: {rate!r}; expected a finite number > 0")
        if not isinstance(self.device, str):
            raise ValueError(f"Invalid device: {self.device!r}; expected 'auto' or a device name such as 'cpu'")
        object.__setattr__(self, "sgd_rates", tuple(sorted(float(rate) for rate in set(self.sgd_rates))))

    def problem(self) -> str | None:
        """Explain in plain words why these settings cannot be trained, or return ``None``."""
        return interval_problem(self.eta_min, self.eta_max) or fit_problem(self.dataset, self.arch)

    def specs(self) -> list[MethodSpec]:
        """Return the methods to train: Alrao, then SGD at each rate, then Adam."""
        specs = [MethodSpec("alrao", eta_min=float(self.eta_min), eta_max=float(self.eta_max), n_heads=self.n_heads)]
        specs += [MethodSpec("sgd", lr=rate) for rate in self.sgd_rates]
        if self.adam:
            specs.append(MethodSpec("adam"))
        return specs
