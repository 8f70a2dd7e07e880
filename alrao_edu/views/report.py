"""Results of a comparison or a sweep: a summary table, a JSON file and a self-contained HTML report.

The HTML report embeds plotly.js inline, so it opens offline. Both files are
written atomically: a temporary file in the same folder, then ``os.replace``,
so a reader never sees half a file and an interrupted run leaves the old
files as they were.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
import statistics
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import torch

from ..training.records import RunRecord
from ..training.runs import ADAM_DEFAULT_LR
from . import figures

__all__ = [
    "MethodSummary",
    "alrao_versus_sgd",
    "format_table",
    "render_report",
    "results_dict",
    "summarize",
    "write_files_atomically",
    "write_report",
    "write_results",
]

METHOD_NAMES = {"alrao": "Alrao", "sgd": "SGD", "adam": "Adam"}


# ---------------------------------------------------------------------------------------------
# The summary table


@dataclass
class MethodSummary:
    """Final test metrics of one method (one label) over its seeds.

    Means and standard deviations are over the runs that did not diverge. The
    standard deviation is the sample one (``statistics.stdev``): 0 for a single
    run, ``None`` when no run finished. ``diverged_at`` lists the step at which
    each diverged run stopped.
    """

    label: str
    method: str
    rate: str
    lr: float | None
    seeds: list[int] = field(default_factory=list)
    diverged_at: list[int] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)  # runs that did not diverge
    test_accuracy: list[float] = field(default_factory=list)  # classification, same runs
    test_mse: list[float] = field(default_factory=list)  # regression, same runs

    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    @staticmethod
    def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def test_loss_mean_std(self) -> tuple[float | None, float | None]:
        return self._mean_std(self.test_loss)

    @property
    def test_accuracy_mean_std(self) -> tuple[float | None, float | None]:
        return self._mean_std(self.test_accuracy)

    @property
    def test_mse_mean_std(self) -> tuple[float | None, float | None]:
        return self._mean_std(self.test_mse)


def _package_version() -> str:
    # Imported here: alrao_edu/__init__.py imports the views before it defines __version__.
    from .. import __version__

    return __version__


def _rate_text(record: RunRecord) -> str:
    if record.method == "alrao":
        return f"[{record.eta_min:g}, {record.eta_max:g}]"
    if record.method == "sgd":
        return f"{record.lr:g}"
    if record.lr in (None, ADAM_DEFAULT_LR):
        return f"{ADAM_DEFAULT_LR:g} (default)"
    return f"{record.lr:g}"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def summarize(records: Sequence[RunRecord]) -> list[MethodSummary]:
    """Group records by label (method and rate), in the order of first appearance."""
    summaries: dict[str, MethodSummary] = {}
    for record in records:
        summary = summaries.get(record.label)
        if summary is None:
            lr = ADAM_DEFAULT_LR if record.method == "adam" and record.lr is None else record.lr
            summary = MethodSummary(record.label, record.method, _rate_text(record), lr)
            summaries[record.label] = summary
        summary.seeds.append(record.seed)
        if record.diverged:
            summary.diverged_at.append(record.diverged_at)
            continue
        if _finite(record.final_test_loss):
            summary.test_loss.append(record.final_test_loss)
        if record.test_accuracy:
            summary.test_accuracy.append(record.test_accuracy[-1])
        if record.test_mse and _finite(record.test_mse[-1]):
            summary.test_mse.append(record.test_mse[-1])
    return list(summaries.values())


def _mean_std_text(mean: float | None, std: float | None, scale: float = 1.0, digits: int = 3, style: str = "f") -> str:
    if mean is None:
        return "—"
    return f"{scale * mean:.{digits}{style}} ± {scale * std:.{digits}{style}}"


def _diverged_text(summary: MethodSummary) -> str:
    if not summary.diverged_at:
        return f"0/{summary.n_runs}"
    steps = ", ".join(str(step) for step in summary.diverged_at)
    return f"{len(summary.diverged_at)}/{summary.n_runs} (at step {steps})"


def _table_rows(summaries: Sequence[MethodSummary]) -> tuple[list[str], list[list[str]]]:
    regression = any(s.test_mse for s in summaries) and not any(s.test_accuracy for s in summaries)
    metric = "test MSE" if regression else "test accuracy (%)"
    header = ["method", "rate", "runs", "test loss", metric, "diverged"]
    rows = []
    for summary in summaries:
        if regression:
            metric_text = _mean_std_text(*summary.test_mse_mean_std, digits=4, style="g")  # spans decades
        else:
            metric_text = _mean_std_text(*summary.test_accuracy_mean_std, scale=100.0, digits=1)
        rows.append([
            METHOD_NAMES.get(summary.method, summary.method),
            summary.rate,
            str(summary.n_runs),
            _mean_std_text(*summary.test_loss_mean_std),
            metric_text,
            _diverged_text(summary),
        ])
    return header, rows


def format_table(summaries: Sequence[MethodSummary]) -> str:
    """Format the summaries as a plain-text table, one line per method, mean ± std over seeds."""
    header, rows = _table_rows(summaries)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _sgd_ranking_key(summary: MethodSummary) -> tuple[int, float]:
    # Fewer diverged runs first, then higher mean accuracy: a rate that diverged
    # for some seed ranks below every rate that never did.
    mean, _ = summary.test_accuracy_mean_std
    return len(summary.diverged_at), -(mean if mean is not None else -math.inf)


def alrao_versus_sgd(summaries: Sequence[MethodSummary]) -> str | None:
    """Compare the first Alrao method's mean test accuracy with the best and the median SGD rate.

    SGD rates are ranked by the number of diverged runs, then by mean test
    accuracy. The median of an even number of rates is the mean of the two
    middle rates' accuracies. Returns ``None`` without an Alrao method, SGD
    rates or accuracies (regression).
    """
    alrao = next((s for s in summaries if s.method == "alrao"), None)
    sgd = sorted((s for s in summaries if s.method == "sgd"), key=_sgd_ranking_key)
    if alrao is None or not sgd or alrao.test_accuracy_mean_std[0] is None:
        return None
    alrao_accuracy = 100 * alrao.test_accuracy_mean_std[0]
    best = sgd[0]
    if best.test_accuracy_mean_std[0] is None:
        return None
    best_accuracy = 100 * best.test_accuracy_mean_std[0]

    middle = [sgd[(len(sgd) - 1) // 2], sgd[len(sgd) // 2]]
    middle_accuracies = [s.test_accuracy_mean_std[0] for s in middle]
    median_text = middle[0].rate if middle[0] is middle[1] else f"{middle[0].rate} and {middle[1].rate}"
    if any(value is None for value in middle_accuracies):
        median_part = f"the median SGD rate ({median_text}) diverged for every seed"
    else:
        median_accuracy = 100 * statistics.fmean(middle_accuracies)
        median_part = (
            f"{alrao_accuracy - median_accuracy:+.1f} points from the median SGD rate "
            f"({median_text}: {median_accuracy:.1f} %)"
        )
    return (
        f"{alrao.label}: mean test accuracy {alrao_accuracy:.1f} %, "
        f"{alrao_accuracy - best_accuracy:+.1f} points from the best SGD rate ({best.rate}: {best_accuracy:.1f} %), "
        f"{median_part}."
    )


# ---------------------------------------------------------------------------------------------
# JSON results


def _json_ready(value):
    """Replace non-finite floats by ``None`` (JSON has no inf or nan), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def _run_entry(record: RunRecord) -> dict:
    lr = ADAM_DEFAULT_LR if record.method == "adam" and record.lr is None else record.lr
    test_loss = test_accuracy = None
    if not record.diverged:
        test_loss = record.final_test_loss
        test_accuracy = record.test_accuracy[-1] if record.test_accuracy else None
    return {
        "method": record.method,
        "label": record.label,
        "lr": lr,
        "eta_min": record.eta_min,
        "eta_max": record.eta_max,
        "seed": record.seed,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "diverged": record.diverged,
        "diverged_at": record.diverged_at,
        "record": record.to_dict(),
    }


def results_dict(records: Sequence[RunRecord], config: Mapping, *, extra: Mapping | None = None) -> dict:
    """Build the JSON document of a comparison or sweep.

    Keys: ``alrao_edu_version``, ``torch_version``, ``created`` (UTC, ISO
    8601), ``config`` (as given), ``runs`` and any ``extra`` keys. Non-finite
    numbers become ``None``. Each run has:

    * ``method``, ``label`` and ``seed``;
    * ``lr``: the rate of SGD or Adam, ``None`` for Alrao;
    * ``eta_min`` and ``eta_max``: Alrao's interval, ``None`` for the others;
    * ``test_loss`` and ``test_accuracy``: final values, ``None`` for a diverged run;
    * ``diverged`` and ``diverged_at``;
    * ``record``: every curve the run recorded, as :meth:`RunRecord.to_dict`.
    """
    document = {
        "alrao_edu_version": _package_version(),
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": dict(config),
        "runs": [_run_entry(record) for record in records],
    }
    document.update(extra or {})
    return _json_ready(document)


def render_results(records: Sequence[RunRecord], config: Mapping, *, extra: Mapping | None = None) -> str:
    """Return :func:`results_dict` as JSON text (strict JSON: no NaN or Infinity)."""
    return json.dumps(results_dict(records, config, extra=extra), allow_nan=False, indent=1) + "\n"


def write_results(path: str | os.PathLike, records: Sequence[RunRecord], config: Mapping, *, extra: Mapping | None = None) -> Path:
    """Write :func:`results_dict` as JSON to ``path``, atomically. Returns the path."""
    path = Path(path)
    write_files_atomically({path: render_results(records, config, extra=extra)})
    return path


# ---------------------------------------------------------------------------------------------
# The HTML report

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #ccc; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.diverged td { color: #a00; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
.figure { margin: 1.5em 0; }
"""


def _config_html(config: Mapping) -> str:
    items = "".join(
        f"<dt>{html.escape(str(key))}</dt><dd>{html.escape(str(value))}</dd>" for key, value in config.items()
    )
    return f"<dl>{items}</dl>"


def _table_html(summaries: Sequence[MethodSummary]) -> str:
    header, rows = _table_rows(summaries)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = []
    for summary, row in zip(summaries, rows):
        cells = "".join(
            f'<td class="number">{html.escape(cell)}</td>' if index in (2, 3, 4) else f"<td>{html.escape(cell)}</td>"
            for index, cell in enumerate(row)
        )
        row_class = ' class="diverged"' if summary.diverged_at else ""
        body.append(f"<tr{row_class}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _report_figures(records: Sequence[RunRecord], *, sweep: bool) -> list[tuple[str, go.Figure]]:
    """List the report's sections and figures, in page order."""
    sections: list[tuple[str, go.Figure]] = []
    if sweep:
        sections.append(("Final test loss over intervals", figures.sweep_heatmap_figure(records)))
    first_seed = records[0].seed
    first_seed_records = [r for r in records if r.seed == first_seed]
    sections.append((f"Loss curves (seed {first_seed})", figures.loss_figure(first_seed_records)))
    sections.append(("Test accuracy (every seed)", figures.accuracy_figure(records)))

    alrao = [r for r in records if r.method == "alrao"]
    if alrao:
        # In a sweep, show the widest interval: the one with the most to choose from.
        shown = max(alrao, key=lambda r: r.eta_max / r.eta_min) if sweep else alrao[0]
        name = figures.run_name(shown)
        sections.append((f"Per-feature learning rates ({name})", figures.rate_histogram_figure(shown)))
        sections.append((f"Switch posterior ({name})", figures.switch_posterior_figure(shown)))
        sections.append((f"Loss of each head ({name})", figures.head_loss_figure(shown)))
        sections.append((f"Which features learned ({name})", figures.rate_movement_figure(shown)))
    return sections


def render_report(
    records: Sequence[RunRecord],
    config: Mapping,
    *,
    title: str = "Alrao compared with SGD and Adam",
    sweep: bool = False,
) -> str:
    """Return the HTML text of the report: the configuration, the summary table and every figure.

    plotly.js is embedded once, inline, before the first figure, so the file
    opens offline. With ``sweep=True`` the report starts with the triangle
    heat map of :func:`figures.sweep_heatmap_figure`. The Alrao figures show
    the first Alrao run (in a sweep, the one with the widest interval).
    """
    records = list(records)
    if not records:
        raise ValueError("No run records to report; train at least one run")
    summaries = summarize(records)
    comparison = alrao_versus_sgd(summaries) if not sweep else None

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>alrao-edu {html.escape(_package_version())}, PyTorch {html.escape(torch.__version__)}, "
        f"written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2>Configuration</h2>",
        _config_html(config),
        "<h2>Final test metrics</h2>",
        "<p>Mean ± sample standard deviation over the seeds whose run did not diverge.</p>",
        _table_html(summaries),
    ]
    if comparison is not None:
        parts.append(f"<p>{html.escape(comparison)}</p>")

    for index, (heading, figure) in enumerate(_report_figures(records, sweep=sweep)):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        figure_html = figure.to_html(full_html=False, include_plotlyjs=index == 0, default_height=520)
        parts.append(f'<div class="figure">{figure_html}</div>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    path: str | os.PathLike,
    records: Sequence[RunRecord],
    config: Mapping,
    *,
    title: str = "Alrao compared with SGD and Adam",
    sweep: bool = False,
) -> Path:
    """Write :func:`render_report` to ``path`` as one self-contained HTML file, atomically. Returns the path."""
    path = Path(path)
    write_files_atomically({path: render_report(records, config, title=title, sweep=sweep)})
    return path


def write_files_atomically(texts: Mapping[str | os.PathLike, str]) -> None:
    """Write several text files so that each one appears whole or not at all.

    Every text goes to a temporary file in its target's folder first, and only
    once all are written does ``os.replace`` move each into place. If a write
    fails, the temporary files are removed and no target changes. Folders are
    created as needed.
    """
    pending: list[tuple[str, Path]] = []
    try:
        for target, text in texts.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            # os.open with mode 0o666 honours the umask, as a plain open() would; a
            # tempfile.NamedTemporaryFile would leave the result readable by its owner only.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            pending.append((str(temporary), target))
            with open(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        for temporary, target in pending:
            os.replace(temporary, target)
    finally:
        for temporary, _ in pending:
            if os.path.exists(temporary):
                os.remove(temporary)
