"""Spiking Heidelberg Digits (SHD, 20 classes) and Spiking Speech Commands (SSC, 35 classes):
700 input channels (x (N_INPUT_DELAY + 1) with a delay line) -> N_HID_LAYER x NUM_HIDDEN hidden
neurons (optionally recurrent) -> one output neuron per class. The paper's main benchmark.

Usage, as in the reference:

    from eventprop.simulators.shd import p, SHD_model
    p["NUM_HIDDEN"] = 512
    p["DATA_DIR"] = "data"          # holds SHD/shd_train.h5, SHD/shd_test.h5 (or SSC/...)
    model = SHD_model(p)
    spike_t, spike_ID, rec_vars_n, rec_vars_s, train_acc, eval_acc = model.train(p)

Data are read from the official HDF5 files, binned to DT_MS once and cached; every
epoch then rebuilds the training set: class balancing, spike-number normalisation and the
augmentations of AUGMENTATION in their order, a new sample order; the delay line copies the
inputs per mini-batch.
"""
import os

import numpy as np

from eventprop.data import augmentations
from eventprop.config import parameters
from eventprop.config import shd as shd_parameters
from eventprop.data import shd as shd_data
from eventprop import storage
from eventprop.data.augmentations import reduce_classes
from eventprop.training.experiment import Experiment
from eventprop.training.build import build_trainer, plateau_schedule
from eventprop.training.epoch_data import spike_epoch_data

N_CLASSES = shd_data.N_CLASSES

# The parameter dictionary users edit; its keys, defaults, rules, meanings and units are in
# eventprop.config.shd (reference: docs/parameters/shd.md).
p = parameters.defaults(shd_parameters.PARAMETERS)

# The paper's final configurations: the base scan settings with the best condition of
# the final SHD cross-validation scan (1024 recurrent LIF, delay line 10 x 30 ms with input weights
# divided by 10, shift 40 + blend 0.5/0.5 with N_TRAIN doubled and 50 epochs, rewiring lift 0.002),
# and the same grid point for SSC on its official validation split.
PAPER_SHD = {
    "DATA_SET": "SHD", "LOSS_TYPE": "sum_weigh_exp", "N_BATCH": 32, "ETA": 1e-3,
    "REG_TYPE": "simple", "LBD_UPPER": 5e-10, "LBD_LOWER": 5e-10, "NU_UPPER": 14,
    "AVG_SNSUM": True, "RECURRENT": True, "NUM_HIDDEN": 1024, "HIDDEN_NEURON_TYPE": "LIF",
    "INPUT_HIDDEN_MEAN": 0.003, "INPUT_HIDDEN_STD": 0.001,
    "HIDDEN_OUTPUT_MEAN": 0.0, "HIDDEN_OUTPUT_STD": 0.03,
    "HIDDEN_HIDDEN_MEAN": 0.0, "HIDDEN_HIDDEN_STD": 0.02,
    "PDROP_INPUT": 0.0, "PDROP_HIDDEN": 0.0, "HIDDEN_NOISE": 0.0,
    "ADAM_BETA1": 0.9, "ADAM_BETA2": 0.999,
    "AUGMENTATION": {"random_shift": 40.0, "blend": [0.5, 0.5]},
    "TRAIN_DATA_SEED": 372, "TEST_DATA_SEED": 814, "MODEL_SEED": 135,
    "N_TRAIN": 2 * 7644, "N_VALIDATE": 512, "N_MAX_SPIKE": 1500, "DT_MS": 1.0,
    "TRIAL_MS": 1000.0, "N_EPOCH": 50, "EVALUATION": "speaker",
    "SPEAKER_LEFT": list(range(10)), "REWIRE_SILENT": True, "REWIRE_LIFT": 0.002,
    "MIN_EPOCH_ETA_FIXED": 50, "EMA_ALPHA1": 0.8, "EMA_ALPHA2": 0.85, "ETA_FAC": 0.5,
    "LR_EASE_IN_FACTOR": 1.05, "N_INPUT_DELAY": 10, "INPUT_DELAY": 30.0,
    "CHECKPOINT_BEST": "training",
}
PAPER_SSC = dict(PAPER_SHD, DATA_SET="SSC", EVALUATION="validation_set", SPEAKER_LEFT=[0],
                 N_TRAIN=2 * 75466, CHECKPOINT_BEST="validation")

# Learned delays (Meszaros, Knight & Nowotny 2025, "Efficient event-based delay learning in
# spiking neural networks"): no delay line; one delay per synapse, learned with Adam at its own
# rate 0.1 ms; feed-forward delays start U(0, 150 ms) on SHD (U(0, 50 ms) on SSC), recurrent
# delays at 0; the hidden->output projection has none. Their weights, batch 256, tau_mem 20 ms,
# tau_syn 5 ms, the ease-in to a constant learning rate 1e-3, and a spike-count target of 14 per
# neuron. The regularisation strength is this library's (paper_SHD's): the paper's 5e-11 /
# 5e-12 are in mlGeNN's scaling of the same term. See docs/delays.md for what differs.
DELAYS_SHD = dict(
    PAPER_SHD, NUM_HIDDEN=512, N_HID_LAYER=1, RECURRENT=True, N_BATCH=256,
    N_INPUT_DELAY=0, TAU_MEM=20.0, TAU_SYN=5.0,
    INPUT_HIDDEN_MEAN=0.03, INPUT_HIDDEN_STD=0.01, HIDDEN_HIDDEN_MEAN=0.0,
    HIDDEN_HIDDEN_STD=0.02, HIDDEN_OUTPUT_MEAN=0.0, HIDDEN_OUTPUT_STD=0.03,
    DELAYS={"input_hidden": (0.0, 150.0), "hidden_hidden": (0.0, 0.0)}, MAX_DELAY_MS=150.0,
    TRAIN_DELAYS=True, ETA_DELAY=0.1, N_EPOCH=200, MIN_EPOCH_ETA_FIXED=1000)
DELAYS_SSC = dict(
    DELAYS_SHD, DATA_SET="SSC", EVALUATION="validation_set", SPEAKER_LEFT=[0],
    CHECKPOINT_BEST="validation", NUM_HIDDEN=1024, N_HID_LAYER=2, RECURRENT=False,
    HIDDEN_HIDDENFWD_MEAN=0.02, HIDDEN_HIDDENFWD_STD=0.03,
    AUGMENTATION={"random_shift": 40.0}, N_TRAIN=75466,
    DELAYS={"input_hidden": (0.0, 50.0), "hidden_hiddenfwd": (0.0, 50.0)}, MAX_DELAY_MS=62.0)
PRESETS = {"paper_SHD": PAPER_SHD, "paper_SSC": PAPER_SSC, "delays_SHD": DELAYS_SHD,
           "delays_SSC": DELAYS_SSC}

# The defaults as shipped: users edit p itself, so p cannot serve to detect unknown keys.
DEFAULTS = parameters.defaults(shd_parameters.PARAMETERS)

RULES = parameters.rules(shd_parameters.PARAMETERS)


def dataset_of(p):
    """"SHD" or "SSC": DATASET when set, else DATA_SET."""
    return p["DATASET"] or p["DATA_SET"]


def validate(params):
    """The full parameter dictionary: defaults filled in, every key and value checked."""
    full = parameters.check(params, DEFAULTS, RULES)
    dataset = dataset_of(full)
    if full["EVALUATION"] == "speaker" and dataset == "SSC":
        raise ValueError("invalid p['EVALUATION'] = 'speaker': SSC has no speaker ids; use "
                         "'validation_set' (the official split) or 'random'")
    if full["EVALUATION"] == "validation_set" and dataset == "SHD":
        raise ValueError("invalid p['EVALUATION'] = 'validation_set': SHD has no validation "
                         "file; use 'random' or 'speaker'")
    classes = full["REDUCED_CLASSES"]
    if classes is not None and max(classes) >= N_CLASSES[dataset]:
        raise ValueError(f"invalid p['REDUCED_CLASSES'] = {classes}: {dataset} has classes "
                         f"0..{N_CLASSES[dataset] - 1}")
    return full


class SHD_model(Experiment):
    """SHD / SSC simulator: ``train``, ``train_test``, ``test``, ``cross_validate`` (alias
    ``cross_validate_SHD``). ``manual_GPU`` is accepted for compatibility."""

    def __init__(self, params=None, manual_GPU=None):
        self.manual_GPU = manual_GPU
        self._labels_key = None
        self._data_key = None
        self._load_data(validate(params or {}))

    # --- data -----------------------------------------------------------------------------
    def _read_labels(self, p):
        """The files of the chosen data set and their sizes, from a cheap read of the labels
        (and SHD's speakers) without the spikes: every file must hold samples, every class of
        REDUCED_CLASSES must have samples in every file. Sets ``files``, ``sizes`` (samples per
        split, of the REDUCED_CLASSES) and ``speakers_of_train`` (speaker per training sample,
        None for SSC); reread when a data key of p changes."""
        dataset = dataset_of(p)
        classes = p["REDUCED_CLASSES"]
        key = (dataset, p["DATA_DIR"], p["DOWNLOAD"], tuple(classes or ()))
        if key == self._labels_key:
            return
        folder = os.path.join(p["DATA_DIR"], dataset)
        self.files, self.sizes = {}, {}
        for split, name in shd_data.DATA_FILES[dataset].items():
            path = os.path.join(folder, name)
            if p["DOWNLOAD"]:
                shd_data.download(folder, dataset, split)
            labels, speakers = shd_data.read_labels(path, N_CLASSES[dataset])
            if len(labels) == 0:
                raise ValueError(f"{dataset} {split} file {path} holds no samples")
            augmentations.check_classes_present(labels, classes, path)
            keep = np.isin(labels, classes) if classes else np.ones(len(labels), bool)
            self.files[split] = path
            self.sizes[split] = int(np.count_nonzero(keep))
            if split == "train":
                self.speakers_of_train = None if speakers is None else speakers[keep]
        self._labels_key = key

    def _load_data(self, p):
        """Binned splits of the chosen data set (read from the cache after the first time),
        after the checks of ``_read_labels``; reloaded when a data key of p changes between
        calls. The checks that need no data (``preflight``: backend, recordings, checkpoint)
        come first."""
        self.preflight(p)
        self._read_labels(p)
        dataset = dataset_of(p)
        key = (dataset, p["DATA_DIR"], p["CACHE_DIR"], p["DT_MS"], p["TRIAL_MS"],
               p["RESCALE_T"], p["RESCALE_X"], p["DOWNLOAD"],
               tuple(p["REDUCED_CLASSES"] or ()))
        if key == self._data_key:
            return
        folder = os.path.join(p["DATA_DIR"], dataset)

        def load(split):
            data, speakers = shd_data.load_dataset(
                folder, dataset, split, p["DT_MS"], p["TRIAL_MS"], p["RESCALE_T"],
                p["RESCALE_X"], cache_dir=p["CACHE_DIR"], download=p["DOWNLOAD"])
            return reduce_classes(data, speakers, p["REDUCED_CLASSES"])

        self.train_data, self.train_speakers = load("train")
        self.test_data, _ = load("test")
        self.valid_data = load("valid")[0] if dataset == "SSC" else None
        classes = p["REDUCED_CLASSES"]
        self.n_classes = len(classes) if classes else N_CLASSES[dataset]
        self._data_key = key

    def split_indices(self, p):
        """(training indices, evaluation indices) into the training file (of the
        REDUCED_CLASSES) of the split of ``train`` (``split`` has the rule), from the sizes
        ``_read_labels`` found; evaluation indices None: the official validation file, or no
        evaluation part. A ValueError with the sizes when the training part would be empty."""
        self._read_labels(p)
        dataset, n, path = dataset_of(p), self.sizes["train"], self.files["train"]
        of = " of the REDUCED_CLASSES" if p["REDUCED_CLASSES"] else ""
        rng = np.random.default_rng(p["TRAIN_DATA_SEED"])
        mode = p["EVALUATION"] if p["N_VALIDATE"] > 0 else "none"
        if mode == "speaker":
            speakers = self.speakers_of_train
            if speakers is None:
                raise ValueError(f"EVALUATION 'speaker': {path} has no /extra/speaker node")
            ids = np.unique(speakers)
            index = p["SPEAKER_LEFT"][0]
            if index >= len(ids):
                raise ValueError(f"invalid p['SPEAKER_LEFT'] = {p['SPEAKER_LEFT']}: the training "
                                 f"file has {len(ids)} speakers (indices 0..{len(ids) - 1})")
            left = speakers == ids[index]
            if left.all():
                raise ValueError(f"{dataset} training part: 0 samples (all {n} samples{of} of "
                                 f"{path} are by speaker {ids[index]}, SPEAKER_LEFT = {index}, "
                                 f"which is held out)")
            train_idx = rng.permutation(np.flatnonzero(~left))[:p["N_TRAIN"]]
            return train_idx, np.flatnonzero(left)
        order = rng.permutation(n)
        if mode == "random":
            n_val = p["N_VALIDATE"]
            if n_val >= n:
                raise ValueError(f"{dataset} training part: 0 samples ({path} has {n}{of}, "
                                 f"N_VALIDATE = {n_val} of them are held out); set N_VALIDATE "
                                 f"below {n}")
            return order[n_val:n_val + p["N_TRAIN"]], order[:n_val]
        return order[:p["N_TRAIN"]], None

    def split(self, p):
        """(training set, evaluation set or None) of ``train`` per EVALUATION:
        "random": a permutation (TRAIN_DATA_SEED) of the training file, its first N_VALIDATE
        samples for validation and the next N_TRAIN (or fewer, as many as there are) for
        training; "speaker": every sample of speaker ``sorted speaker ids[SPEAKER_LEFT[0]]`` for
        validation, N_TRAIN (or fewer) of the others for training; "validation_set": N_TRAIN (or
        fewer) of the training file, the whole official validation file for validation.
        N_VALIDATE = 0: N_TRAIN samples of the training file, no evaluation. An empty training
        part is an error."""
        train_idx, eval_idx = self.split_indices(p)
        train = self.train_data.subset(train_idx)
        if eval_idx is not None:
            return train, self.train_data.subset(eval_idx)
        if p["N_VALIDATE"] > 0 and p["EVALUATION"] == "validation_set":
            return train, self.valid_data
        return train, None

    # --- what Experiment.run asks of a simulator ------------------------------------------
    def make_network(self, p):
        n_input = shd_data.N_CHANNELS * (p["N_INPUT_DELAY"] + 1)
        return build_trainer(p, n_input, self.n_classes, manual_gpu=self.manual_GPU)

    def make_schedule(self, p):
        return plateau_schedule(p)

    def epoch_data(self, p, epoch, train, evaluation):
        """The data of one epoch: class balancing, spike-number normalisation,
        augmentations of the training set in AUGMENTATION's order, the sample order, and the
        delay line. Random numbers from TRAIN_DATA_SEED and the epoch only."""
        def augment(data, rng):
            return augmentations.apply_augmentations(data, p["AUGMENTATION"], p["DT_MS"], rng,
                                                     n_train=p["N_TRAIN"])
        return spike_epoch_data(p, epoch, train, evaluation, augment)

    # --- the methods ----------------------------------------------------------------------
    def train(self, params):
        """Train for N_EPOCH epochs on the training part of the split chosen by EVALUATION,
        evaluating on its evaluation part after each. Returns (spike_t, spike_ID, rec_vars_n,
        rec_vars_s, training accuracy, validation accuracy) of the last epoch (0 for a part
        that did not run)."""
        p = validate(params)
        self.split_indices(p)               # the sizes are checked before the data are binned
        self._load_data(p)
        train, evaluation = self.split(p)
        return self.returns(*self.run(p, train, evaluation, p["N_EPOCH"], True, "validation"))

    def train_test(self, params):
        """Train on the whole training file for N_EPOCH epochs, evaluating on the test file after
        each; returns as ``train`` with the test accuracy last."""
        p = validate(params)
        self._load_data(p)
        return self.returns(*self.run(p, self.train_data, self.test_data, p["N_EPOCH"], True,
                                       "test"))

    def test(self, params):
        """One epoch on the test file without learning (LOAD_LAST / LOAD_BEST, CHECKPOINT_NAME:
        the weights of that checkpoint). Returns (..., 0.0, test accuracy)."""
        p = validate(params)
        self._load_data(p)
        return self.returns(*self.run(p, None, self.test_data, 1, False, "test"))

    def cross_validate(self, params):
        """Leave-one-speaker-out: for every index in SPEAKER_LEFT a fresh network (the same
        initial weights when MODEL_SEED is set) is trained with that speaker as the validation
        set; fold files are named {NAME}_fold{index}_*. Returns (list of [final training
        accuracy, final validation accuracy] per fold, list of seconds per fold)."""
        p = validate(dict(params, EVALUATION="speaker"))
        if p["N_VALIDATE"] == 0:
            raise ValueError("invalid p['N_VALIDATE'] = 0: cross_validate needs an evaluation "
                             "part (any N_VALIDATE > 0; the left-out speaker is evaluated)")
        for index in p["SPEAKER_LEFT"]:     # every fold's sizes, before the first trains
            self.split_indices(dict(p, SPEAKER_LEFT=[index]))
        accuracies, seconds = [], []
        for index in p["SPEAKER_LEFT"]:
            timer = storage.Timer()
            fold = dict(p, SPEAKER_LEFT=[index], NAME=f"{p['NAME']}_fold{index}")
            *_, train_acc, eval_acc = self.train(fold)
            accuracies.append([train_acc, eval_acc])
            seconds.append(timer())
        return accuracies, seconds

    cross_validate_SHD = cross_validate
