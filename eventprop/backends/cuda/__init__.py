"""Event-driven EventProp on an NVIDIA GPU (numba CUDA): the kernels of ``engine_cpu`` for the GPU.

``forward_batch`` and ``backward_batch`` take the same arguments as their ``engine_cpu``
namesakes and fill the same output arrays the same way, so the network can swap the modules. The
neuron equations are not written here: the kernels call the functions of ``models`` (numba
``njit`` functions; a CPU dispatcher called inside a CUDA kernel is compiled for the device from
the same Python source), so CPU and GPU share one copy of the model.

Layout:

* one thread block per sample, threads over the "units" of that sample: hidden neuron i of
  layer l is unit l * N + i (its global spike index), output c is unit L * N + c. A thread owns
  the units t, t + T, t + 2T, ... (T threads per block, at most MAX_UNITS_PER_THREAD units each)
  for the whole kernel. T is the fewest warps that cover the units in the fewest rounds of at
  most MAX_THREADS threads, and never more than the compiled kernel's registers allow.
* the input spikes do not depend on the network's state, so their part is taken out of the
  time loops: before the forward loop ``_input_current_kernel`` sums the input weights of every
  step (x_in[b, n, j], in the CPU's order, for all steps in parallel), and after the backward
  loop ``_input_gradient_kernel`` takes the gradient samples of the input synapses from the
  lambda_I of layer 0 that the loop kept for every step (in the same buffer).
* the time steps are looped inside the kernel. Forward step n:
    1. neuron phase (owners, state in thread-local memory): traces, membrane/threshold update,
       noise, dropout, spike test, spike counters. A spiking unit appends itself to the step's
       list of hidden spikes and, if it is stored, to the list of spikes to store (shared-memory
       counters, so in no particular order).
    2. ordering: each spike counts the entries of its list with a smaller unit index. That rank
       puts the hidden spikes in unit order, and places each stored spike in the sample's spike
       store (``sp_idx``/``sp_imv``/``sp_b``) exactly where the CPU puts it, so the spike store is
       identical and the run deterministic.
    3. synapse phase (owners): I <- beta I + x_in, then the hidden spikes of the step are
       added, in the CPU's order (by unit index), so every current is rounded exactly as on
       the CPU.
  The lists live in shared memory (global memory when a sample has too many units for
  SHARED_BYTES); two barriers per step.
* backward step m: owners snapshot the postsynaptic adjoints lambda_V - lambda_I and lambda_I
  into shared memory (if the step has stored spikes) and move their adjoints from t_{m+1} to t_m
  (tau gradients accumulate per sample in scratch arrays). Then the stored spikes of the step
  are taken P at a time, each by G threads ("lanes", G a power of two up to a warp): the lanes
  go over the spike's outgoing synapses (coalesced), add the gradient samples
  (``cuda.atomic.add`` into chunk 0 of the (K, ...) accumulators; the GPU uses one chunk) and
  their parts of the reverse current sum_j w_ij (lambda_V,j - lambda_I,j), which a tree of warp
  shuffles adds up (the lanes of a spike are lanes of one warp; under the simulator, which has
  no shuffles, the same tree in shared memory); lane 0 applies the spike's jump. The spikes of a
  step touch distinct adjoints, so the rounds of P spikes need no barrier between them. Last, the owners of the outputs apply
  the loss jumps that are not spike-triggered. The reverse current is summed in another order
  than on the CPU, so backward results agree to rounding, not bit for bit.
* the optimiser: ``_adam_kernel`` (and ``_time_constant_kernel`` for trained time constants:
  lower bounds, then the per-step constants from ``models.lif_coefficients``) update the
  parameters where they are, so a training epoch copies weights and moments back only at its
  end (``network.EventPropNetwork.adam_step``).

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
  network and reused; what must start at zero is cleared by a small kernel; parameters and Adam
  moments stay on the device and are uploaded again only when the host changed them; the inputs
  of many trials are uploaded in one copy (``put_inputs``); the loss runs on the device
  (``losses_cuda``); only what the host needs is copied back (counters, spike counts, the loss
  and prediction of every sample).

Where the time goes (H100, SHD-shaped workload, BENCHMARKS.md): Nsight Compute shows the forward
kernel issuing an instruction every 6.8 cycles per warp at 14 % occupancy, so at B = 32 (32
blocks on 132 multiprocessors) a trial is bound by the instructions per step of each block. Hence
no 64-bit integer division in the step loops (``_layer`` instead of ``// N``; ``while`` loops
instead of ``range`` with a run-time step, which divides to count its trips), the per-unit
constants in thread-local memory, the input spikes out of the time loops, and warp shuffles
instead of barriers in the backward pass. A trial is still a chain of dependent steps per sample
on one multiprocessor, so at small batches most of a large GPU is idle; spreading a sample over
a cluster of blocks is what BENCHMARKS.md names as the next step.
"""
import math
import time

import numba
import numpy as np
from numba import cuda
from numba.core import config

from eventprop.models import (alif_imv, alif_spike_jump, alif_threshold_decay, lif_adjoint_update,
                    lif_coefficients, lif_imv, lif_membrane_update, lif_spike_jump, normal_hash, synapse_decay,
                    tau_m_gradient, tau_s_gradient, uniform_hash)

# Threads per block on a GPU: the units of a sample are spread over at most MAX_THREADS threads
# (in warps); each thread owns at most MAX_UNITS_PER_THREAD units. Under the CUDA simulator every
# thread is a Python thread, so a few suffice (and exercise the strided loops).
MAX_THREADS = 640
MAX_UNITS_PER_THREAD = 32
SIM_THREADS = 4
# Set to an int to force the block size (tests, benchmarks); None chooses as above.
THREADS_PER_BLOCK = None
# Dynamic shared memory a block may use without opting in; larger networks keep the spike lists
# (forward) and the postsynaptic adjoints (backward) in global memory instead.
SHARED_BYTES = 48 * 1024
# Layouts of a packed buffer kept per name (Workspace.packed).
_PACK_LAYOUTS = 4
# Kernels under the simulator (no warp shuffles there) take another branch for a reduction.
_SIMULATOR = bool(config.ENABLE_CUDASIM)


def threads_per_block(n_units, max_threads=None):
    """Threads per block for samples of ``n_units`` units (hidden neurons + outputs): the units
    spread evenly over the fewest rounds of at most ``max_threads`` (default MAX_THREADS)."""
    if THREADS_PER_BLOCK is not None:
        t = int(THREADS_PER_BLOCK)
    elif config.ENABLE_CUDASIM:
        t = max(SIM_THREADS, -(-n_units // MAX_UNITS_PER_THREAD))
    else:
        rounds = -(-n_units // (max_threads or MAX_THREADS))
        t = 32 * (-(-n_units // (32 * rounds)))
    if not 1 <= t <= 1024:
        raise ValueError(f"threads per block must be in 1..1024, got {t}")
    if -(-n_units // t) > MAX_UNITS_PER_THREAD:
        raise ValueError(f"{n_units} units on {t} threads: more than MAX_UNITS_PER_THREAD = "
                         f"{MAX_UNITS_PER_THREAD} units per thread")
    return t


# (kernel, dtype) -> most threads per block the compiled kernel can be launched with
_THREAD_LIMITS = {}


def _block_size(kernel, dtype, n_units, args):
    """``threads_per_block(n_units)``, or fewer where the compiled kernel's registers per thread
    do not allow that many in one block (asked once per kernel and precision, compiling the
    kernel for the types of ``args`` if it is not compiled yet)."""
    T = threads_per_block(n_units)
    if config.ENABLE_CUDASIM or THREADS_PER_BLOCK is not None:
        return T
    key = (kernel, np.dtype(dtype).str)
    if key not in _THREAD_LIMITS:
        signature = tuple(numba.typeof(a) for a in args)
        _THREAD_LIMITS[key] = kernel.compile(signature).max_threads_per_block
    limit = _THREAD_LIMITS[key]
    return T if T <= limit else threads_per_block(n_units, max_threads=32 * (limit // 32))


def gradient_chunks(n_samples):
    """Number of gradient accumulator chunks K the backward pass wants: one on the GPU (samples
    add into it atomically)."""
    return 1


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------

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


@numba.njit(inline="always")
def _layer(g, N):
    """Layer of hidden unit g, that is g // N, by comparisons: networks have few layers, and a
    64-bit integer division is a long subroutine on a GPU."""
    l = 0
    while g >= (l + 1) * N:
        l += 1
    return l


@cuda.jit(cache=True)
def _input_current_kernel(in_ptr, in_ch, W_in, x_in):
    """x_in[b, n, j] = sum of W_in[c, j] over the input spikes c of sample b at step n, added
    in their order from zero (as ``engine_cpu`` sums them). The inputs do not depend on the
    network's state, so this runs for all steps at once, before the time loop; blocks (b, part)
    take the steps n = part, part + parts, ..., threads the neurons j."""
    b = cuda.blockIdx.x
    n = cuda.blockIdx.y
    parts = cuda.gridDim.y
    n_steps, N = x_in.shape[1], x_in.shape[2]
    zero = W_in.dtype.type(0)
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


@cuda.jit(cache=True)
def _input_gradient_kernel(in_ptr, in_ch, tau_s_h, lam_I_in, dW_in):
    """Gradient samples of the input synapses, after the backward time loop: for every input
    spike c of sample b at step m < n_steps - 1, dW_in[0, c, j] -= tau_s,j lambda_I,j(t_{m+1}),
    with lambda_I of layer 0 as the loop kept it (lam_I_in[b, m]); added atomically over the
    samples. Blocks and threads as ``_input_current_kernel``."""
    b = cuda.blockIdx.x
    m = cuda.blockIdx.y
    parts = cuda.gridDim.y
    n_steps, N = lam_I_in.shape[1], lam_I_in.shape[2]
    while m < n_steps - 1:
        k0 = in_ptr[b, m]
        k1 = in_ptr[b, m + 1]
        if k1 > k0:
            j = cuda.threadIdx.x
            while j < N:
                dw = -(tau_s_h[0, j] * lam_I_in[b, m, j])
                for k in range(k0, k1):
                    cuda.atomic.add(dW_in, (0, in_ch[k], j), dw)
                j += cuda.blockDim.x
        m += parts


@cuda.jit(cache=True)
def _forward_kernel(x_in, W_fwd, W_rec, W_out,
                    h_alpha, h_beta, h_c, o_alpha, o_beta, o_c,
                    theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
                    out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
                    sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts,
                    first_step, V_out_tr, I_out_tr, V_h_tr, I_h_tr, lists_global):
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
            l = _layer(u, N)
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
                l = _layer(u, N)
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
        for r in range(R):
            u = t + r * T
            if u < LN:
                l = _layer(u, N)
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
                    l0 = _layer(g0, N)
                    l1 = _layer(g1, N)
                    l2 = _layer(g2, N)
                    l3 = _layer(g3, N)
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
                    l0 = _layer(g0, N)
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


@cuda.jit(cache=True)
def _backward_kernel(lam_I_in, W_fwd, W_rec, W_out,
                     h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
                     tau_m_h, tau_s_h, tau_m_o, tau_s_o,
                     theta_jump, dt, n_steps, alif, rho_b, tau_b, b_incr,
                     sp_ptr, sp_idx, sp_imv, sp_b, first_step,
                     A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
                     train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
                     dW_fwd, dW_rec, dW_out, dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o,
                     lam_V, lam_I, lam_b, acc_m, acc_s, post_global):
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
            l = _layer(u, N)
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
            if u < LN:
                l = _layer(u, N)
                i = u - l * N
                if l == 0:                   # for the input gradients (_input_gradient_kernel)
                    lam_I_in[b, m, i] = li
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
            # shuffles), then lane 0 applies the jump. A neuron spikes at most once per step, so the jumps
            # of one step touch distinct adjoints.
            first = s0
            while first < s1:
                s = first + grp
                active = grp < P and s < s1
                rev = zero
                if active:
                    g = sp_idx[b, s]
                    if g < LN:
                        l = _layer(g, N)
                        i = g - l * N
                        if l < L - 1:
                            base = (l + 1) * N
                            j = lane
                            while j < N:
                                rev += W_fwd[l, i, j] * real(post[base + j])
                                cuda.atomic.add(dW_fwd, (0, l, i, j),
                                                -(tau_s_h[l + 1, j] * real(post[U + base + j])))
                                j += G
                        else:
                            c = lane
                            while c < C:
                                rev += W_out[i, c] * real(post[LN + c])
                                cuda.atomic.add(dW_out, (0, i, c),
                                                -(tau_s_o[c] * real(post[U + LN + c])))
                                c += G
                        if recurrent:
                            base = l * N
                            j = lane
                            while j < N:
                                rev += W_rec[l, i, j] * real(post[base + j])
                                cuda.atomic.add(dW_rec, (0, l, i, j),
                                                -(tau_s_h[l, j] * real(post[U + base + j])))
                                j += G
                if _SIMULATOR:        # no warp shuffles there: the same tree in shared memory
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
                        l = _layer(g, N)
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
                if _SIMULATOR:        # post[part] is used again in the next round
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
    # per-sample tau gradients into the shared accumulator
    for u in range(t, U, T):
        if u < LN:
            if train_tau:
                l = _layer(u, N)
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


def _input_launch(B, n_steps, N):
    """Launch configuration of the input kernels: blocks (sample, part of the steps), threads
    over the hidden neurons of layer 0."""
    if config.ENABLE_CUDASIM:
        return (B, 1), SIM_THREADS
    parts = max(1, min(n_steps, 8192 // max(B, 1)))
    return (B, parts), min(256, 32 * (-(-N // 32)))


def _forward_launch(in_ptr, in_ch, W_in, W_fwd, W_rec, W_out,
                    h_alpha, h_beta, h_c, o_alpha, o_beta, o_c,
                    theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
                    out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
                    sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts,
                    first_step, V_out_tr, I_out_tr, V_h_tr, I_h_tr, on_device=True,
                    alloc=None):
    """The kernels to run, in order, as (kernel, (blocks, threads, stream, dynamic shared
    memory bytes), arguments), and the outputs to copy back: the input currents of every step
    (``_input_current_kernel``), then the time loop (``_forward_kernel``).
    ``alloc(name, shape, dtype)`` gives the scratch arrays (default: new ones)."""
    if alloc is None:
        alloc = lambda name, shape, kind: _empty(shape, kind, on_device)   # noqa: E731
    B = in_ptr.shape[0]
    L, N = h_alpha.shape
    C = o_alpha.shape[0]
    U = L * N + C
    d_in = [_device(a, on_device)[0]
            for a in (in_ptr, in_ch, W_in, W_fwd, W_rec, W_out,
                      h_alpha, h_beta, h_c, o_alpha, o_beta, o_c, tau_m_h)]
    x_in = alloc("x_in", (B, int(n_steps), N), W_in.dtype)     # input current of every step
    blocks, threads = _input_launch(B, int(n_steps), N)
    inputs = (_input_current_kernel, (blocks, threads, 0, 0), d_in[:3] + [x_in])
    outputs = (sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts, first_step, V_out_tr,
               I_out_tr, V_h_tr, I_h_tr)
    d_out = [_device(a, on_device) for a in outputs]
    scalars = [float(theta), float(v_reset), float(dt), int(n_steps), bool(alif), float(rho_b),
               d_in[12], float(tau_b), float(b_incr), bool(out_spiking), float(p_drop),
               float(noise_amp), int(seed), int(n_max_spike), bool(keep_traces)]
    head = [x_in] + d_in[3:12] + scalars + [d for d, _ in d_out]
    T = (threads_per_block(U) if not on_device else
         _block_size(_forward_kernel, W_in.dtype, U, head + [np.empty((0, 0), np.int32)]))
    lists = (2 * L * N + U) * 4                   # bytes of the step's spike lists
    shared = lists + 16 <= SHARED_BYTES           # with the four list lengths
    args = head + [alloc("f_lists", (0, 0) if shared else (B, lists // 4), np.int32)]
    loop = (_forward_kernel, (B, T, 0, 16 + (lists if shared else 0)), args)
    return [inputs, loop], list(zip(d_out, outputs))


def _backward_launch(in_ptr, in_ch, W_fwd, W_rec, W_out,
                     h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
                     tau_m_h, tau_s_h, tau_m_o, tau_s_o,
                     theta_jump, dt, n_steps, alif, rho_b, tau_b, b_incr,
                     sp_ptr, sp_idx, sp_imv, sp_b, first_step,
                     A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
                     train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
                     dW_in, dW_fwd, dW_rec, dW_out, dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o,
                     on_device=True, alloc=None):
    """As ``_forward_launch``: the time loop (``_backward_kernel``), which keeps lambda_I of
    layer 0 at every step, then the input weight gradients (``_input_gradient_kernel``)."""
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
    lam_I_in = alloc("x_in", (B, int(n_steps), N), dtype)   # lambda_I of layer 0 per step
    head = ([lam_I_in] + d_a[2:] + scalars + d_b + [bool(train_tau), bool(train_tau_out)] + d_c
            + [d for d, _ in d_grads[1:]])
    T = (threads_per_block(U) if not on_device else
         _block_size(_backward_kernel, dtype, U, head + [np.empty((0, 0), dtype)] * 6))
    post = (2 * U + T) * dtype.itemsize          # bytes of the postsynaptic adjoints + partial sums
    shared = post <= SHARED_BYTES
    scratch = [alloc("b_lamV", (B, U), dtype),               # lambda_V
               alloc("b_lamI", (B, U), dtype),               # lambda_I
               alloc("b_lamb", (B, L * N), dtype),           # lambda_b (ALIF)
               alloc("b_accm", (B, U), dtype),               # per-sample dL/dtau_m
               alloc("b_accs", (B, U), dtype),               # per-sample dL/dtau_s
               alloc("b_post", (0, 0) if shared else (B, 2 * U + T), dtype)]
    loop = (_backward_kernel, (B, T, 0, post if shared else 0), head + scratch)
    blocks, threads = _input_launch(B, int(n_steps), N)
    inputs = (_input_gradient_kernel, (blocks, threads, 0, 0),
              d_a[:2] + [d_a[12], lam_I_in, d_grads[0][0]])
    return [loop, inputs], list(zip(d_grads, grads))


def _run(kernels):
    """Launch the kernels of ``_forward_launch`` / ``_backward_launch`` in order."""
    for kernel, launch, args in kernels:
        kernel[launch](*args)


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
    kernels, back = _forward_launch(
        in_ptr, in_ch, W_in, W_fwd, W_rec, W_out, h_alpha, h_beta, h_c, o_alpha, o_beta, o_c,
        theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
        out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
        sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts,
        first_step, V_out_tr, I_out_tr, V_h_tr, I_h_tr)
    _run(kernels)
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
    kernels, back = _backward_launch(
        in_ptr, in_ch, W_fwd, W_rec, W_out, h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
        tau_m_h, tau_s_h, tau_m_o, tau_s_o, theta_jump, dt, n_steps, alif, rho_b, tau_b, b_incr,
        sp_ptr, sp_idx, sp_imv, sp_b, first_step,
        A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
        train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
        dW_in, dW_fwd, dW_rec, dW_out, dtau_m_h, dtau_s_h, dtau_m_o, dtau_s_o)
    _run(kernels)
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


@cuda.jit(cache=True)
def _adam_kernel(theta, g, m, v, beta1, beta2, eps, eta, c1, c2):
    """One Adam step on flat arrays, in their precision and in the host ``utils.Adam``'s order:
    m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2, theta <- theta - eta (m/c1) / (sqrt(v/c2) + eps)
    with c1 = 1 - b1^t, c2 = 1 - b2^t."""
    real = theta.dtype.type
    b1, b2 = real(beta1), real(beta2)
    d1, d2 = real(1.0 - beta1), real(1.0 - beta2)
    eps_r, eta_r, c1_r, c2_r = real(eps), real(eta), real(c1), real(c2)
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(start, theta.shape[0], stride):
        gk = g[k]
        mk = m[k] * b1
        mk = mk + d1 * gk
        vk = v[k] * b2
        vk = vk + d2 * gk * gk
        m[k] = mk
        v[k] = vk
        theta[k] = theta[k] - eta_r * (mk / c1_r) / (math.sqrt(vk / c2_r) + eps_r)


@cuda.jit(cache=True)
def _time_constant_kernel(tau_m, tau_s, min_tau_m, min_tau_s, dt, alpha, beta, c, d):
    """After an optimiser step of trained time constants (flat arrays): the lower bounds
    tau_m >= min_tau_m, tau_s >= min_tau_s, then the per-step constants of
    ``models.lif_coefficients`` (float64, cast to the arrays' precision, as on the host)."""
    real = tau_m.dtype.type
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(start, tau_m.shape[0], stride):
        if tau_m[k] < real(min_tau_m):
            tau_m[k] = real(min_tau_m)
        if tau_s[k] < real(min_tau_s):
            tau_s[k] = real(min_tau_s)
        a, b_, c_, d_ = lif_coefficients(np.float64(tau_m[k]), np.float64(tau_s[k]), dt)
        alpha[k] = real(a)
        beta[k] = real(b_)
        c[k] = real(c_)
        d[k] = real(d_)


def _flat_launch(size):
    """(blocks, threads) of an elementwise kernel over ``size`` elements."""
    if config.ENABLE_CUDASIM:
        return 1, SIM_THREADS
    return max(1, min(1024, -(-size // 256))), 256


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
    * ``put_inputs(batches)``: the inputs of several trials in one copy (views per trial).
    * ``adam(...)``, ``time_constants(...)``: the optimiser step on device parameters.
    * ``fetch(d)``: a new host copy of a device array; ``param_to_host(name, host)``: a
      parameter (or moment) copied into a host array. Only what the host needs comes back.
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

    def has_param(self, name, key):
        """Whether ``param(name, ..., key)`` would find its upload with this key."""
        entry = self._params.get(name)
        return entry is not None and entry[1] is not None and _same_key(entry[1], key)

    def param_to_host(self, name, host):
        """Copy the device copy of parameter ``name`` into the host array ``host`` (in
        place), e.g. after optimiser steps on the device."""
        d = self._params[name][0]
        if d.size:
            if host.flags.c_contiguous:
                d.copy_to_host(host)
            else:
                host[...] = d.copy_to_host()
            self.stats["d2h_bytes"] += host.nbytes

    def put_inputs(self, batches):
        """Inputs of several trials, (in_ptr, in_ch) pairs in the layout of
        ``SpikeData.batch``, copied to the device in one copy each for all pointers and all
        channels. Returns the device (in_ptr, in_ch) of every trial: in_ptr is a view of that
        trial's rows, offset to index the common channel array."""
        n_rows = sum(p.shape[0] for p, _ in batches)
        n_spikes = sum(len(c) for _, c in batches)
        n_cols = batches[0][0].shape[1] if batches else 1
        ptr = np.empty((n_rows, n_cols), dtype=np.int64)
        ch = np.empty(max(n_spikes, 1), dtype=np.int32)
        rows, row, base = [], 0, 0
        for in_ptr, in_ch in batches:
            np.add(in_ptr, base, out=ptr[row:row + in_ptr.shape[0]])
            ch[base:base + len(in_ch)] = in_ch
            rows.append((row, row + in_ptr.shape[0]))
            row += in_ptr.shape[0]
            base += len(in_ch)
        d_ptr = self.put("inputs/in_ptr", ptr)
        d_ch = self.put("inputs/in_ch", ch)
        return [(d_ptr[r0:r1], d_ch) for r0, r1 in rows]

    def adam(self, theta, g, m, v, beta1, beta2, eps, eta, c1, c2):
        """``_adam_kernel`` on device arrays of one parameter (any shape, C-contiguous)."""
        if theta.size:
            blocks, threads = _flat_launch(theta.size)
            flat = lambda x: x.reshape(x.size)   # noqa: E731
            _adam_kernel[blocks, threads](flat(theta), flat(g), flat(m), flat(v), float(beta1),
                                          float(beta2), float(eps), float(eta), float(c1),
                                          float(c2))

    def time_constants(self, tau_m, tau_s, min_tau_m, min_tau_s, dt, alpha, beta, c, d):
        """``_time_constant_kernel`` on device arrays of one population."""
        if tau_m.size:
            blocks, threads = _flat_launch(tau_m.size)
            flat = lambda x: x.reshape(x.size)   # noqa: E731
            _time_constant_kernel[blocks, threads](
                flat(tau_m), flat(tau_s), float(min_tau_m), float(min_tau_s), float(dt),
                flat(alpha), flat(beta), flat(c), flat(d))

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
        kernels, _ = _forward_launch(
            in_ptr, in_ch, W_in, W_fwd, W_rec, W_out, h_alpha, h_beta, h_c, o_alpha, o_beta,
            o_c, theta, v_reset, dt, n_steps, alif, rho_b, tau_m_h, tau_b, b_incr,
            out_spiking, p_drop, noise_amp, seed, n_max_spike, keep_traces,
            *(out[k] for k in ("sp_ptr", "sp_idx", "sp_imv", "sp_b", "sp_need", "n_unstored",
                               "counts", "first_step", "V_out_tr", "I_out_tr", "V_h_tr",
                               "I_h_tr")),
            alloc=self.buffer)
        _run(kernels)
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
        kernels, _ = _backward_launch(
            in_ptr, in_ch, W_fwd, W_rec, W_out, h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
            tau_m_h, tau_s_h, tau_m_o, tau_s_o, theta_jump, dt, n_steps, alif, rho_b, tau_b,
            b_incr, sp_ptr, sp_idx, sp_imv, sp_b, first_step,
            A_out, force_g, force_c, jump_step, jump_amount, fs_term, reg_jump,
            train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
            *(grads[k] for k in ("dW_in", "dW_fwd", "dW_rec", "dW_out", "dtau_m_h", "dtau_s_h",
                                 "dtau_m_o", "dtau_s_o")),
            alloc=self.buffer)
        _run(kernels)
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
    """PTX of the kernels of the "forward" or "backward" pass (a list, in launch order) for the
    types of these (host) arguments, the argument list of ``forward_batch`` / ``backward_batch``.
    Needs NVVM (a CUDA toolkit), not a GPU: checks that the kernels type and compile for the
    device."""
    launch = {"forward": _forward_launch, "backward": _backward_launch}[kernel]
    kernels, _ = launch(*args, on_device=False)
    out = []
    for fn, _, kargs in kernels:
        signature = tuple(numba.typeof(a) for a in kargs)
        out.append(cuda.compile_ptx(fn.py_func, signature, cc=cc)[0])
    return out
