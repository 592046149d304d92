"""A feed-forward (optionally recurrent, multi-layer) spiking network trained with EventProp.

``EventPropNetwork`` owns the parameters (weights and time constants), packs them for the engine,
runs the forward pass of a mini-batch, evaluates the loss, runs the backward pass and returns the
batch-summed gradients, and takes the Adam step (``adam_step``: on the host, or on the GPU where
the parameters, moments and gradients stay). It knows nothing about data sets or epochs; the
simulators do that.

Parameter names (keys of ``params`` and ``grads``), matching the reference's file names:
  w_input_hidden (n_in, N), w_hidden_hidden_fwd (L-1, N, N), w_hidden_hidden (L, N, N) if
  recurrent, w_hidden_output (N, C), tau_m_hidden / tau_syn_hidden (L, N), tau_m_output /
  tau_syn_output (C,). Weight matrices are pre-major: W[i_pre, j_post].
"""
import math
import warnings

import numba
import numpy as np

from eventprop.backends import cpu as engine_cpu
from eventprop import losses
from eventprop.models import lif_coefficients

HIDDEN_TYPES = ("LIF", "hetLIF", "ALIF")
OUTPUT_TYPES = ("LI", "hetLI")
BACKENDS = ("cpu", "cuda", "auto")


def select_engine(backend, cuda_visible_devices=True, manual_gpu=None):
    """The engine module of a BACKEND: "cpu" (``engine_cpu``), "cuda" (``engine_cuda``: an NVIDIA
    GPU, or numba's CUDA simulator when NUMBA_ENABLE_CUDASIM=1), "auto" ("cuda" when a GPU is
    usable, else "cpu"; never the simulator). On a real GPU the device is chosen by
    ``select_gpu(cuda_visible_devices, manual_gpu)``."""
    if backend not in BACKENDS:
        raise ValueError(f"BACKEND {backend!r} not in {BACKENDS}")
    if backend == "cpu":
        return engine_cpu
    from numba import cuda
    from numba.core import config
    if backend == "auto" and (config.ENABLE_CUDASIM or not cuda.is_available()):
        return engine_cpu
    if not cuda.is_available():
        raise RuntimeError("BACKEND 'cuda' needs an NVIDIA GPU with a working CUDA driver "
                           "(numba.cuda.is_available() is False); use 'cpu' or 'auto'")
    if not config.ENABLE_CUDASIM:
        select_gpu(cuda_visible_devices, manual_gpu)
    from eventprop.backends import cuda as engine_cuda
    return engine_cuda


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
    the choice is left to numba (True) or there is no GPU. ``cuda``: the ``numba.cuda`` module
    (tests pass a stand-in)."""
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


def heterogeneous_taus(rng, mean, minimum, shape):
    """Per-neuron time constants ~ Gamma(shape 3, scale mean/3), clipped to [minimum, 3 mean]
    (hetLIF / hetLI)."""
    return np.clip(rng.gamma(3.0, mean / 3.0, size=shape), minimum, 3.0 * mean)


# parameter name -> key of its gradient in the backward pass's arguments
GRADIENT_KEYS = (("w_input_hidden", "dW_in"), ("w_hidden_hidden_fwd", "dW_fwd"),
                 ("w_hidden_hidden", "dW_rec"), ("w_hidden_output", "dW_out"),
                 ("tau_m_hidden", "dtau_m_h"), ("tau_syn_hidden", "dtau_s_h"),
                 ("tau_m_output", "dtau_m_o"), ("tau_syn_output", "dtau_s_o"))


class TrialResult:
    """What one mini-batch produced: predictions, losses, spike counts, and (if learning) grads."""

    def __init__(self, terms, counts, n_unstored, grads, first_step, traces, spikes):
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


class EventPropNetwork:
    def __init__(self, n_input, n_hidden, n_output, n_layers=1, recurrent=False,
                 hidden_type="LIF", output_type="LI", output_spiking=False,
                 dt=1.0, trial_ms=100.0, tau_mem=20.0, tau_syn=5.0, v_thresh=1.0, v_reset=0.0,
                 tau_b=100.0, b_incr=0.1, min_tau_m=3.0, min_tau_syn=1.0,
                 loss_type="sum_weigh_exp", tau_0=1.0, tau_1=100.0, alpha=5e-5,
                 tau_accumulator=20.0, reg_type="none", lbd_upper=0.0, lbd_lower=0.0,
                 nu_upper=0.0, avg_snsum=False, rho_upper=0.0, glb_upper=0.0,
                 n_max_spike=1500, train_tau=False, train_tau_output=False, n_batch=32,
                 init=None, seed=None, dtype=np.float32, backend="cpu",
                 cuda_visible_devices=True, manual_gpu=None):
        if hidden_type not in HIDDEN_TYPES:
            raise ValueError(f"hidden_type {hidden_type!r} not in {HIDDEN_TYPES}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type {output_type!r} not in {OUTPUT_TYPES}")
        if loss_type not in losses.LOSS_TYPES:
            raise ValueError(f"loss_type {loss_type!r} not in {losses.LOSS_TYPES}")
        self.n_input, self.n_hidden, self.n_output = n_input, n_hidden, n_output
        self.n_layers, self.recurrent = n_layers, recurrent
        self.hidden_type, self.output_type = hidden_type, output_type
        self.output_spiking = output_spiking or loss_type in losses.FIRST_SPIKE_LOSSES
        self.dt, self.trial_ms = float(dt), float(trial_ms)
        self.n_steps = int(round(trial_ms / dt))
        self.v_thresh, self.v_reset = float(v_thresh), float(v_reset)
        self.tau_b, self.b_incr = float(tau_b), float(b_incr)
        self.min_tau_m, self.min_tau_syn = min_tau_m, min_tau_syn
        self.loss_type = loss_type
        self.tau_0, self.tau_1, self.alpha = tau_0, tau_1, alpha
        self.tau_accumulator = tau_accumulator
        self.reg = dict(reg_type=reg_type, lbd_upper=lbd_upper, lbd_lower=lbd_lower,
                        nu_upper=nu_upper, avg_snsum=avg_snsum, rho_upper=rho_upper,
                        glb_upper=glb_upper)
        self.n_max_spike = int(n_max_spike)
        self.train_tau, self.train_tau_output = train_tau, train_tau_output
        self.n_batch = n_batch
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self.engine = select_engine(backend, cuda_visible_devices, manual_gpu)
        self.rng = np.random.default_rng(seed)
        self._capacity = 16 * (n_layers * n_hidden + n_output)
        self._params = self._initial_params(init or {}, tau_mem, tau_syn)
        # GPU backend: parameters live on the device between trials. With
        # ``track_param_changes`` False (default) the weights are uploaded before every trial,
        # so changes made in place are always seen. A caller that calls ``params_changed()``
        # after every in-place change (optimiser step, rewiring) sets it True, and the weights
        # are uploaded only after such a call (``adam_step`` on the GPU sets it). (Time
        # constants are small: they are compared with the uploaded values every trial.)
        self.track_param_changes = False
        self._params_version = 0
        self._gpu = None            # (engine, its Workspace)
        self._device_newer = set()  # names that adam_step changed on the GPU, not yet copied back
        self._device_grads = None   # device gradients of the last learning trial, by name
        self._coeff_cache = {}

    @property
    def params(self):
        """The parameters by name (host arrays). On the GPU, values that optimiser steps
        changed on the device are copied back (into the same arrays) first."""
        self._sync_params()
        return self._params

    @property
    def on_gpu(self):
        """True when trials run on the GPU backend (through a device Workspace)."""
        return hasattr(self.engine, "Workspace")

    # ------------------------------------------------------------------------------------------
    def _initial_params(self, init, tau_mem, tau_syn):
        """Weights ~ N(mean, std) per projection (``init`` maps projection name to (mean, std));
        time constants homogeneous, or Gamma-distributed for hetLIF / hetLI."""
        L, N, C, rng, dt = self.n_layers, self.n_hidden, self.n_output, self.rng, self.dtype

        def normal(name, shape):
            mean, std = init.get(name, (0.0, 0.1))
            return rng.normal(mean, std, size=shape).astype(dt)

        params = {"w_input_hidden": normal("input_hidden", (self.n_input, N)),
                  "w_hidden_hidden_fwd": normal("hidden_hiddenfwd", (L - 1, N, N)),
                  "w_hidden_hidden": (normal("hidden_hidden", (L, N, N)) if self.recurrent
                                      else np.zeros((0, N, N), dtype=dt)),
                  "w_hidden_output": normal("hidden_output", (N, C))}
        if self.hidden_type == "hetLIF":
            params["tau_m_hidden"] = heterogeneous_taus(rng, tau_mem, self.min_tau_m, (L, N))
            params["tau_syn_hidden"] = heterogeneous_taus(rng, tau_syn, self.min_tau_syn, (L, N))
        else:
            params["tau_m_hidden"] = np.full((L, N), tau_mem)
            params["tau_syn_hidden"] = np.full((L, N), tau_syn)
        if self.output_type == "hetLI":
            params["tau_m_output"] = heterogeneous_taus(rng, tau_mem, self.min_tau_m, C)
            params["tau_syn_output"] = heterogeneous_taus(rng, tau_syn, self.min_tau_syn, C)
        else:
            params["tau_m_output"] = np.full(C, tau_mem)
            params["tau_syn_output"] = np.full(C, tau_syn)
        for k in ("tau_m_hidden", "tau_syn_hidden", "tau_m_output", "tau_syn_output"):
            params[k] = params[k].astype(dt)
        return params

    def set_params(self, values):
        """Replace parameters (e.g. loaded from a checkpoint), checking shapes."""
        for name, value in values.items():
            if name not in self.params:
                raise KeyError(f"unknown parameter {name!r}")
            value = np.asarray(value, dtype=self.dtype)
            if value.shape != self.params[name].shape:
                raise ValueError(f"parameter {name!r} has shape {value.shape}, "
                                 f"expected {self.params[name].shape}")
            self.params[name] = value.copy()
        self.params_changed()

    def params_changed(self):
        """Say that parameters were changed in place (after an optimiser step, rewiring, ...).
        The GPU backend then uploads them before the next trial; see ``track_param_changes``.
        Replacing an array of ``params``, ``set_params`` and ``clip_taus`` need no call."""
        self._sync_params()          # an upload must never overwrite newer device values
        self._params_version += 1

    def _sync_params(self):
        """Copy the parameters that optimiser steps changed on the GPU into the host arrays."""
        if self._device_newer:
            ws = self._workspace()
            for name in self._device_newer:
                ws.param_to_host(name, self._params[name])
            self._device_newer = set()

    # --- optimiser ----------------------------------------------------------------------------
    def adam_step(self, adam, eta, names, grads=None):
        """One Adam step (``utils.Adam``) of the parameters ``names`` with the gradients of the
        last learning trial, then the lower bounds of trained time constants.

        CPU: ``adam.step(params, grads, ...)`` on the host. GPU: on the device, with the
        gradients, moments and parameters that stay there (``grads`` is not used; the last
        trial may be run with ``fetch_grads=False``); the new time constants' per-step
        constants are computed there too. The moments in ``adam.m`` / ``adam.v`` are uploaded
        when they are not the arrays of the last upload (a new run, a loaded checkpoint) and
        copied back by ``download_optimiser``; ``adam.t`` counts on the host."""
        if not self.on_gpu:
            adam.step(self.params, grads, eta, names)
            if any(k.startswith("tau") for k in names):
                self.clip_taus()
            self.params_changed()
            return
        g = self._device_grads
        if g is None:
            raise RuntimeError("adam_step on the GPU needs a learning trial first")
        ws = self._workspace()
        self.track_param_changes = True       # the device copies are the current values
        d = self._device_params(ws)
        adam.t += 1
        c1 = 1.0 - adam.beta1 ** adam.t
        c2 = 1.0 - adam.beta2 ** adam.t
        for name in names:
            if name not in adam.m:
                adam.m[name] = np.zeros_like(self._params[name])
                adam.v[name] = np.zeros_like(self._params[name])
            m = ws.param(f"adam_m/{name}", adam.m[name], adam.m[name])
            v = ws.param(f"adam_v/{name}", adam.v[name], adam.v[name])
            ws.adam(d[name], g[name], m, v, adam.beta1, adam.beta2, adam.eps, eta, c1, c2)
            self._device_newer.add(name)
        for which, pop in (("h", "hidden"), ("o", "output")):
            if f"tau_m_{pop}" in names or f"tau_syn_{pop}" in names:
                ws.time_constants(d[f"tau_m_{pop}"], d[f"tau_syn_{pop}"], self.min_tau_m,
                                  self.min_tau_syn, self.dt,
                                  *(d[f"{which}_{k}"] for k in ("alpha", "beta", "c", "d")))
                self._device_newer.update((f"tau_m_{pop}", f"tau_syn_{pop}"))

    def download_optimiser(self, adam):
        """GPU: copy the parameters and the Adam moments of ``adam_step`` back into the host
        arrays (``params``, ``adam.m``, ``adam.v``), e.g. at the end of an epoch, before a
        checkpoint. CPU: nothing to do."""
        if not self.on_gpu:
            return
        self._sync_params()
        ws = self._workspace()
        for moments, prefix in ((adam.m, "adam_m/"), (adam.v, "adam_v/")):
            for name, host in moments.items():
                if ws.has_param(prefix + name, host):
                    ws.param_to_host(prefix + name, host)

    def clip_taus(self):
        """Lower bounds of trained time constants (applied after every optimiser step)."""
        p = self.params
        np.maximum(p["tau_m_hidden"], self.min_tau_m, out=p["tau_m_hidden"])
        np.maximum(p["tau_syn_hidden"], self.min_tau_syn, out=p["tau_syn_hidden"])
        np.maximum(p["tau_m_output"], self.min_tau_m, out=p["tau_m_output"])
        np.maximum(p["tau_syn_output"], self.min_tau_syn, out=p["tau_syn_output"])
        self.params_changed()

    def _coefficients(self, tau_m, tau_s):
        coeff = np.array([lif_coefficients(float(a), float(b), self.dt)
                          for a, b in zip(tau_m.ravel(), tau_s.ravel())])
        return [coeff[:, k].reshape(tau_m.shape).astype(self.dtype) for k in range(4)]

    # ------------------------------------------------------------------------------------------
    def run_batch(self, in_ptr, in_ch, labels, learn, p_drop_hidden=0.0, noise=0.0, seed=0,
                  keep_spikes=False, keep_hidden_traces=False, keep_output_traces=True,
                  device_inputs=None, fetch_grads=True):
        """Forward pass of one mini-batch (only its real samples; the 1/B factors use the nominal
        batch size), loss, and, if ``learn``, the backward pass.

        in_ptr (B, n_steps + 1), in_ch: input spikes in the layout of ``SpikeData.batch``.
        labels (B,): class of each sample. ``p_drop_hidden`` and ``noise`` act in the forward pass
        (pass 0 for evaluation). ``seed`` makes dropout/noise draws of this trial reproducible.
        ``keep_spikes`` returns the stored spikes, ``keep_hidden_traces`` the hidden V and I of
        every step (for recordings).

        On the GPU backend only what is asked for comes back: the output traces V_out, I_out
        with ``keep_output_traces`` (else they are (B, 0, C)), the hidden traces with
        ``keep_hidden_traces``, the gradients with ``fetch_grads`` (else ``grads`` is None and
        they stay on the device for ``adam_step``). ``device_inputs``: the trial's inputs
        already on the device (from ``upload_inputs``); in_ptr and in_ch are then the same
        inputs on the host. The CPU backend ignores these three.
        Returns a ``TrialResult``; ``grads`` is None unless ``learn``.
        """
        if self.on_gpu:
            return self._run_batch_device(in_ptr, in_ch, labels, learn, p_drop_hidden, noise,
                                          seed, keep_spikes, keep_hidden_traces,
                                          keep_output_traces, device_inputs, fetch_grads)
        p, dt, dtype = self.params, self.dt, self.dtype
        L, N, C, n_steps = self.n_layers, self.n_hidden, self.n_output, self.n_steps
        B = in_ptr.shape[0]
        labels = np.asarray(labels, dtype=np.int64)
        h_alpha, h_beta, h_c, h_d = self._cached_coefficients("h", p["tau_m_hidden"],
                                                              p["tau_syn_hidden"])[0]
        o_alpha, o_beta, o_c, o_d = self._cached_coefficients("o", p["tau_m_output"],
                                                              p["tau_syn_output"])[0]
        alif = self.hidden_type == "ALIF"
        rho_b = math.exp(-dt / self.tau_b)
        keep_traces = (learn and self.train_tau) or keep_hidden_traces
        in_ptr = np.ascontiguousarray(in_ptr, dtype=np.int64)
        in_ch = np.ascontiguousarray(in_ch, dtype=np.int32)

        while True:
            cap = self._capacity
            sp_ptr = np.zeros((B, n_steps + 1), dtype=np.int64)
            sp_idx = np.zeros((B, cap), dtype=np.int32)
            sp_imv = np.zeros((B, cap), dtype=dtype)
            sp_b = np.zeros((B, cap if alif else 0), dtype=dtype)
            sp_need = np.zeros(B, dtype=np.int64)
            n_unstored = np.zeros(B, dtype=np.int64)
            counts = np.zeros((B, L * N + C), dtype=np.int32)
            first_step = np.zeros((B, C), dtype=np.int64)
            V_out_tr = np.zeros((B, n_steps + 1, C), dtype=dtype)
            I_out_tr = np.zeros((B, n_steps, C), dtype=dtype)
            shape_tr = (B, n_steps, L, N) if keep_traces else (0, 0, 0, 0)
            V_h_tr = np.zeros(shape_tr, dtype=dtype)
            I_h_tr = np.zeros(shape_tr, dtype=dtype)
            self.engine.forward_batch(
                in_ptr, in_ch, p["w_input_hidden"], p["w_hidden_hidden_fwd"],
                p["w_hidden_hidden"], p["w_hidden_output"], h_alpha, h_beta, h_c,
                o_alpha, o_beta, o_c, self.v_thresh, self.v_reset, dt, n_steps, alif, rho_b,
                p["tau_m_hidden"], self.tau_b, self.b_incr, self.output_spiking,
                float(p_drop_hidden), float(noise), int(seed), self.n_max_spike, keep_traces,
                sp_ptr, sp_idx, sp_imv, sp_b, sp_need, n_unstored, counts, first_step,
                V_out_tr, I_out_tr, V_h_tr, I_h_tr)
            need = int(sp_need.max()) if B else 0
            if need <= cap:
                break
            self._capacity = int(need * 1.25) + 16   # grow the spike store and run again

        hidden_counts = counts[:, :L * N].reshape(B, L, N)
        output_counts = counts[:, L * N:]
        terms = self._loss_terms(in_ptr, V_out_tr, first_step, labels, learn)
        grads = None
        if learn:
            reg_jump = self._regularisation_jumps(hidden_counts)
            grads = self._backward(in_ptr, in_ch, h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
                                   alif, rho_b, sp_ptr, sp_idx, sp_imv, sp_b, first_step, terms,
                                   reg_jump, V_h_tr, I_h_tr, V_out_tr, I_out_tr)
        spikes = (sp_ptr, sp_idx, sp_imv) if keep_spikes else None
        return TrialResult(terms, (hidden_counts, output_counts), n_unstored, grads, first_step,
                           (V_out_tr, I_out_tr, V_h_tr, I_h_tr), spikes)

    def _loss_terms(self, in_ptr, V_out_tr, first_step, labels, learn):
        accumulator = None
        if self.loss_type == "sum_weigh_input":
            accumulator = losses.accumulator_trace(np.diff(in_ptr, axis=1), self.dt,
                                                   self.tau_accumulator)
        return losses.output_terms(
            self.loss_type, V_out_tr, first_step, labels, self.dt, self.trial_ms,
            self.params["tau_m_output"].astype(np.float64), self.n_batch, tau_0=self.tau_0,
            tau_1=self.tau_1, alpha=self.alpha, accumulator=accumulator, dtype=self.dtype,
            need_backward=learn)

    def _regularisation_jumps(self, hidden_counts):
        r = self.reg
        return losses.regularisation_jumps(r["reg_type"], hidden_counts, self.n_batch,
                                           r["lbd_upper"], r["lbd_lower"], r["nu_upper"],
                                           r["avg_snsum"], r["rho_upper"], r["glb_upper"],
                                           dtype=self.dtype)

    # --- GPU backend: trials through a Workspace that keeps buffers and parameters on the device
    def _workspace(self):
        if self._gpu is None or self._gpu[0] is not self.engine:
            self._gpu = (self.engine, self.engine.Workspace())
        return self._gpu[1]

    def _cached_coefficients(self, which, tau_m, tau_s):
        """``_coefficients`` of these time constants, recomputed only when their values
        changed; and the key (the values) for uploading them."""
        key = (np.dtype(tau_m.dtype).str, tau_m.tobytes(), tau_s.tobytes())
        hit = self._coeff_cache.get(which)
        if hit is None or hit[0] != key:
            hit = (key, self._coefficients(tau_m, tau_s))
            self._coeff_cache[which] = hit
        return hit[1], key

    def _device_params(self, ws):
        """Device copies of the parameters and of the neuron coefficients (uploaded only when
        needed, see ``track_param_changes``)."""
        p = self._params                # not ``params``: the device copies may be newer
        d = {}
        for name in ("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden",
                     "w_hidden_output"):
            key = (self._params_version, p[name]) if self.track_param_changes else None
            d[name] = ws.param(name, p[name], key)
        for name in ("tau_m_hidden", "tau_syn_hidden", "tau_m_output", "tau_syn_output"):
            d[name] = ws.param(name, p[name], (np.dtype(p[name].dtype).str, p[name].tobytes()))
        for which, tau_m, tau_s in (("h", "tau_m_hidden", "tau_syn_hidden"),
                                    ("o", "tau_m_output", "tau_syn_output")):
            coeff, key = self._cached_coefficients(which, p[tau_m], p[tau_s])
            for name, value in zip(("alpha", "beta", "c", "d"), coeff):
                d[f"{which}_{name}"] = ws.param(f"{which}_{name}", value, key)
        return d

    def upload_inputs(self, batches):
        """GPU: the inputs of several trials ((in_ptr, in_ch) pairs) copied to the device at
        once; returns each trial's ``device_inputs`` for ``run_batch``. CPU: None for each."""
        if not self.on_gpu:
            return [None] * len(batches)
        ws = self._workspace()
        with ws.phase("upload"):
            return ws.put_inputs([(np.ascontiguousarray(p, dtype=np.int64),
                                   np.ascontiguousarray(c, dtype=np.int32)) for p, c in batches])

    def _run_batch_device(self, in_ptr, in_ch, labels, learn, p_drop_hidden, noise, seed,
                          keep_spikes, keep_hidden_traces, keep_output_traces, device_inputs,
                          fetch_grads):
        """``run_batch`` on the GPU: weights, inputs, spike store, traces, loss terms and
        gradients are device arrays of the network's Workspace, reused from trial to trial.
        Copied to the device each trial: the labels, the regularisation jumps, parameters that
        the host changed, and the inputs unless ``device_inputs`` has them. Copied back: the
        per-sample counters (spike store size, overflow, first output spikes), the spike counts,
        and the loss and prediction of every sample; the rest only when asked for."""
        ws = self._workspace()
        dt, dtype = self.dt, self.dtype
        L, N, C, n_steps = self.n_layers, self.n_hidden, self.n_output, self.n_steps
        B = in_ptr.shape[0]
        labels = np.asarray(labels, dtype=np.int64)
        alif = self.hidden_type == "ALIF"
        rho_b = math.exp(-dt / self.tau_b)
        keep_traces = (learn and self.train_tau) or keep_hidden_traces
        with ws.phase("upload"):
            d = self._device_params(ws)
            if device_inputs is None:
                d_in_ptr = ws.put("in_ptr", np.ascontiguousarray(in_ptr, dtype=np.int64))
                d_in_ch = ws.put("in_ch", np.ascontiguousarray(in_ch, dtype=np.int32))
            else:
                d_in_ptr, d_in_ch = device_inputs
            d_labels = ws.put("labels", labels)
        while True:
            cap = self._capacity
            with ws.phase("forward"):
                out = ws.forward(
                    d_in_ptr, d_in_ch, d["w_input_hidden"], d["w_hidden_hidden_fwd"],
                    d["w_hidden_hidden"], d["w_hidden_output"], d["h_alpha"], d["h_beta"],
                    d["h_c"], d["o_alpha"], d["o_beta"], d["o_c"], self.v_thresh, self.v_reset,
                    dt, n_steps, alif, rho_b, d["tau_m_hidden"], self.tau_b, self.b_incr,
                    self.output_spiking, float(p_drop_hidden), float(noise), int(seed),
                    self.n_max_spike, keep_traces, cap, clear_store=keep_spikes)
            with ws.phase("download"):
                counters = ws.fetch_parts("counters")   # sp_need, n_unstored, first_step
            need = int(counters["sp_need"].max()) if B else 0
            if need <= cap:
                break
            self._capacity = int(need * 1.25) + 16   # grow the spike store and run again
        with ws.phase("loss"):
            terms = self._device_loss(ws, out, d, d_in_ptr, d_labels, labels, learn)
        with ws.phase("download"):
            counts = ws.fetch(out["counts"])
            n_unstored, first_step = counters["n_unstored"], counters["first_step"]
            empty = np.zeros((B, 0, C), dtype=dtype)
            V_out_tr = ws.fetch(out["V_out_tr"]) if keep_output_traces else empty
            I_out_tr = ws.fetch(out["I_out_tr"]) if keep_output_traces else empty
            if keep_hidden_traces:
                V_h_tr, I_h_tr = ws.fetch(out["V_h_tr"]), ws.fetch(out["I_h_tr"])
            else:
                V_h_tr = I_h_tr = np.zeros((0, 0, 0, 0), dtype=dtype)
            spikes = None
            if keep_spikes:
                spikes = (ws.fetch(out["sp_ptr"]), ws.fetch(out["sp_idx"]),
                          ws.fetch(out["sp_imv"]))
        hidden_counts = counts[:, :L * N].reshape(B, L, N)
        output_counts = counts[:, L * N:]
        grads = None
        if learn:
            with ws.phase("loss"):
                reg_jump = self._regularisation_jumps(hidden_counts)
            with ws.phase("upload"):
                d_reg_jump = ws.put("reg_jump", reg_jump)
            with ws.phase("backward"):
                g = ws.backward(
                    d_in_ptr, d_in_ch, d["w_hidden_hidden_fwd"], d["w_hidden_hidden"],
                    d["w_hidden_output"], d["h_alpha"], d["h_beta"], d["h_d"], d["o_alpha"],
                    d["o_beta"], d["o_d"], d["tau_m_hidden"], d["tau_syn_hidden"],
                    d["tau_m_output"], d["tau_syn_output"], self.v_thresh - self.v_reset, dt,
                    n_steps, alif, rho_b, self.tau_b, self.b_incr, out["sp_ptr"],
                    out["sp_idx"], out["sp_imv"], out["sp_b"], out["first_step"],
                    terms.A_out, terms.force_g, terms.force_c, terms.jump_step,
                    terms.jump_amount, terms.fs_term, d_reg_jump, self.train_tau,
                    self.train_tau_output, out["V_h_tr"], out["I_h_tr"], out["V_out_tr"],
                    out["I_out_tr"], n_input=self.n_input)
            self._device_grads = {name: g[key][0] for name, key in GRADIENT_KEYS}
            if fetch_grads:
                with ws.phase("download"):
                    host = ws.fetch_parts("grads")       # all gradients in one copy
                    grads = {name: host[key][0] for name, key in GRADIENT_KEYS}
        return TrialResult(terms, (hidden_counts, output_counts), n_unstored, grads, first_step,
                           (V_out_tr, I_out_tr, V_h_tr, I_h_tr), spikes)

    def _device_loss(self, ws, out, d, d_in_ptr, d_labels, labels, learn):
        """The loss on the device (``losses_cuda``): a ``losses.OutputTerms`` whose backward
        terms are device arrays and whose predictions, losses and correctness (one small copy)
        are on the host."""
        from eventprop.backends.cuda import loss as losses_cuda
        terms, summary = losses_cuda.output_terms_device(
            ws.buffer, self.loss_type, out["V_out_tr"], out["first_step"], d_labels, self.dt,
            self.trial_ms, d["tau_m_output"], self.n_batch, tau_0=self.tau_0, tau_1=self.tau_1,
            alpha=self.alpha, in_ptr=d_in_ptr, tau_accumulator=self.tau_accumulator,
            need_backward=learn)
        terms.predictions, terms.loss, terms.correct = losses_cuda.finish(ws.fetch(summary),
                                                                          labels)
        return terms

    def _backward(self, in_ptr, in_ch, h_alpha, h_beta, h_d, o_alpha, o_beta, o_d, alif, rho_b,
                  sp_ptr, sp_idx, sp_imv, sp_b, first_step, terms, reg_jump,
                  V_h_tr, I_h_tr, V_out_tr, I_out_tr):
        p, dtype = self.params, self.dtype
        B = in_ptr.shape[0]
        if hasattr(self.engine, "gradient_chunks"):
            K = self.engine.gradient_chunks(B)       # engine_cuda: 1 (atomic accumulation)
        else:
            K = max(1, min(B, numba.get_num_threads()))   # engine_cpu: one chunk per thread
        dW = {k: np.zeros((K,) + p[k].shape, dtype=dtype)
              for k in ("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden",
                        "w_hidden_output")}
        train_tau_out = self.train_tau_output
        dtau = {k: np.zeros((K,) + p[k].shape, dtype=dtype)
                for k in ("tau_m_hidden", "tau_syn_hidden", "tau_m_output", "tau_syn_output")}
        self.engine.backward_batch(
            in_ptr, in_ch, p["w_hidden_hidden_fwd"], p["w_hidden_hidden"], p["w_hidden_output"],
            h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
            p["tau_m_hidden"], p["tau_syn_hidden"], p["tau_m_output"], p["tau_syn_output"],
            self.v_thresh - self.v_reset, self.dt, self.n_steps, alif, rho_b, self.tau_b,
            self.b_incr, sp_ptr, sp_idx, sp_imv, sp_b, first_step,
            terms.A_out, terms.force_g, terms.force_c, terms.jump_step, terms.jump_amount, terms.fs_term, reg_jump,
            self.train_tau, train_tau_out, V_h_tr, I_h_tr, V_out_tr, I_out_tr,
            dW["w_input_hidden"], dW["w_hidden_hidden_fwd"], dW["w_hidden_hidden"],
            dW["w_hidden_output"], dtau["tau_m_hidden"], dtau["tau_syn_hidden"],
            dtau["tau_m_output"], dtau["tau_syn_output"])
        grads = {k: v.sum(axis=0) for k, v in dW.items()}
        grads.update({k: v.sum(axis=0) for k, v in dtau.items()})
        return grads
