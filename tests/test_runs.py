"""Lock-step comparisons on the embedded digits: shared initial weights, shared batches, divergence."""

import copy

import pytest
import torch

from alrao_edu.training import Comparison, MethodSpec, build_model, load_dataset
from alrao_edu.training.compare import CompareConfig, build_comparison, method_specs
from alrao_edu.training.sweep import interval_grid, interval_specs

# With this seed, SGD at rate 10 on the MLP (no normalisation) overflows at step 9 of the
# full digits training set with batches of 32. With seed 1 the same run stays finite.
DIVERGING_SEED = 2


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny networks: a second intra-op thread only adds waiting, a lot of it on a busy CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small_digits():
    return load_dataset("digits", n_train=160, n_test=80)


def _classifier_name(network):
    return [name for name, module in network.named_modules() if isinstance(module, torch.nn.Linear)][-1]


def test_comparison_shares_initial_weights(small_digits):
    built = {}

    def factory(seed):
        network = build_model("cnn", small_digits.input_shape, small_digits.n_outputs, seed=seed)
        built[seed] = copy.deepcopy(network)
        return network

    specs = [MethodSpec("alrao"), MethodSpec("sgd", lr=0.1), MethodSpec("adam")]
    comparison = Comparison(specs, factory, small_digits, seeds=[0, 1], epochs=1, device="cpu")

    assert len(comparison.runs) == 6
    assert not torch.equal(
        next(iter(built[0].parameters())), next(iter(built[1].parameters()))
    ), "different seeds should start from different weights"
    for run in comparison.runs:
        reference = built[run.seed].state_dict()
        classifier = _classifier_name(built[run.seed])
        if run.spec.method == "alrao":
            weights = run.model.preclassifier.state_dict()
            expected = {k: v for k, v in reference.items() if not k.startswith(classifier + ".")}
        else:
            weights = run.model.state_dict()
            expected = reference
        assert weights.keys() == expected.keys(), run.record.label
        for name, value in expected.items():
            assert torch.equal(weights[name].cpu(), value), f"{run.record.label}, seed {run.seed}: {name} differs"


def test_comparison_same_seed_same_batches(small_digits):
    comparison = build_comparison(
        CompareConfig(dataset="digits", arch="mlp", sgd_lrs=(0.1,), seeds=(0, 1), epochs=2, device="cpu"),
        dataset=small_digits,
    )
    seen = {id(run): [] for run in comparison.runs}
    for run in comparison.runs:
        module = run.model.preclassifier if run.spec.method == "alrao" else run.model

        def record_batch(module, inputs, run=run):
            if module.training:  # evaluation passes the test set through the same module
                seen[id(run)].append(inputs[0].detach().clone())

        module.register_forward_pre_hook(record_batch)

    comparison.train()

    by_seed = {}
    for run in comparison.runs:
        batches = seen[id(run)]
        assert len(batches) == run.total_steps == run.step_count, run.record.label
        by_seed.setdefault(run.seed, []).append((run.record.label, batches))
    for seed, runs in by_seed.items():
        first_label, first = runs[0]
        for label, batches in runs[1:]:
            for step, (a, b) in enumerate(zip(first, batches), start=1):
                assert torch.equal(a, b), f"seed {seed}, step {step}: {label} saw another batch than {first_label}"
    assert not torch.equal(by_seed[0][0][1][0], by_seed[1][0][1][0]), "seeds 0 and 1 should shuffle differently"


def test_divergence_marks_run_others_finish(digits):
    specs = [MethodSpec("sgd", lr=10.0), MethodSpec("sgd", lr=0.1), MethodSpec("alrao")]
    comparison = Comparison(
        specs,
        lambda seed: build_model("mlp", digits.input_shape, digits.n_outputs, seed=seed),
        digits,
        seeds=[DIVERGING_SEED],
        epochs=1,
        device="cpu",
    )

    assert comparison.train() is True
    diverged, sgd, alrao = comparison.runs
    assert diverged.record.diverged_at is not None, f"SGD 10 stayed finite: {diverged.record.train_loss[-5:]}"
    assert diverged.finished
    assert diverged.step_count == diverged.record.diverged_at - 1
    assert diverged.step() is False
    for run in (sgd, alrao):
        assert run.record.diverged_at is None, run.record.label
        assert run.step_count == run.total_steps, run.record.label
        assert len(run.record.test_loss) == 1, run.record.label
    assert alrao.record.final_test_accuracy > 0.2


def test_comparison_stop_between_steps(small_digits):
    comparison = build_comparison(
        CompareConfig(dataset="digits", arch="mlp", sgd_lrs=(0.1,), adam=False, seeds=(0,), epochs=3, device="cpu"),
        dataset=small_digits,
    )

    def stop_after_three(current):
        if current.step_count == 3:
            current.stop()

    assert comparison.train(callback=stop_after_three) is False
    assert [run.step_count for run in comparison.runs] == [3, 3]


def test_method_specs_order():
    config = CompareConfig(sgd_lrs=(0.01, 1.0), adam=True)
    assert [spec.label for spec in method_specs(config)] == ["Alrao [1e-05, 10]", "SGD 0.01", "SGD 1", "Adam"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "nope"}, "Unknown data set 'nope'"),
        ({"arch": "nope"}, "Unknown architecture 'nope'"),
        ({"eta_min": 1.0, "eta_max": 0.1}, "eta_min 1 is above eta_max 0.1"),
        ({"eta_min": 0.0}, "Invalid eta_min"),
        ({"sgd_lrs": (0.1, -1.0)}, "Invalid SGD learning rate: -1.0"),
        ({"seeds": ()}, "No seed given"),
        ({"seeds": (0, 0)}, "Duplicate seed"),
        ({"epochs": 0}, "Invalid epochs"),
        ({"dataset": "spirals", "arch": "cnn"}, "architecture 'cnn' needs an input of shape"),
        ({"device": "nodevice"}, "Device 'nodevice' is not available"),
    ],
)
def test_compare_config_rejects(changes, message):
    with pytest.raises(ValueError, match=message):
        CompareConfig(**changes).validate()


def test_interval_specs_triangle():
    specs = interval_specs([1, -1, -3], n_heads=4)
    labels = [spec.label for spec in specs]
    assert labels == [
        "SGD 0.001",
        "Alrao [0.001, 0.1]",
        "Alrao [0.001, 10]",
        "SGD 0.1",
        "Alrao [0.1, 10]",
        "SGD 10",
    ]
    assert all(spec.n_heads == 4 for spec in specs if spec.method == "alrao")
    with pytest.raises(ValueError, match="Duplicate exponent"):
        interval_specs([-1, -1])


def test_sweep_tiny_grid(small_digits):
    config = CompareConfig(dataset="digits", arch="mlp", seeds=(0,), epochs=1, device="cpu")
    specs = interval_specs([-2, 0], n_heads=3)
    comparison = build_comparison(config, specs=specs, dataset=small_digits)
    comparison.train()

    grid = interval_grid(comparison.records)
    assert grid.lows == [-2, 0]
    assert grid.highs == [-2, 0]
    assert grid.runs == [[1, 1], [0, 1]]
    assert grid.mean_test_loss[1][0] is None, "below the diagonal there is no interval"
    for a, b in ((0, 0), (0, 1), (1, 1)):
        assert grid.mean_test_loss[a][b] > 0, (a, b)
