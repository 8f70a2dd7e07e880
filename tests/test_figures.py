"""Figure builders on real records: Alrao, SGD (one run diverged) and Adam on digits."""

import math

import plotly.graph_objects as go
import pytest
import torch

from alrao_edu.training import Comparison, MethodSpec, build_model, load_dataset
from alrao_edu.views import figures

# SGD at rate 10 on the MLP overflows at step 9 with this seed on the full digits training set.
DIVERGING_SEED = 2


@pytest.fixture(scope="module")
def records():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: a second thread only adds waiting
    try:
        digits = load_dataset("digits")
        specs = [MethodSpec("alrao"), MethodSpec("sgd", lr=0.1), MethodSpec("sgd", lr=10.0), MethodSpec("adam")]
        comparison = Comparison(
            specs,
            lambda seed: build_model("mlp", digits.input_shape, digits.n_outputs, seed=seed),
            digits,
            seeds=[DIVERGING_SEED],
            epochs=2,
            device="cpu",
        )
        comparison.train()
    finally:
        torch.set_num_threads(threads)
    result = comparison.records
    assert result[2].diverged, "SGD 10 was expected to diverge with this seed"
    return result


def _names(figure):
    return [trace.name for trace in figure.data]


def test_loss_figure_traces(records):
    figure = figures.loss_figure(records, smoothing=0.5)

    assert isinstance(figure, go.Figure)
    labels = ["Alrao [1e-05, 10]", "SGD 0.1", "SGD 10", "Adam"]
    expected = [name for label in labels for name in (label, f"{label} test", f"{label} diverged")]
    assert _names(figure) == expected
    assert figure.layout.yaxis.type == "log"
    assert "step" in figure.layout.xaxis.title.text
    assert "loss" in figure.layout.yaxis.title.text

    alrao_train, alrao_test, alrao_marker = figure.data[0:3]
    assert list(alrao_train.x) == list(range(1, len(records[0].train_loss) + 1))
    assert alrao_train.y[0] == pytest.approx(records[0].train_loss[0])
    assert list(alrao_test.x) == records[0].eval_steps
    assert len(alrao_marker.x) == 0, "a run that did not diverge has an empty marker"

    diverged_at = records[2].diverged_at
    marker = figure.data[8]
    assert list(marker.x) == [diverged_at]
    assert list(marker.text) == [f"diverged at step {diverged_at}"]
    assert figure.data[6].x[-1] == diverged_at - 1, "the diverged run's curve ends before the step that overflowed"


def test_loss_figure_names_seeds():
    record_a = _fake_record(seed=0)
    record_b = _fake_record(seed=1)
    figure = figures.loss_figure([record_a, record_b])
    assert _names(figure)[0] == "SGD 0.1, seed 0"
    assert _names(figure)[3] == "SGD 0.1, seed 1"


def test_loss_figure_thins_long_curves():
    record = _fake_record(steps=5000)
    figure = figures.loss_figure([record], max_points=500)
    xs = list(figure.data[0].x)
    assert len(xs) <= 501
    assert xs[0] == 1
    assert xs[-1] == 5000


def test_accuracy_figure_traces(records):
    figure = figures.accuracy_figure(records)

    labels = ["Alrao [1e-05, 10]", "SGD 0.1", "SGD 10", "Adam"]
    assert _names(figure) == [name for label in labels for name in (label, f"{label} diverged")]
    assert list(figure.data[0].x) == [1.0, 2.0]
    assert figure.data[0].y[-1] == pytest.approx(100 * records[0].final_test_accuracy)
    assert "%" in figure.layout.yaxis.title.text
    assert "epoch" in figure.layout.xaxis.title.text
    diverged_at = records[2].diverged_at
    if records[2].test_accuracy:
        assert list(figure.data[5].text) == [f"diverged at step {diverged_at}"]
    else:  # diverged before the first evaluation: no point to mark, a note instead
        assert len(figure.data[5].x) == 0
        notes = [annotation.text for annotation in figure.layout.annotations]
        assert notes == [f"SGD 10: diverged at step {diverged_at}"]
        assert figure.layout.annotations[0].x == pytest.approx(diverged_at / records[2].steps_per_epoch)


def test_rate_histogram_figure(records):
    alrao = records[0]
    figure = figures.rate_histogram_figure(alrao, bins=10)

    assert _names(figure) == ["all layers", *alrao.feature_layers]
    assert figure.layout.xaxis.type == "log"
    assert [trace.visible for trace in figure.data] == [True] + [False] * len(alrao.feature_layers)
    all_layers = figure.data[0]
    edges = list(all_layers.x)
    assert len(edges) == 11
    assert edges[0] == pytest.approx(1e-5)
    assert edges[-1] == pytest.approx(10.0)
    ratios = [math.log10(b / a) for a, b in zip(edges, edges[1:])]
    assert ratios == pytest.approx([0.6] * 10), "bins are even in log10"
    n_features = sum(len(rates) for rates in alrao.feature_rates.values())
    assert sum(all_layers.y[:-1]) == n_features
    assert len(figure.layout.updatemenus[0].buttons) == 1 + len(alrao.feature_layers)

    one_layer = figures.rate_histogram_figure(alrao, layer=alrao.feature_layers[0])
    assert [trace.visible for trace in one_layer.data][1] is True
    with pytest.raises(ValueError, match="Unknown layer 'nope'"):
        figures.rate_histogram_figure(alrao, layer="nope")
    with pytest.raises(ValueError, match="needs an Alrao run"):
        figures.rate_histogram_figure(records[1])


def test_switch_posterior_figure(records):
    alrao = records[0]
    figure = figures.switch_posterior_figure(alrao)

    names = _names(figure)
    assert names[0] == "head 0 (η = 1e-05)"
    assert names[9] == "head 9 (η = 10)"
    assert names[10] == "head rate scale"
    assert len(figure.data[0].x) == len(alrao.train_loss) + 1, "step 0 (the prior) and every step"
    final = [trace.y[-1] for trace in figure.data[:10]]
    assert sum(final) == pytest.approx(1.0)
    assert figure.data[0].line.color != figure.data[9].line.color
    ticks = list(figure.data[10].marker.colorbar.ticktext)
    assert ticks[0] == "η_min = 1e-05"
    assert ticks[-1] == "η_max = 10"


def test_head_loss_figure(records):
    alrao = records[0]
    figure = figures.head_loss_figure(alrao, smoothing=0.0)

    assert len(figure.data) == 11
    assert figure.layout.yaxis.type == "log"
    first_step = alrao.head_losses[0]
    for head in range(10):
        value = first_step[head]
        if math.isfinite(value):
            assert figure.data[head].y[0] == pytest.approx(value)


def test_rate_movement_figure(records):
    alrao = records[0]
    figure = figures.rate_movement_figure(alrao)

    assert _names(figure) == alrao.feature_layers
    assert figure.layout.xaxis.type == "log"
    for trace, layer in zip(figure.data, alrao.feature_layers):
        assert list(trace.x) == alrao.feature_rates[layer]
        assert len(trace.y) == len(alrao.feature_rates[layer])
    assert "step" in figure.layout.title.subtitle.text


def test_sweep_heatmap_figure(records):
    figure = figures.sweep_heatmap_figure(records)

    (heatmap,) = figure.data
    assert heatmap.name == "final test loss"
    assert list(heatmap.y) == [-5, -1, 1]
    assert list(heatmap.x) == [-1, 1]
    # Row a=-5 contains Alrao [1e-5, 10] at b=1, row a=-1 SGD 0.1, row a=1 SGD 10 (diverged).
    assert heatmap.z[0][1] == pytest.approx(records[0].final_test_loss)
    assert heatmap.z[0][0] is None
    assert heatmap.z[1][0] == pytest.approx(records[1].final_test_loss)
    assert heatmap.z[2][1] is None
    assert heatmap.text[2][1] == "diverged"
    assert heatmap.text[2][0] == ""


def test_smooth_skips_non_finite():
    assert figures.smooth([1.0, 3.0], 0.0) == [1.0, 3.0]
    assert figures.smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0]), "bias-corrected"
    smoothed = figures.smooth([1.0, math.inf, 1.0], 0.5)
    assert smoothed[1] is None
    assert smoothed[2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Invalid smoothing weight"):
        figures.smooth([1.0], 1.0)


def _fake_record(*, seed=0, steps=20):
    from alrao_edu.training.records import RunRecord

    record = RunRecord.start(
        MethodSpec("sgd", lr=0.1), seed=seed, dataset="digits", steps_per_epoch=10, epochs=steps // 10, batch_size=32
    )
    record.train_loss = [1.0 / (step + 1) for step in range(steps)]
    for step in range(10, steps + 1, 10):
        record.add_evaluation(step, {"test_loss": 0.5, "test_accuracy": 0.9})
    return record
