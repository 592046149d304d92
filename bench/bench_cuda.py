"""Time the CUDA engine (BACKEND "cuda") on the SHD-shaped workload of bench_engine.py.

Workload: 700 Poisson inputs firing with probability 1 % per step, 1400 steps of 1 ms, N LIF
hidden neurons (recurrent or not), 20 LI outputs, loss sum_weigh_exp, SHD's initialisation; the
batches are packed on the host from a pool of 256 synthetic samples and copied to the device all
at once, then each is run forward and backward and followed by one Adam step, all on the device,
as ``Trainer.run_epoch`` does it: only the counters, spike counts and per-sample losses come
back (``keep_output_traces=False``, ``fetch_grads=False``, ``adam_step``).

Configurations: N = 256 and 1024, feed-forward and recurrent, B = 32 and 256 (B = 32 first;
configurations that would start after ``--budget`` seconds are skipped). For each: the first
call (kernel compilation on a fresh machine, numba's cache after that; the first configuration
pays it), the median time per batch, the implied time per epoch of 7644 training samples, the
GPU memory the run added (the driver's used memory, numba's ``get_memory_info``) and the
Workspace's own buffers, and the hidden spikes per sample. ``--profile`` adds a breakdown per
batch from separate batches with synchronised timers: forward and backward kernels, uploads,
downloads, the loss, the rest (Adam, host work), and the packing and upload of the inputs
(timed for all batches at once, per batch; it is part of the time per batch).

    python bench/bench_cuda.py [--profile] [--write]
    NUMBA_ENABLE_CUDASIM=1 python bench/bench_cuda.py --quick --profile   (tiny, simulator)

``--write`` adds the rows to the "CUDA engine" table of BENCHMARKS.md (creating the table the
first time). Targets of the issue, B = 32 on one H100: <= 0.8 s per epoch at 256 hidden,
<= 1.9 s at 1024.
"""
import argparse
import datetime
import gc
import os
import sys
import time

import numpy as np
from numba import cuda
from numba.core import config

from bench_engine import EPOCH_SAMPLES, insert_row, synthetic_batch   # bench/, beside this file
from eventprop.backends.cuda import backward, forward, launch
from eventprop.network import EventPropNetwork
from eventprop.optim import Adam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROWS_MARKER = "<!-- cuda rows: bench/bench_cuda.py --write adds rows above -->\n"
TABLE = """## CUDA engine: forward + backward on an SHD-shaped workload (GPU)

`python bench/bench_cuda.py [--profile] --write`: the workload of the CPU engine table on
`BACKEND = "cuda"`, N = 256 and 1024 hidden neurons, feed-forward and recurrent, B = 32 and 256.
Per batch, as `Trainer.run_epoch` runs it: forward and backward pass, loss and Adam step on the
GPU, the inputs packed on the host and copied to the device for all timed batches at once (that
cost, per batch, is included). "s / epoch" scales the time per batch (median of the trials plus
the inputs' share) to 7644 training samples. "first call" is the first `run_batch` of the
configuration (the first row of a run includes compiling the kernels, unless numba's cache has
them). "GPU MB": device memory the run added (driver), in brackets the engine's own buffers.
Profile (ms per batch, separate batches with synchronised timers): forward kernels / backward
kernels / uploads / downloads / loss / other (Adam, host work) / inputs (packing and upload).

Targets (B = 32, one H100): <= 0.8 s per epoch at 256 hidden, <= 1.9 s at 1024.

| date | GPU | configuration | ms / batch | s / epoch | first call (s) | GPU MB | hidden spikes / sample | profile: fwd / bwd / up / down / loss / other / inputs (ms) |
|---|---|---|---|---|---|---|---|---|
""" + ROWS_MARKER + "\n"
PHASES = ("forward", "backward", "upload", "download", "loss")


def gpu_name():
    if config.ENABLE_CUDASIM:
        return "CUDA simulator"
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def used_bytes():
    """Device memory in use (driver's view), or None when unknown (simulator)."""
    free, total = cuda.current_context().get_memory_info()
    if not (np.isfinite(free) and np.isfinite(total)):
        return None
    return int(total - free)


SHD_INIT = {"input_hidden": (0.03, 0.01), "hidden_output": (0.0, 0.3),
            "hidden_hidden": (0.0, 0.02)}
QUICK_INIT = {"input_hidden": (0.6, 0.3), "hidden_output": (0.0, 0.3),
              "hidden_hidden": (0.0, 0.2)}     # few inputs: stronger weights, so neurons spike


def release_freed_memory():
    """Free what numba's deferred deallocation still holds (device memory of the previous
    configuration), so that the memory figures of a configuration are its own."""
    gc.collect()
    if not config.ENABLE_CUDASIM:
        cuda.current_context().deallocations.clear()


def make_net(n_in, hidden, recurrent, steps, batch, init):
    net = EventPropNetwork(n_in, hidden, 20, recurrent=recurrent, dt=1.0,
                           trial_ms=float(steps), loss_type="sum_weigh_exp", n_batch=batch,
                           n_max_spike=1500, seed=2, backend="cuda", init=init)
    net.track_param_changes = True
    return net


class Run:
    """One configuration: network, Adam, and the batches drawn from the sample pool."""

    def __init__(self, data, n_in, hidden, recurrent, batch, steps, init, pipeline=False):
        self.data, self.batch, self.pipeline = data, batch, pipeline
        self.net = make_net(n_in, hidden, recurrent, steps, batch, init)
        self.adam = Adam()
        self.names = ["w_input_hidden", "w_hidden_output"] + (["w_hidden_hidden"] if recurrent
                                                              else [])
        self.k = 0
        self.pending = []

    def prepare(self, n):
        """Pack the next n batches on the host and copy them to the device at once, as
        ``Trainer.run_epoch`` does; returns the seconds this took per batch."""
        t0 = time.perf_counter()
        size = len(self.data.labels)
        todo = []
        for _ in range(n):
            idx = (np.arange(self.batch) + self.k * self.batch) % size
            self.k += 1
            todo.append((idx, self.data.batch(idx)))
        uploaded = self.net.backend.upload_inputs([b for _, b in todo])
        self.pending += [(idx, b, d) for (idx, b), d in zip(todo, uploaded)]
        cuda.synchronize()
        return (time.perf_counter() - t0) / n

    def step(self):
        """One trial as the Trainer runs it on the GPU (inputs already on the device, loss and
        Adam there too); returns its result."""
        if not self.pending:
            self.prepare(1)
        idx, (in_ptr, in_ch), device_inputs = self.pending.pop(0)
        result = self.net.run_batch(in_ptr, in_ch, self.data.labels[idx], learn=True,
                                    keep_output_traces=False, device_inputs=device_inputs,
                                    fetch_grads=False, pipeline=self.pipeline)
        if result.has_gradient:
            self.net.adam_step(self.adam, 1e-4, self.names)
        return result


def bench_config(data, n_in, hidden, recurrent, batch, steps, seconds, min_batches,
                 max_batches, profile_batches, init=SHD_INIT, pipeline=False):
    release_freed_memory()
    cuda.synchronize()
    used0 = used_bytes()
    run = Run(data, n_in, hidden, recurrent, batch, steps, init, pipeline)
    t0 = time.perf_counter()
    result = run.step()
    cuda.synchronize()
    first = time.perf_counter() - t0
    used = [used_bytes()]
    inputs = run.prepare(max_batches + profile_batches)   # seconds per batch
    times = []
    start = time.perf_counter()
    while len(times) < max_batches and (len(times) < min_batches
                                        or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        result = run.step()
        cuda.synchronize()
        times.append(time.perf_counter() - t0)
    used.append(used_bytes())
    ws = run.net.backend.workspace
    profile = None
    if profile_batches:
        ws.profile = {}
        total = 0.0
        for _ in range(profile_batches):
            cuda.synchronize()
            t0 = time.perf_counter()
            run.step()
            cuda.synchronize()
            total += time.perf_counter() - t0
        profile = {k: ws.profile.get(k, 0.0) / profile_batches for k in PHASES}
        profile["other"] = total / profile_batches - sum(profile.values())
        profile["inputs"] = inputs
        ws.profile = None
    per_batch = float(np.median(times)) + inputs
    gpu_mb = None if used0 is None or None in used else (max(used) - used0) / 2 ** 20
    out = {"config": f"{hidden} LIF{' recurrent' if recurrent else ''}, B={batch}, "
                     f"{steps} steps, {launch.threads_per_block(hidden + 20)} threads"
                     f"{', pipelined' if pipeline else ''}",
           "per_batch": per_batch, "per_epoch": per_batch * EPOCH_SAMPLES / batch,
           "first": first, "gpu_mb": gpu_mb, "ws_mb": ws.nbytes() / 2 ** 20,
           "spikes": float(result.hidden_counts.sum(axis=(1, 2)).mean()),
           "batches": len(times), "profile": profile, "hidden": hidden, "batch": batch}
    del run, result
    return out


def fmt_row(r, date, gpu):
    mem = (f"{r['gpu_mb']:.0f} ({r['ws_mb']:.0f})" if r["gpu_mb"] is not None
           else f"- ({r['ws_mb']:.1f})")
    prof = ("—" if r["profile"] is None else
            " / ".join(f"{r['profile'][k] * 1e3:.2f}" for k in PHASES + ("other", "inputs")))
    return (f"| {date} | {gpu} | {r['config']} | {r['per_batch'] * 1e3:.2f} | "
            f"{r['per_epoch']:.2f} | {r['first']:.1f} | {mem} | {r['spikes']:.0f} | {prof} |\n")


def write_rows(path, rows):
    """Rows above the CUDA table's marker; the table is created (before the "SHD epoch"
    section, or at the end) if BENCHMARKS.md does not have it yet."""
    with open(path) as f:
        text = f.read()
    if ROWS_MARKER not in text:
        heading = "\n## SHD epoch"
        at = text.find(heading)
        text = (text.rstrip("\n") + "\n\n" + TABLE if at < 0
                else text[:at + 1] + TABLE + text[at + 1:])
        with open(path, "w") as f:
            f.write(text)
    for row in rows:
        insert_row(path, row, ROWS_MARKER)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--recurrent", choices=("both", "no", "yes"), default="both")
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--inputs", type=int, default=700)
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--seconds", type=float, default=12.0,
                    help="timed batches per configuration: until this many seconds ...")
    ap.add_argument("--min-batches", type=int, default=3, help="... but at least this many")
    ap.add_argument("--max-batches", type=int, default=50, help="... and at most this many")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="skip configurations that would start after this many seconds")
    ap.add_argument("--max-threads", type=int, default=None,
                    help="launch.MAX_THREADS: most threads per block (default: the "
                         "engine's)")
    ap.add_argument("--profile", action="store_true",
                    help="breakdown per batch from separate, synchronised batches")
    ap.add_argument("--profile-batches", type=int, default=3)
    ap.add_argument("--pipeline", action="store_true",
                    help="the original's schedule (PIPELINE): each batch runs the backward pass "
                         "of the one before")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (8 hidden, B = 2 and 3, 20 steps, 16 inputs, 1 batch): "
                         "checks that the script works, e.g. under NUMBA_ENABLE_CUDASIM=1")
    ap.add_argument("--write", action="store_true", help="add the rows to BENCHMARKS.md")
    ap.add_argument("--benchmarks", default=None,
                    help="file to write to (default: BENCHMARKS.md of the repository)")
    args = ap.parse_args(argv)
    if args.quick:
        args.hidden, args.batch, args.steps, args.inputs = [8], [2, 3], 20, 16
        args.rate, args.seconds, args.min_batches, args.max_batches = 0.2, 0.0, 1, 1
        args.profile_batches = 1
    if not cuda.is_available():
        raise SystemExit("no CUDA GPU (numba.cuda.is_available() is False); run with "
                         "NUMBA_ENABLE_CUDASIM=1 and --quick to check the script")
    if args.write and args.benchmarks is None and (args.quick or config.ENABLE_CUDASIM):
        raise SystemExit("--write to BENCHMARKS.md only with real measurements (not --quick, "
                         "not under the simulator); give --benchmarks FILE to test writing")
    path = args.benchmarks or os.path.join(ROOT, "BENCHMARKS.md")
    if args.max_threads is not None:
        launch.MAX_THREADS = args.max_threads
    if config.ENABLE_CUDASIM:
        sys.setswitchinterval(5e-5)   # the simulator's threads meet at every syncthreads
    recurrent = {"both": (False, True), "no": (False,), "yes": (True,)}[args.recurrent]

    start = time.perf_counter()
    rng = np.random.default_rng(1)
    pool = synthetic_batch(rng, max(max(args.batch), 8), args.inputs, args.steps, args.rate)
    print(f"{gpu_name()}; sample pool of {len(pool.labels)} made in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    date, gpu = datetime.date.today(), gpu_name()
    rows, results = [], []
    header = (f"{'configuration':<46} {'ms/batch':>9} {'s/epoch':>8} {'first s':>8} "
              f"{'GPU MB (own)':>14} {'spikes':>7} {'n':>3}")
    print(header + ("   profile ms: fwd / bwd / up / down / loss / other / inputs"
                    if args.profile
                    else ""), flush=True)
    for batch in args.batch:
        for hidden in args.hidden:
            for rec in recurrent:
                if time.perf_counter() - start > args.budget:
                    print(f"skipped (over --budget {args.budget:.0f} s): {hidden} hidden, "
                          f"{'recurrent, ' if rec else ''}B={batch}", flush=True)
                    continue
                r = bench_config(pool, args.inputs, hidden, rec, batch, args.steps,
                                 args.seconds, args.min_batches, args.max_batches,
                                 args.profile_batches if args.profile else 0,
                                 QUICK_INIT if args.quick else SHD_INIT, args.pipeline)
                results.append(r)
                rows.append(fmt_row(r, date, gpu))
                mem = (f"{r['gpu_mb']:.0f} ({r['ws_mb']:.0f})" if r["gpu_mb"] is not None
                       else f"- ({r['ws_mb']:.1f})")
                line = (f"{r['config']:<46} {r['per_batch'] * 1e3:>9.2f} "
                        f"{r['per_epoch']:>8.2f} {r['first']:>8.1f} {mem:>14} "
                        f"{r['spikes']:>7.0f} {r['batches']:>3}")
                if r["profile"] is not None:
                    line += "   " + " / ".join(f"{r['profile'][k] * 1e3:.2f}"
                                               for k in PHASES + ("other", "inputs"))
                print(line, flush=True)
    for r in results:
        target = {256: 0.8, 1024: 1.9}.get(r["hidden"])
        if r["batch"] == 32 and target is not None and not args.quick:
            verdict = "meets" if r["per_epoch"] <= target else "misses"
            print(f"{r['config']}: {r['per_epoch']:.2f} s per epoch {verdict} the target "
                  f"{target} s")
    if not config.ENABLE_CUDASIM:
        for module, name in ((forward, "_input_current_kernel"), (forward, "_forward_kernel"),
                             (backward, "_backward_kernel"), (backward, "_input_gradient_kernel")):
            regs = getattr(module, name).get_regs_per_thread()
            print(f"{name}: registers per thread {sorted(set(regs.values()))}")
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.write and rows:
        write_rows(path, rows)
        print(f"{len(rows)} row(s) added to {path}")
    return results


if __name__ == "__main__":
    main()
