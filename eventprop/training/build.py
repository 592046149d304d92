"""The network, trainer and learning-rate schedule of a simulator's parameter dictionary, and the
names of the parameters it trains."""
import numpy as np

from eventprop import optim, projections
from eventprop.config.shared import SHARED
from eventprop.network import EventPropNetwork
from eventprop.training.trainer import Trainer

# projection name of build_network -> key prefix of its initial mean and std in p
INIT_KEYS = {"input_hidden": "INPUT_HIDDEN", "hidden_hidden": "HIDDEN_HIDDEN",
             "hidden_hiddenfwd": "HIDDEN_HIDDENFWD", "hidden_output": "HIDDEN_OUTPUT"}


def setting(p, key):
    """p[key], or the shared default of a key the simulator does not have (``config.shared``:
    the value that leaves its feature off)."""
    return p[key] if key in p else SHARED[key].default


def weight_init(p):
    """(mean, std) of the initial weights of every projection whose *_MEAN and *_STD keys p has."""
    return {name: (p[f"{key}_MEAN"], p[f"{key}_STD"]) for name, key in INIT_KEYS.items()
            if f"{key}_MEAN" in p}


def build_trainer(p, n_input, n_output, manual_gpu=None, trainable=None):
    """The network of ``p`` (``build_network`` with ``weight_init(p)``) and its Adam
    (ADAM_BETA1, ADAM_BETA2, ADAM_EPS), training ``trainable`` (default:
    ``trainable_parameters``)."""
    net = build_network(p, n_input, n_output, weight_init(p), manual_gpu=manual_gpu)
    if trainable is None:
        trainable = trainable_parameters(net, p)
    rates = {projections.DELAY_OF[name]: setting(p, "ETA_DELAY") for name in net.delays}
    return Trainer(net, p["ADAM_BETA1"], p["ADAM_BETA2"], p["ADAM_EPS"], trainable=trainable,
                   rates=rates, pipeline=setting(p, "PIPELINE"))


def plateau_schedule(p):
    """The ease-in and plateau learning-rate schedule of p (ETA, LR_EASE_IN_FACTOR, EMA_ALPHA1,
    EMA_ALPHA2, ETA_FAC, MIN_EPOCH_ETA_FIXED)."""
    return optim.LearningRateSchedule(p["ETA"], p["LR_EASE_IN_FACTOR"], p["EMA_ALPHA1"],
                                      p["EMA_ALPHA2"], p["ETA_FAC"], p["MIN_EPOCH_ETA_FIXED"])


def build_network(p, n_input, n_output, init, manual_gpu=None):
    """An ``EventPropNetwork`` from a simulator's parameter dictionary. ``init`` maps projection
    name ("input_hidden", "hidden_hidden", "hidden_hiddenfwd", "hidden_output") to (mean, std)."""
    g = lambda key: setting(p, key)
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
        cuda_visible_devices=g("CUDA_VISIBLE_DEVICES"), manual_gpu=manual_gpu,
        delays=g("DELAYS"), max_delay=g("MAX_DELAY_MS"), train_delays=g("TRAIN_DELAYS"),
        connectivity=g("CONNECTIVITY"))


def trainable_parameters(net, p):
    """Names of the parameters Adam updates: weights into and between hidden layers (TRAIN_W),
    hidden->output weights (TRAIN_W_OUTPUT), hidden and output time constants (TRAIN_TAU,
    TRAIN_TAU_OUTPUT), the delays of the projections in DELAYS (TRAIN_DELAYS)."""
    names = []
    if setting(p, "TRAIN_W"):
        names += [k for k in ("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden")
                  if net.params[k].size]
    if setting(p, "TRAIN_W_OUTPUT"):
        names.append("w_hidden_output")
    if setting(p, "TRAIN_TAU"):
        names += ["tau_m_hidden", "tau_syn_hidden"]
    if setting(p, "TRAIN_TAU_OUTPUT"):
        names += ["tau_m_output", "tau_syn_output"]
    if setting(p, "TRAIN_DELAYS"):
        names += [projections.DELAY_OF[name] for name in net.delays]
    return names
