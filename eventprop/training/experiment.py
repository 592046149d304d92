"""One run of a simulator: the epochs (training part, then evaluation part), the learning-rate
schedule, rewiring, checkpoints, result files, recordings and progress.

Every simulator class derives from ``Experiment`` and adds its data, its network and its default
parameters; the epoch loop and every file it writes are here, once.
"""
import os
import warnings

import numpy as np
from tqdm import tqdm

from eventprop.training import checkpoints
from eventprop import storage
from eventprop.training.recorder import Recorder
from eventprop.training.rewiring import rewire_silent

# Random streams of one epoch: each depends only on its seed, the epoch and the stream, so a run
# resumed from a checkpoint draws exactly the numbers an uninterrupted run draws.
STREAM_DATA, STREAM_ORDER, STREAM_DROPOUT, STREAM_REWIRE = 1, 2, 3, 4


def epoch_rng(seed, epoch, stream):
    """numpy Generator of one stream in one epoch (seed None: fresh entropy)."""
    return np.random.default_rng(None if seed is None else [seed, epoch, stream])


def training_order(p, n, epoch):
    """The order of the training samples: fixed, or with SHUFFLE a new permutation every epoch
    drawn from TRAIN_DATA_SEED and the epoch."""
    if not p.get("SHUFFLE", False):
        return np.arange(n)
    return epoch_rng(p["TRAIN_DATA_SEED"], epoch, STREAM_ORDER).permutation(n)


def k_folds(n, k, seed, which=None):
    """k-fold cross-validation over n samples: a permutation drawn from ``seed`` cut into k
    near-equal folds. Yields (fold, sorted training indices, sorted validation indices) for the
    folds in ``which`` (None: all k)."""
    folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
    for f in (range(k) if which is None else which):
        train = np.sort(np.concatenate([folds[j] for j in range(k) if j != f]))
        yield f, train, np.sort(folds[f])


class EpochArrays:
    """One array per epoch, stacked and saved after every epoch as ``path`` (epochs first). Rows of
    different length (predictions) are padded with -1. A resumed run keeps the rows of the
    epochs before ``first_epoch``."""

    def __init__(self, path, first_epoch):
        self.path = path
        self.rows = []
        if first_epoch > 0 and os.path.exists(path):
            self.rows = [row for row in np.load(path)[:first_epoch]]

    def add(self, row):
        self.rows.append(np.asarray(row))
        if all(r.shape == self.rows[0].shape for r in self.rows):
            stacked = np.stack(self.rows)
        else:
            stacked = np.full((len(self.rows), max(len(r) for r in self.rows)), -1,
                              dtype=np.int64)
            for i, r in enumerate(self.rows):
                stacked[i, :len(r)] = r
        storage.save_npy(self.path, stacked)


class Experiment:
    """Base of the simulator classes; ``run`` is the epoch loop of every method.

    A subclass sets ``n_classes`` and defines
      ``make_network(p)`` -> ``training.trainer.Trainer``,
      ``make_schedule(p)`` -> ``optim.ExponentialDecay`` or ``optim.LearningRateSchedule``,
      ``epoch_data(p, epoch, train, evaluation)`` -> (train, evaluation, order) of one epoch,
    and may override ``dropout``, ``recording_filters``, ``wants_weight_snapshot`` and
    ``wants_tau_snapshot``.
    """

    n_classes = None

    # --- defaults a simulator may override -------------------------------------------------
    def dropout(self, p):
        """(input dropout, hidden dropout) probabilities of training trials."""
        return p.get("PDROP_INPUT", 0.0), p.get("PDROP_HIDDEN", 0.0)

    def recording_filters(self, p):
        """[epoch, trial] pairs to record per kind (the original's REC_*_EPOCH_TRIAL: only those
        trials, none when empty); None records every trial."""
        return {"spikes": p.get("REC_SPIKES_EPOCH_TRIAL"),
                "neurons": p.get("REC_NEURONS_EPOCH_TRIAL"),
                "synapses": p.get("REC_SYNAPSES_EPOCH_TRIAL")}

    def wants_weight_snapshot(self, p, epoch, trial):
        return [epoch, trial] in [list(x) for x in p.get("W_OUTPUT_EPOCH_TRIAL", [])]

    def wants_tau_snapshot(self, p, epoch, trial):
        return [epoch, trial] in [list(x) for x in p.get("TAU_OUTPUT_EPOCH_TRIAL", [])]

    # --- the run --------------------------------------------------------------------------
    @staticmethod
    def returns(recorder, train, evaluation):
        """What train / train_test / test return: (spike_t, spike_ID, rec_vars_n, rec_vars_s,
        training accuracy, evaluation accuracy) of the last epoch, 0.0 for a part not run."""
        return (*recorder.results(), train.accuracy if train else 0.0,
                evaluation.accuracy if evaluation else 0.0)

    def run_folds(self, p, data, folds):
        """Cross-validation on ``data``: for every (k, training indices, validation indices) of
        ``folds`` a fresh network trains N_EPOCH epochs on its training part and is validated
        after each; the fold's files are named {NAME}_fold{k}_* and its parameters say
        FOLDS = [k]. Returns (list of [final training accuracy, final validation accuracy] per
        fold, list of seconds per fold)."""
        accuracies, seconds = [], []
        for k, train_idx, eval_idx in folds:
            timer = storage.Timer()
            fold_p = dict(p, NAME=f"{p['NAME']}_fold{k}", FOLDS=[k])
            _, train, evaluation = self.run(fold_p, data.subset(train_idx),
                                             data.subset(eval_idx), p["N_EPOCH"], True,
                                             "validation")
            accuracies.append([train.accuracy if train else 0.0,
                               evaluation.accuracy if evaluation else 0.0])
            seconds.append(timer())
        return accuracies, seconds

    @staticmethod
    def prefix(p):
        return os.path.join(p["OUT_DIR"], p["NAME"])

    def run(self, p, train, evaluation, n_epoch, learn, eval_name="eval"):
        """Run epochs ``0 .. n_epoch - 1`` (from the checkpoint's next epoch with LOAD_LAST /
        LOAD_BEST when learning): with ``learn`` a training part on ``train``, then an evaluation
        part on ``evaluation`` (None: none). Writes every file of the run into OUT_DIR. Returns
        (recorder, training stats, evaluation stats) of the last epoch run."""
        prefix = self.prefix(p)
        os.makedirs(p["OUT_DIR"], exist_ok=True)
        storage.save_json(prefix + ".json", p)
        trainer = self.make_network(p)
        net = trainer.net
        schedule = self.make_schedule(p)
        recorder = Recorder(p["REC_SPIKES"], p["REC_NEURONS"], p["REC_SYNAPSES"],
                            self.recording_filters(p), p["TRIAL_MS"], net.n_layers)
        first_epoch, best = 0, -1.0
        load = "last" if p.get("LOAD_LAST") else "best" if p.get("LOAD_BEST") else None
        if load:
            source = os.path.join(p["OUT_DIR"], p.get("CHECKPOINT_NAME") or p["NAME"])
            done, best = checkpoints.load_checkpoint(source, load, trainer, schedule,
                                                     weights_only=not learn)
            first_epoch = done + 1 if learn else 0
            best = best if learn else -1.0
        files = self._epoch_files(p, first_epoch)
        results = storage.ResultsFile(prefix + "_results.txt", self._debug_columns(p, net))
        log = storage.EpochLog(prefix + "_log.jsonl")
        p_in, p_hid = self.dropout(p)
        trial_seed = p["TRAIN_DATA_SEED"]         # seeds hidden dropout and noise of every trial
        if trial_seed is None:
            trial_seed = int(np.random.SeedSequence().entropy % 2**31)
        train_stats = eval_stats = None
        total = storage.Timer()
        for epoch in range(first_epoch, n_epoch):
            tr, ev, order = self.epoch_data(p, epoch, train if learn else None, evaluation)
            train_stats = eval_stats = None
            first_trial = 0
            if learn:
                schedule.start_epoch()

                def after_training_trial(trial, stats, epoch=epoch):
                    schedule.after_trial()
                    self._snapshot(p, net, epoch, trial)

                train_stats = trainer.run_epoch(
                    tr, order, True, lambda: schedule.rate, epoch=epoch, p_drop_input=p_in,
                    p_drop_hidden=p_hid, noise=p.get("HIDDEN_NOISE", 0.0),
                    rng=epoch_rng(p["TRAIN_DATA_SEED"], epoch, STREAM_DROPOUT),
                    recorder=recorder, seed=trial_seed, progress=p["PROGRESS"],
                    desc=f"epoch {epoch} train", on_trial=after_training_trial)
                first_trial = train_stats.n_trials
            if ev is not None and len(ev):
                eval_stats = trainer.run_epoch(
                    ev, np.arange(len(ev)), False, epoch=epoch, first_trial=first_trial,
                    recorder=recorder, progress=p["PROGRESS"], desc=f"epoch {epoch} {eval_name}",
                    on_trial=lambda trial, stats: schedule.after_trial())
            rate = schedule.rate
            silent = self._rewire(p, net, epoch, train_stats, eval_stats) if learn else None
            line = self._report(p, net, epoch, n_epoch, rate, train_stats, eval_stats, total(),
                                silent, results, log, eval_name)
            if learn:
                which = p.get("EMA_WHICH", "validation")
                schedule.end_of_epoch(epoch, (eval_stats.accuracy if eval_stats else 0.0)
                                      if which == "validation" else train_stats.accuracy)
            self._save_epoch_files(files, train_stats, eval_stats)
            if learn:
                best = self._checkpoint(p, trainer, schedule, epoch, best, train_stats,
                                        eval_stats, line)
            tr = ev = order = None    # free this epoch's data before the next is built
        if p["WRITE_TO_DISK"] and recorder.active:
            recorder.save(p["OUT_DIR"], f"{p['NAME']}_")
        self.network = net
        return recorder, train_stats, eval_stats

    # --- pieces of the epoch loop ---------------------------------------------------------
    def _snapshot(self, p, net, epoch, trial):
        weights = self.wants_weight_snapshot(p, epoch, trial)
        taus = self.wants_tau_snapshot(p, epoch, trial)
        if not (weights or taus):
            return
        for stem, array in checkpoints.parameter_files(net, ("tau_m", "tau_syn")).items():
            if (taus if stem.startswith("tau") else weights):
                storage.save_npy(f"{self.prefix(p)}_{stem}_e{epoch}_t{trial}.npy", array)

    def _rewire(self, p, net, epoch, train, evaluation):
        """REWIRE_SILENT with the spike counts of the whole epoch (training and
        evaluation part); the random numbers depend on MODEL_SEED and the epoch only. Returns
        the silent neurons per layer (None without rewiring)."""
        if not p.get("REWIRE_SILENT", False):
            return None
        counts = train.hidden_spikes + (evaluation.hidden_spikes if evaluation else 0)
        rng = epoch_rng(p["MODEL_SEED"], epoch, STREAM_REWIRE)
        return rewire_silent(net.params, counts, p["REWIRE_LIFT"], p["INPUT_HIDDEN_MEAN"],
                             p["INPUT_HIDDEN_STD"], rng,
                             lift_only_silent=p.get("REWIRE_LIFT_SILENT_ONLY", False))

    def _epoch_files(self, p, first_epoch):
        prefix = self.prefix(p)
        names = []
        if p.get("COLLECT_CONFUSION", False):
            names += ["confusion_train", "confusion_eval"]
        if p.get("REC_PREDICTIONS", False):
            names += ["predictions_train", "labels_train", "predictions_eval", "labels_eval"]
        return {name: EpochArrays(f"{prefix}_{name}.npy", first_epoch) for name in names}

    def _save_epoch_files(self, files, train, evaluation):
        for part, stats in (("train", train), ("eval", evaluation)):
            if stats is None:
                continue
            if f"confusion_{part}" in files:
                files[f"confusion_{part}"].add(stats.confusion(self.n_classes))
            if f"predictions_{part}" in files:
                predictions, labels = stats.all_predictions()
                files[f"predictions_{part}"].add(predictions)
                files[f"labels_{part}"].add(labels)

    @staticmethod
    def _debug_columns(p, net):
        if not p.get("DEBUG_HIDDEN_N", False):
            return ()
        return [f"hidden{l}_{what}" for l in range(net.n_layers)
                for what in ("spikes_per_sample_mean", "spikes_per_sample_std",
                             "spikes_per_sample_min", "spikes_per_sample_max",
                             "spikes_per_neuron_mean", "spikes_per_neuron_std",
                             "spikes_per_neuron_min", "spikes_per_neuron_max", "silent")]

    def _report(self, p, net, epoch, n_epoch, rate, train, evaluation, seconds, silent, results,
                log, eval_name):
        parts = [f"epoch {epoch + 1}/{n_epoch}"]
        record = {"epoch": epoch, "eta": rate, "seconds": seconds}
        n_unstored = 0
        for name, stats in (("train", train), (eval_name, evaluation)):
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
        if silent is not None:
            record["silent_per_layer_rewired"] = [int(x) for x in silent]
        parts.append(f"lr {rate:.2e}")
        main = train if train is not None else evaluation
        if main is not None:
            parts.append(f"hidden spikes/sample {main.hidden_stats()['spikes_per_sample'][0]:.1f}")
            parts.append(f"silent {main.hidden_stats()['silent_neurons']}")
        parts.append(f"{seconds:.1f} s")
        if p["PROGRESS"]:
            tqdm.write(" | ".join(parts))
        if n_unstored:
            warnings.warn(f"epoch {epoch}: {n_unstored} spikes exceeded N_MAX_SPIKE = "
                          f"{p['N_MAX_SPIKE']} and were left out of the backward pass; "
                          "raise N_MAX_SPIKE", RuntimeWarning, stacklevel=3)
        extra = []
        if p.get("DEBUG_HIDDEN_N", False) and main is not None:
            for l in range(net.n_layers):
                h = main.hidden_stats(l)
                extra += h["spikes_per_sample"] + h["spikes_per_neuron"] + [h["silent_neurons"]]
        log.write(**record)
        return results.write(epoch, train, evaluation, seconds, extra)

    def _checkpoint(self, p, trainer, schedule, epoch, best, train, evaluation, line):
        """Checkpoints "last" (CHECKPOINT) and "best" (CHECKPOINT_BEST: when the validation or
        training accuracy improves, with {NAME}_best.txt holding that epoch's results line).
        Returns the best accuracy so far."""
        prefix = self.prefix(p)
        which = p.get("CHECKPOINT_BEST", "neither")
        stats = evaluation if which == "validation" else train if which == "training" else None
        if stats is not None and stats.accuracy > best:
            best = stats.accuracy
            checkpoints.save_checkpoint(prefix, "best", trainer, schedule, epoch, best)
            storage.save_text(prefix + "_best.txt", line + "\n")
        if p.get("CHECKPOINT", True):
            checkpoints.save_checkpoint(prefix, "last", trainer, schedule, epoch, best)
        return best
