"""The data of one epoch of the spike-train simulators (SHD/SSC, DVS gesture): class balancing,
spike-number normalisation, augmentations of the training set, the sample order and the delay
line, with random numbers from TRAIN_DATA_SEED and the epoch only (a resumed run draws the same)."""
from eventprop.data import augmentations
from eventprop.training.experiment import STREAM_DATA, epoch_rng, training_order


def spike_epoch_data(p, epoch, train, evaluation, augment):
    """(training data, evaluation data, order of the training samples) of ``epoch``.

    ``augment(train, rng)`` applies the simulator's augmentations of p["AUGMENTATION"] (in its
    order) to the training data; "NORMALISE_SPIKE_NUMBER" is applied here first. ``train`` or
    ``evaluation`` None: that part does not run (its order is None)."""
    rng = epoch_rng(p["TRAIN_DATA_SEED"], epoch, STREAM_DATA)
    if train is not None and p["BALANCE_TRAIN_CLASSES"]:
        train = train.subset(augmentations.balance_classes(train, rng))
    if evaluation is not None and p["BALANCE_EVAL_CLASSES"]:
        evaluation = evaluation.subset(augmentations.balance_classes(evaluation, rng))
    order = None
    if train is not None:
        if p["AUGMENTATION"].get("NORMALISE_SPIKE_NUMBER", False):
            train, evaluation = augmentations.normalise_spike_number(train, evaluation, rng)
        train = augment(train, rng)
        order = training_order(p, len(train), epoch)
    if p["N_INPUT_DELAY"] > 0:
        delay = lambda d: None if d is None else augmentations.DelayLine(
            d, p["N_INPUT_DELAY"], p["INPUT_DELAY"], p["DT_MS"])
        train, evaluation = delay(train), delay(evaluation)
    return train, evaluation, order
