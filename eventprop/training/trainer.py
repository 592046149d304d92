"""One part of an epoch (training or evaluation): ``Trainer.run_epoch`` (one mini-batch per
trial, forward and backward pass, one Adam step) and its per-epoch statistics (``EpochStats``).
``experiment.Experiment`` strings these into whole runs.
"""
import sys

import numpy as np
from tqdm import tqdm

from eventprop.optim import Adam
from eventprop.storage import Timer


class EpochStats:
    """Per-epoch totals of one phase (training or evaluation)."""

    def __init__(self, n_layers, n_hidden):
        self.n_samples = 0
        self.n_correct = 0
        self.loss_sum = 0.0
        self.n_trials = 0
        self.hidden_spikes = np.zeros((n_layers, n_hidden), dtype=np.int64)  # summed over samples
        self.hidden_per_sample = []   # (B, n_layers) hidden spikes of each sample, per trial
        self.n_unstored = 0
        # most spikes of one neuron in one trial: per hidden layer, and of the outputs (what
        # N_MAX_SPIKE must be for every spike to be stored)
        self.most_hidden_spikes = np.zeros(n_layers, dtype=np.int64)
        self.most_output_spikes = 0
        self.predictions = []
        self.labels = []
        self.seconds = 0.0

    def add(self, result, labels):
        self.n_samples += len(labels)
        self.n_correct += int(result.correct.sum())
        self.loss_sum += float(result.loss.mean())
        self.n_trials += 1
        self.hidden_spikes += result.hidden_counts.sum(axis=0)
        self.hidden_per_sample.append(result.hidden_counts.sum(axis=2))
        self.n_unstored += int(result.n_unstored.sum())
        np.maximum(self.most_hidden_spikes, result.hidden_counts.max(axis=(0, 2)),
                   out=self.most_hidden_spikes)
        self.most_output_spikes = max(self.most_output_spikes, int(result.output_counts.max()))
        self.predictions.append(result.predictions)
        self.labels.append(np.asarray(labels))

    @property
    def accuracy(self):
        return self.n_correct / max(self.n_samples, 1)

    @property
    def mean_loss(self):
        return self.loss_sum / max(self.n_trials, 1)

    def all_predictions(self):
        """(predictions, labels) of every sample of the epoch, in presentation order."""
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)
        return cat(self.predictions).astype(np.int64), cat(self.labels).astype(np.int64)

    def confusion(self, n_classes):
        """(C, C) counts indexed [prediction, label]; a sample without prediction (-1) is left out."""
        pred, lab = self.all_predictions()
        ok = (pred >= 0) & (lab >= 0)
        out = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(out, (pred[ok], lab[ok]), 1)
        return out

    def hidden_stats(self, layer=None):
        """Hidden activity of one layer (None: all layers together): mean, std, min, max of the
        spikes per sample and of the per-neuron counts, and the number of silent neurons."""
        per_sample = np.concatenate(self.hidden_per_sample) if self.hidden_per_sample else \
            np.zeros((1, self.hidden_spikes.shape[0]))
        per_neuron = self.hidden_spikes
        if layer is None:
            per_sample, per_neuron = per_sample.sum(axis=1), per_neuron.ravel()
        else:
            per_sample, per_neuron = per_sample[:, layer], per_neuron[layer]
        summary = lambda x: [float(x.mean()), float(x.std()), float(x.min()), float(x.max())]
        return {"spikes_per_sample": summary(per_sample),
                "spikes_per_neuron": summary(per_neuron),
                "silent_neurons": int((per_neuron == 0).sum())}


# (backend, dtype, learning) of the trials this process has run: the first of each compiles
# numba's kernels or loads them from its cache, which takes long enough to say so
_STARTED_KERNELS = set()


def progress_bar(n_trials, desc, progress):
    """A tqdm bar advancing per trial, on a terminal only (a log file gets the per-epoch lines
    of ``Experiment`` instead of bar updates)."""
    return tqdm(total=n_trials, desc=desc, leave=False, dynamic_ncols=True,
                disable=not (progress and sys.stderr.isatty()))


class Trainer:
    """Network + optimiser; runs the training or evaluation part of an epoch over ``SpikeData``."""

    def __init__(self, net, beta1=0.9, beta2=0.999, eps=1e-8, trainable=None, rates=None,
                 pipeline=False):
        self.net = net
        self.pipeline = pipeline           # the original's schedule: the gradient of the
                                           # previous trial after each trial (Backend)
        net.track_param_changes = True     # params_changed() follows every change made here
        self.adam = Adam(beta1, beta2, eps, rates)
        self.trainable = list(trainable if trainable is not None else
                              [k for k in ("w_input_hidden", "w_hidden_hidden_fwd",
                                           "w_hidden_hidden", "w_hidden_output")
                               if net.params[k].size])
        self.n_updates = 0

    def run_epoch(self, data, order, learn, rate=0.0, epoch=0, first_trial=0, p_drop_input=0.0,
                  p_drop_hidden=0.0, noise=0.0, rng=None, recorder=None, seed=0, progress=True,
                  desc="", on_trial=None):
        """Present ``data`` in ``order`` (sample indices), one mini-batch of ``net.n_batch`` per
        trial, numbered from ``first_trial``; with ``learn``, one Adam step after each trial with
        rate ``rate`` (a number, or a function returning the current rate); with ``pipeline``
        the step after trial k applies the gradient of trial k - 1 (none after the first), and
        the gradient of the last trial is not applied, as in the original. Dropout and noise act
        only when learning. ``on_trial(trial, stats)`` is called after each trial. With
        ``progress``: a progress bar on a terminal, and the time the first trial of the process
        takes (numba compilation or cache load). Returns ``EpochStats``.

        The inputs of ``backend.trials_per_upload`` trials at a time are packed on the host and
        uploaded together; the gradients and the Adam steps stay with the backend, and the
        weights and the optimiser state come back to the host at the end of the epoch."""
        net = self.net
        net.params_changed()     # whatever changed between epochs (rewiring, loading) goes up
        B = net.n_batch
        n_trials = -(-len(order) // B)
        stats = EpochStats(net.n_layers, net.n_hidden)
        timer = Timer()
        bar = progress_bar(n_trials, desc, progress)
        kernels = (net.backend.name, net.dtype.name, learn)
        first_timer = None
        if kernels not in _STARTED_KERNELS and n_trials:
            if progress:
                tqdm.write("compiling kernels (first run only; later runs load them from numba's "
                           "cache) ...")
            first_timer = Timer()
        block = net.backend.trials_per_upload(B)
        inputs = {}
        for k in range(n_trials):
            trial = first_trial + k
            if k not in inputs:          # pack and upload the next block of trials
                ks = range(k, min(k + block, n_trials))
                batches = [data.batch(order[i * B:(i + 1) * B],
                                      p_drop=p_drop_input if learn else 0.0, rng=rng) for i in ks]
                inputs = dict(zip(ks, zip(batches, net.backend.upload_inputs(batches))))
            (in_ptr, in_ch), device_inputs = inputs.pop(k)
            idx = order[k * B:(k + 1) * B]
            labels = data.labels[idx]
            kinds = recorder.wants(epoch, trial) if recorder is not None else set()
            result = net.run_batch(in_ptr, in_ch, labels, learn=learn,
                                   p_drop_hidden=p_drop_hidden if learn else 0.0,
                                   noise=noise if learn else 0.0,
                                   seed=hash((seed, epoch, trial)) & 0x7FFFFFFF,
                                   keep_spikes="spikes" in kinds,
                                   keep_hidden_traces=bool(kinds) and
                                   recorder.needs_hidden_traces(kinds),
                                   keep_output_traces="neurons" in kinds,
                                   device_inputs=device_inputs, fetch_grads=False,
                                   pipeline=self.pipeline)
            if learn and result.has_gradient:
                net.adam_step(self.adam, rate() if callable(rate) else rate, self.trainable)
                self.n_updates += 1
            if kinds:
                recorder.record(net, result, in_ptr, in_ch, labels, kinds)
            stats.add(result, labels)
            if first_timer is not None:
                _STARTED_KERNELS.add(kernels)
                if progress:
                    tqdm.write(f"first trial (numba compilation or cache load) took "
                               f"{first_timer():.1f} s")
                first_timer = None
            if on_trial is not None:
                on_trial(trial, stats)
            bar.set_postfix(acc=f"{stats.accuracy:.3f}", loss=f"{stats.mean_loss:.4f}",
                            refresh=False)
            bar.update(1)
        bar.close()
        if learn:
            net.end_pipeline()
            net.sync_to_host(self.adam)
        stats.seconds = timer()
        return stats
