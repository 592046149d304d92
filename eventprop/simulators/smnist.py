"""Sequential MNIST: the MNIST images presented as sequences of pixel values, encoded
by threshold crossings -> N_HID_LAYER x NUM_HIDDEN hidden neurons -> 10 outputs.

Usage:

    from eventprop.simulators.smnist import p, SMNIST_model
    p["DATA_DIR"] = "data"          # the MNIST files, in DATA_DIR/MNIST/ (see simulator_MNIST)
    model = SMNIST_model(p)
    spike_t, spike_ID, rec_vars_n, rec_vars_s, train_acc, eval_acc = model.train(p)

Presentation (SMNIST_MODE): "pixel" shows one pixel per slot of PIXEL_MS, row by row (784 slots,
one sequence); "row" shows one image row per slot, the 28 columns as 28 parallel sequences
(28 slots). Slot s starts at s * PIXEL_MS.

Encoding (``mnist_data.smnist_events``): with the value before the first slot taken as 0, and the
49 thresholds theta_k = 254 k / 48 (k = 0..48), each sequence drives 99 input neurons:

* neuron k ("up") fires in slot s when x[s-1] <= theta_k < x[s];
* neuron 49 + k ("down") fires in slot s when x[s] <= theta_k < x[s-1];
* neuron 98 fires in every slot with x[s] = 255.

"pixel" mode has 99 inputs, "row" mode 28 x 99 = 2772 (column c drives inputs c * 99 to
c * 99 + 98). The spikes of a mini-batch are computed from the images when it runs.

Defaults are those of the original's (stale) SMNIST simulator, which mirror the SHD simulator, except DT_MS: 1.0 ms instead of 0.1 ms. With one pixel per ms, a 1 ms step gives
every slot its own step, and the 1500 ms trial has 1500 steps instead of 15000, ten times less
work per sample on a CPU. Pixel mode needs TRIAL_MS >= 784 * PIXEL_MS; row mode 28 * PIXEL_MS
(e.g. TRIAL_MS 50). Splits, methods and files are those of ``simulator_MNIST``; the learning rate
follows the SHD schedule (ease-in, then halving on a plateau).
"""
import copy

from eventprop.data import mnist as mnist_data
from eventprop.config import parameters
from eventprop.config import checks
from eventprop import optim
from eventprop.simulators.mnist import mnist_model, optional_digit_list

p = {
    "OUT_DIR": ".",             # folder for every file a run writes
    "NAME": "test",             # prefix of those files
    "DEBUG_HIDDEN_N": False,    # hidden-activity statistics per layer in the results file
    "DT_MS": 1.0,               # the original: 0.1 (see the module docstring)
    "BUILD": True,              # accepted for compatibility; kernels compile on first use
    "TIMING": True,             # accepted for compatibility; seconds per epoch are always logged
    "PROFILE": False,           # accepted for compatibility; no effect
    "TRAIN_DATA_SEED": 123,     # split of the training images, sample order, balancing, dropout
    "TEST_DATA_SEED": 456,      # order of the test images (the first N_TEST are used)
    "MODEL_SEED": None,         # weight initialisation, hetLIF taus, rewiring (None: random)
    "TRIAL_MS": 1500.0,
    "N_MAX_SPIKE": 1500,        # spikes per neuron and trial kept for the backward pass
    "N_BATCH": 32,
    "N_TRAIN": 55000,           # training images (the first of the shuffled training file)
    "N_VALIDATE": 5000,         # validation images of train (the last); 0: no evaluation
    "N_TEST": 10000,            # test images
    "N_EPOCH": 100,
    "SHUFFLE": True,
    "NUM_HIDDEN": 256,
    "RECURRENT": False,
    "N_HID_LAYER": 1,
    "N_INPUT_DELAY": 0,         # delay line: this many delayed copies of the inputs ...
    "INPUT_DELAY": 50.0,        # ... spaced by this many ms
    "TAU_SYN": 5.0,
    "TAU_MEM": 20.0,
    "V_THRESH": 1.0,
    "V_RESET": 0.0,
    "HIDDEN_NEURON_TYPE": "LIF",    # "LIF", "hetLIF", "ALIF"
    "OUTPUT_NEURON_TYPE": "LI",     # "LI", "hetLI"
    "TAU_B": 100.0,             # ALIF adaptation time constant (ms)
    "B_INCR": 0.1,              # ALIF threshold increment per spike
    "B_INIT": 0.0,              # ALIF initial threshold offset (only 0 is supported)
    "INPUT_HIDDEN_MEAN": 0.02,
    "INPUT_HIDDEN_STD": 0.01,
    "HIDDEN_OUTPUT_MEAN": 0.0,
    "HIDDEN_OUTPUT_STD": 0.3,
    "HIDDEN_HIDDEN_MEAN": 0.0,      # recurrent weights
    "HIDDEN_HIDDEN_STD": 0.02,
    "HIDDEN_HIDDENFWD_MEAN": 0.02,  # weights from one hidden layer to the next
    "HIDDEN_HIDDENFWD_STD": 0.01,
    "PDROP_INPUT": 0.1,         # input dropout (deletes spikes)
    "PDROP_HIDDEN": 0.0,        # hidden "dropout" (delays spikes)
    "HIDDEN_NOISE": 0.0,        # membrane noise amplitude in training trials
    "REG_TYPE": "none",         # "none", "simple", "Thomas1"
    "LBD_UPPER": 2e-9,
    "LBD_LOWER": 2e-9,
    "NU_UPPER": 14,
    "RHO_UPPER": 10000.0,
    "GLB_UPPER": 1e-8,
    "AVG_SNSUM": False,
    "REWIRE_SILENT": True,      # rewire at the end of every epoch ...
    "REWIRE_LIFT": 0.0,         # ... lifting input weights by this (0: redraw silent neurons')
    "REWIRE_LIFT_SILENT_ONLY": False,  # lift only silent neurons' inputs (original: all)
    "ETA": 1e-3,
    "ADAM_BETA1": 0.9,
    "ADAM_BETA2": 0.999,
    "ADAM_EPS": 1e-8,
    "LR_EASE_IN_FACTOR": 1.05,
    "EMA_ALPHA1": 0.8,
    "EMA_ALPHA2": 0.95,
    "ETA_FAC": 0.5,
    "MIN_EPOCH_ETA_FIXED": 300,
    "EMA_WHICH": "validation",  # accuracy driving the plateau schedule: "validation", "training"
    "TRAIN_TAU": False,
    "MIN_TAU_M": 3.0,
    "MIN_TAU_SYN": 1.0,
    "TRAIN_TAU_OUTPUT": False,
    "TRAIN_W": True,            # train input->hidden and hidden->hidden weights
    "TRAIN_W_OUTPUT": True,     # train hidden->output weights
    "W_OUTPUT_EPOCH_TRIAL": [],     # [epoch, trial] pairs: weight snapshots
    "TAU_OUTPUT_EPOCH_TRIAL": [],   # [epoch, trial] pairs: time-constant snapshots
    "SPK_REC_STEPS": None,      # accepted for compatibility; recordings have no step limit
    "REC_SPIKES": [],           # "input", "hidden0", "hidden1", ..., "output"
    "REC_NEURONS": [],          # (population, "V" or "I")
    "REC_SYNAPSES": [],         # (projection, "w")
    "REC_SPIKES_EPOCH_TRIAL": [],   # [epoch, trial] pairs to record (empty: none)
    "REC_NEURONS_EPOCH_TRIAL": [],
    "REC_SYNAPSES_EPOCH_TRIAL": [],
    "WRITE_TO_DISK": True,      # save recordings
    "LOAD_LAST": False,         # resume from checkpoint "last" (test: use its weights)
    "LOAD_BEST": False,         # ... from checkpoint "best"
    "CHECKPOINT_NAME": None,    # prefix of the checkpoint to load (None: NAME)
    "CHECKPOINT": True,         # write checkpoint "last" after every epoch
    "CHECKPOINT_BEST": "neither",   # checkpoint "best" on improved "validation" / "training"
    "LOSS_TYPE": "sum_weigh_exp",
    "TAU_ACCUMULATOR": 20.0,    # sum_weigh_input
    "TAU_0": 0.5,
    "TAU_1": 6.4,
    "ALPHA": 3e-3,
    "EVALUATION": "random",     # accepted for compatibility; only "random" (the split above)
    "SPEAKER_LEFT": 0,          # accepted for compatibility; no effect
    "CUDA_VISIBLE_DEVICES": False,  # BACKEND cuda: False: manual_GPU or the freest GPU
    "REDUCED_CLASSES": None,    # list of digits to keep (relabelled 0, 1, ... in this order)
    "AUGMENTATION": {"NORMALISE_SPIKE_NUMBER": False},  # accepted for compatibility; none act
    "COLLECT_CONFUSION": False,
    "REC_PREDICTIONS": False,
    "RESCALE_T": 1.0,           # accepted for compatibility; only 1.0
    "RESCALE_X": 1.0,           # accepted for compatibility; only 1.0
    "BALANCE_TRAIN_CLASSES": False,
    "BALANCE_EVAL_CLASSES": False,
    "DATA_SET": "SMNIST",       # accepted for compatibility; no effect
    "DATA_BUFFER_NAME": None,   # accepted for compatibility; no effect
    "TEST_ST_INTEGRITY": False,  # accepted for compatibility; no effect
    "TAU_MEM_OUTPUT": 20.0,     # accepted for compatibility; outputs use TAU_MEM (as the original)
    "DOWNLOAD_SHD": False,      # accepted for compatibility; see DOWNLOAD
    "SMNIST_MODE": "pixel",     # "pixel": one pixel per slot; "row": one row per slot
    "PIXEL_MS": 1.0,            # length of a slot (ms)
    "N_FOLDS": 5,               # cross_validate: folds of the N_TRAIN + N_VALIDATE images
    "FOLDS": None,              # ... and which of them to run (None: all; e.g. [2] for one)
    "DATA_DIR": "data",         # the MNIST files are in DATA_DIR/MNIST/
    "DOWNLOAD": False,          # fetch missing files with the mnist package (needs internet)
    "DTYPE": "float32",         # "float32" or "float64"
    "BACKEND": "auto",         # "auto" (the GPU when one is usable, else the CPU), "cpu", "cuda"
    "PROGRESS": True,           # progress bar and one line per epoch
}


def no_augmentation(value, p=None):
    if value not in ({}, {"NORMALISE_SPIKE_NUMBER": False}):
        return ("augmentations act on SHD's channel layout and are not available for SMNIST; "
                "use {} or {'NORMALISE_SPIKE_NUMBER': False}")


def only_one(value, p=None):
    if value != 1.0 or isinstance(value, bool):
        return "only 1.0 (the SMNIST encoding has no rescaling)"


# The defaults as shipped: users edit p itself, so p cannot serve to detect unknown keys.
DEFAULTS = copy.deepcopy(p)

RULES = parameters.rules_for(DEFAULTS, {
    "EVALUATION": checks.one_of("random"), "SPEAKER_LEFT": checks.anything,
    "REDUCED_CLASSES": optional_digit_list, "AUGMENTATION": no_augmentation,
    "RESCALE_T": only_one, "RESCALE_X": only_one, "DATA_SET": checks.anything,
    "DATA_BUFFER_NAME": checks.anything, "TEST_ST_INTEGRITY": checks.anything,
    "TAU_MEM_OUTPUT": checks.anything, "DOWNLOAD_SHD": checks.anything,
    "SMNIST_MODE": checks.one_of(*mnist_data.SMNIST_MODES), "PIXEL_MS": checks.positive,
})

N_SLOTS = {"pixel": mnist_data.N_PIXELS, "row": mnist_data.SIDE}


def validate(params):
    """The full parameter dictionary: defaults filled in, every key and value checked."""
    full = parameters.check(params, DEFAULTS, RULES)
    if full["PIXEL_MS"] < full["DT_MS"]:
        raise ValueError(f"invalid p['PIXEL_MS'] = {full['PIXEL_MS']}: must be at least DT_MS "
                         f"= {full['DT_MS']} (every slot needs its own step)")
    n_slots = N_SLOTS[full["SMNIST_MODE"]]
    if full["TRIAL_MS"] < n_slots * full["PIXEL_MS"]:
        raise ValueError(f"invalid p['TRIAL_MS'] = {full['TRIAL_MS']}: SMNIST_MODE "
                         f"{full['SMNIST_MODE']!r} presents {n_slots} slots of PIXEL_MS = "
                         f"{full['PIXEL_MS']} ms; TRIAL_MS must be at least "
                         f"{n_slots * full['PIXEL_MS']:g}")
    return full


class SMNIST_model(mnist_model):
    """Sequential MNIST simulator: ``train``, ``train_test``, ``test``, ``cross_validate``, on the
    splits of ``simulator_MNIST.mnist_model``."""

    def validate(self, params):
        return validate(params)

    def encoder(self, p):
        return mnist_data.SMNISTEncoder(p["SMNIST_MODE"], p["PIXEL_MS"], p["DT_MS"],
                                        p["TRIAL_MS"])

    def encoding_key(self, p):
        return (p["SMNIST_MODE"], p["PIXEL_MS"], p["DT_MS"], p["TRIAL_MS"])

    def make_schedule(self, p):
        return optim.LearningRateSchedule(p["ETA"], p["LR_EASE_IN_FACTOR"], p["EMA_ALPHA1"],
                                          p["EMA_ALPHA2"], p["ETA_FAC"],
                                          p["MIN_EPOCH_ETA_FIXED"])
