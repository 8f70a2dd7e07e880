"""AlraoSGD and AlraoAdam, with torch.optim.SGD and torch.optim.Adam as the oracle.

With ``eta_min == eta_max == lr`` and one head, Alrao is plain training: the
mixture is the single head, so every gradient and every step must match
torch's optimizer on the ordinary network.
"""

import copy
import io
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import alrao_edu as ae

pytestmark = pytest.mark.usefixtures("one_thread")

N_STEPS = 10


def _last_linear_name(net: nn.Module) -> str:
    return [name for name, module in net.named_modules() if isinstance(module, nn.Linear)][-1]


def _single_head_pair(net: nn.Module, lr: float) -> tuple[ae.AlraoModel, nn.Module]:
    """An Alrao model with one head at rate lr, and a plain copy of the network with the same weights."""
    model = ae.alraofy(net, n_heads=1, eta_min=lr, eta_max=lr)
    reference = copy.deepcopy(net)
    last = reference.get_submodule(_last_linear_name(reference))
    with torch.no_grad():
        last.weight.copy_(model.heads.weight[0])
        last.bias.copy_(model.heads.bias[0])
    return model, reference


def _assert_same_state(model: ae.AlraoModel, reference: nn.Module, step: int) -> None:
    last = _last_linear_name(reference)
    for name, expected in reference.named_parameters():
        if name == f"{last}.weight":
            actual = model.heads.weight[0]
        elif name == f"{last}.bias":
            actual = model.heads.bias[0]
        else:
            actual = model.preclassifier.get_parameter(name)
        torch.testing.assert_close(actual, expected, msg=f"{name} after step {step}")
    for name, expected in reference.named_buffers():
        torch.testing.assert_close(model.preclassifier.get_buffer(name), expected, msg=f"{name} after step {step}")


def _train_side_by_side(model, reference, alrao_optimizer, torch_optimizer, x, y) -> None:
    for step in range(1, N_STEPS + 1):
        torch_optimizer.zero_grad()
        F.nll_loss(F.log_softmax(reference(x), dim=1), y).backward()
        torch_optimizer.step()

        alrao_optimizer.zero_grad()
        model.training_loss(x, y).backward()
        alrao_optimizer.step()
        model.update_switch()

        _assert_same_state(model, reference, step)


def _network_and_batch(arch: str, make_mlp, make_bn_cnn):
    if arch == "mlp":
        return make_mlp(), torch.randn(16, 12), torch.randint(0, 5, (16,))
    return make_bn_cnn(), torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))


SGD_SETTINGS = [
    pytest.param(dict(), id="plain"),
    pytest.param(dict(momentum=0.9), id="momentum"),
    pytest.param(dict(momentum=0.9, dampening=0.3), id="dampening"),
    pytest.param(dict(momentum=0.9, nesterov=True), id="nesterov"),
    pytest.param(dict(weight_decay=0.05), id="weight-decay"),
    pytest.param(dict(momentum=0.5, nesterov=True, weight_decay=0.05), id="nesterov-weight-decay"),
]


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("settings", SGD_SETTINGS)
def test_sgd_matches_torch(arch, settings, make_mlp, make_bn_cnn):
    lr = 0.1
    net, x, y = _network_and_batch(arch, make_mlp, make_bn_cnn)
    model, reference = _single_head_pair(net, lr)
    _train_side_by_side(
        model, reference, ae.AlraoSGD(model, **settings), torch.optim.SGD(reference.parameters(), lr=lr, **settings), x, y
    )


ADAM_SETTINGS = [
    pytest.param(dict(), id="default"),
    pytest.param(dict(betas=(0.8, 0.99), eps=1e-6), id="betas-eps"),
    pytest.param(dict(weight_decay=0.05), id="weight-decay"),
]


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("settings", ADAM_SETTINGS)
def test_adam_matches_torch(arch, settings, make_mlp, make_bn_cnn):
    lr = 0.01
    net, x, y = _network_and_batch(arch, make_mlp, make_bn_cnn)
    model, reference = _single_head_pair(net, lr)
    _train_side_by_side(
        model, reference, ae.AlraoAdam(model, **settings), torch.optim.Adam(reference.parameters(), lr=lr, **settings), x, y
    )


def _alrao_mlp(make_mlp, seed: int = 0, n_heads: int = 4) -> ae.AlraoModel:
    return ae.alraofy(make_mlp(), n_heads=n_heads, eta_min=1e-3, eta_max=1.0, generator=torch.Generator().manual_seed(seed))


def _expected_rates(model: ae.AlraoModel) -> dict[str, torch.Tensor]:
    """Rate of every parameter, by its name in the model, as the model states them."""
    rates = {f"preclassifier.{name}": rate for name, rate in model.feature_learning_rates.items()}
    rates["heads.weight"] = model.head_learning_rates.view(-1, 1, 1)
    rates["heads.bias"] = model.head_learning_rates.view(-1, 1)
    return rates


def _one_step(model, optimizer, x, y) -> tuple[dict, dict]:
    """One training step; return the parameters before it and their gradients."""
    optimizer.zero_grad()
    model.training_loss(x, y).backward()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    optimizer.step()
    model.update_switch()
    return before, grads


def test_sgd_step_uses_feature_rates(make_mlp):
    model = _alrao_mlp(make_mlp)
    optimizer = ae.AlraoSGD(model)
    before, grads = _one_step(model, optimizer, torch.randn(16, 12), torch.randint(0, 5, (16,)))
    rates = _expected_rates(model)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), before[name] - rates[name] * grads[name], msg=name)


def test_rates_differ_between_heads(make_mlp):
    # Precondition of the previous test: the rates it applies are not all equal.
    model = _alrao_mlp(make_mlp)
    assert model.head_learning_rates.unique().numel() == 4


def test_optimizer_state_holds_feature_rates(make_mlp):
    model = _alrao_mlp(make_mlp)
    optimizer = ae.AlraoSGD(model)
    rates = _expected_rates(model)
    for name, param in model.named_parameters():
        assert torch.equal(optimizer.state[param]["feature_lr"], rates[name]), name


def test_optimizer_conv_rate_feature_size(make_bn_cnn):
    model = ae.alraofy(make_bn_cnn())
    optimizer = ae.AlraoSGD(model)
    conv = model.preclassifier[0].weight  # [6, 3, 3, 3]
    assert optimizer.state[conv]["feature_lr"].shape == (6, 1, 1, 1)


def test_step_lr_sets_multiplier(make_mlp):
    model = _alrao_mlp(make_mlp)
    optimizer = ae.AlraoSGD(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    _one_step(model, optimizer, torch.randn(16, 12), torch.randint(0, 5, (16,)))
    scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.1, 0.1])


def test_step_lr_scales_every_rate(make_mlp):
    model = _alrao_mlp(make_mlp)
    optimizer = ae.AlraoSGD(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    _one_step(model, optimizer, torch.randn(16, 12), torch.randint(0, 5, (16,)))
    scheduler.step()
    before, grads = _one_step(model, optimizer, torch.randn(16, 12), torch.randint(0, 5, (16,)))
    rates = _expected_rates(model)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), before[name] - 0.1 * rates[name] * grads[name], msg=name)


def _sgd_momentum(model):
    return ae.AlraoSGD(model, momentum=0.9)


def _adam(model):
    return ae.AlraoAdam(model, lr=0.1)


def _alrao_cnn(make_bn_cnn, seed: int) -> ae.AlraoModel:
    torch.manual_seed(seed)
    return ae.alraofy(make_bn_cnn(), n_heads=3, eta_min=1e-3, eta_max=1.0, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("make_optimizer", [_sgd_momentum, _adam], ids=["sgd-momentum", "adam"])
def test_checkpoint_resumes_exactly(make_optimizer, make_bn_cnn, tmp_path):
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    model = _alrao_cnn(make_bn_cnn, seed=0)
    optimizer = make_optimizer(model)
    for _ in range(3):
        _one_step(model, optimizer, x, y)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)

    # Another seed gives other rates and weights; loading must replace all of them.
    resumed = _alrao_cnn(make_bn_cnn, seed=1)
    resumed_optimizer = make_optimizer(resumed)
    checkpoint = torch.load(path)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])

    for m, opt in ((model, optimizer), (resumed, resumed_optimizer)):
        _one_step(m, opt, x, y)
    model.eval()
    resumed.eval()
    assert torch.equal(resumed(x), model(x))
    assert torch.equal(resumed.switch.log_weights, model.switch.log_weights)


def test_checkpoint_seeds_differ(make_bn_cnn):
    # Precondition of the checkpoint test: the fresh model starts from other rates.
    first, second = _alrao_cnn(make_bn_cnn, seed=0), _alrao_cnn(make_bn_cnn, seed=1)
    assert not torch.equal(first.feature_learning_rates["0.weight"], second.feature_learning_rates["0.weight"])


def test_optimizer_state_dict_in_memory(make_mlp):
    model = _alrao_mlp(make_mlp)
    optimizer = ae.AlraoSGD(model, momentum=0.9)
    _one_step(model, optimizer, torch.randn(16, 12), torch.randint(0, 5, (16,)))
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    other_model = _alrao_mlp(make_mlp, seed=1)
    other = ae.AlraoSGD(other_model, momentum=0.9)
    other.load_state_dict(torch.load(buffer))
    for (name, param), other_param in zip(model.named_parameters(), other_model.parameters()):
        assert torch.equal(other.state[other_param]["feature_lr"], optimizer.state[param]["feature_lr"]), name


def test_frozen_parameters_not_optimized(make_mlp):
    net = make_mlp()
    net[0].weight.requires_grad_(False)
    model = ae.alraofy(net, n_heads=2)
    optimizer = ae.AlraoSGD(model)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.preclassifier[0].weight) not in optimized


class _TiedPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 6)
        self.second = nn.Linear(6, 6)
        self.second.weight = self.first.weight
        self.classifier = nn.Linear(6, 3)

    def forward(self, x):
        return self.classifier(torch.tanh(self.second(torch.tanh(self.first(x)))))


def test_tied_weight_optimized_once():
    model = ae.alraofy(_TiedPair(), n_heads=2)
    optimizer = ae.AlraoSGD(model)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(params) == len({id(p) for p in params})


def test_tied_weight_steps_once():
    model = ae.alraofy(_TiedPair(), n_heads=2, eta_min=0.1, eta_max=0.1)
    optimizer = ae.AlraoSGD(model)
    before, grads = _one_step(model, optimizer, torch.randn(8, 6), torch.randint(0, 3, (8,)))
    tied = model.preclassifier.first.weight
    torch.testing.assert_close(tied.detach(), before["preclassifier.first.weight"] - 0.1 * grads["preclassifier.first.weight"])


def test_step_after_double(make_mlp):
    # The model moved to float64 after the optimizer was built.
    model = _alrao_mlp(make_mlp)
    optimizer = ae.AlraoSGD(model, momentum=0.9)
    model.double()
    before, grads = _one_step(model, optimizer, torch.randn(16, 12, dtype=torch.float64), torch.randint(0, 5, (16,)))
    rates = _expected_rates(model)
    for name, param in model.named_parameters():
        expected = before[name] - rates[name].double() * grads[name]
        torch.testing.assert_close(param.detach(), expected, msg=name)


SGD_ERRORS = [
    pytest.param(dict(lr=-1.0), "Invalid lr: -1.0; expected a finite number >= 0", id="lr"),
    pytest.param(dict(momentum=-0.1), "Invalid momentum: -0.1; expected a finite number >= 0", id="momentum"),
    pytest.param(dict(dampening=-0.1), "Invalid dampening: -0.1; expected a finite number >= 0", id="dampening"),
    pytest.param(dict(weight_decay=-1e-4), "Invalid weight_decay: -0.0001; expected a finite number >= 0", id="weight-decay"),
    pytest.param(
        dict(nesterov=True),
        "Nesterov momentum requires momentum > 0 and dampening == 0, got momentum=0.0, dampening=0.0",
        id="nesterov-without-momentum",
    ),
    pytest.param(
        dict(nesterov=True, momentum=0.9, dampening=0.1),
        "Nesterov momentum requires momentum > 0 and dampening == 0, got momentum=0.9, dampening=0.1",
        id="nesterov-with-dampening",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), SGD_ERRORS)
def test_sgd_rejects_argument(kwargs, message, make_mlp):
    model = ae.alraofy(make_mlp(), n_heads=2)
    with pytest.raises(ValueError, match=re.escape(message)):
        ae.AlraoSGD(model, **kwargs)


ADAM_ERRORS = [
    pytest.param(dict(lr=-1.0), "Invalid lr: -1.0; expected a finite number >= 0", id="lr"),
    pytest.param(dict(eps=-1e-8), "Invalid eps: -1e-08; expected a finite number >= 0", id="eps"),
    pytest.param(dict(weight_decay=-1.0), "Invalid weight_decay: -1.0; expected a finite number >= 0", id="weight-decay"),
    pytest.param(dict(betas=(1.0, 0.999)), "Invalid betas: (1.0, 0.999); expected two numbers in [0, 1)", id="beta1-one"),
    pytest.param(dict(betas=(0.9, -0.1)), "Invalid betas: (0.9, -0.1); expected two numbers in [0, 1)", id="beta2-negative"),
    pytest.param(dict(betas=(0.9,)), "Invalid betas: (0.9,); expected two numbers in [0, 1)", id="one-beta"),
]


@pytest.mark.parametrize(("kwargs", "message"), ADAM_ERRORS)
def test_adam_rejects_argument(kwargs, message, make_mlp):
    model = ae.alraofy(make_mlp(), n_heads=2)
    with pytest.raises(ValueError, match=re.escape(message)):
        ae.AlraoAdam(model, **kwargs)


@pytest.mark.parametrize("optimizer_class", [ae.AlraoSGD, ae.AlraoAdam], ids=["sgd", "adam"])
def test_rejects_plain_module(optimizer_class, make_mlp):
    message = "Alrao optimizers take an AlraoModel (see alrao_edu.alraofy), got Sequential"
    with pytest.raises(TypeError, match=re.escape(message)):
        optimizer_class(make_mlp())
