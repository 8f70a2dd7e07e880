"""alrao-edu: learn, show and use Alrao (All Learning Rates At Once) with PyTorch.

Alrao (Blier, Wolinski and Ollivier, "Learning with Random Learning Rates",
ECML-PKDD 2019, arXiv:1810.01322) trains a network with one random learning
rate per feature and averages several copies of the classifier layer, each
with its own rate, by switch model averaging.

Layers: ``alrao_edu.core`` (the method), ``alrao_edu.training`` (data sets,
architectures, runs), ``alrao_edu.views`` (figures, dashboard, command line).
"""

from .core import (
    AlraoAdam,
    AlraoModel,
    AlraoSGD,
    Heads,
    Switch,
    alraofy,
    feature_learning_rates,
    head_learning_rates,
    log_uniform,
)
from . import training
from .views.dashboard import Dashboard

__version__ = "0.1.0"

__all__ = [
    "AlraoAdam",
    "AlraoModel",
    "AlraoSGD",
    "Dashboard",
    "Heads",
    "Switch",
    "__version__",
    "training",
    "alraofy",
    "feature_learning_rates",
    "head_learning_rates",
    "log_uniform",
]
