"""Measure what live plotting costs the dashboard: training steps per second with and without it.

One training, started with the dashboard's Train path in its background thread, alternates
between two modes every ``--block-seconds``. In live mode the dashboard redraws its plotly
``FigureWidget``s inside ``batch_update`` whenever its throttle allows, as in a notebook. In
headless mode ``Dashboard.live_plots`` is off, so nothing is redrawn. Both modes train the same runs on the same
data, block after block, so a change of machine load hits both alike. The first block is
discarded as warm-up.

No front end runs: every widget message is JSON-encoded as a kernel would encode it and then
dropped, so the cost of serialisation counts but not that of a browser.

Prints the steps per second of each mode, in wall-clock time and per CPU second of the process
(steadier on a machine shared with other programs). Then prints the overhead
``1 - live / headless`` and what the redraws cost. Exits with status 1 when the wall-clock
overhead exceeds ``--max-overhead``.

    python benchmarks/dashboard_overhead.py [--arch cnn] [--blocks 40] [--block-seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import comm
import torch

from alrao_edu import Dashboard


class JsonEncodingComm(comm.base_comm.BaseComm):
    """A comm that JSON-encodes each message as ipykernel does, then drops it."""

    encoded_bytes = 0
    messages = 0

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys) -> None:
        text = json.dumps({"msg_type": msg_type, "data": data, "metadata": metadata or {}, **keys}, default=str)
        JsonEncodingComm.encoded_bytes += len(text) + sum(len(memoryview(buffer).cast("B")) for buffer in buffers or ())
        JsonEncodingComm.messages += 1


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", help="data set name (default: digits, the dashboard's)")
    parser.add_argument("--arch", default="cnn", help="architecture name (default: cnn, the dashboard's)")
    parser.add_argument("--blocks", type=int, default=40, help="measured blocks, half of each mode (default: 40)")
    parser.add_argument("--block-seconds", type=float, default=3.0, help="length of one block in seconds (default: 3)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="PyTorch intra-op threads while training (default: 1, the dashboard's; 0 keeps PyTorch's choice)",
    )
    parser.add_argument("--max-overhead", type=float, default=0.15, help="largest accepted overhead (default: 0.15)")
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    if arguments.blocks < 2 or arguments.blocks % 2:
        raise SystemExit(f"Invalid --blocks: {arguments.blocks}; expected an even number >= 2")
    comm.create_comm = JsonEncodingComm

    # Enough epochs that the blocks end before training does; Stop ends it.
    dashboard = Dashboard(
        dataset=arguments.dataset, arch=arguments.arch, epochs=1000, device="cpu",
        cpu_threads=arguments.threads if arguments.threads > 0 else None,
    )
    runs = ", ".join(spec.label for spec in dashboard.controls.settings().specs())
    print(f"{arguments.arch} on {arguments.dataset}, runs: {runs}")
    threads = arguments.threads if arguments.threads > 0 else torch.get_num_threads()
    print(f"PyTorch trains on {threads} intra-op threads; the machine has {os.cpu_count()} CPUs")
    JsonEncodingComm.encoded_bytes = JsonEncodingComm.messages = 0  # count training's messages only

    dashboard.run(blocking=False)
    while dashboard.comparison is None or dashboard.comparison.step_count < 1:
        if not dashboard.is_training:
            raise SystemExit(f"Training failed: {dashboard.status_text}")
        time.sleep(0.05)
    comparison = dashboard.comparison

    steps = {True: 0, False: 0}
    seconds = {True: 0.0, False: 0.0}
    cpu_seconds = {True: 0.0, False: 0.0}
    redraws = {True: 0, False: 0}
    redraw_seconds = {True: 0.0, False: 0.0}
    for block in range(arguments.blocks + 1):
        live = block % 2 == 1
        dashboard.live_plots = live
        start_steps, start_time, start_cpu = comparison.step_count, time.perf_counter(), time.process_time()
        start_redraws, start_redraw_seconds = dashboard.redraw_count, dashboard.redraw_seconds
        time.sleep(arguments.block_seconds)
        if block == 0:
            continue  # warm-up
        steps[live] += comparison.step_count - start_steps
        seconds[live] += time.perf_counter() - start_time
        cpu_seconds[live] += time.process_time() - start_cpu
        redraws[live] += dashboard.redraw_count - start_redraws
        redraw_seconds[live] += dashboard.redraw_seconds - start_redraw_seconds

    dashboard.stop()
    dashboard.wait()
    if dashboard.last_error is not None:
        raise SystemExit(f"Training failed: {dashboard.status_text}")

    live_speed = steps[True] / seconds[True]
    headless_speed = steps[False] / seconds[False]
    overhead = 1 - live_speed / headless_speed
    cpu_overhead = 1 - (steps[True] / cpu_seconds[True]) / (steps[False] / cpu_seconds[False])
    print(
        f"headless: {steps[False]} steps in {seconds[False]:.1f} s, {headless_speed:.2f} steps/s "
        f"({steps[False] / cpu_seconds[False]:.2f} per CPU second)"
    )
    print(
        f"live:     {steps[True]} steps in {seconds[True]:.1f} s, {live_speed:.2f} steps/s "
        f"({steps[True] / cpu_seconds[True]:.2f} per CPU second); "
        f"{redraws[True]} redraws took {redraw_seconds[True]:.2f} s "
        f"({100 * redraw_seconds[True] / seconds[True]:.1f} % of the live time)"
    )
    print(
        f"widget messages during training: {JsonEncodingComm.messages}, "
        f"{JsonEncodingComm.encoded_bytes / 1e6:.2f} MB encoded"
    )
    print(f"overhead of live plotting: {100 * overhead:.1f} % of wall time (limit {100 * arguments.max_overhead:.0f} %), "
          f"{100 * cpu_overhead:.1f} % of CPU time")
    return 0 if overhead <= arguments.max_overhead else 1


if __name__ == "__main__":
    sys.exit(main())
