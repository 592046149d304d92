"""Time and memory of learned delays and sparse connectivity on an SHD-sized workload.

Workload: 700 Poisson inputs firing with probability 1 % per step, 1000 steps of 1 ms (the
trials of the SHD presets), 20 LI outputs, loss sum_weigh_exp, batch 32 (--batch), one Adam step
per batch. Configurations (each in a fresh process, so that its peak memory is its own):

    line-H      the delay line of paper_SHD: 10 delayed copies of the inputs (30 ms apart), so
                7,700 inputs, H recurrent hidden neurons, no learned delays
    delays-H    700 inputs, H recurrent hidden neurons, learned input delays U(0, 150 ms) and
                recurrent delays (from 0), MAX_DELAY_MS 150 (the delays_SHD preset's shape)
    dense-1024, p10-1024, p1-1024
                1024 recurrent hidden neurons; the input and recurrent projections dense, or
                both with connection probability 10 % / 1 % (recurrent weight std scaled by
                1/sqrt(p), input weight mean by about 1/p: about the same activity, 16,000
                hidden spikes per sample)

Reports the time per batch (median of --repeats after a first call that compiles or loads the
kernels), per epoch of 7644 samples, hidden spikes per sample and peak memory (host RSS; on the
GPU the device memory in use after the run); --write adds the table to BENCHMARKS.md.

    python bench/bench_delays.py                       # all configurations on the CPU
    python bench/bench_delays.py --backend cuda --write
    python bench/bench_delays.py --only delays-256 p10-1024
"""
import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time

import numba
import numpy as np

from eventprop.data.spikes import SpikeData
from eventprop.network import EventPropNetwork
from eventprop.optim import Adam

EPOCH_SAMPLES = 7644
N_IN, N_OUT = 700, 20
CONFIGS = ("line-256", "delays-256", "line-512", "delays-512", "dense-1024", "p10-1024",
           "p1-1024")
# sparse input weights: mean 0.03 m / p, with m chosen so that the hidden spikes per sample match
# the dense network's (fewer, larger input synapses make a noisier input current)
INPUT_MEAN_SCALE = {"p10": 0.96, "p1": 0.75}
ROWS_MARKER = "<!-- delay rows: bench/bench_delays.py --write adds rows above -->\n"


def delay_line(data, copies, gap_steps):
    """The inputs with ``copies`` delayed copies (``gap_steps`` apart), as paper_SHD's delay line
    builds them: channel c of copy k is input k * N_IN + c."""
    steps, chans = [], []
    for b in range(len(data.labels)):
        lo, hi = data.offsets[b], data.offsets[b + 1]
        s, c = data.steps[lo:hi], data.channels[lo:hi]
        steps.append(np.concatenate([s + k * gap_steps for k in range(copies + 1)]))
        chans.append(np.concatenate([c + k * N_IN for k in range(copies + 1)]))
        keep = steps[-1] < data.n_steps
        steps[-1], chans[-1] = steps[-1][keep], chans[-1][keep]
    return SpikeData.from_lists(steps, chans, data.labels, data.n_steps,
                                N_IN * (copies + 1))


def network(config, args):
    """(network, names of its trained parameters, input data transform) of a configuration."""
    kind, hidden = config.split("-")
    hidden = int(hidden)
    init = {"input_hidden": (0.03, 0.01), "hidden_output": (0.0, 0.3),
            "hidden_hidden": (0.0, 0.02)}
    kw = {}
    n_in = N_IN
    if kind == "line":
        n_in = N_IN * 11
        init["input_hidden"] = (0.003, 0.001)     # paper_SHD divides the input weights by 10
    elif kind == "delays":
        kw = dict(delays={"input_hidden": (0.0, 150.0), "hidden_hidden": (0.0, 0.0)},
                  max_delay=150.0, train_delays=True)
    elif kind.startswith("p"):
        q = float(kind[1:]) / 100
        kw = dict(connectivity={"input_hidden": {"probability": q},
                                "hidden_hidden": {"probability": q}})
        init["hidden_hidden"] = (0.0, 0.02 / q ** 0.5)
        init["input_hidden"] = (0.03 * INPUT_MEAN_SCALE[kind] / q, 0.01 / q ** 0.5)
    net = EventPropNetwork(n_in, hidden, N_OUT, recurrent=True, dt=1.0, trial_ms=args.steps,
                           loss_type="sum_weigh_exp", n_batch=args.batch, n_max_spike=1500,
                           seed=2, init=init, backend=args.backend, **kw)
    names = ["w_input_hidden", "w_hidden_hidden", "w_hidden_output"]
    names += [name for name in ("d_input_hidden", "d_hidden_hidden") if name in net.params]
    return net, names, (lambda data: delay_line(data, 10, 30)) if kind == "line" else None


def measure(config, args):
    """Time and memory of one configuration (in this process)."""
    rng = np.random.default_rng(1)
    steps, chans = [], []
    for _ in range(args.batch):
        s, c = np.nonzero(rng.random((args.steps, N_IN)) < args.rate)
        steps.append(s)
        chans.append(c)
    data = SpikeData.from_lists(steps, chans, rng.integers(0, N_OUT, args.batch), args.steps,
                                N_IN)
    net, names, transform = network(config, args)
    if transform is not None:
        data = transform(data)
    adam = Adam(rates={name: 0.1 for name in names if name.startswith("d_")})
    net.track_param_changes = True

    def one_batch():
        in_ptr, in_ch = data.batch(np.arange(args.batch))
        result = net.run_batch(in_ptr, in_ch, data.labels, learn=True, fetch_grads=False)
        net.adam_step(adam, 1e-4, names)
        return result

    t0 = time.perf_counter()
    result = one_batch()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = one_batch()
        times.append(time.perf_counter() - t0)
    per_batch = float(np.median(times))
    if args.backend == "cuda":
        from numba import cuda
        free, total = cuda.current_context().get_memory_info()
        memory = (total - free) / 2**20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(config=config, per_batch_ms=per_batch * 1e3,
                per_epoch_s=per_batch * EPOCH_SAMPLES / args.batch, first_s=first,
                hidden_spikes=float(result.hidden_counts.sum(axis=(1, 2)).mean()),
                memory_mib=memory, ring_mib=net.delay_buffer_bytes() / 2**20,
                threads=numba.get_num_threads())


def machine(backend):
    if backend == "cuda":
        from numba import cuda
        return cuda.get_current_device().name.decode()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {numba.get_num_threads()} threads"
    except OSError:
        pass
    return f"CPU, {numba.get_num_threads()} threads"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    ap.add_argument("--backend", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="add the table to BENCHMARKS.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    rows = []
    for config in args.only:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", config, "--backend",
               args.backend, "--batch", str(args.batch), "--steps", str(args.steps), "--rate",
               str(args.rate), "--repeats", str(args.repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{config} failed:\n{done.stderr}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{config:>11}: {r['per_batch_ms']:8.1f} ms per batch, {r['per_epoch_s']:7.1f} s "
              f"per epoch, {r['hidden_spikes']:6.0f} hidden spikes per sample, peak "
              f"{r['memory_mib']:6.0f} MiB (ring buffers {r['ring_mib']:.0f} MiB), first call "
              f"{r['first_s']:.1f} s", flush=True)
    if args.write:
        where = f"{datetime.date.today()}, {machine(args.backend)}, B = {args.batch}"
        lines = "".join(f"| {where} | {r['config']} | {r['per_batch_ms']:.1f} | "
                        f"{r['per_epoch_s']:.1f} | {r['hidden_spikes']:.0f} | "
                        f"{r['memory_mib']:.0f} | {r['ring_mib']:.0f} |\n" for r in rows)
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "BENCHMARKS.md")
        from bench_engine import insert_row
        insert_row(path, lines, ROWS_MARKER)


if __name__ == "__main__":
    main()
