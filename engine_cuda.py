"""Event-driven EventProp on an NVIDIA GPU (numba CUDA): the kernels of ``engine_cpu`` for the GPU.

``forward_batch`` and ``backward_batch`` take the same arguments as their ``engine_cpu``
namesakes and fill the same output arrays the same way, so the network can swap the modules. The
neuron equations are not written here: the kernels call the functions of ``models`` (numba
``njit`` functions; a CPU dispatcher called inside a CUDA kernel is compiled for the device from
the same Python source), so CPU and GPU share one copy of the model.

Layout (the simplest correct one; what to change for speed is listed at the end):

* one thread block per sample, threads over the "units" of that sample: hidden neuron i of
  layer l is unit l * N + i (its global spike index), output c is unit L * N + c. A thread owns
  the units t, t + T, t + 2T, ... (T threads per block) for the whole kernel, so the state of a
  unit is only ever touched by its owner, except where a phase boundary (``syncthreads``) says
  otherwise.
* the time steps are looped inside the kernel. Forward step n:
    1. neuron phase (owners): traces, membrane/threshold update, noise, dropout, spike test,
       per-unit spike counters; a flag per unit says "no spike / spike beyond N_MAX_SPIKE /
       spike to store".
    2. compaction: every thread counts the flags of a contiguous chunk of units, an exclusive
       prefix sum over the per-thread counts (shared memory) gives each chunk its place, and the
       spikes are written to the sample's spike store (``sp_idx``/``sp_imv``/``sp_b``) and to the
       list of hidden spikes of the step. The order is that of the unit index, exactly as on the
       CPU, so the spike store is identical and the run is deterministic (no atomics here).
    3. synapse phase (owners): I <- beta I, then the input spikes and the hidden spikes of the
       step are added, in the CPU's order (inputs, then spikes by unit index), so every current
       is rounded exactly as on the CPU.
* backward step m: owners snapshot the postsynaptic adjoints (if the step has events) and move
  their adjoints from t_{m+1} to t_m (tau gradients accumulate per sample in scratch arrays);
  then threads over the input spikes' target neurons and threads over the stored spikes of the
  step take the gradient samples (``cuda.atomic.add`` into chunk 0 of the (K, ...) accumulators:
  the GPU uses one chunk) and apply the spike jumps; then the owners of the outputs apply the
  non-spike loss jumps.

Precision follows the weights' dtype (float32 or float64) exactly as on the CPU: the same scalar
arguments are cast to that dtype, and no float64 literal is mixed into float32 arithmetic. Results
of the model functions are wrapped in ``real(...)``: a no-op in compiled code, but under the CUDA
simulator (where a kernel is plain Python and an ``njit`` call returns a Python float) it keeps
the simulated arithmetic in the kernel's precision, so the simulator checks the same maths.
Dropout and membrane noise use the counter-based hashes of ``models`` with the same coordinates
(seed, sample, step, unit), so the draws are equal to the CPU's for any thread layout.

Two ways in:

* ``forward_batch`` / ``backward_batch`` (the ``engine_cpu`` contract, used by the equality
  tests): numpy arguments are copied to the device and the output/accumulator arrays back into
  the caller's arrays (which are copied in first, so accumulation semantics match the CPU's).
  Arguments that are already device arrays are used in place and not copied back.
* ``Workspace`` (what ``network.EventPropNetwork.run_batch`` uses with this engine): the
  buffers of a trial (spike store, traces, gradient sums, scratch) are allocated once per
  network and reused; what must start at zero is cleared by a small kernel; parameters stay on
  the device and are uploaded again only when they changed; only what the host needs is
  copied back.

Not optimised yet: the optimiser (Adam) runs on the host, so the gradients come back and the
weights go up every learning trial, and the inputs are uploaded per trial; spike rows in the
backward pass are walked by one thread each (a warp per spike with a shuffle reduction of the
reverse current would use the memory bandwidth); the per-step state lives in global scratch
arrays (shared memory would do for small layers); the compaction's prefix sum is a serial loop
over the threads' counts (a warp-shuffle scan would do); and one block per sample leaves most of
a large GPU idle for small batches.
"""
import math
import time

import numba
import numpy as np
from numba import cuda
from numba.core import config

from models import (alif_imv, alif_spike_jump, alif_threshold_decay, lif_adjoint_update,
                    lif_imv, lif_membrane_update, lif_spike_jump, normal_hash, synapse_decay,
                    tau_m_gradient, tau_s_gradient, uniform_hash)

# Threads per block on a GPU (rounded down to the units of the sample, in warps); under the CUDA
# simulator every thread is a Python thread, so a few suffice (and exercise the strided loops).
MAX_THREADS = 256
SIM_THREADS = 4
# Set to an int to force the block size (tests); None chooses as above.
THREADS_PER_BLOCK = None
# Size of the static shared arrays of the compaction (one slot per thread of a block).
_SCAN_SLOTS = 1024
# Layouts of a packed buffer kept per name (Workspace.packed).
_PACK_LAYOUTS = 4


def threads_per_block(n_units):
    """Threads per block for samples of ``n_units`` units (hidden neurons + outputs)."""
    if THREADS_PER_BLOCK is not None:
        t = int(THREADS_PER_BLOCK)
    elif config.ENABLE_CUDASIM:
        t = SIM_THREADS
    else:
        t = min(MAX_THREADS, 32 * ((n_units + 31) // 32))
    if not 1 <= t <= _SCAN_SLOTS:
        raise ValueError(f"threads per block must be in 1..{_SCAN_SLOTS}, got {t}")
    return t


def gradient_chunks(n_samples):
    """Number of gradient accumulator chunks K the backward pass wants: one on the GPU (samples
    add into it atomically)."""
    return 1


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _forward_kernel(in_ptr, in_ch, W_in, W_fwd, W_rec, W_out,
                    h_alpha, h_beta, h_c, o_alpha, o_beta, o_c,
                    theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
                    out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
                    sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts,
                    first_step, V_out_tr, I_out_tr, V_h_tr, I_h_tr,
                    V, I, thr_b, stored, flag, imv_buf, b_buf, fired):
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    T = cuda.blockDim.x
    L, N = h_alpha.shape
    C = o_alpha.shape[0]
    LN = L * N
    U = LN + C
    recurrent = W_rec.shape[0] > 0
    cap = sp_idx.shape[1]
    real = W_in.dtype.type          # float32 or float64, as the CPU kernel
    theta_r = real(theta)
    v_reset_r = real(v_reset)
    rho_b_r = real(rho_b)
    tau_b_r = real(tau_b)
    b_incr_r = real(b_incr)
    zero = real(0)
    # float32 like the CPU's, then promoted (as numba promotes it against the float64 hash)
    noise_scale = np.float64(real(noise_amp * math.sqrt(dt)))
    cnt_f = cuda.shared.array(_SCAN_SLOTS, np.int32)   # hidden spikes per chunk
    cnt_s = cuda.shared.array(_SCAN_SLOTS, np.int32)   # spikes to store per chunk
    chunk = (U + T - 1) // T
    lo = t * chunk
    if lo > U:
        lo = U
    hi = lo + chunk
    if hi > U:
        hi = U

    for u in range(t, U, T):
        V[b, u] = zero
        I[b, u] = zero
        stored[b, u] = 0
        flag[b, u] = 0
        if u < LN:
            thr_b[b, u] = zero
        else:
            first_step[b, u - LN] = -1
    ns = 0                           # spikes stored (or needing room) so far; equal in all threads
    cuda.syncthreads()
    for n in range(n_steps):
        if t == 0:
            sp_ptr[b, n] = ns if ns < cap else cap
        # 1. neuron phase: every unit uses I(t_n)
        for u in range(t, U, T):
            f = 0
            if u < LN:
                l = u // N
                i = u - l * N
                cur = I[b, u]
                if keep_traces:
                    V_h_tr[b, n, l, i] = V[b, u]
                    I_h_tr[b, n, l, i] = cur
                v = real(lif_membrane_update(V[b, u], cur, h_alpha[l, i], h_c[l, i]))
                if noise_amp > 0.0:
                    v = real(v + noise_scale * normal_hash(seed, b, n, u))
                thr = thr_b[b, u]
                if alif:
                    thr = real(alif_threshold_decay(thr, rho_b_r))
                if not v < theta_r + thr:
                    if not (p_drop > 0.0 and uniform_hash(seed + 1, b, n, u) <= p_drop):
                        counts[b, u] += 1
                        f = 1
                        if stored[b, u] < n_max_spike:
                            stored[b, u] += 1
                            f = 2
                            if alif:
                                imv_buf[b, u] = alif_imv(cur, v, thr, tau_m_h[l, i], tau_b_r)
                                b_buf[b, u] = thr
                            else:
                                imv_buf[b, u] = lif_imv(cur, v)
                        else:
                            cuda.atomic.add(n_unstored, b, 1)
                        v = v_reset_r
                        if alif:
                            thr = thr + b_incr_r
                V[b, u] = v
                thr_b[b, u] = thr
            else:
                c = u - LN
                vo = V[b, u]
                io = I[b, u]
                V_out_tr[b, n, c] = vo
                I_out_tr[b, n, c] = io
                v = real(lif_membrane_update(vo, io, o_alpha[c], o_c[c]))
                if out_spiking and v >= theta_r:
                    counts[b, u] += 1
                    if first_step[b, c] < 0:
                        first_step[b, c] = n
                    if stored[b, u] < n_max_spike:
                        stored[b, u] += 1
                        f = 2
                        imv_buf[b, u] = lif_imv(io, v)
                    else:
                        f = 1
                        cuda.atomic.add(n_unstored, b, 1)
                    v = v_reset_r
                V[b, u] = v
            flag[b, u] = f
        cuda.syncthreads()
        # 2. compaction of the step's spikes, in unit order
        nf = 0
        nst = 0
        for u in range(lo, hi):
            f = flag[b, u]
            if f > 0 and u < LN:
                nf += 1
            if f == 2:
                nst += 1
        cnt_f[t] = nf
        cnt_s[t] = nst
        cuda.syncthreads()
        off_f = 0
        off_s = 0
        tot_f = 0
        tot_s = 0
        for k in range(T):
            if k < t:
                off_f += cnt_f[k]
                off_s += cnt_s[k]
            tot_f += cnt_f[k]
            tot_s += cnt_s[k]
        for u in range(lo, hi):
            f = flag[b, u]
            if f > 0 and u < LN:
                fired[b, off_f] = u
                off_f += 1
            if f == 2:
                pos = ns + off_s
                if pos < cap:
                    sp_idx[b, pos] = u
                    sp_imv[b, pos] = imv_buf[b, u]
                    if alif and u < LN:
                        sp_b[b, pos] = b_buf[b, u]
                off_s += 1
        ns += tot_s
        n_fired = tot_f
        cuda.syncthreads()
        # 3. synapse phase: I(t_{n+1}) = beta I(t_n) + weights of the spikes of step n
        for u in range(t, U, T):
            if u < LN:
                l = u // N
                j = u - l * N
                acc = real(synapse_decay(I[b, u], h_beta[l, j]))
                if l == 0:
                    for k in range(in_ptr[b, n], in_ptr[b, n + 1]):
                        acc += W_in[in_ch[k], j]
                for k in range(n_fired):
                    g = fired[b, k]
                    lg = g // N
                    if lg == l - 1:
                        acc += W_fwd[lg, g - lg * N, j]
                    elif recurrent and lg == l:
                        acc += W_rec[lg, g - lg * N, j]
                I[b, u] = acc
            else:
                c = u - LN
                acc = real(synapse_decay(I[b, u], o_beta[c]))
                for k in range(n_fired):
                    g = fired[b, k]
                    lg = g // N
                    if lg == L - 1:
                        acc += W_out[g - lg * N, c]
                I[b, u] = acc
    if t == 0:
        sp_ptr[b, n_steps] = ns if ns < cap else cap
        sp_need[b] = ns
    for u in range(t, U, T):
        if u >= LN:
            V_out_tr[b, n_steps, u - LN] = V[b, u]


@cuda.jit(cache=True)
def _backward_kernel(in_ptr, in_ch, W_fwd, W_rec, W_out,
                     h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
                     tau_m_h, tau_s_h, tau_m_o, tau_s_o,
                     theta_jump, dt, n_steps, alif, rho_b, tau_b, b_incr,
                     sp_ptr, sp_idx, sp_imv, sp_b, first_step,
                     A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
                     train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
                     dW_in, dW_fwd, dW_rec, dW_out, dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o,
                     lam_V, lam_I, lam_b, post_diff, post_lam_I, acc_m, acc_s):
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
    real = W_out.dtype.type
    zero = real(0)
    theta_jump_r = real(theta_jump)
    dt_r = real(dt)
    rho_b_r = real(rho_b)
    tau_b_r = real(tau_b)
    b_incr_r = real(b_incr)

    for u in range(t, U, T):
        lam_V[b, u] = zero
        lam_I[b, u] = zero
        acc_m[b, u] = zero
        acc_s[b, u] = zero
        if u < LN:
            lam_b[b, u] = zero
    for m in range(n_steps - 1, -1, -1):
        n_in = in_ptr[b, m + 1] - in_ptr[b, m]
        s0 = sp_ptr[b, m]
        s1 = sp_ptr[b, m + 1]
        events = m < n_steps - 1 and (n_in > 0 or s1 > s0)
        # owners: postsynaptic adjoints at t_{m+1}, then free dynamics from t_{m+1} to t_m
        for u in range(t, U, T):
            lv = lam_V[b, u]
            li = lam_I[b, u]
            if events:
                post_diff[b, u] = lv - li
                post_lam_I[b, u] = li
            if u < LN:
                l = u // N
                i = u - l * N
                lv, li = lif_adjoint_update(lv, li, zero, h_alpha[l, i], h_beta[l, i],
                                            h_d[l, i])
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
                lv, li = lif_adjoint_update(lv, li, A, o_alpha[c], o_beta[c], o_d[c])
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
            # input spikes: gradient samples only (threads over the postsynaptic neurons)
            for j in range(t, N, T):
                dw = -(tau_s_h[0, j] * post_lam_I[b, j])
                for k in range(in_ptr[b, m], in_ptr[b, m + 1]):
                    cuda.atomic.add(dW_in, (0, in_ch[k], j), dw)
            # stored hidden and output spikes of step m (threads over spikes; a neuron spikes at
            # most once per step, so the jumps of one step touch distinct adjoints)
            for s in range(s0 + t, s1, T):
                g = sp_idx[b, s]
                imv = sp_imv[b, s]
                if g < LN:
                    l = g // N
                    i = g - l * N
                    rev = zero
                    if l < L - 1:
                        base = (l + 1) * N
                        for j in range(N):
                            rev += W_fwd[l, i, j] * post_diff[b, base + j]
                            cuda.atomic.add(dW_fwd, (0, l, i, j),
                                            -(tau_s_h[l + 1, j] * post_lam_I[b, base + j]))
                    else:
                        for c in range(C):
                            rev += W_out[i, c] * post_diff[b, LN + c]
                            cuda.atomic.add(dW_out, (0, i, c),
                                            -(tau_s_o[c] * post_lam_I[b, LN + c]))
                    if recurrent:
                        base = l * N
                        for j in range(N):
                            rev += W_rec[l, i, j] * post_diff[b, base + j]
                            cuda.atomic.add(dW_rec, (0, l, i, j),
                                            -(tau_s_h[l, j] * post_lam_I[b, base + j]))
                    if alif:
                        lv, lb = alif_spike_jump(lam_V[b, g], lam_b[b, g], rev, theta_jump_r,
                                                 sp_b[b, s], imv, b_incr_r, tau_m_h[l, i],
                                                 tau_b_r)
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
        cuda.syncthreads()
        # owners of the outputs: loss jumps that are not spike-triggered (max, phantom spike)
        for u in range(t, U, T):
            if u >= LN:
                c = u - LN
                if jump_step[b, c] == m:
                    lam_V[b, u] = lam_V[b, u] + jump_amount[b, c]
    # per-sample tau gradients into the shared accumulator
    for u in range(t, U, T):
        if u < LN:
            if train_tau:
                l = u // N
                i = u - l * N
                cuda.atomic.add(dtau_m_h, (0, l, i), acc_m[b, u])
                cuda.atomic.add(dtau_s_h, (0, l, i), acc_s[b, u])
        elif train_tau_out:
            c = u - LN
            cuda.atomic.add(dtau_m_o, (0, c), acc_m[b, u])
            cuda.atomic.add(dtau_s_o, (0, c), acc_s[b, u])


# ----------------------------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------------------------

def _device(x, on_device):
    """(array for the kernel, copied?): numpy arrays are copied to the device, device arrays are
    used as they are; with ``on_device`` False (compiling without a GPU) numpy arrays stay."""
    if not isinstance(x, np.ndarray):
        return x, False                       # a device array (or the simulator's)
    if not on_device:
        return np.ascontiguousarray(x), False
    return cuda.to_device(np.ascontiguousarray(x)), True


def _empty(shape, dtype, on_device):
    return cuda.device_array(shape, dtype) if on_device else np.empty(shape, dtype)


def _copy_back(d, x, copied):
    if copied and x.size:
        if x.flags.c_contiguous and x.flags.writeable:
            d.copy_to_host(x)
        else:
            x[...] = d.copy_to_host()


def _forward_launch(in_ptr, in_ch, W_in, W_fwd, W_rec, W_out,
                    h_alpha, h_beta, h_c, o_alpha, o_beta, o_c,
                    theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
                    out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
                    sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts,
                    first_step, V_out_tr, I_out_tr, V_h_tr, I_h_tr, on_device=True,
                    alloc=None):
    """Kernel arguments (device arrays, scalars, scratch), the outputs to copy back, the block
    size. ``alloc(name, shape, dtype)`` gives the scratch arrays (default: new ones)."""
    if alloc is None:
        alloc = lambda name, shape, kind: _empty(shape, kind, on_device)   # noqa: E731
    B = in_ptr.shape[0]
    L, N = h_alpha.shape
    C = o_alpha.shape[0]
    U = L * N + C
    dtype = np.dtype(W_in.dtype)
    d_in = [_device(a, on_device)[0]
            for a in (in_ptr, in_ch, W_in, W_fwd, W_rec, W_out,
                      h_alpha, h_beta, h_c, o_alpha, o_beta, o_c, tau_m_h)]
    outputs = (sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts, first_step, V_out_tr,
               I_out_tr, V_h_tr, I_h_tr)
    d_out = [_device(a, on_device) for a in outputs]
    scalars = [float(theta), float(v_reset), float(dt), int(n_steps), bool(alif), float(rho_b),
               d_in[12], float(tau_b), float(b_incr), bool(out_spiking), float(p_drop),
               float(noise_amp), int(seed), int(n_max_spike), bool(keep_traces)]
    scratch = [alloc("f_V", (B, U), dtype),                  # V
               alloc("f_I", (B, U), dtype),                  # I
               alloc("f_b", (B, L * N), dtype),              # ALIF threshold b
               alloc("f_stored", (B, U), np.int32),          # spikes stored per unit
               alloc("f_flag", (B, U), np.int8),             # spike flag of the current step
               alloc("f_imv", (B, U), dtype),                # ImV of the current step's spike
               alloc("f_spb", (B, U), dtype),                # ALIF b of the current step's spike
               alloc("f_fired", (B, L * N), np.int32)]       # hidden spikes of the current step
    args = d_in[:12] + scalars + [d for d, _ in d_out] + scratch
    return args, list(zip(d_out, outputs)), threads_per_block(U)


def _backward_launch(in_ptr, in_ch, W_fwd, W_rec, W_out,
                     h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
                     tau_m_h, tau_s_h, tau_m_o, tau_s_o,
                     theta_jump, dt, n_steps, alif, rho_b, tau_b, b_incr,
                     sp_ptr, sp_idx, sp_imv, sp_b, first_step,
                     A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
                     train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
                     dW_in, dW_fwd, dW_rec, dW_out, dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o,
                     on_device=True, alloc=None):
    if alloc is None:
        alloc = lambda name, shape, kind: _empty(shape, kind, on_device)   # noqa: E731
    B = in_ptr.shape[0]
    L, N = h_alpha.shape
    C = o_alpha.shape[0]
    U = L * N + C
    dtype = np.dtype(W_out.dtype)
    d_a = [_device(a, on_device)[0]
           for a in (in_ptr, in_ch, W_fwd, W_rec, W_out, h_alpha, h_beta, h_d, o_alpha, o_beta,
                     o_d, tau_m_h, tau_s_h, tau_m_o, tau_s_o)]
    d_b = [_device(a, on_device)[0]
           for a in (sp_ptr, sp_idx, sp_imv, sp_b, first_step,
                     A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump)]
    d_c = [_device(a, on_device)[0] for a in (V_h_tr, I_h_tr, V_out_tr, I_out_tr)]
    grads = (dW_in, dW_fwd, dW_rec, dW_out, dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o)
    d_grads = [_device(a, on_device) for a in grads]
    scalars = [float(theta_jump), float(dt), int(n_steps), bool(alif), float(rho_b), float(tau_b),
               float(b_incr)]
    scratch = [alloc("b_lamV", (B, U), dtype),               # lambda_V
               alloc("b_lamI", (B, U), dtype),               # lambda_I
               alloc("b_lamb", (B, L * N), dtype),           # lambda_b (ALIF)
               alloc("b_diff", (B, U), dtype),               # lambda_V - lambda_I at t_{m+1}
               alloc("b_postI", (B, U), dtype),              # lambda_I at t_{m+1}
               alloc("b_accm", (B, U), dtype),               # per-sample dL/dtau_m
               alloc("b_accs", (B, U), dtype)]               # per-sample dL/dtau_s
    args = (d_a + scalars + d_b + [bool(train_tau), bool(train_tau_out)] + d_c
            + [d for d, _ in d_grads] + scratch)
    return args, list(zip(d_grads, grads)), threads_per_block(U)


def forward_batch(in_ptr, in_ch, W_in, W_fwd, W_rec, W_out,
                  h_alpha, h_beta, h_c, o_alpha, o_beta, o_c,
                  theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
                  out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
                  sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts,
                  first_step, V_out_tr, I_out_tr, V_h_tr, I_h_tr):
    """Forward pass of every sample of the batch on the GPU. Same arguments and results as
    ``engine_cpu.forward_batch`` (outputs are written into the given arrays)."""
    B = in_ptr.shape[0]
    if B == 0:
        return
    kargs, back, T = _forward_launch(
        in_ptr, in_ch, W_in, W_fwd, W_rec, W_out, h_alpha, h_beta, h_c, o_alpha, o_beta, o_c,
        theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
        out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
        sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts,
        first_step, V_out_tr, I_out_tr, V_h_tr, I_h_tr)
    _forward_kernel[B, T](*kargs)
    cuda.synchronize()
    for (d, copied), x in back:
        _copy_back(d, x, copied)


def backward_batch(in_ptr, in_ch, W_fwd, W_rec, W_out,
                   h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
                   tau_m_h, tau_s_h, tau_m_o, tau_s_o,
                   theta_jump, dt, n_steps, alif, rho_b, tau_b, b_incr,
                   sp_ptr, sp_idx, sp_imv, sp_b, first_step,
                   A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
                   train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
                   dW_in, dW_fwd, dW_rec, dW_out, dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o):
    """Backward pass of every sample on the GPU. Same arguments as ``engine_cpu.backward_batch``.
    All samples accumulate (atomically) into chunk 0 of the d* arrays; other chunks are left as
    they are, so the caller's sum over chunks is the batch gradient (``gradient_chunks()`` = 1
    chunk is enough)."""
    B = in_ptr.shape[0]
    if B == 0:
        return
    kargs, back, T = _backward_launch(
        in_ptr, in_ch, W_fwd, W_rec, W_out, h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
        tau_m_h, tau_s_h, tau_m_o, tau_s_o, theta_jump, dt, n_steps, alif, rho_b, tau_b, b_incr,
        sp_ptr, sp_idx, sp_imv, sp_b, first_step,
        A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
        train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
        dW_in, dW_fwd, dW_rec, dW_out, dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o)
    _backward_kernel[B, T](*kargs)
    cuda.synchronize()
    for (d, copied), x in back:
        _copy_back(d, x, copied)


# ----------------------------------------------------------------------------------------------
# Device-resident trials: buffers and parameters kept on the GPU from trial to trial
# ----------------------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _zero_kernel(x):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(start, x.shape[0], stride):
        x[k] = 0


class _Phase:
    """Synchronised wall-clock timer of one phase of a trial (``Workspace.phase``)."""

    def __init__(self, profile, name):
        self.profile, self.name = profile, name

    def __enter__(self):
        cuda.synchronize()
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        cuda.synchronize()
        self.profile[self.name] = (self.profile.get(self.name, 0.0)
                                   + time.perf_counter() - self.start)


class Workspace:
    """The GPU memory of one network, kept from trial to trial. ``network.EventPropNetwork``
    makes one when its engine is this module and runs every trial through it:

    * ``buffer(name, shape, dtype)``: a device array that is allocated once and reused. A
      request for fewer samples (a smaller last batch) gets a view of the first rows; more
      samples, or other trailing dimensions (a larger spike store), allocate it anew.
    * ``packed(name, dtype, parts)``: several arrays in one buffer, one after the other
      (views by key), so that they are cleared by one kernel launch and come back in one copy
      (``fetch_parts``): the per-sample int64 counters of the forward pass, the gradients.
    * ``put(name, host)``: a host array copied into such a buffer (inputs, loss terms).
    * ``param(name, host, key)``: the device copy of a parameter, uploaded again only when
      ``key`` differs from the key of the last upload (``key`` None: every call).
    * ``forward(...)`` / ``backward(...)``: the kernels on device arrays. Outputs, gradient
      accumulators and scratch are buffers. What must start at zero (spike counters, overflow
      counters, gradient sums, and the spike store when the caller reads it) is cleared on the
      device by ``_zero_kernel``; the kernels write every other element themselves.
    * ``fetch(d)``: a new host copy of a device array. Only what the host needs comes back.
    * ``phase(name)``: when ``profile`` is a dict, the seconds spent in the phase are added to
      ``profile[name]`` (synchronised timers: the GPU is idle at both ends of a phase).

    ``stats`` counts the bytes copied each way, the parameter uploads and the allocations.
    """

    def __init__(self):
        self._buffers = {}
        self._packs = {}       # name -> {layout: (flat device array, views by key)}
        self._pack_in_use = {}  # name -> layout of the last ``packed`` call
        self._params = {}      # name -> (device array, key of the upload)
        self.profile = None
        self.stats = {"h2d_bytes": 0, "d2h_bytes": 0, "param_uploads": 0, "allocations": 0}

    # --- memory ---------------------------------------------------------------------------
    def buffer(self, name, shape, dtype):
        shape = tuple(int(n) for n in shape)
        dtype = np.dtype(dtype)
        if 0 in shape:                           # empty: kept apart from the name's real buffer
            name = (name, shape)
        d = self._buffers.get(name)
        if (d is not None and d.dtype == dtype and d.shape[1:] == shape[1:]
                and d.shape[0] >= shape[0]):
            return d if d.shape[0] == shape[0] else d[:shape[0]]
        rows = shape[0]
        if d is not None and d.dtype == dtype and d.shape[1:] == shape[1:]:
            rows = max(rows, d.shape[0] + d.shape[0] // 4)   # growing: leave room to grow
        self._buffers.pop(name, None)            # free the old one before allocating
        d = cuda.device_array((rows,) + shape[1:], dtype)
        self._buffers[name] = d
        self.stats["allocations"] += 1
        return d if rows == shape[0] else d[:shape[0]]

    def packed(self, name, dtype, parts):
        """Views (by key) of one device buffer that holds the arrays ``parts`` ((key, shape)
        pairs) one after the other; an empty part gets an empty buffer of its own. The buffers
        of the last few layouts are kept (a full batch and a smaller last one alternate)."""
        dtype = np.dtype(dtype)
        layout = (dtype.str,) + tuple((k, tuple(int(n) for n in shape)) for k, shape in parts)
        packs = self._packs.setdefault(name, {})
        self._pack_in_use[name] = layout
        if layout in packs:
            return packs[layout][1]
        while len(packs) >= _PACK_LAYOUTS:
            del packs[next(iter(packs))]          # the oldest
        total = sum(math.prod(shape) for _, shape in layout[1:])
        flat = cuda.device_array(max(total, 1), dtype)
        self.stats["allocations"] += 1
        views, at = {}, 0
        for key, shape in layout[1:]:
            size = math.prod(shape)
            views[key] = (flat[at:at + size].reshape(shape) if size
                          else self.buffer(f"{name}/{key}", shape, dtype))
            at += size
        packs[layout] = (flat, views)
        return views

    def clear_packed(self, name):
        """Zero the buffer of the last ``packed(name, ...)`` call (one kernel launch)."""
        self.zero(self._packs[name][self._pack_in_use[name]][0])

    def fetch_parts(self, name):
        """Host copies of the arrays of the last ``packed(name, ...)`` call (one copy), by
        key."""
        layout = self._pack_in_use[name]
        flat = self._packs[name][layout][0]
        total = sum(math.prod(shape) for _, shape in layout[1:])
        host = self.fetch(flat[:total]) if total else np.empty(0, flat.dtype)
        out, at = {}, 0
        for key, shape in layout[1:]:
            size = math.prod(shape)
            out[key] = host[at:at + size].reshape(shape)
            at += size
        return out

    def nbytes(self):
        """Bytes of device memory held (buffers, packed buffers and parameters)."""
        arrays = (list(self._buffers.values())
                  + [f for packs in self._packs.values() for f, _ in packs.values()]
                  + [d for d, _ in self._params.values()])
        return int(sum(d.size * d.dtype.itemsize for d in arrays))

    def zero(self, *arrays):
        for d in arrays:
            if d.size:
                threads = SIM_THREADS if config.ENABLE_CUDASIM else 256
                blocks = min(1024, (d.size + threads - 1) // threads)
                if config.ENABLE_CUDASIM:
                    blocks = 1
                _zero_kernel[blocks, threads](d.reshape(d.size))

    # --- transfers ------------------------------------------------------------------------
    def put(self, name, host):
        host = np.ascontiguousarray(host)
        d = self.buffer(name, host.shape, host.dtype)
        if host.size:
            d.copy_to_device(host)
            self.stats["h2d_bytes"] += host.nbytes
        return d

    def param(self, name, host, key=None):
        entry = self._params.get(name)
        if (key is not None and entry is not None and entry[1] is not None
                and _same_key(entry[1], key)):
            return entry[0]
        host = np.ascontiguousarray(host)
        if entry is None or entry[0].shape != host.shape or entry[0].dtype != host.dtype:
            self._params.pop(name, None)
            d = cuda.device_array(host.shape, host.dtype)
            self.stats["allocations"] += 1
        else:
            d = entry[0]
        if host.size:
            d.copy_to_device(host)
            self.stats["h2d_bytes"] += host.nbytes
        self.stats["param_uploads"] += 1
        self._params[name] = (d, key)
        return d

    def fetch(self, d):
        host = np.empty(d.shape, d.dtype)
        if d.size:
            d.copy_to_host(host)
            self.stats["d2h_bytes"] += host.nbytes
        return host

    def phase(self, name):
        return _NO_PHASE if self.profile is None else _Phase(self.profile, name)

    # --- kernels --------------------------------------------------------------------------
    def forward(self, in_ptr, in_ch, W_in, W_fwd, W_rec, W_out,
                h_alpha, h_beta, h_c, o_alpha, o_beta, o_c,
                theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
                out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
                capacity, clear_store=False):
        """Forward pass of the batch on device arrays (arguments as ``forward_batch``, without
        the outputs). Returns the outputs, device arrays by the names of ``forward_batch``'s
        arguments. ``clear_store``: zero the spike store first (its elements beyond the stored
        spikes are then zero, as in a new host array)."""
        B = in_ptr.shape[0]
        L, N = h_alpha.shape
        C = o_alpha.shape[0]
        U = L * N + C
        dtype = np.dtype(W_in.dtype)
        cap = int(capacity)
        tr = (B, n_steps, L, N) if keep_traces else (0, 0, 0, 0)
        # the int64 per-sample results in one buffer: one clear, one copy back ("counters")
        out = dict(self.packed("counters", np.int64, (("sp_need", (B,)), ("n_unstored", (B,)),
                                                      ("first_step", (B, C)))))
        out.update({"sp_ptr": self.buffer("sp_ptr", (B, n_steps + 1), np.int64),
                    "sp_idx": self.buffer("sp_idx", (B, cap), np.int32),
                    "sp_imv": self.buffer("sp_imv", (B, cap), dtype),
                    "sp_b": self.buffer("sp_b", (B, cap if alif else 0), dtype),
                    "counts": self.buffer("counts", (B, U), np.int32),
                    "V_out_tr": self.buffer("V_out_tr", (B, n_steps + 1, C), dtype),
                    "I_out_tr": self.buffer("I_out_tr", (B, n_steps, C), dtype),
                    "V_h_tr": self.buffer("V_h_tr", tr, dtype),
                    "I_h_tr": self.buffer("I_h_tr", tr, dtype)})
        if B == 0:
            return out
        self.zero(out["counts"])
        self.clear_packed("counters")
        if clear_store:
            self.zero(out["sp_idx"], out["sp_imv"], out["sp_b"])
        kargs, _, T = _forward_launch(
            in_ptr, in_ch, W_in, W_fwd, W_rec, W_out, h_alpha, h_beta, h_c, o_alpha, o_beta,
            o_c, theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
            out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
            *(out[k] for k in ("sp_ptr", "sp_idx", "sp_imv", "sp_b", "sp_need", "n_unstored",
                               "counts", "first_step", "V_out_tr", "I_out_tr", "V_h_tr",
                               "I_h_tr")),
            alloc=self.buffer)
        _forward_kernel[B, T](*kargs)
        return out

    def backward(self, in_ptr, in_ch, W_fwd, W_rec, W_out,
                 h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
                 tau_m_h, tau_s_h, tau_m_o, tau_s_o,
                 theta_jump, dt, n_steps, alif, rho_b, tau_b, b_incr,
                 sp_ptr, sp_idx, sp_imv, sp_b, first_step,
                 A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
                 train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr, n_input):
        """Backward pass on device arrays (arguments as ``backward_batch``, without the
        gradients; ``n_input``: rows of the input weights). Returns the batch gradients, device
        arrays of shape (1, ...) by the names of ``backward_batch``'s arguments, in one packed
        buffer ("grads": ``fetch_parts("grads")`` copies them back), zeroed before the kernel
        adds into them."""
        B = in_ptr.shape[0]
        dtype = np.dtype(W_out.dtype)
        N = h_alpha.shape[1]
        grads = self.packed("grads", dtype, (
            ("dW_in", (1, int(n_input), N)), ("dW_fwd", (1,) + tuple(W_fwd.shape)),
            ("dW_rec", (1,) + tuple(W_rec.shape)), ("dW_out", (1,) + tuple(W_out.shape)),
            ("dtau_m_h", (1,) + tuple(tau_m_h.shape)), ("dtau_s_h", (1,) + tuple(tau_s_h.shape)),
            ("dtau_m_o", (1,) + tuple(tau_m_o.shape)), ("dtau_s_o", (1,) + tuple(tau_s_o.shape))))
        self.clear_packed("grads")
        if B == 0:
            return grads
        kargs, _, T = _backward_launch(
            in_ptr, in_ch, W_fwd, W_rec, W_out, h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
            tau_m_h, tau_s_h, tau_m_o, tau_s_o, theta_jump, dt, n_steps, alif, rho_b, tau_b,
            b_incr, sp_ptr, sp_idx, sp_imv, sp_b, first_step,
            A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
            train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
            *(grads[k] for k in ("dW_in", "dW_fwd", "dW_rec", "dW_out", "dtau_m_h", "dtau_s_h",
                                 "dtau_m_o", "dtau_s_o")),
            alloc=self.buffer)
        _backward_kernel[B, T](*kargs)
        return grads


def _same_key(a, b):
    """Keys of ``Workspace.param``: tuples compared item by item, objects by identity (a host
    array stands for itself), everything else by ``==``."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_key(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is b
    return type(a) is type(b) and a == b


class _NoPhase:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NO_PHASE = _NoPhase()


def compile_ptx(kernel, *args, cc=(9, 0)):
    """PTX of the "forward" or "backward" kernel for the types of these (host) arguments, the
    argument list of ``forward_batch`` / ``backward_batch``. Needs NVVM (a CUDA toolkit), not a
    GPU: checks that the kernels type and compile for the device."""
    launch, fn = {"forward": (_forward_launch, _forward_kernel),
                  "backward": (_backward_launch, _backward_kernel)}[kernel]
    kargs, _, _ = launch(*args, on_device=False)
    signature = tuple(numba.typeof(a) for a in kargs)
    ptx, _ = cuda.compile_ptx(fn.py_func, signature, cc=cc)
    return ptx
