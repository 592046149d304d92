"""The network of a simulator's parameter dictionary, and the names of the parameters it trains."""
import numpy as np

from eventprop.network import EventPropNetwork


def build_network(p, n_input, n_output, init, manual_gpu=None):
    """An ``EventPropNetwork`` from a simulator's parameter dictionary. ``init`` maps projection
    name ("input_hidden", "hidden_hidden", "hidden_hiddenfwd", "hidden_output") to (mean, std).
    Keys a simulator does not have take the value that switches their feature off."""
    g = p.get
    return EventPropNetwork(
        n_input, p["NUM_HIDDEN"], n_output, n_layers=g("N_HID_LAYER", 1),
        recurrent=g("RECURRENT", False), hidden_type=g("HIDDEN_NEURON_TYPE", "LIF"),
        output_type=g("OUTPUT_NEURON_TYPE", "LI"), dt=p["DT_MS"], trial_ms=p["TRIAL_MS"],
        tau_mem=p["TAU_MEM"], tau_syn=p["TAU_SYN"], v_thresh=p["V_THRESH"],
        v_reset=p["V_RESET"], tau_b=g("TAU_B", 100.0), b_incr=g("B_INCR", 0.1),
        min_tau_m=g("MIN_TAU_M", 3.0), min_tau_syn=g("MIN_TAU_SYN", 1.0),
        loss_type=p["LOSS_TYPE"], tau_0=g("TAU_0", 1.0), tau_1=g("TAU_1", 100.0),
        alpha=g("ALPHA", 5e-5), tau_accumulator=g("TAU_ACCUMULATOR", 20.0),
        reg_type=g("REG_TYPE", "none"), lbd_upper=g("LBD_UPPER", 0.0),
        lbd_lower=g("LBD_LOWER", 0.0), nu_upper=g("NU_UPPER", 0.0),
        avg_snsum=g("AVG_SNSUM", False), rho_upper=g("RHO_UPPER", 0.0),
        glb_upper=g("GLB_UPPER", 0.0), n_max_spike=p["N_MAX_SPIKE"],
        train_tau=g("TRAIN_TAU", False), train_tau_output=g("TRAIN_TAU_OUTPUT", False),
        n_batch=p["N_BATCH"], init=init, seed=p.get("MODEL_SEED"),
        dtype=np.dtype(g("DTYPE", "float32")), backend=g("BACKEND", "auto"),
        cuda_visible_devices=g("CUDA_VISIBLE_DEVICES", True), manual_gpu=manual_gpu)


def trainable_parameters(net, p):
    """Names of the parameters Adam updates: weights into and between hidden layers (TRAIN_W),
    hidden->output weights (TRAIN_W_OUTPUT), hidden and output time constants (TRAIN_TAU,
    TRAIN_TAU_OUTPUT)."""
    names = []
    if p.get("TRAIN_W", True):
        names += [k for k in ("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden")
                  if net.params[k].size]
    if p.get("TRAIN_W_OUTPUT", True):
        names.append("w_hidden_output")
    if p.get("TRAIN_TAU", False):
        names += ["tau_m_hidden", "tau_syn_hidden"]
    if p.get("TRAIN_TAU_OUTPUT", False):
        names += ["tau_m_output", "tau_syn_output"]
    return names
