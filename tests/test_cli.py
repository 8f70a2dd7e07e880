"""The alrao-edu command: errors and exit codes, the JSON schema, the offline HTML report, the sweep."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alrao_edu
from alrao_edu.training.data import DATASETS
from alrao_edu.training.runs import Comparison
from alrao_edu.views import cli

# Small and fast: an MLP on a stratified subset of digits, one epoch.
TINY = ["--arch", "mlp", "--n-train", "120", "--n-test", "60", "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    # The command sets PyTorch's thread count; give the other test modules theirs back.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    """One tiny comparison through the command: two seeds, SGD at 0.1 and 10, Adam, Alrao."""
    out = tmp_path_factory.mktemp("compare") / "out"
    status = cli.main(["compare", *TINY, "--seeds", "0,1", "--sgd-lrs", "0.1,10", "--heads", "4", "--out", str(out)])
    return status, out


def _error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {captured.err!r}"
    return lines[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dataset", "nope"], "Unknown data set 'nope'"),
        (["--arch", "nope"], "Unknown architecture 'nope'"),
        (["--eta-min", "10", "--eta-max", "1e-5"], "eta_min 10 is above eta_max 1e-05"),
        (["--eta-min", "0"], "invalid learning rate '0'"),
        (["--eta-max", "-1"], "invalid learning rate '-1'"),
        (["--sgd-lrs", "1e-3,-0.1"], "invalid learning rate '-0.1'"),
        (["--sgd-lrs", "1e-3,abc"], "'abc' is not a number"),
        (["--sgd-lrs", "1e-3,,1"], "empty item"),
        (["--seeds", "0,x"], "'x' is not an integer"),
        (["--seeds", "0,0"], "Duplicate seed"),
        (["--epochs", "0"], "expected an integer >= 1"),
        (["--batch-size", "two"], "'two' is not an integer"),
        (["--device", "nodevice"], "Device 'nodevice' is not available"),
        (["--dataset", "spirals", "--arch", "cnn"], "architecture 'cnn' needs an input of shape"),
        (["--n-train", "100000"], "n_train=100000 is larger than"),
    ],
)
def test_compare_bad_input_exits_2(arguments, message, tmp_path, capsys):
    out = tmp_path / "out"
    status = cli.main(["compare", *arguments, "--out", str(out)])

    assert status == 2
    line = _error_line(capsys)
    assert line.startswith("alrao-edu compare: error: ")
    assert message in line
    assert not out.exists(), "nothing may be written for bad input"


def test_missing_command_exits_2(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in _error_line(capsys)


def test_output_folder_is_file(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")

    for out in (blocker, blocker / "inside"):
        assert cli.main(["compare", *TINY, "--out", str(out)]) == 2
        line = _error_line(capsys)
        assert "is a file" in line, line
    assert blocker.read_text() == "not a folder"


def test_sweep_bad_exponents(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["sweep", "--exponents", "-1,-1", "--out", str(out)]) == 2
    assert "Duplicate exponent" in _error_line(capsys)
    assert cli.main(["sweep", "--exponents", "-3,x", "--out", str(out)]) == 2
    assert "'x' is not a number" in _error_line(capsys)
    assert not out.exists()


def test_module_entry_point_exit_code(tmp_path):
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "alrao_edu", "compare", "--dataset", "nope", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"alrao-edu compare: error: Unknown data set 'nope'; valid names are: {', '.join(DATASETS)}"
    ]
    assert completed.stdout == ""
    assert not out.exists()


def test_help_documents_every_option(capsys):
    for command in ("compare", "sweep"):
        assert cli.main([command, "--help"]) == 0
        text = capsys.readouterr().out
        parser = cli.build_parser()
        subparser = parser._subparsers._group_actions[0].choices[command]
        for action in subparser._actions:
            assert action.help, f"{command} {action.option_strings} has no help text"
        assert "--eta-min RATE" in text or command == "sweep"
        assert "(default: " in text


def test_compare_writes_both_files(compare_run):
    status, out = compare_run
    assert status == 0
    assert (out / "report.html").is_file()
    assert (out / "results.json").is_file()
    leftovers = [name for name in os.listdir(out) if name.endswith(".tmp")]
    assert leftovers == []


def test_compare_table_output(tmp_path, capsys):
    out = tmp_path / "out"
    status = cli.main(["compare", *TINY, "--seeds", "0", "--sgd-lrs", "0.1", "--no-adam", "--heads", "2", "--out", str(out)])

    assert status == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("method"))
    assert re.split(r"\s{2,}", header) == ["method", "rate", "runs", "test loss", "test accuracy (%)", "diverged"]
    assert re.search(r"^Alrao\s+\[1e-05, 10\]\s+1\s+\d+\.\d{3} ± 0\.000", printed, re.MULTILINE)
    assert re.search(r"^SGD\s+0\.1\s+1\s+", printed, re.MULTILINE)
    assert "points from the best SGD rate (0.1" in printed
    assert f"Report:  {out / 'report.html'}" in printed


def test_results_json_schema(compare_run):
    _, out = compare_run
    document = json.loads((out / "results.json").read_text())

    assert document["alrao_edu_version"] == alrao_edu.__version__
    assert isinstance(document["created"], str)
    config = document["config"]
    assert config["command"] == "compare"
    assert config["dataset"] == "digits"
    assert config["arch"] == "mlp"
    assert config["sgd_lrs"] == [0.1, 10.0]
    assert config["seeds"] == [0, 1]
    assert config["n_heads"] == 4
    assert config["adam"] is True

    runs = document["runs"]
    assert [(run["method"], run["seed"]) for run in runs] == [
        (method, seed) for seed in (0, 1) for method in ("alrao", "sgd", "sgd", "adam")
    ]
    for run in runs:
        assert isinstance(run["method"], str)
        assert isinstance(run["seed"], int)
        assert isinstance(run["diverged"], bool)
        assert run["lr"] is None if run["method"] == "alrao" else isinstance(run["lr"], float)
        if run["diverged"]:
            assert isinstance(run["diverged_at"], int)
            assert run["test_loss"] is None
            assert run["test_accuracy"] is None
        else:
            assert run["diverged_at"] is None
            assert isinstance(run["test_loss"], float)
            assert 0.0 <= run["test_accuracy"] <= 1.0
        record = run["record"]
        assert len(record["train_loss"]) == record["steps_per_epoch"] or run["diverged"]
        assert isinstance(record["test_loss"], list)
        assert isinstance(record["eval_steps"], list)
    alrao = runs[0]
    assert (alrao["eta_min"], alrao["eta_max"]) == (1e-05, 10.0)
    assert len(alrao["record"]["switch_posterior"]) == len(alrao["record"]["train_loss"]) + 1
    assert len(alrao["record"]["head_learning_rates"]) == 4
    assert alrao["record"]["feature_rates"].keys() == alrao["record"]["feature_movement"][-1].keys()
    assert runs[3]["lr"] == 0.001, "Adam's rate is its default, written out"


def test_results_json_is_strict(compare_run):
    _, out = compare_run
    text = (out / "results.json").read_text()
    assert "NaN" not in text
    assert "Infinity" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


def test_report_contains_figures_offline(compare_run):
    _, out = compare_run
    text = (out / "report.html").read_text()

    assert not re.search(r"<script[^>]+src=[\"']?https?:", text), "the report must not load scripts from the network"
    assert re.search(r"plotly\.js v\d+\.\d+", text), "the plotly.js source is embedded"
    assert len(text) > 1_000_000, "plotly.js is embedded inline, so the file is several MB"
    assert text.count('class="plotly-graph-div"') == 6
    for title in (
        "Loss of every run",
        "Test accuracy",
        "Per-feature learning rates",
        "Switch posterior over the heads",
        "Training loss of each head",
        "Which features learned",
    ):
        assert title in text, title
    for trace in ("Alrao [1e-05, 10]", "SGD 0.1", "SGD 10", "Adam", "head 0 (", "head rate scale", "all layers"):
        assert trace in text, trace
    assert "<table>" in text
    assert "Mean ± sample standard deviation" in text


def test_interrupt_writes_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Comparison, "step", interrupted)
    out = tmp_path / "out"

    assert cli.main(["compare", *TINY, "--seeds", "0", "--sgd-lrs", "0.1", "--out", str(out)]) == 130
    assert "interrupted; no results written" in capsys.readouterr().err
    assert not out.exists()


def test_sweep_writes_heatmap(tmp_path, capsys):
    out = tmp_path / "sweep"
    status = cli.main(["sweep", *TINY, "--exponents", "-2,0", "--heads", "3", "--out", str(out)])

    assert status == 0
    printed = capsys.readouterr().out
    assert "rows a = log10 eta_min" in printed
    document = json.loads((out / "results.json").read_text())
    assert document["config"]["exponents"] == [-2.0, 0.0]
    assert "sgd_lrs" not in document["config"]
    assert [run["label"] for run in document["runs"]] == ["SGD 0.01", "Alrao [0.01, 1]", "SGD 1"]
    grid = document["sweep"]
    assert grid["a"] == [-2.0, 0.0]
    assert grid["b"] == [-2.0, 0.0]
    assert grid["runs"] == [[1, 1], [0, 1]]
    assert grid["mean_test_loss"][1][0] is None
    report = (out / "report.html").read_text()
    assert "Final test loss over learning-rate intervals" in report
    assert '"type":"heatmap"' in report.replace(" ", "")
