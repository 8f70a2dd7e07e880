"""Tests of the data-set registry: embedded sets, the MNIST-1D cache, torchvision sets read from
tiny files in their real on-disk formats, and the offline failure."""

import pickle
import random
import socket
import struct
import threading
import time
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
import torchvision.datasets

from alrao_edu.training import data
from alrao_edu.training.data import DATASETS, Dataset, dataset_names, load_dataset

EMBEDDED = ["digits", "mnist1d", "spirals", "curve"]
DOWNLOADED = ["mnist", "fashion_mnist", "cifar10"]

# Training and test sizes of the full embedded sets.
FULL_SIZES = {"digits": (1347, 450), "mnist1d": (4000, 1000), "spirals": (1200, 600),
              "curve": (1000, 500)}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail every name lookup and connection as on a machine with no network, so no test can
    reach a remote host."""

    def fail_lookup(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, f"name lookup of {host} blocked by the test")

    def fail_connect(self, address):
        raise OSError(f"connection to {address} blocked by the test")

    monkeypatch.setattr(socket, "getaddrinfo", fail_lookup)
    monkeypatch.setattr(socket.socket, "connect", fail_connect)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def cache(monkeypatch, shared_cache):
    """Point the cache at a folder shared by this module's tests, so MNIST-1D is generated once."""
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(shared_cache))
    return shared_cache


# ---------------------------------------------------------------------------------------------
# Registry and embedded sets


def test_registry_names():
    assert dataset_names() == EMBEDDED + DOWNLOADED
    assert dataset_names(embedded_only=True) == EMBEDDED
    assert list(DATASETS) == EMBEDDED + DOWNLOADED
    for name in DOWNLOADED:
        assert DATASETS[name].needs_download


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_set_contents(name):
    info = DATASETS[name]
    dataset = load_dataset(name)
    n_train, n_test = FULL_SIZES[name]

    assert isinstance(dataset, Dataset)
    assert dataset.name == name
    assert dataset.task == info.task
    assert dataset.input_shape == info.input_shape
    assert dataset.n_classes == info.n_classes
    assert dataset.train_x.shape == (n_train, *info.input_shape)
    assert dataset.test_x.shape == (n_test, *info.input_shape)
    assert dataset.train_x.dtype == torch.float32
    assert dataset.test_x.dtype == torch.float32
    assert torch.isfinite(dataset.train_x).all()
    assert torch.isfinite(dataset.test_x).all()

    if info.task == "classification":
        assert dataset.train_y.dtype == torch.int64
        assert dataset.train_y.shape == (n_train,)
        assert dataset.test_y.shape == (n_test,)
        assert set(dataset.train_y.tolist()) == set(range(info.n_classes))
        assert set(dataset.test_y.tolist()) == set(range(info.n_classes))
        assert len(dataset.classes) == info.n_classes
        assert dataset.n_outputs == info.n_classes
    else:
        assert dataset.train_y.dtype == torch.float32
        assert dataset.train_y.shape == (n_train, 1)
        assert dataset.test_y.shape == (n_test, 1)
        assert dataset.classes is None
        assert dataset.n_outputs == 1


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_set_standardised(name):
    dataset = load_dataset(name)
    n_channels = dataset.train_x.shape[1]
    per_channel = dataset.train_x.transpose(0, 1).reshape(n_channels, -1).double()

    assert torch.allclose(per_channel.mean(dim=1), torch.zeros(n_channels, dtype=torch.float64),
                          atol=1e-5)
    assert torch.allclose(per_channel.std(dim=1), torch.ones(n_channels, dtype=torch.float64),
                          atol=2e-3)
    # The test set uses the training statistics, so it is only roughly standardised.
    assert abs(dataset.test_x.mean().item()) < 0.2
    assert 0.8 < dataset.test_x.std().item() < 1.2


def test_digits_split_fixed_and_stratified():
    first = load_dataset("digits", seed=0)
    second = load_dataset("digits", seed=1)

    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.test_y, second.test_y)
    class_counts = first.train_y.bincount() + first.test_y.bincount()
    test_share = first.test_y.bincount().double() / class_counts
    assert (test_share - 0.25).abs().max() < 0.01


@pytest.mark.parametrize("name", ["spirals", "curve"])
def test_generated_set_follows_seed(name):
    first = load_dataset(name, seed=0)
    again = load_dataset(name, seed=0)
    other = load_dataset(name, seed=1)

    assert torch.equal(first.train_x, again.train_x)
    assert torch.equal(first.train_y, again.train_y)
    assert torch.equal(first.test_x, again.test_x)
    assert not torch.equal(first.train_x, other.train_x)


def test_spirals_arms_balanced():
    dataset = load_dataset("spirals")

    assert dataset.train_y.bincount().tolist() == [400, 400, 400]
    assert dataset.test_y.bincount().tolist() == [200, 200, 200]
    assert dataset.classes == ["arm 0", "arm 1", "arm 2"]


def test_subset_sizes_and_stratification():
    dataset = load_dataset("digits", n_train=100, n_test=30, seed=3)

    assert dataset.train_x.shape == (100, 1, 8, 8)
    assert dataset.train_y.shape == (100,)
    assert dataset.test_x.shape == (30, 1, 8, 8)
    assert dataset.train_y.bincount().tolist() == [10] * 10
    assert dataset.test_y.bincount().tolist() == [3] * 10


def test_subset_uneven_sizes_stratified():
    full = load_dataset("digits")
    dataset = load_dataset("digits", n_train=57, n_test=5)
    full_share = full.train_y.bincount().double() / len(full.train_y)

    assert len(dataset.train_y) == 57
    assert len(dataset.test_y) == 5
    counts = dataset.train_y.bincount(minlength=10).double()
    assert (counts - 57 * full_share).abs().max() < 1


def test_subset_follows_seed():
    first = load_dataset("digits", n_train=50, n_test=20, seed=5)
    again = load_dataset("digits", n_train=50, n_test=20, seed=5)
    other = load_dataset("digits", n_train=50, n_test=20, seed=6)

    assert torch.equal(first.train_x, again.train_x)
    assert torch.equal(first.test_y, again.test_y)
    assert not torch.equal(first.train_x, other.train_x)


def test_subset_uses_full_set_statistics():
    full = load_dataset("digits")
    subset = load_dataset("digits", n_train=40, seed=2)
    full_rows = {tuple(row.tolist()): label for row, label in
                 zip(full.train_x.flatten(1), full.train_y.tolist())}

    for row, label in zip(subset.train_x.flatten(1), subset.train_y.tolist()):
        assert full_rows[tuple(row.tolist())] == label
    assert torch.equal(subset.test_x, full.test_x)


def test_regression_subset():
    dataset = load_dataset("curve", n_train=10, n_test=7)

    assert dataset.train_x.shape == (10, 1)
    assert dataset.train_y.shape == (10, 1)
    assert dataset.test_y.shape == (7, 1)
    assert dataset.train_y.dtype == torch.float32


def test_dataset_repr_and_outputs():
    dataset = load_dataset("spirals", n_train=30, n_test=9)

    assert repr(dataset) == "Dataset('spirals', 3 classes, input shape (2,), 30 train / 9 test)"
    assert dataset.n_outputs == 3


# ---------------------------------------------------------------------------------------------
# Argument errors


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown data set 'imagenet'; valid names are: "
                                         r"digits, mnist1d, spirals, curve, mnist"):
        load_dataset("imagenet")


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "10"])
@pytest.mark.parametrize("argument", ["n_train", "n_test"])
def test_invalid_subset_size(argument, value):
    with pytest.raises(ValueError, match=rf"{argument} must be None or a positive integer; "
                                         rf"got {value!r}"):
        load_dataset("spirals", **{argument: value})


def test_subset_larger_than_set():
    with pytest.raises(ValueError, match=r"n_train=5000 is larger than the 1347 examples of "
                                         r"'digits'; pass at most 1347"):
        load_dataset("digits", n_train=5000)
    with pytest.raises(ValueError, match=r"n_test=601 is larger than the 600 examples"):
        load_dataset("spirals", n_test=601)


def test_invalid_seed_and_download():
    with pytest.raises(ValueError, match=r"seed must be an integer; got '1'"):
        load_dataset("spirals", seed="1")
    with pytest.raises(ValueError, match=r"download must be True or False; got 1"):
        load_dataset("spirals", download=1)


# ---------------------------------------------------------------------------------------------
# MNIST-1D cache


def _cache_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_mnist1d_cache_written_then_reused(monkeypatch, tmp_path):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "moved"))
    python_state = random.getstate()
    numpy_state = np.random.get_state()[1].copy()

    first = load_dataset("mnist1d")

    cache_file = data._mnist1d_cache_path()
    assert cache_file.parent == tmp_path / "moved"
    assert _cache_files(tmp_path / "moved") == [cache_file.name]
    # Generating seeds the global generators of Python and NumPy, so both must be restored.
    assert random.getstate() == python_state
    assert np.array_equal(np.random.get_state()[1], numpy_state)

    def fail():
        raise AssertionError("MNIST-1D was generated again instead of read from the cache")

    monkeypatch.setattr(data, "_generate_mnist1d", fail)
    second = load_dataset("mnist1d")
    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.test_y, second.test_y)


def test_mnist1d_default_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(data.CACHE_ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert data.cache_dir() == tmp_path / ".cache" / "alrao_edu"
    assert data._mnist1d_cache_path().parent == tmp_path / ".cache" / "alrao_edu"


def test_mnist1d_interrupted_write_leaves_no_file(monkeypatch, tmp_path):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))

    def write_half_then_stop(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(data.np, "savez", write_half_then_stop)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("mnist1d")
    assert _cache_files(tmp_path) == []


def test_mnist1d_corrupt_cache_regenerated(monkeypatch, tmp_path):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))
    cache_file = data._mnist1d_cache_path()
    cache_file.write_bytes(b"not an npz archive")

    with pytest.warns(UserWarning, match="unreadable MNIST-1D cache"):
        dataset = load_dataset("mnist1d", n_train=20, n_test=20)

    assert dataset.train_x.shape == (20, 1, 40)
    with np.load(cache_file) as archive:
        assert archive["train_x"].shape == (4000, 40)


def test_mnist1d_unwritable_cache_warns(monkeypatch, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(blocker))

    with pytest.warns(UserWarning, match="Cannot write the cache"):
        dataset = load_dataset("mnist1d", n_test=10)
    assert dataset.train_x.shape == (4000, 1, 40)


# ---------------------------------------------------------------------------------------------
# torchvision sets from tiny files in the real formats


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an unsigned-byte IDX file: magic 0x0000 08 <ndim>, big-endian int32 sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_tiny_idx_set(root: Path, class_folder: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "train_y": np.tile(np.arange(10, dtype=np.uint8), 2),
        "test_x": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "test_y": np.arange(10, dtype=np.uint8)[::-1].copy(),
    }
    raw = root / class_folder / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", arrays["train_x"])
    _write_idx(raw / "train-labels-idx1-ubyte", arrays["train_y"])
    _write_idx(raw / "t10k-images-idx3-ubyte", arrays["test_x"])
    _write_idx(raw / "t10k-labels-idx1-ubyte", arrays["test_y"])
    return arrays


def _expected_standardised(train: np.ndarray, images: np.ndarray) -> torch.Tensor:
    """Standardise with the per-channel statistics of `train`, shaped [N, C, ...]."""
    axes = tuple(axis for axis in range(train.ndim) if axis != 1)
    mean = train.astype(np.float64).mean(axis=axes, keepdims=True)
    std = train.astype(np.float64).std(axis=axes, keepdims=True)
    return torch.from_numpy((images - mean) / std).float()


@pytest.mark.parametrize("name, class_folder", [("mnist", "MNIST"),
                                                ("fashion_mnist", "FashionMNIST")])
def test_idx_set_loaded_from_files(tmp_path, name, class_folder):
    arrays = _write_tiny_idx_set(tmp_path, class_folder)

    dataset = load_dataset(name, root=tmp_path)

    assert dataset.input_shape == (1, 28, 28)
    assert dataset.n_classes == 10
    assert dataset.train_x.shape == (20, 1, 28, 28)
    assert dataset.test_x.shape == (10, 1, 28, 28)
    assert dataset.train_x.dtype == torch.float32
    assert dataset.train_y.dtype == torch.int64
    assert dataset.train_y.tolist() == arrays["train_y"].tolist()
    assert dataset.test_y.tolist() == arrays["test_y"].tolist()
    expected_train = _expected_standardised(arrays["train_x"][:, None], arrays["train_x"][:, None])
    expected_test = _expected_standardised(arrays["train_x"][:, None], arrays["test_x"][:, None])
    assert torch.allclose(dataset.train_x, expected_train, atol=1e-5)
    assert torch.allclose(dataset.test_x, expected_test, atol=1e-5)
    torchvision_class = getattr(torchvision.datasets, class_folder)
    assert dataset.classes == list(torchvision_class.classes)


def test_idx_set_subset(tmp_path):
    _write_tiny_idx_set(tmp_path, "MNIST")

    dataset = load_dataset("mnist", root=tmp_path, n_train=10, n_test=4, seed=1)

    assert dataset.train_x.shape == (10, 1, 28, 28)
    assert dataset.train_y.bincount().tolist() == [1] * 10
    assert dataset.test_x.shape == (4, 1, 28, 28)


def test_default_data_folder_under_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))
    _write_tiny_idx_set(tmp_path / "data", "FashionMNIST")

    dataset = load_dataset("fashion_mnist")

    assert dataset.train_x.shape == (20, 1, 28, 28)


def _write_tiny_cifar10(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write CIFAR-10's python pickles: batches of {'data': [N, 3072] uint8, 'labels': [N]}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for index in range(1, 6):
        images = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        labels = [(2 * index + offset) % 10 for offset in range(4)]
        batch = {"batch_label": f"training batch {index} of 5", "data": images,
                 "labels": labels, "filenames": [f"image_{index}_{n}.png" for n in range(4)]}
        (folder / f"data_batch_{index}").write_bytes(pickle.dumps(batch, protocol=2))
        train_x.append(images)
        train_y.extend(labels)

    test_x = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    test_y = [9, 8, 7, 1, 0, 3]
    test_batch = {"batch_label": "testing batch 1 of 1", "data": test_x, "labels": test_y,
                  "filenames": [f"test_{n}.png" for n in range(6)]}
    (folder / "test_batch").write_bytes(pickle.dumps(test_batch, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    meta = {"label_names": names, "num_cases_per_batch": 4, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {"train_x": np.concatenate(train_x).reshape(-1, 3, 32, 32),
            "train_y": np.array(train_y), "test_x": test_x.reshape(-1, 3, 32, 32),
            "test_y": np.array(test_y), "classes": names}


def test_cifar10_loaded_from_files(tmp_path):
    arrays = _write_tiny_cifar10(tmp_path)

    dataset = load_dataset("cifar10", root=tmp_path)

    assert dataset.input_shape == (3, 32, 32)
    assert dataset.train_x.shape == (20, 3, 32, 32)
    assert dataset.test_x.shape == (6, 3, 32, 32)
    assert dataset.train_y.dtype == torch.int64
    assert dataset.train_y.tolist() == arrays["train_y"].tolist()
    assert dataset.test_y.tolist() == arrays["test_y"].tolist()
    assert dataset.classes == arrays["classes"]
    expected_train = _expected_standardised(arrays["train_x"], arrays["train_x"])
    expected_test = _expected_standardised(arrays["train_x"], arrays["test_x"])
    assert torch.allclose(dataset.train_x, expected_train, atol=1e-5)
    assert torch.allclose(dataset.test_x, expected_test, atol=1e-5)


def test_cifar10_reads_like_torchvision(tmp_path, monkeypatch):
    arrays = _write_tiny_cifar10(tmp_path)
    # torchvision checks the MD5 sums of the real files, which tiny files cannot match.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5: True)
    reference = torchvision.datasets.CIFAR10(str(tmp_path), train=False)

    raw = data._load_cifar10(tmp_path, download=False)

    # torchvision stores images as [N, H, W, C].
    assert torch.equal(raw.test_x, torch.from_numpy(reference.data).permute(0, 3, 1, 2))
    assert raw.test_y.tolist() == reference.targets
    assert raw.classes == reference.classes
    assert torch.equal(raw.test_x, torch.from_numpy(arrays["test_x"]))


def test_cifar10_corrupt_file(tmp_path):
    _write_tiny_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02garbage")

    with pytest.raises(RuntimeError, match=r"The CIFAR-10 file .*data_batch_3 is corrupted"):
        load_dataset("cifar10", root=tmp_path)


# ---------------------------------------------------------------------------------------------
# Downloads


@pytest.mark.parametrize("name", DOWNLOADED)
def test_offline_download_fails_fast(tmp_path, name):
    started = time.monotonic()
    with pytest.raises(RuntimeError) as raised:
        load_dataset(name, root=tmp_path)
    elapsed = time.monotonic() - started

    message = str(raised.value)
    assert elapsed < 5
    assert f"Could not download the {name!r} data set into {tmp_path}" in message
    assert "is unreachable" in message
    assert "use an embedded data set instead (digits, mnist1d, spirals, curve)" in message


def test_stalled_network_times_out(tmp_path, monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(60)
        raise OSError("released by the test")

    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.5)
    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match=r"did not answer within 0.5 s.*embedded data set"):
            load_dataset("cifar10", root=tmp_path)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert elapsed < 3


def test_missing_files_without_download(tmp_path):
    with pytest.raises(RuntimeError, match=r"The 'mnist' files are not in .*MNIST.raw and "
                                           r"download=False.*\(digits, mnist1d, spirals, curve\)"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_download_error_restores_timeout(tmp_path, monkeypatch):
    timeouts = []

    def fail_download(self):
        timeouts.append(socket.getdefaulttimeout())
        raise URLError("connection reset")

    monkeypatch.setattr(data, "_unreachable_reason", lambda urls, timeout_s: None)
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", fail_download)
    previous = socket.getdefaulttimeout()

    with pytest.raises(RuntimeError, match=r"Could not download the 'fashion_mnist' data set "
                                           r"into .*: <urlopen error connection reset>"):
        load_dataset("fashion_mnist", root=tmp_path)
    assert timeouts == [data.DOWNLOAD_TIMEOUT_S]
    assert socket.getdefaulttimeout() == previous


def test_download_then_load(tmp_path, monkeypatch):
    downloads = []

    def fake_download(self):
        downloads.append(self.root)
        _write_tiny_idx_set(Path(self.root), "MNIST")

    monkeypatch.setattr(data, "_unreachable_reason", lambda urls, timeout_s: None)
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fake_download)

    first = load_dataset("mnist", root=tmp_path)
    second = load_dataset("mnist", root=tmp_path)

    assert downloads == [str(tmp_path)]
    assert first.train_x.shape == (20, 1, 28, 28)
    assert torch.equal(first.train_x, second.train_x)


def test_probe_targets_torchvision_hosts(monkeypatch):
    tried = []

    def reject_connection(address, timeout=None):
        tried.append(address)
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", reject_connection)

    mirrors = torchvision.datasets.MNIST.mirrors
    reason = data._unreachable_reason(mirrors, 1.0)

    expected = []
    for url in mirrors:
        parsed = urlparse(url)
        expected.append((parsed.hostname, 443 if parsed.scheme == "https" else 80))
    assert sorted(tried) == sorted(expected)
    for host, _ in expected:
        assert f"{host} is unreachable (refused)" in reason
