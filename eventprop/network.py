"""A feed-forward (optionally recurrent, multi-layer) spiking network trained with EventProp.

``EventPropNetwork`` owns the parameters (weights and time constants) and the description of the
model, the loss and the regularisation; its backend (``backends.select_backend``) runs the trials
(forward pass, loss, backward pass: ``run_batch``) and takes the Adam steps (``adam_step``). It
knows nothing about data sets or epochs; the simulators do that.

Parameter names (keys of ``params`` and ``grads``), matching the reference's file names:
  w_input_hidden (n_in, N), w_hidden_hidden_fwd (L-1, N, N), w_hidden_hidden (L, N, N) if
  recurrent, w_hidden_output (N, C), tau_m_hidden / tau_syn_hidden (L, N), tau_m_output /
  tau_syn_output (C,). Weight matrices are pre-major: W[i_pre, j_post]. A projection with delays
  (``eventprop.projections``) adds its delays d_input_hidden, d_hidden_hidden_fwd,
  d_hidden_hidden or d_hidden_output (ms, the shape of its weights).
"""
import numpy as np

from eventprop import losses, projections
from eventprop.backends import select_backend
from eventprop.backends.base import Trial
from eventprop.backends.records import Synapses
from eventprop.config.shared import SHARED
from eventprop.models import lif_coefficients

HIDDEN_TYPES = ("LIF", "hetLIF", "ALIF")
OUTPUT_TYPES = ("LI", "hetLI")
TIME_CONSTANTS_OF = {"hidden": ("tau_m_hidden", "tau_syn_hidden"),
                     "output": ("tau_m_output", "tau_syn_output")}


def heterogeneous_taus(rng, mean, minimum, shape):
    """Per-neuron time constants ~ Gamma(shape 3, scale mean/3), clipped to [minimum, 3 mean]
    (hetLIF / hetLI)."""
    return np.clip(rng.gamma(3.0, mean / 3.0, size=shape), minimum, 3.0 * mean)


def _shared(key):
    """The default of a shared parameter key (``eventprop.config.shared``)."""
    return SHARED[key].default


class EventPropNetwork:
    """A network built directly takes the defaults of the shared parameter keys
    (``docs/parameters/shared.md``; e.g. ``tau_mem`` is TAU_MEM's); a simulator's
    ``build_network`` passes its own ``p``. One exception: a network built directly runs on the
    CPU unless ``backend`` says otherwise, where the simulators' BACKEND default "auto" takes a
    GPU when there is one."""

    def __init__(self, n_input, n_hidden, n_output, n_layers=_shared("N_HID_LAYER"),
                 recurrent=_shared("RECURRENT"), hidden_type=_shared("HIDDEN_NEURON_TYPE"),
                 output_type=_shared("OUTPUT_NEURON_TYPE"), output_spiking=False,
                 dt=_shared("DT_MS"), trial_ms=_shared("TRIAL_MS"), tau_mem=_shared("TAU_MEM"),
                 tau_syn=_shared("TAU_SYN"), v_thresh=_shared("V_THRESH"),
                 v_reset=_shared("V_RESET"), tau_b=_shared("TAU_B"), b_incr=_shared("B_INCR"),
                 min_tau_m=_shared("MIN_TAU_M"), min_tau_syn=_shared("MIN_TAU_SYN"),
                 loss_type=_shared("LOSS_TYPE"), tau_0=_shared("TAU_0"), tau_1=_shared("TAU_1"),
                 alpha=_shared("ALPHA"), tau_accumulator=_shared("TAU_ACCUMULATOR"),
                 reg_type=_shared("REG_TYPE"), lbd_upper=_shared("LBD_UPPER"),
                 lbd_lower=_shared("LBD_LOWER"), nu_upper=_shared("NU_UPPER"),
                 avg_snsum=_shared("AVG_SNSUM"), rho_upper=_shared("RHO_UPPER"),
                 glb_upper=_shared("GLB_UPPER"), n_max_spike=_shared("N_MAX_SPIKE"),
                 train_tau=_shared("TRAIN_TAU"), train_tau_output=_shared("TRAIN_TAU_OUTPUT"),
                 n_batch=_shared("N_BATCH"), init=None, seed=_shared("MODEL_SEED"),
                 dtype=_shared("DTYPE"), backend="cpu",
                 cuda_visible_devices=_shared("CUDA_VISIBLE_DEVICES"), manual_gpu=None,
                 delays=_shared("DELAYS"), max_delay=_shared("MAX_DELAY_MS"),
                 train_delays=_shared("TRAIN_DELAYS"), connectivity=_shared("CONNECTIVITY")):
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
        self.max_delay, self.train_delays = float(max_delay), bool(train_delays)
        self.delays = self._checked_delays(delays or {})
        self.backend = select_backend(backend, cuda_visible_devices, manual_gpu)
        self.rng = np.random.default_rng(seed)
        # stored spikes per sample the spike store has room for; grows when a trial needs more
        self.spike_capacity = 16 * (n_layers * n_hidden + n_output)
        self.connectivity = self._draw_connectivity(connectivity or {}, seed)
        self._params = self._initial_params(init or {}, tau_mem, tau_syn)
        # A backend may keep the parameters where its kernels run (the GPU's memory). With
        # ``track_param_changes`` False (default) it takes the weights from the host before
        # every trial, so changes made in place are always seen. A caller that calls
        # ``params_changed()`` after every in-place change (optimiser step, rewiring) sets it
        # True, and the weights are taken again only after such a call (``adam_step`` sets it
        # where the backend keeps them). Time constants are compared by value every trial.
        self.track_param_changes = False
        self._step_constants = {}
        self._synapses = None

    @property
    def params(self):
        """The parameters by name (host arrays). Values that optimiser steps changed where the
        backend keeps them are copied back (into the same arrays) first."""
        self.backend.params_to_host(self._params)
        return self._params

    @property
    def host_params(self):
        """The host arrays of the parameters as they are (for backends: without copying newer
        values back first)."""
        return self._params

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
        for name, conn in self.connectivity.items():
            params[projections.WEIGHT_OF[name]] *= conn.mask
        for name, (low, high) in self.delays.items():
            shape = params[projections.WEIGHT_OF[name]].shape
            params[projections.DELAY_OF[name]] = rng.uniform(low, high, size=shape).astype(dt)
        return params

    def _checked_delays(self, delays):
        """``delays`` ({projection: (low, high)} in ms), checked against ``max_delay``."""
        if not self.max_delay >= 0.0:
            raise ValueError(f"max_delay must be >= 0 ms, not {self.max_delay}")
        checked = {}
        for name, bounds in delays.items():
            if name not in projections.PROJECTIONS:
                raise ValueError(f"delays: unknown projection {name!r}; projections are "
                                 f"{projections.PROJECTIONS}")
            if name == "hidden_hiddenfwd" and self.n_layers < 2 or \
                    name == "hidden_hidden" and not self.recurrent:
                raise ValueError(f"delays: the network has no projection {name!r}")
            try:
                low, high = (float(x) for x in bounds)
            except (TypeError, ValueError):
                raise ValueError(f"delays[{name!r}] must be (low, high) in ms, not {bounds!r}")
            if not 0.0 <= low <= high <= self.max_delay:
                raise ValueError(f"delays[{name!r}] = {bounds!r} must satisfy 0 <= low <= high "
                                 f"<= max_delay ({self.max_delay} ms)")
            checked[name] = (low, high)
        return checked

    def _draw_connectivity(self, connectivity, seed):
        """The ``projections.Connectivity`` of every sparse projection. Each projection's
        synapses come from a random stream of its own (from ``seed``), so they do not depend on
        which other projections are sparse, and the weights and delays are those of the dense
        network with the same seed."""
        L, N, C = self.n_layers, self.n_hidden, self.n_output
        shapes = {"input_hidden": (self.n_input, N), "hidden_hiddenfwd": (L - 1, N, N),
                  "hidden_hidden": (L, N, N), "hidden_output": (N, C)}
        drawn = {}
        for name, spec in connectivity.items():
            projections.check_connectivity(name, spec, shapes.get(name, (0, 0))[-2])
            if name == "hidden_hidden" and not self.recurrent:
                raise ValueError("connectivity: the network has no recurrent projection "
                                 "'hidden_hidden'")
            rng = np.random.default_rng(
                None if seed is None else [seed, 1, projections.PROJECTIONS.index(name)])
            mask = projections.draw_mask(spec, shapes[name], rng)
            drawn[name] = projections.connectivity_of(mask)
        return drawn

    def synapses(self):
        """The ``records.Synapses`` of the network: delay steps of the current delays
        (recomputed when they changed) and the sparse projections' synapse lists (host
        arrays)."""
        p = self._params
        key = tuple(p[projections.DELAY_OF[name]].tobytes() for name in self.delays)
        if self._synapses is None or self._synapses[1] != key:
            fields = {}
            for name, short in zip(projections.PROJECTIONS, ("in", "fwd", "rec", "out")):
                shape = p[projections.WEIGHT_OF[name]].shape
                if name in self.delays:
                    d = p[projections.DELAY_OF[name]]
                    if not (d.min() >= 0.0 and d.max() <= self.max_delay):
                        raise ValueError(f"{projections.DELAY_OF[name]} holds delays in "
                                         f"[{d.min()}, {d.max()}] ms, outside [0, max_delay = "
                                         f"{self.max_delay}] ms")
                    steps = projections.delay_steps_array(d, self.dt)
                    # all zero: no delay steps, and the engines run the projection exactly as
                    # one without delays (the delays' gradients included)
                    fields["D_" + short] = steps if steps.any() else \
                        np.zeros((0,) * len(shape), dtype=np.int32)
                else:
                    fields["D_" + short] = np.zeros((0,) * len(shape), dtype=np.int32)
                conn = self.connectivity.get(name) or projections.dense(shape)
                fields["idx_" + short], fields["len_" + short] = conn.post_index, conn.row_length
            fields["n_slots"] = (projections.ring_slots(self.max_delay, self.dt) if self.delays
                                 else 1)
            self._synapses = (Synapses(**fields), key)
        return self._synapses[0]

    def delay_buffer_bytes(self, n_batch=None):
        """Bytes of the CPU engine's ring buffers for a batch of ``n_batch`` (default N_BATCH)
        samples: the forward pass's currents (inputs, hidden, outputs) and the backward pass's
        postsynaptic adjoints, for max_delay / dt + 1 steps of every neuron (0 without delays).
        The GPU keeps the same rings without the inputs' (whose delayed currents it sums for
        every step before the time loop)."""
        if not self.delays:
            return 0
        B = self.n_batch if n_batch is None else n_batch
        units = self.n_layers * self.n_hidden + self.n_output
        slots = projections.ring_slots(self.max_delay, self.dt)
        return int(B * slots * (units * 3 + self.n_hidden) * self.dtype.itemsize)

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
        self.apply_connectivity()

    def apply_connectivity(self):
        """Zero the weights of absent synapses of sparse projections (after loading or
        rewiring); the engines never read them, and their gradients are zero."""
        for name, conn in self.connectivity.items():
            self.params[projections.WEIGHT_OF[name]] *= conn.mask
        self.params_changed()

    def params_changed(self):
        """Say that parameters were changed in place (after an optimiser step, rewiring, ...).
        A backend that keeps them elsewhere takes them again before the next trial; see
        ``track_param_changes``. Replacing an array of ``params``, ``set_params`` and
        ``clip_taus`` need no call."""
        self.backend.params_changed(self)

    # --- optimiser ----------------------------------------------------------------------------
    def adam_step(self, adam, eta, names, grads=None):
        """One Adam step (``optim.Adam``) of the parameters ``names`` with ``grads``, or (None)
        the gradients of the last learning trial (which may then be run with
        ``fetch_grads=False``), then the lower bounds of trained time constants; where the
        backend keeps the parameters."""
        self.backend.adam_step(self, adam, eta, names, grads)

    def sync_to_host(self, adam):
        """Copy the parameters and the state of ``adam`` back to the host where the backend
        keeps them elsewhere (e.g. at the end of an epoch, before a checkpoint)."""
        self.backend.sync_to_host(self, adam)

    def clip_delays(self):
        """Delays kept within [0, max_delay] (applied after every optimiser step)."""
        p = self.params
        for name in self.delays:
            np.clip(p[projections.DELAY_OF[name]], 0.0, self.max_delay,
                    out=p[projections.DELAY_OF[name]])
        self.params_changed()

    def clip_taus(self):
        """Lower bounds of trained time constants (applied after every optimiser step)."""
        p = self.params
        np.maximum(p["tau_m_hidden"], self.min_tau_m, out=p["tau_m_hidden"])
        np.maximum(p["tau_syn_hidden"], self.min_tau_syn, out=p["tau_syn_hidden"])
        np.maximum(p["tau_m_output"], self.min_tau_m, out=p["tau_m_output"])
        np.maximum(p["tau_syn_output"], self.min_tau_syn, out=p["tau_syn_output"])
        self.params_changed()

    def step_constants(self, population):
        """Per-step constants (alpha, beta, c, d) of ``models.lif_coefficients`` for the time
        constants of the "hidden" or "output" population, in the network's dtype, and the key
        (the time constants' values) they were computed from; recomputed only when the values
        changed."""
        tau_m, tau_s = (self._params[name] for name in TIME_CONSTANTS_OF[population])
        key = (np.dtype(tau_m.dtype).str, tau_m.tobytes(), tau_s.tobytes())
        hit = self._step_constants.get(population)
        if hit is None or hit[1] != key:
            coeff = np.array([lif_coefficients(float(a), float(b), self.dt)
                              for a, b in zip(tau_m.ravel(), tau_s.ravel())])
            hit = ([coeff[:, k].reshape(tau_m.shape).astype(self.dtype) for k in range(4)], key)
            self._step_constants[population] = hit
        return hit

    # ------------------------------------------------------------------------------------------
    def run_batch(self, in_ptr, in_ch, labels, learn, p_drop_hidden=0.0, noise=0.0, seed=0,
                  keep_spikes=False, keep_hidden_traces=False, keep_output_traces=True,
                  device_inputs=None, fetch_grads=True, pipeline=False):
        """Forward pass of one mini-batch (only its real samples; the 1/B factors use the nominal
        batch size), loss, and, if ``learn``, the backward pass: of this trial, or with
        ``pipeline`` (the original's schedule, ``backends.base.Backend``) of the previous
        learning trial, with the current parameters (none at the first: ``has_gradient``).

        in_ptr (B, n_steps + 1), in_ch: input spikes in the layout of ``SpikeData.batch``.
        labels (B,): class of each sample. ``p_drop_hidden`` and ``noise`` act in the forward pass
        (pass 0 for evaluation). ``seed`` makes dropout/noise draws of this trial reproducible.
        ``keep_spikes`` returns the stored spikes, ``keep_hidden_traces`` the hidden V and I of
        every step (for recordings).

        A backend that keeps its arrays elsewhere (the GPU) returns only what is asked for: the
        output traces V_out, I_out with ``keep_output_traces`` (else they are (B, 0, C)), the
        hidden traces with ``keep_hidden_traces``, the gradients with ``fetch_grads`` (else
        ``grads`` is None and they stay there for ``adam_step``). ``device_inputs``: the
        trial's inputs already uploaded (``backend.upload_inputs``); in_ptr and in_ch are then
        the same inputs on the host. The CPU backend ignores these three.
        Returns a ``TrialResult``; ``grads`` is None unless ``learn``.
        """
        self._check_inputs(in_ptr, in_ch, labels)
        return self.backend.run_trial(self, Trial(
            in_ptr, in_ch, labels, learn, p_drop_hidden, noise, seed, keep_spikes,
            keep_hidden_traces, keep_output_traces, device_inputs, fetch_grads,
            bool(pipeline and learn)))

    def _check_inputs(self, in_ptr, in_ch, labels):
        """A ``ValueError`` for inputs that do not fit the network (the kernels would read or
        write outside their arrays): the shape of in_ptr, its range, the channels, the labels."""
        in_ptr, in_ch = np.asarray(in_ptr), np.asarray(in_ch)
        if in_ptr.ndim != 2 or in_ptr.shape[1] != self.n_steps + 1:
            raise ValueError(f"in_ptr has shape {in_ptr.shape}; a trial of this network has "
                             f"{self.n_steps} steps (TRIAL_MS / DT_MS), so in_ptr must be "
                             f"(batch, {self.n_steps + 1})")
        if len(labels) != in_ptr.shape[0]:
            raise ValueError(f"{len(labels)} labels for a batch of {in_ptr.shape[0]} samples")
        if in_ptr.size and (in_ptr.min() < 0 or in_ptr.max() > len(in_ch)
                            or (np.diff(in_ptr, axis=1) < 0).any()):
            raise ValueError(f"in_ptr must rise within [0, {len(in_ch)}] (the input spikes)")
        if len(in_ch) and (in_ch.min() < 0 or in_ch.max() >= self.n_input):
            bad = int(in_ch.min()) if in_ch.min() < 0 else int(in_ch.max())
            raise ValueError(f"input channel {bad} outside [0, {self.n_input}) (the network's "
                             f"inputs)")
        labels = np.asarray(labels)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.n_output):
            raise ValueError(f"labels must lie in [0, {self.n_output}) (the network's outputs)")

    def end_pipeline(self):
        """Forget the learning trial whose backward pass the next pipelined trial would run
        (the end of the training part of an epoch: its gradient is not applied)."""
        self.backend.end_pipeline(self)
