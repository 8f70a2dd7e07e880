"""AlraoModel: the mixture output, the two gradients of training_loss, divergence, argument checks.

Shapes: B batch, D pre-classifier features, H heads, K classes or targets.
"""

import copy
import functools
import math
import re

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import alrao_edu as ae

pytestmark = pytest.mark.usefixtures("one_thread")

B, D, H, K = 16, 5, 3, 4


def _model(task: str = "classification", sigma2: float = 1.0, seed: int = 0) -> ae.AlraoModel:
    preclassifier = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, D), nn.Tanh())
    return ae.AlraoModel(
        preclassifier, D, K, n_heads=H, eta_min=1e-3, eta_max=1.0, task=task, sigma2=sigma2,
        generator=torch.Generator().manual_seed(seed),
    )


def _batch(task: str = "classification") -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(B, 6)
    y = torch.randint(0, K, (B,)) if task == "classification" else torch.randn(B, K)
    return x, y


def _make_posterior_uneven(model: ae.AlraoModel) -> None:
    for _ in range(3):
        model.switch.update(torch.tensor([-0.2, -1.5, -0.6]))


def _log_likelihood(outputs: torch.Tensor, y: torch.Tensor, task: str, sigma2: float) -> torch.Tensor:
    """Per-sample, per-head log-likelihood from head outputs ``[B, H, K]``, written out in the test."""
    if task == "classification":
        log_probs = F.log_softmax(outputs, dim=-1)
        return log_probs.gather(-1, y.view(-1, 1, 1).expand(-1, outputs.shape[1], 1)).squeeze(-1)  # [B, H]
    squared = (outputs - y.unsqueeze(1)).pow(2)  # [B, H, K]
    return -0.5 * (squared / sigma2 + math.log(2 * math.pi * sigma2)).sum(-1)  # [B, H]


def _reference(model: ae.AlraoModel, x, y, task: str, sigma2: float):
    """Alrao's gradients by two separate backward passes; returns (mixture loss, {parameter: gradient})."""
    pre_params = dict(model.preclassifier.named_parameters())
    weight, bias = model.heads.weight, model.heads.bias
    log_a = model.switch.log_posterior.float()  # [H]

    # (a) The mixture loss, backpropagated to the pre-classifier only.
    features = model.preclassifier(x)  # [B, D]
    outputs = torch.einsum("bd,hkd->bhk", features, weight) + bias  # [B, H, K]
    mixture_loss = -torch.logsumexp(_log_likelihood(outputs, y, task, sigma2) + log_a, dim=1).mean()
    pre_grads = torch.autograd.grad(mixture_loss, list(pre_params.values()))

    # (b) Each head's own loss on detached features, backpropagated to the heads only.
    outputs = torch.einsum("bd,hkd->bhk", features.detach(), weight) + bias  # [B, H, K]
    own_losses = -_log_likelihood(outputs, y, task, sigma2).mean(0)  # [H]
    weight_grad, bias_grad = torch.autograd.grad(own_losses.sum(), [weight, bias])

    grads = {f"preclassifier.{name}": g for name, g in zip(pre_params, pre_grads)}
    grads["heads.weight"], grads["heads.bias"] = weight_grad, bias_grad
    return mixture_loss.detach(), grads


GRADIENT_CASES = [
    pytest.param("classification", 1.0, id="classification"),
    pytest.param("regression", 0.3, id="regression-sigma2-0.3"),
]


@pytest.mark.parametrize(("task", "sigma2"), GRADIENT_CASES)
def test_gradients_match_two_passes(task, sigma2):
    model = _model(task, sigma2)
    _make_posterior_uneven(model)
    x, y = _batch(task)
    _, expected = _reference(model, x, y, task, sigma2)
    model.training_loss(x, y).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], msg=name)


@pytest.mark.parametrize(("task", "sigma2"), GRADIENT_CASES)
def test_loss_is_mixture_nll(task, sigma2):
    model = _model(task, sigma2)
    _make_posterior_uneven(model)
    x, y = _batch(task)
    expected, _ = _reference(model, x, y, task, sigma2)
    torch.testing.assert_close(model.training_loss(x, y).detach(), expected)


def test_posterior_made_uneven():
    # Precondition of the gradient tests: the mixture weights really differ.
    model = _model()
    _make_posterior_uneven(model)
    assert model.switch.posterior.max() - model.switch.posterior.min() > 0.4


def test_heads_get_own_gradients():
    # Head j's gradient must not depend on the mixture weights: compare two posteriors.
    x, y = _batch()
    first = _model()
    second = copy.deepcopy(first)
    _make_posterior_uneven(second)
    first.training_loss(x, y).backward()
    second.training_loss(x, y).backward()
    torch.testing.assert_close(first.heads.weight.grad, second.heads.weight.grad)


def test_forward_is_mixture_log_probs():
    model = _model()
    _make_posterior_uneven(model)
    x, _ = _batch()
    head_log_probs = model.head_outputs(x)  # [B, H, K]
    expected = torch.logsumexp(head_log_probs + model.switch.log_posterior.float().view(1, H, 1), dim=1)
    torch.testing.assert_close(model(x), expected)


def test_forward_probabilities_sum_to_one():
    model = _model()
    _make_posterior_uneven(model)
    x, _ = _batch()
    torch.testing.assert_close(model(x).exp().sum(-1), torch.ones(B))


def test_regression_forward_is_mixture_mean():
    model = _model("regression", 0.3)
    _make_posterior_uneven(model)
    x, _ = _batch("regression")
    means = model.head_outputs(x)  # [B, H, K]
    expected = (model.switch.posterior.float().view(1, H, 1) * means).sum(1)
    torch.testing.assert_close(model(x), expected)


def test_head_rates_log_spaced():
    rates = ae.head_learning_rates(5, 1e-4, 1.0)
    torch.testing.assert_close(rates, torch.tensor([1e-4, 1e-3, 1e-2, 1e-1, 1.0]))


def test_head_rates_exact_ends():
    rates = ae.head_learning_rates(7, 1e-5, 10.0)
    assert rates[0].item() == torch.tensor(1e-5).item()
    assert rates[-1].item() == 10.0


def test_one_head_gets_eta_min():
    assert ae.head_learning_rates(1, 1e-3, 1.0).tolist() == [torch.tensor(1e-3).item()]


def test_model_state_dict_has_rates():
    model = _model(seed=0)
    other = _model(seed=1)
    other.load_state_dict(model.state_dict())
    for name, rate in model.feature_learning_rates.items():
        assert torch.equal(other.feature_learning_rates[name], rate), name


def test_eval_loss_does_not_update_switch():
    model = _model()
    model.eval()
    model.training_loss(*_batch())
    message = "update_switch() needs the head log-likelihoods of a training_loss() computed in training mode"
    with pytest.raises(RuntimeError, match=re.escape(message)):
        model.update_switch()


def test_eval_forward_keeps_switch():
    model = _model()
    model.eval()
    before = model.switch.log_weights.clone()
    model(_batch()[0])
    model.training_loss(*_batch())
    assert torch.equal(model.switch.log_weights, before)


def test_update_switch_needs_new_loss():
    model = _model()
    model.training_loss(*_batch())
    model.update_switch()
    with pytest.raises(RuntimeError, match=re.escape("call model.train() and training_loss(x, y) first")):
        model.update_switch()


def test_update_switch_feeds_head_means():
    model = _model()
    x, y = _batch()
    model.training_loss(x, y)
    log_likelihoods = -model.last_head_losses.double()
    expected = ae.Switch(H)
    expected.update(log_likelihoods)
    model.update_switch()
    torch.testing.assert_close(model.switch.log_weights, expected.log_weights)


def test_nan_head_left_out_of_gradients():
    model = _model()
    _make_posterior_uneven(model)
    with torch.no_grad():
        model.heads.weight[2] = math.nan
    x, y = _batch()
    model.training_loss(x, y).backward()

    # Reference: the same mixture over the two sane heads, each with its own log a_j.
    healthy = copy.deepcopy(model)
    healthy.zero_grad()
    weight, bias = healthy.heads.weight[:2], healthy.heads.bias[:2]
    features = healthy.preclassifier(x)  # [B, D]
    outputs = torch.einsum("bd,hkd->bhk", features, weight) + bias  # [B, 2, K]
    log_a = healthy.switch.log_posterior.float()[:2]
    mixture = -torch.logsumexp(_log_likelihood(outputs, y, "classification", 1.0) + log_a, dim=1).mean()
    expected = torch.autograd.grad(mixture, list(healthy.preclassifier.parameters()))
    for (name, param), grad in zip(model.preclassifier.named_parameters(), expected):
        torch.testing.assert_close(param.grad, grad, msg=name)


def test_nan_head_gets_zero_gradient():
    model = _model()
    with torch.no_grad():
        model.heads.weight[2] = math.nan
    model.training_loss(*_batch()).backward()
    assert torch.equal(model.heads.weight.grad[2], torch.zeros(K, D))


def test_overflowing_gradient_sum_still_exact():
    # Every entry of grad_x is finite but their sum overflows float32: the
    # cheap finiteness check sends it to the exact path, which must agree.
    heads = ae.Heads(4, 1, 1, task="regression")
    with torch.no_grad():
        heads.weight.fill_(3e38)
        heads.bias.zero_()
    features = torch.ones(1, 4, requires_grad=True)
    for_mixture, _ = heads.forward_split(features)
    for_mixture.backward(torch.ones(1, 1, 1))
    assert torch.equal(features.grad, torch.full((1, 4), 3e38))


# A head with an absurd learning rate on a small real task (scikit-learn's digits).
DIVERGING_RATE = 1e6
N_STEPS = 50


def _digits(n: int = 320) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_digits(return_X_y=True)
    return torch.tensor(images[:n] / 16.0, dtype=torch.float32), torch.tensor(labels[:n])


@functools.cache
def _train_with_absurd_head(task: str):
    """Train 50 steps with 3 heads, the last one at rate 1e6; return the model, inputs, targets, last loss.

    For regression the targets are the one-hot labels.
    """
    torch.manual_seed(0)
    x, labels = _digits()
    y = labels if task == "classification" else F.one_hot(labels, 10).float()
    preclassifier = nn.Sequential(nn.Linear(64, 32), nn.Tanh())
    model = ae.AlraoModel(
        preclassifier, 32, 10, n_heads=3, eta_min=0.01, eta_max=0.1, task=task,
        generator=torch.Generator().manual_seed(0),
    )
    # The optimizer reads the heads' rates when it is built.
    model.head_learning_rates[-1] = DIVERGING_RATE
    optimizer = ae.AlraoSGD(model)
    for step in range(N_STEPS):
        index = torch.arange(step * 32, step * 32 + 32) % x.shape[0]
        optimizer.zero_grad()
        loss = model.training_loss(x[index], y[index])
        loss.backward()
        optimizer.step()
        model.update_switch()
    return model, x, y, loss.detach()


@pytest.fixture(scope="module", params=["classification", "regression"])
def diverged_run(request):
    return _train_with_absurd_head(request.param)


@pytest.fixture(scope="module")
def diverged_classifier():
    return _train_with_absurd_head("classification")


@pytest.fixture(scope="module")
def diverged_regressor():
    return _train_with_absurd_head("regression")


@pytest.mark.slow
def test_absurd_head_diverges(diverged_run):
    model, *_ = diverged_run
    last_loss = model.last_head_losses[-1].item()
    assert not math.isfinite(last_loss) or last_loss > 1e3


@pytest.mark.slow
def test_mixture_finite_despite_divergence(diverged_run):
    model, x, _, _ = diverged_run
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


@pytest.mark.slow
def test_training_loss_finite_despite_divergence(diverged_run):
    _, _, _, loss = diverged_run
    assert math.isfinite(loss.item())


@pytest.mark.slow
def test_preclassifier_grads_finite_despite_divergence(diverged_run):
    model, x, y, _ = diverged_run
    model.zero_grad()
    model.training_loss(x[:32], y[:32]).backward()
    for name, param in model.preclassifier.named_parameters():
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.slow
def test_other_heads_stay_sane(diverged_run):
    model, *_ = diverged_run
    assert model.last_head_losses[:2].max().item() < 20.0


@pytest.mark.slow
def test_nonfinite_head_posterior_vanishes(diverged_regressor):
    # With squared errors the head's loss overflows to inf, so the switch
    # gives it no weight at all.
    model, *_ = diverged_regressor
    assert model.switch.posterior[-1].item() < 1e-6


@pytest.mark.slow
def test_finite_diverged_head_at_switch_floor(diverged_classifier):
    # Cross-entropy keeps the diverged head's loss finite (about 1e4 nats).
    # Its own likelihood mass is then about exp(-1e4) = 0, but the switch
    # hands every model a share 1/(N (t+1)) of the mass at each step t,
    # so its posterior sits at that floor instead of below 1e-6.
    model, *_ = diverged_classifier
    last_t = int(model.switch.step) - 1
    floor = 1.0 / (model.n_heads * (last_t + 1))
    assert model.switch.posterior[-1].item() <= floor * (1 + 1e-9)


@pytest.mark.slow
def test_good_heads_outweigh_diverged(diverged_classifier):
    model, *_ = diverged_classifier
    assert model.switch.posterior[:2].min().item() > 50 * model.switch.posterior[-1].item()


def _alrao_model(**kwargs):
    return ae.AlraoModel(nn.Linear(4, 3), 3, 2, **kwargs)


def _alraofy(**kwargs):
    return ae.alraofy(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), **kwargs)


ARGUMENT_ERRORS = [
    pytest.param(dict(eta_min=0), "Invalid eta_min: 0; expected a finite number > 0", id="eta-min-zero"),
    pytest.param(dict(eta_min=-1.0), "Invalid eta_min: -1.0; expected a finite number > 0", id="eta-min-negative"),
    pytest.param(
        dict(eta_min=1.0, eta_max=0.1),
        "Invalid learning-rate interval: eta_min=1.0 > eta_max=0.1; expected eta_min <= eta_max",
        id="eta-min-above-max",
    ),
    pytest.param(dict(n_heads=0), "Invalid n_heads: 0; expected an integer >= 1", id="heads-0"),
    pytest.param(dict(n_heads=-1), "Invalid n_heads: -1; expected an integer >= 1", id="heads-negative"),
    pytest.param(dict(n_heads=2.5), "Invalid n_heads: 2.5; expected an integer >= 1", id="heads-fraction"),
    pytest.param(dict(theta=0.0), "Invalid theta: 0.0; expected a number strictly between 0 and 1", id="theta-0"),
    pytest.param(dict(theta=1.0), "Invalid theta: 1.0; expected a number strictly between 0 and 1", id="theta-1"),
    pytest.param(
        dict(task="ranking"), "Invalid task: 'ranking'; expected one of 'classification', 'regression'", id="task"
    ),
    pytest.param(dict(sigma2=0.0), "Invalid sigma2: 0.0; expected a finite number > 0", id="sigma2-zero"),
    pytest.param(dict(sigma2=-1.0), "Invalid sigma2: -1.0; expected a finite number > 0", id="sigma2-negative"),
]


@pytest.mark.parametrize("build", [_alrao_model, _alraofy], ids=["AlraoModel", "alraofy"])
@pytest.mark.parametrize(("kwargs", "message"), ARGUMENT_ERRORS)
def test_rejects_argument(build, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build(**kwargs)


def test_rejects_plain_preclassifier_object():
    with pytest.raises(TypeError, match="preclassifier must be an nn.Module, got builtin_function_or_method"):
        ae.AlraoModel(torch.tanh, 3, 2)


def test_feature_size_mismatch_at_forward():
    model = ae.AlraoModel(nn.Linear(4, 7), 5, 2)
    message = "The preclassifier output has shape (2, 7), so 7 features, but the heads expect in_features=5"
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.randn(2, 4))


def test_feature_size_mismatch_in_training_loss():
    model = ae.AlraoModel(nn.Linear(4, 7), 5, 2)
    with pytest.raises(ValueError, match=re.escape("so 7 features, but the heads expect in_features=5")):
        model.training_loss(torch.randn(2, 4), torch.tensor([0, 1]))


def test_rejects_float_class_targets():
    model = _model()
    with pytest.raises(ValueError, match=re.escape("Classification targets must be class indices")):
        model.training_loss(torch.randn(B, 6), torch.zeros(B))


def test_rejects_target_count():
    model = _model()
    with pytest.raises(ValueError, match=re.escape(f"Got {B - 1} targets for {B} samples")):
        model.training_loss(torch.randn(B, 6), torch.zeros(B - 1, dtype=torch.long))


def test_rejects_regression_target_size():
    model = _model("regression")
    message = f"Regression targets must hold out_features={K} values per sample ({B} samples)"
    with pytest.raises(ValueError, match=re.escape(message)):
        model.training_loss(torch.randn(B, 6), torch.randn(B, K + 1))
