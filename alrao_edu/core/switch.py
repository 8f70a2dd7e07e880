"""Switch model averaging over the classifier heads.

The switch (van Erven, Grünwald and de Rooij, "Catching up faster by switching
sooner", JRSS-B 2012) is a Bayesian mixture over *sequences* of models: the
best head may change during training, and the switch follows it faster than a
plain Bayesian mixture would. Alrao averages its heads with it.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

__all__ = ["Switch"]


class Switch(nn.Module):
    r"""Switch posterior over ``n_models`` predictors, updated once per training step.

    The state is two rows of log-weights over the N models: row 0 for switching
    sequences that may still switch, row 1 for sequences in their last segment.

    .. math::
        w_0 = \log\theta - \log N, \qquad w_1 = \log(1-\theta) - \log N, \qquad t = 1

    One call ``update(l)``, with :math:`l_j` the mean log-likelihood of model
    j on the training mini-batch of the step just taken:

    .. math::
        &w_r \leftarrow w_r + l \quad (r = 0, 1) \\
        &\pi_t = 1/(t+1), \qquad p = \operatorname{logsumexp}(w_0) + \log \pi_t \\
        &w_0 \leftarrow w_0 + \log(1 - \pi_t) \\
        &w_0 \leftarrow \operatorname{logaddexp}(w_0,\ \log\theta + p - \log N) \\
        &w_1 \leftarrow \operatorname{logaddexp}(w_1,\ \log(1-\theta) + p - \log N) \\
        &w \leftarrow w - \operatorname{logsumexp}(w) \\
        &\log a = \operatorname{logaddexp}(w_0, w_1), \qquad t \leftarrow t + 1

    ``a`` (``posterior``) sums to 1 and weights the models' predictions. This is
    the recursion of Alrao's reference code (hazard ``1/(t+1)``, ``theta =
    0.9999``, batch-mean log-likelihoods).

    Departure from that code: a model whose log-likelihood is not finite at a
    step (a diverged head) gets :math:`l_j = -\infty` *and* no share of the
    switching mass :math:`p` at that step, which is split among the models with
    a finite log-likelihood (``- log N_finite`` in place of ``- log N``). Its
    posterior is then exactly zero until a step where its log-likelihood is
    finite again. In the reference code a NaN raised an error and an infinite
    loss left the model a share of about ``1/(N (t+1))``. If no model has a
    finite log-likelihood, the state is left unchanged and a
    ``RuntimeWarning`` is issued.

    The state is kept in float64 on the CPU whatever ``.to()`` asks: it is
    ``2 * N`` numbers, float64 keeps long sums of log-likelihoods exact enough,
    and some accelerators (MPS) have no float64. ``t`` is saved in the
    ``state_dict`` as the buffer ``step``.

    Args:
        n_models: number N of models averaged (>= 1).
        theta: prior probability that a segment is not the last one, so
            that the sequence may switch again, in (0, 1). Near 0 almost all
            prior mass is on never switching, as in Bayesian model averaging.
            Default 0.9999.
    """

    def __init__(self, n_models: int, theta: float = 0.9999) -> None:
        super().__init__()
        if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
            raise ValueError(f"Invalid n_models: {n_models!r}; expected an integer >= 1")
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0.0 < theta < 1.0:
            raise ValueError(f"Invalid theta: {theta!r}; expected a number strictly between 0 and 1")
        self.n_models = n_models
        self.theta = float(theta)

        log_weights = torch.empty(2, n_models, dtype=torch.float64)
        log_weights[0] = math.log(self.theta) - math.log(n_models)
        log_weights[1] = math.log1p(-self.theta) - math.log(n_models)
        self.register_buffer("log_weights", log_weights)  # [2, N]
        self.register_buffer("step", torch.tensor(1, dtype=torch.int64))  # t, starts at 1

    def extra_repr(self) -> str:
        return f"n_models={self.n_models}, theta={self.theta}"

    def _apply(self, fn, recurse=True):
        # Keep the state on the CPU in float64 (see the class docstring).
        return self

    @property
    def log_posterior(self) -> Tensor:
        """Log of the posterior weights ``log a``, float64 ``[N]``."""
        return torch.logaddexp(self.log_weights[0], self.log_weights[1])

    @property
    def posterior(self) -> Tensor:
        """Posterior weights ``a``, float64 ``[N]``, summing to 1."""
        return self.log_posterior.exp()

    @torch.no_grad()
    def update(self, log_likelihoods: Tensor) -> None:
        """Advance the switch by one step with each model's mean log-likelihood ``[N]``."""
        ll = torch.as_tensor(log_likelihoods).detach().to("cpu", torch.float64)
        if ll.shape != (self.n_models,):
            raise ValueError(
                f"Invalid log_likelihoods shape {tuple(ll.shape)}; expected ({self.n_models},), "
                "one value per model"
            )
        finite = torch.isfinite(ll)
        n_finite = int(finite.sum())
        if n_finite == 0:
            warnings.warn(
                "Switch.update: no model has a finite log-likelihood; the switch state is left unchanged",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        ll = torch.where(finite, ll, -math.inf)

        t = int(self.step)
        switch_prob = 1.0 / (t + 1)
        w = self.log_weights + ll  # [2, N]
        pool = torch.logsumexp(w[0], dim=0) + math.log(switch_prob)
        share = pool - math.log(n_finite)
        no_share = torch.full_like(ll, -math.inf)
        row0 = torch.logaddexp(w[0] + math.log1p(-switch_prob), torch.where(finite, math.log(self.theta) + share, no_share))
        row1 = torch.logaddexp(w[1], torch.where(finite, math.log1p(-self.theta) + share, no_share))
        w = torch.stack([row0, row1])
        self.log_weights.copy_(w - torch.logsumexp(w.flatten(), dim=0))
        self.step += 1
