"""Alrao's core: per-feature rates, batched heads, the switch, the model and the optimizers.

Pure PyTorch; this layer imports nothing from the training or view layers.
"""

from .heads import Heads
from .model import AlraoModel, alraofy, head_learning_rates
from .optim import AlraoAdam, AlraoSGD
from .rates import feature_learning_rates, log_uniform
from .switch import Switch

__all__ = [
    "AlraoAdam",
    "AlraoModel",
    "AlraoSGD",
    "Heads",
    "Switch",
    "alraofy",
    "feature_learning_rates",
    "head_learning_rates",
    "log_uniform",
]
