"""The training layer: data sets, architectures, runs, comparisons and what they record."""

from .architectures import ARCHITECTURES, architecture_names, build_model
from .data import DATASETS, Dataset, dataset_names, load_dataset
from .devices import available_devices, resolve_device
from .records import FeatureTracker, RunRecord
from .runs import ADAM_DEFAULT_LR, METHODS, Comparison, MethodSpec, Run, gaussian_nll

__all__ = [
    "ADAM_DEFAULT_LR",
    "ARCHITECTURES",
    "DATASETS",
    "Dataset",
    "architecture_names",
    "build_model",
    "dataset_names",
    "load_dataset",
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
