"""Parameters of the sequential-MNIST simulator (``eventprop.simulators.smnist``): every key of
its ``p``, in order, as a shared key of ``eventprop.config.shared`` (with this simulator's
default where it differs) or as a key of its own. Many keys are accepted only for compatibility
with the original's SMNIST script, which copied the SHD simulator's dictionary."""
from eventprop.config import checks
from eventprop.config.mnist import REDUCED_DIGITS
from eventprop.config.parameter import Parameter as P, shared
from eventprop.config.parameters import resolve
from eventprop.data import mnist as mnist_data


@checks.valid_values("{} or {'NORMALISE_SPIKE_NUMBER': False}")
def no_augmentation(value, p=None):
    if value not in ({}, {"NORMALISE_SPIKE_NUMBER": False}):
        return ("augmentations act on SHD's channel layout and are not available for SMNIST; "
                "use {} or {'NORMALISE_SPIKE_NUMBER': False}")


@checks.valid_values("1.0 only")
def only_one(value, p=None):
    if value != 1.0 or isinstance(value, bool):
        return "only 1.0 (the SMNIST encoding has no rescaling)"


# the keys of p, in order: shared(), shared(default=...) or P(default, rule, meaning, unit)
TABLE = {
    "OUT_DIR": shared(),
    "NAME": shared(),
    "DEBUG_HIDDEN_N": shared(),
    "DT_MS": shared(),
    "BUILD": shared(),
    "TIMING": shared(),
    "PROFILE": shared(),
    "TRAIN_DATA_SEED": shared(),
    "TEST_DATA_SEED": shared(),
    "MODEL_SEED": shared(),
    "TRIAL_MS": shared(default=1500.0),   # pixel mode needs >= 784 PIXEL_MS
    "N_MAX_SPIKE": shared(),
    "N_BATCH": shared(),
    "N_TRAIN": shared(default=55000),
    "N_VALIDATE": shared(default=5000),
    "N_TEST": shared(),
    "N_EPOCH": shared(),
    "SHUFFLE": shared(),
    "NUM_HIDDEN": shared(),
    "RECURRENT": shared(),
    "N_HID_LAYER": shared(),
    "N_INPUT_DELAY": shared(),
    "INPUT_DELAY": shared(),
    "TAU_SYN": shared(),
    "TAU_MEM": shared(),
    "V_THRESH": shared(),
    "V_RESET": shared(),
    "HIDDEN_NEURON_TYPE": shared(),
    "OUTPUT_NEURON_TYPE": shared(),
    "TAU_B": shared(),
    "B_INCR": shared(),
    "B_INIT": shared(),
    "INPUT_HIDDEN_MEAN": shared(),
    "INPUT_HIDDEN_STD": shared(),
    "HIDDEN_OUTPUT_MEAN": shared(),
    "HIDDEN_OUTPUT_STD": shared(),
    "HIDDEN_HIDDEN_MEAN": shared(),
    "HIDDEN_HIDDEN_STD": shared(),
    "HIDDEN_HIDDENFWD_MEAN": shared(),
    "HIDDEN_HIDDENFWD_STD": shared(),
    "PDROP_INPUT": shared(),
    "PDROP_HIDDEN": shared(),
    "HIDDEN_NOISE": shared(),
    "REG_TYPE": shared(),
    "LBD_UPPER": shared(),
    "LBD_LOWER": shared(),
    "NU_UPPER": shared(),
    "RHO_UPPER": shared(),
    "GLB_UPPER": shared(),
    "AVG_SNSUM": shared(),
    "REWIRE_SILENT": shared(default=True),   # as the original SMNIST script
    "REWIRE_LIFT": shared(),
    "REWIRE_LIFT_SILENT_ONLY": shared(),
    "ETA": shared(),
    "ADAM_BETA1": shared(),
    "ADAM_BETA2": shared(),
    "ADAM_EPS": shared(),
    "PIPELINE": shared(),
    "LR_EASE_IN_FACTOR": shared(),
    "EMA_ALPHA1": shared(),
    "EMA_ALPHA2": shared(),
    "ETA_FAC": shared(),
    "MIN_EPOCH_ETA_FIXED": shared(),
    "EMA_WHICH": shared(),
    "TRAIN_TAU": shared(),
    "MIN_TAU_M": shared(),
    "MIN_TAU_SYN": shared(),
    "TRAIN_TAU_OUTPUT": shared(),
    "DELAYS": shared(),
    "MAX_DELAY_MS": shared(),
    "TRAIN_DELAYS": shared(),
    "ETA_DELAY": shared(),
    "CONNECTIVITY": shared(),
    "TRAIN_W": shared(),
    "TRAIN_W_OUTPUT": shared(),
    "W_OUTPUT_EPOCH_TRIAL": shared(),
    "TAU_OUTPUT_EPOCH_TRIAL": shared(),
    "SPK_REC_STEPS": shared(),
    "REC_SPIKES": shared(),
    "REC_NEURONS": shared(),
    "REC_SYNAPSES": shared(),
    "REC_SPIKES_EPOCH_TRIAL": shared(),
    "REC_NEURONS_EPOCH_TRIAL": shared(),
    "REC_SYNAPSES_EPOCH_TRIAL": shared(),
    "WRITE_TO_DISK": shared(),
    "LOAD_LAST": shared(),
    "LOAD_BEST": shared(),
    "CHECKPOINT_NAME": shared(),
    "CHECKPOINT": shared(),
    "CHECKPOINT_BEST": shared(),
    "LOSS_TYPE": shared(),
    "TAU_ACCUMULATOR": shared(),
    "TAU_0": shared(default=0.5),
    "TAU_1": shared(default=6.4),
    "ALPHA": shared(default=0.003),
    "EVALUATION": P("random", checks.one_of("random"),
                    "accepted for compatibility; only \"random\" (the split of train)", ""),
    "SPEAKER_LEFT": P(0, checks.anything, "accepted for compatibility; no effect", ""),
    "CUDA_VISIBLE_DEVICES": shared(default=False),
    "REDUCED_CLASSES": REDUCED_DIGITS,
    "AUGMENTATION": P({"NORMALISE_SPIKE_NUMBER": False}, no_augmentation,
                      "accepted for compatibility; SHD's augmentations act on its channel layout",
                      ""),
    "COLLECT_CONFUSION": shared(),
    "REC_PREDICTIONS": shared(),
    "RESCALE_T": P(1.0, only_one, "accepted for compatibility; only 1.0", ""),
    "RESCALE_X": P(1.0, only_one, "accepted for compatibility; only 1.0", ""),
    "BALANCE_TRAIN_CLASSES": shared(),
    "BALANCE_EVAL_CLASSES": shared(),
    "DATA_SET": P("SMNIST", checks.anything, "accepted for compatibility; no effect", ""),
    "DATA_BUFFER_NAME": shared(),
    "TEST_ST_INTEGRITY": shared(),
    "TAU_MEM_OUTPUT": P(20.0, checks.anything,
                        "accepted for compatibility; no effect (outputs use TAU_MEM, as in the "
                        "original)", "ms"),
    "DOWNLOAD_SHD": P(False, checks.anything,
                      "accepted for compatibility; no effect (see DOWNLOAD)", ""),
    "SMNIST_MODE": P("pixel", checks.one_of(*mnist_data.SMNIST_MODES),
                     "pixel: one pixel per slot (784 slots, 99 inputs); row: one image row per "
                     "slot (28 slots, 28 × 99 inputs)", ""),
    "PIXEL_MS": P(1.0, checks.positive, "length of a slot; at least DT_MS", "ms"),
    "N_FOLDS": shared(),
    "FOLDS": shared(),
    "DATA_DIR": shared(),
    "DOWNLOAD": shared(),
    "DTYPE": shared(),
    "BACKEND": shared(),
    "PROGRESS": shared(),
}

PARAMETERS = resolve(TABLE)
