"""Per-feature learning rates: log-uniform sampling and the feature rules.

Alrao gives every *feature* of the pre-classifier one learning rate, drawn once
at the start with ``log eta ~ U(log eta_min, log eta_max)``. All incoming
parameters of a feature (the weights that compute it and its bias) share that
rate. This module decides, for each layer type, what a feature is and returns a
rate tensor that broadcasts against each parameter.

Rate tensors are stored at feature size (shape ``[out, 1]`` for a linear
weight, ``[out, 1, 1, 1]`` for a 2-D convolution weight), never as a copy of
the parameter. A bias rate is a view of the same storage as its weight rate.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["log_uniform", "feature_learning_rates", "validate_interval"]


def validate_interval(eta_min: float, eta_max: float) -> None:
    """Raise ``ValueError`` unless ``0 < eta_min <= eta_max < inf``."""
    for name, value in (("eta_min", eta_min), ("eta_max", eta_max)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Invalid {name}: {value!r}; expected a positive number")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"Invalid {name}: {value}; expected a finite number > 0")
    if eta_min > eta_max:
        raise ValueError(
            f"Invalid learning-rate interval: eta_min={eta_min} > eta_max={eta_max}; "
            "expected eta_min <= eta_max"
        )


def log_uniform(
    shape: int | tuple[int, ...] | torch.Size,
    eta_min: float,
    eta_max: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw learning rates with ``log eta ~ U(log eta_min, log eta_max)``.

    Sampling happens on the CPU in float64 and the result is float32, so the
    same generator seed gives the same rates whatever device the model is on.
    With ``eta_min == eta_max`` every rate is exactly ``eta_min``, which is what
    makes Alrao's optimizer reduce to plain SGD.

    Args:
        shape: shape of the returned tensor.
        eta_min, eta_max: ends of the interval, ``0 < eta_min <= eta_max``.
        generator: a CPU ``torch.Generator`` for reproducible draws.

    Returns:
        A float32 CPU tensor of the given shape.
    """
    validate_interval(eta_min, eta_max)
    if isinstance(shape, int):
        shape = (shape,)
    if eta_min == eta_max:
        return torch.full(tuple(shape), float(eta_min), dtype=torch.float32)

    u = torch.rand(tuple(shape), generator=generator, dtype=torch.float64)
    log_min, log_max = math.log(eta_min), math.log(eta_max)
    rates = torch.exp(log_min + u * (log_max - log_min))
    # exp(log(x)) can land one ulp outside the interval; clamp keeps the contract.
    return rates.clamp_(eta_min, eta_max).to(torch.float32)


# A rule maps (module, its direct trainable parameters, a draw function) to
# {local parameter name: rate tensor}. ``draw(n)`` returns n fresh rates.
Draw = Callable[[int], Tensor]
Rule = Callable[[nn.Module, dict[str, nn.Parameter], Draw], dict[str, Tensor]]


def _rows_rule(weight_name: str = "weight", bias_name: str = "bias") -> Rule:
    """Return a rule for layers whose features are the rows (dim 0) of the weight.

    Covers ``nn.Linear`` (weight ``[out, in]``) and ``nn.Conv1d/2d/3d`` (weight
    ``[out, in/groups, *kernel]``, grouped and depthwise included, since each
    output channel is still one row).
    """

    def rule(module: nn.Module, params: dict[str, nn.Parameter], draw: Draw) -> dict[str, Tensor]:
        weight = params.get(weight_name, getattr(module, weight_name))
        n_out = weight.shape[0]
        rates = draw(n_out)  # [out]
        result = {}
        if weight_name in params:
            result[weight_name] = rates.view(n_out, *([1] * (weight.dim() - 1)))
        if bias_name in params:
            result[bias_name] = rates.view(n_out)
        return result

    return rule


def _conv_transpose_rule(
    module: nn.Module, params: dict[str, nn.Parameter], draw: Draw
) -> dict[str, Tensor]:
    """Features of a transposed convolution are its output channels.

    Its weight is ``[in, out/groups, *kernel]``: output channel ``c`` of group
    ``g`` is column ``c - g * out/groups`` of the rows of group ``g``. With one
    group the rate is ``[1, out, 1, ...]``; with several groups it is expanded
    to ``[in, out/groups, 1, ...]`` so that each row sees its group's channels.
    """
    out_channels, groups = module.out_channels, module.groups
    rates = draw(out_channels)  # [out]
    result = {}
    if "weight" in params:
        weight = params["weight"]
        kernel_ones = [1] * (weight.dim() - 2)
        if groups == 1:
            result["weight"] = rates.view(1, out_channels, *kernel_ones)
        else:
            in_per_group = weight.shape[0] // groups
            per_group = rates.view(groups, 1, out_channels // groups)
            expanded = per_group.expand(groups, in_per_group, out_channels // groups)
            result["weight"] = expanded.reshape(weight.shape[0], out_channels // groups, *kernel_ones)
    if "bias" in params:
        result["bias"] = rates
    return result


def _elementwise_rule(module: nn.Module, params: dict[str, nn.Parameter], draw: Draw) -> dict[str, Tensor]:
    """Normalisation layers: each channel (each element of ``weight``) is a feature.

    BatchNorm, GroupNorm and InstanceNorm have weight and bias ``[C]``;
    LayerNorm has ``normalized_shape``, so every element there is a feature.
    """
    reference = params.get("weight", params.get("bias"))
    rates = draw(reference.numel()).view(reference.shape)
    return {name: rates for name in ("weight", "bias") if name in params}


def _embedding_rule(module: nn.Module, params: dict[str, nn.Parameter], draw: Draw) -> dict[str, Tensor]:
    """Embeddings: a feature is one embedding dimension, a column of ``[num, dim]``."""
    weight = params["weight"]
    return {"weight": draw(weight.shape[1]).view(1, weight.shape[1])}


def _recurrent_rule(module: nn.Module, params: dict[str, nn.Parameter], draw: Draw) -> dict[str, Tensor]:
    """RNN, LSTM and GRU: a feature is one hidden unit of one layer and direction.

    ``weight_ih_l{k}`` is ``[G*H, in]`` and ``weight_hh_l{k}`` is ``[G*H, H]``
    with G gates (1 for RNN, 4 for LSTM, 3 for GRU) stacked along dim 0. Unit
    ``u`` owns rows ``u, H + u, ..., (G-1)*H + u`` of both weights and both
    biases, and all of them share the unit's rate. An LSTM with ``proj_size``
    adds ``weight_hr_l{k}`` ``[P, H]`` whose rows are P more features.
    """
    hidden = module.hidden_size
    gates = module.weight_ih_l0.shape[0] // hidden
    result = {}
    suffixes = ["_reverse"] if module.bidirectional else []
    for layer in range(module.num_layers):
        for suffix in [""] + suffixes:
            tag = f"_l{layer}{suffix}"
            unit_rates = draw(hidden)  # [H]
            gate_rates = unit_rates.repeat(gates)  # [G*H], row r has unit r % H
            for kind in ("weight_ih", "weight_hh"):
                if kind + tag in params:
                    result[kind + tag] = gate_rates.view(gates * hidden, 1)
            for kind in ("bias_ih", "bias_hh"):
                if kind + tag in params:
                    result[kind + tag] = gate_rates
            if "weight_hr" + tag in params:
                n_proj = params["weight_hr" + tag].shape[0]
                result["weight_hr" + tag] = draw(n_proj).view(n_proj, 1)
    return result


def _fallback_rule(module: nn.Module, params: dict[str, nn.Parameter], draw: Draw) -> dict[str, Tensor]:
    """Give each slice along dim 0 of each parameter one rate (a scalar gets one rate)."""
    result = {}
    for name, param in params.items():
        if param.dim() == 0:
            result[name] = draw(1).view(())
        else:
            result[name] = draw(param.shape[0]).view(param.shape[0], *([1] * (param.dim() - 1)))
    return result


# Order matters: the first matching base class wins.
_RULES: list[tuple[tuple[type, ...], Rule]] = [
    ((nn.Linear, nn.Bilinear), _rows_rule()),
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), _rows_rule()),
    ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _conv_transpose_rule),
    ((nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm), _elementwise_rule),
    ((nn.Embedding, nn.EmbeddingBag), _embedding_rule),
    ((nn.RNNBase,), _recurrent_rule),
]


def _rule_for(module: nn.Module) -> Rule | None:
    for types, rule in _RULES:
        if isinstance(module, types):
            return rule
    return None


def _direct_trainable_parameters(module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    for name, param in module.named_parameters(recurse=False):
        if param.requires_grad:
            yield name, param


def feature_learning_rates(
    module: nn.Module,
    eta_min: float,
    eta_max: float,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Draw one learning rate per feature of ``module`` and map it to its parameters.

    Feature rules, by layer type:

    * ``nn.Linear``, ``nn.Bilinear``: a unit, i.e. a row of the weight and its bias entry.
    * ``nn.Conv1d/2d/3d``: a filter (output channel), grouped and depthwise included.
    * ``nn.ConvTranspose1d/2d/3d``: an output channel (dim 1 of the weight).
    * BatchNorm, InstanceNorm, GroupNorm, LayerNorm: a channel (an element of the affine weight).
    * ``nn.Embedding``, ``nn.EmbeddingBag``: an embedding dimension (a column).
    * ``nn.RNN``, ``nn.LSTM``, ``nn.GRU``: a hidden unit of each layer and
      direction; its rows in every gate of ``weight_ih``, ``weight_hh``,
      ``bias_ih`` and ``bias_hh`` share one rate.
    * Any other module with parameters: one rate per slice along dim 0, reported
      once per module type by a ``UserWarning``.

    Parameters with ``requires_grad=False`` are left out. A parameter shared by
    several modules (tied weights) appears once, under its first name in
    ``module.named_parameters()``, with the rule of the first module that owns it.

    Returns:
        ``{parameter name as in module.named_parameters(): rate tensor}``, each
        rate a float32 CPU tensor that broadcasts against its parameter.
    """
    validate_interval(eta_min, eta_max)

    def draw(n: int) -> Tensor:
        return log_uniform(n, eta_min, eta_max, generator=generator)

    rates: dict[str, Tensor] = {}
    seen: set[int] = set()
    warned_types: set[type] = set()
    for prefix, submodule in module.named_modules():
        params = {
            name: param
            for name, param in _direct_trainable_parameters(submodule)
            if id(param) not in seen
        }
        if not params:
            continue
        seen.update(id(param) for param in params.values())

        rule = _rule_for(submodule)
        if rule is None:
            rule = _fallback_rule
            if type(submodule) not in warned_types:
                warned_types.add(type(submodule))
                warnings.warn(
                    f"alrao_edu has no feature rule for module type {type(submodule).__name__}; "
                    "its parameters get one learning rate per slice along dim 0",
                    UserWarning,
                    stacklevel=2,
                )
        local_rates = rule(submodule, params, draw)
        for name, rate in local_rates.items():
            rates[f"{prefix}.{name}" if prefix else name] = rate
    return rates
