"""The boundary between the network (and the training loop) and the machine that runs the trials.

A ``Backend`` runs a trial of a network (forward pass, loss, backward pass), takes the Adam step
of its parameters, and moves inputs, parameters and optimiser state between the host and where
the backend keeps them. The network describes the trial (a ``Trial``) and owns the parameters;
everything about where and how the kernels run is the backend's. Each network has its own backend
object, which may keep state for it (device memory).
"""
import math
from collections import namedtuple

import numpy as np

from eventprop import losses, projections
from eventprop.backends.records import LossTerms, Model, Options

Trial = namedtuple("Trial", [
    "in_ptr", "in_ch", "labels", "learn",     # input spikes (SpikeData.batch), labels, backward?
    "p_drop_hidden", "noise", "seed",         # hidden dropout, membrane noise, their seed
    "keep_spikes", "keep_hidden_traces", "keep_output_traces",   # what comes back
    "device_inputs",                          # the inputs already uploaded (upload_inputs), or None
    "fetch_grads",                            # copy the gradients to the host
    "pipeline"])                              # learn: backward of the previous trial instead
Trial.__doc__ = "One mini-batch to run, as ``EventPropNetwork.run_batch`` describes it."


class TrialResult:
    """What one mini-batch produced: predictions, losses, spike counts, and (if learning) grads."""

    def __init__(self, terms, counts, n_unstored, grads, first_step, traces, spikes,
                 has_gradient=False):
        self.predictions = terms.predictions
        self.loss = terms.loss
        self.correct = terms.correct
        self.hidden_counts = counts[0]   # (B, L, N)
        self.output_counts = counts[1]   # (B, C)
        self.n_unstored = n_unstored     # (B,) spikes beyond N_MAX_SPIKE, left out of the backward
        self.grads = grads
        self.first_step = first_step
        # state at the start of every step: V_out (B, n_steps + 1, C), I_out (B, n_steps, C)
        # (on the GPU (B, 0, C) unless asked for), V_hidden / I_hidden (B, n_steps, L, N) or
        # empty when not kept (on the GPU: kept only when asked for)
        self.V_out, self.I_out, self.V_hidden, self.I_hidden = traces
        self.spikes = spikes             # (sp_ptr, sp_idx, sp_imv) of the stored spikes
        # a backward pass ran: a gradient (this trial's, or with Trial.pipeline the previous
        # learning trial's) is ready for adam_step
        self.has_gradient = has_gradient


PendingBackward = namedtuple("PendingBackward", [
    "inputs", "options", "store", "terms", "traces",    # records of a trial's forward pass
    "where"])                                 # where the backend keeps them (GPU buffer set)
PendingBackward.__doc__ = ("What the backward pass of a learning trial needs from its forward "
                           "pass: kept for one trial with ``Trial.pipeline``.")


class Backend:
    """What the network and the training loop ask of a backend.

    Pipelined learning (``Trial.pipeline``, the original's schedule): a learning trial k runs
    its forward pass, then the backward pass of learning trial k - 1 (kept since then, a
    ``PendingBackward``) with the current parameters, so that the Adam step after trial k
    applies the gradient of trial k - 1, whose forward pass used the parameters before the last
    step; the first trial gives no gradient. ``end_pipeline`` forgets the kept trial (the end
    of the training part of an epoch), as does a learning trial without ``pipeline``."""

    name = None
    _pending = None

    def run_trial(self, net, trial):
        """Forward pass, loss and, if ``trial.learn``, backward pass of ``net`` on one
        ``Trial``; returns a ``TrialResult``."""
        raise NotImplementedError

    def end_pipeline(self, net):
        """Forget the learning trial kept for its backward pass (``Trial.pipeline``)."""
        self._pending = None

    def take_backward(self, trial, work):
        """The ``PendingBackward`` whose backward pass a learning trial runs now: its own
        (``work``), or with ``trial.pipeline`` the one kept from the previous learning trial
        (None at the first), keeping ``work`` in its place."""
        if not trial.pipeline:
            self._pending = None
            return work
        work, self._pending = self._pending, work
        return work

    def adam_step(self, net, adam, eta, names, grads=None):
        """One step of the ``optim.Adam`` ``adam`` with rate ``eta`` for the parameters
        ``names`` of ``net``, with ``grads`` or (None) the gradients of the last learning trial;
        then the lower bounds of trained time constants."""
        raise NotImplementedError

    def trials_per_upload(self, n_batch):
        """How many trials of ``n_batch`` samples the training loop packs and uploads at once."""
        return 1

    def upload_inputs(self, batches):
        """The inputs ((in_ptr, in_ch) pairs) of several trials copied to where the kernels run;
        each trial's ``device_inputs`` for ``Trial``."""
        return [None] * len(batches)

    def params_changed(self, net):
        """``net``'s parameters were changed in place on the host."""

    def params_to_host(self, params):
        """Copy the values that optimiser steps changed where the backend keeps them into the
        host arrays ``params`` (in place)."""

    def sync_to_host(self, net, adam):
        """Copy the parameters of ``net`` and the state of the optimiser ``adam`` back to the
        host, e.g. at the end of an epoch, before a checkpoint."""


def model_constants(net):
    """The ``records.Model`` of ``net``."""
    return Model(theta=float(net.v_thresh), v_reset=float(net.v_reset), dt=float(net.dt),
                 n_steps=int(net.n_steps), alif=net.hidden_type == "ALIF",
                 rho_b=math.exp(-net.dt / net.tau_b), tau_b=float(net.tau_b),
                 b_incr=float(net.b_incr), out_spiking=bool(net.output_spiking),
                 n_max_spike=int(net.n_max_spike))


def trial_options(net, trial):
    """The ``records.Options`` of one trial; the hidden traces are kept for recordings and for
    the gradients of trained hidden time constants."""
    return Options(p_drop=float(trial.p_drop_hidden), noise_amp=float(trial.noise),
                   seed=int(trial.seed),
                   keep_traces=bool((trial.learn and net.train_tau) or trial.keep_hidden_traces),
                   train_tau=bool(net.train_tau), train_tau_out=bool(net.train_tau_output))


def run_growing_store(net, forward):
    """Run ``forward(capacity)`` (a forward pass with room for ``capacity`` stored spikes per
    sample; returns the most room a sample needed) until the spike store was large enough. The
    store grows 25 % beyond the need and keeps its size for the next trials
    (``net.spike_capacity``). The random numbers are counter-based, so a re-run is identical."""
    while True:
        capacity = net.spike_capacity
        need = forward(capacity)
        if need <= capacity:
            return
        net.spike_capacity = int(need * 1.25) + 16


def regularisation_jumps(net, hidden_counts):
    """The jumps of lambda_V at hidden spikes from ``net``'s spike-count regularisation."""
    r = net.reg
    return losses.regularisation_jumps(r["reg_type"], hidden_counts, net.n_batch,
                                       r["lbd_upper"], r["lbd_lower"], r["nu_upper"],
                                       r["avg_snsum"], r["rho_upper"], r["glb_upper"],
                                       dtype=net.dtype)


def backward_terms(terms, reg_jump):
    """The ``records.LossTerms`` of the backward pass: the loss's terms (``losses.OutputTerms``,
    host or device arrays) and the regularisation jumps."""
    return LossTerms(terms.A_out, terms.force_g, terms.force_c, terms.jump_step,
                     terms.jump_amount, terms.fs_term, reg_jump)


def gradient_shapes(net, params):
    """The shapes of the ``records.Gradients`` fields of ``net`` (``params``: its
    ``records.Parameters``): the parameters', and (0, ...) for delays that are not learned."""
    weights = (params.W_in, params.W_fwd, params.W_rec, params.W_out)
    delays = tuple(w.shape if net.train_delays and name in net.delays else (0,) * w.ndim
                   for name, w in zip(projections.PROJECTIONS, weights))
    return tuple(a.shape for a in weights + (params.tau_m_h, params.tau_s_h, params.tau_m_o,
                                             params.tau_s_o)) + delays


def split_counts(counts, net):
    """(hidden (B, L, N), output (B, C)) spike counts from the counts of the spike store."""
    LN = net.n_layers * net.n_hidden
    return counts[:, :LN].reshape(counts.shape[0], net.n_layers, net.n_hidden), counts[:, LN:]


def as_input_arrays(in_ptr, in_ch):
    """in_ptr as int64 and in_ch as int32, C-contiguous (the kernels' types)."""
    return (np.ascontiguousarray(in_ptr, dtype=np.int64),
            np.ascontiguousarray(in_ch, dtype=np.int32))
