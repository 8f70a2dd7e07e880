"""The ``alrao-edu`` command: compare Alrao with SGD and Adam, or sweep Alrao's interval.

``alrao-edu compare`` trains Alrao, SGD at a grid of rates and Adam in
lock-step from the same initial weights, prints a table of final test metrics
and writes ``report.html`` (self-contained, opens offline) and
``results.json`` into the output folder. ``alrao-edu sweep`` trains Alrao over
a triangle of intervals ``(10^a, 10^b)`` and writes the heat map of final test
loss. Every argument is checked before training starts: bad input prints one
line on stderr and exits with status 2, and results are written only once
training has finished.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import __version__
from ..training.architectures import ARCHITECTURES
from ..training.compare import (
    DEFAULT_SEEDS,
    DEFAULT_SGD_LRS,
    CompareConfig,
    build_comparison,
    load_config_dataset,
    method_specs,
)
from ..training.data import DATASETS
from ..training.devices import resolve_device
from ..training.runs import Comparison
from ..training.sweep import DEFAULT_EXPONENTS, IntervalGrid, interval_grid, interval_specs
from .report import (
    alrao_versus_sgd,
    format_table,
    render_report,
    render_results,
    summarize,
    write_files_atomically,
)

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2  # bad input, as argparse uses
EXIT_FAILURE = 1  # a failure while loading data or training
EXIT_INTERRUPTED = 130  # stopped with Ctrl-C (128 + SIGINT)

# With 10 epochs the default job (digits, cnn, Alrao, 7 SGD rates, Adam, 3 seeds: 27 runs)
# used 97 s of CPU time (one thread, PyTorch 2.14.1, a 2-core x86 VM). Alrao reached 99 % test
# accuracy in it, so the default comparison is both short and meaningful.
DEFAULT_EPOCHS = 10

# The lessons' networks are small, so a second intra-op thread has little to split. On a
# 2-core CPU busy with other jobs, one thread trained the cnn on digits 4 to 60 times faster per
# step than two, while on a quiet one two threads were only 1.3 times faster
# (PyTorch 2.14.1; docs/benchmarks.md, "One thread or two").
DEFAULT_THREADS = 1
DEFAULT_OUT = {"compare": "runs/compare", "sweep": "runs/sweep"}
REPORT_FILE = "report.html"
RESULTS_FILE = "results.json"


class _OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# ---------------------------------------------------------------------------------------------
# Argument types: each raises ArgumentTypeError with a message that names the value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid learning rate {text!r}: expected a number > 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer >= 1")
    return value


def _split_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        return []
    if any(item == "" for item in items):
        raise argparse.ArgumentTypeError("empty item; expected comma-separated values")
    return items


def _rate_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(_rate(item) for item in _split_list(text))
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"invalid list of learning rates {text!r}: {error}") from None


def _seed_list(text: str) -> tuple[int, ...]:
    seeds = []
    for item in _split_list(text):
        try:
            seeds.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid list of seeds {text!r}: {item!r} is not an integer") from None
        if seeds[-1] < 0:
            raise argparse.ArgumentTypeError(f"invalid list of seeds {text!r}: {item!r} is negative")
    if not seeds:
        raise argparse.ArgumentTypeError("empty list of seeds; expected at least one, such as 0")
    return tuple(seeds)


def _exponent_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(_number(item) for item in _split_list(text))
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"invalid list of exponents {text!r}: {error}") from None
    if not values:
        raise argparse.ArgumentTypeError("empty list of exponents; expected at least one, such as -5,-3,-1,1")
    return values


def _format_list(values: Sequence[float]) -> str:
    return ",".join(f"{value:g}" for value in values)


# ---------------------------------------------------------------------------------------------
# The parser


def _add_common_options(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument(
        "--dataset", default="digits", metavar="NAME",
        help=f"data set to train on: {', '.join(DATASETS)} (default: digits, embedded and offline)",
    )

    parser.add_argument(
        "--arch", default="cnn", metavar="NAME",
        help=f"architecture: {', '.join(ARCHITECTURES)} (default: cnn)",
    )

    parser.add_argument(
        "--width", type=_positive_int, default=1, metavar="W",
        help="multiplier of the hidden units or filters of every layer before the classifier (default: 1)",
    )

    parser.add_argument(
        "--heads", type=_positive_int, default=10, metavar="H",
        help="number of Alrao's classifier heads, log-spaced over the interval (default: 10)",
    )

    parser.add_argument(
        "--epochs", type=_positive_int, default=DEFAULT_EPOCHS, metavar="N",
        help=f"passes over the training set (default: {DEFAULT_EPOCHS})",
    )

    parser.add_argument(
        "--batch-size", type=_positive_int, default=32, metavar="B",
        help="training examples per mini-batch (default: 32)",
    )

    parser.add_argument(
        "--seeds", type=_seed_list, default=DEFAULT_SEEDS if command == "compare" else (0,), metavar="LIST",
        help="comma-separated seeds, one run of every method per seed; a seed fixes the initial weights, "
        f"the mini-batch order and Alrao's rates (default: {_format_list(DEFAULT_SEEDS) if command == 'compare' else '0'})",
    )

    parser.add_argument(
        "--device", default="auto", metavar="DEVICE",
        help="device to train on: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: auto)",
    )

    parser.add_argument(
        "--n-train", type=_positive_int, default=None, metavar="N",
        help="train on a stratified random subset of N training examples (default: all)",
    )

    parser.add_argument(
        "--n-test", type=_positive_int, default=None, metavar="N",
        help="test on a stratified random subset of N test examples (default: all)",
    )

    parser.add_argument(
        "--out", type=Path, default=Path(DEFAULT_OUT[command]), metavar="DIR",
        help=f"output folder for {REPORT_FILE} and {RESULTS_FILE}, created if missing; "
        f"files there are replaced (default: {DEFAULT_OUT[command]})",
    )

    parser.add_argument(
        "--threads", type=_positive_int, default=DEFAULT_THREADS, metavar="N",
        help=f"CPU threads PyTorch uses inside each operation (default: {DEFAULT_THREADS})",
    )

    parser.add_argument(
        "--no-progress", action="store_true",
        help="do not show the progress bar on stderr",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the ``alrao-edu`` argument parser with its ``compare`` and ``sweep`` subcommands."""
    parser = _OneLineErrorParser(
        prog="alrao-edu",
        description="Train Alrao (All Learning Rates At Once) beside SGD and Adam and report the results.",
    )
    parser.add_argument("--version", action="version", version=f"alrao-edu {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compare = commands.add_parser(
        "compare",
        help="train Alrao, SGD at several rates and Adam from the same weights; print a table, write a report",
        description="Train Alrao, SGD at each rate of --sgd-lrs and Adam (rate 1e-3) in lock-step, every "
        "method starting from the same weights for each seed. Prints the final test metrics (mean ± std over "
        f"seeds) and writes DIR/{REPORT_FILE} (self-contained, opens offline) and DIR/{RESULTS_FILE}.",
    )
    _add_common_options(compare, "compare")
    compare.add_argument(
        "--eta-min", type=_rate, default=1e-5, metavar="RATE",
        help="lower end of Alrao's learning-rate interval (default: 1e-5)",
    )
    compare.add_argument(
        "--eta-max", type=_rate, default=10.0, metavar="RATE",
        help="upper end of Alrao's learning-rate interval (default: 10)",
    )
    compare.add_argument(
        "--sgd-lrs", type=_rate_list, default=DEFAULT_SGD_LRS, metavar="LIST",
        help="comma-separated learning rates of the SGD baselines; an empty string trains none "
        f"(default: {_format_list(DEFAULT_SGD_LRS)})",
    )
    compare.add_argument("--no-adam", action="store_true", help="do not train the Adam baseline")

    sweep = commands.add_parser(
        "sweep",
        help="train Alrao over a triangle of intervals (10^a, 10^b); write the heat map of final test loss",
        description="For every pair of exponents a < b from --exponents, train Alrao on the interval "
        "(10^a, 10^b); for a == b, train plain SGD at rate 10^a. Writes the triangle heat map of final "
        f"test loss into DIR/{REPORT_FILE} and the grid into DIR/{RESULTS_FILE}.",
    )
    _add_common_options(sweep, "sweep")
    sweep.add_argument(
        "--exponents", type=_exponent_list, default=DEFAULT_EXPONENTS, metavar="LIST",
        help="comma-separated base-10 exponents of the interval ends, in decades "
        f"(default: {_format_list(DEFAULT_EXPONENTS)}, that is 1e-5 to 10)",
    )
    return parser


# ---------------------------------------------------------------------------------------------
# Checks done before training


def _check_output_folder(out: Path) -> None:
    """Raise ``ValueError`` unless ``out`` is a folder, or can be created as one, that can take the files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"Output folder {str(out)!r} is a file; pass --out a folder path")
    for name in (REPORT_FILE, RESULTS_FILE):
        if (out / name).is_dir():
            raise ValueError(f"{str(out / name)!r} is a folder, so the {name} file cannot be written; pass another --out")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"Output folder {str(out)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"Output folder {str(out)!r} cannot be written: no write permission on {str(existing)!r}")


def _config_from_args(args: argparse.Namespace) -> CompareConfig:
    if args.command == "compare":
        eta_min, eta_max = args.eta_min, args.eta_max
        sgd_lrs, adam = args.sgd_lrs, not args.no_adam
    else:
        # The sweep's widest interval; validating it checks every interval of the grid.
        eta_min, eta_max = 10.0 ** min(args.exponents), 10.0 ** max(args.exponents)
        sgd_lrs, adam = (), False
    return CompareConfig(
        dataset=args.dataset,
        arch=args.arch,
        width=args.width,
        eta_min=eta_min,
        eta_max=eta_max,
        n_heads=args.heads,
        sgd_lrs=sgd_lrs,
        adam=adam,
        seeds=args.seeds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=args.device,
        n_train=args.n_train,
        n_test=args.n_test,
    )


# ---------------------------------------------------------------------------------------------
# Training and output


def _train_with_progress(comparison: Comparison, epochs: int, show: bool) -> float:
    """Train every run to the end, with a tqdm bar on stderr. Returns the training time in seconds."""
    from tqdm.auto import tqdm

    steps_per_epoch = max(run.steps_per_epoch for run in comparison.runs)
    bar = tqdm(
        total=comparison.total_steps, unit="step", desc=f"epoch 1/{epochs}", file=sys.stderr,
        disable=not show, dynamic_ncols=True,
        # In a terminal the bar redraws in place. In a log file each redraw is a new
        # line, so redraw at most every 10 s there.
        mininterval=0.1 if sys.stderr.isatty() else 10.0,
    )

    def advance(current: Comparison) -> None:
        bar.update(1)
        done = current.step_count
        if done % steps_per_epoch == 0 and done < current.total_steps:
            bar.set_description(f"epoch {done // steps_per_epoch + 1}/{epochs}")

    start = time.perf_counter()
    try:
        comparison.train(callback=advance)
    finally:
        bar.close()
    return time.perf_counter() - start


def _grid_text(grid: IntervalGrid) -> str:
    header = ["a \\ b", *(f"{b:g}" for b in grid.highs)]
    rows = []
    for a, losses, diverged, runs in zip(grid.lows, grid.mean_test_loss, grid.diverged, grid.runs):
        cells = []
        for loss, n_diverged, n_runs in zip(losses, diverged, runs):
            if loss is not None:
                cells.append(f"{loss:.3f}" + ("*" if n_diverged else ""))
            else:
                cells.append("diverged" if n_runs else "")
        rows.append([f"{a:g}", *cells])
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in [header, *rows]]
    return "\n".join(lines)


def _prepare(args: argparse.Namespace) -> tuple[CompareConfig, list, object]:
    """Check every argument without loading data; raise ``ValueError`` for the first bad one."""
    config = _config_from_args(args)
    config.validate()
    _check_output_folder(args.out)
    if args.command == "sweep":
        specs = interval_specs(args.exponents, n_heads=args.heads)
    else:
        specs = method_specs(config)
    return config, specs, resolve_device(config.device)


def _train_and_write(args: argparse.Namespace, config: CompareConfig, specs: list, device, dataset) -> int:
    torch.set_num_threads(args.threads)
    comparison = build_comparison(config, specs=specs, dataset=dataset)
    print(
        f"{dataset.name}: {len(dataset.train_x)} training and {len(dataset.test_x)} test examples; "
        f"{config.arch} (width {config.width}); {_count(len(specs), 'method')} x "
        f"{_count(len(config.seeds), 'seed')} = {_count(len(comparison.runs), 'run')} of "
        f"{_count(config.epochs, 'epoch')} on {device}",
        flush=True,
    )
    seconds = _train_with_progress(comparison, config.epochs, show=not args.no_progress)
    records = comparison.records

    saved_config = {"command": args.command, **config.to_dict(), "resolved_device": str(device), "threads": args.threads}
    if args.command == "sweep":
        for key in ("eta_min", "eta_max", "sgd_lrs", "adam"):
            saved_config.pop(key)
        saved_config["exponents"] = list(args.exponents)
    saved_config["training_seconds"] = round(seconds, 1)

    summaries = summarize(records)
    print(f"\nTrained in {seconds:.0f} s. Final test metrics, mean ± std over seeds:\n")
    print(format_table(summaries))
    extra = {}
    if args.command == "sweep":
        grid = interval_grid(records)
        extra["sweep"] = grid.to_dict()
        print("\nFinal test loss, rows a = log10 eta_min, columns b = log10 eta_max (* some seeds diverged):\n")
        print(_grid_text(grid))
    else:
        line = alrao_versus_sgd(summaries)
        if line is not None:
            print(f"\n{line}")

    title = "Alrao interval sweep" if args.command == "sweep" else "Alrao compared with SGD and Adam"
    report = render_report(records, saved_config, title=title, sweep=args.command == "sweep")
    results = render_results(records, saved_config, extra=extra)
    write_files_atomically({args.out / REPORT_FILE: report, args.out / RESULTS_FILE: results})
    print(f"\nReport:  {args.out / REPORT_FILE}\nResults: {args.out / RESULTS_FILE}")
    return 0


# Options whose value may start with "-": negative exponents, and negative rates, which
# should get the "expected a number > 0" message, not argparse's "expected one argument".
_OPTIONS_WITH_SIGNED_VALUES = ("--exponents", "--sgd-lrs", "--eta-min", "--eta-max", "--seeds")


def _attach_signed_values(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--exponents -5,-3`` as ``--exponents=-5,-3``.

    argparse reads a value such as ``-5,-3`` as an unknown option, because only
    single negative numbers are recognised as values.
    """
    result: list[str] = []
    index = 0
    while index < len(argv):
        item = argv[index]
        if item in _OPTIONS_WITH_SIGNED_VALUES and index + 1 < len(argv) and argv[index + 1].startswith("-"):
            result.append(f"{item}={argv[index + 1]}")
            index += 2
        else:
            result.append(item)
            index += 1
    return result


def _count(n: int, noun: str) -> str:
    """Return ``"1 seed"`` or ``"3 seeds"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``alrao-edu`` command with ``argv`` (default: ``sys.argv[1:]``). Returns the exit status.

    Exit status: 0 on success, 2 for bad input (nothing is trained or
    written), 1 when a data set cannot be loaded or the results cannot be
    written, 130 when interrupted (nothing is written).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(_attach_signed_values(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit:  # --help, --version, or an argument error already printed
        return exit.code
    prog = f"alrao-edu {args.command}"

    try:
        config, specs, device = _prepare(args)
        dataset = load_config_dataset(config)
    except ValueError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, OSError) as error:
        print(f"{prog}: failed to load data set {args.dataset!r}: {error}", file=sys.stderr)
        return EXIT_FAILURE

    try:
        return _train_and_write(args, config, specs, device, dataset)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; no results written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        print(f"{prog}: failed to write the results into {str(args.out)!r}: {error}", file=sys.stderr)
        return EXIT_FAILURE
