"""The network of a simulator's parameter dictionary, and the names of the parameters it trains."""
import numpy as np

from eventprop.config.shared import SHARED
from eventprop.network import EventPropNetwork


def _value(p, key):
    """p[key], or the shared default of a key the simulator does not have (``config.shared``:
    the value that leaves its feature off)."""
    return p[key] if key in p else SHARED[key].default


def build_network(p, n_input, n_output, init, manual_gpu=None):
    """An ``EventPropNetwork`` from a simulator's parameter dictionary. ``init`` maps projection
    name ("input_hidden", "hidden_hidden", "hidden_hiddenfwd", "hidden_output") to (mean, std)."""
    g = lambda key: _value(p, key)
    return EventPropNetwork(
        n_input, p["NUM_HIDDEN"], n_output, n_layers=g("N_HID_LAYER"),
        recurrent=g("RECURRENT"), hidden_type=g("HIDDEN_NEURON_TYPE"),
        output_type=g("OUTPUT_NEURON_TYPE"), dt=p["DT_MS"], trial_ms=p["TRIAL_MS"],
        tau_mem=p["TAU_MEM"], tau_syn=p["TAU_SYN"], v_thresh=p["V_THRESH"],
        v_reset=p["V_RESET"], tau_b=g("TAU_B"), b_incr=g("B_INCR"),
        min_tau_m=g("MIN_TAU_M"), min_tau_syn=g("MIN_TAU_SYN"),
        loss_type=p["LOSS_TYPE"], tau_0=g("TAU_0"), tau_1=g("TAU_1"), alpha=g("ALPHA"),
        tau_accumulator=g("TAU_ACCUMULATOR"), reg_type=g("REG_TYPE"),
        lbd_upper=g("LBD_UPPER"), lbd_lower=g("LBD_LOWER"), nu_upper=g("NU_UPPER"),
        avg_snsum=g("AVG_SNSUM"), rho_upper=g("RHO_UPPER"), glb_upper=g("GLB_UPPER"),
        n_max_spike=p["N_MAX_SPIKE"], train_tau=g("TRAIN_TAU"),
        train_tau_output=g("TRAIN_TAU_OUTPUT"), n_batch=p["N_BATCH"], init=init,
        seed=g("MODEL_SEED"), dtype=np.dtype(g("DTYPE")), backend=g("BACKEND"),
        cuda_visible_devices=g("CUDA_VISIBLE_DEVICES"), manual_gpu=manual_gpu)


def trainable_parameters(net, p):
    """Names of the parameters Adam updates: weights into and between hidden layers (TRAIN_W),
    hidden->output weights (TRAIN_W_OUTPUT), hidden and output time constants (TRAIN_TAU,
    TRAIN_TAU_OUTPUT)."""
    names = []
    if _value(p, "TRAIN_W"):
        names += [k for k in ("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden")
                  if net.params[k].size]
    if _value(p, "TRAIN_W_OUTPUT"):
        names.append("w_hidden_output")
    if _value(p, "TRAIN_TAU"):
        names += ["tau_m_hidden", "tau_syn_hidden"]
    if _value(p, "TRAIN_TAU_OUTPUT"):
        names += ["tau_m_output", "tau_syn_output"]
    return names
