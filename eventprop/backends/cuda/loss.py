"""The loss terms of ``losses.output_terms`` computed on an NVIDIA GPU (numba CUDA).

``output_terms_device`` takes the forward pass's device arrays (output voltage trace, first output
spike steps) and the labels, and fills device buffers with the backward terms that
``losses.output_terms`` gives on the host (same shapes, dtypes and values to float rounding), so
that the backward kernel can read them where they are. Only ``summary`` (B, 2), the prediction and
the loss of every sample, needs to come back; ``finish`` turns it into predictions, losses and
correctness as ``losses.OutputTerms`` holds them.

With V = V_out_tr, C classes, n_steps steps, y the label and onehot_c = [c == y]; the shapes
(g, a, penalty, penalty', the forcing terms) are the functions of ``eventprop.losses.shapes``,
which the kernel calls (the host evaluates them on arrays):

* sum, sum_weigh_linear/exp/sigmoid/input: Z_c = sum_n g(n) V[n, c] dt / T over n < n_steps, with
  g(n) = ``readout_weight``(t_n) or the input accumulator a(n) (``accumulator_update``,
  ``accumulator_input``); S = softmax(Z), prediction argmax Z, loss ``neg_log``(S_y);
  force_g[b, m] = g(t_{m+1}) (a(m) for sum_weigh_input), force_c = ``readout_forcing``.
* max: n_max[c] = first argmax of V[n, c] over n < n_steps, Z_c = V[n_max, c]; S, prediction and
  loss as above; jump_step = n_max, jump_amount = ``readout_forcing``.
* avg_xentropy: S_t = softmax over c of V[m + 1, c] for every step m; loss
  sum_m ``neg_log``(S_t[m, y]) dt / T; prediction argmax_c sum_n V[n, c];
  A_out[b, m, c] = ``readout_forcing`` of S_t[m, c].
* first_spike, first_spike_exp: t_c = ``spike_time`` of first_step, S = softmax(-t / tau_0),
  prediction the first output to spike (-1 if none), loss ``neg_log``(S_y) +
  ``first_spike_penalty``(t_y); fs_term of a spiking output: ``first_spike_gradient`` with
  penalty'(t_c) (``first_spike_penalty_derivative``); a silent label neuron gets jump_step
  n_steps - 2, jump_amount penalty'(T) / n_batch.

Everything is computed in float64 (as ``losses`` does for Z, the softmaxes and the losses) and
cast to the run's dtype (the dtype of V_out_tr) where ``losses`` casts.

Layout: one kernel, ``_output_terms_kernel``, the loss type a run-time flag; one thread block per
sample, K threads (SIM_THREADS under the CUDA simulator, GPU_THREADS on a GPU). Phases, separated
by barriers:

1. sum_weigh_input: thread 0 runs the accumulator's Euler recursion (``losses.accumulator_trace``)
   over the steps into a float64 scratch row.
2. threads over steps: thread k takes the steps k, k + K, ... and keeps, per class, its part of the
   reduction over steps (sum of g V, sum of V, or the first maximum and its step) in scratch
   (B, K, C); it also writes force_g, and for avg_xentropy the per-step softmax, A_out and its
   part of the loss.
3. threads over classes: the K parts of each class are combined in the order of k into Z
   (class value), n_max into jump_step (max loss), or t (first-spike losses).
4. thread 0: max and sum of exp(Z - max) over the classes (shared memory), prediction, loss ->
   summary.
5. threads over classes: S_c and the per-class terms (force_c, jump_step, jump_amount,
   fs_term); every element of every output is written, so buffers need no clearing.

Sums over steps are added in another order than numpy's (rounding-level differences). The class
sums that give the avg_xentropy prediction are added in float64, where ``losses`` adds them in the
run's dtype (a prediction could differ only where two classes tie to that dtype's rounding).
NaN voltages are not handled as numpy's argmax handles them (numpy picks the first NaN).
A batch of B = 0 samples launches nothing (the outputs are then empty buffers).
"""
import math

import numba
import numpy as np
from numba import cuda
from numba.core import config

from eventprop import losses
from eventprop.losses.shapes import (ACCUMULATOR_GAIN, AVG_XENTROPY, FIRST_SPIKE,
                                     FIRST_SPIKE_EXP, LOSS_CODES, LOSS_TYPES, MAX, SUM_WEIGH_INPUT,
                                     accumulator_input, accumulator_update, first_spike_gradient,
                                     first_spike_penalty, first_spike_penalty_derivative, neg_log,
                                     readout_forcing, readout_weight, spike_time)

# Threads per block: on a GPU they share the steps of a sample; under the simulator every thread
# is a Python thread, so a few suffice (and exercise the strided loops).
GPU_THREADS = 128
SIM_THREADS = 4


# ----------------------------------------------------------------------------------------------
# Kernel. The loss shapes are the ``model_function``s of ``eventprop.losses.shapes`` (numba
# ``njit``): called in the kernel, they are compiled for the device from the same source. The
# builtins min and max are not used: numba's CUDA target compiles them as device functions for
# the GPU in use, so the kernel would not compile without one (``compile_ptx``).
# ----------------------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _output_terms_kernel(loss, V_out_tr, first_step, labels, tau_m_out, in_ptr,
                         dt, T, n_batch, tau_0, tau_1, alpha, tau_acc, need_backward,
                         accumulator, partial, partial_step, partial_loss, Z,
                         A_out, force_g, force_c, jump_step, jump_amount, fs_term, summary):
    """Block b: sample b; the phases of the module docstring. Scratch: accumulator (B, n_steps)
    (sum_weigh_input), partial (B, K, C) (integral, max, avg_xentropy), partial_step (B, K, C)
    (max), partial_loss (B, K) (avg_xentropy), Z (B, C); the others are outputs."""
    b = cuda.blockIdx.x
    k = cuda.threadIdx.x
    K = cuda.blockDim.x
    n_steps = V_out_tr.shape[1] - 1
    C = V_out_tr.shape[2]
    V = V_out_tr
    y = labels[b]
    integral = loss <= SUM_WEIGH_INPUT
    first_spike = loss == FIRST_SPIKE or loss == FIRST_SPIKE_EXP
    # max_c Z_c, sum_c exp(Z_c - max); dynamic shared memory (16 bytes at launch): the
    # simulator hands each thread that reaches a static shared array first its own copy
    softmax_stats = cuda.shared.array(0, numba.float64)

    # 1. accumulator of sum_weigh_input, driven by the input spikes of the previous step;
    #    a(n) = V_a at the start of step n
    if loss == SUM_WEIGH_INPUT and k == 0:
        V_a = 0.0
        I_a = 0.0
        for n in range(n_steps):
            accumulator[b, n] = V_a
            V_a = accumulator_update(V_a, I_a, dt, tau_acc)
            I_a = accumulator_input(in_ptr[b, n + 1] - in_ptr[b, n], ACCUMULATOR_GAIN)
    cuda.syncthreads()

    # 2. threads over steps: this thread's part of each class's reduction over steps
    if integral:
        for c in range(C):
            acc = 0.0
            for n in range(k, n_steps, K):
                if loss == SUM_WEIGH_INPUT:
                    g = accumulator[b, n]
                else:
                    g = readout_weight(loss, n * dt, T)
                acc += g * np.float64(V[b, n, c])
            partial[b, k, c] = acc
        if need_backward:
            for m in range(k, n_steps, K):
                if loss == SUM_WEIGH_INPUT:
                    force_g[b, m] = accumulator[b, m]                         # a(m)
                else:
                    force_g[b, m] = readout_weight(loss, (m + 1) * dt, T)     # g(t_{m+1})
    elif loss == MAX:
        if k < n_steps:
            for c in range(C):
                v_best = V[b, k, c]
                n_best = k
                for n in range(k + K, n_steps, K):
                    if V[b, n, c] > v_best:           # strict: the first maximum
                        v_best = V[b, n, c]
                        n_best = n
                partial[b, k, c] = v_best
                partial_step[b, k, c] = n_best
    elif loss == AVG_XENTROPY:
        for c in range(C):
            acc = 0.0
            for n in range(k, n_steps, K):
                acc += np.float64(V[b, n, c])
            partial[b, k, c] = acc
        loss_part = 0.0
        for m in range(k, n_steps, K):
            # softmax over the classes of V(t_{m+1})
            v_max = np.float64(V[b, m + 1, 0])
            for c in range(1, C):
                if V[b, m + 1, c] > v_max:
                    v_max = np.float64(V[b, m + 1, c])
            e_sum = 0.0
            for c in range(C):
                e_sum += math.exp(np.float64(V[b, m + 1, c]) - v_max)
            S_y = math.exp(np.float64(V[b, m + 1, y]) - v_max) / e_sum
            loss_part += neg_log(S_y)
            if need_backward:
                for c in range(C):
                    S = math.exp(np.float64(V[b, m + 1, c]) - v_max) / e_sum
                    onehot = 1.0 if c == y else 0.0
                    tau_m = np.float64(tau_m_out[c])
                    A_out[b, m, c] = readout_forcing(onehot, S, tau_m, T, n_batch)
        partial_loss[b, k] = loss_part
    cuda.syncthreads()

    # 3. threads over classes: combine the parts (in the order of k) into the class value Z_c
    for c in range(k, C, K):
        if integral:
            acc = 0.0
            for j in range(K):
                acc += partial[b, j, c]
            Z[b, c] = acc * dt / T
        elif loss == MAX:
            best = partial[b, 0, c]
            best_n = partial_step[b, 0, c]
            for j in range(1, K):
                if j < n_steps and (partial[b, j, c] > best
                                    or (partial[b, j, c] == best
                                        and partial_step[b, j, c] < best_n)):
                    best = partial[b, j, c]
                    best_n = partial_step[b, j, c]
            Z[b, c] = best                        # V(t_{n_max}, c)
            jump_step[b, c] = best_n
        elif loss == AVG_XENTROPY:
            acc = 0.0
            for j in range(K):
                acc += partial[b, j, c]
            Z[b, c] = acc                         # sum_n V[n, c]: the prediction only
        else:
            Z[b, c] = -spike_time(first_step[b, c], dt, T) / tau_0
    cuda.syncthreads()

    # 4. thread 0: softmax over the classes, prediction and loss
    if k == 0:
        if loss == AVG_XENTROPY:
            acc = 0.0
            for j in range(K):
                acc += partial_loss[b, j]
            sample_loss = acc * dt / T
        else:
            z_max = Z[b, 0]
            for c in range(1, C):
                if Z[b, c] > z_max:
                    z_max = Z[b, c]
            e_sum = 0.0
            for c in range(C):
                e_sum += math.exp(Z[b, c] - z_max)
            softmax_stats[0] = z_max
            softmax_stats[1] = e_sum
            S_y = math.exp(Z[b, y] - z_max) / e_sum
            sample_loss = neg_log(S_y)
        if first_spike:
            # prediction: the first output to spike (first index among equal times), -1 if none
            prediction = -1
            for c in range(C):
                if first_step[b, c] >= 0 and (prediction < 0
                                              or first_step[b, c] < first_step[b, prediction]):
                    prediction = c
            t_y = spike_time(first_step[b, y], dt, T)
            sample_loss += first_spike_penalty(loss, t_y, T, tau_1, alpha)
        else:
            prediction = 0
            for c in range(1, C):
                if Z[b, c] > Z[b, prediction]:    # strict: the first maximum
                    prediction = c
        summary[b, 0] = prediction
        summary[b, 1] = sample_loss
    cuda.syncthreads()

    # 5. threads over classes: the per-class backward terms (zero / -1 where none)
    for c in range(k, C, K):
        onehot = 1.0 if c == y else 0.0
        tau_m = np.float64(tau_m_out[c])
        force_c[b, c] = 0.0
        jump_amount[b, c] = 0.0
        fs_term[b, c] = 0.0
        if loss != MAX:
            jump_step[b, c] = -1
        if loss != AVG_XENTROPY:
            S = math.exp(Z[b, c] - softmax_stats[0]) / softmax_stats[1]
            if integral and need_backward:
                force_c[b, c] = readout_forcing(onehot, S, tau_m, T, n_batch)
            elif loss == MAX:
                jump_amount[b, c] = readout_forcing(onehot, S, tau_m, T, n_batch)
            elif first_spike:
                if first_step[b, c] >= 0:
                    t = spike_time(first_step[b, c], dt, T)
                    d_penalty = first_spike_penalty_derivative(loss, t, T, tau_1, alpha)
                    fs_term[b, c] = first_spike_gradient(c == y, S, d_penalty, tau_0, n_batch)
                elif c == y:                      # silent label neuron: a "phantom" spike
                    jump_step[b, c] = n_steps - 2
                    jump_amount[b, c] = (first_spike_penalty_derivative(loss, T, T, tau_1, alpha)
                                         / n_batch)


# ----------------------------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------------------------

def threads_per_block():
    """K: SIM_THREADS under the CUDA simulator, GPU_THREADS on a GPU."""
    return SIM_THREADS if config.ENABLE_CUDASIM else GPU_THREADS


def _kernel_arguments(buffer, loss_type, V_out_tr, first_step, labels, dt, T, tau_m_out,
                      n_batch, tau_0, tau_1, alpha, in_ptr, tau_accumulator, need_backward):
    """(arguments of ``_output_terms_kernel``, the backward terms, summary), every array from
    ``buffer``; the terms are a ``losses.OutputTerms`` whose predictions, losses and correctness
    are None (``finish`` gives them)."""
    if loss_type not in LOSS_CODES:
        raise ValueError(f"unknown LOSS_TYPE {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    loss = LOSS_CODES[loss_type]
    B, n_plus, C = V_out_tr.shape
    n_steps = n_plus - 1
    dtype = np.dtype(V_out_tr.dtype)
    K = threads_per_block()
    integral = loss <= SUM_WEIGH_INPUT
    if loss == SUM_WEIGH_INPUT and in_ptr is None:
        raise ValueError("sum_weigh_input needs in_ptr (the input spike pointers)")
    if in_ptr is None or loss != SUM_WEIGH_INPUT:
        in_ptr = buffer("loss/no_input", (0, 0), np.int64)

    terms = losses.OutputTerms(
        predictions=None, loss=None, correct=None,
        A_out=buffer("loss/A_out", (B, n_steps, C) if loss == AVG_XENTROPY and need_backward
                     else (0, 0, 0), dtype),
        force_g=buffer("loss/force_g", (B, n_steps) if integral and need_backward else (0, 0),
                       dtype),
        force_c=buffer("loss/force_c", (B, C), dtype),
        jump_step=buffer("loss/jump_step", (B, C), np.int32),
        jump_amount=buffer("loss/jump_amount", (B, C), dtype),
        fs_term=buffer("loss/fs_term", (B, C), dtype))
    summary = buffer("loss/summary", (B, 2), np.float64)
    scratch = (
        buffer("loss/accumulator", (B, n_steps) if loss == SUM_WEIGH_INPUT else (0, 0),
               np.float64),
        buffer("loss/partial", (B, K, C) if loss <= AVG_XENTROPY else (0, 0, 0), np.float64),
        buffer("loss/partial_step", (B, K, C) if loss == MAX else (0, 0, 0), np.int64),
        buffer("loss/partial_loss", (B, K) if loss == AVG_XENTROPY else (0, 0), np.float64),
        buffer("loss/Z", (B, C), np.float64))
    args = ((loss, V_out_tr, first_step, labels, tau_m_out, in_ptr,
             float(dt), float(T), float(n_batch), float(tau_0), float(tau_1), float(alpha),
             float(tau_accumulator), bool(need_backward))
            + scratch
            + (terms.A_out, terms.force_g, terms.force_c, terms.jump_step, terms.jump_amount,
               terms.fs_term, summary))
    return args, terms, summary


def output_terms_device(buffer, loss_type, V_out_tr, first_step, labels, dt, T, tau_m_out, n_batch,
                        tau_0=1.0, tau_1=100.0, alpha=5e-5, in_ptr=None, tau_accumulator=20.0,
                        need_backward=True):
    """-> (terms, summary): ``losses.output_terms`` on the device (module docstring).

    buffer(name, shape, dtype): a reusable device array (``workspace.Workspace.buffer``); every
    output and scratch array comes from it (names "loss/..."). V_out_tr: (B, n_steps + 1, C),
    float32 or float64 (the run's dtype); first_step: (B, C) int64, -1 = no spike; labels: (B,)
    int64; tau_m_out: (C,) of V_out_tr's dtype; in_ptr: (B, n_steps + 1) int64 input spike
    pointers (sum_weigh_input only: the accumulator is computed from in_ptr[b, n + 1] -
    in_ptr[b, n]); n_batch: nominal batch size. terms: a ``losses.OutputTerms`` of device arrays
    with the shapes and dtypes of ``losses.output_terms``'s, predictions, loss and correct None;
    summary: (B, 2) float64, [prediction, loss] per sample (``finish`` gives those three).
    Launches one kernel on the default stream and does not wait for it.
    """
    args, terms, summary = _kernel_arguments(
        buffer, loss_type, V_out_tr, first_step, labels, dt, T, tau_m_out, n_batch, tau_0, tau_1,
        alpha, in_ptr, tau_accumulator, need_backward)
    B = V_out_tr.shape[0]
    if B > 0:
        _output_terms_kernel[B, threads_per_block(), 0, 16](*args)
    return terms, summary


def finish(summary_host, labels_host):
    """(predictions int64, loss float64, correct bool) from the host copy of ``summary``;
    prediction -1: no output spiked (first-spike losses)."""
    predictions = summary_host[:, 0].astype(np.int64)
    loss = summary_host[:, 1].astype(np.float64)
    correct = predictions == labels_host
    return predictions, loss, correct


def compile_ptx(dtype, cc=(9, 0)):
    """PTX of ``_output_terms_kernel`` for runs of this dtype (float32 or float64), with the
    argument types that ``output_terms_device`` launches it with. Needs NVVM (a CUDA toolkit),
    not a GPU."""
    B, n_steps, C = 2, 5, 3
    args, _, _ = _kernel_arguments(
        lambda name, shape, kind: np.zeros(shape, kind), "sum_weigh_input",
        np.zeros((B, n_steps + 1, C), dtype), np.zeros((B, C), np.int64), np.zeros(B, np.int64),
        1.0, 5.0, np.ones(C, dtype), B, 1.0, 100.0, 5e-5, np.zeros((B, n_steps + 1), np.int64),
        20.0, True)
    signature = tuple(numba.typeof(a) for a in args)
    ptx, _ = cuda.compile_ptx(_output_terms_kernel.py_func, signature, cc=cc)
    return ptx
