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
from eventprop.config import parameters
from eventprop.config import smnist as smnist_parameters
from eventprop.data import mnist as mnist_data
from eventprop.training.build import plateau_schedule
from eventprop.training.mnist_experiment import MNISTExperiment

# The parameter dictionary users edit; its keys, defaults, rules, meanings and units are in
# eventprop.config.smnist (reference: docs/parameters/smnist.md).
p = parameters.defaults(smnist_parameters.PARAMETERS)

# The defaults as shipped: users edit p itself, so p cannot serve to detect unknown keys.
DEFAULTS = parameters.defaults(smnist_parameters.PARAMETERS)

RULES = parameters.rules(smnist_parameters.PARAMETERS)

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


class SMNIST_model(MNISTExperiment):
    """Sequential MNIST simulator: ``train``, ``train_test``, ``test``, ``cross_validate``, on the
    splits of ``MNISTExperiment`` (those of the MNIST simulator)."""

    def validate(self, params):
        return validate(params)

    def encoder(self, p):
        return mnist_data.SMNISTEncoder(p["SMNIST_MODE"], p["PIXEL_MS"], p["DT_MS"],
                                        p["TRIAL_MS"])

    def encoding_key(self, p):
        return (p["SMNIST_MODE"], p["PIXEL_MS"], p["DT_MS"], p["TRIAL_MS"])

    def make_schedule(self, p):
        return plateau_schedule(p)
