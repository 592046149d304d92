"""Validation rules of the parameter keys that mean the same in every simulator that has them.

A simulator's RULES = ``rules_for(DEFAULTS, own)``: the shared rule of each of its keys, replaced
or completed by its ``own`` rules; every key of its defaults must end up with a rule.
"""
import losses
import utils

SHARED_RULES = {
    "BACKEND": utils.one_of("cpu", "cuda", "auto"),
    "REDUCED_CLASSES": utils.optional_class_list,
    "OUT_DIR": utils.string, "NAME": utils.string, "DEBUG_HIDDEN_N": utils.boolean,
    "DT_MS": utils.positive, "BUILD": utils.boolean, "TIMING": utils.boolean,
    "PROFILE": utils.boolean, "TRAIN_DATA_SEED": utils.optional_seed,
    "TEST_DATA_SEED": utils.optional_seed, "MODEL_SEED": utils.optional_seed,
    "TRIAL_MS": utils.positive, "N_MAX_SPIKE": utils.integer_at_least(1),
    "N_BATCH": utils.integer_at_least(1), "N_TRAIN": utils.integer_at_least(1),
    "N_VALIDATE": utils.integer_at_least(0), "N_EPOCH": utils.integer_at_least(0),
    "SHUFFLE": utils.boolean, "NUM_HIDDEN": utils.integer_at_least(1), "RECURRENT": utils.boolean,
    "N_HID_LAYER": utils.integer_at_least(1), "N_INPUT_DELAY": utils.integer_at_least(0),
    "INPUT_DELAY": utils.non_negative, "TAU_SYN": utils.positive, "TAU_MEM": utils.positive,
    "V_THRESH": utils.number, "V_RESET": utils.number,
    "HIDDEN_NEURON_TYPE": utils.one_of("LIF", "hetLIF", "ALIF"),
    "OUTPUT_NEURON_TYPE": utils.one_of("LI", "hetLI"), "TAU_B": utils.positive,
    "B_INCR": utils.number,
    "B_INIT": lambda v, p=None: None if v == 0 else "only 0.0 is supported",
    "INPUT_HIDDEN_MEAN": utils.number, "INPUT_HIDDEN_STD": utils.non_negative,
    "HIDDEN_OUTPUT_MEAN": utils.number, "HIDDEN_OUTPUT_STD": utils.non_negative,
    "HIDDEN_HIDDEN_MEAN": utils.number, "HIDDEN_HIDDEN_STD": utils.non_negative,
    "HIDDEN_HIDDENFWD_MEAN": utils.number, "HIDDEN_HIDDENFWD_STD": utils.non_negative,
    "PDROP_INPUT": utils.probability, "PDROP_HIDDEN": utils.probability,
    "HIDDEN_NOISE": utils.non_negative, "REG_TYPE": utils.one_of("none", "simple", "Thomas1"),
    "LBD_UPPER": utils.non_negative, "LBD_LOWER": utils.non_negative,
    "NU_UPPER": utils.non_negative, "RHO_UPPER": utils.non_negative,
    "GLB_UPPER": utils.non_negative, "AVG_SNSUM": utils.boolean, "REWIRE_SILENT": utils.boolean,
    "REWIRE_LIFT": utils.number, "REWIRE_LIFT_SILENT_ONLY": utils.boolean,
    "ETA": utils.non_negative, "ADAM_BETA1": utils.probability, "ADAM_BETA2": utils.probability,
    "ADAM_EPS": utils.positive, "LR_EASE_IN_FACTOR": utils.positive,
    "EMA_ALPHA1": utils.probability, "EMA_ALPHA2": utils.probability, "ETA_FAC": utils.positive,
    "MIN_EPOCH_ETA_FIXED": utils.integer_at_least(0),
    "EMA_WHICH": utils.one_of("validation", "training"), "TRAIN_TAU": utils.boolean,
    "MIN_TAU_M": utils.positive, "MIN_TAU_SYN": utils.positive, "TRAIN_TAU_OUTPUT": utils.boolean,
    "TRAIN_W": utils.boolean, "TRAIN_W_OUTPUT": utils.boolean,
    "W_OUTPUT_EPOCH_TRIAL": utils.list_of_pairs, "TAU_OUTPUT_EPOCH_TRIAL": utils.list_of_pairs,
    "SPK_REC_STEPS": utils.anything, "REC_SPIKES": utils.list_of(str),
    "REC_NEURONS": utils.list_of((list, tuple)), "REC_SYNAPSES": utils.list_of((list, tuple)),
    "REC_SPIKES_EPOCH_TRIAL": utils.list_of_pairs, "REC_NEURONS_EPOCH_TRIAL": utils.list_of_pairs,
    "REC_SYNAPSES_EPOCH_TRIAL": utils.list_of_pairs, "WRITE_TO_DISK": utils.boolean,
    "LOAD_LAST": utils.boolean, "LOAD_BEST": utils.boolean,
    "CHECKPOINT_NAME": utils.optional_string, "CHECKPOINT": utils.boolean,
    "CHECKPOINT_BEST": utils.one_of("neither", "validation", "training"),
    "LOSS_TYPE": utils.one_of(*losses.LOSS_TYPES), "TAU_ACCUMULATOR": utils.positive,
    "TAU_0": utils.positive, "TAU_1": utils.positive, "ALPHA": utils.non_negative,
    "CUDA_VISIBLE_DEVICES": utils.anything, "COLLECT_CONFUSION": utils.boolean,
    "REC_PREDICTIONS": utils.boolean, "BALANCE_TRAIN_CLASSES": utils.boolean,
    "BALANCE_EVAL_CLASSES": utils.boolean, "DATA_DIR": utils.string,
    "CACHE_DIR": utils.optional_string, "DOWNLOAD": utils.boolean,
    "DTYPE": utils.one_of("float32", "float64"), "PROGRESS": utils.boolean,
    "N_TEST": utils.integer_at_least(1), "N_FOLDS": utils.integer_at_least(2),
    "FOLDS": utils.fold_list,
}


def check(params, defaults, rules):
    """The full parameter dictionary: ``utils.check_params`` (defaults filled in, every key and
    value checked), then the checks across keys every simulator needs: V_THRESH above V_RESET,
    a trial of at least two steps."""
    full = utils.check_params(params, defaults, rules)
    if full["V_THRESH"] <= full["V_RESET"]:
        raise ValueError(f"invalid p['V_THRESH'] = {full['V_THRESH']}: must exceed V_RESET")
    if full["TRIAL_MS"] < 2 * full["DT_MS"]:
        raise ValueError(f"invalid p['TRIAL_MS'] = {full['TRIAL_MS']}: must be at least 2 DT_MS")
    return full


def rules_for(defaults, own):
    """Rules for every key of ``defaults``: ``own`` first, else the shared rule."""
    rules = {key: own[key] if key in own else SHARED_RULES.get(key) for key in defaults}
    missing = [key for key, rule in rules.items() if rule is None]
    if missing:
        raise KeyError(f"no validation rule for {missing}")
    return rules
