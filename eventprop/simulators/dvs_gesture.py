"""DVS128 Gesture (Amir et al. 2017, 11 classes): the event camera's 128 x 128 pixels downsampled
to 32 x 32, both polarities, 2048 input channels (x (N_INPUT_DELAY + 1) with a delay line) ->
N_HID_LAYER x NUM_HIDDEN hidden neurons (optionally recurrent) -> one output neuron per class.

Usage, as for SHD:

    from eventprop.simulators.dvs_gesture import p, DVS_gesture_model
    p["DATA_DIR"] = "data"          # holds DVSGesture/ibmGestureTrain/..., .../ibmGestureTest/...
    model = DVS_gesture_model(p)
    spike_t, spike_ID, rec_vars_n, rec_vars_s, train_acc, eval_acc = model.train(p)

Data (``dvs_data``): tonic's DVSGesture recordings, one file per gesture, timestamps converted
from microseconds to milliseconds (the original used the microseconds as milliseconds, so
that its 18000 "ms" trials held the first 18 ms of each gesture), downsampled to
32 x 32 (input index (y * 32 + x) * 2 + p), binned to DT_MS with at most one spike per channel and
step, and cached.

Trial length. A recording holds one gesture and lasts about 6 s. The gestures are repeated
movements (waving, circling an arm, clapping, drumming) whose cycle lasts on the order of a
second, so the first TRIAL_MS = 1500 ms hold at least one cycle of most; the cost of an epoch
and the size of the cache grow linearly with TRIAL_MS, and 1500 ms keep them at a quarter of
what whole recordings would need. CROP_START_MS moves the window (e.g. past the start of a
gesture); set TRIAL_MS up to the recordings' length to use all of them.

Every epoch rebuilds the training set as SHD does (class balancing, spike-number normalisation,
augmentations in AUGMENTATION's order). SHD's channel-space augmentations ("random_shift",
"ID_jitter", "blend") would move spikes between pixels and polarities of the flattened image and
are refused; "spatial_shift" shifts the 32 x 32 image instead, "random_dilate" stretches time.

The defaults mirror SHD's with the differences of the original's DVS dictionary; they
have not been tuned on the real recordings.
"""
import copy
import difflib

import numpy as np

from eventprop.data import augmentations
from eventprop.data import dvs as dvs_data
from eventprop.simulators import shd as simulator_SHD
from eventprop.config import parameters
from eventprop.config import checks
from eventprop import optim
from eventprop.training.experiment import STREAM_DATA, Experiment, epoch_rng, k_folds, training_order
from eventprop.training.build import build_network, trainable_parameters
from eventprop.training.trainer import Trainer
from eventprop.data.augmentations import reduce_classes

p = {
    "OUT_DIR": ".",             # folder for every file a run writes
    "NAME": "test",             # prefix of those files
    "DEBUG_HIDDEN_N": False,    # hidden-activity statistics per layer in the results file
    "DT_MS": 1.0,               # time step and bin width (ms); the original's default was 0.1
    "BUILD": True,              # accepted for compatibility; kernels compile on first use
    "TIMING": True,             # accepted for compatibility; seconds per epoch are always logged
    "PROFILE": False,           # accepted for compatibility; no effect
    "TRAIN_DATA_SEED": 123,     # split, folds, sample order, augmentation, balancing, dropout
    "TEST_DATA_SEED": 456,      # accepted for compatibility; unused (as in the original)
    "MODEL_SEED": None,         # weight initialisation, hetLIF taus, rewiring (None: random)
    "TRIAL_MS": 1500.0,         # trial length: the first 1.5 s of every recording (docstring)
    "CROP_START_MS": 0.0,       # the trial shows the recording from this time on (ms)
    "N_MAX_SPIKE": 1500,        # spikes per neuron and trial kept for the backward pass
    "N_BATCH": 32,
    "N_TRAIN": 1045,            # training samples of train's random split
    "N_VALIDATE": 32,           # validation samples of train's random split; 0: no evaluation
    "N_EPOCH": 100,
    "SHUFFLE": True,
    "NUM_HIDDEN": 256,
    "RECURRENT": False,
    "N_HID_LAYER": 1,
    "N_INPUT_DELAY": 0,         # delay line: this many delayed copies of the 2048 inputs ...
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
    "REWIRE_SILENT": False,     # rewire at the end of every epoch ...
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
    "TAU_0": 0.5,               # first-spike losses (the original DVS values)
    "TAU_1": 6.4,
    "ALPHA": 3e-3,
    "N_FOLDS": 5,               # cross_validate: number of folds of the training set ...
    "FOLDS": None,              # ... and which of them to run (None: all; e.g. [2] for one)
    "FOLD_BY": "user",          # "user": a fold holds whole users; "random": random samples
    "CUDA_VISIBLE_DEVICES": False,  # BACKEND cuda: False: manual_GPU or the freest GPU
    "REDUCED_CLASSES": None,    # list of classes to keep (relabelled 0, 1, ... in this order)
    "AUGMENTATION": {"NORMALISE_SPIKE_NUMBER": False},
    "COLLECT_CONFUSION": False,
    "REC_PREDICTIONS": False,
    "BALANCE_TRAIN_CLASSES": False,
    "BALANCE_EVAL_CLASSES": False,
    "DATA_DIR": "data",         # the recordings are in DATA_DIR/DVSGesture/ibmGesture{Train,Test}
    "CACHE_DIR": None,          # binned data cache (None: DATA_DIR/DVSGesture/cache)
    "DOWNLOAD": False,          # fetch missing recordings through tonic (needs internet)
    "DTYPE": "float32",         # "float32" or "float64"
    "BACKEND": "auto",         # "auto" (the GPU when one is usable, else the CPU), "cpu", "cuda"
    "PROGRESS": True,           # progress bar and one line per epoch
}

# SHD's augmentations that act on the channel number: on the flattened 32 x 32 x 2 image they
# would move spikes between unrelated pixels and polarities
_CHANNEL_AUGMENTATIONS = ("random_shift", "ID_jitter", "blend")

AUGMENTATION_RULES = {
    "NORMALISE_SPIKE_NUMBER": simulator_SHD.AUGMENTATION_RULES["NORMALISE_SPIKE_NUMBER"],
    "random_dilate": simulator_SHD.AUGMENTATION_RULES["random_dilate"],
    "spatial_shift": lambda v: checks.non_negative(v),
}


def augmentation_rule(value, p=None):
    if not isinstance(value, dict):
        return "must be a dict"
    for key, v in value.items():
        if key in _CHANNEL_AUGMENTATIONS:
            return (f"{key!r} acts on channel numbers, which would mix pixels and polarities of "
                    f"the 32 x 32 x 2 input; use 'spatial_shift' (pixels) or 'random_dilate' "
                    f"(time)")
        if key not in AUGMENTATION_RULES:
            close = difflib.get_close_matches(str(key), list(AUGMENTATION_RULES), n=2)
            return (f"unknown augmentation {key!r}" +
                    (f" (did you mean {', '.join(map(repr, close))}?)" if close else "") +
                    f"; known: {', '.join(AUGMENTATION_RULES)}")
        message = AUGMENTATION_RULES[key](v)
        if message:
            return f"{key!r}: {message}"


# The defaults as shipped: users edit p itself, so p cannot serve to detect unknown keys.
DEFAULTS = copy.deepcopy(p)

RULES = parameters.rules_for(DEFAULTS, {
    "CROP_START_MS": checks.non_negative, "N_FOLDS": checks.integer_at_least(2),
    "FOLDS": checks.fold_list, "FOLD_BY": checks.one_of("user", "random"),
    "AUGMENTATION": augmentation_rule,
})


def validate(params):
    """The full parameter dictionary: defaults filled in, every key and value checked."""
    full = parameters.check(params, DEFAULTS, RULES)
    classes = full["REDUCED_CLASSES"]
    if classes is not None and max(classes) >= dvs_data.N_CLASSES:
        raise ValueError(f"invalid p['REDUCED_CLASSES'] = {classes}: DVS gesture has classes "
                         f"0..{dvs_data.N_CLASSES - 1}")
    return full


def apply_augmentations(data, augmentation, dt, rng):
    """"spatial_shift" and "random_dilate" of ``augmentation`` in its order (other keys, i.e.
    "NORMALISE_SPIKE_NUMBER", are handled elsewhere). Returns a new SpikeData (or ``data``
    itself when there is nothing to do)."""
    for key, value in augmentation.items():
        if key == "spatial_shift":
            data = dvs_data.spatial_shift(data, value, rng)
        elif key == "random_dilate":
            data = augmentations.random_dilate(data, value[0], value[1], dt, rng)
    return data


class DVS_gesture_model(Experiment):
    """DVS gesture simulator: ``train``, ``train_test``, ``test``, ``cross_validate``.
    ``manual_GPU`` is accepted for compatibility."""

    def __init__(self, params=None, manual_GPU=None):
        self.manual_GPU = manual_GPU
        self._data_key = None
        self._load_data(validate(params or {}))

    # --- data -----------------------------------------------------------------------------
    def _load_data(self, p):
        """Binned training and test recordings (from the cache after the first time); reloaded
        when a data key of p changes between calls."""
        key = (p["DATA_DIR"], p["CACHE_DIR"], p["DT_MS"], p["TRIAL_MS"], p["CROP_START_MS"],
               p["DOWNLOAD"], tuple(p["REDUCED_CLASSES"] or ()))
        if key == self._data_key:
            return

        def load(split):
            data, users, files = dvs_data.load_split(
                p["DATA_DIR"], split, p["DT_MS"], p["TRIAL_MS"], p["CROP_START_MS"],
                cache_dir=p["CACHE_DIR"], download=p["DOWNLOAD"])
            if p["REDUCED_CLASSES"] is not None:
                keep = np.flatnonzero(np.isin(data.labels, p["REDUCED_CLASSES"]))
                files = [files[i] for i in keep]
            data, users = reduce_classes(data, users, p["REDUCED_CLASSES"])
            return data, users, files

        self.train_data, self.train_users, self.train_files = load("train")
        self.test_data, self.test_users, self.test_files = load("test")
        classes = p["REDUCED_CLASSES"]
        self.n_classes = len(classes) if classes else dvs_data.N_CLASSES
        self._data_key = key

    def split(self, p):
        """(training set, validation set or None) of ``train``: a permutation (TRAIN_DATA_SEED)
        of the training recordings, its first N_VALIDATE samples for validation and the next
        N_TRAIN for training (N_VALIDATE = 0: N_TRAIN samples, no evaluation)."""
        data = self.train_data
        order = np.random.default_rng(p["TRAIN_DATA_SEED"]).permutation(len(data))
        n_val = p["N_VALIDATE"]
        if n_val == 0:
            return data.subset(order[:p["N_TRAIN"]]), None
        return data.subset(order[n_val:n_val + p["N_TRAIN"]]), data.subset(order[:n_val])

    def folds(self, p):
        """(fold, training indices, validation indices) of every fold cross_validate runs
        (FOLDS; None: all N_FOLDS). FOLD_BY "user": the users of the training recordings are cut
        into N_FOLDS groups (a permutation drawn from TRAIN_DATA_SEED) and a fold validates on
        every recording of its group, so no user is in both parts; "random": the recordings
        themselves are cut into N_FOLDS folds."""
        n = len(self.train_data)
        if p["FOLD_BY"] == "random":
            return list(k_folds(n, p["N_FOLDS"], p["TRAIN_DATA_SEED"], p["FOLDS"]))
        ids = np.unique(self.train_users)
        if len(ids) < p["N_FOLDS"]:
            raise ValueError(f"invalid p['N_FOLDS'] = {p['N_FOLDS']}: the training recordings "
                             f"have {len(ids)} users, too few for FOLD_BY 'user' (use at most "
                             f"{len(ids)} folds, or FOLD_BY 'random')")
        out = []
        for f, _, user_idx in k_folds(len(ids), p["N_FOLDS"], p["TRAIN_DATA_SEED"], p["FOLDS"]):
            left = np.isin(self.train_users, ids[user_idx])
            out.append((f, np.flatnonzero(~left), np.flatnonzero(left)))
        return out

    # --- what Experiment.run asks of a simulator ------------------------------------------
    def make_network(self, p):
        init = {"input_hidden": (p["INPUT_HIDDEN_MEAN"], p["INPUT_HIDDEN_STD"]),
                "hidden_hidden": (p["HIDDEN_HIDDEN_MEAN"], p["HIDDEN_HIDDEN_STD"]),
                "hidden_hiddenfwd": (p["HIDDEN_HIDDENFWD_MEAN"], p["HIDDEN_HIDDENFWD_STD"]),
                "hidden_output": (p["HIDDEN_OUTPUT_MEAN"], p["HIDDEN_OUTPUT_STD"])}
        n_input = dvs_data.N_CHANNELS * (p["N_INPUT_DELAY"] + 1)
        net = build_network(p, n_input, self.n_classes, init,
                            manual_gpu=self.manual_GPU)
        return Trainer(net, p["ADAM_BETA1"], p["ADAM_BETA2"], p["ADAM_EPS"],
                       trainable=trainable_parameters(net, p))

    def make_schedule(self, p):
        return optim.LearningRateSchedule(p["ETA"], p["LR_EASE_IN_FACTOR"], p["EMA_ALPHA1"],
                                          p["EMA_ALPHA2"], p["ETA_FAC"],
                                          p["MIN_EPOCH_ETA_FIXED"])

    def epoch_data(self, p, epoch, train, evaluation):
        """The data of one epoch: class balancing, spike-number normalisation, augmentations of
        the training set in AUGMENTATION's order, the sample order, and the delay line. Random
        numbers from TRAIN_DATA_SEED and the epoch only."""
        rng = epoch_rng(p["TRAIN_DATA_SEED"], epoch, STREAM_DATA)
        aug = p["AUGMENTATION"]
        if train is not None and p["BALANCE_TRAIN_CLASSES"]:
            train = train.subset(augmentations.balance_classes(train, rng))
        if evaluation is not None and p["BALANCE_EVAL_CLASSES"]:
            evaluation = evaluation.subset(augmentations.balance_classes(evaluation, rng))
        order = None
        if train is not None:
            if aug.get("NORMALISE_SPIKE_NUMBER", False):
                train, evaluation = augmentations.normalise_spike_number(train, evaluation, rng)
            train = apply_augmentations(train, aug, p["DT_MS"], rng)
            order = training_order(p, len(train), epoch)
        if p["N_INPUT_DELAY"] > 0:
            delay = lambda d: None if d is None else augmentations.DelayLine(
                d, p["N_INPUT_DELAY"], p["INPUT_DELAY"], p["DT_MS"])
            train, evaluation = delay(train), delay(evaluation)
        return train, evaluation, order

    # --- the methods ----------------------------------------------------------------------
    def train(self, params):
        """Train for N_EPOCH epochs on N_TRAIN random training recordings, validating on
        N_VALIDATE others after each. Returns (spike_t, spike_ID, rec_vars_n, rec_vars_s,
        training accuracy, validation accuracy) of the last epoch (0 for a part that did not
        run)."""
        p = validate(params)
        self._load_data(p)
        train, evaluation = self.split(p)
        return self.returns(*self.run(p, train, evaluation, p["N_EPOCH"], True, "validation"))

    def train_test(self, params):
        """Train on every training recording for N_EPOCH epochs, evaluating on the test
        recordings after each; returns as ``train`` with the test accuracy last."""
        p = validate(params)
        self._load_data(p)
        return self.returns(*self.run(p, self.train_data, self.test_data, p["N_EPOCH"], True,
                                       "test"))

    def test(self, params):
        """One epoch on the test recordings without learning (LOAD_LAST / LOAD_BEST,
        CHECKPOINT_NAME: the weights of that checkpoint). Returns (..., 0.0, test accuracy)."""
        p = validate(params)
        self._load_data(p)
        return self.returns(*self.run(p, None, self.test_data, 1, False, "test"))

    def cross_validate(self, params):
        """N_FOLDS-fold cross-validation on the training recordings (FOLD_BY, ``folds``): for
        every fold in FOLDS (None: all) a fresh network (the same initial weights when
        MODEL_SEED is set) trains on the other folds and validates on its own after every
        epoch; fold files are named {NAME}_fold{k}_*. Returns (list of [final training
        accuracy, final validation accuracy] per fold, list of seconds per fold)."""
        p = validate(params)
        self._load_data(p)
        return self.run_folds(p, self.train_data, self.folds(p))
