"""The forward pass on the GPU: the CPU kernel's forward pass (``cpu.kernels``) for the GPU.

Units, threads and blocks as ``launch`` lays them out. The input spikes do not depend on the
network's state, so their part is taken out of the time loop: before it ``_input_current_kernel``
sums the input weights of every step (x_in[b, n, j], in the CPU's order, for all steps in
parallel). The time steps are looped inside ``_forward_kernel``. Step n:

1. neuron phase (owners, state in thread-local memory): traces, membrane/threshold update,
   noise, dropout, spike test, spike counters. A spiking unit appends itself to the step's
   list of hidden spikes and, if it is stored, to the list of spikes to store (shared-memory
   counters, so in no particular order).
2. ordering: each spike counts the entries of its list with a smaller unit index. That rank
   puts the hidden spikes in unit order, and places each stored spike in the sample's spike
   store (``sp_idx``/``sp_imv``/``sp_b``) exactly where the CPU puts it, so the spike store is
   identical and the run deterministic.
3. synapse phase (owners): I <- beta I + x_in, then the hidden spikes of the step are added, in
   the CPU's order (by unit index), so every current is rounded exactly as on the CPU.

The lists live in shared memory (global memory when a sample has too many units for
``launch.SHARED_BYTES``); two barriers per step. Dropout and membrane noise use the
counter-based hashes of ``models`` with the same coordinates (seed, sample, step, unit), so the
draws are equal to the CPU's for any thread layout.

Projections (``eventprop.projections``). A sparse projection keeps exact zeros at its absent
synapses, and adding a zero changes no sum's value, so the forward pass gathers over the dense
weights as without sparseness. Delays: with delayed inputs, ``_input_current_kernel`` adds each
input weight into the step at which it arrives (x_in[b, s + D, j], a thread per (sample, neuron)
going through the sample's input spikes in their order: the CPU's order). With delayed hidden or
output projections, each unit has a ring buffer of the currents of its next S steps (``ring``
(B, S, U) in global memory, slot a % S for step a), written and read by the unit's owner only: in
the synapse phase of step n, the owner adds slot n % S (and zeroes it), then goes through the
step's spikes in unit order, adding a weight without delay at once and one with delay D into slot
(n + D) % S (dropped beyond the trial), which keeps the CPU's order of every addition. Networks
without delays take the branch of before, which never touches the ring.
"""
import math

import numba
import numpy as np
from numba import cuda

from eventprop.backends.cuda import launch
from eventprop.backends.cuda.launch import MAX_UNITS_PER_THREAD, layer_of
from eventprop.models import (alif_imv, alif_threshold_decay, lif_imv, lif_membrane_update,
                              normal_hash, synapse_decay, uniform_hash)


@cuda.jit(cache=True)
def _input_current_kernel(in_ptr, in_ch, W_in, D_in, x_in):
    """x_in[b, n, j] = sum of W_in[c, j] over the input spikes c of sample b at step n, added
    in their order from zero (as the CPU kernels sum them). The inputs do not depend on the
    network's state, so this runs for all steps at once, before the time loop; blocks (b, part)
    take the steps n = part, part + parts, ..., threads the neurons j.

    With input delays (D_in not empty), the sum of the input spikes that arrive at step n: each
    thread (blocks (b, part), threads and parts over the neurons j) zeroes x_in[b, :, j], then
    goes through the input spikes of sample b in order (step s ascending, then the order of
    in_ch), adding W_in[c, j] into x_in[b, s + D_in[c, j], j] (dropped beyond the trial)."""
    b = cuda.blockIdx.x
    n = cuda.blockIdx.y
    parts = cuda.gridDim.y
    n_steps, N = x_in.shape[1], x_in.shape[2]
    zero = W_in.dtype.type(0)
    if D_in.shape[0] > 0:
        j = cuda.threadIdx.x + n * cuda.blockDim.x
        while j < N:
            for a in range(n_steps):
                x_in[b, a, j] = zero
            for s in range(n_steps):
                for k in range(in_ptr[b, s], in_ptr[b, s + 1]):
                    c = in_ch[k]
                    a = s + D_in[c, j]
                    if a < n_steps:
                        x_in[b, a, j] += W_in[c, j]
            j += cuda.blockDim.x * parts
        return
    while n < n_steps:
        k0 = in_ptr[b, n]
        k1 = in_ptr[b, n + 1]
        j = cuda.threadIdx.x
        while j < N:
            acc = zero
            for k in range(k0, k1):
                acc += W_in[in_ch[k], j]
            x_in[b, n, j] = acc
            j += cuda.blockDim.x
        n += parts


@launch.device_function
def _add_or_delay(acc, w, d, ring, b, u, slot, S, n, n_steps):
    """acc + w for a synapse without delay; with delay d, w goes into slot (n + d) % S of unit
    u's ring instead (dropped beyond the trial). Returns acc."""
    if d == 0:
        return acc + w
    if n + d < n_steps:
        a = slot + d
        while a >= S:
            a -= S
        ring[b, a, u] += w
    return acc


@launch.device_function
def _delayed_synapse_phase(I, beta, x_0, x_1, x_in, W_fwd, W_rec, W_out, D_fwd, D_rec, D_out,
                           lists, ring, b, t, T, R, L, N, U, n, n_steps, n_fired, slot, S,
                           recurrent, fwd_delayed, rec_delayed, hidden_delayed, output_delayed):
    """Phase 3 of step n (slot = n % S) with delays: each owned unit's current decays, takes the
    input current (layer 0) and its ring buffer's slot of the step (zeroing it), then goes
    through the hidden spikes of the step in unit order: a weight without delay is added at
    once, one with delay D into slot (n + D) % S of the unit's ring (if n + D < n_steps)."""
    real = W_out.dtype.type
    LN = L * N
    last = (L - 1) * N
    for r in range(R):
        u = t + r * T
        if u < LN:
            l = layer_of(u, N)
            j = u - l * N
            acc = real(synapse_decay(I[r], beta[r]))
            if l == 0:
                if r == 0:
                    acc += x_0
                elif r == 1:
                    acc += x_1
                else:
                    acc += x_in[b, n, j]
            if hidden_delayed:
                acc += ring[b, slot, u]
                ring[b, slot, u] = real(0)
            for k in range(n_fired):
                g = lists[LN + k]
                l0 = layer_of(g, N)
                if l0 > l:
                    break                    # the list is in unit order
                i0 = g - l0 * N
                d = 0
                if l0 == l - 1:
                    w = W_fwd[l0, i0, j]
                    if fwd_delayed:
                        d = D_fwd[l0, i0, j]
                elif recurrent and l0 == l:
                    w = W_rec[l0, i0, j]
                    if rec_delayed:
                        d = D_rec[l0, i0, j]
                else:
                    continue
                acc = _add_or_delay(acc, w, d, ring, b, u, slot, S, n, n_steps)
            I[r] = acc
        elif u < U:
            c = u - LN
            acc = real(synapse_decay(I[r], beta[r]))
            if output_delayed:
                acc += ring[b, slot, u]
                ring[b, slot, u] = real(0)
            for k in range(n_fired):
                i0 = lists[LN + k] - last
                if i0 < 0:
                    continue
                w = W_out[i0, c]
                d = 0
                if output_delayed:
                    d = D_out[i0, c]
                acc = _add_or_delay(acc, w, d, ring, b, u, slot, S, n, n_steps)
            I[r] = acc


@cuda.jit(cache=True)
def _forward_kernel(x_in, params, synapses, model, options, store, traces, lists_global, ring):
    """The time loop of the forward pass: one block per sample (see the module doc). ``ring``
    (B, S, U): the units' ring buffers of delayed spikes ((0, 0, 0) without delays)."""
    W_fwd, W_rec, W_out = params.W_fwd, params.W_rec, params.W_out
    D_fwd, D_rec, D_out = synapses.D_fwd, synapses.D_rec, synapses.D_out
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
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    T = cuda.blockDim.x
    L, N = h_alpha.shape
    C = o_alpha.shape[0]
    LN = L * N
    U = LN + C
    R = (U + T - 1) // T             # units owned by each thread: u = t + r T, r < R
    recurrent = W_rec.shape[0] > 0
    cap = sp_idx.shape[1]
    # delays of the hidden and output projections (the inputs' are in x_in already)
    fwd_delayed = D_fwd.shape[0] > 0
    rec_delayed = D_rec.shape[0] > 0
    hidden_delayed = fwd_delayed or rec_delayed
    output_delayed = D_out.shape[0] > 0
    delayed = hidden_delayed or output_delayed
    S = synapses.n_slots
    slot = 0                         # n % S
    real = W_out.dtype.type         # float32 or float64, as the CPU kernel
    theta_r = real(theta)
    v_reset_r = real(v_reset)
    rho_b_r = real(rho_b)
    tau_b_r = real(tau_b)
    b_incr_r = real(b_incr)
    zero = real(0)
    # float32 like the CPU's, then promoted (as numba promotes it against the float64 hash)
    noise_scale = np.float64(real(noise_amp * math.sqrt(dt)))
    # state of the owned units, private to the thread
    V = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)
    I = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)
    thr = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)      # ALIF threshold b
    imv = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)      # ImV of this step's spike
    thr_spike = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)
    n_stored = cuda.local.array(MAX_UNITS_PER_THREAD, numba.int32)
    flag = cuda.local.array(MAX_UNITS_PER_THREAD, numba.int8)
    alpha = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)    # per-step constants
    c_I = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)
    beta = cuda.local.array(MAX_UNITS_PER_THREAD, W_out.dtype)
    # dynamic shared memory: [0, 4) the list lengths, by step parity; then, unless too large
    # (global memory instead), the step's spikes: [0, LN) hidden spikes as they come, [LN, 2 LN)
    # the same sorted by unit, [2 LN, 2 LN + U) spikes to store as they come. (Only dynamic
    # shared memory: the simulator hands each thread that reaches a static shared array first
    # its own copy.)
    shared = cuda.shared.array(0, numba.int32)
    n_list = shared[:4]
    if lists_global.shape[0] > 0:
        lists = lists_global[b]
    else:
        lists = shared[4:]
    for r in range(R):
        u = t + r * T
        V[r] = zero
        I[r] = zero
        thr[r] = zero
        n_stored[r] = 0
        flag[r] = 0
        if u < LN:
            l = layer_of(u, N)
            i = u - l * N
            alpha[r] = h_alpha[l, i]
            c_I[r] = h_c[l, i]
            beta[r] = h_beta[l, i]
        elif u < U:
            c = u - LN
            alpha[r] = o_alpha[c]
            c_I[r] = o_c[c]
            beta[r] = o_beta[c]
            first_step[b, c] = -1
        if delayed and u < U:
            for a in range(S):
                ring[b, a, u] = zero
    if t == 0:
        for k in range(4):
            n_list[k] = 0
        sp_ptr[b, 0] = 0
    ns = 0                           # spikes stored (or needing room) so far; equal in all threads
    cuda.syncthreads()
    for n in range(n_steps):
        par = n & 1
        # the input currents of the step for the first two owned units (all of them in most
        # networks), loaded now and used in phase 3: the loads overlap phases 1 and 2
        x_0 = zero
        x_1 = zero
        if t < N:
            x_0 = x_in[b, n, t]
        if t + T < N:
            x_1 = x_in[b, n, t + T]
        # 1. neuron phase: every unit uses I(t_n); spikes are appended to the lists
        for r in range(R):
            u = t + r * T
            f = 0
            if u < LN:
                l = layer_of(u, N)
                i = u - l * N
                cur = I[r]
                if keep_traces:
                    V_h_tr[b, n, l, i] = V[r]
                    I_h_tr[b, n, l, i] = cur
                v = real(lif_membrane_update(V[r], cur, alpha[r], c_I[r]))
                if noise_amp > 0.0:
                    v = real(v + noise_scale * normal_hash(seed, b, n, u))
                th = thr[r]
                if alif:
                    th = real(alif_threshold_decay(th, rho_b_r))
                if not v < theta_r + th:
                    if not (p_drop > 0.0 and uniform_hash(seed + 1, b, n, u) <= p_drop):
                        counts[b, u] += 1
                        f = 1
                        if n_stored[r] < n_max_spike:
                            n_stored[r] += 1
                            f = 2
                            if alif:
                                imv[r] = alif_imv(cur, v, th, tau_m_h[l, i], tau_b_r)
                                thr_spike[r] = th
                            else:
                                imv[r] = lif_imv(cur, v)
                        else:
                            cuda.atomic.add(n_unstored, b, 1)
                        v = v_reset_r
                        if alif:
                            th = th + b_incr_r
                        k = cuda.atomic.add(n_list, par, 1)
                        lists[k] = u
                V[r] = v
                thr[r] = th
            elif u < U:
                c = u - LN
                vo = V[r]
                io = I[r]
                V_out_tr[b, n, c] = vo
                I_out_tr[b, n, c] = io
                v = real(lif_membrane_update(vo, io, alpha[r], c_I[r]))
                if out_spiking and v >= theta_r:
                    counts[b, u] += 1
                    if first_step[b, c] < 0:
                        first_step[b, c] = n
                    if n_stored[r] < n_max_spike:
                        n_stored[r] += 1
                        f = 2
                        imv[r] = lif_imv(io, v)
                    else:
                        f = 1
                        cuda.atomic.add(n_unstored, b, 1)
                    v = v_reset_r
                V[r] = v
            if f == 2:
                k = cuda.atomic.add(n_list, 2 + par, 1)
                lists[2 * LN + k] = u
            flag[r] = f
        cuda.syncthreads()
        # 2. each spike's place in unit order (its rank in the list), as on the CPU
        n_fired = n_list[par]
        n_new = n_list[2 + par]
        if t == 0:                   # the other parity was last read before this barrier
            n_list[1 - par] = 0
            n_list[3 - par] = 0
        for r in range(R):
            f = flag[r]
            if f > 0:
                u = t + r * T
                if u < LN:
                    rank = 0
                    for k in range(n_fired):
                        if lists[k] < u:
                            rank += 1
                    lists[LN + rank] = u
                if f == 2:
                    rank = 0
                    for k in range(n_new):
                        if lists[2 * LN + k] < u:
                            rank += 1
                    pos = ns + rank
                    if pos < cap:
                        sp_idx[b, pos] = u
                        sp_imv[b, pos] = imv[r]
                        if alif and u < LN:
                            sp_b[b, pos] = thr_spike[r]
        ns += n_new
        if t == 0:
            sp_ptr[b, n + 1] = ns if ns < cap else cap
        cuda.syncthreads()
        # 3. synapse phase: I(t_{n+1}) = beta I(t_n) + weights of the spikes of step n, added in
        # the CPU's order (inputs, then hidden spikes by unit); loads are issued four at a time
        if delayed:
            _delayed_synapse_phase(I, beta, x_0, x_1, x_in, W_fwd, W_rec, W_out, D_fwd, D_rec,
                                   D_out, lists, ring, b, t, T, R, L, N, U, n, n_steps, n_fired,
                                   slot, S, recurrent, fwd_delayed, rec_delayed, hidden_delayed,
                                   output_delayed)
            slot += 1
            if slot == S:
                slot = 0
            continue
        for r in range(R):
            u = t + r * T
            if u < LN:
                l = layer_of(u, N)
                j = u - l * N
                acc = real(synapse_decay(I[r], beta[r]))
                if l == 0:                   # the input current of the step, summed beforehand
                    if r == 0:
                        acc += x_0
                    elif r == 1:
                        acc += x_1
                    else:
                        acc += x_in[b, n, j]
                # hidden spikes, four at a time: from layer l - 1 (W_fwd) or, if recurrent,
                # from layer l (W_rec)
                k = 0
                while k + 4 <= n_fired:
                    g0 = lists[LN + k]
                    g1 = lists[LN + k + 1]
                    g2 = lists[LN + k + 2]
                    g3 = lists[LN + k + 3]
                    l0 = layer_of(g0, N)
                    l1 = layer_of(g1, N)
                    l2 = layer_of(g2, N)
                    l3 = layer_of(g3, N)
                    w0 = (W_fwd[l0, g0 - l0 * N, j] if l0 == l - 1 else
                          W_rec[l0, g0 - l0 * N, j] if recurrent and l0 == l else zero)
                    w1 = (W_fwd[l1, g1 - l1 * N, j] if l1 == l - 1 else
                          W_rec[l1, g1 - l1 * N, j] if recurrent and l1 == l else zero)
                    w2 = (W_fwd[l2, g2 - l2 * N, j] if l2 == l - 1 else
                          W_rec[l2, g2 - l2 * N, j] if recurrent and l2 == l else zero)
                    w3 = (W_fwd[l3, g3 - l3 * N, j] if l3 == l - 1 else
                          W_rec[l3, g3 - l3 * N, j] if recurrent and l3 == l else zero)
                    if l0 == l - 1 or (recurrent and l0 == l):
                        acc += w0
                    if l1 == l - 1 or (recurrent and l1 == l):
                        acc += w1
                    if l2 == l - 1 or (recurrent and l2 == l):
                        acc += w2
                    if l3 == l - 1 or (recurrent and l3 == l):
                        acc += w3
                    k += 4
                while k < n_fired:
                    g0 = lists[LN + k]
                    l0 = layer_of(g0, N)
                    if l0 == l - 1:
                        acc += W_fwd[l0, g0 - l0 * N, j]
                    elif recurrent and l0 == l:
                        acc += W_rec[l0, g0 - l0 * N, j]
                    k += 1
                I[r] = acc
            elif u < U:
                c = u - LN
                acc = real(synapse_decay(I[r], beta[r]))
                last = (L - 1) * N           # hidden spikes of the last layer, four at a time
                k = 0
                while k + 4 <= n_fired:
                    g0 = lists[LN + k] - last
                    g1 = lists[LN + k + 1] - last
                    g2 = lists[LN + k + 2] - last
                    g3 = lists[LN + k + 3] - last
                    w0 = W_out[g0, c] if g0 >= 0 else zero
                    w1 = W_out[g1, c] if g1 >= 0 else zero
                    w2 = W_out[g2, c] if g2 >= 0 else zero
                    w3 = W_out[g3, c] if g3 >= 0 else zero
                    if g0 >= 0:
                        acc += w0
                    if g1 >= 0:
                        acc += w1
                    if g2 >= 0:
                        acc += w2
                    if g3 >= 0:
                        acc += w3
                    k += 4
                while k < n_fired:
                    g0 = lists[LN + k] - last
                    if g0 >= 0:
                        acc += W_out[g0, c]
                    k += 1
                I[r] = acc
    if t == 0:
        sp_need[b] = ns
    for r in range(R):
        u = t + r * T
        if LN <= u < U:
            V_out_tr[b, n_steps, u - LN] = V[r]


def forward_launch(params, synapses, model, inputs, options, store, traces, alloc,
                   on_device=True):
    """The kernels of the forward pass, in launch order, as ``launch.run`` takes them: the
    input currents of every step, then the time loop, on these records of device arrays (host
    arrays with ``on_device`` False: for compiling only). ``alloc(name, shape, dtype)`` gives
    the scratch arrays (and the ring buffers of delayed spikes, B S U values)."""
    B = inputs.in_ptr.shape[0]
    L, N = params.h_alpha.shape
    C = params.o_alpha.shape[0]
    U = L * N + C
    n_steps = model.n_steps
    dtype = params.W_in.dtype
    x_in = alloc("x_in", (B, n_steps, N), dtype)   # input current of every step
    if synapses.D_in.shape[0] > 0:
        blocks, threads = launch.neuron_launch(B, N)
    else:
        blocks, threads = launch.input_launch(B, n_steps, N)
    currents = (_input_current_kernel, (blocks, threads, 0, 0),
                (inputs.in_ptr, inputs.in_ch, params.W_in, synapses.D_in, x_in))
    delayed = (synapses.D_fwd.shape[0] > 0 or synapses.D_rec.shape[0] > 0
               or synapses.D_out.shape[0] > 0)
    ring = alloc("f_ring", (B, int(synapses.n_slots), U) if delayed else (0, 0, 0), dtype)
    head = (x_in, params, synapses, model, options, store, traces)
    T = (launch.block_size(_forward_kernel, dtype, U,
                           head + (np.empty((0, 0), np.int32), np.empty((0, 0, 0), dtype)))
         if on_device else launch.threads_per_block(U))
    lists = (2 * L * N + U) * 4                   # bytes of the step's spike lists
    shared = lists + 16 <= launch.SHARED_BYTES    # with the four list lengths
    lists_global = alloc("f_lists", (0, 0) if shared else (B, lists // 4), np.int32)
    loop = (_forward_kernel, (B, T, 0, 16 + (lists if shared else 0)),
            head + (lists_global, ring))
    return [currents, loop]
