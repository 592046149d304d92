"""A feed-forward (optionally recurrent, multi-layer) spiking network trained with EventProp.

``EventPropNetwork`` owns the parameters (weights and time constants), packs them for the engine,
runs the forward pass of a mini-batch, evaluates the loss, runs the backward pass and returns the
batch-summed gradients. It knows nothing about data sets or epochs; the simulators do that.

Parameter names (keys of ``params`` and ``grads``), matching the reference's file names:
  w_input_hidden (n_in, N), w_hidden_hidden_fwd (L-1, N, N), w_hidden_hidden (L, N, N) if
  recurrent, w_hidden_output (N, C), tau_m_hidden / tau_syn_hidden (L, N), tau_m_output /
  tau_syn_output (C,). Weight matrices are pre-major: W[i_pre, j_post].
"""
import math

import numba
import numpy as np

import engine_cpu
import losses
from models import lif_coefficients

HIDDEN_TYPES = ("LIF", "hetLIF", "ALIF")
OUTPUT_TYPES = ("LI", "hetLI")
BACKENDS = ("cpu", "cuda", "auto")


def select_engine(backend):
    """The engine module of a BACKEND: "cpu" (``engine_cpu``), "cuda" (``engine_cuda``: an NVIDIA
    GPU, or numba's CUDA simulator when NUMBA_ENABLE_CUDASIM=1), "auto" ("cuda" when a GPU is
    usable, else "cpu"; never the simulator)."""
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
    import engine_cuda
    return engine_cuda


def heterogeneous_taus(rng, mean, minimum, shape):
    """Per-neuron time constants ~ Gamma(shape 3, scale mean/3), clipped to [minimum, 3 mean]
    (hetLIF / hetLI)."""
    return np.clip(rng.gamma(3.0, mean / 3.0, size=shape), minimum, 3.0 * mean)


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
        # state at the start of every step: V_out (B, n_steps + 1, C), I_out (B, n_steps, C),
        # V_hidden / I_hidden (B, n_steps, L, N) or empty when not kept
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
                 init=None, seed=None, dtype=np.float32, backend="cpu"):
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
        self.engine = select_engine(backend)
        self.rng = np.random.default_rng(seed)
        self._capacity = 16 * (n_layers * n_hidden + n_output)
        self.params = self._initial_params(init or {}, tau_mem, tau_syn)

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

    def clip_taus(self):
        """Lower bounds of trained time constants (applied after every optimiser step)."""
        p = self.params
        np.maximum(p["tau_m_hidden"], self.min_tau_m, out=p["tau_m_hidden"])
        np.maximum(p["tau_syn_hidden"], self.min_tau_syn, out=p["tau_syn_hidden"])
        np.maximum(p["tau_m_output"], self.min_tau_m, out=p["tau_m_output"])
        np.maximum(p["tau_syn_output"], self.min_tau_syn, out=p["tau_syn_output"])

    def _coefficients(self, tau_m, tau_s):
        coeff = np.array([lif_coefficients(float(a), float(b), self.dt)
                          for a, b in zip(tau_m.ravel(), tau_s.ravel())])
        return [coeff[:, k].reshape(tau_m.shape).astype(self.dtype) for k in range(4)]

    # ------------------------------------------------------------------------------------------
    def run_batch(self, in_ptr, in_ch, labels, learn, train_mode=None, p_drop_hidden=0.0,
                  noise=0.0, seed=0, keep_spikes=False, keep_hidden_traces=False):
        """Forward pass of one mini-batch (only its real samples; the 1/B factors use the nominal
        batch size), loss, and, if ``learn``, the backward pass.

        in_ptr (B, n_steps + 1), in_ch: input spikes in the layout of ``SpikeData.batch``.
        labels (B,): class of each sample. ``p_drop_hidden`` and ``noise`` act in the forward pass
        (pass 0 for evaluation). ``seed`` makes dropout/noise draws of this trial reproducible.
        ``keep_spikes`` returns the stored spikes, ``keep_hidden_traces`` the hidden V and I of
        every step (for recordings).
        Returns a ``TrialResult``; ``grads`` is None unless ``learn``.
        """
        p, dt, dtype = self.params, self.dt, self.dtype
        L, N, C, n_steps = self.n_layers, self.n_hidden, self.n_output, self.n_steps
        B = in_ptr.shape[0]
        labels = np.asarray(labels, dtype=np.int64)
        h_alpha, h_beta, h_c, h_d = self._coefficients(p["tau_m_hidden"], p["tau_syn_hidden"])
        o_alpha, o_beta, o_c, o_d = self._coefficients(p["tau_m_output"], p["tau_syn_output"])
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
        accumulator = None
        if self.loss_type == "sum_weigh_input":
            accumulator = losses.accumulator_trace(np.diff(in_ptr, axis=1), dt,
                                                   self.tau_accumulator)
        terms = losses.output_terms(
            self.loss_type, V_out_tr, first_step, labels, dt, self.trial_ms,
            p["tau_m_output"].astype(np.float64), self.n_batch, tau_0=self.tau_0,
            tau_1=self.tau_1, alpha=self.alpha, accumulator=accumulator, dtype=dtype,
            need_backward=learn)
        grads = None
        if learn:
            reg_jump = losses.regularisation_jumps(self.reg["reg_type"], hidden_counts,
                                                   self.n_batch, self.reg["lbd_upper"],
                                                   self.reg["lbd_lower"], self.reg["nu_upper"],
                                                   self.reg["avg_snsum"], self.reg["rho_upper"],
                                                   self.reg["glb_upper"], dtype=dtype)
            grads = self._backward(in_ptr, in_ch, h_alpha, h_beta, h_d, o_alpha, o_beta, o_d,
                                   alif, rho_b, sp_ptr, sp_idx, sp_imv, sp_b, first_step, terms,
                                   reg_jump, V_h_tr, I_h_tr, V_out_tr, I_out_tr)
        spikes = (sp_ptr, sp_idx, sp_imv) if keep_spikes else None
        return TrialResult(terms, (hidden_counts, output_counts), n_unstored, grads, first_step,
                           (V_out_tr, I_out_tr, V_h_tr, I_h_tr), spikes)

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
