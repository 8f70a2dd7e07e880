"""The training layer: data sets, architectures, runs, comparisons and what they record."""

from .devices import available_devices, resolve_device
from .records import FeatureTracker, RunRecord
from .runs import ADAM_DEFAULT_LR, METHODS, Comparison, MethodSpec, Run, gaussian_nll

__all__ = [
    "ADAM_DEFAULT_LR",
    "METHODS",
    "Comparison",
    "FeatureTracker",
    "MethodSpec",
    "Run",
    "RunRecord",
    "available_devices",
    "gaussian_nll",
    "resolve_device",
]
