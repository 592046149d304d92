"""Event-driven EventProp on the CPU: one forward and one backward kernel for a mini-batch.

The kernels take the named records of ``backends.records`` and fill the arrays of its output
records (spike store, traces, gradients).

Network: inputs -> L hidden layers of N neurons (optionally recurrent, self-connections included)
-> C output neurons (non-spiking LI, or spiking LIF for first-spike losses). Samples of a batch are
independent. The forward kernel runs them in parallel; the backward kernel runs chunks of
consecutive samples in parallel, each chunk with its own gradient accumulators, which the caller
sums in chunk order. The chunks do not depend on the number of threads, so neither do the results.
The threads share the work as it comes (``take_next``), not in fixed shares: a thread whose core
is busy with another process takes fewer samples instead of holding up the batch.

Time base. Step n runs from t_n to t_{n+1}:
  V(t_{n+1}) = alpha V(t_n) + c I(t_n);  threshold test on V(t_{n+1});  a spike "at step n" adds its
  weight to the postsynaptic I(t_{n+1}) = beta I(t_n) + sum_i w_ij s_i(n).
Backward step m moves the adjoints from t_{m+1} to t_m; the spikes of step m (m < n_steps - 1) then
take their gradient samples and their reverse current from the postsynaptic adjoints at t_{m+1},
and the spiking neuron's lambda_V jumps.

Spikes are stored per sample as a time-ordered list: for step n, entries sp_ptr[b, n] ..
sp_ptr[b, n + 1] - 1 of (sp_idx = global neuron index, sp_imv = ImV, sp_b = ALIF threshold).
Global index l * N + i is hidden neuron i of layer l; L * N + c is output neuron c. At most
``n_max_spike`` spikes per neuron and trial are stored (the rest still act in the forward pass and
are counted in ``n_unstored``); if a sample needs more room than ``sp_idx`` has, ``sp_need`` says how
much and the caller re-runs the forward pass with larger buffers (the random numbers are
counter-based, so the re-run is identical).
"""
import math
from collections import namedtuple

import numba
import numpy as np
from numba import literal_unroll, njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

from eventprop.backends.cpu.intrinsics import borrowed, take_next
from eventprop.backends.records import Gradients
from eventprop.models import (alif_imv, alif_spike_jump, alif_threshold_decay, lif_adjoint_update,
                              lif_imv, lif_membrane_update, lif_spike_jump, normal_hash,
                              synapse_decay, tau_m_gradient, tau_s_gradient, uniform_hash)

FASTMATH = {"reassoc", "contract", "nsz"}


# ----------------------------------------------------------------------------------------------
# Projections (``eventprop.projections``): a spike's synapses, dense or sparse, with or without
# delays. A spike's row is named by a tuple ``row`` ((l, i) of a layered projection, (i,) of the
# input and output ones) and its targets' layer by a tuple ``post`` ((l,) or ()): the helpers
# index the whole arrays, W[row + (k,)], I[post + (j,)], and never take a row as an array of its
# own (every such view costs an atomic reference-count pair; per spike that was a fifth of the
# forward pass). A dense row holds one entry per postsynaptic neuron j; a sparse row holds its
# existing synapses only (``projections.compact``): entry k < n_syn is the synapse onto
# j = idx[row + (k,)] (unsigned, so indexing needs no negative-index test), for the weight W,
# its gradient dW, the delay steps D and their gradient dd alike. The ring buffer ``buf``
# (..., S, n_post) holds the targets' currents of the next S steps, slot a % S for step a. ``D``
# is empty without delays, ``idx`` for a dense projection.
# ----------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _deliver(W, D, idx, n_syn, row, I, buf, post, n, n_steps):
    """Synapse phase of a spike of step n: I_j(t_{n+1}) += w for a synapse without delay, or
    buf[n + D] += w to be added at step n + D (dropped beyond the trial)."""
    sparse = idx.shape[0] > 0
    if D.shape[0] == 0:
        if sparse:
            for k in range(n_syn):
                I[post + (idx[row + (k,)],)] += W[row + (k,)]
        else:
            for j in range(W.shape[len(row)]):
                I[post + (j,)] += W[row + (j,)]
        return
    S = buf.shape[len(post)]
    now = n % S                      # slot of step n; slot of step n + D: now + D, wrapped
    for k in range(n_syn if sparse else W.shape[len(row)]):
        d = D[row + (k,)]
        j = idx[row + (k,)] if sparse else k
        if d > 0:
            if n + d < n_steps:
                slot = now + d
                buf[post + (slot - S if slot >= S else slot, j)] += W[row + (k,)]
        else:
            I[post + (j,)] += W[row + (k,)]


@njit(cache=True, inline="always")
def _deliver_input(W, D, idx, n_syn, c, buf, n, n_steps):
    """An input spike (channel c) of step n: buf[n + D] += w (D = 0 included: the input
    currents of a step are summed from zero, then added, as without delays)."""
    S = buf.shape[0]
    now = n % S
    if D.shape[0] == 0:              # sparse, without delays
        for k in range(n_syn):
            buf[now, idx[c, k]] += W[c, k]
        return
    sparse = idx.shape[0] > 0
    for k in range(n_syn if sparse else W.shape[1]):
        j = idx[c, k] if sparse else k
        d = D[c, k]
        if n + d < n_steps:
            slot = now + d
            buf[slot - S if slot >= S else slot, j] += W[c, k]


@njit(cache=True, fastmath=FASTMATH)
def _adjoint_row(rev, W, dW, row, diff, tau_lam_I, post, n):
    """rev + sum_j w_j diff_j (the reverse current), and dw_j -= tau_s,j lambda_I,j, over
    j < n of row ``row``, with the adjoints diff[post + (j,)] and tau_lam_I[post + (j,)]. Not
    inlined: every caller runs this one compiled loop, so its sum is rounded alike for a dense
    row and for a sparse row that has every synapse."""
    for j in range(n):
        rev += W[row + (j,)] * diff[post + (j,)]
        dW[row + (j,)] -= tau_lam_I[post + (j,)]
    return rev


@njit(cache=True, fastmath=FASTMATH)
def _reverse_current(rev, W, row, diff, post, n):
    """rev + sum_j w_j diff_j over j < n (``_adjoint_row`` without the gradient samples, which
    a projection whose gradients are formed after the time loop leaves to
    ``_subtract_sums_by_neuron``)."""
    for j in range(n):
        rev += W[row + (j,)] * diff[post + (j,)]
    return rev


@njit(cache=True, inline="always")
def _backward_synapses(rev, W, dW, dd, D, idx, n_syn, row, post_diff, post_tau_lam_I, post, m,
                       n_steps, later=False):
    """Backward pass of a spike of step m through one row of synapses: the gradient samples
    dW_ij -= tau_s,j lambda_I,j and (learned delays) dd_ij += w_ij (lambda_V,j - lambda_I,j),
    and the reverse current rev += w_ij (lambda_V,j - lambda_I,j), with the postsynaptic
    adjoints at the spike's arrival t_{m+1+D_ij} (``post_*[post + (a % S,)]`` holds those at
    t_{a+1}; ``post_tau_lam_I`` holds tau_s,j lambda_I,j); returns rev. A synapse that arrives
    after the last step it could change adds nothing. A projection whose delays are all zero
    comes without delay steps (``network.synapses``), so it runs exactly as without delays.
    ``later`` (a dense projection without delays): the gradient samples are left for after the
    time loop."""
    sparse = idx.shape[0] > 0
    S = post_diff.shape[len(post)]
    n_post = post_diff.shape[len(post) + 1]
    now = m % S                      # slot of step m; of step m + D: now + D, wrapped
    if D.shape[0] == 0:
        at_now = post + (now,)
        if sparse and n_syn < n_post:               # a sparse row: its synapses only
            return rev + _sparse_adjoint_row(W, dW, dd, idx, n_syn, row, post_diff,
                                             post_tau_lam_I, at_now)
        if later:                                   # dense, or a sparse row with them all
            return _reverse_current(rev, W, row, post_diff, at_now, n_post)
        rev = _adjoint_row(rev, W, dW, row, post_diff, post_tau_lam_I, at_now, n_post)
        if dd.shape[0] > 0:
            for j in range(n_post):
                dd[row + (j,)] += W[row + (j,)] * post_diff[at_now + (j,)]
        return rev
    learn_delays = dd.shape[0] > 0   # a row with delays: a slot per synapse
    for k in range(n_syn if sparse else W.shape[len(row)]):
        d = D[row + (k,)]
        if m + d >= n_steps - 1:
            continue
        j = idx[row + (k,)] if sparse else k
        slot = now + d
        if slot >= S:
            slot -= S
        w = W[row + (k,)]
        diff = post_diff[post + (slot, j)]
        rev += w * diff
        dW[row + (k,)] -= post_tau_lam_I[post + (slot, j)]
        if learn_delays:
            dd[row + (k,)] += w * diff
    return rev


@njit(cache=True, fastmath=FASTMATH)
def _sparse_adjoint_row(W, dW, dd, idx, n, row, diff, tau_lam_I, at):
    """Over the synapses k < n of a sparse row (onto j = idx_k): dw_k -= tau_s,j lambda_I,j and
    (learned delays) dd_k += w_k diff_j; returns the reverse current sum_k w_k diff_j. The sum
    has a loop of its own: without stores in it, the processor gathers the diff_j several at a
    time (SIMD) instead of one synapse after the other."""
    rev = W.dtype.type(0)
    for k in range(n):
        rev += W[row + (k,)] * diff[at + (idx[row + (k,)],)]
    for k in range(n):
        dW[row + (k,)] -= tau_lam_I[at + (idx[row + (k,)],)]
    if dd.shape[0] > 0:
        for k in range(n):
            dd[row + (k,)] += W[row + (k,)] * diff[at + (idx[row + (k,)],)]
    return rev


ForwardState = namedtuple("ForwardState", [
    "V", "I", "thr_b",              # hidden neurons (L, N): V, I, ALIF threshold offset
    "Vo", "Io",                     # output neurons (C,)
    "x_in",                         # input current of the step (N,)
    "x_buf", "h_buf", "o_buf",      # ring buffers of arriving currents: inputs (S or 0, N)
                                    # (delayed or sparse), hidden (L, S or 1, N), output (S or 1, C)
    "stored", "fired",              # stored spikes per neuron; the neurons fired in a step
    "crossed",                      # threshold crossings of a layer in a step (bool, N rounded
                                    # up to a multiple of 64: read as uint64 words)
    "crossing"])                    # the neurons of a layer that crossed in a step (N,)
ForwardState.__doc__ = "The arrays of a thread in the forward pass, reused for its samples."


@njit(cache=True)
def _forward_state(params, synapses):
    """A thread's ``ForwardState``; ring buffers of ``synapses.n_slots`` slots where a
    projection has delays (or, for the inputs, is sparse), one otherwise."""
    L, N = params.h_alpha.shape
    C = params.o_alpha.shape[0]
    S = synapses.n_slots
    dtype = params.W_in.dtype
    input_buffered = synapses.D_in.shape[0] > 0 or synapses.idx_in.shape[0] > 0
    hidden_delayed = synapses.D_fwd.shape[0] > 0 or synapses.D_rec.shape[0] > 0
    output_delayed = synapses.D_out.shape[0] > 0
    return ForwardState(np.zeros((L, N), dtype=dtype), np.zeros((L, N), dtype=dtype),
                        np.zeros((L, N), dtype=dtype), np.zeros(C, dtype=dtype),
                        np.zeros(C, dtype=dtype), np.zeros(N, dtype=dtype),
                        np.zeros((S if input_buffered else 0, N), dtype=dtype),
                        np.zeros((L, S if hidden_delayed else 1, N), dtype=dtype),
                        np.zeros((S if output_delayed else 1, C), dtype=dtype),
                        np.zeros(L * N + C, dtype=np.int32), np.zeros(L * N, dtype=np.int32),
                        np.zeros(64 * ((N + 63) // 64), dtype=np.bool_),
                        np.zeros(N, dtype=np.int32))


# the lowest bit of each of the 8 bytes of a word, gathered into its top byte by one product
_BYTE_BITS = np.uint64(0x0102040810204080)


@njit(cache=True, fastmath=FASTMATH)
def _threshold_crossings(V, thr_b, theta, crossed, crossing):
    """The neurons i with V_i >= theta + b_i, in order, into ``crossing``; returns how many.
    The test runs on every neuron at once (vectorised) into the bytes of ``crossed``; 64 of them
    at a time become the bits of one mask (a product per 8 bytes), whose set bits are read
    lowest first. No branch per neuron: crossings are rare and at random, so such branches
    would be mispredicted."""
    N = V.shape[0]
    for i in range(N):
        crossed[i] = not V[i] < theta + thr_b[i]
    words = crossed.view(np.uint64)   # 8 neurons each; a multiple of 8 words, padded with 0
    count = 0
    for w in range(0, words.shape[0], 8):
        mask = np.uint64(0)
        for q in range(8):
            mask |= ((words[w + q] * _BYTE_BITS) >> np.uint64(56)) << np.uint64(8 * q)
        while mask != 0:
            crossing[count] = 8 * w + trailing_zeros(mask)
            count += 1
            mask &= mask - np.uint64(1)
    return count


@njit(cache=True, fastmath=FASTMATH)
def _forward_sample(b, params, synapses, model, inputs, options, store, traces, state):
    """Forward pass of sample b, with the thread's arrays ``state``."""
    params, synapses, store, traces, state = (borrowed(params), borrowed(synapses),
                                              borrowed(store), borrowed(traces),
                                              borrowed(state))
    in_ptr, in_ch = inputs
    W_in, W_fwd, W_rec, W_out = params.W_in, params.W_fwd, params.W_rec, params.W_out
    h_alpha, h_beta, h_c = params.h_alpha, params.h_beta, params.h_c
    o_alpha, o_beta, o_c = params.o_alpha, params.o_beta, params.o_c
    tau_m_h = params.tau_m_h
    theta, v_reset, dt, n_steps = model.theta, model.v_reset, model.dt, model.n_steps
    alif, rho_b, tau_b, b_incr = model.alif, model.rho_b, model.tau_b, model.b_incr
    out_spiking, n_max_spike = model.out_spiking, model.n_max_spike
    p_drop, noise_amp, seed = options.p_drop, options.noise_amp, options.seed
    keep_traces = options.keep_traces
    sp_ptr, sp_idx, sp_imv, sp_b = store.sp_ptr, store.sp_idx, store.sp_imv, store.sp_b
    sp_need, n_unstored, counts, first_step = (store.sp_need, store.n_unstored, store.counts,
                                               store.first_step)
    V_out_tr, I_out_tr, V_h_tr, I_h_tr = traces
    L, N = h_alpha.shape
    C = o_alpha.shape[0]
    recurrent = W_rec.shape[0] > 0
    cap = sp_idx.shape[1]
    real = W_in.dtype.type          # float32 or float64: keep every operation in that precision
    theta, v_reset, rho_b, tau_b, b_incr = real(theta), real(v_reset), real(rho_b), real(tau_b), \
        real(b_incr)
    V, I, thr_b, Vo, Io, x_in, x_buf, h_buf, o_buf, stored, fired, crossed, crossing = state
    zero = real(0)
    V[:], I[:], thr_b[:], Vo[:], Io[:], stored[:] = zero, zero, zero, zero, zero, 0
    x_buf[:], h_buf[:], o_buf[:] = zero, zero, zero
    # projections: delay steps, sparse rows, and the ring buffers of delayed spikes (inputs,
    # hidden layers, outputs; one slot when a projection has no delays)
    D_in, D_fwd, D_rec, D_out = synapses.D_in, synapses.D_fwd, synapses.D_rec, synapses.D_out
    idx_in, idx_fwd, idx_rec, idx_out = (synapses.idx_in, synapses.idx_fwd, synapses.idx_rec,
                                         synapses.idx_out)
    len_in, len_fwd, len_rec, len_out = (synapses.len_in, synapses.len_fwd, synapses.len_rec,
                                         synapses.len_out)
    sparse_in, sparse_fwd, sparse_rec, sparse_out = (idx_in.shape[0] > 0, idx_fwd.shape[0] > 0,
                                                     idx_rec.shape[0] > 0, idx_out.shape[0] > 0)
    S = synapses.n_slots
    input_buffered = D_in.shape[0] > 0 or sparse_in
    hidden_delayed = D_fwd.shape[0] > 0 or D_rec.shape[0] > 0
    output_delayed = D_out.shape[0] > 0
    noise_scale = real(noise_amp * math.sqrt(dt))
    ns = 0
    for c in range(C):
        first_step[b, c] = -1
    for n in range(n_steps):
        sp_ptr[b, n] = min(ns, cap)
        if keep_traces:
            V_h_tr[b, n] = V
            I_h_tr[b, n] = I
        for c in range(C):
            V_out_tr[b, n, c] = Vo[c]
            I_out_tr[b, n, c] = Io[c]
        # neuron phase: every neuron uses I(t_n)
        n_fired = 0
        for l in range(L):
            for i in range(N):
                V[l, i] = lif_membrane_update(V[l, i], I[l, i], h_alpha[l, i], h_c[l, i])
            if noise_amp > 0.0:
                for i in range(N):
                    V[l, i] += noise_scale * normal_hash(seed, b, n, l * N + i)
            if alif:
                for i in range(N):
                    thr_b[l, i] = alif_threshold_decay(thr_b[l, i], rho_b)
            n_crossed = _threshold_crossings(V[l], thr_b[l], theta, crossed, crossing)
            for k in range(n_crossed):
                i = crossing[k]
                if p_drop > 0.0 and uniform_hash(seed + 1, b, n, l * N + i) <= p_drop:
                    continue  # dropped crossing: no spike, no reset
                g = l * N + i
                counts[b, g] += 1
                fired[n_fired] = g
                n_fired += 1
                if stored[g] < n_max_spike:
                    stored[g] += 1
                    if ns < cap:
                        sp_idx[b, ns] = g
                        if alif:
                            sp_imv[b, ns] = alif_imv(I[l, i], V[l, i], thr_b[l, i],
                                                     tau_m_h[l, i], tau_b)
                            sp_b[b, ns] = thr_b[l, i]
                        else:
                            sp_imv[b, ns] = lif_imv(I[l, i], V[l, i])
                    ns += 1
                else:
                    n_unstored[b] += 1
                V[l, i] = v_reset
                if alif:
                    thr_b[l, i] += b_incr
        for c in range(C):
            v = lif_membrane_update(Vo[c], Io[c], o_alpha[c], o_c[c])
            if out_spiking and v >= theta:
                g = L * N + c
                counts[b, g] += 1
                if first_step[b, c] < 0:
                    first_step[b, c] = n
                if stored[g] < n_max_spike:
                    stored[g] += 1
                    if ns < cap:
                        sp_idx[b, ns] = g
                        sp_imv[b, ns] = lif_imv(Io[c], v)
                    ns += 1
                else:
                    n_unstored[b] += 1
                v = v_reset
            Vo[c] = v
        # synapse phase: I(t_{n+1}) = beta I(t_n) + weights of the spikes of step n
        for l in range(L):
            for i in range(N):
                I[l, i] = synapse_decay(I[l, i], h_beta[l, i])
        for c in range(C):
            Io[c] = synapse_decay(Io[c], o_beta[c])
        # the input spikes of the step are summed first, then added (the order of the GPU,
        # which sums them before the time loop); with delays or sparse input synapses they are
        # summed into the ring buffer's slot of the step at which they arrive
        if input_buffered:
            for k in range(in_ptr[b, n], in_ptr[b, n + 1]):
                c = in_ch[k]
                _deliver_input(W_in, D_in, idx_in, len_in[c] if sparse_in else 0, c, x_buf, n,
                               n_steps)
            now = n % S
            for j in range(N):
                I[0, j] += x_buf[now, j]
                x_buf[now, j] = zero
        elif in_ptr[b, n + 1] > in_ptr[b, n]:
            for j in range(N):
                x_in[j] = zero
            for k in range(in_ptr[b, n], in_ptr[b, n + 1]):
                c = in_ch[k]
                for j in range(N):
                    x_in[j] += W_in[c, j]
            for j in range(N):
                I[0, j] += x_in[j]
        # delayed spikes of earlier steps that arrive now
        if hidden_delayed:
            now = n % S
            for l in range(L):
                for j in range(N):
                    I[l, j] += h_buf[l, now, j]
                    h_buf[l, now, j] = zero
        if output_delayed:
            now = n % S
            for c in range(C):
                Io[c] += o_buf[now, c]
                o_buf[now, c] = zero
        l = 0
        for k in range(n_fired):
            while fired[k] >= (l + 1) * N:      # ``fired`` lists the layers in order
                l += 1
            i = fired[k] - l * N
            if l < L - 1:
                _deliver(W_fwd, D_fwd, idx_fwd, len_fwd[l, i] if sparse_fwd else 0, (l, i), I,
                         h_buf, (l + 1,), n, n_steps)
            else:
                _deliver(W_out, D_out, idx_out, len_out[i] if sparse_out else 0, (i,), Io,
                         o_buf, (), n, n_steps)
            if recurrent:
                _deliver(W_rec, D_rec, idx_rec, len_rec[l, i] if sparse_rec else 0, (l, i), I,
                         h_buf, (l,), n, n_steps)
    sp_ptr[b, n_steps] = min(ns, cap)
    sp_need[b] = ns
    for c in range(C):
        V_out_tr[b, n_steps, c] = Vo[c]


def forward_batch(params, synapses, model, inputs, options, store, traces):
    """Forward pass of every sample of the batch: fills the spike store and the traces."""
    _forward_batch(params, synapses, model, inputs, options, store, traces,
                   numba.get_num_threads())


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _forward_batch(params, synapses, model, inputs, options, store, traces, n_threads):
    """``forward_batch`` on ``n_threads`` threads."""
    B = inputs.in_ptr.shape[0]
    next_sample = np.zeros(1, dtype=np.int64)
    for _ in prange(n_threads):
        state = _forward_state(params, synapses)
        b = take_next(next_sample)
        while b < B:
            _forward_sample(b, params, synapses, model, inputs, options, store, traces, state)
            b = take_next(next_sample)


BackwardState = namedtuple("BackwardState", [
    "lam_V", "lam_I", "lam_b",      # adjoints of the hidden neurons (L, N)
    "lam_Vo", "lam_Io",             # of the output neurons (C,)
    "post_diff", "post_tau_lam_I",  # hidden adjoints at t_{m+1} (L, S, N), slot m % S:
                                    # lambda_V - lambda_I and tau_s lambda_I; S = longest delay
                                    # + 1 steps with delays (for the spikes that arrive later), 1
    "post_diff_o", "post_tau_lam_Io",   # the same of the output neurons (S, C)
    "history"])                     # tau_s lambda_I of every hidden layer at every step
                                    # (L, n_steps, N), or empty: see ``_backward_sample``
BackwardState.__doc__ = "The arrays of a thread in the backward pass, reused for its samples."


@njit(cache=True)
def _backward_state(params, synapses, n_steps, keep_history):
    """A thread's ``BackwardState``."""
    L, N = params.h_alpha.shape
    C = params.o_alpha.shape[0]
    dtype = params.W_in.dtype
    delayed = (synapses.D_in.shape[0] > 0 or synapses.D_fwd.shape[0] > 0
               or synapses.D_rec.shape[0] > 0 or synapses.D_out.shape[0] > 0)
    S = synapses.n_slots if delayed else 1
    return BackwardState(np.zeros((L, N), dtype=dtype), np.zeros((L, N), dtype=dtype),
                         np.zeros((L, N), dtype=dtype), np.zeros(C, dtype=dtype),
                         np.zeros(C, dtype=dtype), np.zeros((L, S, N), dtype=dtype),
                         np.zeros((L, S, N), dtype=dtype), np.zeros((S, C), dtype=dtype),
                         np.zeros((S, C), dtype=dtype),
                         np.zeros((L if keep_history else 0, n_steps, N), dtype=dtype))


@njit(cache=True, fastmath=FASTMATH)
def _backward_sample(b, params, synapses, model, inputs, options, store, terms, traces, grads,
                     state, later):
    """Backward pass of sample b, with the thread's arrays ``state``; its gradients are added
    to ``grads``. ``later`` (input, hidden -> hidden, recurrent): the projections whose weight
    gradients are formed after the time loop, by presynaptic neuron
    (``_subtract_sums_by_neuron``), instead of a row of dW per spike; ``state.history`` keeps
    tau_s lambda_I of every hidden layer at every step for them."""
    params, synapses, store, terms, traces, grads, state = (
        borrowed(params), borrowed(synapses), borrowed(store), borrowed(terms),
        borrowed(traces), borrowed(grads), borrowed(state))
    in_ptr, in_ch = inputs
    W_in, W_fwd, W_rec, W_out = params.W_in, params.W_fwd, params.W_rec, params.W_out
    h_alpha, h_beta, h_d = params.h_alpha, params.h_beta, params.h_d
    o_alpha, o_beta, o_d = params.o_alpha, params.o_beta, params.o_d
    tau_m_h, tau_s_h, tau_m_o, tau_s_o = params.tau_m_h, params.tau_s_h, params.tau_m_o, \
        params.tau_s_o
    theta_jump = model.theta - model.v_reset
    dt, n_steps, alif = model.dt, model.n_steps, model.alif
    rho_b, tau_b, b_incr = model.rho_b, model.tau_b, model.b_incr
    train_tau, train_tau_out = options.train_tau, options.train_tau_out
    sp_ptr, sp_idx, sp_imv, sp_b = store.sp_ptr, store.sp_idx, store.sp_imv, store.sp_b
    first_step = store.first_step
    A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump = terms
    V_out_tr, I_out_tr, V_h_tr, I_h_tr = traces
    dW_in, dW_fwd, dW_rec, dW_out = grads.dW_in, grads.dW_fwd, grads.dW_rec, grads.dW_out
    dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o = (grads.dtau_m_h, grads.dtau_s_h, grads.dtau_m_o,
                                              grads.dtau_s_o)
    dd_in, dd_fwd, dd_rec, dd_out = grads.dd_in, grads.dd_fwd, grads.dd_rec, grads.dd_out
    D_in, D_fwd, D_rec, D_out = synapses.D_in, synapses.D_fwd, synapses.D_rec, synapses.D_out
    idx_in, idx_fwd, idx_rec, idx_out = (synapses.idx_in, synapses.idx_fwd, synapses.idx_rec,
                                         synapses.idx_out)
    len_in, len_fwd, len_rec, len_out = (synapses.len_in, synapses.len_fwd, synapses.len_rec,
                                         synapses.len_out)
    delayed = (D_in.shape[0] > 0 or D_fwd.shape[0] > 0 or D_rec.shape[0] > 0
               or D_out.shape[0] > 0)
    sparse_in, sparse_fwd, sparse_rec, sparse_out = (idx_in.shape[0] > 0, idx_fwd.shape[0] > 0,
                                                     idx_rec.shape[0] > 0, idx_out.shape[0] > 0)
    L, N = h_alpha.shape
    C = o_alpha.shape[0]
    recurrent = W_rec.shape[0] > 0
    full_forcing = A_out.shape[0] > 0
    separable_forcing = force_g.shape[0] > 0
    dtype = W_out.dtype
    real = dtype.type
    zero = real(0)
    theta_jump, dt, rho_b, tau_b, b_incr = real(theta_jump), real(dt), real(rho_b), real(tau_b), \
        real(b_incr)
    (lam_V, lam_I, lam_b, lam_Vo, lam_Io, post_diff, post_tau_lam_I, post_diff_o,
     post_tau_lam_Io, history) = state
    lam_V[:], lam_I[:], lam_b[:], lam_Vo[:], lam_Io[:] = zero, zero, zero, zero, zero
    post_diff[:], post_tau_lam_I[:], post_diff_o[:], post_tau_lam_Io[:] = zero, zero, zero, zero
    S = post_diff.shape[1]
    for m in range(n_steps - 1, -1, -1):
        n_in = in_ptr[b, m + 1] - in_ptr[b, m]
        s0 = sp_ptr[b, m]
        s1 = sp_ptr[b, m + 1]
        events = m < n_steps - 1 and (n_in > 0 or s1 > s0)
        slot = m % S
        if events or (delayed and m < n_steps - 1):
            for l in range(L):
                lV, lI, ts_l = lam_V[l], lam_I[l], tau_s_h[l]
                pd, pq = post_diff[l, slot], post_tau_lam_I[l, slot]
                for j in range(N):
                    pd[j] = lV[j] - lI[j]
                    pq[j] = ts_l[j] * lI[j]
            for c in range(C):
                post_diff_o[slot, c] = lam_Vo[c] - lam_Io[c]
                post_tau_lam_Io[slot, c] = tau_s_o[c] * lam_Io[c]
            if history.shape[0] > 0 and events:
                for l in range(L):
                    history[l, m] = post_tau_lam_I[l, slot]
        # free adjoint dynamics from t_{m+1} to t_m
        for l in range(L):
            lV, lI, a_l, b_l, d_l = lam_V[l], lam_I[l], h_alpha[l], h_beta[l], h_d[l]
            for i in range(N):
                lV[i], lI[i] = lif_adjoint_update(lV[i], lI[i], zero, a_l[i], b_l[i], d_l[i])
            if alif:
                lb = lam_b[l]
                for i in range(N):
                    lb[i] = alif_threshold_decay(lb[i], rho_b)
            if train_tau:
                V_m, I_m = V_h_tr[b, m, l], I_h_tr[b, m, l]
                tm_l, ts_l = tau_m_h[l], tau_s_h[l]
                dtm, dts = dtau_m_h[l], dtau_s_h[l]
                for i in range(N):
                    dtm[i] += tau_m_gradient(lV[i], V_m[i], I_m[i], tm_l[i], dt)
                    dts[i] += tau_s_gradient(lI[i], I_m[i], ts_l[i], dt)
        for c in range(C):
            A = zero
            if full_forcing:
                A = A_out[b, m, c]
            elif separable_forcing:
                A = force_g[b, m] * force_c[b, c]
            lam_Vo[c], lam_Io[c] = lif_adjoint_update(lam_Vo[c], lam_Io[c], A, o_alpha[c],
                                                      o_beta[c], o_d[c])
            if train_tau_out:
                dtau_m_o[c] += tau_m_gradient(lam_Vo[c], V_out_tr[b, m, c], I_out_tr[b, m, c],
                                              tau_m_o[c], dt)
                dtau_s_o[c] += tau_s_gradient(lam_Io[c], I_out_tr[b, m, c], tau_s_o[c], dt)
        if events:
            # input spikes: gradient samples (and the delays' gradients; no reverse current)
            if D_in.shape[0] == 0 and sparse_in and dd_in.shape[0] == 0:
                for k in range(in_ptr[b, m], in_ptr[b, m + 1]):
                    c = in_ch[k]
                    for q in range(len_in[c]):
                        dW_in[c, q] -= post_tau_lam_I[0, slot, idx_in[c, q]]
            elif D_in.shape[0] > 0 or sparse_in or dd_in.shape[0] > 0:
                for k in range(in_ptr[b, m], in_ptr[b, m + 1]):
                    c = in_ch[k]
                    _backward_synapses(zero, W_in, dW_in, dd_in, D_in, idx_in,
                                       len_in[c] if sparse_in else 0, (c,), post_diff,
                                       post_tau_lam_I, (0,), m, n_steps)
            elif later[0]:
                pass                 # the input gradients: by channel after the loop
            else:
                for k in range(in_ptr[b, m], in_ptr[b, m + 1]):
                    c = in_ch[k]
                    for j in range(N):
                        dW_in[c, j] -= post_tau_lam_I[0, slot, j]
            # hidden and output spikes of step m
            for s in range(s0, s1):
                g = sp_idx[b, s]
                imv = sp_imv[b, s]
                if g < L * N:
                    l = g // N
                    i = g - l * N
                    rev = zero
                    if l < L - 1:
                        rev = _backward_synapses(
                            rev, W_fwd, dW_fwd, dd_fwd, D_fwd, idx_fwd,
                            len_fwd[l, i] if sparse_fwd else 0, (l, i), post_diff,
                            post_tau_lam_I, (l + 1,), m, n_steps, later[1])
                    else:
                        rev = _backward_synapses(
                            rev, W_out, dW_out, dd_out, D_out, idx_out,
                            len_out[i] if sparse_out else 0, (i,), post_diff_o, post_tau_lam_Io,
                            (), m, n_steps)
                    if recurrent:
                        rev = _backward_synapses(
                            rev, W_rec, dW_rec, dd_rec, D_rec, idx_rec,
                            len_rec[l, i] if sparse_rec else 0, (l, i), post_diff,
                            post_tau_lam_I, (l,), m, n_steps, later[2])
                    if alif:
                        lam_V[l, i], lam_b[l, i] = alif_spike_jump(
                            lam_V[l, i], lam_b[l, i], rev, theta_jump, sp_b[b, s], imv, b_incr,
                            tau_m_h[l, i], tau_b)
                    else:
                        lam_V[l, i] = lif_spike_jump(lam_V[l, i], rev, theta_jump, imv)
                    lam_V[l, i] += reg_jump[b, l, i]
                else:
                    c = g - L * N
                    lam_Vo[c] = lif_spike_jump(lam_Vo[c], zero, theta_jump, imv)
                    if m == first_step[b, c]:
                        lam_Vo[c] += fs_term[b, c] / imv
        # loss jumps that are not spike-triggered (max read-out, phantom spike)
        for c in range(C):
            if jump_step[b, c] == m:
                lam_Vo[c] += jump_amount[b, c]
    if later[0] or later[1] or later[2]:
        _gradients_after_the_loop(b, in_ptr, in_ch, sp_ptr, sp_idx, history, grads, later)


@njit(cache=True, fastmath=FASTMATH)
def _gradients_after_the_loop(b, in_ptr, in_ch, sp_ptr, sp_idx, history, grads, later):
    """The weight gradients of the projections ``later`` (input, hidden -> hidden, recurrent)
    of sample b from ``history``: the input spikes and the stored hidden spikes of the steps
    m < n_steps - 1 (those of the last step change nothing), by presynaptic neuron."""
    L, n_steps, N = history.shape
    if later[0]:                     # input spikes (channel, step)
        lo, hi = in_ptr[b, 0], in_ptr[b, n_steps - 1]
        steps = np.empty(hi - lo, dtype=np.int64)
        for m in range(n_steps - 1):
            steps[in_ptr[b, m] - lo:in_ptr[b, m + 1] - lo] = m
        _subtract_sums_by_neuron(in_ch[lo:hi], steps, history[0], grads.dW_in)
    if later[1] or later[2]:         # stored hidden spikes (neuron, step), by layer
        lo, hi = sp_ptr[b, 0], sp_ptr[b, n_steps - 1]
        steps = np.empty(hi - lo, dtype=np.int64)
        for m in range(n_steps - 1):
            steps[sp_ptr[b, m] - lo:sp_ptr[b, m + 1] - lo] = m
        neurons = sp_idx[b, lo:hi]
        for l in range(L):
            of_layer = (neurons >= l * N) & (neurons < (l + 1) * N)
            pre, at = neurons[of_layer] - l * N, steps[of_layer]
            if later[1] and l < L - 1:
                _subtract_sums_by_neuron(pre, at, history[l + 1], grads.dW_fwd[l])
            if later[2]:
                _subtract_sums_by_neuron(pre, at, history[l], grads.dW_rec[l])


@njit(cache=True, fastmath=FASTMATH)
def _subtract_sums_by_neuron(pre, steps, history, dW):
    """dW[i] -= sum of history[m] over the spikes (pre = i, step m) of a sample: the gradient
    samples -tau_s lambda_I(t_(m+1)) of a projection without delays, with the spikes sorted by
    presynaptic neuron (a counting sort) and each neuron's sum formed in a row of its own,
    subtracted from dW once. The same gradient as a row of dW per spike, with one pass over dW
    per sample instead of one per spike: where dW is larger than the caches (many inputs, large
    hidden layers), its rows are what the time goes into."""
    n_pre, N = dW.shape
    start = np.zeros(n_pre + 1, dtype=np.int64)
    for q in range(pre.shape[0]):
        start[pre[q] + 1] += 1
    for i in range(n_pre):
        start[i + 1] += start[i]
    filled = start[:n_pre].copy()
    step_of = np.empty(pre.shape[0], dtype=np.int64)
    for q in range(pre.shape[0]):
        step_of[filled[pre[q]]] = steps[q]
        filled[pre[q]] += 1
    row = np.empty(N, dtype=dW.dtype)
    for i in range(n_pre):
        if start[i + 1] == start[i]:
            continue
        row[:] = history[step_of[start[i]]]
        for q in range(start[i] + 1, start[i + 1]):
            h = history[step_of[q]]
            for j in range(N):
                row[j] += h[j]
        dw = dW[i]
        for j in range(N):
            dw[j] -= row[j]


# A projection without delays or sparseness has its weight gradients formed after the time loop
# (``_subtract_sums_by_neuron``) when a chunk's dW is larger than this (bytes). Measured on a
# 2-core AMD EPYC (32 MiB L3), B = 32, 1000 steps, SHD-like activity, time per batch after the
# loop against a row per spike: inputs 700 x 1024 (2.8 MiB) 1.1x (slower), the delay line of
# 7,700 inputs x 256 (7.5 MiB) 1.0x, x 512 (15 MiB) 0.75x, x 1024 (30 MiB) 0.63x; 1024
# recurrent (4 MiB) with 700 x 1024 inputs 1.04x, 2048 recurrent (16 MiB) with 700 x 2048
# inputs 0.66x.
LATER_BYTES = 8 * 2**20


@njit(cache=True)
def _zero(record):
    """Every array of ``record`` set to 0."""
    for array in literal_unroll(record):
        array[...] = 0


def backward_batch(params, synapses, model, inputs, options, store, terms, traces, grads):
    """Backward pass of every sample. Chunk k of ``grads`` (K chunks, their values on entry
    irrelevant) is set to the gradient of the samples k B / K .. (k + 1) B / K - 1, summed in
    this order; the caller sums the chunks in their order."""
    later = tuple(bool(D.shape[0] == 0 and idx.shape[0] == 0 and dd.shape[1] == 0
                       and dW[0].nbytes > LATER_BYTES)
                  for D, idx, dd, dW in ((synapses.D_in, synapses.idx_in, grads.dd_in, grads.dW_in),
                                         (synapses.D_fwd, synapses.idx_fwd, grads.dd_fwd,
                                          grads.dW_fwd),
                                         (synapses.D_rec, synapses.idx_rec, grads.dd_rec,
                                          grads.dW_rec)))
    _backward_batch(params, synapses, model, inputs, options, store, terms, traces, grads,
                    numba.get_num_threads(), later)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _backward_batch(params, synapses, model, inputs, options, store, terms, traces, grads,
                    n_threads, later):
    """``backward_batch`` on ``n_threads`` threads. The thread that takes a chunk zeroes it:
    in parallel, and the caller can hand in the same arrays every batch (freshly allocated ones
    would be mapped page by page as the threads first write them, one page fault at a time
    across the threads)."""
    n_chunks = grads.dW_in.shape[0]
    B = inputs.in_ptr.shape[0]
    n_steps = inputs.in_ptr.shape[1] - 1
    keep = later[0] or later[1] or later[2]
    next_chunk = np.zeros(1, dtype=np.int64)
    for _ in prange(n_threads):
        state = _backward_state(params, synapses, n_steps, keep)
        k = take_next(next_chunk)
        while k < n_chunks:
            chunk = Gradients(grads.dW_in[k], grads.dW_fwd[k], grads.dW_rec[k], grads.dW_out[k],
                              grads.dtau_m_h[k], grads.dtau_s_h[k], grads.dtau_m_o[k],
                              grads.dtau_s_o[k], grads.dd_in[k], grads.dd_fwd[k],
                              grads.dd_rec[k], grads.dd_out[k])
            _zero(chunk)
            for b in range(k * B // n_chunks, (k + 1) * B // n_chunks):
                _backward_sample(b, params, synapses, model, inputs, options, store, terms,
                                 traces, chunk, state, later)
            k = take_next(next_chunk)
