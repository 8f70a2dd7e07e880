"""A sweep of Alrao over learning-rate intervals ``(10^a, 10^b)``, ``a <= b``.

For every pair of exponents ``a < b`` from a list, Alrao trains with
``eta_min = 10^a`` and ``eta_max = 10^b``; on the diagonal ``a == b`` plain
SGD trains at rate ``10^a``. The final test losses form a triangle heat map,
like the figure of Blier, Wolinski and Ollivier (2019) that shows Alrao
working as soon as its interval contains one good rate. All runs of a seed
start from the same weights and train in lock-step, as in a comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .records import RunRecord
from .runs import MethodSpec

__all__ = ["DEFAULT_EXPONENTS", "IntervalGrid", "interval_grid", "interval_specs"]

# One exponent per decade over Alrao's default interval [1e-5, 10]: 7 rates, 28 intervals.
DEFAULT_EXPONENTS = (-5, -4, -3, -2, -1, 0, 1)


def interval_specs(exponents: Sequence[float], *, n_heads: int = 10) -> list[MethodSpec]:
    """List the sweep's methods: SGD at ``10^a`` when ``a == b``, Alrao on ``(10^a, 10^b)`` when ``a < b``.

    The order is by ``a``, then ``b``. Raises ``ValueError`` for an empty list,
    a repeated exponent or one that is not a finite number.
    """
    values = list(exponents)
    if not values:
        raise ValueError("No exponent given; expected a list such as -5,-3,-1,1")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"Invalid exponent: {value!r}; expected a finite number")
    if len(set(values)) != len(values):
        raise ValueError(f"Duplicate exponent in {values}; give each exponent once")

    values.sort()
    specs = []
    for i, low in enumerate(values):
        for high in values[i:]:
            if low == high:
                specs.append(MethodSpec("sgd", lr=10.0**low))
            else:
                specs.append(MethodSpec("alrao", eta_min=10.0**low, eta_max=10.0**high, n_heads=n_heads))
    return specs


@dataclass
class IntervalGrid:
    """Final test losses of a sweep, one cell per interval ``(10^a, 10^b)``.

    ``mean_test_loss[i][j]`` is the mean over the seeds that did not diverge
    for ``a = lows[i]`` and ``b = highs[j]``. It is ``None`` below the diagonal
    (``a > b``), where no run exists, and where every seed diverged.
    ``diverged[i][j]`` and ``runs[i][j]`` count the diverged runs and all runs.
    """

    lows: list[float]
    highs: list[float]
    mean_test_loss: list[list[float | None]]
    diverged: list[list[int]]
    runs: list[list[int]]

    def to_dict(self) -> dict:
        return {
            "a": self.lows,
            "b": self.highs,
            "mean_test_loss": self.mean_test_loss,
            "diverged": self.diverged,
            "runs": self.runs,
        }


def _interval_exponents(record: RunRecord) -> tuple[float, float] | None:
    if record.method == "alrao":
        low, high = record.eta_min, record.eta_max
    elif record.method == "sgd":
        low = high = record.lr
    else:
        return None
    # Rounded so that 10.0**-3 and 1e-3 land in the same cell.
    return round(math.log10(low), 6), round(math.log10(high), 6)


def interval_grid(records: Sequence[RunRecord]) -> IntervalGrid:
    """Group Alrao and SGD records by interval and average their final test loss over seeds.

    SGD at rate ``r`` is the interval ``(r, r)``. Adam records are ignored.
    """
    cells: dict[tuple[float, float], list[RunRecord]] = {}
    for record in records:
        key = _interval_exponents(record)
        if key is not None:
            cells.setdefault(key, []).append(record)
    lows = sorted({a for a, _ in cells})
    highs = sorted({b for _, b in cells})

    mean_test_loss, diverged, runs = [], [], []
    for a in lows:
        loss_row, diverged_row, runs_row = [], [], []
        for b in highs:
            cell = cells.get((a, b), [])
            losses = [
                r.final_test_loss
                for r in cell
                if not r.diverged and r.final_test_loss is not None and math.isfinite(r.final_test_loss)
            ]
            loss_row.append(sum(losses) / len(losses) if losses else None)
            diverged_row.append(sum(r.diverged for r in cell))
            runs_row.append(len(cell))
        mean_test_loss.append(loss_row)
        diverged.append(diverged_row)
        runs.append(runs_row)
    return IntervalGrid(lows, highs, mean_test_loss, diverged, runs)
