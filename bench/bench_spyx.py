"""Spyx (JAX, surrogate-gradient BPTT) against this library's EventProp, same GPU, same data.

The original repository compared GeNN's EventProp with Spyx on SHD. This script times a Spyx model
of the same shape as ``bench_cuda.py``'s recurrent configuration: 700 inputs -> N recurrent
current-based LIF neurons (spyx.nn.RCuBaLIF, tau_syn 5 ms, tau_mem 20 ms as decay factors of
1 ms steps) -> 20 leaky integrators (spyx.nn.LI), trained with the integral cross-entropy of the
read-out and Adam (optax), on the same synthetic Poisson batches (``bench_engine.synthetic_batch``,
700 inputs at 1 % per step, 1400 steps, a pool of 256 samples, B = 32). One training step is the
forward pass over all steps (``spyx.nn.run``, a ``jax.lax.scan``), backpropagation through time
and the Adam update, compiled with ``nnx.jit``; the time per step is the median after warm-up,
with ``block_until_ready``. In the same process it then times this library's engine on the same
pool, on the GPU (``bench_cuda.bench_config``) when JAX ran there, else on the CPU, and prints
the ratio.

Spyx is not a dependency of this library: install it where the benchmark runs (``pip install
spyx optax``, which brings JAX and Flax; written against spyx 1.0.0, Flax 0.12). On a GPU machine
whose image has JAX, carry the wheels of spyx and of its dependencies except jax, jaxlib and numpy
(``pip download spyx==1.0.0 optax`` for the machine's Python, then delete jax*, numpy* and the
CUDA plug-ins from the folder): a newer numpy beside numba breaks numba. JAX is told not to take
most of the GPU's memory up front, so that numba's CUDA engine fits beside it.

    python bench/bench_spyx.py [--hidden 256] [--batch 32] [--steps 1400]
    python bench/bench_spyx.py --quick          # a tiny configuration, to check the script (CPU)
"""
import argparse
import math
import os
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402

from bench_engine import EPOCH_SAMPLES, synthetic_batch  # noqa: E402   (bench/, beside this file)

N_IN, N_OUT = 700, 20


def dense_spikes(data, order, batch, n_in):
    """The input spikes of the samples ``order`` as a (steps, batch, inputs) 0/1 float32 array
    (time-major, as ``spyx.nn.run`` takes it)."""
    x = np.zeros((data.n_steps, batch, n_in), dtype=np.float32)
    for k, b in enumerate(order):
        lo, hi = data.offsets[b], data.offsets[b + 1]
        x[data.steps[lo:hi], k, data.channels[lo:hi]] = 1.0
    return x


def spyx_model(hidden, dt, seed):
    """700 -> hidden recurrent CuBa LIF -> 20 LI, as a ``spyx.nn.Sequential``."""
    import spyx
    from flax import nnx
    rngs = nnx.Rngs(seed)
    return spyx.nn.Sequential(
        nnx.Linear(N_IN, hidden, use_bias=False, rngs=rngs),
        spyx.nn.RCuBaLIF((hidden,), alpha=math.exp(-dt / 5.0), beta=math.exp(-dt / 20.0),
                         rngs=rngs),
        nnx.Linear(hidden, N_OUT, use_bias=False, rngs=rngs),
        spyx.nn.LI((N_OUT,), beta=math.exp(-dt / 20.0), rngs=rngs))


def time_spyx(pool, hidden, batch, repeats, seed=0):
    """(seconds per training step, hidden spikes per sample, device name) of the Spyx model."""
    import jax
    import optax
    import spyx
    from flax import nnx
    model = spyx_model(hidden, 1.0, seed)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    loss_of = spyx.fn.integral_crossentropy(time_axis=0)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            traces, _ = spyx.nn.run(model, x)
            return loss_of(traces, y)
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def hidden_spikes(model, x):
        encode, neurons = model.layers[0], model.layers[1]
        state = neurons.initial_state(x.shape[1])

        def step(state, x_t):
            s, state = neurons(encode(x_t), state)
            return state, s.sum()
        _, counts = jax.lax.scan(step, state, x)
        return counts.sum() / x.shape[1]

    batches = []
    for k in range(repeats + 2):
        order = (np.arange(batch) + k * batch) % len(pool.labels)
        batches.append((jax.device_put(dense_spikes(pool, order, batch, N_IN)),
                        jax.device_put(np.asarray(pool.labels[order], dtype=np.int32))))
    first = time.perf_counter()
    jax.block_until_ready(train_step(model, optimizer, *batches[0]))
    first = time.perf_counter() - first
    jax.block_until_ready(train_step(model, optimizer, *batches[1]))
    times = []
    for x, y in batches[2:]:
        t0 = time.perf_counter()
        jax.block_until_ready(train_step(model, optimizer, x, y))
        times.append(time.perf_counter() - t0)
    spikes = float(hidden_spikes(model, batches[0][0]))
    return float(np.median(times)), first, spikes, str(jax.devices()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="40 steps, 16 hidden, B = 4")
    args = ap.parse_args()
    if args.quick:
        args.hidden, args.batch, args.steps, args.repeats = 16, 4, 40, 3
    pool = synthetic_batch(np.random.default_rng(1), max(args.batch, 256 if not args.quick else 8),
                           N_IN, args.steps, 0.01)
    per_step, first, spikes, device = time_spyx(pool, args.hidden, args.batch, args.repeats)
    epoch = per_step * EPOCH_SAMPLES / args.batch
    print(f"Spyx on {device}: {args.hidden} recurrent CuBa LIF, B={args.batch}, {args.steps} "
          f"steps: {per_step * 1e3:.2f} ms per training step, {epoch:.2f} s per epoch of "
          f"{EPOCH_SAMPLES}, first step (compilation) {first:.1f} s, {spikes:.0f} hidden spikes "
          f"per sample at the end", flush=True)
    from numba import cuda
    if cuda.is_available() and "cuda" in device.lower():
        from bench_cuda import SHD_INIT, bench_config
        r = bench_config(pool, N_IN, args.hidden, True, args.batch, args.steps, 4.0, 3, 40, 0,
                         SHD_INIT)
        per_epoch, spikes, where = r["per_epoch"], r["spikes"], "GPU"
    else:                            # JAX ran on the CPU: this library's CPU engine
        per_epoch, spikes = time_eventprop_cpu(pool, args.hidden, args.batch, args.steps,
                                               args.repeats)
        where = "CPU"
    print(f"EventProp (this library, {where}): {per_epoch:.2f} s per epoch, {spikes:.0f} hidden "
          f"spikes per sample")
    print(f"Spyx / EventProp time per epoch: {epoch / per_epoch:.2f}")


def time_eventprop_cpu(pool, hidden, batch, steps, repeats):
    """(seconds per epoch, hidden spikes per sample) of this library's CPU engine on the pool:
    forward, backward and Adam per batch, median after a first batch (bench_engine.py's
    network)."""
    from eventprop.network import EventPropNetwork
    from eventprop.optim import Adam
    net = EventPropNetwork(N_IN, hidden, N_OUT, recurrent=True, dt=1.0, trial_ms=float(steps),
                           loss_type="sum_weigh_exp", n_batch=batch, n_max_spike=1500, seed=2,
                           init={"input_hidden": (0.03, 0.01), "hidden_output": (0.0, 0.3),
                                 "hidden_hidden": (0.0, 0.02)})
    adam, names = Adam(), ["w_input_hidden", "w_hidden_hidden", "w_hidden_output"]
    times = []
    for k in range(repeats + 1):
        order = (np.arange(batch) + k * batch) % len(pool.labels)
        t0 = time.perf_counter()
        in_ptr, in_ch = pool.batch(order)
        result = net.run_batch(in_ptr, in_ch, pool.labels[order], learn=True)
        adam.step(net.params, result.grads, 1e-3, names)
        times.append(time.perf_counter() - t0)
    per_batch = float(np.median(times[1:]))
    return per_batch * EPOCH_SAMPLES / batch, float(result.hidden_counts.sum(axis=(1, 2)).mean())


if __name__ == "__main__":
    main()
