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
from eventprop import optim
from eventprop.config import mnist as mnist_parameters
from eventprop.config import parameters
from eventprop.data import mnist as mnist_data
from eventprop.training.mnist_experiment import MNISTExperiment

# The parameter dictionary users edit; its keys, defaults, rules, meanings and units are in
# eventprop.config.mnist (reference: docs/parameters/mnist.md).
p = parameters.defaults(mnist_parameters.PARAMETERS)

# The settings of the original's MNIST comparison scripts, as train/test runs on all
# 60000 training images.
PAPER = {"NUM_HIDDEN": 128, "N_MAX_SPIKE": 500, "DT_MS": 1.0, "PDROP_INPUT": 0.2, "N_EPOCH": 50,
         "N_BATCH": 32, "ETA": 1e-2, "N_TRAIN": 60000, "N_VALIDATE": 0}
PRESETS = {"paper": PAPER}

# The defaults as shipped: users edit p itself, so p cannot serve to detect unknown keys.
DEFAULTS = parameters.defaults(mnist_parameters.PARAMETERS)

RULES = parameters.rules(mnist_parameters.PARAMETERS)


def validate(params):
    """The full parameter dictionary: defaults filled in, every key and value checked."""
    full = parameters.check(params, DEFAULTS, RULES)
    if full["TRIAL_MS"] <= 4 * full["DT_MS"]:
        raise ValueError(f"invalid p['TRIAL_MS'] = {full['TRIAL_MS']}: must exceed 4 * DT_MS "
                         "(pixels fire between 2 DT_MS and TRIAL_MS - 2 DT_MS)")
    return full


class mnist_model(MNISTExperiment):
    """MNIST simulator: ``train``, ``train_test``, ``test``, ``cross_validate`` (on the splits
    of ``MNISTExperiment``), with every pixel firing once (latency code)."""

    def validate(self, params):
        return validate(params)

    def encoder(self, p):
        """Images -> SpikeData of one mini-batch (``mnist_data.MNISTEncoder``)."""
        return mnist_data.MNISTEncoder(p["DT_MS"], p["TRIAL_MS"])

    def encoding_key(self, p):
        """The keys of p the encoding depends on."""
        return (p["DT_MS"], p["TRIAL_MS"])

    def make_schedule(self, p):
        return optim.ExponentialDecay(p["ETA"], 1.0)           # constant ETA
