"""The training layer: data sets, architectures, runs, comparisons and what they record."""

from .architectures import ARCHITECTURES, architecture_names, build_model
from .compare import CompareConfig, build_comparison, method_specs
from .data import DATASETS, Dataset, dataset_names, load_dataset
from .devices import available_devices, resolve_device
from .language import CharLanguageModel, LanguageComparison, LanguageRun, TextCorpus, generate, load_corpus
from .records import FeatureTracker, RunRecord
from .runs import ADAM_DEFAULT_LR, METHODS, Comparison, MethodSpec, Run, gaussian_nll
from .sweep import IntervalGrid, interval_grid, interval_specs

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
    "CompareConfig",
    "IntervalGrid",
    "build_comparison",
    "interval_grid",
    "interval_specs",
    "method_specs",
    "FeatureTracker",
    "MethodSpec",
    "Run",
    "RunRecord",
    "available_devices",
    "gaussian_nll",
    "resolve_device",
    "CharLanguageModel",
    "LanguageComparison",
    "LanguageRun",
    "TextCorpus",
    "generate",
    "load_corpus",
]
