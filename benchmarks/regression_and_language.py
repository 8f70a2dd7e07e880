"""Compare Alrao with the best SGD rate and Adam on regression and on a character-level language model.

Two tasks, each trained in lock-step from the same initial weights for every method:

* ``curve``: the package's MLP (two hidden layers of 128 ReLU units) on the noisy 1-D ``curve`` set,
  1,000 training and 500 test points, batch 32, 40 epochs, seeds 0, 1 and 2, Gaussian likelihood
  with ``sigma2 = 1``. Alrao draws its rates in [1e-5, 10] with 10 heads. SGD runs at 1e-4 to 1,
  one rate per decade. Adam runs at its default rate 1e-3.
* ``text``: ``CharLanguageModel`` (embedding of 32, one LSTM layer of 128 units) on the prose of
  Python's language reference (``TextCorpus.python_docs()``), 32 streams of 64 characters per
  step, gradient norm of the pre-classifier clipped to 0.25, 10 epochs, seed 0. Alrao draws its
  rates in [1e-3, 100] with 10 heads, the interval of the authors' LSTM script. SGD runs at 0.3,
  1, 3, 10 and 30. Adam runs at 1e-3.

"Best SGD" is the rate with the lowest mean final test loss (negative log-likelihood) over the
seeds. It is picked on the test set, which favours SGD over the two methods that need no choice.
The script prints one Markdown table of Alrao, the best SGD rate and Adam, then every SGD rate.
For Alrao on ``curve`` it also prints, per seed, the test MSE of the mixture mean and that of the
head with the largest switch weight. The two differ when a head that runs away with a too-large
rate still has a finite loss: the switch keeps a small weight on it, which pulls the mean.

Run from the repository root:

    python benchmarks/regression_and_language.py [--quick] [--threads N]

``--quick`` trains 5 epochs on ``curve`` with one seed and 1 epoch on the first 60,000 characters
of the text, to check that the script runs.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from alrao_edu.training import (
    CharLanguageModel,
    Comparison,
    LanguageComparison,
    MethodSpec,
    TextCorpus,
    build_model,
    load_dataset,
)
from alrao_edu.training.records import RunRecord

CURVE_SGD_LRS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
TEXT_SGD_LRS = (0.3, 1.0, 3.0, 10.0, 30.0)


@dataclass
class Summary:
    """Final metrics of one method over its seeds."""

    label: str
    records: list[RunRecord]

    def _final(self, values_of) -> list[float]:
        return [values_of(r)[-1] for r in self.records if not r.diverged and values_of(r)]

    @property
    def n_diverged(self) -> int:
        return sum(r.diverged for r in self.records)

    def mean(self, values_of) -> float:
        finals = self._final(values_of)
        return statistics.fmean(finals) if finals else math.inf

    def text(self, values_of, digits: int) -> str:
        finals = self._final(values_of)
        if not finals:
            return f"diverged ({self.n_diverged}/{len(self.records)})"
        text = f"{statistics.fmean(finals):.{digits}g}"
        if len(finals) > 1:
            text += f" ± {statistics.pstdev(finals):.2g}"
        if self.n_diverged:
            text += f" ({self.n_diverged}/{len(self.records)} diverged)"
        return text


def _summaries(records: list[RunRecord]) -> list[Summary]:
    by_label: dict[str, list[RunRecord]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record)
    return [Summary(label, group) for label, group in by_label.items()]


def _test_loss(record: RunRecord) -> list[float]:
    return record.test_loss


def _test_mse(record: RunRecord) -> list[float]:
    return record.test_mse


def _test_bpc(record: RunRecord) -> list[float]:
    return record.test_bpc


def _train_bpc(record: RunRecord) -> list[float]:
    return [loss / math.log(2) for loss in record.epoch_train_loss]


def _heaviest_head_mse(run, dataset) -> float:
    """Return the test MSE of the head with the largest switch weight of an Alrao run."""
    with torch.no_grad():
        run.model.eval()
        means = run.model.head_outputs(dataset.test_x.to(run.device)).cpu()  # [N, H, 1]
    head = int(run.model.switch.posterior.argmax())
    return float((means[:, head] - dataset.test_y).pow(2).mean())


def run_curve(epochs: int, seeds: tuple[int, ...]) -> tuple[list[Summary], list[float]]:
    """Train Alrao, SGD at every rate of ``CURVE_SGD_LRS`` and Adam on ``curve``.

    Returns the summaries and, for each seed, the test MSE of Alrao's head with the largest
    switch weight.
    """
    dataset = load_dataset("curve")
    specs = [MethodSpec("alrao", eta_min=1e-5, eta_max=10.0, n_heads=10)]
    specs += [MethodSpec("sgd", lr=lr) for lr in CURVE_SGD_LRS]
    specs.append(MethodSpec("adam"))
    comparison = Comparison(
        specs, lambda seed: build_model("mlp", (1,), 1, seed=seed), dataset, seeds=seeds, epochs=epochs, device="cpu"
    )
    comparison.train()
    heaviest = [_heaviest_head_mse(run, dataset) for run in comparison.runs if run.spec.method == "alrao"]
    return _summaries(comparison.records), heaviest


def run_text(epochs: int, seeds: tuple[int, ...], max_chars: int | None) -> tuple[list[Summary], TextCorpus]:
    """Train Alrao, SGD at every rate of ``TEXT_SGD_LRS`` and Adam on the Python documentation."""
    corpus = TextCorpus.python_docs(max_chars=max_chars)
    specs = [MethodSpec("alrao", eta_min=1e-3, eta_max=100.0, n_heads=10)]
    specs += [MethodSpec("sgd", lr=lr) for lr in TEXT_SGD_LRS]
    specs.append(MethodSpec("adam"))
    comparison = LanguageComparison(
        specs,
        lambda seed: CharLanguageModel(corpus.vocab_size, embedding_dim=32, hidden_size=128),
        corpus,
        seeds=seeds,
        epochs=epochs,
        batch_size=32,
        bptt=64,
        clip=0.25,
        device="cpu",
    )

    def progress(comparison: LanguageComparison) -> None:
        run = comparison.runs[0]
        if comparison.step_count % run.steps_per_epoch == 0:
            print(f"  text: epoch {comparison.step_count // run.steps_per_epoch} of {epochs} done", file=sys.stderr)

    comparison.train(progress)
    return _summaries(comparison.records), corpus


def _best_sgd(summaries: list[Summary]) -> Summary:
    sgd = [s for s in summaries if s.records[0].method == "sgd"]
    return min(sgd, key=lambda s: s.mean(_test_loss))


def _pick(summaries: list[Summary], method: str) -> Summary:
    return next(s for s in summaries if s.records[0].method == method)


def _values_text(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.fmean(values):.3g} ± {statistics.pstdev(values):.2g}"


def format_tables(curve: list[Summary], text: list[Summary], heaviest: list[float]) -> str:
    """Return the main table (Alrao, best SGD, Adam) and the table of every SGD rate, in Markdown."""
    rows = [
        ("Alrao", _pick(curve, "alrao"), _pick(text, "alrao")),
        ("best SGD", _best_sgd(curve), _best_sgd(text)),
        ("Adam", _pick(curve, "adam"), _pick(text, "adam")),
    ]
    lines = [
        "| method | curve: setting | curve: test MSE | curve: test NLL (nats) "
        "| text: setting | text: test bpc | text: train bpc, last epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, on_curve, on_text in rows:
        lines.append(
            f"| {name} | {on_curve.label} | {on_curve.text(_test_mse, 3)} | {on_curve.text(_test_loss, 4)} "
            f"| {on_text.label} | {on_text.text(_test_bpc, 3)} | {on_text.text(_train_bpc, 3)} |"
        )
    alrao_mse = ", ".join(f"{value:.3g}" for value in _pick(curve, "alrao")._final(_test_mse))
    lines += [
        "",
        f"curve, Alrao per seed: test MSE of the mixture mean {alrao_mse}; test MSE of the head with "
        f"the largest switch weight {', '.join(f'{value:.3g}' for value in heaviest)} "
        f"(mean {_values_text(heaviest)}).",
    ]

    lines += ["", "Every SGD rate:", "", "| task | rate | test MSE or bpc | test NLL (nats) |", "|---|---|---|---|"]
    for task, summaries, metric in (("curve", curve, _test_mse), ("text", text, _test_bpc)):
        for summary in summaries:
            if summary.records[0].method == "sgd":
                lines.append(
                    f"| {task} | {summary.records[0].lr:g} | {summary.text(metric, 3)} | {summary.text(_test_loss, 4)} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="train briefly, to check that the script runs")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads PyTorch uses in each operation (default: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    curve_epochs, curve_seeds = (5, (0,)) if args.quick else (40, (0, 1, 2))
    text_epochs, text_seeds, max_chars = (1, (0,), 60_000) if args.quick else (10, (0,), None)

    start = time.perf_counter()
    print("curve: training ...", file=sys.stderr)
    curve, heaviest = run_curve(curve_epochs, curve_seeds)
    curve_seconds = time.perf_counter() - start
    print("text: training ...", file=sys.stderr)
    text, corpus = run_text(text_epochs, text_seeds, max_chars)
    text_seconds = time.perf_counter() - start - curve_seconds

    print(format_tables(curve, text, heaviest))
    print()
    print(
        f"curve: {curve_epochs} epochs, seeds {', '.join(map(str, curve_seeds))}, {curve_seconds:.0f} s. "
        f"text: {corpus!r}, unigram entropy of the test part {corpus.unigram_entropy_bits('test'):.2f} bits, "
        f"{text_epochs} epoch(s), seeds {', '.join(map(str, text_seeds))}, {text_seconds:.0f} s."
    )
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, {args.threads} thread(s), "
        f"{platform.machine()} CPU"
    )


if __name__ == "__main__":
    main()
