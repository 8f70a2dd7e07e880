"""The classifier heads: ``n_heads`` copies of the last layer in one module.

Shapes used in this file:
    N: number of samples (all leading dimensions of the features, flattened)
    H: number of heads
    D: input features of the classifier layer (``in_features``)
    K: outputs of the classifier layer (classes, or regression targets)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Heads"]


class _SplitGradientProduct(torch.autograd.Function):
    """All heads' outputs from one matrix product, with Alrao's gradient routing.

    Forward computes ``Y = X W^T + b`` once for all heads (and, for
    classification, the log-softmax over K once) and returns it twice.
    Backward routes the gradient of the first copy only to ``X``, because the
    mixture loss trains the pre-classifier. It routes the gradient of the
    second copy only to ``W`` and ``b``, because each head trains on its own
    loss with the features treated as constants. That is the arithmetic of
    one linear layer, where two separate evaluations (one with ``X``
    detached, one with ``W`` detached) would cost a second forward product
    and a second log-softmax.

    A head that diverged is kept out of both gradients: its weights may hold
    inf or NaN, and ``0 * NaN`` would otherwise poison the pre-classifier.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, log_softmax: bool) -> tuple[Tensor, Tensor]:
        # x: [N, D], weight: [H, K, D], bias: [H, K]
        n_heads, n_out, n_in = weight.shape
        y = torch.addmm(bias.reshape(1, -1), x, weight.reshape(n_heads * n_out, n_in).t())  # [N, H*K]
        y = y.view(x.shape[0], n_heads, n_out)  # [N, H, K]
        if log_softmax:
            y = F.log_softmax(y, dim=-1)
        ctx.log_softmax = log_softmax
        ctx.save_for_backward(x, weight, y if log_softmax else None)
        # The second output is a view, not a copy, and autograd still gives each its own gradient.
        return y, y.view_as(y)

    @staticmethod
    def backward(ctx, grad_mixture: Tensor | None, grad_heads: Tensor | None):
        x, weight, log_probs = ctx.saved_tensors
        n_heads, n_out, n_in = weight.shape

        if ctx.log_softmax:
            # Backward of log-softmax over K: g - softmax * sum_K(g).
            probs = log_probs.exp()  # [N, H, K]
            if grad_mixture is not None:
                grad_mixture = torch.addcmul(grad_mixture, probs, grad_mixture.sum(-1, keepdim=True), value=-1)
            if grad_heads is not None:
                grad_heads = torch.addcmul(grad_heads, probs, grad_heads.sum(-1, keepdim=True), value=-1)

        grad_x = None
        if ctx.needs_input_grad[0] and grad_mixture is not None:
            grad_x = grad_mixture.reshape(-1, n_heads * n_out) @ weight.reshape(n_heads * n_out, n_in)
            # The sum is finite only if every entry is finite, and one
            # reduction is much cheaper than isfinite() on every entry. A sum
            # that overflows with finite entries only sends us to the exact
            # path below.
            if not torch.isfinite(grad_x.sum()):
                # Rare path: recompute without the heads whose weights or
                # incoming gradients are not finite.
                bad = ~(torch.isfinite(weight).all(dim=(1, 2)) & torch.isfinite(grad_mixture).all(dim=(0, 2)))
                safe_weight = torch.where(bad.view(n_heads, 1, 1), 0.0, weight)
                safe_grad = torch.where(bad.view(1, n_heads, 1), 0.0, grad_mixture)
                grad_x = safe_grad.reshape(-1, n_heads * n_out) @ safe_weight.reshape(n_heads * n_out, n_in)

        grad_weight = grad_bias = None
        if grad_heads is not None and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            flat = grad_heads.reshape(-1, n_heads * n_out)  # [N, H*K]
            grad_weight = (flat.t() @ x).view(n_heads, n_out, n_in)
            grad_bias = flat.sum(0).view(n_heads, n_out)
            # A non-finite entry of a head's incoming gradient shows up in its bias gradient.
            bad = ~torch.isfinite(grad_bias).all(dim=1)  # [H]
            if bad.any():
                grad_weight = torch.where(bad.view(n_heads, 1, 1), 0.0, grad_weight)
                grad_bias = torch.where(bad.view(n_heads, 1), 0.0, grad_bias)
        return grad_x, grad_weight, grad_bias, None


class Heads(nn.Module):
    """``n_heads`` independent copies of a linear classifier layer, batched.

    The weights of all heads live in one parameter ``weight`` of shape
    ``[n_heads, out_features, in_features]`` and the biases in ``bias``
    ``[n_heads, out_features]``, so all heads are evaluated with a single
    matrix product instead of a Python loop over ``nn.Linear`` modules.

    Each head is initialised independently as ``nn.Linear`` initialises
    itself: weight and bias uniform in ``(-1/sqrt(in), 1/sqrt(in))``.

    Args:
        in_features: size D of each input feature vector.
        out_features: number K of classes (classification) or targets (regression).
        n_heads: number H of copies.
        task: ``"classification"`` (outputs are log-probabilities, a
            log-softmax over K) or ``"regression"`` (outputs are means).
        generator: CPU generator for the initial weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_heads: int,
        task: str = "classification",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features), ("n_heads", n_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= 1")
        if task not in ("classification", "regression"):
            raise ValueError(f"Invalid task: {task!r}; expected 'classification' or 'regression'")
        self.in_features = in_features
        self.out_features = out_features
        self.n_heads = n_heads
        self.task = task

        bound = 1.0 / math.sqrt(in_features)
        weight = torch.empty(n_heads, out_features, in_features).uniform_(-bound, bound, generator=generator)
        bias = torch.empty(n_heads, out_features).uniform_(-bound, bound, generator=generator)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, n_heads={self.n_heads}, task={self.task!r}"

    def _finish(self, y: Tensor) -> Tensor:
        return F.log_softmax(y, dim=-1) if self.task == "classification" else y

    def forward(self, features: Tensor) -> Tensor:
        """Evaluate every head: ``[..., D] -> [..., H, K]``."""
        leading = features.shape[:-1]
        x = features.reshape(-1, self.in_features)  # [N, D]
        y = x @ self.weight.reshape(-1, self.in_features).t() + self.bias.reshape(-1)  # [N, H*K]
        return self._finish(y.view(*leading, self.n_heads, self.out_features))

    def forward_split(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Evaluate every head once, with two outputs for Alrao's two gradients.

        Args:
            features: ``[..., D]`` pre-classifier features.

        Returns:
            ``(for_mixture, for_heads)``, both ``[..., H, K]`` and equal in value.
            Gradients through ``for_mixture`` reach only ``features``; gradients
            through ``for_heads`` reach only ``weight`` and ``bias``.
        """
        leading = features.shape[:-1]
        x = features.reshape(-1, self.in_features)  # [N, D]
        y_mixture, y_heads = _SplitGradientProduct.apply(x, self.weight, self.bias, self.task == "classification")
        shape = (*leading, self.n_heads, self.out_features)
        return y_mixture.view(shape), y_heads.view(shape)
