"""The switch posterior, checked against the recursion written out in plain Python floats."""

import io
import math
import random
import re

import pytest
import torch

import alrao_edu as ae

pytestmark = pytest.mark.usefixtures("one_thread")


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def _logaddexp(a: float, b: float) -> float:
    return _logsumexp([a, b])


def _reference_switch(log_likelihoods: list[list[float]], theta: float) -> tuple[list[list[float]], list[list[float]]]:
    """Run the switch recursion on plain floats; return the posterior after each step and the final rows.

    Row 0 contains the sequences that may still switch and starts at
    ``log theta - log N``. Row 1 contains those in their last segment and
    starts at ``log(1 - theta) - log N``. The hazard at step t is 1/(t+1).
    """
    n = len(log_likelihoods[0])
    row0 = [math.log(theta) - math.log(n)] * n
    row1 = [math.log(1 - theta) - math.log(n)] * n
    posteriors = []
    for t, ll in enumerate(log_likelihoods, start=1):
        row0 = [w + l for w, l in zip(row0, ll)]
        row1 = [w + l for w, l in zip(row1, ll)]

        hazard = 1 / (t + 1)
        pool = _logsumexp(row0) + math.log(hazard)
        row0 = [w + math.log(1 - hazard) for w in row0]
        row0 = [_logaddexp(w, math.log(theta) + pool - math.log(n)) for w in row0]
        row1 = [_logaddexp(w, math.log(1 - theta) + pool - math.log(n)) for w in row1]

        total = _logsumexp(row0 + row1)
        row0 = [w - total for w in row0]
        row1 = [w - total for w in row1]
        posteriors.append([math.exp(_logaddexp(a, b)) for a, b in zip(row0, row1)])
    return posteriors, [row0, row1]


def _random_log_likelihoods(n_models: int, n_steps: int, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[-rng.uniform(0.0, 3.0) for _ in range(n_models)] for _ in range(n_steps)]


def _run(switch: ae.Switch, log_likelihoods) -> list[torch.Tensor]:
    posteriors = []
    for ll in log_likelihoods:
        switch.update(torch.tensor(ll, dtype=torch.float64))
        posteriors.append(switch.posterior.clone())
    return posteriors


@pytest.mark.parametrize("n_models", [2, 3])
@pytest.mark.parametrize("theta", [0.9999, 0.5])
def test_posterior_matches_reference(n_models, theta):
    stream = _random_log_likelihoods(n_models, 20, seed=n_models)
    expected, _ = _reference_switch(stream, theta)
    actual = _run(ae.Switch(n_models, theta=theta), stream)
    for step, (a, e) in enumerate(zip(actual, expected), start=1):
        torch.testing.assert_close(a, torch.tensor(e, dtype=torch.float64), rtol=1e-12, atol=1e-15, msg=f"step {step}")


@pytest.mark.parametrize("n_models", [2, 3])
def test_log_weights_match_reference(n_models):
    stream = _random_log_likelihoods(n_models, 20, seed=10 + n_models)
    _, rows = _reference_switch(stream, 0.9999)
    switch = ae.Switch(n_models)
    _run(switch, stream)
    torch.testing.assert_close(switch.log_weights, torch.tensor(rows, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_initial_posterior_uniform():
    torch.testing.assert_close(ae.Switch(4).posterior, torch.full((4,), 0.25, dtype=torch.float64))


def test_step_counts_updates():
    switch = ae.Switch(3)
    _run(switch, _random_log_likelihoods(3, 7))
    assert int(switch.step) == 8


def test_posterior_sums_to_one():
    switch = ae.Switch(5)
    _run(switch, _random_log_likelihoods(5, 50))
    assert switch.posterior.sum().item() == pytest.approx(1.0, abs=1e-12)


def _stream_without_switch(n_models: int, n_steps: int, seed: int = 0) -> list[list[float]]:
    """Noisy log-likelihoods in which model 0 is best at every step, then model 1, and so on."""
    rng = random.Random(seed)
    stream = []
    for _ in range(n_steps):
        shared = -rng.uniform(0.0, 3.0)
        stream.append([shared - 0.02 * j * rng.uniform(0.5, 1.5) for j in range(n_models)])
    return stream


def test_small_theta_is_bayesian():
    # Row 0 (sequences that may still switch) starts with mass theta, so with
    # theta near 0 almost all mass never switches. In a stream where the best
    # model never changes, switching gains nothing and the posterior is the
    # Bayesian one, proportional to exp(sum of log-likelihoods).
    stream = _stream_without_switch(3, 200)
    switch = ae.Switch(3, theta=1e-9)
    _run(switch, stream)
    bayes = torch.softmax(torch.tensor(stream, dtype=torch.float64).sum(0), dim=0)
    torch.testing.assert_close(switch.posterior, bayes, rtol=1e-6, atol=1e-9)


def test_default_theta_is_not_bayesian():
    # The same stream with the default theta: switching keeps mass on the
    # worse models, so the previous check can fail.
    stream = _stream_without_switch(3, 200)
    switch = ae.Switch(3)
    _run(switch, stream)
    bayes = torch.softmax(torch.tensor(stream, dtype=torch.float64).sum(0), dim=0)
    assert (switch.posterior - bayes).abs().max() > 1e-3


def _noisy_stream(means: list[float], n_steps: int, rng: random.Random) -> list[list[float]]:
    return [[mean + rng.gauss(0.0, 0.3) for mean in means] for _ in range(n_steps)]


def test_concentrates_on_better_model():
    rng = random.Random(0)
    switch = ae.Switch(3)
    _run(switch, _noisy_stream([-0.5, -0.7, -0.9], 300, rng))
    assert switch.posterior[0] > 0.99


def test_follows_change_of_best_model():
    rng = random.Random(1)
    switch = ae.Switch(3)
    _run(switch, _noisy_stream([-0.5, -0.7, -0.9], 300, rng))
    _run(switch, _noisy_stream([-0.9, -0.5, -0.7], 100, rng))
    assert switch.posterior[1] > 0.99


def _steps_to_follow(theta: float) -> int:
    """Steps after the best model changes until the new best has half the posterior."""
    rng = random.Random(2)
    switch = ae.Switch(2, theta=theta)
    _run(switch, _noisy_stream([-0.5, -0.7], 300, rng))
    for step, ll in enumerate(_noisy_stream([-0.7, -0.5], 1000, rng), start=1):
        switch.update(torch.tensor(ll, dtype=torch.float64))
        if switch.posterior[1] > 0.5:
            return step
    return 1000


def test_switch_follows_faster_than_bayes():
    # A Bayesian mixture needs about as many steps as it spent on the old best
    # model; the switch needs about log(t) / (gap in log-likelihood).
    assert _steps_to_follow(0.9999) * 5 < _steps_to_follow(1e-9)


def test_state_dict_keys():
    assert set(ae.Switch(3).state_dict()) == {"log_weights", "step"}


def test_state_dict_round_trip():
    switch = ae.Switch(3)
    _run(switch, _random_log_likelihoods(3, 10))
    buffer = io.BytesIO()
    torch.save(switch.state_dict(), buffer)
    buffer.seek(0)
    loaded = ae.Switch(3)
    loaded.load_state_dict(torch.load(buffer))
    assert torch.equal(loaded.log_weights, switch.log_weights)
    assert int(loaded.step) == int(switch.step)


def test_loaded_switch_continues_identically():
    switch = ae.Switch(3)
    _run(switch, _random_log_likelihoods(3, 10, seed=0))
    loaded = ae.Switch(3)
    loaded.load_state_dict(switch.state_dict())
    more = _random_log_likelihoods(3, 5, seed=1)
    for a, b in zip(_run(switch, more), _run(loaded, more)):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "move",
    [
        pytest.param(lambda s: s.half(), id="half"),
        pytest.param(lambda s: s.float(), id="float"),
        pytest.param(lambda s: s.double(), id="double"),
        pytest.param(lambda s: s.to(torch.float16), id="to-float16"),
        pytest.param(lambda s: s.to("meta"), id="to-meta"),
    ],
)
def test_moves_keep_float64_cpu(move):
    switch = ae.Switch(3)
    _run(switch, _random_log_likelihoods(3, 4))
    before = switch.log_weights.clone()
    move(switch)
    assert switch.log_weights.dtype == torch.float64
    assert switch.log_weights.device.type == "cpu"
    assert torch.equal(switch.log_weights, before)


def test_model_half_keeps_switch_float64():
    model = ae.AlraoModel(torch.nn.Identity(), 4, 3, n_heads=2)
    model.half()
    assert model.switch.log_weights.dtype == torch.float64


@pytest.mark.parametrize("bad", [-math.inf, math.nan], ids=["-inf", "nan"])
def test_nonfinite_model_posterior_zero(bad):
    switch = ae.Switch(3)
    _run(switch, _random_log_likelihoods(3, 5))
    switch.update(torch.tensor([-1.0, bad, -1.2], dtype=torch.float64))
    assert switch.posterior[1].item() == 0.0


def test_nonfinite_step_keeps_others_normalised():
    switch = ae.Switch(3)
    switch.update(torch.tensor([-1.0, math.nan, -1.2], dtype=torch.float64))
    assert switch.posterior.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_nonfinite_model_can_come_back():
    # After a finite step the model gets its share of the switching mass again.
    switch = ae.Switch(3)
    switch.update(torch.tensor([-1.0, -math.inf, -1.2], dtype=torch.float64))
    switch.update(torch.tensor([-1.0, -0.5, -1.2], dtype=torch.float64))
    assert switch.posterior[1].item() > 0.0


def test_all_nonfinite_warns():
    switch = ae.Switch(3)
    with pytest.warns(RuntimeWarning, match="no model has a finite log-likelihood"):
        switch.update(torch.tensor([-math.inf, math.nan, -math.inf], dtype=torch.float64))


def test_all_nonfinite_leaves_state():
    switch = ae.Switch(3)
    _run(switch, _random_log_likelihoods(3, 5))
    before, step = switch.log_weights.clone(), int(switch.step)
    with pytest.warns(RuntimeWarning):
        switch.update(torch.full((3,), -math.inf, dtype=torch.float64))
    assert torch.equal(switch.log_weights, before)
    assert int(switch.step) == step


@pytest.mark.parametrize("n_models", [0, -1, 2.5, True])
def test_rejects_n_models(n_models):
    with pytest.raises(ValueError, match=re.escape(f"Invalid n_models: {n_models!r}; expected an integer >= 1")):
        ae.Switch(n_models)


@pytest.mark.parametrize("theta", [0.0, 1.0, -0.5, 1.5, math.nan])
def test_rejects_theta(theta):
    message = f"Invalid theta: {theta!r}; expected a number strictly between 0 and 1"
    with pytest.raises(ValueError, match=re.escape(message)):
        ae.Switch(3, theta=theta)


@pytest.mark.parametrize("shape", [(2,), (4,), (3, 1), ()])
def test_rejects_log_likelihood_shape(shape):
    message = f"Invalid log_likelihoods shape {shape}; expected (3,), one value per model"
    with pytest.raises(ValueError, match=re.escape(message)):
        ae.Switch(3).update(torch.zeros(shape))
