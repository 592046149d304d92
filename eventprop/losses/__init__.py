"""Loss functions of the output layer and hidden-layer regularisation.

Each loss turns the forward pass of a batch (output voltage trace, first output spike steps) into
predictions, per-sample losses, and the terms the backward pass needs:

* forcing of lambda_V of output c during backward step m (t_{m+1} -> t_m) for the integral
  losses: ``force_g[b, m] * force_c[b, c]`` (sum, sum_weigh_*), or ``A_out[b, m, c]``
  (avg_xentropy); empty arrays otherwise;
* ``jump_step[b, c]``, ``jump_amount[b, c]``: a jump of lambda_V at the time of step m that is not
  triggered by a spike (``max`` read-out, first-spike "phantom" spike), -1 for none;
* ``fs_term[b, c]``: dl/dt at the first spike of output c (divided by ImV in the backward pass).

The shapes (read-out weights, accumulator, penalties, forcing terms) are those of
``eventprop.losses.shapes``, which the GPU kernel (``eventprop.backends.cuda.loss``) calls too;
here they are evaluated on whole numpy arrays (``shapes.on_arrays``).

Gradient scale (kept from the reference so that published hyperparameters carry over):
relative to the exact gradient of the batch-mean loss the integral losses carry an extra 1/tau_m,
``max`` an extra 1/T, the first-spike losses none; every term divides by the nominal batch size.
"""
import numpy as np

from eventprop.losses import shapes
from eventprop.losses.shapes import (ACCUMULATOR_GAIN, FIRST_SPIKE_LOSSES, INTEGRAL_LOSSES,
                                     LI_LOSSES, LOSS_CODES, LOSS_TYPES, SUM_WEIGH_INPUT,
                                     on_arrays)

__all__ = ["LOSS_TYPES", "LI_LOSSES", "FIRST_SPIKE_LOSSES", "softmax", "readout_weight",
           "accumulator_trace", "OutputTerms", "output_terms", "regularisation_jumps"]

# the shapes on numpy arrays
_readout_weight = on_arrays(shapes.readout_weight)
_accumulator_update = on_arrays(shapes.accumulator_update)
_accumulator_input = on_arrays(shapes.accumulator_input)
_neg_log = on_arrays(shapes.neg_log)
_readout_forcing = on_arrays(shapes.readout_forcing)
_spike_time = on_arrays(shapes.spike_time)
_first_spike_penalty = on_arrays(shapes.first_spike_penalty)
_first_spike_penalty_derivative = on_arrays(shapes.first_spike_penalty_derivative)
_first_spike_gradient = on_arrays(shapes.first_spike_gradient)


def softmax(z, axis=-1):
    """Softmax over the class axis with max subtraction."""
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def readout_weight(loss_type, t, T):
    """Loss-shaping weight g(t) of the sum_weigh_* losses at the times t (1 for ``sum``):
    ``shapes.readout_weight``."""
    return np.full(np.shape(t), _readout_weight(LOSS_CODES[loss_type], t, T))


def accumulator_trace(in_counts, dt, tau_acc, gain=ACCUMULATOR_GAIN):
    """Accumulator of ``sum_weigh_input`` (explicit Euler), per sample and step:
    V_a <- V_a + (I_a - V_a) dt/tau_acc with I_a = gain x (input spikes of the previous step);
    returns a[b, n] = V_a at the start of step n."""
    B, n_steps = in_counts.shape
    a = np.zeros((B, n_steps))
    V_a = np.zeros(B)
    I_a = np.zeros(B)
    for n in range(n_steps):
        a[:, n] = V_a
        V_a = _accumulator_update(V_a, I_a, dt, tau_acc)
        I_a = _accumulator_input(in_counts[:, n], gain)
    return a


class OutputTerms:
    """Result of a loss evaluation on one batch."""

    def __init__(self, predictions, loss, correct, A_out, force_g, force_c, jump_step,
                 jump_amount, fs_term):
        self.predictions = predictions
        self.loss = loss
        self.correct = correct
        self.A_out = A_out
        self.force_g = force_g
        self.force_c = force_c
        self.jump_step = jump_step
        self.jump_amount = jump_amount
        self.fs_term = fs_term


def output_terms(loss_type, V_out_tr, first_step, labels, dt, T, tau_m_out, n_batch,
                 tau_0=None, tau_1=None, alpha=None, accumulator=None, dtype=np.float32,
                 need_backward=True):
    """Predictions, per-sample losses and backward terms of one batch.

    V_out_tr: (B, n_steps + 1, C) output voltage at the start of every step (and the end);
    first_step: (B, C) step of the first output spike, -1 if none; labels: (B,) ints;
    tau_m_out: (C,) output membrane time constants; n_batch: nominal batch size (the 1/B factor);
    accumulator: (B, n_steps) read-out weights of ``sum_weigh_input``.
    """
    if loss_type not in LOSS_CODES:
        raise ValueError(f"unknown LOSS_TYPE {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    loss_code = LOSS_CODES[loss_type]
    B, n_plus, C = V_out_tr.shape
    n_steps = n_plus - 1
    V = V_out_tr
    rows = np.arange(B)
    onehot = np.zeros((B, C))
    onehot[rows, labels] = 1.0
    no_jump = np.full((B, C), -1, dtype=np.int32)
    zeros = np.zeros((B, C), dtype=dtype)
    A_out = np.zeros((0, 0, 0), dtype=dtype)
    force_g = np.zeros((0, 0), dtype=dtype)
    force_c = zeros
    jump_step, jump_amount, fs_term = no_jump, zeros, zeros

    if loss_type in INTEGRAL_LOSSES:
        if loss_code == SUM_WEIGH_INPUT:
            g_read = accumulator                      # a(n) at the start of step n
            g_force = accumulator                     # a(m) for backward step m
        else:
            g = readout_weight(loss_type, np.arange(n_steps + 1) * dt, T)
            g_read = np.broadcast_to(g[:n_steps], (B, n_steps))
            g_force = np.broadcast_to(g[1:], (B, n_steps))  # upper end t_{m+1}
        Z = np.einsum("bn,bnc->bc", g_read, V[:, :n_steps], dtype=np.float64) * dt / T
        S = softmax(Z)
        predictions = np.argmax(Z, axis=1)
        loss = _neg_log(S[rows, labels])
        if need_backward:
            force_g = np.ascontiguousarray(g_force, dtype=dtype)
            force_c = _readout_forcing(onehot, S, tau_m_out[None, :], T, n_batch).astype(dtype)
    elif loss_type == "max":
        n_max = np.argmax(V[:, :n_steps], axis=1)     # first maximum over t_0 .. t_{N-1}
        Z = np.take_along_axis(V, n_max[:, None, :], axis=1)[:, 0].astype(np.float64)
        S = softmax(Z)
        predictions = np.argmax(Z, axis=1)
        loss = _neg_log(S[rows, labels])
        jump_step = n_max.astype(np.int32)
        jump_amount = _readout_forcing(onehot, S, tau_m_out[None, :], T, n_batch).astype(dtype)
    elif loss_type == "avg_xentropy":
        S_t = softmax(V[:, 1:].astype(np.float64))    # softmax of V(t_{m+1}), (B, n_steps, C)
        predictions = np.argmax(V[:, :n_steps].sum(axis=1), axis=1)
        loss = _neg_log(S_t[rows, :, labels]).sum(axis=1) * dt / T
        if need_backward:
            A_out = _readout_forcing(onehot[:, None, :], S_t, tau_m_out[None, None, :], T,
                                     n_batch).astype(dtype)
    else:                                             # first-spike losses
        spiked = first_step >= 0
        t = _spike_time(first_step, dt, T)
        S = softmax(-t / tau_0)
        loss = _neg_log(S[rows, labels]) + _first_spike_penalty(loss_code, t[rows, labels], T,
                                                                 tau_1, alpha)
        t_pred = np.where(spiked, t, np.inf)
        predictions = np.where(spiked.any(axis=1), np.argmin(t_pred, axis=1), -1)  # -1: none
        d_penalty = _first_spike_penalty_derivative(loss_code, t, T, tau_1, alpha)
        term = _first_spike_gradient(onehot > 0, S, d_penalty, tau_0, n_batch)
        fs_term = np.where(spiked, term, 0.0).astype(dtype)
        # a label neuron that never fired: a "phantom" spike near the end with penalty'(T)
        label_silent = ~spiked[rows, labels]
        jump_step = no_jump.copy()
        jump_amount = np.zeros((B, C), dtype=dtype)
        jump_step[rows[label_silent], labels[label_silent]] = n_steps - 2
        jump_amount[rows[label_silent], labels[label_silent]] = (
            _first_spike_penalty_derivative(loss_code, T, T, tau_1, alpha) / n_batch)
    correct = predictions == labels
    return OutputTerms(predictions, loss, correct, A_out, force_g, force_c, jump_step,
                       jump_amount, fs_term)


def regularisation_jumps(reg_type, counts, n_batch, lbd_upper, lbd_lower, nu_upper,
                         avg_snsum=False, rho_upper=None, glb_upper=None, dtype=np.float32):
    """Jump added to lambda_V at every stored spike of hidden neuron (l, i) of sample b.

    counts: (B, L, N) spike counts of the trial. "simple": -c (nu - nu*)/B with c = LBD_UPPER if
    nu > nu* else LBD_LOWER, nu the neuron's count (its batch mean, sum / N_BATCH, with AVG_SNSUM).
    "Thomas1" adds, when a sample's total count in a layer exceeds RHO_UPPER,
    -GLB_UPPER (total - RHO_UPPER) / (N B) to every neuron of that layer.
    """
    B, L, N = counts.shape
    if reg_type == "none":
        return np.zeros((B, L, N), dtype=dtype)
    nu = counts.astype(np.float64)
    if avg_snsum:
        nu = np.broadcast_to(nu.sum(axis=0, keepdims=True) / n_batch, nu.shape)
    c = np.where(nu > nu_upper, lbd_upper, lbd_lower)
    jump = -c * (nu - nu_upper) / n_batch
    if reg_type == "Thomas1":
        total = counts.sum(axis=2, keepdims=True).astype(np.float64)
        jump = jump - np.where(total > rho_upper, glb_upper * (total - rho_upper) / (N * n_batch),
                               0.0)
    return jump.astype(dtype)
