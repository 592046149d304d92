"""MNIST: 784 input neurons, one per pixel -> NUM_HIDDEN hidden LIF neurons
(optionally recurrent) -> 10 outputs.

Usage, as in the reference:

    from eventprop.simulators.mnist import p, mnist_model
    p["DATA_DIR"] = "data"          # holds MNIST/train-images-idx3-ubyte(.gz) and the other three
    model = mnist_model(p)
    spike_t, spike_ID, rec_vars_n, rec_vars_s, train_acc, eval_acc = model.train(p)

Data: the four official IDX files in DATA_DIR/MNIST/, plain or gzipped (``mnist_data``); with
DOWNLOAD = True a missing file is fetched with the ``mnist`` package. Every pixel of grey value
g > 1 fires once per trial at t = 2 dt + (255 - g) / 255 (T - 4 dt) (bright pixels first); the
spikes of a mini-batch are computed from the images when the mini-batch runs.

Splits: the training images are shuffled once with TRAIN_DATA_SEED; ``train`` trains on the first
N_TRAIN and validates on the last N_VALIDATE (disjoint: N_TRAIN + N_VALIDATE may not exceed the
number of images). The test images are shuffled with TEST_DATA_SEED and the first N_TEST are used.
The learning rate is ETA throughout (no schedule). Every LOSS_TYPE of the engine works; the
original wired up five (first_spike, first_spike_exp, max, sum, avg_xentropy).
"""
import copy
import os

import numpy as np

from eventprop.data import mnist as mnist_data
from eventprop.config import parameters
from eventprop.config import checks
from eventprop import optim
from eventprop.data.augmentations import DelayLine, balance_classes
from eventprop.training.experiment import STREAM_DATA, Experiment, epoch_rng, k_folds, training_order
from eventprop.training.build import build_network, trainable_parameters
from eventprop.training.trainer import Trainer
from eventprop.data.augmentations import reduce_classes

p = {
    "OUT_DIR": ".",             # folder for every file a run writes
    "NAME": "test",             # prefix of those files
    "DEBUG_HIDDEN_N": False,    # hidden-activity statistics in the results file
    "DT_MS": 1.0,
    "BUILD": True,              # accepted for compatibility; kernels compile on first use
    "TIMING": True,             # accepted for compatibility; seconds per epoch are always logged
    "TRAIN_DATA_SEED": 123,     # split of the training images, sample order, input dropout
    "TEST_DATA_SEED": 456,      # order of the test images (the first N_TEST are used)
    "MODEL_SEED": None,         # weight initialisation (None: random)
    "TRIAL_MS": 20.0,
    "N_MAX_SPIKE": 50,          # spikes per neuron and trial kept for the backward pass
    "N_BATCH": 32,
    "N_TRAIN": 55000,           # training images (the first of the shuffled training file)
    "N_VALIDATE": 5000,         # validation images of train (the last); 0: no evaluation
    "N_TEST": 10000,            # test images
    "N_EPOCH": 20,
    "SHUFFLE": True,            # a new order of the training images every epoch
    "NUM_HIDDEN": 128,
    "RECURRENT": False,
    "TAU_SYN": 5.0,
    "TAU_MEM": 20.0,
    "V_THRESH": 1.0,
    "V_RESET": 0.0,
    "INPUT_HIDDEN_MEAN": 0.078,
    "INPUT_HIDDEN_STD": 0.045,
    "HIDDEN_OUTPUT_MEAN": 0.2,
    "HIDDEN_OUTPUT_STD": 0.37,
    "HIDDEN_HIDDEN_MEAN": 0.2,      # recurrent weights
    "HIDDEN_HIDDEN_STD": 0.37,
    "PDROP_INPUT": 0.2,         # input dropout (deletes spikes)
    "PDROP_HIDDEN": 0.0,        # hidden "dropout" (delays spikes)
    "REG_TYPE": "none",         # "none", "simple", "Thomas1"
    "LBD_UPPER": 5e-6,
    "LBD_LOWER": 1e-3,
    "NU_UPPER": 2.0,
    "RHO_UPPER": 5000.0,
    "GLB_UPPER": 1e-5,
    "ETA": 1e-2,                # constant learning rate (the original README says 5e-3)
    "ADAM_BETA1": 0.9,
    "ADAM_BETA2": 0.999,
    "ADAM_EPS": 1e-8,
    "W_OUTPUT_EPOCH_TRIAL": [],     # [epoch, trial] pairs: weight snapshots
    "SPK_REC_STEPS": None,      # accepted for compatibility; recordings have no step limit
    "REC_SPIKES": [],           # "input", "hidden", "output"
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
    "LOSS_TYPE": "avg_xentropy",
    "TAU_ACCUMULATOR": 20.0,    # sum_weigh_input
    "EVALUATION": "random",     # accepted for compatibility; unused (as in the original)
    "CUDA_VISIBLE_DEVICES": True,   # BACKEND cuda: True: the env. variable picks the GPU
    "AVG_SNSUM": False,
    "REDUCED_CLASSES": None,    # list of digits to keep (relabelled 0, 1, ... in this order)
    "TAU_0": 0.5,
    "TAU_1": 6.4,
    "ALPHA": 3e-3,
    "COLLECT_CONFUSION": False,
    "REC_PREDICTIONS": False,
    "N_FOLDS": 5,               # cross_validate: folds of the N_TRAIN + N_VALIDATE images
    "FOLDS": None,              # ... and which of them to run (None: all; e.g. [2] for one)
    "DATA_DIR": "data",         # the files are in DATA_DIR/MNIST/
    "DOWNLOAD": False,          # fetch missing files with the mnist package (needs internet)
    "DTYPE": "float32",         # "float32" or "float64"
    "BACKEND": "auto",         # "auto" (the GPU when one is usable, else the CPU), "cpu", "cuda"
    "PROGRESS": True,           # progress bar and one line per epoch
}

# The settings of the original's MNIST comparison scripts, as train/test runs on all
# 60000 training images.
PAPER = {"NUM_HIDDEN": 128, "N_MAX_SPIKE": 500, "DT_MS": 1.0, "PDROP_INPUT": 0.2, "N_EPOCH": 50,
         "N_BATCH": 32, "ETA": 1e-2, "N_TRAIN": 60000, "N_VALIDATE": 0}
PRESETS = {"paper": PAPER}


def optional_digit_list(value, p=None):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or any(
            not isinstance(c, (int, np.integer)) or isinstance(c, bool)
            or not 0 <= c < mnist_data.N_CLASSES for c in value) or len(set(value)) != len(value):
        return f"must be None or a list of distinct digits 0..{mnist_data.N_CLASSES - 1}"


# The defaults as shipped: users edit p itself, so p cannot serve to detect unknown keys.
DEFAULTS = copy.deepcopy(p)

RULES = parameters.rules_for(DEFAULTS, {
    "EVALUATION": checks.anything, "REDUCED_CLASSES": optional_digit_list,
})


def validate(params):
    """The full parameter dictionary: defaults filled in, every key and value checked."""
    full = parameters.check(params, DEFAULTS, RULES)
    if full["TRIAL_MS"] <= 4 * full["DT_MS"]:
        raise ValueError(f"invalid p['TRIAL_MS'] = {full['TRIAL_MS']}: must exceed 4 * DT_MS "
                         "(pixels fire between 2 DT_MS and TRIAL_MS - 2 DT_MS)")
    return full


# projection name of build_network -> key prefix of its initial mean and std in p
INIT_KEYS = {"input_hidden": "INPUT_HIDDEN", "hidden_hidden": "HIDDEN_HIDDEN",
             "hidden_hiddenfwd": "HIDDEN_HIDDENFWD", "hidden_output": "HIDDEN_OUTPUT"}


class mnist_model(Experiment):
    """MNIST simulator: ``train``, ``train_test``, ``test``, ``cross_validate``.

    Subclasses with another encoding of the same images (``simulator_SMNIST``) override
    ``validate``, ``encoder``, ``encoding_key`` and ``make_schedule``."""

    def __init__(self, params=None):
        self._raw_key = None
        self._data_key = None
        self._load_data(self.validate(params or {}))

    # --- what a subclass changes ----------------------------------------------------------
    def validate(self, params):
        return validate(params)

    def encoder(self, p):
        """Images -> SpikeData of one mini-batch (``mnist_data.MNISTEncoder``)."""
        return mnist_data.MNISTEncoder(p["DT_MS"], p["TRIAL_MS"])

    def encoding_key(self, p):
        """The keys of p the encoding depends on."""
        return (p["DT_MS"], p["TRIAL_MS"])

    # --- data -----------------------------------------------------------------------------
    def _load_data(self, p):
        """The training and test images of DATA_DIR/MNIST (read once per DATA_DIR), with the
        encoding and REDUCED_CLASSES of p."""
        folder = os.path.join(p["DATA_DIR"], "MNIST")
        if self._raw_key != folder:
            self._raw = {split: mnist_data.load_split(folder, split, download=p["DOWNLOAD"])
                         for split in ("train", "test")}
            self._raw_key = folder
            self._data_key = None
        key = (self.encoding_key(p), tuple(p["REDUCED_CLASSES"] or ()))
        if key == self._data_key:
            return
        encoder = self.encoder(p)
        classes = p["REDUCED_CLASSES"]
        self.train_data, self.test_data = [
            reduce_classes(mnist_data.ImageSpikes(images, labels, encoder), None, classes)[0]
            for images, labels in (self._raw["train"], self._raw["test"])]
        self.n_classes = len(classes) if classes else mnist_data.N_CLASSES
        self._data_key = key

    def _training_order(self, p):
        """The shuffled training images (TRAIN_DATA_SEED)."""
        return np.random.default_rng(p["TRAIN_DATA_SEED"]).permutation(len(self.train_data))

    @staticmethod
    def _check_size(p, keys, available, what):
        """ValueError naming ``keys`` when their sum exceeds the ``available`` images."""
        value = sum(p[k] for k in keys)
        if value > available:
            label = " + ".join(f"p[{k!r}]" for k in keys)
            kept = " of the REDUCED_CLASSES" if p["REDUCED_CLASSES"] else ""
            raise ValueError(f"invalid {label} = {value}: there are only {available} {what}"
                             f"{kept}")

    def split(self, p):
        """(training set, validation set or None) of ``train``: the training images
        shuffled with TRAIN_DATA_SEED, the first N_TRAIN for training, the last N_VALIDATE for
        validation (none when N_VALIDATE = 0)."""
        n = len(self.train_data)
        self._check_size(p, ("N_TRAIN", "N_VALIDATE"), n, "training images")
        order = self._training_order(p)
        evaluation = (self.train_data.subset(order[n - p["N_VALIDATE"]:])
                      if p["N_VALIDATE"] > 0 else None)
        return self.train_data.subset(order[:p["N_TRAIN"]]), evaluation

    def test_set(self, p):
        """The first N_TEST test images after shuffling with TEST_DATA_SEED."""
        n = len(self.test_data)
        self._check_size(p, ("N_TEST",), n, "test images")
        order = np.random.default_rng(p["TEST_DATA_SEED"]).permutation(n)
        return self.test_data.subset(order[:p["N_TEST"]])

    # --- what Experiment.run asks of a simulator ------------------------------------------
    def make_network(self, p):
        init = {name: (p[f"{key}_MEAN"], p[f"{key}_STD"]) for name, key in INIT_KEYS.items()
                if f"{key}_MEAN" in p}
        n_input = self.train_data.n_channels * (p.get("N_INPUT_DELAY", 0) + 1)
        net = build_network(p, n_input, self.n_classes, init)
        return Trainer(net, p["ADAM_BETA1"], p["ADAM_BETA2"], p["ADAM_EPS"],
                       trainable=trainable_parameters(net, p))

    def make_schedule(self, p):
        return optim.ExponentialDecay(p["ETA"], 1.0)           # constant ETA

    def epoch_data(self, p, epoch, train, evaluation):
        """Class balancing (where p has BALANCE_*_CLASSES), the order of the training images
        (SHUFFLE) and the delay line (where p has N_INPUT_DELAY > 0)."""
        rng = epoch_rng(p["TRAIN_DATA_SEED"], epoch, STREAM_DATA)
        if train is not None and p.get("BALANCE_TRAIN_CLASSES", False):
            train = train.subset(balance_classes(train, rng))
        if evaluation is not None and p.get("BALANCE_EVAL_CLASSES", False):
            evaluation = evaluation.subset(balance_classes(evaluation, rng))
        order = training_order(p, len(train), epoch) if train is not None else None
        if p.get("N_INPUT_DELAY", 0) > 0:
            delay = lambda d: None if d is None else DelayLine(
                d, p["N_INPUT_DELAY"], p["INPUT_DELAY"], p["DT_MS"])
            train, evaluation = delay(train), delay(evaluation)
        return train, evaluation, order

    # --- the methods ----------------------------------------------------------------------
    def train(self, params):
        """Train for N_EPOCH epochs on N_TRAIN training images, validating on N_VALIDATE others
        after each. Returns (spike_t, spike_ID, rec_vars_n, rec_vars_s, training accuracy,
        validation accuracy) of the last epoch (0 for a part that did not run)."""
        p = self.validate(params)
        self._load_data(p)
        train, evaluation = self.split(p)
        return self.returns(*self.run(p, train, evaluation, p["N_EPOCH"], True, "validation"))

    def train_test(self, params):
        """Train for N_EPOCH epochs on the first N_TRAIN shuffled training images (N_VALIDATE is
        not used; N_TRAIN = 60000 uses them all), testing on N_TEST test images after each;
        returns as ``train`` with the test accuracy last."""
        p = self.validate(params)
        self._load_data(p)
        self._check_size(p, ("N_TRAIN",), len(self.train_data), "training images")
        train = self.train_data.subset(self._training_order(p)[:p["N_TRAIN"]])
        return self.returns(*self.run(p, train, self.test_set(p), p["N_EPOCH"], True, "test"))

    def test(self, params):
        """One epoch on N_TEST test images without learning (LOAD_LAST / LOAD_BEST,
        CHECKPOINT_NAME: the weights of that checkpoint). Returns (..., 0.0, test accuracy)."""
        p = self.validate(params)
        self._load_data(p)
        return self.returns(*self.run(p, None, self.test_set(p), 1, False, "test"))

    def cross_validate(self, params):
        """N_FOLDS-fold cross-validation on the N_TRAIN + N_VALIDATE images that ``train`` uses
        (the first of the shuffled training images): fold k validates on the k-th part and trains
        a fresh network (the same initial weights when MODEL_SEED is set) on the others; its files
        are named {NAME}_fold{k}_*; FOLDS selects folds (None: all). Returns (list of [final
        training accuracy, final validation accuracy] per fold, list of seconds per fold)."""
        p = self.validate(params)
        self._load_data(p)
        n_pool = p["N_TRAIN"] + p["N_VALIDATE"]
        self._check_size(p, ("N_TRAIN", "N_VALIDATE"), len(self.train_data), "training images")
        if p["N_FOLDS"] > n_pool:
            raise ValueError(f"invalid p['N_FOLDS'] = {p['N_FOLDS']}: more folds than the "
                             f"{n_pool} images of N_TRAIN + N_VALIDATE")
        pool = self._training_order(p)[:n_pool]
        folds = k_folds(n_pool, p["N_FOLDS"], p["TRAIN_DATA_SEED"], p["FOLDS"])
        return self.run_folds(p, self.train_data, ((k, pool[train_idx], pool[eval_idx])
                                                   for k, train_idx, eval_idx in folds))
