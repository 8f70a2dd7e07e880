"""``AlraoModel``: a pre-classifier, ``n_heads`` classifier heads and a switch.

Shapes used in this file:
    B: batch size (or all leading dimensions, for sequence models)
    D: pre-classifier output features (``in_features``)
    H: number of heads
    K: classes (classification) or target size (regression)
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from .heads import Heads
from .rates import feature_learning_rates, validate_interval
from .switch import Switch

__all__ = ["AlraoModel", "alraofy", "head_learning_rates"]

TASKS = ("classification", "regression")


def head_learning_rates(n_heads: int, eta_min: float, eta_max: float) -> Tensor:
    """Rates of the heads, log-spaced over the interval: ``eta_min * (eta_max/eta_min) ** (j/(H-1))``.

    One head gets ``eta_min``. Returns float32 ``[n_heads]``.
    """
    validate_interval(eta_min, eta_max)
    if n_heads == 1:
        return torch.tensor([float(eta_min)], dtype=torch.float32)
    j = torch.arange(n_heads, dtype=torch.float64)
    rates = eta_min * (eta_max / eta_min) ** (j / (n_heads - 1))
    rates[-1] = eta_max  # exact ends, not a rounding of exp(log(...))
    return rates.to(torch.float32)


class AlraoModel(nn.Module):
    r"""Alrao's network: a pre-classifier with per-feature rates, several heads, a switch.

    The last layer of a network is replaced by ``n_heads`` copies (heads).
    Head j has the learning rate
    :math:`\eta_j = \eta_{min} (\eta_{max}/\eta_{min})^{j/(H-1)}`, and every
    feature of the pre-classifier gets a rate drawn once with
    :math:`\log\eta \sim U(\log\eta_{min}, \log\eta_{max})`
    (:func:`~alrao_edu.feature_learning_rates`). The optimizers
    :class:`~alrao_edu.AlraoSGD` and :class:`~alrao_edu.AlraoAdam` read both.

    The output is the switch mixture of the heads (``a`` is ``switch.posterior``):

    * classification: :math:`\log \sum_j a_j\, p_j(y \mid x)`, log-probabilities ``[B, K]``;
    * regression: the mixture mean :math:`\sum_j a_j \mu_j(x)`, ``[B, K]``, where
      head j models ``y`` as Gaussian with mean :math:`\mu_j(x)` and fixed
      variance ``sigma2`` in each output dimension.

    Training (see :meth:`training_loss`): the pre-classifier follows the
    gradient of the mixture's negative log-likelihood; each head follows the
    gradient of its own negative log-likelihood on the pre-classifier's
    features with the gradient stopped. After each optimizer step,
    :meth:`update_switch` feeds each head's mean log-likelihood on that
    mini-batch, computed before the step, to the switch.

    Args:
        preclassifier: the network up to its last layer; maps an input to
            features ``[B, D]`` (or ``[B, T, D]`` for sequences).
        in_features: D, the size of the pre-classifier's output.
        out_features: K, classes or regression targets.
        n_heads: number of heads, >= 1. Default 10.
        eta_min, eta_max: learning-rate interval, ``0 < eta_min <= eta_max``.
            Defaults 1e-5 and 10, the CIFAR-10 setting of Blier et al. (2019).
        task: ``"classification"`` or ``"regression"``.
        sigma2: variance of the Gaussian likelihood for regression (> 0).
        theta: the switch's prior probability that another switch may follow, in (0, 1).
        generator: CPU generator for the rates and the heads' initial weights.

    Attributes:
        preclassifier, heads (:class:`~alrao_edu.core.heads.Heads`), switch
        (:class:`~alrao_edu.Switch`), head_learning_rates (``[H]``),
        feature_learning_rates (``{name in preclassifier: rate tensor}``),
        last_head_losses (``[H]``, each head's loss at the last
        :meth:`training_loss`, ``inf`` for a diverged head).
    """

    def __init__(
        self,
        preclassifier: nn.Module,
        in_features: int,
        out_features: int,
        *,
        n_heads: int = 10,
        eta_min: float = 1e-5,
        eta_max: float = 10.0,
        task: str = "classification",
        sigma2: float = 1.0,
        theta: float = 0.9999,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(preclassifier, nn.Module):
            raise TypeError(f"preclassifier must be an nn.Module, got {type(preclassifier).__name__}")
        if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1:
            raise ValueError(f"Invalid n_heads: {n_heads!r}; expected an integer >= 1")
        validate_interval(eta_min, eta_max)
        if task not in TASKS:
            raise ValueError(f"Invalid task: {task!r}; expected one of {', '.join(map(repr, TASKS))}")
        if isinstance(sigma2, bool) or not isinstance(sigma2, (int, float)) or not (math.isfinite(sigma2) and sigma2 > 0):
            raise ValueError(f"Invalid sigma2: {sigma2!r}; expected a finite number > 0")

        self.preclassifier = preclassifier
        self.heads = Heads(in_features, out_features, n_heads, task=task, generator=generator)
        self.switch = Switch(n_heads, theta=theta)
        self.in_features = in_features
        self.out_features = out_features
        self.n_heads = n_heads
        self.eta_min = float(eta_min)
        self.eta_max = float(eta_max)
        self.task = task
        self.sigma2 = float(sigma2)

        self.register_buffer("head_learning_rates", head_learning_rates(n_heads, eta_min, eta_max))
        self.feature_learning_rates = feature_learning_rates(preclassifier, eta_min, eta_max, generator=generator)
        self.last_head_losses: Tensor | None = None
        self._pending_log_likelihoods: Tensor | None = None

    def extra_repr(self) -> str:
        return f"eta_min={self.eta_min:g}, eta_max={self.eta_max:g}, task={self.task!r}, sigma2={self.sigma2:g}"

    # The per-feature rates travel with the model's state_dict.
    def get_extra_state(self) -> dict:
        return {"feature_learning_rates": {name: rate.clone() for name, rate in self.feature_learning_rates.items()}}

    def set_extra_state(self, state: dict) -> None:
        rates = state["feature_learning_rates"]
        if set(rates) != set(self.feature_learning_rates):
            raise ValueError(
                "Saved feature_learning_rates do not match this model's parameters: "
                f"saved {sorted(rates)}, expected {sorted(self.feature_learning_rates)}"
            )
        self.feature_learning_rates = {name: rate.detach().cpu().to(torch.float32) for name, rate in rates.items()}

    # ------------------------------------------------------------------ forward

    def features(self, x: Tensor) -> Tensor:
        """Run the pre-classifier and check that its output has ``in_features`` features."""
        features = self.preclassifier(x)
        if not isinstance(features, Tensor):
            raise TypeError(
                f"The preclassifier returned {type(features).__name__}, expected a Tensor of shape "
                f"[..., {self.in_features}]"
            )
        if features.dim() < 1 or features.shape[-1] != self.in_features:
            raise ValueError(
                f"The preclassifier output has shape {tuple(features.shape)}, so {features.shape[-1] if features.dim() else 0} "
                f"features, but the heads expect in_features={self.in_features}; pass the pre-classifier's "
                "real output size as in_features, or flatten its output"
            )
        return features

    def _log_posterior_like(self, reference: Tensor) -> Tensor:
        return self.switch.log_posterior.to(device=reference.device, dtype=reference.dtype)  # [H]

    def _mix(self, head_outputs: Tensor) -> Tensor:
        """Combine head outputs ``[..., H, K]`` into the mixture output ``[..., K]``.

        Heads with zero posterior weight or non-finite outputs are left out, so a
        diverged head never turns the mixture into NaN.
        """
        log_a = self._log_posterior_like(head_outputs).unsqueeze(-1)  # [H, 1]
        valid = torch.isfinite(head_outputs) & torch.isfinite(log_a)  # [..., H, K]
        if self.task == "classification":
            terms = torch.where(valid, head_outputs + log_a, -math.inf)
            return torch.logsumexp(terms, dim=-2)  # [..., K]
        a = torch.where(valid, log_a.exp(), 0.0)
        means = torch.where(valid, head_outputs, 0.0)
        total = a.sum(dim=-2)  # [..., K]; 1 unless some heads were left out
        return (a * means).sum(dim=-2) / total

    def forward(self, x: Tensor) -> Tensor:
        """Mixture log-probabilities ``[B, K]`` (classification) or mixture mean ``[B, K]`` (regression)."""
        return self._mix(self.heads(self.features(x)))

    def head_outputs(self, x: Tensor) -> Tensor:
        """Return every head's output ``[B, H, K]``: log-probabilities or means."""
        return self.heads(self.features(x))

    # ----------------------------------------------------------------- training

    def _per_sample_log_likelihood(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Log-likelihood of each sample under each head: outputs ``[N, H, K]`` -> ``[N, H]``."""
        if self.task == "classification":
            index = y.view(-1, 1, 1).expand(-1, outputs.shape[1], 1)
            return outputs.gather(-1, index).squeeze(-1)
        residual = outputs - y.view(y.shape[0], 1, -1)
        return -0.5 * (residual.pow(2) / self.sigma2 + math.log(2 * math.pi * self.sigma2)).sum(-1)

    def _check_targets(self, y: Tensor, n_samples: int) -> Tensor:
        if self.task == "classification":
            if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
                raise ValueError(f"Classification targets must be class indices (an integer dtype), got {y.dtype}")
            y = y.reshape(-1).long()
            if y.numel() != n_samples:
                raise ValueError(f"Got {y.numel()} targets for {n_samples} samples")
            return y
        y = y.reshape(n_samples, -1) if y.numel() == n_samples * self.out_features else None
        if y is None:
            raise ValueError(
                f"Regression targets must hold out_features={self.out_features} values per sample "
                f"({n_samples} samples)"
            )
        return y

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Alrao's training loss on one mini-batch, for one ``backward()``.

        The returned scalar's *value* is the mixture's negative log-likelihood
        (mean over samples), the quantity to log. Its *gradient* is:

        * for the pre-classifier: the gradient of that mixture loss;
        * for head j: the gradient of head j's own mean negative
          log-likelihood, with the features treated as constants.

        Both come from one forward pass of the heads (see
        :class:`~alrao_edu.core.heads.Heads.forward_split`) and one backward pass.

        A head whose loss is not finite is left out of the mixture and gets no
        gradient; it is recorded with log-likelihood ``-inf``. In training mode
        the per-head mean log-likelihoods are kept for :meth:`update_switch`.
        In eval mode nothing is kept, so the switch cannot be updated from it.

        Args:
            x: a mini-batch of inputs for the pre-classifier.
            y: class indices ``[B]`` (``[B, T]`` for sequences) or regression
                targets ``[B, K]``.
        """
        features = self.features(x)
        flat = features.reshape(-1, self.in_features)  # [N, D]
        y = self._check_targets(y, flat.shape[0])
        for_mixture, for_heads = self.heads.forward_split(flat)  # [N, H, K] twice

        head_ll = self._per_sample_log_likelihood(for_heads, y)  # [N, H]
        head_losses = -head_ll.mean(0)  # [H]
        finite = torch.isfinite(head_losses)  # [H]
        head_loss_sum = torch.where(finite, head_losses, 0.0).sum()

        # The mixture's log-likelihood log sum_j a_j p_j(y|x); a diverged head
        # is left out even before the switch has seen its loss.
        log_a = self._log_posterior_like(for_mixture)  # [H]
        usable = finite & torch.isfinite(log_a)  # [H]
        mixture_terms = self._per_sample_log_likelihood(for_mixture, y) + log_a  # [N, H]
        mixture_ll = torch.logsumexp(torch.where(usable, mixture_terms, -math.inf), dim=1)  # [N]
        mixture_loss = -mixture_ll.mean()

        self.last_head_losses = torch.where(finite, head_losses.detach(), math.inf)
        if self.training:
            self._pending_log_likelihoods = -self.last_head_losses
        # Value: the mixture loss. Gradient: mixture loss + every head's own loss.
        return mixture_loss + (head_loss_sum - head_loss_sum.detach())

    @torch.no_grad()
    def update_switch(self) -> None:
        """Feed the head log-likelihoods kept by the last :meth:`training_loss` to the switch.

        Call it once after each optimizer step. Raises ``RuntimeError`` if no
        training-mode :meth:`training_loss` ran since the last update.
        """
        if self._pending_log_likelihoods is None:
            raise RuntimeError(
                "update_switch() needs the head log-likelihoods of a training_loss() computed in "
                "training mode since the last update; call model.train() and training_loss(x, y) first"
            )
        self.switch.update(self._pending_log_likelihoods)
        self._pending_log_likelihoods = None


def _find_last_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    return last


def alraofy(
    model: nn.Module,
    *,
    n_heads: int = 10,
    eta_min: float = 1e-5,
    eta_max: float = 10.0,
    task: str = "classification",
    sigma2: float = 1.0,
    theta: float = 0.9999,
    generator: torch.Generator | None = None,
) -> AlraoModel:
    """Turn a network whose last layer is an ``nn.Linear`` into an :class:`AlraoModel`.

    The model is copied (the original is left as it is, and its weights are the
    copy's initial weights); in the copy the last ``nn.Linear`` in
    ``named_modules()`` order is replaced by ``nn.Identity``, and the rest
    becomes the pre-classifier. That layer must also be the last operation of
    ``forward``; if something follows it that changes the shape, the first
    forward raises an error with the two sizes. Works for torchvision's
    ResNet, MobileNetV2/V3, VGG, GoogLeNet (``aux_logits=False``), DenseNet,
    EfficientNet, ConvNeXt, ViT, RegNet, ShuffleNet and MNASNet.

    The heads are initialised afresh, independently of the replaced layer.
    Other arguments are those of :class:`AlraoModel`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"alraofy expects an nn.Module, got {type(model).__name__}")
    found = _find_last_linear(model)
    if found is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, so alraofy cannot find its classifier "
            "layer. Build the network up to its last layer yourself and pass it as "
            "AlraoModel(preclassifier, in_features=..., out_features=...)"
        )
    name, last = found
    if name == "":
        raise ValueError(
            "alraofy needs a network that contains a final nn.Linear, got a bare nn.Linear; "
            "use AlraoModel(nn.Identity(), in_features, out_features) for a linear model"
        )
    preclassifier = copy.deepcopy(model)
    parent_name, _, child_name = name.rpartition(".")
    parent = preclassifier.get_submodule(parent_name) if parent_name else preclassifier
    setattr(parent, child_name, nn.Identity())
    return AlraoModel(
        preclassifier,
        last.in_features,
        last.out_features,
        n_heads=n_heads,
        eta_min=eta_min,
        eta_max=eta_max,
        task=task,
        sigma2=sigma2,
        theta=theta,
        generator=generator,
    )
