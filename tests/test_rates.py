"""Per-feature learning rates: log-uniform draws and the feature rule of each layer type.

Each rule test builds, independently of the package, the feature index of
every parameter entry, then checks that every entry of one feature gets the
same rate and that different features get different rates.
"""

import math
import re
import warnings

import pytest
import torch
from scipy import stats
from torch import nn

import alrao_edu as ae

pytestmark = pytest.mark.usefixtures("one_thread")

ETA_MIN, ETA_MAX = 1e-3, 10.0


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _along(shape: torch.Size, dim: int) -> torch.Tensor:
    """Feature index of each entry when the feature is the position along ``dim``."""
    view = [-1 if d == dim else 1 for d in range(len(shape))]
    return torch.arange(shape[dim]).view(view).expand(shape)


def _rows_ids(module: nn.Module) -> dict[str, torch.Tensor]:
    """Linear and convolutions: output unit or channel = dim 0 of the weight."""
    ids = {"weight": _along(module.weight.shape, 0)}
    if module.bias is not None:
        ids["bias"] = torch.arange(module.bias.shape[0])
    return ids


def _conv_transpose_ids(module: nn.ConvTranspose2d) -> dict[str, torch.Tensor]:
    """Weight ``[in, out/groups, kh, kw]``: entry (i, c) feeds output channel ``group(i) * out/groups + c``."""
    weight = module.weight
    in_per_group = module.in_channels // module.groups
    out_per_group = module.out_channels // module.groups
    group = torch.arange(weight.shape[0]) // in_per_group
    channel = group.view(-1, 1) * out_per_group + torch.arange(out_per_group).view(1, -1)  # [in, out/groups]
    return {
        "weight": channel.view(*channel.shape, 1, 1).expand(weight.shape),
        "bias": torch.arange(module.out_channels),
    }


def _elementwise_ids(module: nn.Module) -> dict[str, torch.Tensor]:
    """Normalisation layers: every element of the affine weight is a channel."""
    shape = module.weight.shape
    ids = torch.arange(module.weight.numel()).view(shape)
    return {"weight": ids, "bias": ids}


def _embedding_ids(module: nn.Embedding) -> dict[str, torch.Tensor]:
    return {"weight": _along(module.weight.shape, 1)}


def _recurrent_ids(module: nn.RNNBase) -> dict[str, torch.Tensor]:
    """Hidden unit u of a layer and direction owns row r of every gate block when r % H == u."""
    hidden = module.hidden_size
    width = max(hidden, module.proj_size)
    ids = {}
    for name, param in module.named_parameters():
        kind, layer_tag = name.rsplit("_l", 1)
        layer = int(layer_tag.split("_")[0])
        direction = 1 if layer_tag.endswith("_reverse") else 0
        is_projection = kind == "weight_hr"
        block = ((layer * 2 + direction) * 2 + int(is_projection)) * width
        rows = torch.arange(param.shape[0])
        unit = rows if is_projection else rows % hidden
        ids[name] = (block + unit).view(-1, *([1] * (param.dim() - 1))).expand(param.shape)
    return ids


RULE_CASES = [
    pytest.param(lambda: nn.Linear(6, 4), _rows_ids, id="linear"),
    pytest.param(lambda: nn.Linear(6, 4, bias=False), _rows_ids, id="linear-no-bias"),
    pytest.param(lambda: nn.Conv1d(4, 6, 3), _rows_ids, id="conv1d"),
    pytest.param(lambda: nn.Conv2d(4, 6, 3), _rows_ids, id="conv2d"),
    pytest.param(lambda: nn.Conv3d(4, 6, 3), _rows_ids, id="conv3d"),
    pytest.param(lambda: nn.Conv2d(4, 6, 3, groups=2), _rows_ids, id="conv2d-grouped"),
    pytest.param(lambda: nn.Conv2d(4, 8, 3, groups=4), _rows_ids, id="conv2d-depthwise"),
    pytest.param(lambda: nn.ConvTranspose2d(4, 6, 3), _conv_transpose_ids, id="conv-transpose2d"),
    pytest.param(lambda: nn.ConvTranspose2d(4, 6, 3, groups=2), _conv_transpose_ids, id="conv-transpose2d-groups2"),
    pytest.param(lambda: nn.BatchNorm1d(5), _elementwise_ids, id="batchnorm1d"),
    pytest.param(lambda: nn.BatchNorm2d(5), _elementwise_ids, id="batchnorm2d"),
    pytest.param(lambda: nn.BatchNorm3d(5), _elementwise_ids, id="batchnorm3d"),
    pytest.param(lambda: nn.GroupNorm(2, 6), _elementwise_ids, id="groupnorm"),
    pytest.param(lambda: nn.LayerNorm([3, 4]), _elementwise_ids, id="layernorm"),
    pytest.param(lambda: nn.Embedding(10, 6), _embedding_ids, id="embedding"),
    pytest.param(lambda: nn.RNN(5, 4, num_layers=2, bidirectional=True), _recurrent_ids, id="rnn"),
    pytest.param(lambda: nn.LSTM(5, 4, num_layers=2, bidirectional=True), _recurrent_ids, id="lstm"),
    pytest.param(lambda: nn.GRU(5, 4, num_layers=2, bidirectional=True), _recurrent_ids, id="gru"),
    pytest.param(lambda: nn.LSTM(5, 4, num_layers=2, bidirectional=True, proj_size=3), _recurrent_ids, id="lstm-proj"),
]


def _rates_and_ids(make_module, feature_ids):
    """Expanded rates and feature indices of all entries of all parameters, flattened."""
    module = make_module()
    rates = ae.feature_learning_rates(module, ETA_MIN, ETA_MAX, generator=_generator())
    ids = feature_ids(module)
    params = dict(module.named_parameters())
    assert set(rates) == set(params)
    all_rates = torch.cat([rates[name].expand(param.shape).reshape(-1) for name, param in params.items()])
    all_ids = torch.cat([ids[name].reshape(-1) for name in params])
    _, dense_ids = all_ids.unique(return_inverse=True)  # 0 .. n_features - 1
    return all_rates, dense_ids


@pytest.mark.parametrize(("make_module", "feature_ids"), RULE_CASES)
def test_rule_one_rate_per_feature(make_module, feature_ids):
    rates, ids = _rates_and_ids(make_module, feature_ids)
    n = int(ids.max()) + 1
    highest = torch.full((n,), -math.inf).scatter_reduce(0, ids, rates, "amax")
    lowest = torch.full((n,), math.inf).scatter_reduce(0, ids, rates, "amin")
    torch.testing.assert_close(highest, lowest, rtol=0, atol=0)


@pytest.mark.parametrize(("make_module", "feature_ids"), RULE_CASES)
def test_rule_fresh_rate_per_feature(make_module, feature_ids):
    # Distinct features must not be merged: each gets its own draw.
    rates, ids = _rates_and_ids(make_module, feature_ids)
    assert rates.unique().numel() == ids.unique().numel()


@pytest.mark.parametrize(("make_module", "feature_ids"), RULE_CASES)
def test_rule_rates_in_interval(make_module, feature_ids):
    rates, _ = _rates_and_ids(make_module, feature_ids)
    assert rates.min() >= ETA_MIN
    assert rates.max() <= ETA_MAX


def _storage_numel(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().nbytes() // tensor.element_size()


@pytest.mark.parametrize(
    ("make_module", "weight_name"),
    [
        pytest.param(lambda: nn.Linear(64, 32), "weight", id="linear"),
        pytest.param(lambda: nn.Conv1d(8, 16, 3), "weight", id="conv1d"),
        pytest.param(lambda: nn.Conv2d(8, 16, 3), "weight", id="conv2d"),
        pytest.param(lambda: nn.Conv3d(8, 16, 3), "weight", id="conv3d"),
        # With groups > 1 the rate is [in, out/groups, 1, 1]: the kernel dims are not stored.
        pytest.param(lambda: nn.ConvTranspose2d(8, 16, 3, groups=2), "weight", id="conv-transpose2d-groups2"),
        pytest.param(lambda: nn.Embedding(100, 8), "weight", id="embedding"),
        pytest.param(lambda: nn.LSTM(16, 8), "weight_ih_l0", id="lstm-ih"),
        pytest.param(lambda: nn.LSTM(16, 8), "weight_hh_l0", id="lstm-hh"),
    ],
)
def test_rate_storage_smaller_than_weight(make_module, weight_name):
    module = make_module()
    rates = ae.feature_learning_rates(module, ETA_MIN, ETA_MAX)
    weight = module.get_parameter(weight_name)
    assert _storage_numel(rates[weight_name]) * 4 <= weight.numel()


def test_linear_rate_shape():
    rates = ae.feature_learning_rates(nn.Linear(64, 32), ETA_MIN, ETA_MAX)
    assert rates["weight"].shape == (32, 1)


def test_conv2d_rate_shape():
    rates = ae.feature_learning_rates(nn.Conv2d(8, 16, 3), ETA_MIN, ETA_MAX)
    assert rates["weight"].shape == (16, 1, 1, 1)


@pytest.mark.parametrize(
    ("make_module", "names"),
    [
        pytest.param(lambda: nn.Linear(6, 4), ["weight", "bias"], id="linear"),
        pytest.param(lambda: nn.Conv2d(4, 6, 3), ["weight", "bias"], id="conv2d"),
        pytest.param(lambda: nn.ConvTranspose2d(4, 6, 3), ["weight", "bias"], id="conv-transpose2d"),
        pytest.param(lambda: nn.BatchNorm2d(5), ["weight", "bias"], id="batchnorm2d"),
        pytest.param(
            lambda: nn.LSTM(5, 4), ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"], id="lstm"
        ),
    ],
)
def test_rates_share_storage(make_module, names):
    rates = ae.feature_learning_rates(make_module(), ETA_MIN, ETA_MAX)
    pointers = {rates[name].untyped_storage().data_ptr() for name in names}
    assert len(pointers) == 1


class _Scale(nn.Module):
    """A custom module with raw parameters, which no feature rule covers."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(4, 3))
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x * self.gain + self.offset


def _fallback_warnings(module: nn.Module) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rates = ae.feature_learning_rates(module, ETA_MIN, ETA_MAX)
    return rates, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_fallback_warns_once_per_type():
    _, messages = _fallback_warnings(nn.Sequential(_Scale(), nn.Linear(3, 3), _Scale()))
    assert len(messages) == 1


def test_fallback_warning_names_type():
    _, messages = _fallback_warnings(nn.Sequential(_Scale(), nn.Linear(3, 3), _Scale()))
    assert "_Scale" in messages[0]


def test_known_layers_do_not_warn():
    _, messages = _fallback_warnings(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3)))
    assert messages == []


def test_fallback_rate_per_dim0_slice():
    rates, _ = _fallback_warnings(_Scale())
    assert rates["gain"].shape == (4, 1)


def test_fallback_rate_for_scalar():
    rates, _ = _fallback_warnings(_Scale())
    assert rates["offset"].shape == ()


class _TiedPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 6)
        self.second = nn.Linear(6, 6)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def test_tied_weight_gets_one_rate():
    rates = ae.feature_learning_rates(_TiedPair(), ETA_MIN, ETA_MAX)
    assert list(rates) == ["first.weight", "first.bias", "second.bias"]


def test_frozen_parameters_left_out():
    net = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3))
    net[0].weight.requires_grad_(False)
    rates = ae.feature_learning_rates(net, ETA_MIN, ETA_MAX)
    assert list(rates) == ["0.bias", "1.weight", "1.bias"]


def test_same_seed_same_rates():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 4))
    first = ae.feature_learning_rates(net, ETA_MIN, ETA_MAX, generator=_generator(7))
    second = ae.feature_learning_rates(net, ETA_MIN, ETA_MAX, generator=_generator(7))
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_other_seed_other_rates():
    net = nn.Linear(8, 16)
    first = ae.feature_learning_rates(net, ETA_MIN, ETA_MAX, generator=_generator(7))
    second = ae.feature_learning_rates(net, ETA_MIN, ETA_MAX, generator=_generator(8))
    assert not torch.equal(first["weight"], second["weight"])


# Uniformity of log-rates: a Kolmogorov-Smirnov test against U(0, 1).
KS_FEATURES = 20_000
KS_ETA_MIN, KS_ETA_MAX = 1e-5, 10.0


def _log_uniformity_pvalue(rates: torch.Tensor) -> float:
    """p-value of the KS test that ``log rates`` is uniform on ``(log eta_min, log eta_max)``."""
    positions = (rates.double().log() - math.log(KS_ETA_MIN)) / (math.log(KS_ETA_MAX) - math.log(KS_ETA_MIN))
    return stats.kstest(positions.numpy(), "uniform").pvalue


def test_feature_log_rates_uniform():
    rates = ae.feature_learning_rates(nn.Linear(2, KS_FEATURES), KS_ETA_MIN, KS_ETA_MAX, generator=_generator(0))
    assert _log_uniformity_pvalue(rates["weight"].reshape(-1)) > 0.01


def test_log_uniform_passes_ks():
    rates = ae.log_uniform(KS_FEATURES, KS_ETA_MIN, KS_ETA_MAX, generator=_generator(1))
    assert _log_uniformity_pvalue(rates) > 0.01


def test_ks_rejects_uniform_in_rate():
    # Uniform in the rate itself puts almost all rates in the top decade.
    u = torch.rand(KS_FEATURES, generator=_generator(0), dtype=torch.float64)
    rates = KS_ETA_MIN + u * (KS_ETA_MAX - KS_ETA_MIN)
    assert _log_uniformity_pvalue(rates) < 0.01


def test_ks_rejects_narrow_interval():
    # Log-uniform, but on one decade less than announced.
    rates = ae.log_uniform(KS_FEATURES, KS_ETA_MIN, KS_ETA_MAX / 10, generator=_generator(0))
    assert _log_uniformity_pvalue(rates) < 0.01


def test_log_uniform_shape():
    assert ae.log_uniform((3, 2), ETA_MIN, ETA_MAX).shape == (3, 2)


def test_log_uniform_int_shape():
    assert ae.log_uniform(5, ETA_MIN, ETA_MAX).shape == (5,)


def test_log_uniform_float32():
    assert ae.log_uniform(5, ETA_MIN, ETA_MAX).dtype == torch.float32


def test_log_uniform_equal_ends():
    rates = ae.log_uniform(100, 0.1, 0.1)
    assert torch.equal(rates, torch.full((100,), 0.1))


INTERVAL_ERRORS = [
    pytest.param(0, 1.0, "Invalid eta_min: 0; expected a finite number > 0", id="zero-min"),
    pytest.param(-1e-3, 1.0, "Invalid eta_min: -0.001; expected a finite number > 0", id="negative-min"),
    pytest.param(math.nan, 1.0, "Invalid eta_min: nan; expected a finite number > 0", id="nan-min"),
    pytest.param(1e-3, math.inf, "Invalid eta_max: inf; expected a finite number > 0", id="infinite-max"),
    pytest.param(
        1.0, 0.1, "Invalid learning-rate interval: eta_min=1.0 > eta_max=0.1; expected eta_min <= eta_max",
        id="min-above-max",
    ),
    pytest.param("0.1", 1.0, "Invalid eta_min: '0.1'; expected a positive number", id="string-min"),
]


@pytest.mark.parametrize(("eta_min", "eta_max", "message"), INTERVAL_ERRORS)
def test_log_uniform_rejects_interval(eta_min, eta_max, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ae.log_uniform(3, eta_min, eta_max)


@pytest.mark.parametrize(("eta_min", "eta_max", "message"), INTERVAL_ERRORS)
def test_feature_rates_reject_interval(eta_min, eta_max, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ae.feature_learning_rates(nn.Linear(3, 2), eta_min, eta_max)
