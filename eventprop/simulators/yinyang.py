"""Yin-Yang benchmark (Kriener et al. 2022): 5 inputs -> NUM_HIDDEN LIF -> 3 outputs.

Usage, as in the reference:

    from eventprop.simulators.yinyang import p, yinyang
    p["NUM_HIDDEN"] = 200
    model = yinyang(p)
    spike_t, spike_ID, rec_vars_n, rec_vars_s, accuracy = model.train(p)

Every input neuron fires once per sample: the bias neuron at 2 dt, the four feature neurons
(x, y, 1-x, 1-y) at 2 dt + f (TRIAL_MS - 4 dt). The default loss is the time-to-first-spike loss
``first_spike`` with spiking LIF outputs; the prediction is the earliest output (a sample with no
output spike counts as wrong).
"""
import numpy as np

from eventprop.config import parameters
from eventprop.config import yinyang as yinyang_parameters
from eventprop import optim
from eventprop.training.experiment import Experiment, k_folds, training_order
from eventprop.training.build import build_trainer
from eventprop.data.spikes import SpikeData, times_to_steps
from eventprop.data.yinyang import generate_yinyang, yinyang_spike_times

N_INPUT = 5
N_CLASSES = 3

# The parameter dictionary users edit; its keys, defaults, rules, meanings and units are in
# eventprop.config.yinyang (reference: docs/parameters/yinyang.md).
p = parameters.defaults(yinyang_parameters.PARAMETERS)

# The defaults as shipped: users edit p itself, so p cannot serve to detect unknown keys.
DEFAULTS = parameters.defaults(yinyang_parameters.PARAMETERS)

RULES = parameters.rules(yinyang_parameters.PARAMETERS)


def validate(params):
    """The full parameter dictionary: defaults filled in, every key and value checked."""
    full = parameters.check(params, DEFAULTS, RULES)
    if full["TRIAL_MS"] <= 4 * full["DT_MS"]:
        raise ValueError(f"invalid p['TRIAL_MS'] = {full['TRIAL_MS']}: must exceed 4 * DT_MS")
    return full


def yinyang_spike_data(n_samples, seed, dt, trial_ms):
    """Yin-Yang samples as ``SpikeData``: 5 input channels, one spike each."""
    features, labels = generate_yinyang(n_samples, seed)
    steps = times_to_steps(yinyang_spike_times(features, dt, trial_ms), dt)
    n_steps = int(round(trial_ms / dt))
    channels = np.tile(np.arange(N_INPUT), len(labels))
    offsets = np.arange(len(labels) + 1) * N_INPUT
    return SpikeData(steps.ravel(), channels, offsets, labels, n_steps, N_INPUT)


class yinyang(Experiment):
    """Yin-Yang simulator: ``train``, ``train_test``, ``test``, ``cross_validate``."""

    n_classes = N_CLASSES

    def __init__(self, params=None):
        params = validate(params or {})
        dt, T = params["DT_MS"], params["TRIAL_MS"]
        self.train_data = yinyang_spike_data(3 * params["N_TRAIN"], params["TRAIN_DATA_SEED"],
                                             dt, T)
        self.test_data = yinyang_spike_data(3 * params["N_TEST"], params["TEST_DATA_SEED"],
                                            dt, T)

    # --- what Experiment.run asks of a simulator ------------------------------------------
    def make_network(self, p):
        return build_trainer(p, N_INPUT, N_CLASSES,
                             trainable=["w_input_hidden", "w_hidden_output"])

    def make_schedule(self, p):
        return optim.ExponentialDecay(p["ETA"], p["ETA_DECAY"])

    def epoch_data(self, p, epoch, train, evaluation):
        order = training_order(p, len(train), epoch) if train is not None else None
        return train, evaluation, order

    def dropout(self, p):
        return 0.0, p["PDROP"]

    def recording_filters(self, p):
        trials = p["REC_EPOCH_TRIAL"] or None          # empty: every trial
        return {kind: trials for kind in ("spikes", "neurons", "synapses")}

    def wants_weight_snapshot(self, p, epoch, trial):
        return epoch % p["W_EPOCH_INTERVAL"] == 0 and trial % p["W_REPORT_INTERVAL"] == 0

    def wants_tau_snapshot(self, p, epoch, trial):
        return False

    # ------------------------------------------------------------------------------------------
    def train(self, params):
        """Train on the training set for N_EPOCH epochs (no evaluation part). Returns
        (spike_t, spike_ID, rec_vars_n, rec_vars_s, training accuracy of the last epoch)."""
        p = validate(params)
        recorder, train, _ = self.run(p, self.train_data, None, p["N_EPOCH"], True, "eval")
        return (*recorder.results(), train.accuracy if train else 0.0)

    def train_test(self, params):
        """Train for N_EPOCH epochs, evaluating on the test set after each. Returns
        (spike_t, spike_ID, rec_vars_n, rec_vars_s, train accuracy, test accuracy) of the last
        epoch."""
        p = validate(params)
        recorder, train, test = self.run(p, self.train_data, self.test_data, p["N_EPOCH"], True,
                                          "test")
        return (*recorder.results(), train.accuracy if train else 0.0,
                test.accuracy if test else 0.0)

    def test(self, params):
        """One epoch on the test set without learning (LOAD_LAST / LOAD_BEST, CHECKPOINT_NAME:
        with the weights of that checkpoint).
        Returns (spike_t, spike_ID, rec_vars_n, rec_vars_s, test accuracy)."""
        p = validate(params)
        recorder, _, test = self.run(p, None, self.test_data, 1, False, "test")
        return (*recorder.results(), test.accuracy)

    def cross_validate(self, params):
        """N_FOLDS-fold cross-validation on the training set: every fold trains a fresh network
        (same MODEL_SEED, so the same initial weights when it is set) on the other folds and
        evaluates on its own after every epoch; FOLDS selects folds (None: all). Returns (list
        of [final train accuracy, final validation accuracy] per fold, list of wall-clock
        seconds per fold)."""
        p = validate(params)
        n = len(self.train_data)
        if p["N_FOLDS"] > n:
            raise ValueError(f"invalid p['N_FOLDS'] = {p['N_FOLDS']}: more folds than the {n} "
                             f"training samples of this model (3 * N_TRAIN when it was "
                             f"made), so some folds would be empty")
        return self.run_folds(p, self.train_data, k_folds(n, p["N_FOLDS"],
                                                          p["TRAIN_DATA_SEED"], p["FOLDS"]))
