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
import numpy as np

from eventprop.data import augmentations
from eventprop.data import dvs as dvs_data
from eventprop.config import parameters
from eventprop.config import dvs_gesture as dvs_parameters
from eventprop.training.experiment import Experiment, k_folds
from eventprop.training.build import build_trainer, plateau_schedule
from eventprop.training.epoch_data import spike_epoch_data
from eventprop.data.augmentations import reduce_classes

# The parameter dictionary users edit; its keys, defaults, rules, meanings and units are in
# eventprop.config.dvs_gesture (reference: docs/parameters/dvs_gesture.md).
p = parameters.defaults(dvs_parameters.PARAMETERS)

# The defaults as shipped: users edit p itself, so p cannot serve to detect unknown keys.
DEFAULTS = parameters.defaults(dvs_parameters.PARAMETERS)

RULES = parameters.rules(dvs_parameters.PARAMETERS)


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
        self._labels_key = None
        self._data_key = None
        self._load_data(validate(params or {}))

    # --- data -----------------------------------------------------------------------------
    def _read_labels(self, p):
        """The recordings of both splits from their file names alone (cheap: no event is read):
        every class of REDUCED_CLASSES must have recordings in both. Sets ``sizes``
        (recordings per split, of the REDUCED_CLASSES) and ``users_of_train`` (user per training
        recording); reread when a data key of p changes."""
        classes = p["REDUCED_CLASSES"]
        key = (p["DATA_DIR"], p["DOWNLOAD"], tuple(classes or ()))
        if key == self._labels_key:
            return
        self.sizes = {}
        for split in ("train", "test"):
            if p["DOWNLOAD"]:
                dvs_data.download(p["DATA_DIR"], split)
            recordings = dvs_data.list_recordings(p["DATA_DIR"], split)
            labels = np.array([label for *_, label in recordings])
            augmentations.check_classes_present(labels, classes,
                                                dvs_data.split_folder(p["DATA_DIR"], split))
            keep = np.isin(labels, classes) if classes else np.ones(len(labels), bool)
            self.sizes[split] = int(np.count_nonzero(keep))
            if split == "train":
                self.users_of_train = np.array([user for _, user, *_ in recordings])[keep]
        self._labels_key = key

    def _load_data(self, p):
        """Binned training and test recordings (from the cache after the first time), after the
        checks of ``_read_labels``; reloaded when a data key of p changes between calls. The
        checks that need no data (``preflight``: backend, recordings, checkpoint) come first."""
        self.preflight(p)
        self._read_labels(p)
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

    def split_indices(self, p):
        """(training indices, validation indices or None) of ``split``, from the sizes
        ``_read_labels`` found. N_TRAIN is the size of the training part: a ValueError with the
        sizes when the training recordings are too few for N_VALIDATE + N_TRAIN."""
        self._read_labels(p)
        n, n_val, n_train = self.sizes["train"], p["N_VALIDATE"], p["N_TRAIN"]
        if n_val + n_train > n:
            of = " of the REDUCED_CLASSES" if p["REDUCED_CLASSES"] else ""
            folder = dvs_data.split_folder(p["DATA_DIR"], "train")
            raise ValueError(f"DVS gesture training part: {max(n - n_val, 0)} recordings, fewer "
                             f"than N_TRAIN = {n_train} ({folder} has {n}{of}, N_VALIDATE = "
                             f"{n_val} of them are held out); N_TRAIN + N_VALIDATE may be at "
                             f"most {n}")
        order = np.random.default_rng(p["TRAIN_DATA_SEED"]).permutation(n)
        if n_val == 0:
            return order[:n_train], None
        return order[n_val:n_val + n_train], order[:n_val]

    def split(self, p):
        """(training set, validation set or None) of ``train``: a permutation (TRAIN_DATA_SEED)
        of the training recordings, its first N_VALIDATE samples for validation and the next
        N_TRAIN for training (N_VALIDATE = 0: N_TRAIN samples, no evaluation). Fewer than
        N_VALIDATE + N_TRAIN recordings are an error."""
        train_idx, eval_idx = self.split_indices(p)
        evaluation = None if eval_idx is None else self.train_data.subset(eval_idx)
        return self.train_data.subset(train_idx), evaluation

    def folds(self, p):
        """(fold, training indices, validation indices) of every fold cross_validate runs
        (FOLDS; None: all N_FOLDS), from the recordings ``_read_labels`` found. FOLD_BY "user":
        the users of the training recordings are cut into N_FOLDS groups (a permutation drawn
        from TRAIN_DATA_SEED) and a fold validates on every recording of its group, so no user
        is in both parts; "random": the recordings themselves are cut into N_FOLDS folds."""
        self._read_labels(p)
        n = self.sizes["train"]
        if p["FOLD_BY"] == "random":
            if n < p["N_FOLDS"]:
                raise ValueError(f"invalid p['N_FOLDS'] = {p['N_FOLDS']}: more folds than the "
                                 f"{n} training recordings")
            return list(k_folds(n, p["N_FOLDS"], p["TRAIN_DATA_SEED"], p["FOLDS"]))
        ids = np.unique(self.users_of_train)
        if len(ids) < p["N_FOLDS"]:
            raise ValueError(f"invalid p['N_FOLDS'] = {p['N_FOLDS']}: the training recordings "
                             f"have {len(ids)} users, too few for FOLD_BY 'user' (use at most "
                             f"{len(ids)} folds, or FOLD_BY 'random')")
        out = []
        for f, _, user_idx in k_folds(len(ids), p["N_FOLDS"], p["TRAIN_DATA_SEED"], p["FOLDS"]):
            left = np.isin(self.users_of_train, ids[user_idx])
            out.append((f, np.flatnonzero(~left), np.flatnonzero(left)))
        return out

    # --- what Experiment.run asks of a simulator ------------------------------------------
    def make_network(self, p):
        n_input = dvs_data.N_CHANNELS * (p["N_INPUT_DELAY"] + 1)
        return build_trainer(p, n_input, self.n_classes, manual_gpu=self.manual_GPU)

    def make_schedule(self, p):
        return plateau_schedule(p)

    def epoch_data(self, p, epoch, train, evaluation):
        """The data of one epoch: class balancing, spike-number normalisation, augmentations of
        the training set in AUGMENTATION's order, the sample order, and the delay line. Random
        numbers from TRAIN_DATA_SEED and the epoch only."""
        def augment(data, rng):
            return apply_augmentations(data, p["AUGMENTATION"], p["DT_MS"], rng)
        return spike_epoch_data(p, epoch, train, evaluation, augment)

    # --- the methods ----------------------------------------------------------------------
    def train(self, params):
        """Train for N_EPOCH epochs on N_TRAIN random training recordings, validating on
        N_VALIDATE others after each. Returns (spike_t, spike_ID, rec_vars_n, rec_vars_s,
        training accuracy, validation accuracy) of the last epoch (0 for a part that did not
        run)."""
        p = validate(params)
        self.split_indices(p)               # the sizes are checked before the data are binned
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
        folds = self.folds(p)               # checked before the data are binned
        self._load_data(p)
        return self.run_folds(p, self.train_data, folds)
