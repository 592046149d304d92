"""Time the CPU engine on a shared machine: runs side by side, and runs next to a busy process.

Each run is a separate Python process that trains (forward, backward, Adam step) on a fixed
synthetic workload: a first batch to load the compiled kernels, then, once every process of the
scenario is ready, ``--batches`` timed batches. Workloads:

* mnist: 784 inputs, 128 LIF hidden, 10 LI outputs, 20 steps of 1 ms, B = 32, avg_xentropy,
  150 input spikes per sample (short trials: many small parallel steps);
* shd: 700 inputs firing with probability 1% per step, 256 LIF hidden, 20 outputs, 1400 steps of
  1 ms, B = 32, sum_weigh_exp (as bench_engine.py, without recurrence).

Scenarios, each repeated ``--repeats`` times (the median is reported):

* alone: one run with the default threads (the cores the process may use), and one on 1 thread;
* two side by side: two runs at once, with the default threads each, and on 1 thread each
  (target: the default threads within 1.3 times the time of one run alone);
* next to a busy process (a Python busy loop): one run with the default threads against one on
  1 thread (target: the default threads not slower).

    python bench/bench_threads.py                 # both workloads
    python bench/bench_threads.py --workload mnist --write
"""
import argparse
import datetime
import os
import subprocess
import sys
import time

import numpy as np
from bench_engine import cpu_name, insert_row

ROWS_MARKER = "<!-- thread rows: bench/bench_threads.py --write adds rows above -->\n"
WORKLOADS = {"mnist": dict(n_in=784, hidden=128, n_out=10, steps=20, loss="avg_xentropy",
                           batches=300),
             "shd": dict(n_in=700, hidden=256, n_out=20, steps=1400, loss="sum_weigh_exp",
                         batches=25)}
BATCH = 32


def worker(name, batches):
    """One run: build, one batch, "ready"; on a line from stdin, time ``batches`` batches and
    print the seconds and the number of threads."""
    import numba

    from eventprop.data.spikes import SpikeData
    from eventprop.network import EventPropNetwork
    from eventprop.optim import Adam

    w = WORKLOADS[name]
    rng = np.random.default_rng(1)
    if name == "mnist":
        steps = [rng.integers(2, w["steps"] - 2, 150) for _ in range(BATCH)]
        channels = [rng.choice(w["n_in"], 150, replace=False) for _ in range(BATCH)]
    else:
        spikes = [np.nonzero(rng.random((w["steps"], w["n_in"])) < 0.01) for _ in range(BATCH)]
        steps, channels = [s for s, _ in spikes], [c for _, c in spikes]
    data = SpikeData.from_lists(steps, channels, rng.integers(0, w["n_out"], BATCH), w["steps"],
                                w["n_in"])
    net = EventPropNetwork(w["n_in"], w["hidden"], w["n_out"], dt=1.0, trial_ms=float(w["steps"]),
                           loss_type=w["loss"], n_batch=BATCH, n_max_spike=1500, seed=2,
                           init={"input_hidden": (0.03, 0.01) if name == "shd" else (0.08, 0.045),
                                 "hidden_output": (0.0, 0.3)})
    adam = Adam()
    names = ["w_input_hidden", "w_hidden_output"]

    def train_batch():
        in_ptr, in_ch = data.batch(np.arange(BATCH))
        result = net.run_batch(in_ptr, in_ch, data.labels, learn=True)
        adam.step(net.params, result.grads, 1e-4, names)

    train_batch()
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    for _ in range(batches):
        train_batch()
    print(time.perf_counter() - t0, numba.get_num_threads(), flush=True)


def scenario(name, batches, n_runs, threads=None, busy=False):
    """Seconds of each of ``n_runs`` runs started together (``threads``: NUMBA_NUM_THREADS, None
    for the default), next to a busy process if ``busy``; and the threads they used."""
    env = dict(os.environ)
    env.pop("NUMBA_NUM_THREADS", None)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    runs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", name,
                              "--batches", str(batches)], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True) for _ in range(n_runs)]
    for run in runs:
        assert run.stdout.readline().strip() == "ready"
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        for run in runs:
            run.stdin.write("go\n")
            run.stdin.flush()
        results = [run.stdout.readline().split() for run in runs]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    for run in runs:
        run.wait()
    return [float(r[0]) for r in results], int(results[0][1])


SCENARIOS = [  # (label, runs side by side, threads, busy process)
    ("alone, default threads", 1, None, False),
    ("alone, 1 thread", 1, 1, False),
    ("two side by side, default threads each", 2, None, False),
    ("two side by side, 1 thread each", 2, 1, False),
    ("next to a busy process, default threads", 1, None, True),
    ("next to a busy process, 1 thread", 1, 1, True),
]


def measure(name, batches, repeats):
    """{label: (median seconds per run, threads)} of every scenario."""
    times = {label: [] for label, *_ in SCENARIOS}
    used = {}
    for _ in range(repeats):     # scenarios interleaved, so that a change of load hits them all
        for label, n_runs, threads, busy in SCENARIOS:
            seconds, used[label] = scenario(name, batches, n_runs, threads, busy)
            times[label].append(max(seconds))
    return {label: (float(np.median(t)), used[label]) for label, t in times.items()}


def load_average():
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), action="append")
    ap.add_argument("--batches", type=int, help="timed batches per run (default: the workload's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="append the results to BENCHMARKS.md")
    ap.add_argument("--note", default="", help="added to the workload in BENCHMARKS.md")
    ap.add_argument("--worker", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.batches)
        return

    rows = []
    for name in args.workload or sorted(WORKLOADS):
        batches = args.batches or WORKLOADS[name]["batches"]
        before = load_average()
        result = measure(name, batches, args.repeats)
        after = load_average()
        alone = result["alone, default threads"][0]
        print(f"{name}, {batches} batches of {BATCH}, load average (1/5/15 min) {before} before, "
              f"{after} after:")
        for label, (seconds, threads) in result.items():
            print(f"  {label:42s} {seconds:6.2f} s  ({threads} threads; {seconds / alone:.2f} x "
                  f"alone)")
        side = result["two side by side, default threads each"][0] / alone
        busy = (result["next to a busy process, default threads"][0]
                / result["next to a busy process, 1 thread"][0])
        print(f"  two side by side / alone: {side:.2f} (target <= 1.3); next to a busy process, "
              f"default / 1 thread: {busy:.2f} (target <= 1)")
        cells = " | ".join(f"{result[label][0]:.2f}" for label, *_ in SCENARIOS)
        rows.append(f"| {datetime.date.today()} | {cpu_name()}, {os.cpu_count()} cores | "
                    f"{before} → {after} | {name}, {batches} batches{args.note} | {cells} | "
                    f"{side:.2f} | {busy:.2f} |\n")
    if args.write:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "BENCHMARKS.md")
        for row in rows:
            insert_row(path, row, ROWS_MARKER)


if __name__ == "__main__":
    main()
