"""Alrao for regression: Gaussian heads, the mixture mean, the curve data set and its runs."""

import copy
import math
import re

import pytest
import torch
from torch import nn

import alrao_edu as ae
from alrao_edu.training import Comparison, MethodSpec, Run, build_model, load_dataset
from alrao_edu.views import figures

LOG_2PI = math.log(2 * math.pi)


def _network(n_in: int = 3, n_out: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, n_out))


def _regression_alrao(n_heads: int = 4, sigma2: float = 1.0, n_out: int = 1) -> ae.AlraoModel:
    generator = torch.Generator().manual_seed(0)
    return ae.alraofy(
        _network(n_out=n_out), n_heads=n_heads, eta_min=1e-3, eta_max=1.0, task="regression", sigma2=sigma2,
        generator=generator,
    )


def _skewed_switch(model: ae.AlraoModel) -> None:
    """Give the switch an uneven posterior by feeding it made-up log-likelihoods."""
    for step in range(3):
        model.switch.update(-torch.arange(model.n_heads, dtype=torch.float32) * (step + 1) * 0.3)


@pytest.mark.parametrize("sigma2", [1.0, 0.25])
def test_one_head_matches_sgd(sigma2):
    lr = 0.05
    torch.manual_seed(1)
    network = _network()
    alrao = ae.alraofy(network, n_heads=1, eta_min=lr, eta_max=lr, task="regression", sigma2=sigma2)
    optimizer = ae.AlraoSGD(alrao)

    # The oracle: the same network, with the head's initial weights, under torch.optim.SGD on the
    # Gaussian negative log-likelihood written out, MSE / (2 sigma2) + log(2 pi sigma2) / 2.
    oracle = copy.deepcopy(network)
    with torch.no_grad():
        oracle[-1].weight.copy_(alrao.heads.weight[0])
        oracle[-1].bias.copy_(alrao.heads.bias[0])
    oracle_optimizer = torch.optim.SGD(oracle.parameters(), lr=lr)

    for step in range(10):
        x = torch.randn(16, 3)
        y = torch.randn(16, 1)

        optimizer.zero_grad()
        loss = alrao.training_loss(x, y)
        loss.backward()
        optimizer.step()
        alrao.update_switch()

        oracle_optimizer.zero_grad()
        oracle_loss = (oracle(x) - y).pow(2).mean() / (2 * sigma2) + 0.5 * (LOG_2PI + math.log(sigma2))
        oracle_loss.backward()
        oracle_optimizer.step()

        torch.testing.assert_close(loss, oracle_loss, msg=f"loss at step {step + 1}")
        for (name, param), oracle_param in zip(alrao.preclassifier.named_parameters(), oracle.parameters()):
            torch.testing.assert_close(param, oracle_param, msg=f"{name} after step {step + 1}")
        torch.testing.assert_close(alrao.heads.weight[0], oracle[-1].weight, msg=f"head weight after step {step + 1}")
        torch.testing.assert_close(alrao.heads.bias[0], oracle[-1].bias, msg=f"head bias after step {step + 1}")

    with torch.no_grad():
        x = torch.randn(5, 3)
        torch.testing.assert_close(alrao(x), oracle(x))


def test_output_is_posterior_weighted_mean():
    model = _regression_alrao(n_out=2)
    _skewed_switch(model)
    x = torch.randn(7, 3)

    means = model.head_outputs(x)  # [B, H, K]
    posterior = model.switch.posterior.float()
    expected = (posterior.view(1, -1, 1) * means).sum(1)

    assert not torch.allclose(posterior, torch.full_like(posterior, 1 / model.n_heads))
    assert model(x).shape == (7, 2)
    torch.testing.assert_close(model(x), expected)


def test_preclassifier_trains_on_mixture_nll():
    sigma2 = 0.5
    model = _regression_alrao(sigma2=sigma2, n_out=2)
    _skewed_switch(model)
    x, y = torch.randn(9, 3), torch.randn(9, 2)

    loss = model.training_loss(x, y)
    loss.backward()
    alrao_grads = {name: p.grad.clone() for name, p in model.preclassifier.named_parameters()}

    # The mixture's negative log-likelihood, -log sum_j a_j N(y; mu_j(x), sigma2 I), written out.
    model.zero_grad()
    means = model.heads(model.preclassifier(x))  # [B, H, K]
    log_density = -0.5 * ((y.unsqueeze(1) - means).pow(2) / sigma2 + LOG_2PI + math.log(sigma2)).sum(-1)  # [B, H]
    mixture_nll = -torch.logsumexp(log_density + model.switch.log_posterior.float(), dim=1).mean()
    mixture_nll.backward()

    torch.testing.assert_close(loss.detach(), mixture_nll.detach())
    for name, param in model.preclassifier.named_parameters():
        torch.testing.assert_close(alrao_grads[name], param.grad, msg=name)


def test_heads_train_on_their_own_nll():
    sigma2 = 2.0
    model = _regression_alrao(sigma2=sigma2)
    _skewed_switch(model)
    x, y = torch.randn(9, 3), torch.randn(9, 1)

    model.training_loss(x, y).backward()

    features = model.preclassifier(x).detach()
    weight = model.heads.weight.detach().clone().requires_grad_()
    bias = model.heads.bias.detach().clone().requires_grad_()
    means = torch.einsum("bd,hkd->bhk", features, weight) + bias  # [B, H, K]
    # Each head's own mean NLL, summed over heads: head j's gradient comes from its term only.
    own_nll = (0.5 * ((y.unsqueeze(1) - means).pow(2) / sigma2 + LOG_2PI + math.log(sigma2))).sum(-1).mean(0)  # [H]
    own_nll.sum().backward()

    torch.testing.assert_close(model.heads.weight.grad, weight.grad)
    torch.testing.assert_close(model.heads.bias.grad, bias.grad)


def test_switch_gets_mean_log_likelihoods():
    sigma2 = 0.5
    model = _regression_alrao(sigma2=sigma2)
    x, y = torch.randn(12, 3), torch.randn(12, 1)
    before = model.switch.log_posterior.clone()

    with torch.no_grad():
        means = model.head_outputs(x)  # [B, H, 1]
    expected = (-0.5 * ((y.unsqueeze(1) - means).pow(2) / sigma2 + LOG_2PI + math.log(sigma2))).sum(-1).mean(0)

    model.training_loss(x, y)
    torch.testing.assert_close(-model.last_head_losses, expected)

    reference = ae.Switch(model.n_heads)
    reference.update(expected)
    model.update_switch()
    assert not torch.equal(model.switch.log_posterior, before)
    torch.testing.assert_close(model.switch.log_posterior, reference.log_posterior)


@pytest.mark.parametrize("sigma2", [0, -1.0, math.nan, math.inf, "1", True, None])
def test_bad_sigma2_rejected(sigma2):
    expected = rf"Invalid sigma2: {re.escape(repr(sigma2))}; expected a finite number > 0"
    with pytest.raises(ValueError, match=expected):
        ae.AlraoModel(nn.Identity(), 3, 1, task="regression", sigma2=sigma2)
    with pytest.raises(ValueError, match=expected):
        ae.alraofy(_network(), task="regression", sigma2=sigma2)
    dataset = load_dataset("curve", n_train=20, n_test=10)
    with pytest.raises(ValueError, match=expected):
        Run(MethodSpec("sgd", lr=0.1), _network(n_in=1), dataset, sigma2=sigma2, device="cpu")


def test_curve_dataset_and_sine_alias():
    curve = load_dataset("curve")
    sine = load_dataset("sine")

    assert curve.name == "curve"
    assert curve.task == "regression"
    assert curve.n_outputs == 1
    assert curve.train_x.shape == (1000, 1)
    assert curve.test_y.shape == (500, 1)
    assert sine.name == "curve"
    torch.testing.assert_close(sine.train_y, curve.train_y)
    assert "sine" not in ae.training.dataset_names()


def test_curve_runs_record_mse_and_nll():
    dataset = load_dataset("curve", n_train=400, n_test=200)
    specs = [MethodSpec("alrao", eta_min=1e-4, eta_max=1.0, n_heads=5), MethodSpec("sgd", lr=0.05), MethodSpec("adam")]
    comparison = Comparison(
        specs, lambda seed: build_model("mlp", (1,), 1, seed=seed), dataset, epochs=4, device="cpu", sigma2=1.0
    )
    comparison.train()

    for record in comparison.records:
        assert record.diverged_at is None, record.label
        assert len(record.test_mse) == 4, record.label
        assert len(record.test_loss) == 4, record.label
        assert record.test_accuracy == [], record.label
    for record in comparison.records[1:]:
        # A baseline's NLL is that of N(prediction, 1) at each test point: MSE / 2 + log(2 pi) / 2.
        for mse, nll in zip(record.test_mse, record.test_loss):
            assert nll == pytest.approx(mse / 2 + LOG_2PI / 2, rel=1e-5), record.label

    # Alrao's NLL is that of its mixture of Gaussians, computed here from the final heads and switch.
    alrao_run = comparison.runs[0]
    with torch.no_grad():
        means = alrao_run.model.head_outputs(dataset.test_x)  # [N, H, 1]
        log_density = -0.5 * ((dataset.test_y.unsqueeze(1) - means).pow(2) + LOG_2PI).sum(-1)  # [N, H]
        log_weights = alrao_run.model.switch.log_posterior.float()
        mixture_nll = -torch.logsumexp(log_density + log_weights, dim=1).mean()
        mixture_mse = (alrao_run.model(dataset.test_x) - dataset.test_y).pow(2).mean()
    alrao = comparison.records[0]
    assert alrao.test_loss[-1] == pytest.approx(float(mixture_nll), rel=1e-5)
    assert alrao.test_mse[-1] == pytest.approx(float(mixture_mse), rel=1e-5)
    assert len(alrao.switch_posterior) == alrao.steps_per_epoch * 4 + 1


def test_figures_draw_regression_records():
    dataset = load_dataset("curve", n_train=64, n_test=32)
    comparison = Comparison(
        [MethodSpec("alrao", eta_min=1e-3, eta_max=1.0, n_heads=3), MethodSpec("sgd", lr=0.1)],
        lambda seed: build_model("mlp", (1,), 1, seed=seed),
        dataset,
        epochs=2,
        device="cpu",
    )
    comparison.train()
    records = comparison.records

    metric = figures.accuracy_figure(records)
    assert "MSE" in metric.layout.yaxis.title.text
    assert len(figures.loss_figure(records).data) >= 2
    assert len(figures.switch_posterior_figure(records[0]).data) >= 3
    assert len(figures.head_loss_figure(records[0]).data) >= 3
