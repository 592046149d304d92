"""Time forward + backward of the CPU engine on a synthetic SHD-shaped workload.

Workload (defaults): batch 32, 700 Poisson inputs firing with probability 1% per step, 1400 steps of
1 ms, NUM_HIDDEN LIF hidden neurons (optionally recurrent), 20 LI outputs, loss sum_weigh_exp, SHD's
default initialisation. Reports the compile time (first call, including loading numba's cache),
time per batch, implied time per epoch of 7644 training samples, hidden spikes per sample and peak
memory, and adds a row to the engine table of BENCHMARKS.md with --write.

    python bench/bench_engine.py --hidden 256 --recurrent --write
"""
import argparse
import datetime
import os
import platform
import resource
import time

import numba
import numpy as np

from eventprop.data.spikes import SpikeData
from eventprop.network import EventPropNetwork
from eventprop.optim import Adam
from eventprop.storage import save_text

EPOCH_SAMPLES = 7644
ROWS_MARKER = "<!-- engine rows: bench/bench_engine.py --write adds rows above -->\n"


def synthetic_batch(rng, batch, n_in, n_steps, rate):
    n_classes = 20
    steps, channels = [], []
    for _ in range(batch):
        mask = rng.random((n_steps, n_in)) < rate
        s, c = np.nonzero(mask)
        steps.append(s)
        channels.append(c)
    data = SpikeData.from_lists(steps, channels, rng.integers(0, n_classes, batch), n_steps, n_in)
    return data


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--recurrent", action="store_true")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pipeline", action="store_true",
                    help="the original's schedule (PIPELINE): each batch runs the backward pass "
                         "of the one before")
    ap.add_argument("--write", action="store_true", help="append the result to BENCHMARKS.md")
    args = ap.parse_args()

    rng = np.random.default_rng(1)
    n_in, n_out = 700, 20
    data = synthetic_batch(rng, args.batch, n_in, args.steps, args.rate)
    net = EventPropNetwork(n_in, args.hidden, n_out, recurrent=args.recurrent, dt=1.0,
                           trial_ms=float(args.steps), loss_type="sum_weigh_exp",
                           n_batch=args.batch, n_max_spike=1500, seed=2,
                           init={"input_hidden": (0.03, 0.01), "hidden_output": (0.0, 0.3),
                                 "hidden_hidden": (0.0, 0.02)})
    adam = Adam()
    names = ["w_input_hidden", "w_hidden_output"] + (["w_hidden_hidden"] if args.recurrent
                                                     else [])
    in_ptr, in_ch = data.batch(np.arange(args.batch))

    t0 = time.perf_counter()
    result = net.run_batch(in_ptr, in_ch, data.labels, learn=True)
    compile_s = time.perf_counter() - t0

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        in_ptr, in_ch = data.batch(np.arange(args.batch))
        result = net.run_batch(in_ptr, in_ch, data.labels, learn=True, pipeline=args.pipeline)
        if result.has_gradient:
            adam.step(net.params, result.grads, 1e-4, names)
        times.append(time.perf_counter() - t0)
    per_batch = float(np.median(times))
    per_epoch = per_batch * EPOCH_SAMPLES / args.batch
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    spikes = result.hidden_counts.sum(axis=(1, 2)).mean()
    in_spikes = len(in_ch) / args.batch
    config = (f"{args.hidden} LIF{' recurrent' if args.recurrent else ''}, B={args.batch}, "
              f"{args.steps} steps{', pipelined' if args.pipeline else ''}")
    print(f"{config}: first call (compile/cache load) {compile_s:.1f} s, "
          f"{per_batch * 1e3:.1f} ms per batch, {per_epoch:.2f} s per epoch of {EPOCH_SAMPLES}, "
          f"{in_spikes:.0f} input / {spikes:.0f} hidden spikes per sample, "
          f"peak RSS {peak_mb:.0f} MB, {numba.get_num_threads()} threads")
    if args.write:
        row = (f"| {datetime.date.today()} | {cpu_name()}, {os.cpu_count()} cores, "
               f"{numba.get_num_threads()} threads | {config} | {per_batch * 1e3:.1f} | "
               f"{per_epoch:.2f} | {compile_s:.1f} | {peak_mb:.0f} | {spikes:.0f} |\n")
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "BENCHMARKS.md")
        insert_row(path, row)


def insert_row(path, row, marker=ROWS_MARKER):
    """Put ``row`` just above the ``marker`` line that ends a table of BENCHMARKS.md (default:
    the engine table)."""
    with open(path) as f:
        text = f.read()
    if marker not in text:
        raise SystemExit(f"{path} has no line {marker!r} to put the result above")
    save_text(path, text.replace(marker, row + marker, 1))


if __name__ == "__main__":
    main()
