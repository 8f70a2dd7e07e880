"""Optimizers with one learning rate per feature: ``AlraoSGD`` and ``AlraoAdam``.

Both read the rates from an :class:`~alrao_edu.AlraoModel`: the per-feature
rates of its pre-classifier and the per-head rates of its heads. Each rate is
kept in the optimizer state of its parameter under the key ``"feature_lr"``
(at feature size, e.g. ``[out, 1, 1, 1]`` for a 2-D convolution weight), so
``state_dict()`` and ``load_state_dict()`` save and restore them.

Each parameter group's ``lr`` is a global multiplier (1.0 by default) applied
to every per-feature rate of the group, so any ``torch.optim.lr_scheduler``
scales all rates at once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .model import AlraoModel

__all__ = ["AlraoSGD", "AlraoAdam"]


def _check_nonnegative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"Invalid {name}: {value!r}; expected a finite number >= 0")


def _alrao_param_groups(model: AlraoModel) -> tuple[list[dict], list[tuple[torch.nn.Parameter, Tensor]]]:
    """Split an AlraoModel into the two parameter groups and pair each parameter with its rate."""
    if not isinstance(model, AlraoModel):
        raise TypeError(
            f"Alrao optimizers take an AlraoModel (see alrao_edu.alraofy), got {type(model).__name__}"
        )
    named = dict(model.preclassifier.named_parameters())
    pre_pairs = [(named[name], rate) for name, rate in model.feature_learning_rates.items()]
    n_heads = model.n_heads
    head_rates = model.head_learning_rates.detach().cpu()
    head_pairs = [
        (model.heads.weight, head_rates.view(n_heads, 1, 1)),  # [H, K, D] weight
        (model.heads.bias, head_rates.view(n_heads, 1)),  # [H, K] bias
    ]
    groups = [
        {"params": [p for p, _ in pre_pairs], "name": "preclassifier"},
        {"params": [p for p, _ in head_pairs], "name": "heads"},
    ]
    groups = [g for g in groups if g["params"]]
    return groups, pre_pairs + head_pairs


def _feature_lr(state: dict, param: Tensor) -> Tensor:
    rate = state["feature_lr"]
    if rate.device != param.device or rate.dtype != param.dtype:
        # The model moved after the optimizer was built.
        rate = rate.to(device=param.device, dtype=param.dtype)
        state["feature_lr"] = rate
    return rate


class AlraoSGD(torch.optim.Optimizer):
    r"""SGD with one learning rate per feature (Alrao's optimizer).

    For a parameter :math:`\theta` with per-feature rates :math:`\eta` (broadcast
    over each feature's incoming weights), group multiplier :math:`\gamma`
    (``lr``), momentum :math:`\mu`, dampening :math:`\tau`, weight decay
    :math:`\lambda`, and gradient :math:`g_t` at step t:

    .. math::
        &g_t \leftarrow g_t + \lambda \theta_{t-1}                     &\text{if } \lambda \neq 0 \\
        &b_t = g_t \text{ if } t = 1, \text{ else } \mu b_{t-1} + (1-\tau) g_t  &\text{if } \mu \neq 0 \\
        &g_t \leftarrow g_t + \mu b_t \text{ (Nesterov)}, \text{ else } g_t \leftarrow b_t  &\text{if } \mu \neq 0 \\
        &\theta_t = \theta_{t-1} - \gamma\, \eta \odot g_t

    This is ``torch.optim.SGD`` with the scalar rate replaced by the
    per-feature :math:`\eta`: with ``eta_min == eta_max == lr`` it takes the
    same steps as ``torch.optim.SGD(lr=lr)``.

    Alrao's paper uses plain SGD (no momentum). The authors' code applied
    momentum with a rate-dependent coefficient
    :math:`1 - \mu \min(\sqrt{\eta}, 1/\mu)`; this class does not: momentum
    here is the same for every feature, as in ``torch.optim.SGD``.

    Args:
        model: the :class:`~alrao_edu.AlraoModel` whose parameters and rates to use.
        lr: multiplier :math:`\gamma` of every rate, >= 0 (default 1.0).
        momentum, dampening, weight_decay, nesterov: as in ``torch.optim.SGD``.
    """

    def __init__(
        self,
        model: AlraoModel,
        *,
        lr: float = 1.0,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        _check_nonnegative("lr", lr)
        _check_nonnegative("momentum", momentum)
        _check_nonnegative("dampening", dampening)
        _check_nonnegative("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"Nesterov momentum requires momentum > 0 and dampening == 0, got momentum={momentum}, "
                f"dampening={dampening}"
            )
        groups, pairs = _alrao_param_groups(model)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(groups, defaults)
        for param, rate in pairs:
            self.state[param]["feature_lr"] = rate.to(device=param.device, dtype=param.dtype)

    @torch.no_grad()
    def step(self, closure=None):
        """Take one optimization step; ``closure`` re-evaluates the loss, as in ``torch.optim``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            multiplier, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                grad = param.grad
                if weight_decay != 0:
                    grad = grad.add(param, alpha=weight_decay)
                if momentum != 0:
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = torch.clone(grad).detach()
                        state["momentum_buffer"] = buffer
                    else:
                        buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
                    grad = grad.add(buffer, alpha=momentum) if nesterov else buffer
                param.addcmul_(grad, _feature_lr(state, param), value=-multiplier)
        return loss


class AlraoAdam(torch.optim.Optimizer):
    r"""Adam with one learning rate per feature.

    With per-feature rates :math:`\eta`, group multiplier :math:`\gamma`
    (``lr``), betas :math:`(\beta_1, \beta_2)`, :math:`\epsilon` and weight
    decay :math:`\lambda` (added to the gradient, as in ``torch.optim.Adam``):

    .. math::
        &g_t \leftarrow g_t + \lambda \theta_{t-1}  \qquad \text{if } \lambda \neq 0 \\
        &m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        &\hat m_t = m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t) \\
        &\theta_t = \theta_{t-1} - \gamma\, \eta \odot \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    With ``eta_min == eta_max == lr`` it takes the steps of
    ``torch.optim.Adam(lr=lr)``.

    Alrao on top of Adam comes from the authors' code. Blier et al. (2019)
    report it as less reliable than Alrao on SGD, so prefer
    :class:`AlraoSGD` unless you are comparing the two.

    Args:
        model: the :class:`~alrao_edu.AlraoModel` whose parameters and rates to use.
        lr: multiplier :math:`\gamma` of every rate, >= 0 (default 1.0).
        betas, eps, weight_decay: as in ``torch.optim.Adam``.
    """

    def __init__(
        self,
        model: AlraoModel,
        *,
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        _check_nonnegative("lr", lr)
        _check_nonnegative("eps", eps)
        _check_nonnegative("weight_decay", weight_decay)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid betas: {betas!r}; expected two numbers in [0, 1)")
        groups, pairs = _alrao_param_groups(model)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(groups, defaults)
        for param, rate in pairs:
            self.state[param]["feature_lr"] = rate.to(device=param.device, dtype=param.dtype)

    @torch.no_grad()
    def step(self, closure=None):
        """Take one optimization step; ``closure`` re-evaluates the loss, as in ``torch.optim``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            multiplier, (beta1, beta2) = group["lr"], group["betas"]
            eps, weight_decay = group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                grad = param.grad
                if weight_decay != 0:
                    grad = grad.add(param, alpha=weight_decay)
                if "step" not in state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step = state["step"].item()
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
                update = exp_avg * _feature_lr(state, param)
                param.addcdiv_(update, denom, value=-multiplier / bias_correction1)
        return loss
