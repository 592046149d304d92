"""Yin-Yang benchmark (Kriener et al. 2022): 5 inputs -> NUM_HIDDEN LIF -> 3 outputs.

Usage, as in the reference:

    from simulator_yinyang import p, yinyang
    p["NUM_HIDDEN"] = 200
    model = yinyang(p)
    spike_t, spike_ID, rec_vars_n, rec_vars_s, accuracy = model.train(p)

Every input neuron fires once per sample: the bias neuron at 2 dt, the four feature neurons
(x, y, 1-x, 1-y) at 2 dt + f (TRIAL_MS - 4 dt). The default loss is the time-to-first-spike loss
``first_spike`` with spiking LIF outputs; the prediction is the earliest output (a sample with no
output spike counts as wrong).
"""
import os
import warnings

import numpy as np
from tqdm import tqdm

import losses
import utils
from simulation import Recorder, Trainer, build_network, rewire_silent
from spike_data import SpikeData, times_to_steps
from yinyang_data import generate_yinyang, yinyang_spike_times

N_INPUT = 5
N_CLASSES = 3

p = {
    "OUT_DIR": ".",             # folder for every file a run writes
    "NAME": "test",             # prefix of those files
    "DT_MS": 0.1,
    "BUILD": True,              # accepted for compatibility; kernels compile on first use
    "TIMING": True,             # print forward/backward timing per epoch
    "TRAIN_DATA_SEED": 123,
    "TEST_DATA_SEED": 456,
    "MODEL_SEED": None,         # seed of the weight initialisation (None: random)
    "TRIAL_MS": 30.0,
    "N_MAX_SPIKE": 400,         # spikes per neuron and trial kept for the backward pass
    "N_BATCH": 32,
    "N_TRAIN": 32000,           # one third of the number of training samples
    "N_EPOCH": 10,
    "N_TEST": 800,              # one third of the number of test samples
    "NUM_HIDDEN": 100,
    "TAU_SYN": 5.0,
    "TAU_MEM": 20.0,
    "V_THRESH": 1.0,
    "V_RESET": 0.0,
    "LOSS_TYPE": "first_spike",
    "TAU_0": 0.5,
    "TAU_1": 6.4,
    "ALPHA": 3e-3,
    "INPUT_HIDDEN_MEAN": 1.5,
    "INPUT_HIDDEN_STD": 0.78,
    "HIDDEN_OUTPUT_MEAN": 0.93,
    "HIDDEN_OUTPUT_STD": 0.1,
    "ETA": 5e-3,
    "ADAM_BETA1": 0.9,
    "ADAM_BETA2": 0.999,
    "ADAM_EPS": 1e-8,
    "ETA_DECAY": 0.95,          # learning rate x ETA_DECAY at the start of every epoch
    "PDROP": 0.0,               # hidden dropout probability (delays spikes, spec §2.3)
    "SHUFFLE": False,           # new random order of the training samples every epoch
    "REWIRE_SILENT": False,     # at epoch end, revive hidden neurons that did not spike ...
    "REWIRE_LIFT": 0.0,         # ... by adding this to their input weights (0: redraw them)
    "N_FOLDS": 5,               # cross_validate: number of folds of the training set
    "DTYPE": "float32",         # "float32" or "float64"
    "REC_SPIKES": [],           # populations: "input", "hidden", "output"
    "REC_NEURONS": [],          # (population, variable): ("output", "V")
    "REC_SYNAPSES": [],         # (projection, "w"): "in_to_hid", "hid_to_out"
    "REC_EPOCH_TRIAL": [],      # [epoch, trial] pairs to record (empty: every trial)
    "WRITE_TO_DISK": True,      # save recordings
    "LOAD_LAST": False,         # start from {NAME}_checkpoint_last (train: resume)
    "W_REPORT_INTERVAL": 100,   # weight snapshots every this many trials ...
    "W_EPOCH_INTERVAL": 10,     # ... in every this many-th epoch
    "PROGRESS": True,           # progress bar and one line per epoch
}

RULES = {
    "OUT_DIR": utils.string, "NAME": utils.string, "DT_MS": utils.positive,
    "BUILD": utils.boolean, "TIMING": utils.boolean,
    "TRAIN_DATA_SEED": utils.optional_seed, "TEST_DATA_SEED": utils.optional_seed,
    "MODEL_SEED": utils.optional_seed, "TRIAL_MS": utils.positive,
    "N_MAX_SPIKE": utils.integer_at_least(1), "N_BATCH": utils.integer_at_least(1),
    "N_TRAIN": utils.integer_at_least(1), "N_EPOCH": utils.integer_at_least(0),
    "N_TEST": utils.integer_at_least(1), "NUM_HIDDEN": utils.integer_at_least(1),
    "TAU_SYN": utils.positive, "TAU_MEM": utils.positive, "V_THRESH": utils.number,
    "V_RESET": utils.number, "LOSS_TYPE": utils.one_of(*losses.LOSS_TYPES),
    "TAU_0": utils.positive, "TAU_1": utils.positive, "ALPHA": utils.non_negative,
    "INPUT_HIDDEN_MEAN": utils.number, "INPUT_HIDDEN_STD": utils.non_negative,
    "HIDDEN_OUTPUT_MEAN": utils.number, "HIDDEN_OUTPUT_STD": utils.non_negative,
    "ETA": utils.non_negative, "ADAM_BETA1": utils.probability, "ADAM_BETA2": utils.probability,
    "ADAM_EPS": utils.positive, "ETA_DECAY": utils.positive, "PDROP": utils.probability,
    "SHUFFLE": utils.boolean, "REWIRE_SILENT": utils.boolean, "REWIRE_LIFT": utils.number,
    "N_FOLDS": utils.integer_at_least(2), "DTYPE": utils.one_of("float32", "float64"),
    "REC_SPIKES": utils.list_of(str), "REC_NEURONS": utils.list_of((list, tuple)),
    "REC_SYNAPSES": utils.list_of((list, tuple)), "REC_EPOCH_TRIAL": utils.list_of_pairs,
    "WRITE_TO_DISK": utils.boolean, "LOAD_LAST": utils.boolean,
    "W_REPORT_INTERVAL": utils.integer_at_least(1), "W_EPOCH_INTERVAL": utils.integer_at_least(1),
    "PROGRESS": utils.boolean,
}


def _check_trial_length(p):
    if p["TRIAL_MS"] <= 4 * p["DT_MS"]:
        raise ValueError(f"invalid p['TRIAL_MS'] = {p['TRIAL_MS']}: must exceed 4 * DT_MS")
    if p["V_THRESH"] <= p["V_RESET"]:
        raise ValueError(f"invalid p['V_THRESH'] = {p['V_THRESH']}: must exceed V_RESET")


def validate(params):
    """The full parameter dictionary: defaults filled in, every key and value checked."""
    full = utils.check_params(params, p, RULES)
    _check_trial_length(full)
    return full


def yinyang_spike_data(n_samples, seed, dt, trial_ms):
    """Yin-Yang samples as ``SpikeData``: 5 input channels, one spike each."""
    features, labels = generate_yinyang(n_samples, seed)
    steps = times_to_steps(yinyang_spike_times(features, dt, trial_ms), dt)
    n_steps = int(round(trial_ms / dt))
    channels = np.tile(np.arange(N_INPUT), len(labels))
    offsets = np.arange(len(labels) + 1) * N_INPUT
    return SpikeData(steps.ravel(), channels, offsets, labels, n_steps, N_INPUT)


class yinyang:
    """Yin-Yang simulator: ``train``, ``train_test``, ``test``, ``cross_validate``."""

    def __init__(self, params=None):
        params = validate(params or {})
        dt, T = params["DT_MS"], params["TRIAL_MS"]
        self.train_data = yinyang_spike_data(3 * params["N_TRAIN"], params["TRAIN_DATA_SEED"],
                                             dt, T)
        self.test_data = yinyang_spike_data(3 * params["N_TEST"], params["TEST_DATA_SEED"],
                                            dt, T)

    # ------------------------------------------------------------------------------------------
    def _network(self, p):
        init = {"input_hidden": (p["INPUT_HIDDEN_MEAN"], p["INPUT_HIDDEN_STD"]),
                "hidden_output": (p["HIDDEN_OUTPUT_MEAN"], p["HIDDEN_OUTPUT_STD"])}
        net = build_network(p, N_INPUT, N_CLASSES, p["LOSS_TYPE"], init=init,
                            dtype=np.dtype(p["DTYPE"]))
        return Trainer(net, p["ADAM_BETA1"], p["ADAM_BETA2"], p["ADAM_EPS"],
                       trainable=["w_input_hidden", "w_hidden_output"])

    @staticmethod
    def _path(p, what):
        return os.path.join(p["OUT_DIR"], f"{p['NAME']}_{what}")

    def _save_weights(self, p, trainer, label):
        for proj in ("w_input_hidden", "w_hidden_output"):
            utils.save_npy(self._path(p, f"{proj}_{label}.npy"), trainer.net.params[proj])

    def _save_checkpoint(self, p, trainer, epoch, eta):
        self._save_weights(p, trainer, "last")
        state = dict(trainer.net.params)
        state.update(trainer.adam.state())
        state.update(epoch=np.array(epoch), eta=np.array(eta),
                     n_updates=np.array(trainer.n_updates))
        utils.save_npz(self._path(p, "checkpoint_last.npz"), state)

    def _load_checkpoint(self, p, trainer):
        path = self._path(p, "checkpoint_last.npz")
        if not os.path.exists(path):
            raise FileNotFoundError(f"LOAD_LAST: no checkpoint {path} (written by train with the "
                                    "same OUT_DIR and NAME)")
        with np.load(path) as f:
            state = dict(f)
        trainer.net.set_params({k: state[k] for k in ("w_input_hidden", "w_hidden_output")})
        trainer.adam.load_state(state)
        trainer.n_updates = int(state["n_updates"])
        return int(state["epoch"]), float(state["eta"])

    # ------------------------------------------------------------------------------------------
    def _run(self, p, train_data, eval_data, n_epoch, learn, label):
        """Epoch loop shared by every method; returns the recorder and the last epoch's stats."""
        os.makedirs(p["OUT_DIR"], exist_ok=True)
        trainer = self._network(p)
        net = trainer.net
        rng = np.random.default_rng(p["TRAIN_DATA_SEED"])
        recorder = Recorder(p["REC_SPIKES"], p["REC_NEURONS"], p["REC_SYNAPSES"],
                            p["REC_EPOCH_TRIAL"], p["TRIAL_MS"])
        first_epoch, eta = 0, p["ETA"]
        if p["LOAD_LAST"]:
            done, eta = self._load_checkpoint(p, trainer)
            first_epoch = done + 1 if learn else 0
        results = utils.ResultsFile(self._path(p, "results.txt"))
        log = utils.EpochLog(self._path(p, "log.jsonl"))
        train_stats = eval_stats = None
        total = utils.Timer()
        for epoch in range(first_epoch, n_epoch):
            train_stats = eval_stats = None
            if learn:
                eta *= p["ETA_DECAY"]
                snapshot = (lambda trial, stats, e=epoch: self._snapshot(p, trainer, e, trial))
                train_stats = trainer.run_epoch(
                    train_data, self._training_order(p, len(train_data), epoch), True, eta,
                    epoch=epoch, p_drop_hidden=p["PDROP"], rng=rng, recorder=recorder,
                    seed=p["TRAIN_DATA_SEED"] or 0, progress=p["PROGRESS"],
                    desc=f"epoch {epoch} train", on_trial=snapshot)
            if eval_data is not None:
                eval_stats = trainer.run_epoch(
                    eval_data, np.arange(len(eval_data)), False, 0.0, epoch=epoch,
                    recorder=None if learn else recorder, progress=p["PROGRESS"],
                    desc=f"epoch {epoch} {label}")
            self._report(p, epoch, n_epoch, eta, train_stats, eval_stats, total(), results, log,
                         label)
            if learn and p["REWIRE_SILENT"]:
                self._rewire(p, net, epoch, train_stats, eval_stats)
            if learn:
                self._save_checkpoint(p, trainer, epoch, eta)
        if p["WRITE_TO_DISK"] and recorder.active:
            recorder.save(p["OUT_DIR"], f"{p['NAME']}_")
        self.network = net
        return recorder, train_stats, eval_stats

    @staticmethod
    def _rewire(p, net, epoch, train, evaluation):
        """Revive the hidden neurons that were silent in this epoch (training and evaluation part,
        as in the SHD original, spec §4.6): lift only their input weights by REWIRE_LIFT, or with
        REWIRE_LIFT = 0 redraw them from N(INPUT_HIDDEN_MEAN, INPUT_HIDDEN_STD). The random numbers
        depend on MODEL_SEED and the epoch only, so a resumed run redraws the same values."""
        counts = train.hidden_spikes + (evaluation.hidden_spikes if evaluation else 0)
        seed = p["MODEL_SEED"]
        rng = np.random.default_rng(None if seed is None else [seed, epoch, 4])
        rewire_silent(net.params, counts, p["REWIRE_LIFT"], p["INPUT_HIDDEN_MEAN"],
                      p["INPUT_HIDDEN_STD"], rng, lift_only_silent=True)

    @staticmethod
    def _training_order(p, n, epoch):
        """Fixed order as in the original, or with SHUFFLE a permutation that depends only on
        TRAIN_DATA_SEED and the epoch (so a resumed run sees the same orders)."""
        if not p["SHUFFLE"]:
            return np.arange(n)
        return np.random.default_rng([p["TRAIN_DATA_SEED"] or 0, epoch]).permutation(n)

    def _snapshot(self, p, trainer, epoch, trial):
        if epoch % p["W_EPOCH_INTERVAL"] == 0 and trial % p["W_REPORT_INTERVAL"] == 0:
            for proj in ("w_input_hidden", "w_hidden_output"):
                utils.save_npy(self._path(p, f"{proj}_e{epoch}_t{trial}.npy"),
                               trainer.net.params[proj])

    def _report(self, p, epoch, n_epoch, eta, train, evaluation, seconds, results, log, label):
        parts = [f"epoch {epoch + 1}/{n_epoch}"]
        record = {"epoch": epoch, "eta": eta, "seconds": seconds}
        n_unstored = 0
        for name, stats in (("train", train), (label, evaluation)):
            if stats is None:
                continue
            h = stats.hidden_stats()
            parts.append(f"{name} acc {stats.accuracy:.4f} loss {stats.mean_loss:.4f}")
            record.update({f"{name}_acc": stats.accuracy, f"{name}_loss": stats.mean_loss,
                           f"{name}_seconds": stats.seconds,
                           f"{name}_hidden_spikes_per_sample": h["spikes_per_sample"][0],
                           f"{name}_silent_neurons": h["silent_neurons"]})
            n_unstored += stats.n_unstored
        record["n_unstored_spikes"] = n_unstored
        parts.append(f"eta {eta:.2e}")
        if train is not None:
            parts.append(f"hidden spikes/sample {record['train_hidden_spikes_per_sample']:.1f}")
        parts.append(f"{seconds:.1f} s")
        if p["PROGRESS"]:
            tqdm.write(" | ".join(parts))
        if n_unstored:
            warnings.warn(f"epoch {epoch}: {n_unstored} spikes exceeded N_MAX_SPIKE = "
                          f"{p['N_MAX_SPIKE']} and were left out of the backward pass; "
                          "raise N_MAX_SPIKE", RuntimeWarning, stacklevel=3)
        results.write(epoch, train, evaluation, seconds)
        log.write(**record)

    # ------------------------------------------------------------------------------------------
    def train(self, params):
        """Train on the training set for N_EPOCH epochs (no evaluation part). Returns
        (spike_t, spike_ID, rec_vars_n, rec_vars_s, training accuracy of the last epoch)."""
        p = validate(params)
        recorder, train, _ = self._run(p, self.train_data, None, p["N_EPOCH"], True, "eval")
        return (*recorder.results(), train.accuracy if train else 0.0)

    def train_test(self, params):
        """Train for N_EPOCH epochs, evaluating on the test set after each. Returns
        (spike_t, spike_ID, rec_vars_n, rec_vars_s, train accuracy, test accuracy) of the last
        epoch."""
        p = validate(params)
        recorder, train, test = self._run(p, self.train_data, self.test_data, p["N_EPOCH"], True,
                                          "test")
        return (*recorder.results(), train.accuracy if train else 0.0,
                test.accuracy if test else 0.0)

    def test(self, params):
        """One epoch on the test set without learning (LOAD_LAST: with the trained weights).
        Returns (spike_t, spike_ID, rec_vars_n, rec_vars_s, test accuracy)."""
        p = validate(params)
        recorder, _, test = self._run(p, None, self.test_data, 1, False, "test")
        return (*recorder.results(), test.accuracy)

    def cross_validate(self, params):
        """N_FOLDS-fold cross-validation on the training set: every fold trains a fresh network
        (same MODEL_SEED, so the same initial weights when it is set) on the other folds and
        evaluates on its own after every epoch. Returns (list of [final train accuracy, final
        validation accuracy] per fold, list of wall-clock seconds per fold)."""
        p = validate(params)
        k = p["N_FOLDS"]
        order = np.random.default_rng(p["TRAIN_DATA_SEED"]).permutation(len(self.train_data))
        folds = np.array_split(order, k)
        accuracies, seconds = [], []
        for f in range(k):
            timer = utils.Timer()
            train_idx = np.sort(np.concatenate([folds[j] for j in range(k) if j != f]))
            train_data = self.train_data.subset(train_idx)
            eval_data = self.train_data.subset(np.sort(folds[f]))
            fold_p = dict(p, NAME=f"{p['NAME']}_fold{f}")
            _, train, evaluation = self._run(fold_p, train_data, eval_data, p["N_EPOCH"], True,
                                             "validation")
            accuracies.append([train.accuracy if train else 0.0,
                               evaluation.accuracy if evaluation else 0.0])
            seconds.append(timer())
        return accuracies, seconds
