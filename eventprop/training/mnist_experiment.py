"""Training on the MNIST images, whatever their spike encoding: reading the files, the splits
of train / train_test / test / cross_validate, the network, the data of every epoch. The MNIST
and sequential-MNIST simulators are the two subclasses.

Splits: the training images are shuffled once with TRAIN_DATA_SEED; ``train`` trains on the first
N_TRAIN and validates on the last N_VALIDATE (disjoint: N_TRAIN + N_VALIDATE may not exceed the
number of images). The test images are shuffled with TEST_DATA_SEED and the first N_TEST are used.
Keys a simulator does not have (N_INPUT_DELAY, BALANCE_*_CLASSES) take their shared default,
which leaves the feature off.
"""
import os

import numpy as np

from eventprop.data import mnist as mnist_data
from eventprop.data.augmentations import (DelayLine, balance_classes,
                                          check_classes_present, reduce_classes)
from eventprop.training.build import build_trainer, setting
from eventprop.training.experiment import (STREAM_DATA, Experiment, epoch_rng, k_folds,
                                           training_order)

class MNISTExperiment(Experiment):
    """``train``, ``train_test``, ``test``, ``cross_validate`` on the MNIST images.

    A subclass defines ``validate(params)`` -> the full parameter dictionary, ``encoder(p)`` ->
    the encoder of one mini-batch of images into SpikeData, ``encoding_key(p)`` -> the keys of p
    the encoding depends on, and ``make_schedule(p)`` (``Experiment``)."""

    def __init__(self, params=None):
        self._raw_key = None
        self._data_key = None
        self._load_data(self.validate(params or {}))

    # --- data -----------------------------------------------------------------------------
    def _load_data(self, p):
        """The training and test images of DATA_DIR/MNIST (read once per DATA_DIR), with the
        encoding and REDUCED_CLASSES of p (each of its digits must have images in both
        files). The checks that need no data (``preflight``: backend, recordings, checkpoint)
        come first."""
        self.preflight(p)
        folder = os.path.join(p["DATA_DIR"], "MNIST")
        if self._raw_key != folder:
            self._raw = {split: mnist_data.load_split(folder, split, download=p["DOWNLOAD"])
                         for split in ("train", "test")}
            self._raw_key = folder
            self._data_key = None
        key = (self.encoding_key(p), tuple(p["REDUCED_CLASSES"] or ()))
        if key == self._data_key:
            return
        classes = p["REDUCED_CLASSES"]
        for split, (_, labels) in self._raw.items():
            check_classes_present(labels, classes,
                                  mnist_data.find_file(folder, mnist_data.FILES[split][1]))
        encoder = self.encoder(p)
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
        n_input = self.train_data.n_channels * (setting(p, "N_INPUT_DELAY") + 1)
        return build_trainer(p, n_input, self.n_classes)

    def epoch_data(self, p, epoch, train, evaluation):
        """Class balancing (BALANCE_*_CLASSES), the order of the training images (SHUFFLE) and
        the delay line (N_INPUT_DELAY > 0)."""
        rng = epoch_rng(p["TRAIN_DATA_SEED"], epoch, STREAM_DATA)
        if train is not None and setting(p, "BALANCE_TRAIN_CLASSES"):
            train = train.subset(balance_classes(train, rng))
        if evaluation is not None and setting(p, "BALANCE_EVAL_CLASSES"):
            evaluation = evaluation.subset(balance_classes(evaluation, rng))
        order = training_order(p, len(train), epoch) if train is not None else None
        if setting(p, "N_INPUT_DELAY") > 0:
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
