"""One run of a simulator: the epochs (training part, then evaluation part), the learning-rate
schedule, rewiring, checkpoints, result files, recordings and progress.

Every simulator class derives from ``Experiment`` and adds its data, its network and its default
parameters; the epoch loop and every file it writes are here, once.

Epochs are numbered from 0 everywhere: in the files and on the console ("epoch 0/10" is the
first of 10 epochs).
"""
import os
import warnings

import numpy as np
from tqdm import tqdm

from eventprop import backends, storage
from eventprop.training import checkpoints
from eventprop.training.build import setting
from eventprop.training.recorder import Recorder
from eventprop.training.rewiring import rewire_silent

# Random streams of one epoch: each depends only on its seed, the epoch and the stream, so a run
# resumed from a checkpoint draws exactly the numbers an uninterrupted run draws.
STREAM_DATA, STREAM_ORDER, STREAM_DROPOUT, STREAM_REWIRE = 1, 2, 3, 4


def epoch_rng(seed, epoch, stream):
    """numpy Generator of one stream in one epoch (seed None: fresh entropy)."""
    return np.random.default_rng(None if seed is None else [seed, epoch, stream])


def load_label(p):
    """The checkpoint a run starts from: "last" (LOAD_LAST), "best" (LOAD_BEST) or None."""
    return "last" if p.get("LOAD_LAST") else "best" if p.get("LOAD_BEST") else None


class FinishedStats:
    """Accuracy and loss of one part of an epoch of a finished run, read from its results file
    (what a LOAD_LAST run that has nothing left to train returns)."""

    def __init__(self, accuracy, mean_loss):
        self.accuracy, self.mean_loss = accuracy, mean_loss


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
    and may override ``dropout``, ``recording_filters``, ``wants_weight_snapshot``,
    ``wants_tau_snapshot`` and ``check_run``. ``preflight`` makes the checks that need neither
    data nor network; a simulator may call it before it loads its data.
    """

    n_classes = None

    # --- defaults a simulator may override -------------------------------------------------
    def check_run(self, p, train, evaluation):
        """Checks of a simulator that need its data (sizes, classes), made by ``run`` before
        any file is written; raise ValueError naming the key. Default: none."""

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

    @staticmethod
    def checkpoint_source(p):
        """The prefix of the checkpoint LOAD_LAST / LOAD_BEST read (CHECKPOINT_NAME or NAME)."""
        return os.path.join(p["OUT_DIR"], p.get("CHECKPOINT_NAME") or p["NAME"])

    def make_recorder(self, p, n_layers):
        """The ``Recorder`` of REC_SPIKES, REC_NEURONS, REC_SYNAPSES (ValueError naming the key
        of a population or variable that does not exist)."""
        return Recorder(p["REC_SPIKES"], p["REC_NEURONS"], p["REC_SYNAPSES"],
                        self.recording_filters(p), p["TRIAL_MS"], n_layers)

    def preflight(self, p):
        """The checks that need neither data nor network: the backend is available, the
        recordings exist, the checkpoint of LOAD_LAST / LOAD_BEST exists. ``run`` makes them
        first; a simulator may call them before it loads its data."""
        backends.check_available(setting(p, "BACKEND"))
        self.make_recorder(p, setting(p, "N_HID_LAYER"))
        if load_label(p):
            checkpoints.check_checkpoint_exists(self.checkpoint_source(p), load_label(p))

    def run(self, p, train, evaluation, n_epoch, learn, eval_name="eval"):
        """Run epochs ``0 .. n_epoch - 1`` (from the checkpoint's next epoch with LOAD_LAST /
        LOAD_BEST when learning): with ``learn`` a training part on ``train``, then an evaluation
        part on ``evaluation`` (None: none). Writes every file of the run into OUT_DIR. Returns
        (recorder, training stats, evaluation stats) of the last epoch run.

        Everything that can be checked (``preflight``, ``check_run``, the network, the
        checkpoint's shapes) is checked before any file is written. The run holds
        ``{NAME}.lock`` in OUT_DIR (``storage.RunLock``) from then to its end. An epoch's
        checkpoint "last" is written before its rows of the results and log files, and holds
        them: a run resumed from it puts these files back to its epoch, so that no epoch is
        repeated or skipped. LOAD_LAST of a run that has finished N_EPOCH epochs trains
        nothing: it warns and returns the accuracies of the last epoch from its results file."""
        prefix = self.prefix(p)
        self.preflight(p)
        self.check_run(p, train, evaluation)
        trainer = self.make_network(p)
        schedule = self.make_schedule(p)
        recorder = self.make_recorder(p, trainer.net.n_layers)
        label = load_label(p)
        resumed = None
        if label:
            resumed = checkpoints.load_checkpoint(self.checkpoint_source(p), label, trainer,
                                                  schedule, weights_only=not learn)
        with storage.RunLock(prefix):
            results = storage.ResultsFile(prefix + "_results.txt",
                                          self._debug_columns(p, trainer.net))
            log = storage.EpochLog(prefix + "_log.jsonl")
            first_epoch, best = 0, -1.0
            if learn and resumed is not None:
                first_epoch, best = resumed.epoch + 1, resumed.best
                if self.checkpoint_source(p) == prefix:
                    self._restore_rows(resumed, {"results": results.path, "log": log.path})
                if first_epoch >= n_epoch:
                    self.network = trainer.net
                    return (recorder, *self._finished(p, resumed.epoch, n_epoch, train,
                                                      evaluation))
            storage.save_json(prefix + ".json", p)
            results.start()
            train_stats, eval_stats = self._epochs(p, trainer, schedule, recorder, train,
                                                   evaluation, first_epoch, n_epoch, learn, best,
                                                   results, log, eval_name)
            if p["WRITE_TO_DISK"] and recorder.active:
                recorder.save(p["OUT_DIR"], f"{p['NAME']}_")
        self.network = trainer.net
        return recorder, train_stats, eval_stats

    def _epochs(self, p, trainer, schedule, recorder, train, evaluation, first_epoch, n_epoch,
                learn, best, results, log, eval_name):
        """The epoch loop of ``run``; returns (training stats, evaluation stats) of the last
        epoch."""
        net = trainer.net
        files = self._epoch_files(p, first_epoch)
        p_in, p_hid = self.dropout(p)
        trial_seed = p["TRAIN_DATA_SEED"]         # seeds hidden dropout and noise of every trial
        if trial_seed is None:
            trial_seed = int(np.random.SeedSequence().entropy % 2**31)
        train_stats = eval_stats = None
        if net.delays and p["PROGRESS"]:
            tqdm.write(f"delays: ring buffers of {net.delay_buffer_bytes() / 2**20:.1f} MiB per "
                       f"batch ({net.max_delay:g} ms max delay)")
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
                    desc=f"epoch {epoch}/{n_epoch} train", on_trial=after_training_trial)
                first_trial = train_stats.n_trials
            if ev is not None and len(ev):
                eval_stats = trainer.run_epoch(
                    ev, np.arange(len(ev)), False, epoch=epoch, first_trial=first_trial,
                    recorder=recorder, progress=p["PROGRESS"],
                    desc=f"epoch {epoch}/{n_epoch} {eval_name}",
                    on_trial=lambda trial, stats: schedule.after_trial())
            rate = schedule.rate
            silent = self._rewire(p, net, epoch, train_stats, eval_stats) if learn else None
            seconds = total()
            row, record = self._rows(p, net, epoch, rate, train_stats, eval_stats, seconds,
                                     silent, results, eval_name)
            self._say(p, net, epoch, n_epoch, rate, train_stats, eval_stats, seconds, eval_name)
            if learn:
                which = p.get("EMA_WHICH", "validation")
                schedule.end_of_epoch(epoch, (eval_stats.accuracy if eval_stats else 0.0)
                                      if which == "validation" else train_stats.accuracy)
            self._save_epoch_files(files, train_stats, eval_stats)
            rows = {"results": (len(storage.read_lines(results.path)), row),
                    "log": (len(storage.read_lines(log.path)), log.line(**record))}
            if learn:
                best = self._checkpoint(p, trainer, schedule, epoch, best, train_stats,
                                        eval_stats, rows)
            storage.append_line(results.path, row)
            storage.append_line(log.path, rows["log"][1])
            tr = ev = order = None    # free this epoch's data before the next is built
        return train_stats, eval_stats

    def _restore_rows(self, resumed, paths):
        """Put the results and log files back to the rows the checkpoint ``resumed`` committed
        (its epoch's row last), warning about rows dropped after it."""
        for name, (n_before, row) in resumed.rows.items():
            dropped = storage.restore_row(paths[name], n_before, row)
            if dropped:
                warnings.warn(f"{paths[name]}: dropped {dropped} rows written after epoch "
                              f"{resumed.epoch} of the checkpoint the run resumes from",
                              RuntimeWarning, stacklevel=3)

    def _finished(self, p, epoch, n_epoch, train, evaluation):
        """(training stats, evaluation stats) of a run whose checkpoint holds its last epoch,
        from its results file, with a warning that there is nothing left to train."""
        path = self.checkpoint_source(p) + "_results.txt"
        values = storage.ResultsFile(path).last_row(epoch)
        where = f"its accuracies of epoch {epoch} from {path}" if values else \
            f"accuracies 0.0 ({path} has no row of epoch {epoch})"
        warnings.warn(f"{self.prefix(p)}: the run has finished: its checkpoint holds epoch "
                      f"{epoch} and N_EPOCH = {n_epoch} (epochs 0..{n_epoch - 1}); nothing to "
                      f"train (raise N_EPOCH to continue). Returning {where}.",
                      RuntimeWarning, stacklevel=3)
        values = values or [epoch, 0.0, 0.0, 0.0, 0.0]
        train_stats = FinishedStats(values[1], values[2]) if train is not None else None
        eval_stats = FinishedStats(values[3], values[4]) if evaluation is not None else None
        return train_stats, eval_stats

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
        silent = rewire_silent(net.params, counts, p["REWIRE_LIFT"], p["INPUT_HIDDEN_MEAN"],
                               p["INPUT_HIDDEN_STD"], rng,
                               lift_only_silent=p.get("REWIRE_LIFT_SILENT_ONLY", False))
        net.apply_connectivity()      # a sparse projection gains no synapses
        return silent

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

    def _rows(self, p, net, epoch, rate, train, evaluation, seconds, silent, results,
              eval_name):
        """(results row, log record) of an epoch."""
        record = {"epoch": epoch, "eta": rate, "seconds": seconds}
        n_unstored = 0
        for name, stats in (("train", train), (eval_name, evaluation)):
            if stats is None:
                continue
            h = stats.hidden_stats()
            record.update({f"{name}_acc": stats.accuracy, f"{name}_loss": stats.mean_loss,
                           f"{name}_seconds": stats.seconds,
                           f"{name}_hidden_spikes_per_sample": h["spikes_per_sample"][0],
                           f"{name}_silent_neurons": h["silent_neurons"]})
            n_unstored += stats.n_unstored
        record["n_unstored_spikes"] = n_unstored
        if silent is not None:
            record["silent_per_layer_rewired"] = [int(x) for x in silent]
        main = train if train is not None else evaluation
        extra = []
        if p.get("DEBUG_HIDDEN_N", False) and main is not None:
            for l in range(net.n_layers):
                h = main.hidden_stats(l)
                extra += h["spikes_per_sample"] + h["spikes_per_neuron"] + [h["silent_neurons"]]
        return results.line(epoch, train, evaluation, seconds, extra), record

    def _say(self, p, net, epoch, n_epoch, rate, train, evaluation, seconds, eval_name):
        """The console line of an epoch (PROGRESS) and the warning of spikes beyond
        N_MAX_SPIKE, naming the populations and the N_MAX_SPIKE that would suffice."""
        parts = [f"epoch {epoch}/{n_epoch}"]
        for name, stats in (("train", train), (eval_name, evaluation)):
            if stats is not None:
                parts.append(f"{name} acc {stats.accuracy:.4f} loss {stats.mean_loss:.4f}")
        parts.append(f"lr {rate:.2e}")
        main = train if train is not None else evaluation
        if main is not None:
            parts.append(f"hidden spikes/sample {main.hidden_stats()['spikes_per_sample'][0]:.1f}")
            parts.append(f"silent {main.hidden_stats()['silent_neurons']}")
        parts.append(f"{seconds:.1f} s")
        if p["PROGRESS"]:
            tqdm.write(" | ".join(parts))
        ran = [stats for stats in (train, evaluation) if stats is not None]
        n_unstored = sum(stats.n_unstored for stats in ran)
        if not n_unstored:
            return
        most = {f"hidden layer {l}": max(int(s.most_hidden_spikes[l]) for s in ran)
                for l in range(net.n_layers)}
        most["output"] = max(s.most_output_spikes for s in ran)
        over = {pop: n for pop, n in most.items() if n > p["N_MAX_SPIKE"]}
        warnings.warn(f"epoch {epoch}: {n_unstored} spikes exceeded N_MAX_SPIKE = "
                      f"{p['N_MAX_SPIKE']} (spikes stored per neuron and trial) and were left out "
                      "of the backward pass (most spikes of one neuron in one trial: "
                      + ", ".join(f"{pop} = {n}" for pop, n in over.items())
                      + f"); N_MAX_SPIKE = {max(most.values())} would suffice",
                      RuntimeWarning, stacklevel=4)

    def _checkpoint(self, p, trainer, schedule, epoch, best, train, evaluation, rows):
        """Checkpoints "last" (CHECKPOINT) and "best" (CHECKPOINT_BEST: when the validation or
        training accuracy improves, with {NAME}_best.txt holding that epoch's results line),
        each holding the epoch's ``rows``. Returns the best accuracy so far."""
        prefix = self.prefix(p)
        which = p.get("CHECKPOINT_BEST", "neither")
        stats = evaluation if which == "validation" else train if which == "training" else None
        if stats is not None and stats.accuracy > best:
            best = stats.accuracy
            checkpoints.save_checkpoint(prefix, "best", trainer, schedule, epoch, best, rows)
            storage.save_text(prefix + "_best.txt", rows["results"][1] + "\n")
        if p.get("CHECKPOINT", True):
            checkpoints.save_checkpoint(prefix, "last", trainer, schedule, epoch, best, rows)
        return best
