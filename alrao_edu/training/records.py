"""What a run records for the views: losses, metrics, switch posterior, feature rates and movement.

A :class:`RunRecord` contains plain Python numbers and lists only, so it turns
into JSON with :meth:`RunRecord.to_dict` and the figure builders never need
the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = ["RunRecord", "FeatureTracker"]


@dataclass
class RunRecord:
    """Everything one run recorded.

    Steps count optimizer steps from 1. ``switch_posterior[0]`` is the prior,
    before the first step, so ``switch_posterior[k]`` is the posterior after
    step k. Evaluations happen at the end of each epoch, at the steps listed in
    ``eval_steps``.
    """

    method: str
    label: str
    lr: float | None
    eta_min: float | None
    eta_max: float | None
    n_heads: int | None
    seed: int
    dataset: str
    epochs: int
    batch_size: int
    steps_per_epoch: int
    train_loss: list[float] = field(default_factory=list)  # per step
    eval_steps: list[int] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)  # per evaluation
    test_accuracy: list[float] = field(default_factory=list)  # classification
    test_mse: list[float] = field(default_factory=list)  # regression
    test_bpc: list[float] = field(default_factory=list)  # language models: test_loss / ln 2
    epoch_train_loss: list[float] = field(default_factory=list)  # language models: mean step loss of the epoch
    diverged_at: int | None = None  # the step whose loss was not finite
    # Alrao only:
    head_learning_rates: list[float] = field(default_factory=list)  # [H]
    switch_posterior: list[list[float]] = field(default_factory=list)  # [steps + 1][H]
    head_losses: list[list[float]] = field(default_factory=list)  # [steps][H], inf for a diverged head
    feature_layers: list[str] = field(default_factory=list)
    feature_rates: dict[str, list[float]] = field(default_factory=dict)  # layer -> one rate per feature
    feature_movement: list[dict[str, list[float]]] = field(default_factory=list)  # per evaluation

    @classmethod
    def start(cls, spec, *, seed: int, dataset: str, steps_per_epoch: int, epochs: int, batch_size: int) -> "RunRecord":
        alrao = spec.method == "alrao"
        return cls(
            method=spec.method,
            label=spec.label,
            lr=spec.lr,
            eta_min=spec.eta_min if alrao else None,
            eta_max=spec.eta_max if alrao else None,
            n_heads=spec.n_heads if alrao else None,
            seed=seed,
            dataset=dataset,
            epochs=epochs,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
        )

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def mark_diverged(self, step: int) -> None:
        if self.diverged_at is None:
            self.diverged_at = step

    def add_evaluation(self, step: int, metrics: dict[str, float]) -> None:
        self.eval_steps.append(step)
        self.test_loss.append(metrics["test_loss"])
        if "test_accuracy" in metrics:
            self.test_accuracy.append(metrics["test_accuracy"])
        if "test_mse" in metrics:
            self.test_mse.append(metrics["test_mse"])
        if "test_bpc" in metrics:
            self.test_bpc.append(metrics["test_bpc"])
        if "epoch_train_loss" in metrics:
            self.epoch_train_loss.append(metrics["epoch_train_loss"])

    @property
    def final_test_loss(self) -> float | None:
        return self.test_loss[-1] if self.test_loss else None

    @property
    def final_test_accuracy(self) -> float | None:
        return self.test_accuracy[-1] if self.test_accuracy else None

    def to_dict(self) -> dict:
        return asdict(self)


def _module_of(root: nn.Module, parameter_name: str) -> tuple[str, nn.Module]:
    layer, _, _ = parameter_name.rpartition(".")
    return layer, root.get_submodule(layer) if layer else root


class FeatureTracker:
    """Per-feature rates of an AlraoModel's pre-classifier and how far each feature's weights moved.

    A feature's movement is the Euclidean norm of the change, since the
    tracker was built, of all its incoming parameters (its weight row and its
    bias entry; for a recurrent unit, its rows in every gate).
    """

    def __init__(self, model) -> None:
        self.model = model
        preclassifier = model.preclassifier
        named = dict(preclassifier.named_parameters())
        # Group parameters that share one rate storage: they are one layer's features.
        groups: dict[int, list[str]] = {}
        for name, rate in model.feature_learning_rates.items():
            groups.setdefault(rate.untyped_storage().data_ptr(), []).append(name)
        self._groups: list[tuple[str, list[str], int]] = []  # (layer, parameter names, gates)
        for names in groups.values():
            layer, module = _module_of(preclassifier, names[0])
            gates = 1
            if isinstance(module, nn.RNNBase):
                gates = module.weight_ih_l0.shape[0] // module.hidden_size
            label = layer or names[0]
            if any(existing == label for existing, _, _ in self._groups):
                label = f"{label} ({names[0].rpartition('.')[2]})"
            self._groups.append((label, names, gates))
        self._named = named
        self._initial = {name: named[name].detach().clone() for name in model.feature_learning_rates}

    @property
    def layer_names(self) -> list[str]:
        return [label for label, _, _ in self._groups]

    def rates(self) -> dict[str, list[float]]:
        """Return one rate per feature, by layer."""
        result = {}
        for label, names, gates in self._groups:
            rate = self.model.feature_learning_rates[names[0]].flatten()
            if gates > 1:
                rate = rate[: rate.numel() // gates]  # gate rows repeat the unit rates
            result[label] = rate.tolist()
        return result

    @torch.no_grad()
    def movement(self) -> dict[str, list[float]]:
        """Norm of each feature's parameter change since the start, by layer."""
        result = {}
        for label, names, gates in self._groups:
            squared = None
            for name in names:
                rate = self.model.feature_learning_rates[name]
                delta = (self._named[name].detach() - self._initial[name]).float().cpu()
                dims = [d for d in range(delta.dim()) if d < rate.dim() and rate.shape[d] == 1 and delta.shape[d] > 1]
                dims += list(range(rate.dim(), delta.dim()))
                per_feature = delta.pow(2).sum(dim=dims, keepdim=True) if dims else delta.pow(2)
                per_feature = per_feature.reshape(-1)
                squared = per_feature if squared is None else squared + per_feature
            if gates > 1:
                squared = squared.view(gates, -1).sum(0)
            result[label] = squared.sqrt().tolist()
        return result
