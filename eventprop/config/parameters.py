"""Validation rules of the parameter keys that mean the same in every simulator that has them.

A simulator's RULES = ``rules_for(DEFAULTS, own)``: the shared rule of each of its keys, replaced
or completed by its ``own`` rules; every key of its defaults must end up with a rule.
"""
from eventprop import losses
from eventprop.config import checks

SHARED_RULES = {
    "BACKEND": checks.one_of("cpu", "cuda", "auto"),
    "REDUCED_CLASSES": checks.optional_class_list,
    "OUT_DIR": checks.string, "NAME": checks.string, "DEBUG_HIDDEN_N": checks.boolean,
    "DT_MS": checks.positive, "BUILD": checks.boolean, "TIMING": checks.boolean,
    "PROFILE": checks.boolean, "TRAIN_DATA_SEED": checks.optional_seed,
    "TEST_DATA_SEED": checks.optional_seed, "MODEL_SEED": checks.optional_seed,
    "TRIAL_MS": checks.positive, "N_MAX_SPIKE": checks.integer_at_least(1),
    "N_BATCH": checks.integer_at_least(1), "N_TRAIN": checks.integer_at_least(1),
    "N_VALIDATE": checks.integer_at_least(0), "N_EPOCH": checks.integer_at_least(0),
    "SHUFFLE": checks.boolean, "NUM_HIDDEN": checks.integer_at_least(1), "RECURRENT": checks.boolean,
    "N_HID_LAYER": checks.integer_at_least(1), "N_INPUT_DELAY": checks.integer_at_least(0),
    "INPUT_DELAY": checks.non_negative, "TAU_SYN": checks.positive, "TAU_MEM": checks.positive,
    "V_THRESH": checks.number, "V_RESET": checks.number,
    "HIDDEN_NEURON_TYPE": checks.one_of("LIF", "hetLIF", "ALIF"),
    "OUTPUT_NEURON_TYPE": checks.one_of("LI", "hetLI"), "TAU_B": checks.positive,
    "B_INCR": checks.number,
    "B_INIT": lambda v, p=None: None if v == 0 else "only 0.0 is supported",
    "INPUT_HIDDEN_MEAN": checks.number, "INPUT_HIDDEN_STD": checks.non_negative,
    "HIDDEN_OUTPUT_MEAN": checks.number, "HIDDEN_OUTPUT_STD": checks.non_negative,
    "HIDDEN_HIDDEN_MEAN": checks.number, "HIDDEN_HIDDEN_STD": checks.non_negative,
    "HIDDEN_HIDDENFWD_MEAN": checks.number, "HIDDEN_HIDDENFWD_STD": checks.non_negative,
    "PDROP_INPUT": checks.probability, "PDROP_HIDDEN": checks.probability,
    "HIDDEN_NOISE": checks.non_negative, "REG_TYPE": checks.one_of("none", "simple", "Thomas1"),
    "LBD_UPPER": checks.non_negative, "LBD_LOWER": checks.non_negative,
    "NU_UPPER": checks.non_negative, "RHO_UPPER": checks.non_negative,
    "GLB_UPPER": checks.non_negative, "AVG_SNSUM": checks.boolean, "REWIRE_SILENT": checks.boolean,
    "REWIRE_LIFT": checks.number, "REWIRE_LIFT_SILENT_ONLY": checks.boolean,
    "ETA": checks.non_negative, "ADAM_BETA1": checks.probability, "ADAM_BETA2": checks.probability,
    "ADAM_EPS": checks.positive, "LR_EASE_IN_FACTOR": checks.positive,
    "EMA_ALPHA1": checks.probability, "EMA_ALPHA2": checks.probability, "ETA_FAC": checks.positive,
    "MIN_EPOCH_ETA_FIXED": checks.integer_at_least(0),
    "EMA_WHICH": checks.one_of("validation", "training"), "TRAIN_TAU": checks.boolean,
    "MIN_TAU_M": checks.positive, "MIN_TAU_SYN": checks.positive, "TRAIN_TAU_OUTPUT": checks.boolean,
    "TRAIN_W": checks.boolean, "TRAIN_W_OUTPUT": checks.boolean,
    "W_OUTPUT_EPOCH_TRIAL": checks.list_of_pairs, "TAU_OUTPUT_EPOCH_TRIAL": checks.list_of_pairs,
    "SPK_REC_STEPS": checks.anything, "REC_SPIKES": checks.list_of(str),
    "REC_NEURONS": checks.list_of((list, tuple)), "REC_SYNAPSES": checks.list_of((list, tuple)),
    "REC_SPIKES_EPOCH_TRIAL": checks.list_of_pairs, "REC_NEURONS_EPOCH_TRIAL": checks.list_of_pairs,
    "REC_SYNAPSES_EPOCH_TRIAL": checks.list_of_pairs, "WRITE_TO_DISK": checks.boolean,
    "LOAD_LAST": checks.boolean, "LOAD_BEST": checks.boolean,
    "CHECKPOINT_NAME": checks.optional_string, "CHECKPOINT": checks.boolean,
    "CHECKPOINT_BEST": checks.one_of("neither", "validation", "training"),
    "LOSS_TYPE": checks.one_of(*losses.LOSS_TYPES), "TAU_ACCUMULATOR": checks.positive,
    "TAU_0": checks.positive, "TAU_1": checks.positive, "ALPHA": checks.non_negative,
    "CUDA_VISIBLE_DEVICES": checks.anything, "COLLECT_CONFUSION": checks.boolean,
    "REC_PREDICTIONS": checks.boolean, "BALANCE_TRAIN_CLASSES": checks.boolean,
    "BALANCE_EVAL_CLASSES": checks.boolean, "DATA_DIR": checks.string,
    "CACHE_DIR": checks.optional_string, "DOWNLOAD": checks.boolean,
    "DTYPE": checks.one_of("float32", "float64"), "PROGRESS": checks.boolean,
    "N_TEST": checks.integer_at_least(1), "N_FOLDS": checks.integer_at_least(2),
    "FOLDS": checks.fold_list,
}


def check(params, defaults, rules):
    """The full parameter dictionary: ``checks.check_params`` (defaults filled in, every key and
    value checked), then the checks across keys every simulator needs: V_THRESH above V_RESET,
    a trial of at least two steps."""
    full = checks.check_params(params, defaults, rules)
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
