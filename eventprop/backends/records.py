"""The named records that carry a trial's arrays and constants into the kernels of every backend.

Each record is a ``collections.namedtuple`` of arrays and scalars; numba passes them to ``njit``
functions (``prange`` loops included) and to CUDA kernels as they are, and the kernels read the
fields by name. They are defined here, at module level, so that compiled kernels can be cached.

Shapes in the comments: B samples, L hidden layers of N neurons, C outputs, n_in inputs,
n_steps steps, K gradient chunks; weight matrices are pre-major, W[i_pre, j_post].
"""
from collections import namedtuple

Parameters = namedtuple("Parameters", [
    "W_in", "W_fwd", "W_rec", "W_out",       # (n_in, N), (L-1, N, N), (L or 0, N, N), (N, C)
    "h_alpha", "h_beta", "h_c", "h_d",        # per-step constants of the hidden neurons (L, N)
    "o_alpha", "o_beta", "o_c", "o_d",        # ... of the outputs (C,)
    "tau_m_h", "tau_s_h", "tau_m_o", "tau_s_o"])   # time constants (L, N), (C,)
Parameters.__doc__ = ("The network's parameters and the per-step neuron constants of "
                      "``models.lif_coefficients``.")

Synapses = namedtuple("Synapses", [
    "D_in", "D_fwd", "D_rec", "D_out",        # delay steps (int32, the weight's shape) or empty
    "idx_in", "len_in", "idx_fwd", "len_fwd",     # sparse projections: postsynaptic indices
    "idx_rec", "len_rec", "idx_out", "len_out",   # (..., n_pre, K) and row lengths, or empty
    "n_slots"])                               # slots of the ring buffers (longest delay + 1)
Synapses.__doc__ = ("Delays and sparse connectivity of the four projections "
                    "(``eventprop.projections``); empty arrays (of the weight's rank) mark a "
                    "projection without delays or a dense one.")

Model = namedtuple("Model", [
    "theta", "v_reset", "dt", "n_steps",      # threshold, reset, step (ms), steps per trial
    "alif", "rho_b", "tau_b", "b_incr",       # ALIF: adaptive threshold, exp(-dt/tau_b), ...
    "out_spiking", "n_max_spike"])            # spiking outputs; stored spikes per neuron
Model.__doc__ = "Constants of the neuron model and of the spike store (Python scalars)."

Inputs = namedtuple("Inputs", ["in_ptr", "in_ch"])
Inputs.__doc__ = ("A trial's input spikes in the layout of ``SpikeData.batch``: in_ptr (B, "
                  "n_steps + 1) int64, in_ch (spikes,) int32.")

Options = namedtuple("Options", [
    "p_drop", "noise_amp", "seed",            # hidden dropout, membrane noise, their seed
    "keep_traces",                            # record the hidden V and I of every step
    "train_tau", "train_tau_out"])            # gradients of hidden / output time constants
Options.__doc__ = "Run-time switches of one trial."

SpikeStore = namedtuple("SpikeStore", [
    "sp_ptr", "sp_idx", "sp_imv", "sp_b",     # (B, n_steps + 1), (B, cap) x 3 (sp_b: ALIF only)
    "sp_need", "n_unstored",                  # (B,) entries a sample needed; spikes left out
    "counts", "first_step"])                  # (B, L N + C) spike counts; (B, C) first output spike
SpikeStore.__doc__ = "The stored spikes of a forward pass and its per-sample counters."

Traces = namedtuple("Traces", ["V_out", "I_out", "V_h", "I_h"])
Traces.__doc__ = ("State at the start of every step: V_out (B, n_steps + 1, C), I_out (B, "
                  "n_steps, C), hidden V_h / I_h (B, n_steps, L, N), or empty when not kept.")

LossTerms = namedtuple("LossTerms", [
    "A_out", "force_g", "force_c",            # forcing of the output adjoints: full or g(t) c
    "jump_step", "jump_amount", "fs_term",    # jumps of lambda_V at loss steps / first spikes
    "reg_jump"])                              # (B, L, N) regularisation jumps at hidden spikes
LossTerms.__doc__ = "What the loss and the regularisation feed into the backward pass."

Gradients = namedtuple("Gradients", [
    "dW_in", "dW_fwd", "dW_rec", "dW_out",
    "dtau_m_h", "dtau_s_h", "dtau_m_o", "dtau_s_o",
    "dd_in", "dd_fwd", "dd_rec", "dd_out"])   # delays: empty unless learned
Gradients.__doc__ = ("Gradient accumulators, (K, ...) of the parameter's shape (the CPU's "
                     "chunks); (K, 0, ...) for delays that are not learned.")

# the parameter (key of ``EventPropNetwork.params``) each gradient belongs to, and the field of
# ``Parameters`` that holds each parameter
PARAMETER_OF = dict(zip(Gradients._fields, (
    "w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden", "w_hidden_output",
    "tau_m_hidden", "tau_syn_hidden", "tau_m_output", "tau_syn_output",
    "d_input_hidden", "d_hidden_hidden_fwd", "d_hidden_hidden", "d_hidden_output")))
FIELD_OF = dict(zip(list(PARAMETER_OF.values())[:8], (
    "W_in", "W_fwd", "W_rec", "W_out", "tau_m_h", "tau_s_h", "tau_m_o", "tau_s_o")))
DELAY_GRADIENTS = ("dd_in", "dd_fwd", "dd_rec", "dd_out")
