"""The dashboard driven as a user drives it: set controls, press Train and Stop, read the plots.

Without a notebook front end, ipywidgets sends its messages nowhere, but every widget keeps
its state in Python, so the tests read what a browser would draw.
"""

import math
import threading
import time

import pytest
import torch

import alrao_edu as ae
from alrao_edu.views import dashboard as dashboard_module
from alrao_edu.views.live import LiveFigure, Throttle
from alrao_edu.views.settings import TrainingSettings

# Small digits subsets keep each training to a few seconds on a CPU.
QUICK = dict(n_train=160, n_test=100, epochs=1)


def traces_by_name(figure) -> dict:
    return {trace.name: trace for trace in figure.data}


def has_data(trace) -> bool:
    return trace.y is not None and any(value is not None for value in trace.y)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def steps_done(dashboard) -> int:
    return dashboard.comparison.step_count if dashboard.comparison is not None else 0


def assert_records_whole(dashboard) -> None:
    """Every run stopped between two steps: no record contains part of a step."""
    steps = dashboard.comparison.step_count
    for record in dashboard.records:
        assert len(record.train_loss) == steps, record.label
        assert all(step <= steps for step in record.eval_steps), record.label
        assert len(record.test_loss) == len(record.eval_steps), record.label
        if record.method == "alrao":
            assert len(record.switch_posterior) == steps + 1
            assert len(record.head_losses) == steps
            assert len(record.feature_movement) == len(record.eval_steps)
            assert math.isclose(sum(record.switch_posterior[-1]), 1.0, rel_tol=1e-4)


@pytest.fixture
def trained():
    """A dashboard after one blocking training of Alrao, SGD 0.1 and Adam on the small CNN."""
    dashboard = ae.Dashboard(blocking=True, **QUICK)
    controls = dashboard.controls
    controls.interval.value = (-4.0, 1.0)
    controls.n_heads.value = 5
    controls.sgd_rates[0.01].value = False
    controls.sgd_rates[0.1].value = True
    controls.adam.value = True
    dashboard.train_button.click()
    return dashboard


def test_dashboard_displays_as_widget():
    dashboard = ae.Dashboard(**QUICK)
    bundle = dashboard._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert dashboard.status_text.startswith("Ready")
    assert not dashboard.train_button.disabled
    assert dashboard.stop_button.disabled


def test_device_choices_are_present_devices():
    dashboard = ae.Dashboard(**QUICK)
    options = list(dashboard.controls.device.options)
    assert options[0] == "auto"
    assert options[1:] == ae.training.available_devices()


def test_blocking_train_fills_every_figure(trained):
    assert trained.last_error is None
    assert trained.status_text.startswith("Finished"), trained.status_text
    labels = [record.label for record in trained.records]
    assert labels == ["Alrao [0.0001, 10]", "SGD 0.1", "Adam"]
    assert trained.progress.value == trained.progress.max == trained.comparison.total_steps

    for figure_name in ("loss", "accuracy"):
        traces = traces_by_name(trained.figures[figure_name])
        for label in labels:
            assert has_data(traces[label]), (figure_name, label)
    assert has_data(traces_by_name(trained.figures["loss"])["SGD 0.1 test"])

    alrao = trained.records[0]
    for figure_name in ("switch", "heads"):
        heads = [trace for trace in trained.figures[figure_name].data if "(η =" in trace.name]
        assert len(heads) == 5, figure_name
        assert all(has_data(trace) for trace in heads), figure_name
    assert len(trained.figures["switch"].data[0].x) == len(alrao.switch_posterior)

    rates = trained.figures["rates"]
    assert rates.layout.xaxis.type == "log"
    assert [trace.name for trace in rates.data if trace.visible] == ["all layers"]
    assert has_data(traces_by_name(rates)["all layers"])
    movement = trained.figures["movement"]
    assert [trace.name for trace in movement.data] == alrao.feature_layers
    assert all(has_data(trace) for trace in movement.data)


def test_layer_picker_shows_one_layer(trained):
    layers = trained.records[0].feature_layers
    assert list(trained.layer_picker.options) == ["all layers", *layers]
    trained.layer_picker.value = layers[1]
    visible = [trace.name for trace in trained.figures["rates"].data if trace.visible]
    assert visible == [layers[1]]


def test_layer_picker_error_reaches_status(trained, monkeypatch):
    def broken(record, **options):
        raise KeyError("features.9")

    monkeypatch.setattr(dashboard_module.figures, "rate_histogram_figure", broken)
    trained.layer_picker.value = trained.records[0].feature_layers[0]
    assert trained.status_text.startswith("Could not draw the layer features.")
    assert "KeyError" in trained.status_text


def test_changed_controls_keep_finished_records(trained):
    records = trained.records
    steps = len(records[0].train_loss)
    loss_x = list(trained.figures["loss"].data[0].x)

    trained.controls.epochs.value = 7
    trained.controls.arch.value = "mlp"
    trained.controls.sgd_rates[1.0].value = True
    trained.controls.interval.value = (-3.0, 0.0)

    assert trained.records is records
    assert len(records[0].train_loss) == steps
    assert list(trained.figures["loss"].data[0].x) == loss_x
    assert trained.status_text.startswith("Finished")


def test_stop_ends_training_within_a_second():
    dashboard = ae.Dashboard(arch="mlp", n_train=200, n_test=100, epochs=200, sgd_rates=(0.1,))
    dashboard.train_button.click()
    assert dashboard.is_training
    assert wait_until(lambda: steps_done(dashboard) >= 3, timeout=60)
    assert dashboard.stop_button.disabled is False

    pressed = time.perf_counter()
    dashboard.stop_button.click()
    assert dashboard.wait(timeout=5)
    assert time.perf_counter() - pressed < 1.0

    assert dashboard.last_error is None
    assert dashboard.status_text.startswith("Stopped after step"), dashboard.status_text
    assert dashboard.comparison.step_count < dashboard.comparison.total_steps
    assert_records_whole(dashboard)
    steps = dashboard.comparison.step_count
    assert dashboard.progress.value == steps
    assert traces_by_name(dashboard.figures["loss"])["SGD 0.1"].x[-1] == steps
    assert not dashboard.train_button.disabled
    assert dashboard.stop_button.disabled


def test_stop_leaves_records_as_they_were():
    dashboard = ae.Dashboard(arch="mlp", n_train=200, n_test=100, epochs=200, sgd_rates=())
    dashboard.train_button.click()
    assert wait_until(lambda: steps_done(dashboard) >= 2, timeout=60)
    dashboard.stop_button.click()
    assert dashboard.wait(timeout=5)
    lengths = [len(record.train_loss) for record in dashboard.records]
    time.sleep(0.3)
    assert [len(record.train_loss) for record in dashboard.records] == lengths


def test_train_twice_starts_one_training():
    dashboard = ae.Dashboard(arch="mlp", n_train=200, n_test=100, epochs=200, sgd_rates=())
    dashboard.train_button.click()
    dashboard.train_button.click()
    assert dashboard.run() is False
    trainers = [thread for thread in threading.enumerate() if thread.name == "alrao-edu-dashboard"]
    assert len(trainers) == 1
    assert wait_until(lambda: dashboard.comparison is not None, timeout=30)
    comparison = dashboard.comparison
    dashboard.stop_button.click()
    assert dashboard.wait(timeout=5)
    assert dashboard.comparison is comparison
    assert [record.label for record in dashboard.records] == ["Alrao [1e-05, 10]", "Adam"]


@pytest.mark.parametrize(
    "eta_min, eta_max, reason",
    [(10.0, 0.001, "inverted"), (0.1, 0.1, "empty"), (0.0, 1.0, "positive"), (-1.0, 1.0, "positive")],
)
def test_invalid_interval_disables_train(eta_min, eta_max, reason):
    dashboard = ae.Dashboard(blocking=True, **QUICK)
    dashboard.controls.eta_min.value = eta_min
    dashboard.controls.eta_max.value = eta_max
    assert dashboard.train_button.disabled
    assert reason in dashboard.status_text

    dashboard.train_button.click()  # a disabled button's click() still calls the handler
    assert dashboard.records == []
    assert dashboard.comparison is None
    assert not dashboard.is_training

    dashboard.controls.set_interval(1e-3, 1.0)
    assert not dashboard.train_button.disabled
    assert dashboard.status_text.startswith("Ready")


def test_interval_slider_and_boxes_agree():
    dashboard = ae.Dashboard(**QUICK)
    controls = dashboard.controls
    controls.interval.value = (-2.0, 0.5)
    assert controls.eta_min.value == 0.01
    assert controls.eta_max.value == 3.16
    assert "2.5 decades" in controls.interval_readout.value

    controls.set_interval(1e-4, 1.0)
    assert controls.interval.value == (-4.0, 0.0)
    assert controls.settings().eta_min == 1e-4


def test_architecture_that_does_not_fit_disables_train():
    dashboard = ae.Dashboard(**QUICK)
    dashboard.controls.dataset.value = "curve"
    assert dashboard.train_button.disabled
    assert "does not fit" in dashboard.status_text
    assert "mlp" in dashboard.status_text
    dashboard.controls.arch.value = "mlp"
    assert not dashboard.train_button.disabled


def test_diverging_baseline_is_marked_and_others_go_on():
    # Plain SGD at rate 10 on an MLP without normalisation: with these settings the
    # loss overflows to inf at step 13 (checked with torch 2.14 on a CPU).
    dashboard = ae.Dashboard(
        blocking=True, arch="mlp", n_train=200, n_test=100, epochs=1, batch_size=8, sgd_rates=(10.0,), adam=True
    )
    dashboard.run()
    records = {record.label: record for record in dashboard.records}
    diverged = records["SGD 10"]
    assert diverged.diverged_at is not None
    assert f"SGD 10 diverged at step {diverged.diverged_at}" in dashboard.status_text
    assert dashboard.last_error is None

    total = dashboard.comparison.total_steps
    assert len(records["Adam"].train_loss) == total
    assert len(records["Alrao [1e-05, 10]"].train_loss) == total
    mark = traces_by_name(dashboard.figures["loss"])["SGD 10 diverged"]
    assert list(mark.text) == [f"diverged at step {diverged.diverged_at}"]


def test_offline_dataset_error_reaches_status(monkeypatch):
    def offline(name, **options):
        raise RuntimeError(f"Could not download {name}: no network. Use an embedded set: digits, mnist1d.")

    monkeypatch.setattr(dashboard_module, "load_dataset", offline)
    dashboard = ae.Dashboard(dataset="mnist", **QUICK)
    dashboard.train_button.click()
    assert dashboard.wait(timeout=10)
    assert dashboard.status_text.startswith("Could not load the data set mnist: Could not download mnist")
    assert isinstance(dashboard.last_error, RuntimeError)
    assert not dashboard.train_button.disabled


def test_build_error_reaches_status(monkeypatch):
    def unbuildable(arch, input_shape, n_outputs, **options):
        raise ValueError(f"architecture {arch!r} needs an input of shape (C, H, W); got {tuple(input_shape)}")

    monkeypatch.setattr(dashboard_module, "build_model", unbuildable)
    dashboard = ae.Dashboard(blocking=True, **QUICK)
    dashboard.train_button.click()
    assert dashboard.status_text.startswith("Could not build the cnn runs for digits: architecture 'cnn' needs")
    assert dashboard.records == []


def test_out_of_memory_reaches_status(monkeypatch):
    class OutOfMemoryComparison(dashboard_module.Comparison):
        def step(self):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(dashboard_module, "Comparison", OutOfMemoryComparison)
    errors = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    dashboard = ae.Dashboard(**QUICK)
    dashboard.train_button.click()
    assert dashboard.wait(timeout=30)
    assert "ran out of memory" in dashboard.status_text
    assert "smaller batch size" in dashboard.status_text
    assert errors == []
    assert not dashboard.is_training
    assert not dashboard.train_button.disabled


def test_invalid_defaults_raise():
    with pytest.raises(ValueError, match="Invalid epochs: 0"):
        ae.Dashboard(epochs=0)
    with pytest.raises(ValueError, match="Unknown data set 'cifar100'"):
        ae.Dashboard(dataset="cifar100")
    with pytest.raises(ValueError, match="Device 'tpu' is not available"):
        ae.Dashboard(device="tpu")
    with pytest.raises(TypeError):
        ae.Dashboard(learning_rate=0.1)


def test_settings_specs_order():
    settings = TrainingSettings(sgd_rates=(0.1, 0.01, 0.1), adam=True, n_heads=3)
    assert [spec.label for spec in settings.specs()] == ["Alrao [1e-05, 10]", "SGD 0.01", "SGD 0.1", "Adam"]


def test_throttle_keeps_drawing_within_budget():
    now = [0.0]
    throttle = Throttle(min_interval=0.25, budget=0.1, clock=lambda: now[0])
    assert throttle.due()
    throttle.record(0.0, 0.01)  # a cheap redraw: the interval rules
    now[0] = 0.2
    assert not throttle.due()
    now[0] = 0.27
    assert throttle.due()
    throttle.record(0.27, 0.47)  # 0.2 s of drawing: wait 1.8 s so drawing stays at 10 %
    now[0] = 2.0
    assert not throttle.due()
    now[0] = 2.28
    assert throttle.due()


def test_live_figure_skips_unchanged_signature():
    import plotly.graph_objects as go

    points = [[1.0, 2.0]]
    live = LiveFigure(lambda: go.Figure(go.Scatter(y=list(points[0]), name="a")))
    assert live.redraw(signature=1)
    assert not live.redraw(signature=1)
    points[0] = [3.0, 4.0, 5.0]
    assert live.redraw(signature=2)
    assert list(live.widget.data[0].y) == [3.0, 4.0, 5.0]


def test_live_figure_replaces_changed_traces():
    import plotly.graph_objects as go

    names = ["a"]
    live = LiveFigure(lambda: go.Figure([go.Scatter(y=[1.0], name=name) for name in names]))
    names[:] = ["a", "b", "c"]
    live.redraw()
    assert [trace.name for trace in live.widget.data] == ["a", "b", "c"]


def test_cpu_threads_restored_after_training():
    before = torch.get_num_threads()
    dashboard = ae.Dashboard(blocking=True, arch="mlp", cpu_threads=1, sgd_rates=(), adam=False, **QUICK)
    dashboard.run()
    assert dashboard.last_error is None
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="Invalid cpu_threads: 0"):
        ae.Dashboard(cpu_threads=0)
