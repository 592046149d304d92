"""Event-driven EventProp on the CPU: one forward and one backward kernel for a mini-batch.

The kernels take the named records of ``backends.records`` and fill the arrays of its output
records (spike store, traces, gradients).

Network: inputs -> L hidden layers of N neurons (optionally recurrent, self-connections included)
-> C output neurons (non-spiking LI, or spiking LIF for first-spike losses). Samples of a batch are
independent. The forward kernel runs them in parallel; the backward kernel runs chunks of
consecutive samples in parallel, each chunk with its own gradient accumulators, which the caller
sums in chunk order. The chunks do not depend on the number of threads, so neither do the results.
The threads share the work as it comes (``_take_next``), not in fixed shares: a thread whose core
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

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from eventprop.backends.records import Gradients
from eventprop.models import (alif_imv, alif_spike_jump, alif_threshold_decay, lif_adjoint_update,
                              lif_imv, lif_membrane_update, lif_spike_jump, normal_hash,
                              synapse_decay, tau_m_gradient, tau_s_gradient, uniform_hash)

FASTMATH = {"reassoc", "contract", "nsz"}


@intrinsic
def _take_next(typingctx, counter):
    """The value of ``counter[0]`` (an int64 array), incremented atomically: the number of the
    next work unit (sample, chunk) for the thread that asks."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        first = cgutils.get_item_pointer(context, builder, array_type, array,
                                         [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", first, context.get_constant(types.int64, 1),
                                  "monotonic")
    return types.int64(counter), codegen


# ----------------------------------------------------------------------------------------------
# Projections (``eventprop.projections``): a spike's synapses, dense or sparse, with or without
# delays. A dense row holds one entry per postsynaptic neuron j; a sparse row holds its existing
# synapses only (``projections.compact``): entry k is the synapse onto j = idx[k], k < n_syn,
# for the weight w, its gradient dw, the delay steps D and their gradient dd alike. Arrays of
# the postsynaptic neurons (I, the ring buffer ``buf`` (S, n_post) of the targets' currents of
# the next S steps, slot a % S for step a, and the adjoints) are indexed by j. ``D`` is empty
# without delays.
# ----------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _deliver(w, I, D, idx, n_syn, buf, n, n_steps):
    """Synapse phase of a spike of step n: I_j(t_{n+1}) += w for a synapse without delay, or
    buf[n + D] += w to be added at step n + D (dropped beyond the trial)."""
    sparse = idx.shape[0] > 0
    if D.shape[0] == 0:
        if sparse:
            for k in range(n_syn):
                I[idx[k]] += w[k]
        else:
            for j in range(w.shape[0]):
                I[j] += w[j]
        return
    S = buf.shape[0]
    now = n % S                      # slot of step n; slot of step n + D: now + D, wrapped
    for k in range(n_syn if sparse else w.shape[0]):
        j = idx[k] if sparse else k
        if D[k] > 0:
            if n + D[k] < n_steps:
                slot = now + D[k]
                buf[slot - S if slot >= S else slot, j] += w[k]
        else:
            I[j] += w[k]


@njit(cache=True, inline="always")
def _deliver_input(w, D, idx, n_syn, buf, n, n_steps):
    """An input spike of step n: buf[n + D] += w (D = 0 included: the input currents of a step
    are summed from zero, then added, as without delays)."""
    sparse = idx.shape[0] > 0
    S = buf.shape[0]
    now = n % S
    if D.shape[0] == 0 and sparse:
        x = buf[now]
        for k in range(n_syn):
            x[idx[k]] += w[k]
        return
    for k in range(n_syn if sparse else w.shape[0]):
        j = idx[k] if sparse else k
        d = D[k] if D.shape[0] > 0 else 0
        if n + d < n_steps:
            slot = now + d
            buf[slot - S if slot >= S else slot, j] += w[k]


@njit(cache=True, fastmath=FASTMATH)
def _adjoint_row(rev, w, dw, diff, tau_lam_I, n):
    """rev + sum_j w_j diff_j (the reverse current), and dw_j -= tau_s,j lambda_I,j, over
    j < n. Not inlined: every caller runs this one compiled loop, so its sum is rounded alike
    for a dense row and for a sparse row that has every synapse."""
    for j in range(n):
        rev += w[j] * diff[j]
        dw[j] -= tau_lam_I[j]
    return rev


@njit(cache=True, fastmath=FASTMATH)
def _reverse_current(rev, w, diff, n):
    """rev + sum_j w_j diff_j over j < n (``_adjoint_row`` without the gradient samples, which
    a projection whose gradients are formed after the time loop leaves to
    ``_subtract_sums_by_neuron``)."""
    for j in range(n):
        rev += w[j] * diff[j]
    return rev


@njit(cache=True, inline="always")
def _backward_synapses(rev, w, dw, dd, D, idx, n_syn, post_diff, post_tau_lam_I, m, n_steps,
                       later=False):
    """Backward pass of a spike of step m through one row of synapses: the gradient samples
    dW_ij -= tau_s,j lambda_I,j and (learned delays) dd_ij += w_ij (lambda_V,j - lambda_I,j),
    and the reverse current rev += w_ij (lambda_V,j - lambda_I,j), with the postsynaptic
    adjoints at the spike's arrival t_{m+1+D_ij} (``post_*[a % S]`` holds those at t_{a+1};
    ``post_tau_lam_I`` holds tau_s,j lambda_I,j); returns rev. A synapse that arrives after the
    last step it could change adds nothing. A projection whose delays are all zero comes
    without delay steps (``network.synapses``), so it runs exactly as without delays. ``later``
    (a dense projection without delays): the gradient samples are left for after the time
    loop."""
    sparse = idx.shape[0] > 0
    learn_delays = dd.shape[0] > 0
    S = post_diff.shape[0]
    now = m % S                      # slot of step m; of step m + D: now + D, wrapped
    if D.shape[0] == 0:
        pd, pq = post_diff[now], post_tau_lam_I[now]
        if later:
            return _reverse_current(rev, w, pd, pd.shape[0])
        if not sparse or n_syn == pd.shape[0]:      # dense, or a sparse row with them all
            rev = _adjoint_row(rev, w, dw, pd, pq, pd.shape[0])
            if learn_delays:
                for j in range(pd.shape[0]):
                    dd[j] += w[j] * pd[j]
            return rev
        for k in range(n_syn):       # a sparse row: its synapses only
            j = idx[k]
            rev += w[k] * pd[j]
            dw[k] -= pq[j]
            if learn_delays:
                dd[k] += w[k] * pd[j]
        return rev
    for k in range(n_syn if sparse else w.shape[0]):
        j = idx[k] if sparse else k
        if m + D[k] >= n_steps - 1:
            continue
        slot = now + D[k]
        if slot >= S:
            slot -= S
        diff = post_diff[slot, j]
        rev += w[k] * diff
        dw[k] -= post_tau_lam_I[slot, j]
        if learn_delays:
            dd[k] += w[k] * diff
    return rev


@njit(cache=True, inline="always")
def _row(a, i, empty):
    """Row i of a per-synapse array, or ``empty`` where the array is empty (dense, no delays)."""
    return a[i] if a.shape[0] > 0 else empty


@njit(cache=True, inline="always")
def _row2(a, l, i, empty):
    """Row (l, i) of a per-synapse array of a layered projection, or ``empty``."""
    return a[l, i] if a.shape[0] > 0 else empty


@njit(cache=True, inline="always")
def _length(a, i):
    return a[i] if a.shape[0] > 0 else 0


@njit(cache=True, inline="always")
def _length2(a, l, i):
    return a[l, i] if a.shape[0] > 0 else 0


@njit(cache=True, fastmath=FASTMATH)
def _forward_sample(b, params, synapses, model, inputs, options, store, traces):
    """Forward pass of sample b."""
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
    V = np.zeros((L, N), dtype=W_in.dtype)
    I = np.zeros((L, N), dtype=W_in.dtype)
    thr_b = np.zeros((L, N), dtype=W_in.dtype)
    Vo = np.zeros(C, dtype=W_in.dtype)
    Io = np.zeros(C, dtype=W_in.dtype)
    stored = np.zeros(L * N + C, dtype=np.int32)
    fired = np.empty(L * N, dtype=np.int32)
    x_in = np.zeros(N, dtype=W_in.dtype)     # input current of the step
    zero = real(0)
    # projections: delay steps, sparse rows, and the ring buffers of delayed spikes (inputs,
    # hidden layers, outputs; one slot when a projection has no delays)
    D_in, D_fwd, D_rec, D_out = synapses.D_in, synapses.D_fwd, synapses.D_rec, synapses.D_out
    idx_in, idx_fwd, idx_rec, idx_out = (synapses.idx_in, synapses.idx_fwd, synapses.idx_rec,
                                         synapses.idx_out)
    len_in, len_fwd, len_rec, len_out = (synapses.len_in, synapses.len_fwd, synapses.len_rec,
                                         synapses.len_out)
    S = synapses.n_slots
    no_index = np.zeros(0, dtype=np.int32)
    input_buffered = D_in.shape[0] > 0 or idx_in.shape[0] > 0
    hidden_delayed = D_fwd.shape[0] > 0 or D_rec.shape[0] > 0
    output_delayed = D_out.shape[0] > 0
    x_buf = np.zeros((S if input_buffered else 0, N), dtype=W_in.dtype)
    h_buf = np.zeros((L, S if hidden_delayed else 1, N), dtype=W_in.dtype)
    o_buf = np.zeros((S if output_delayed else 1, C), dtype=W_in.dtype)
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
            V_l, I_l, b_l = V[l], I[l], thr_b[l]
            alpha_l, c_l = h_alpha[l], h_c[l]
            for i in range(N):
                V_l[i] = lif_membrane_update(V_l[i], I_l[i], alpha_l[i], c_l[i])
            if noise_amp > 0.0:
                for i in range(N):
                    V_l[i] += noise_scale * normal_hash(seed, b, n, l * N + i)
            if alif:
                for i in range(N):
                    b_l[i] = alif_threshold_decay(b_l[i], rho_b)
            for i in range(N):
                if V_l[i] < theta + b_l[i]:
                    continue
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
                            sp_imv[b, ns] = alif_imv(I_l[i], V_l[i], b_l[i], tau_m_h[l, i],
                                                     tau_b)
                            sp_b[b, ns] = b_l[i]
                        else:
                            sp_imv[b, ns] = lif_imv(I_l[i], V_l[i])
                    ns += 1
                else:
                    n_unstored[b] += 1
                V_l[i] = v_reset
                if alif:
                    b_l[i] += b_incr
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
            I_l, beta_l = I[l], h_beta[l]
            for i in range(N):
                I_l[i] = synapse_decay(I_l[i], beta_l[i])
        for c in range(C):
            Io[c] = synapse_decay(Io[c], o_beta[c])
        # the input spikes of the step are summed first, then added (the order of the GPU,
        # which sums them before the time loop); with delays or sparse input synapses they are
        # summed into the ring buffer's slot of the step at which they arrive
        if input_buffered:
            for k in range(in_ptr[b, n], in_ptr[b, n + 1]):
                c = in_ch[k]
                _deliver_input(W_in[c], _row(D_in, c, no_index), _row(idx_in, c, no_index),
                               _length(len_in, c), x_buf, n, n_steps)
            I_0, x_n = I[0], x_buf[n % S]
            for j in range(N):
                I_0[j] += x_n[j]
                x_n[j] = zero
        elif in_ptr[b, n + 1] > in_ptr[b, n]:
            for j in range(N):
                x_in[j] = zero
            for k in range(in_ptr[b, n], in_ptr[b, n + 1]):
                w = W_in[in_ch[k]]
                for j in range(N):
                    x_in[j] += w[j]
            I_0 = I[0]
            for j in range(N):
                I_0[j] += x_in[j]
        # delayed spikes of earlier steps that arrive now
        if hidden_delayed:
            for l in range(L):
                I_l, h_n = I[l], h_buf[l, n % S]
                for j in range(N):
                    I_l[j] += h_n[j]
                    h_n[j] = zero
        if output_delayed:
            o_n = o_buf[n % S]
            for c in range(C):
                Io[c] += o_n[c]
                o_n[c] = zero
        for k in range(n_fired):
            l = fired[k] // N
            i = fired[k] - l * N
            if l < L - 1:
                _deliver(W_fwd[l, i], I[l + 1], _row2(D_fwd, l, i, no_index),
                         _row2(idx_fwd, l, i, no_index), _length2(len_fwd, l, i), h_buf[l + 1],
                         n, n_steps)
            else:
                _deliver(W_out[i], Io, _row(D_out, i, no_index), _row(idx_out, i, no_index),
                         _length(len_out, i), o_buf, n, n_steps)
            if recurrent:
                _deliver(W_rec[l, i], I[l], _row2(D_rec, l, i, no_index),
                         _row2(idx_rec, l, i, no_index), _length2(len_rec, l, i), h_buf[l], n,
                         n_steps)
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
        b = _take_next(next_sample)
        while b < B:
            _forward_sample(b, params, synapses, model, inputs, options, store, traces)
            b = _take_next(next_sample)


@njit(cache=True, fastmath=FASTMATH)
def _backward_sample(b, params, synapses, model, inputs, options, store, terms, traces, grads,
                     history, later):
    """Backward pass of sample b; its gradients are added to ``grads``. ``later`` (input,
    hidden -> hidden, recurrent): the projections whose weight gradients are formed after the
    time loop, by presynaptic neuron (``_subtract_sums_by_neuron``), instead of a row of dW per
    spike; ``history`` (L, n_steps, N) (or empty when there are none) keeps tau_s lambda_I of
    every hidden layer at every step for them."""
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
    no_index = np.zeros(0, dtype=np.int32)
    no_grad = np.zeros(0, dtype=W_out.dtype)
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
    lam_V = np.zeros((L, N), dtype=dtype)
    lam_I = np.zeros((L, N), dtype=dtype)
    lam_b = np.zeros((L, N), dtype=dtype)
    lam_Vo = np.zeros(C, dtype=dtype)
    lam_Io = np.zeros(C, dtype=dtype)
    # postsynaptic adjoints at t_{m+1}: lambda_V - lambda_I (reverse current) and
    # tau_s lambda_I (gradient samples), in slot m % S; with delays, S = longest delay + 1
    # steps of them, for the spikes of earlier steps that arrive later
    S = synapses.n_slots if delayed else 1
    post_diff = np.zeros((L, S, N), dtype=dtype)
    post_tau_lam_I = np.zeros((L, S, N), dtype=dtype)
    post_diff_o = np.zeros((S, C), dtype=dtype)
    post_tau_lam_Io = np.zeros((S, C), dtype=dtype)
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
            if D_in.shape[0] == 0 and idx_in.shape[0] > 0 and dd_in.shape[0] == 0:
                pq0 = post_tau_lam_I[0, slot]
                for k in range(in_ptr[b, m], in_ptr[b, m + 1]):
                    c = in_ch[k]
                    dw, ix = dW_in[c], idx_in[c]
                    for q in range(len_in[c]):
                        dw[q] -= pq0[ix[q]]
            elif D_in.shape[0] > 0 or idx_in.shape[0] > 0 or dd_in.shape[0] > 0:
                for k in range(in_ptr[b, m], in_ptr[b, m + 1]):
                    c = in_ch[k]
                    _backward_synapses(zero, W_in[c], dW_in[c], _row(dd_in, c, no_grad),
                                       _row(D_in, c, no_index), _row(idx_in, c, no_index),
                                       _length(len_in, c), post_diff[0], post_tau_lam_I[0], m,
                                       n_steps)
            elif later[0]:
                pass                 # the input gradients: by channel after the loop
            else:
                pq0 = post_tau_lam_I[0, slot]
                for k in range(in_ptr[b, m], in_ptr[b, m + 1]):
                    dw = dW_in[in_ch[k]]
                    for j in range(N):
                        dw[j] -= pq0[j]
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
                            rev, W_fwd[l, i], dW_fwd[l, i], _row2(dd_fwd, l, i, no_grad),
                            _row2(D_fwd, l, i, no_index), _row2(idx_fwd, l, i, no_index),
                            _length2(len_fwd, l, i), post_diff[l + 1], post_tau_lam_I[l + 1],
                            m, n_steps, later[1])
                    else:
                        rev = _backward_synapses(
                            rev, W_out[i], dW_out[i], _row(dd_out, i, no_grad),
                            _row(D_out, i, no_index), _row(idx_out, i, no_index),
                            _length(len_out, i), post_diff_o, post_tau_lam_Io, m, n_steps)
                    if recurrent:
                        rev = _backward_synapses(
                            rev, W_rec[l, i], dW_rec[l, i], _row2(dd_rec, l, i, no_grad),
                            _row2(D_rec, l, i, no_index), _row2(idx_rec, l, i, no_index),
                            _length2(len_rec, l, i), post_diff[l], post_tau_lam_I[l], m,
                            n_steps, later[2])
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


def backward_batch(params, synapses, model, inputs, options, store, terms, traces, grads):
    """Backward pass of every sample. Chunk k of ``grads`` (K chunks) accumulates the samples
    k B / K .. (k + 1) B / K - 1, in this order; the caller sums the chunks in their order."""
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
    """``backward_batch`` on ``n_threads`` threads."""
    n_chunks = grads.dW_in.shape[0]
    B = inputs.in_ptr.shape[0]
    n_steps = inputs.in_ptr.shape[1] - 1
    L, N = params.h_alpha.shape
    keep = later[0] or later[1] or later[2]
    next_chunk = np.zeros(1, dtype=np.int64)
    for _ in prange(n_threads):
        history = np.zeros((L if keep else 0, n_steps, N), dtype=grads.dW_in.dtype)
        k = _take_next(next_chunk)
        while k < n_chunks:
            chunk = Gradients(grads.dW_in[k], grads.dW_fwd[k], grads.dW_rec[k], grads.dW_out[k],
                              grads.dtau_m_h[k], grads.dtau_s_h[k], grads.dtau_m_o[k],
                              grads.dtau_s_o[k], grads.dd_in[k], grads.dd_fwd[k],
                              grads.dd_rec[k], grads.dd_out[k])
            for b in range(k * B // n_chunks, (k + 1) * B // n_chunks):
                _backward_sample(b, params, synapses, model, inputs, options, store, terms,
                                 traces, chunk, history, later)
            k = _take_next(next_chunk)
