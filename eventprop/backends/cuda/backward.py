"""The backward pass on the GPU: the CPU kernel's backward pass (``cpu.kernels``) for the GPU.

Units, threads and blocks as ``launch`` lays them out. Backward step m (``_backward_kernel``):
owners snapshot the postsynaptic adjoints lambda_V - lambda_I and lambda_I into shared memory (if
the step has stored spikes) and move their adjoints from t_{m+1} to t_m (tau gradients accumulate
per sample in scratch arrays). Then the stored spikes of the step are taken P at a time, each by G
threads ("lanes", G a power of two up to a warp): the lanes go over the spike's outgoing synapses
(coalesced), add the gradient samples (``cuda.atomic.add`` into chunk 0 of the (K, ...)
accumulators; the GPU uses one chunk) and their parts of the reverse current
sum_j w_ij (lambda_V,j - lambda_I,j), which a tree of warp shuffles adds up (the lanes of a spike
are lanes of one warp; under the simulator, which has no shuffles, the same tree in shared
memory); lane 0 applies the spike's jump. The spikes of a step touch distinct adjoints, so the
rounds of P spikes need no barrier between them. Last, the owners of the outputs apply the loss
jumps that are not spike-triggered. The reverse current is summed in another order than on the
CPU, so backward results agree to rounding, not bit for bit.

The input spikes do not depend on the network's state: after the time loop, which keeps the
lambda_I of layer 0 for every step, ``_input_gradient_kernel`` takes the gradient samples of the
input synapses for all steps in parallel.

Projections (``eventprop.projections``). A spike of a sparse or delayed projection goes through
``_synapses_backward``: its lanes visit the existing synapses of its row only (``idx``/``len``)
and, with delays, read the postsynaptic adjoints at the spike's arrival t_{m+1+D}: with delayed
hidden or output projections the owners keep lambda_V - lambda_I and lambda_I of every step
m < n_steps - 1 in a ring of S slots per sample (``post_ring`` (B, S, 2 U) in global memory,
slot m % S), and a synapse whose spike arrives after step n_steps - 2 is skipped, as on the CPU.
Learned delays add dL/dd_ij += w_ij (lambda_V,j - lambda_I,j) atomically like the weights'
samples. For learned input delays the loop keeps lambda_V - lambda_I of layer 0 at every step as
well (``lam_diff_in``). Dense projections without delays take the loops of before.
"""
from collections import namedtuple

import numba
import numpy as np
from numba import cuda

from eventprop.backends.cuda import launch
from eventprop.backends.cuda.launch import MAX_UNITS_PER_THREAD, SIMULATOR, layer_of
from eventprop.models import (alif_spike_jump, alif_threshold_decay, lif_adjoint_update,
                              lif_spike_jump, tau_m_gradient, tau_s_gradient)

Scratch = namedtuple("Scratch", ["lam_V", "lam_I", "lam_b", "acc_m", "acc_s", "post_global",
                                 "post_ring"])
Scratch.__doc__ = ("Per-sample state of the backward kernel: the adjoints lambda_V, lambda_I "
                   "(B, U) and lambda_b (B, L N), the tau gradients dL/dtau_m, dL/dtau_s (B, U), "
                   "the postsynaptic adjoints (B, 2 U + T) when too large for shared memory "
                   "(else (0, 0)), and their ring of the last S steps (B, S, 2 U) for delayed "
                   "projections (else (0, 0, 0)).")


# The value of the lane ``delta`` lanes up in the warp (shfl.sync.down). numba-cuda's
# ``shfl_down_sync`` is an intrinsic; in the CUDA target built into older numba it is a device
# function that can only be compiled with a GPU present, so the intrinsic beneath it is used there
# (``compile_ptx`` then works without a GPU on both).
if hasattr(cuda, "shfl_sync_intrinsic"):
    @numba.njit(inline="always")
    def _shuffle_down(mask, value, delta):
        return cuda.shfl_sync_intrinsic(mask, 2, value, delta, 0x1f)[0]
else:
    @numba.njit(inline="always")
    def _shuffle_down(mask, value, delta):
        return cuda.shfl_down_sync(mask, value, delta)


@cuda.jit(cache=True)
def _input_gradient_kernel(in_ptr, in_ch, W_in, tau_s_h, D_in, idx_in, len_in, lam_I_in,
                           lam_diff_in, dW_in, dd_in):
    """Gradient samples of the input synapses, after the backward time loop: for every input
    spike c of sample b at step m < n_steps - 1, dW_in[0, c, j] -= tau_s,j lambda_I,j(t_{m+1}),
    with lambda_I of layer 0 as the loop kept it (lam_I_in[b, m]); added atomically over the
    samples. Blocks and threads as ``forward._input_current_kernel``.

    Sparse or delayed inputs: the threads go over the spike's existing synapses (``idx_in``,
    ``len_in``), at its arrival a = m + D_in[c, j] (skipped unless a < n_steps - 1), and, for
    learned delays, add dd_in[0, c, j] += W_in[c, j] (lambda_V - lambda_I)_j(t_{a+1})
    (lam_diff_in[b, a])."""
    b = cuda.blockIdx.x
    m = cuda.blockIdx.y
    parts = cuda.gridDim.y
    n_steps, N = lam_I_in.shape[1], lam_I_in.shape[2]
    sparse = idx_in.shape[0] > 0
    delayed = D_in.shape[0] > 0
    learn_delays = dd_in.shape[1] > 0
    while m < n_steps - 1:
        k0 = in_ptr[b, m]
        k1 = in_ptr[b, m + 1]
        if k1 > k0:
            if sparse or delayed or learn_delays:
                for k in range(k0, k1):
                    c = in_ch[k]
                    count = len_in[c] if sparse else N
                    q = cuda.threadIdx.x
                    while q < count:
                        j = idx_in[c, q] if sparse else q
                        a = m
                        if delayed:
                            a = m + D_in[c, j]
                        if a < n_steps - 1:
                            cuda.atomic.add(dW_in, (0, c, j),
                                            -(tau_s_h[0, j] * lam_I_in[b, a, j]))
                            if learn_delays:
                                cuda.atomic.add(dd_in, (0, c, j),
                                                W_in[c, j] * lam_diff_in[b, a, j])
                        q += cuda.blockDim.x
            else:
                j = cuda.threadIdx.x
                while j < N:
                    dw = -(tau_s_h[0, j] * lam_I_in[b, m, j])
                    for k in range(k0, k1):
                        cuda.atomic.add(dW_in, (0, in_ch[k], j), dw)
                    j += cuda.blockDim.x
        m += parts


@launch.device_function
def _synapses_backward(rev, W, dW, dd, D, idx, n_syn, row, post, post_ring, b, tau_s, base, U,
                       slot, S, m, n_steps, lane, G):
    """The part of lane ``lane`` (of G) of a spike of step m through row ``row`` (a tuple: (l, i)
    or (i,)) of a sparse or delayed projection (W, its gradients dW and dd (1, ...), delay steps
    D, synapse lists idx and the row's length n_syn; empty arrays where the projection has no
    delays, is dense, or its delays are not learned): for each existing synapse to target j
    (unit base + j), with the adjoints at the spike's arrival (``post`` of this step without
    delay, ``post_ring`` slot (m + D) % S with; skipped beyond step n_steps - 2), the gradient
    samples dW -= tau_s,j lambda_I,j (dd += w (lambda_V - lambda_I)_j if learned), added
    atomically; returns rev plus the lane's part of the reverse current sum_j w (lambda_V -
    lambda_I)_j."""
    real = W.dtype.type
    sparse = idx.shape[0] > 0
    delayed = D.shape[0] > 0
    learn_delays = dd.shape[1] > 0
    count = n_syn if sparse else W.shape[len(row)]
    k = lane
    while k < count:
        j = idx[row + (k,)] if sparse else k
        w = W[row + (j,)]
        use = True
        diff = real(0)
        lam = real(0)
        if delayed:
            d = D[row + (j,)]
            use = m + d < n_steps - 1
            if use:
                a = slot + d
                while a >= S:
                    a -= S
                diff = real(post_ring[b, a, base + j])
                lam = real(post_ring[b, a, U + base + j])
        else:
            diff = real(post[base + j])
            lam = real(post[U + base + j])
        if use:
            rev += w * diff
            cuda.atomic.add(dW, (0,) + row + (j,), -(tau_s[j] * lam))
            if learn_delays:
                cuda.atomic.add(dd, (0,) + row + (j,), w * diff)
        k += G
    return rev


@cuda.jit(cache=True)
def _backward_kernel(lam_I_in, lam_diff_in, params, synapses, model, options, store, terms,
                     traces, grads, scratch):
    """The time loop of the backward pass: one block per sample (see the module doc)."""
    W_fwd, W_rec, W_out = params.W_fwd, params.W_rec, params.W_out
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
    dW_fwd, dW_rec, dW_out = grads.dW_fwd, grads.dW_rec, grads.dW_out
    dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o = grads.dtau_m_h, grads.dtau_s_h, grads.dtau_m_o, \
        grads.dtau_s_o
    dd_fwd, dd_rec, dd_out = grads.dd_fwd, grads.dd_rec, grads.dd_out
    D_fwd, D_rec, D_out = synapses.D_fwd, synapses.D_rec, synapses.D_out
    idx_fwd, idx_rec, idx_out = synapses.idx_fwd, synapses.idx_rec, synapses.idx_out
    len_fwd, len_rec, len_out = synapses.len_fwd, synapses.len_rec, synapses.len_out
    lam_V, lam_I, lam_b, acc_m, acc_s, post_global, post_ring = scratch
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    T = cuda.blockDim.x
    L, N = h_alpha.shape
    C = o_alpha.shape[0]
    LN = L * N
    U = LN + C
    recurrent = W_rec.shape[0] > 0
    full_forcing = A_out.shape[0] > 0
    separable_forcing = force_g.shape[0] > 0
    # projections that go through _synapses_backward: sparse or delayed ones, or with learned
    # delays (all zero: no delay steps on the host, but dd is wanted)
    fwd_sparse = idx_fwd.shape[0] > 0
    rec_sparse = idx_rec.shape[0] > 0
    out_sparse = idx_out.shape[0] > 0
    fwd_general = fwd_sparse or D_fwd.shape[0] > 0 or dd_fwd.shape[1] > 0
    rec_general = rec_sparse or D_rec.shape[0] > 0 or dd_rec.shape[1] > 0
    out_general = out_sparse or D_out.shape[0] > 0 or dd_out.shape[1] > 0
    ring_kept = post_ring.shape[0] > 0   # delayed projections: the adjoints of the last S steps
    S = synapses.n_slots
    slot = (n_steps - 1) % S             # m % S
    keep_diff_in = lam_diff_in.shape[0] > 0
    real = W_out.dtype.type
    zero = real(0)
    theta_jump_r = real(theta_jump)
    dt_r = real(dt)
    rho_b_r = real(rho_b)
    tau_b_r = real(tau_b)
    b_incr_r = real(b_incr)
    # a spike's synapses are shared by G threads ("lanes"); P spikes are handled at once
    G = 1
    while G * 2 <= T and G < 32:
        G *= 2
    P = T // G
    grp = t // G
    lane = t - grp * G
    # the threads of this thread's warp (all 32 but in a last, partial warp), for the shuffles
    warp_lanes = T - (t // 32) * 32
    warp_mask = numba.int32(-1)                  # 0xFFFFFFFF as the intrinsic's int32
    if warp_lanes < 32:
        warp_mask = numba.int32((1 << warp_lanes) - 1)
    # [0, U): lambda_V - lambda_I at t_{m+1}; [U, 2U): lambda_I at t_{m+1}; [2U, 2U + T): the
    # threads' partial sums of the reverse currents (shared memory unless too large)
    if post_global.shape[0] > 0:
        post = post_global[b]
    else:
        post = cuda.shared.array(0, W_out.dtype)
    part = 2 * U + t
    R = (U + T - 1) // T             # units owned by each thread: u = t + r T, r < R
    alpha = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)   # per-step constants
    beta = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)
    d_V = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)
    for r in range(R):
        u = t + r * T
        if u < U:
            lam_V[b, u] = zero
            lam_I[b, u] = zero
            acc_m[b, u] = zero
            acc_s[b, u] = zero
        if u < LN:
            lam_b[b, u] = zero
            l = layer_of(u, N)
            i = u - l * N
            alpha[r] = h_alpha[l, i]
            beta[r] = h_beta[l, i]
            d_V[r] = h_d[l, i]
        elif u < U:
            alpha[r] = o_alpha[u - LN]
            beta[r] = o_beta[u - LN]
            d_V[r] = o_d[u - LN]
    for m in range(n_steps - 1, -1, -1):
        s0 = sp_ptr[b, m]
        s1 = sp_ptr[b, m + 1]
        events = m < n_steps - 1 and s1 > s0
        # owners: postsynaptic adjoints at t_{m+1}, then free dynamics from t_{m+1} to t_m
        for r in range(R):
            u = t + r * T
            if u >= U:
                break
            lv = lam_V[b, u]
            li = lam_I[b, u]
            if events:
                post[u] = lv - li
                post[U + u] = li
            if ring_kept and m < n_steps - 1:
                post_ring[b, slot, u] = lv - li
                post_ring[b, slot, U + u] = li
            if u < LN:
                l = layer_of(u, N)
                i = u - l * N
                if l == 0:                   # for the input gradients (_input_gradient_kernel)
                    lam_I_in[b, m, i] = li
                    if keep_diff_in:
                        lam_diff_in[b, m, i] = lv - li
                lv, li = lif_adjoint_update(lv, li, zero, alpha[r], beta[r], d_V[r])
                lv = real(lv)
                li = real(li)
                if alif:
                    lam_b[b, u] = alif_threshold_decay(lam_b[b, u], rho_b_r)
                if train_tau:
                    acc_m[b, u] += tau_m_gradient(lv, V_h_tr[b, m, l, i], I_h_tr[b, m, l, i],
                                                  tau_m_h[l, i], dt_r)
                    acc_s[b, u] += tau_s_gradient(li, I_h_tr[b, m, l, i], tau_s_h[l, i], dt_r)
            else:
                c = u - LN
                A = zero
                if full_forcing:
                    A = A_out[b, m, c]
                elif separable_forcing:
                    A = force_g[b, m] * force_c[b, c]
                lv, li = lif_adjoint_update(lv, li, A, alpha[r], beta[r], d_V[r])
                lv = real(lv)
                li = real(li)
                if train_tau_out:
                    acc_m[b, u] += tau_m_gradient(lv, V_out_tr[b, m, c], I_out_tr[b, m, c],
                                                  tau_m_o[c], dt_r)
                    acc_s[b, u] += tau_s_gradient(li, I_out_tr[b, m, c], tau_s_o[c], dt_r)
            lam_V[b, u] = lv
            lam_I[b, u] = li
        cuda.syncthreads()
        if events:
            # stored spikes of step m, P at a time: the G lanes of a spike go over its synapses
            # (gradient samples, and their parts of the reverse current, summed by a tree of
            # shuffles), then lane 0 applies the jump. A neuron spikes at most once per step, so
            # the jumps of one step touch distinct adjoints.
            first = s0
            while first < s1:
                s = first + grp
                active = grp < P and s < s1
                rev = zero
                if active:
                    g = sp_idx[b, s]
                    if g < LN:
                        l = layer_of(g, N)
                        i = g - l * N
                        if l < L - 1:
                            base = (l + 1) * N
                            if fwd_general:
                                rev = _synapses_backward(
                                    rev, W_fwd, dW_fwd, dd_fwd, D_fwd, idx_fwd,
                                    len_fwd[l, i] if fwd_sparse else 0, (l, i), post, post_ring,
                                    b, tau_s_h[l + 1], base, U, slot, S, m, n_steps, lane, G)
                            else:
                                j = lane
                                while j < N:
                                    rev += W_fwd[l, i, j] * real(post[base + j])
                                    cuda.atomic.add(
                                        dW_fwd, (0, l, i, j),
                                        -(tau_s_h[l + 1, j] * real(post[U + base + j])))
                                    j += G
                        else:
                            if out_general:
                                rev = _synapses_backward(
                                    rev, W_out, dW_out, dd_out, D_out, idx_out,
                                    len_out[i] if out_sparse else 0, (i,), post, post_ring, b,
                                    tau_s_o, LN, U, slot, S, m, n_steps, lane, G)
                            else:
                                c = lane
                                while c < C:
                                    rev += W_out[i, c] * real(post[LN + c])
                                    cuda.atomic.add(dW_out, (0, i, c),
                                                    -(tau_s_o[c] * real(post[U + LN + c])))
                                    c += G
                        if recurrent:
                            base = l * N
                            if rec_general:
                                rev = _synapses_backward(
                                    rev, W_rec, dW_rec, dd_rec, D_rec, idx_rec,
                                    len_rec[l, i] if rec_sparse else 0, (l, i), post, post_ring,
                                    b, tau_s_h[l], base, U, slot, S, m, n_steps, lane, G)
                            else:
                                j = lane
                                while j < N:
                                    rev += W_rec[l, i, j] * real(post[base + j])
                                    cuda.atomic.add(dW_rec, (0, l, i, j),
                                                    -(tau_s_h[l, j] * real(post[U + base + j])))
                                    j += G
                if SIMULATOR:        # no warp shuffles there: the same tree in shared memory
                    post[part] = rev
                    cuda.syncthreads()
                    width = G // 2
                    while width > 0:
                        if lane < width and grp < P:
                            post[part] = post[part] + post[part + width]
                        cuda.syncthreads()
                        width //= 2
                    rev = real(post[part])
                else:                 # the G lanes of a spike are lanes of one warp
                    width = G // 2
                    while width > 0:
                        rev += _shuffle_down(warp_mask, rev, numba.int32(width))
                        width //= 2
                if active and lane == 0:
                    g = sp_idx[b, s]
                    imv = sp_imv[b, s]
                    if g < LN:
                        l = layer_of(g, N)
                        i = g - l * N
                        if alif:
                            lv, lb = alif_spike_jump(lam_V[b, g], lam_b[b, g], rev,
                                                     theta_jump_r, sp_b[b, s], imv, b_incr_r,
                                                     tau_m_h[l, i], tau_b_r)
                            lv = real(lv)
                            lam_b[b, g] = lb
                        else:
                            lv = real(lif_spike_jump(lam_V[b, g], rev, theta_jump_r, imv))
                        lam_V[b, g] = lv + reg_jump[b, l, i]
                    else:
                        c = g - LN
                        lv = real(lif_spike_jump(lam_V[b, g], zero, theta_jump_r, imv))
                        if m == first_step[b, c]:
                            lv = lv + fs_term[b, c] / imv
                        lam_V[b, g] = lv
                if SIMULATOR:        # post[part] is used again in the next round
                    cuda.syncthreads()
                first += P
        cuda.syncthreads()
        # owners of the outputs: loss jumps that are not spike-triggered (max, phantom spike)
        u = t
        while u < U:
            if u >= LN:
                c = u - LN
                if jump_step[b, c] == m:
                    lam_V[b, u] = lam_V[b, u] + jump_amount[b, c]
            u += T
        slot -= 1
        if slot < 0:
            slot = S - 1
    # per-sample tau gradients into the shared accumulator
    for u in range(t, U, T):
        if u < LN:
            if train_tau:
                l = layer_of(u, N)
                i = u - l * N
                cuda.atomic.add(dtau_m_h, (0, l, i), acc_m[b, u])
                cuda.atomic.add(dtau_s_h, (0, l, i), acc_s[b, u])
        elif train_tau_out:
            c = u - LN
            cuda.atomic.add(dtau_m_o, (0, c), acc_m[b, u])
            cuda.atomic.add(dtau_s_o, (0, c), acc_s[b, u])


def backward_launch(params, synapses, model, inputs, options, store, terms, traces, grads,
                    alloc, on_device=True):
    """As ``forward.forward_launch``: the time loop (which keeps lambda_I of layer 0 at every
    step, and lambda_V - lambda_I for learned input delays), then the input weight (and delay)
    gradients. All samples add into chunk 0 of ``grads``."""
    B = inputs.in_ptr.shape[0]
    L, N = params.h_alpha.shape
    C = params.o_alpha.shape[0]
    U = L * N + C
    n_steps = model.n_steps
    dtype = np.dtype(params.W_out.dtype)
    lam_I_in = alloc("x_in", (B, n_steps, N), dtype)       # lambda_I of layer 0 per step
    lam_diff_in = alloc("b_lamD_in", (B, n_steps, N) if grads.dd_in.shape[1] > 0 else (0, 0, 0),
                        dtype)                             # lambda_V - lambda_I of layer 0
    delayed = (synapses.D_fwd.shape[0] > 0 or synapses.D_rec.shape[0] > 0
               or synapses.D_out.shape[0] > 0)
    head = (lam_I_in, lam_diff_in, params, synapses, model, options, store, terms, traces, grads)
    empty = np.empty((0, 0), dtype)
    T = (launch.block_size(_backward_kernel, dtype, U,
                           head + (Scratch(*[empty] * 6, np.empty((0, 0, 0), dtype)),))
         if on_device else launch.threads_per_block(U))
    post = (2 * U + T) * dtype.itemsize     # bytes of the postsynaptic adjoints + partial sums
    shared = post <= launch.SHARED_BYTES
    scratch = Scratch(lam_V=alloc("b_lamV", (B, U), dtype),
                      lam_I=alloc("b_lamI", (B, U), dtype),
                      lam_b=alloc("b_lamb", (B, L * N), dtype),
                      acc_m=alloc("b_accm", (B, U), dtype),
                      acc_s=alloc("b_accs", (B, U), dtype),
                      post_global=alloc("b_post", (0, 0) if shared else (B, 2 * U + T), dtype),
                      post_ring=alloc("b_ring", (B, int(synapses.n_slots), 2 * U) if delayed
                                      else (0, 0, 0), dtype))
    loop = (_backward_kernel, (B, T, 0, post if shared else 0), head + (scratch,))
    blocks, threads = launch.input_launch(B, n_steps, N)
    input_gradients = (_input_gradient_kernel, (blocks, threads, 0, 0),
                       (inputs.in_ptr, inputs.in_ch, params.W_in, params.tau_s_h, synapses.D_in,
                        synapses.idx_in, synapses.len_in, lam_I_in, lam_diff_in, grads.dW_in,
                        grads.dd_in))
    return [loop, input_gradients]
