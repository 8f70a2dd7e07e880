"""Small networks shared by the core tests."""

import pytest
import torch
from torch import nn


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes seconds, not milliseconds (still run by default)")


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one intra-op thread, then restore the thread count.

    The core tests use tiny tensors, where a second thread costs more in
    synchronisation than it saves: on a busy 2-core machine test_alraofy.py
    took 65 s with two threads and 10 s with one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _fixed_default_seed():
    # Inputs and ordinary network initialisations draw from the default generator.
    torch.manual_seed(0)


def _make_mlp(n_in: int = 12, hidden: int = 16, n_out: int = 5) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_out))


def _make_bn_cnn(n_out: int = 5) -> nn.Sequential:
    """A CNN with BatchNorm for inputs ``[B, 3, 8, 8]``.

    The convolutions have no bias: BatchNorm cancels it, so its gradient is
    rounding noise, which Adam would scale up to full steps.
    """
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, n_out),
    )


@pytest.fixture
def make_mlp():
    """Factory of an MLP ``n_in -> hidden -> hidden -> n_out`` with tanh."""
    return _make_mlp


@pytest.fixture
def make_bn_cnn():
    """Factory of a two-convolution CNN with BatchNorm for inputs ``[B, 3, 8, 8]``."""
    return _make_bn_cnn
