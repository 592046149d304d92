"""The CPU backend: trials through the numba kernels of ``kernels``, on host arrays."""
import os

import numba
import numpy as np

from eventprop import losses, projections
from eventprop.backends import base, threads
from eventprop.backends.cpu import kernels as cpu_kernels
from eventprop.backends.records import (DELAY_GRADIENTS, FIELD_OF, PARAMETER_OF, Gradients,
                                        Inputs, Parameters, SpikeStore, Traces)

# The backward pass sums the batch gradient over this many chunks of consecutive samples (fewer in
# a smaller batch), on any number of threads: the same additions in the same order on 1 thread or
# 64. More chunks give work to more threads (at most this many in the backward pass), and cost a
# gradient of every weight each, zeroed and summed every batch: on an MNIST-sized network (short
# trials, many weights) 16 chunks instead of 2 cost 70 % more time per batch on one thread, 8
# chunks 25 %; on an SHD-sized one less than 1 %.
GRADIENT_CHUNKS = 8

# A trial with little work runs on fewer threads than the engine's count: the threads sleep
# between parallel steps, and waking them costs up to a tenth of a millisecond, so each thread
# should get a millisecond of work or more, about this many neuron and synapse updates (an
# MNIST-sized batch of 32, 0.75 million, runs faster on one thread than on two).
UPDATES_PER_THREAD = 2_000_000


def host_parameters(net):
    """The ``records.Parameters`` of ``net``: its parameters and per-step neuron constants."""
    p = net.params
    h_alpha, h_beta, h_c, h_d = net.step_constants("hidden")[0]
    o_alpha, o_beta, o_c, o_d = net.step_constants("output")[0]
    return Parameters(p["w_input_hidden"], p["w_hidden_hidden_fwd"], p["w_hidden_hidden"],
                      p["w_hidden_output"], h_alpha, h_beta, h_c, h_d, o_alpha, o_beta, o_c, o_d,
                      p["tau_m_hidden"], p["tau_syn_hidden"], p["tau_m_output"],
                      p["tau_syn_output"])


SHORT = dict(zip(projections.PROJECTIONS, ("in", "fwd", "rec", "out")))   # Synapses fields
# the projection of each weight and delay gradient
PROJECTION_OF = {key: name for name in projections.PROJECTIONS
                 for key in ("dW_" + SHORT[name], "dd_" + SHORT[name])}


def sparse_weights(net, params):
    """``params`` with the weights of sparse projections by row of existing synapses
    (``projections.compact``), the layout of the CPU kernels."""
    return params._replace(**{
        FIELD_OF[projections.WEIGHT_OF[name]]:
        projections.compact(getattr(params, FIELD_OF[projections.WEIGHT_OF[name]]), conn)
        for name, conn in net.connectivity.items()})


def sparse_delays(net, synapses):
    """``synapses`` with the delay steps of sparse projections by row of existing synapses."""
    return synapses._replace(**{
        "D_" + SHORT[name]: projections.compact(getattr(synapses, "D_" + SHORT[name]), conn)
        for name, conn in net.connectivity.items() if getattr(synapses, "D_" + SHORT[name]).size})


def unsigned_indices(synapses):
    """``synapses`` with the postsynaptic indices of sparse rows as uint32 (the same memory):
    numba indexes with an unsigned integer without testing for a negative index, which makes a
    sparse row's synapses about 1.5 times faster to visit."""
    return synapses._replace(**{
        "idx_" + short: getattr(synapses, "idx_" + short).view(np.uint32)
        for short in SHORT.values()})


class CpuBackend(base.Backend):
    """Every array on the host; samples in parallel over the process's numba threads: the cores
    the process may use, or the count of ``threads.use_threads``, fewer for a trial with little
    work (``UPDATES_PER_THREAD``); exactly NUMBA_NUM_THREADS when the user set it.
    ``kernels``: the module with ``forward_batch`` and ``backward_batch`` (tests put a stand-in
    that also runs the GPU kernels). A backend belongs to one network and runs one trial at a
    time (it keeps the backward pass's gradient chunks between trials)."""

    name = "cpu"

    def __init__(self, kernels=cpu_kernels):
        self.kernels = kernels
        self._last_grads = None
        self._synapses = (None, None)      # (the network's Synapses, their sparse_delays)
        self._chunks = None                # the gradient chunks, reused from batch to batch
        if threads.engine_threads is None and "NUMBA_NUM_THREADS" not in os.environ:
            threads.use_threads()

    def run_trial(self, net, trial):
        dtype = net.dtype
        L, N, C, n_steps = net.n_layers, net.n_hidden, net.n_output, net.n_steps
        inputs = Inputs(*base.as_input_arrays(trial.in_ptr, trial.in_ch))
        B = inputs.in_ptr.shape[0]
        if threads.engine_threads is not None:    # numba counts per calling thread
            updates = (inputs.in_ch.shape[0] + B * n_steps) * (L * N + C)
            numba.set_num_threads(max(1, min(threads.engine_threads,
                                              updates // UPDATES_PER_THREAD)))
        params, synapses = self._kernel_records(net)
        model = base.model_constants(net)
        options = base.trial_options(net, trial)
        shape_tr = (B, n_steps, L, N) if options.keep_traces else (0, 0, 0, 0)
        out = {}

        def forward(cap):
            out["store"] = SpikeStore(
                sp_ptr=np.zeros((B, n_steps + 1), dtype=np.int64),
                sp_idx=np.zeros((B, cap), dtype=np.int32),
                sp_imv=np.zeros((B, cap), dtype=dtype),
                sp_b=np.zeros((B, cap if model.alif else 0), dtype=dtype),
                sp_need=np.zeros(B, dtype=np.int64), n_unstored=np.zeros(B, dtype=np.int64),
                counts=np.zeros((B, L * N + C), dtype=np.int32),
                first_step=np.zeros((B, C), dtype=np.int64))
            out["traces"] = Traces(V_out=np.zeros((B, n_steps + 1, C), dtype=dtype),
                                   I_out=np.zeros((B, n_steps, C), dtype=dtype),
                                   V_h=np.zeros(shape_tr, dtype=dtype),
                                   I_h=np.zeros(shape_tr, dtype=dtype))
            self.kernels.forward_batch(params, synapses, model, inputs, options,
                                       out["store"], out["traces"])
            return int(out["store"].sp_need.max()) if B else 0

        base.run_growing_store(net, forward)
        store, traces = out["store"], out["traces"]
        hidden_counts, output_counts = base.split_counts(store.counts, net)
        terms = self._loss_terms(net, inputs.in_ptr, traces.V_out, store.first_step,
                                 np.asarray(trial.labels, dtype=np.int64), trial.learn)
        grads = work = None
        if trial.learn:
            loss_terms = base.backward_terms(terms, base.regularisation_jumps(net, hidden_counts))
            work = self.take_backward(trial, base.PendingBackward(inputs, options, store,
                                                                  loss_terms, traces, None))
            if work is not None:
                grads = self._backward(net, params, synapses, model, work.inputs, work.options,
                                       work.store, work.terms, work.traces)
                self._last_grads = grads
        spikes = (store.sp_ptr, store.sp_idx, store.sp_imv) if trial.keep_spikes else None
        return base.TrialResult(terms, (hidden_counts, output_counts), store.n_unstored, grads,
                                store.first_step, traces, spikes, has_gradient=work is not None)

    def _kernel_records(self, net):
        """The ``records.Parameters`` and ``records.Synapses`` of ``net`` in the kernels'
        layout (``sparse_weights``, ``sparse_delays``, ``unsigned_indices``; the synapses
        converted again only when they change)."""
        params, synapses = host_parameters(net), net.synapses()
        if self._synapses[0] is not synapses:
            self._synapses = (synapses, unsigned_indices(sparse_delays(net, synapses)))
        if not net.connectivity:
            return params, self._synapses[1]
        return sparse_weights(net, params), self._synapses[1]

    @staticmethod
    def _existing_synapses(net):
        """{parameter: flat indices of the existing synapses} of the sparse projections' weights
        and delays (Adam steps those only)."""
        return {key: conn.dense_index for name, conn in net.connectivity.items()
                for key in (projections.WEIGHT_OF[name], projections.DELAY_OF[name])}

    @staticmethod
    def _loss_terms(net, in_ptr, V_out, first_step, labels, learn):
        """``losses.output_terms`` of the trial, on the host."""
        accumulator = None
        if net.loss_type == "sum_weigh_input":
            accumulator = losses.accumulator_trace(np.diff(in_ptr, axis=1), net.dt,
                                                   net.tau_accumulator)
        return losses.output_terms(
            net.loss_type, V_out, first_step, labels, net.dt, net.trial_ms,
            net.params["tau_m_output"].astype(np.float64), net.n_batch, tau_0=net.tau_0,
            tau_1=net.tau_1, alpha=net.alpha, accumulator=accumulator, dtype=net.dtype,
            need_backward=learn)

    def _backward(self, net, params, synapses, model, inputs, options, store, terms, traces):
        """The batch gradients by parameter name: the sum of the gradients of
        ``GRADIENT_CHUNKS`` chunks of samples, in chunk order (those of sparse projections
        back in the parameters' dense shape, zero where there is no synapse). The chunks' arrays
        stay with the backend for the next batch; what it returns are new arrays."""
        B = inputs.in_ptr.shape[0]
        K = max(1, min(B, GRADIENT_CHUNKS))
        dtype = params.W_out.dtype
        shapes = tuple((K,) + shape for shape in base.gradient_shapes(net, params))
        grads = self._chunks
        if grads is None or tuple(g.shape for g in grads) != shapes or grads[0].dtype != dtype:
            grads = self._chunks = Gradients(*(np.empty(shape, dtype=dtype)
                                               for shape in shapes))
        self.kernels.backward_batch(params, synapses, model, inputs, options, store, terms,
                                    traces, grads)
        sums = {}
        for key, g in zip(Gradients._fields, grads):
            if key in DELAY_GRADIENTS and not g.size:
                continue
            g = g.sum(axis=0)
            conn = net.connectivity.get(PROJECTION_OF.get(key))
            sums[PARAMETER_OF[key]] = g if conn is None else projections.expand(g, conn)
        return sums

    def adam_step(self, net, adam, eta, names, grads=None):
        adam.step(net.params, self._last_grads if grads is None else grads, eta, names,
                  existing=self._existing_synapses(net))
        if any(k.startswith("tau") for k in names):
            net.clip_taus()
        if any(k.startswith("d_") for k in names):
            net.clip_delays()
        net.params_changed()
