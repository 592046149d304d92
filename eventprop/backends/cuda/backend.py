"""The CUDA backend: trials, loss and Adam steps on the GPU, through a ``Workspace`` that keeps
buffers, parameters and moments on the device; and the choice of the GPU (``select_gpu``)."""
import warnings

import numpy as np

from eventprop import projections
from eventprop.backends import base
from eventprop.backends.cuda import loss as losses_cuda
from eventprop.backends.cuda import optimiser
from eventprop.backends.cuda.workspace import Workspace
from eventprop.backends.records import (DELAY_GRADIENTS, FIELD_OF, PARAMETER_OF, Gradients,
                                        Inputs, Parameters, Synapses)

# samples whose inputs are packed and copied to the GPU together, in whole trials (64 trials of
# 32)
INPUT_BLOCK_SAMPLES = 2048
WEIGHTS = ("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden", "w_hidden_output")
TIME_CONSTANTS = ("tau_m_hidden", "tau_syn_hidden", "tau_m_output", "tau_syn_output")
STEP_CONSTANTS = ("alpha", "beta", "c", "d")
GRADIENT_OF = {name: key for key, name in PARAMETER_OF.items()}
SHORT = dict(zip(projections.PROJECTIONS, ("in", "fwd", "rec", "out")))   # Synapses fields

_SELECTED_GPU = None    # (device id, request) once select_gpu has chosen in this process


def select_gpu(cuda_visible_devices=True, manual_gpu=None, cuda=None):
    """Choose this process's GPU as the original's p["CUDA_VISIBLE_DEVICES"] intends (GeNN's
    device selection):

    * True: the environment variable CUDA_VISIBLE_DEVICES decides. Nothing is selected here;
      numba uses the first visible device (its device 0). ``manual_gpu`` is not used.
    * False, ``manual_gpu`` = k: device k (numba's numbering: the k-th visible device), as
      ``SHD_model(p, manual_GPU=k)``.
    * False, no ``manual_gpu``: the visible device with the most free memory. Each device is
      opened once to read its free memory, and the contexts are closed again, so this must run
      before anything else in the process uses the GPU (the first network does it).

    One process uses one GPU: the first call decides, and a later call that asks for another
    device gets the first one with a warning. Returns the device id chosen here, or None when
    the choice is left to numba (True), there is no GPU, or numba's CUDA simulator runs.
    ``cuda``: the ``numba.cuda`` module (tests pass a stand-in)."""
    global _SELECTED_GPU
    if cuda is None:
        from numba import cuda
        from numba.core import config
        if config.ENABLE_CUDASIM:
            return None
    request = (bool(cuda_visible_devices), None if manual_gpu is None else int(manual_gpu))
    if _SELECTED_GPU is not None:
        if _SELECTED_GPU[1] != request:
            warnings.warn(f"GPU already chosen in this process (device {_SELECTED_GPU[0]}, "
                          f"by CUDA_VISIBLE_DEVICES={_SELECTED_GPU[1][0]}, manual_GPU="
                          f"{_SELECTED_GPU[1][1]}); ignoring CUDA_VISIBLE_DEVICES={request[0]}, "
                          f"manual_GPU={request[1]}", RuntimeWarning, stacklevel=2)
        return _SELECTED_GPU[0]
    if not cuda.is_available():
        return None
    if request[0]:
        device = None
    else:
        n = len(cuda.gpus)
        if request[1] is not None:
            device = request[1]
            if not 0 <= device < n:
                raise ValueError(f"manual_GPU={device}, but {n} GPU(s) are visible")
        else:
            free = []
            for k in range(n):
                cuda.select_device(k)
                free.append(cuda.current_context().get_memory_info()[0])
                cuda.close()
            device = max(range(n), key=lambda k: (free[k], -k))
        cuda.select_device(device)
    _SELECTED_GPU = (device, request)
    return device


class CudaBackend(base.Backend):
    """Trials on the GPU. Weights, inputs, spike store, traces, loss terms and gradients are
    device arrays of the network's ``workspace``, reused from trial to trial. Copied to the
    device each trial: the labels, the regularisation jumps, parameters that the host changed,
    and the inputs unless ``upload_inputs`` brought them. Copied back: the per-sample counters
    (spike store size, overflow, first output spikes), the spike counts, and the loss and
    prediction of every sample; the rest only when asked for. Adam steps run on the device too;
    ``sync_to_host`` copies the parameters and moments back.

    Projections (``eventprop.projections``): delays are parameters like the weights (uploaded
    with them); their integer steps D live on the device and are computed there, after every
    upload of the delays and after every Adam step of them (which clips the delays to
    [0, max_delay] first); the synapse lists of sparse projections are uploaded once."""

    name = "cuda"

    def __init__(self, cuda_visible_devices=True, manual_gpu=None):
        select_gpu(cuda_visible_devices, manual_gpu)
        self.workspace = Workspace()
        self._params_version = 0    # counts params_changed() calls: the weights' upload key
        self._device_newer = set()  # parameters that Adam steps changed on the device
        self._grads = None          # device Gradients of the last learning trial
        self._trial_set = 0         # the buffer set of the last pipelined trial

    # --- parameters ---------------------------------------------------------------------------
    def params_changed(self, net):
        self.params_to_host(net.host_params)   # an upload must never overwrite newer values
        self._params_version += 1

    def params_to_host(self, params):
        for name in self._device_newer:
            self.workspace.param_to_host(name, params[name])
        self._device_newer = set()

    def _device_parameters(self, net):
        """The ``records.Parameters`` of ``net`` on the device. Weights (and delays) are uploaded
        every trial, or with ``net.track_param_changes`` only after ``params_changed``; time
        constants and their per-step constants when their values changed."""
        ws, p = self.workspace, net.host_params   # the device copies may be newer
        fields = {}
        for name in WEIGHTS:
            key = (self._params_version, p[name]) if net.track_param_changes else None
            fields[FIELD_OF[name]] = ws.param(name, p[name], key)
        for name in TIME_CONSTANTS:
            key = (np.dtype(p[name].dtype).str, p[name].tobytes())
            fields[FIELD_OF[name]] = ws.param(name, p[name], key)
        for population, prefix in (("hidden", "h_"), ("output", "o_")):
            values, key = net.step_constants(population)
            for k, value in zip(STEP_CONSTANTS, values):
                fields[prefix + k] = ws.param(prefix + k, value, key)
        return Parameters(**fields)

    def _delay_steps(self, net, name):
        """The device buffer of the delay steps (int32) of projection ``name``."""
        shape = net.host_params[projections.WEIGHT_OF[name]].shape
        return self.workspace.buffer(f"delay_steps/{name}", shape, np.int32, shared=True)

    def _device_synapses(self, net):
        """The ``records.Synapses`` of ``net`` on the device: the delays of delayed projections
        uploaded as the weights are (and their steps computed on the device after an upload),
        the synapse lists of sparse projections once (keyed by the lists' identity), empty arrays
        of the weight's rank elsewhere."""
        ws, p = self.workspace, net.host_params
        fields = {}
        for name in projections.PROJECTIONS:
            short = SHORT[name]
            rank = p[projections.WEIGHT_OF[name]].ndim
            if name in net.delays:
                delay = projections.DELAY_OF[name]
                key = (self._params_version, p[delay]) if net.track_param_changes else None
                uploaded = key is None or not ws.has_param(delay, key)
                d = ws.param(delay, p[delay], key)
                D = self._delay_steps(net, name)
                if uploaded:
                    optimiser.delays(d, D, net.max_delay, net.dt, clip=False)
                fields["D_" + short] = D
            else:
                fields["D_" + short] = ws.param(f"no_delays/{name}",
                                                np.zeros((0,) * rank, np.int32), ("none", rank))
            conn = net.connectivity.get(name)
            if conn is None:
                conn = projections.dense(p[projections.WEIGHT_OF[name]].shape)
                key = ("dense", rank)
            else:
                key = conn.post_index
            fields["idx_" + short] = ws.param(f"synapse_index/{name}", conn.post_index, key)
            fields["len_" + short] = ws.param(f"synapse_count/{name}", conn.row_length, key)
        fields["n_slots"] = (projections.ring_slots(net.max_delay, net.dt) if net.delays else 1)
        return Synapses(**fields)

    # --- inputs -------------------------------------------------------------------------------
    def trials_per_upload(self, n_batch):
        return max(1, INPUT_BLOCK_SAMPLES // n_batch)

    def upload_inputs(self, batches):
        with self.workspace.phase("upload"):
            return [Inputs(*d) for d in self.workspace.put_inputs(
                [base.as_input_arrays(p, c) for p, c in batches])]

    # --- trials -------------------------------------------------------------------------------
    def run_trial(self, net, trial):
        """``base.Backend.run_trial``; a pipelined trial keeps its buffers in the set of its
        own (``Workspace.trial_set``), the other one than the previous trial's."""
        ws = self.workspace
        if trial.pipeline:
            ws.alternate_inputs = True
            self._trial_set = 1 - self._trial_set
            ws.trial_set = f"pipeline/{self._trial_set}/"
        try:
            return self._run_trial(net, trial)
        finally:
            ws.trial_set = ""

    def _run_trial(self, net, trial):
        ws = self.workspace
        dtype, C = net.dtype, net.n_output
        B = trial.in_ptr.shape[0]
        labels = np.asarray(trial.labels, dtype=np.int64)
        model = base.model_constants(net)
        options = base.trial_options(net, trial)
        with ws.phase("upload"):
            params = self._device_parameters(net)
            synapses = self._device_synapses(net)
            inputs = trial.device_inputs
            if inputs is None:
                in_ptr, in_ch = base.as_input_arrays(trial.in_ptr, trial.in_ch)
                inputs = Inputs(ws.put("in_ptr", in_ptr), ws.put("in_ch", in_ch))
            d_labels = ws.put("labels", labels)
        out = {}

        def forward(cap):
            with ws.phase("forward"):
                out["store"], out["traces"] = ws.forward(params, synapses, model, inputs,
                                                         options, cap,
                                                         clear_store=trial.keep_spikes)
            with ws.phase("download"):
                out["counters"] = ws.fetch_parts("counters")   # sp_need, n_unstored, first_step
            return int(out["counters"]["sp_need"].max()) if B else 0

        base.run_growing_store(net, forward)
        store, traces, counters = out["store"], out["traces"], out["counters"]
        with ws.phase("loss"):
            terms = self._loss_terms(net, store, traces, params, inputs, d_labels, labels,
                                     trial.learn)
        with ws.phase("download"):
            counts = ws.fetch(store.counts)
            empty = np.zeros((B, 0, C), dtype=dtype)
            V_out = ws.fetch(traces.V_out) if trial.keep_output_traces else empty
            I_out = ws.fetch(traces.I_out) if trial.keep_output_traces else empty
            if trial.keep_hidden_traces:
                V_h, I_h = ws.fetch(traces.V_h), ws.fetch(traces.I_h)
            else:
                V_h = I_h = np.zeros((0, 0, 0, 0), dtype=dtype)
            spikes = None
            if trial.keep_spikes:
                spikes = (ws.fetch(store.sp_ptr), ws.fetch(store.sp_idx), ws.fetch(store.sp_imv))
        hidden_counts, output_counts = base.split_counts(counts, net)
        grads = work = None
        if trial.learn:
            with ws.phase("loss"):
                reg_jump = base.regularisation_jumps(net, hidden_counts)
            with ws.phase("upload"):
                d_reg_jump = ws.put("reg_jump", reg_jump)
            loss_terms = base.backward_terms(terms, d_reg_jump)
            work = self.take_backward(trial, base.PendingBackward(inputs, options, store,
                                                                  loss_terms, traces,
                                                                  ws.trial_set))
        if work is not None:
            ws.trial_set = work.where
            with ws.phase("backward"):
                self._grads = ws.backward(params, synapses, model, work.inputs, work.options,
                                          work.store, work.terms, work.traces,
                                          base.gradient_shapes(net, params))
            if trial.fetch_grads:
                with ws.phase("download"):
                    host = ws.fetch_parts("grads")       # all gradients in one copy
                    grads = {PARAMETER_OF[key]: host[key][0] for key in Gradients._fields
                             if key not in DELAY_GRADIENTS or host[key].size}
        return base.TrialResult(terms, (hidden_counts, output_counts), counters["n_unstored"],
                                grads, counters["first_step"], (V_out, I_out, V_h, I_h), spikes,
                                has_gradient=work is not None)

    def _loss_terms(self, net, store, traces, params, inputs, d_labels, labels, learn):
        """The loss on the device (``loss``): a ``losses.OutputTerms`` whose backward terms are
        device arrays and whose predictions, losses and correctness (one small copy) are on the
        host."""
        ws = self.workspace
        terms, summary = losses_cuda.output_terms_device(
            ws.buffer, net.loss_type, traces.V_out, store.first_step, d_labels, net.dt,
            net.trial_ms, params.tau_m_o, net.n_batch, tau_0=net.tau_0, tau_1=net.tau_1,
            alpha=net.alpha, in_ptr=inputs.in_ptr, tau_accumulator=net.tau_accumulator,
            need_backward=learn)
        terms.predictions, terms.loss, terms.correct = losses_cuda.finish(ws.fetch(summary),
                                                                          labels)
        return terms

    # --- optimiser ----------------------------------------------------------------------------
    def adam_step(self, net, adam, eta, names, grads=None):
        """On the device, with the gradients of the last learning trial (``grads`` is not used),
        the moments and the parameters that stay there; the new time constants' per-step
        constants are computed there too, and after a step of delays all delays are clipped to
        [0, max_delay] (as ``EventPropNetwork.clip_delays``) and their steps recomputed. The
        moments of ``adam`` are uploaded when they are not the arrays of the last upload (a new
        run, a loaded checkpoint)."""
        if self._grads is None:
            raise RuntimeError("adam_step on the GPU needs a learning trial first")
        ws = self.workspace
        net.track_param_changes = True       # the device copies are the current values
        d = self._device_parameters(net)
        self._device_synapses(net)           # the delays on the device (uploaded if changed)
        g = dict(zip(Gradients._fields, self._grads))
        step = adam.begin_step(eta)
        for name in names:
            m, v = adam.moments(name, net.host_params[name])
            target = (getattr(d, FIELD_OF[name]) if name in FIELD_OF
                      else ws.device_param(name))                    # delays
            optimiser.adam(target, g[GRADIENT_OF[name]][0],
                           ws.param(f"adam_m/{name}", m, m), ws.param(f"adam_v/{name}", v, v),
                           adam.for_parameter(step, name))
            self._device_newer.add(name)
        for tau_m, tau_s, prefix in (("tau_m_hidden", "tau_syn_hidden", "h_"),
                                     ("tau_m_output", "tau_syn_output", "o_")):
            if tau_m in names or tau_s in names:
                optimiser.time_constants(getattr(d, FIELD_OF[tau_m]), getattr(d, FIELD_OF[tau_s]),
                                         net.min_tau_m, net.min_tau_syn, net.dt,
                                         *(getattr(d, prefix + k) for k in STEP_CONSTANTS))
                self._device_newer.update((tau_m, tau_s))
        if any(name.startswith("d_") for name in names):
            for name in net.delays:
                delay = projections.DELAY_OF[name]
                optimiser.delays(ws.device_param(delay),
                                 self._delay_steps(net, name), net.max_delay, net.dt, clip=True)
                self._device_newer.add(delay)

    def sync_to_host(self, net, adam):
        """The parameters, and the moments of ``adam`` that Adam steps changed on the device
        (given to ``adam.set_moments``)."""
        self.params_to_host(net.host_params)
        ws = self.workspace
        for name, m in adam.m.items():
            if ws.has_param(f"adam_m/{name}", m):
                adam.set_moments(name, ws.fetch_param(f"adam_m/{name}"),
                                 ws.fetch_param(f"adam_v/{name}"))
