"""Comparisons built from names: a data set, an architecture, Alrao's interval, the baselines.

:class:`CompareConfig` collects everything a comparison of Alrao with SGD at a
grid of rates and Adam needs, checks it all before anything trains
(:meth:`CompareConfig.validate`), and :func:`build_comparison` turns it into a
:class:`~alrao_edu.training.runs.Comparison` whose runs start from the same
network weights for each seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .architectures import ARCHITECTURES, build_model
from .data import DATASETS, Dataset, load_dataset
from .devices import resolve_device
from .runs import Comparison, MethodSpec

__all__ = ["DEFAULT_SEEDS", "DEFAULT_SGD_LRS", "CompareConfig", "build_comparison", "load_config_dataset", "method_specs"]

# One SGD run per decade over Alrao's default interval [1e-5, 10].
DEFAULT_SGD_LRS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
# Three seeds give a mean and a spread while the default job stays a few minutes on a laptop CPU.
DEFAULT_SEEDS = (0, 1, 2)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_rate(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class CompareConfig:
    """Everything one comparison trains: Alrao, SGD at each rate of ``sgd_lrs``, and Adam.

    Args:
        dataset: a name from ``alrao_edu.training.data.DATASETS``.
        arch: a name from ``alrao_edu.training.architectures.ARCHITECTURES``.
        width: multiplier of the hidden units or filters of the architecture.
        eta_min, eta_max: Alrao's learning-rate interval.
        n_heads: Alrao's number of classifier heads.
        sgd_lrs: the SGD baselines' learning rates (empty: no SGD run).
        adam: also train Adam with its default rate 1e-3.
        seeds: one run of every method per seed; a seed fixes the initial
            weights, the mini-batch order and Alrao's random rates.
        epochs: passes over the training set.
        batch_size: examples per mini-batch.
        device: ``"auto"`` or a device name such as ``"cpu"`` or ``"cuda:0"``.
        n_train, n_test: if given, train and test on a random subset of this size.
    """

    dataset: str = "digits"
    arch: str = "cnn"
    width: int = 1
    eta_min: float = 1e-5
    eta_max: float = 10.0
    n_heads: int = 10
    sgd_lrs: tuple[float, ...] = DEFAULT_SGD_LRS
    adam: bool = True
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    epochs: int = 10
    batch_size: int = 32
    device: str = "auto"
    n_train: int | None = None
    n_test: int | None = None

    def validate(self) -> None:
        """Check every field without training or loading data; raise ``ValueError`` naming the first bad one."""
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown data set {self.dataset!r}; valid names are: {', '.join(DATASETS)}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"Unknown architecture {self.arch!r}; valid names are: {', '.join(ARCHITECTURES)}")
        for name in ("width", "n_heads", "epochs", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= 1")
        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= 1 or None")

        for name in ("eta_min", "eta_max"):
            if not _is_rate(getattr(self, name)):
                raise ValueError(f"Invalid {name}: {getattr(self, name)!r}; expected a finite number > 0")
        if self.eta_min > self.eta_max:
            raise ValueError(
                f"Invalid learning-rate interval: eta_min {self.eta_min:g} is above eta_max {self.eta_max:g}; "
                "expected eta_min <= eta_max"
            )
        for rate in self.sgd_lrs:
            if not _is_rate(rate):
                raise ValueError(f"Invalid SGD learning rate: {rate!r}; expected a finite number > 0")
        if len(set(self.sgd_lrs)) != len(self.sgd_lrs):
            raise ValueError(f"Duplicate SGD learning rate in {list(self.sgd_lrs)}; give each rate once")

        if not self.seeds:
            raise ValueError("No seed given; expected at least one seed, such as 0")
        for seed in self.seeds:
            if not _is_int(seed) or seed < 0:
                raise ValueError(f"Invalid seed: {seed!r}; expected an integer >= 0")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Duplicate seed in {list(self.seeds)}; give each seed once")

        self.n_outputs()  # raises for an architecture that does not fit the data set
        resolve_device(self.device)

    def n_outputs(self) -> int:
        """Return the classifier's output size, after checking that the architecture fits the data set."""
        info = DATASETS[self.dataset]
        n_outputs = info.n_classes if info.task == "classification" else 1
        if not ARCHITECTURES[self.arch].accepts(info.input_shape):
            # build_model raises the architecture's own message, which names the shapes it accepts.
            build_model(self.arch, info.input_shape, n_outputs, width=self.width, seed=0)
        return n_outputs

    def to_dict(self) -> dict:
        """Return the configuration as JSON-ready values (tuples become lists)."""
        values = asdict(self)
        values["sgd_lrs"] = list(self.sgd_lrs)
        values["seeds"] = list(self.seeds)
        return values


def method_specs(config: CompareConfig) -> list[MethodSpec]:
    """List the methods of a comparison: Alrao first, then SGD at each rate, then Adam."""
    specs = [MethodSpec("alrao", eta_min=config.eta_min, eta_max=config.eta_max, n_heads=config.n_heads)]
    specs += [MethodSpec("sgd", lr=float(rate)) for rate in config.sgd_lrs]
    if config.adam:
        specs.append(MethodSpec("adam"))
    return specs


def load_config_dataset(config: CompareConfig) -> Dataset:
    """Load the configuration's data set (with its subsets), after validating the configuration."""
    config.validate()
    return load_dataset(config.dataset, n_train=config.n_train, n_test=config.n_test)


def build_comparison(
    config: CompareConfig,
    *,
    specs: list[MethodSpec] | None = None,
    dataset: Dataset | None = None,
) -> Comparison:
    """Build the lock-step comparison that ``config`` describes.

    Args:
        config: the comparison; validated here first.
        specs: the methods to train (default :func:`method_specs` of ``config``).
        dataset: the data set already loaded (default: load it from the
            configuration's name, with its subsets).
    """
    config.validate()
    if dataset is None:
        dataset = load_config_dataset(config)
    n_outputs = dataset.n_outputs

    def network_for_seed(seed: int):
        return build_model(config.arch, dataset.input_shape, n_outputs, width=config.width, seed=seed)

    return Comparison(
        specs if specs is not None else method_specs(config),
        network_for_seed,
        dataset,
        seeds=config.seeds,
        epochs=config.epochs,
        batch_size=config.batch_size,
        device=config.device,
    )
