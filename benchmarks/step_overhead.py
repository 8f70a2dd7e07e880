"""Measure what one Alrao training step costs beside one plain SGD step.

For each network, one plain SGD step (forward, cross-entropy, backward,
``torch.optim.SGD.step``) and one Alrao step (forward of the pre-classifier
and 10 heads, ``training_loss``, backward, ``AlraoSGD.step``,
``update_switch``) are timed on the same random batch. The two methods
alternate step by step, and the order within each pair alternates too, so
that machine noise hits both alike. The script prints the median step times,
their ratio, and how much memory the per-feature rates take.

On a machine shared with other work, wall-clock times with several threads
can swing by a factor of ten or more. ``--threads 1 --clock cpu`` counts only the CPU
time of this process, so its figures are steadier there.

Run from the repository root:

    python benchmarks/step_overhead.py [--threads N] [--clock wall|cpu] [--flush-denormal] [--steps N]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

import alrao_edu as ae

N_HEADS = 10


@dataclass
class Case:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample
    n_classes: int
    batch_size: int


def _mlp(n_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, n_classes)
    )


def _bn_cnn() -> nn.Module:
    """Three 3x3 convolutions (32, 64, 64 filters) with BatchNorm, ReLU and pooling, then a linear layer."""
    layers: list[nn.Module] = []
    channels = [3, 32, 64, 64]
    for c_in, c_out in zip(channels, channels[1:]):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 10))  # 32x32 -> 4x4 after three poolings


CASES = [
    Case("MLP 784-512-512-10, batch 128", lambda: _mlp(10), (784,), 10, 128),
    Case("MLP 784-512-512-1000, batch 128", lambda: _mlp(1000), (784,), 1000, 128),
    Case("BatchNorm CNN 32-64-64 on 3x32x32, batch 64", _bn_cnn, (3, 32, 32), 10, 64),
]


def _rate_storage_numel(optimizer: torch.optim.Optimizer) -> int:
    """Number of stored rate values in the optimizer state, counting shared storage once."""
    storages = {}
    for state in optimizer.state.values():
        rate = state["feature_lr"]
        storage = rate.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes() // rate.element_size()
    return sum(storages.values())


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def measure(case: Case, n_steps: int, n_warmup: int, seed: int, clock: Callable[[], float]) -> dict:
    """Time ``n_steps`` plain and Alrao steps, interleaved, after ``n_warmup`` of each."""
    torch.manual_seed(seed)
    net = case.build()
    alrao = ae.alraofy(net, n_heads=N_HEADS, generator=torch.Generator().manual_seed(seed))
    plain_optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    alrao_optimizer = ae.AlraoSGD(alrao)
    x = torch.randn(case.batch_size, *case.input_shape)
    y = torch.randint(0, case.n_classes, (case.batch_size,))

    def plain_step() -> None:
        plain_optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        plain_optimizer.step()

    def alrao_step() -> None:
        alrao_optimizer.zero_grad()
        alrao.training_loss(x, y).backward()
        alrao_optimizer.step()
        alrao.update_switch()

    for _ in range(n_warmup):
        plain_step()
        alrao_step()

    def timed(step: Callable[[], None]) -> float:
        start = clock()
        step()
        return clock() - start

    plain_times, alrao_times = [], []
    for i in range(n_steps):
        if i % 2 == 0:
            plain_times.append(timed(plain_step))
            alrao_times.append(timed(alrao_step))
        else:
            alrao_times.append(timed(alrao_step))
            plain_times.append(timed(plain_step))

    with torch.no_grad():
        final_loss = alrao.training_loss(x, y).item()
    n_params = sum(p.numel() for group in alrao_optimizer.param_groups for p in group["params"])
    plain_ms = statistics.median(plain_times) * 1e3
    alrao_ms = statistics.median(alrao_times) * 1e3
    return {
        "plain_ms": plain_ms,
        "alrao_ms": alrao_ms,
        "ratio": alrao_ms / plain_ms,
        "rate_numel": _rate_storage_numel(alrao_optimizer),
        "param_numel": n_params,
        "final_loss": final_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(),
        help="intra-op threads for torch.set_num_threads (default: torch's default on this machine, "
        f"{torch.get_num_threads()})",
    )
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="wall: elapsed time (default); cpu: CPU time of this process, summed over its threads",
    )
    parser.add_argument(
        "--flush-denormal", action="store_true",
        help="treat floats below 1.2e-38 as zero (torch.set_flush_denormal) for both methods",
    )
    parser.add_argument("--steps", type=int, default=60, help="timed steps per method and network (default 60)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per method before timing (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, weights and rates (default 0)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        parser.error("--flush-denormal is not supported on this CPU")
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.clock} clock, "
        f"flush denormals {'on' if args.flush_denormal else 'off'}, {args.steps} timed steps, "
        f"{N_HEADS} Alrao heads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    header = f"{'network':<46} {'SGD ms':>8} {'Alrao ms':>9} {'ratio':>6} {'rates':>7} {'params':>10} {'rates/params':>13}"
    print(header)
    for case in CASES:
        result = measure(case, args.steps, args.warmup, args.seed, CLOCKS[args.clock])
        print(
            f"{case.name:<46} {result['plain_ms']:8.2f} {result['alrao_ms']:9.2f} {result['ratio']:6.2f} "
            f"{result['rate_numel']:7d} {result['param_numel']:10d} "
            f"{100 * result['rate_numel'] / result['param_numel']:12.3f}%"
        )
        if not math.isfinite(result["final_loss"]):
            print(f"  NOTE: the Alrao loss is {result['final_loss']} after these steps, so rare non-finite paths ran")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
