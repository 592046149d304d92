"""The epoch loop the simulators share: present a data set trial by trial (one mini-batch per
trial), learn with Adam after the forward and backward pass of each training trial, evaluate,
record, and report progress.

A simulator (``simulator_yinyang.py`` and the others) builds the network and the data from its
parameter dictionary and calls ``run_epoch``; it decides the learning-rate schedule, which files to
write, and what its methods return.
"""
import numpy as np
from tqdm import tqdm

from network import EventPropNetwork
from utils import Adam, Timer, save_npy

# population and projection names used by REC_SPIKES, REC_NEURONS, REC_SYNAPSES and weight files
PROJECTIONS = {"in_to_hid": "w_input_hidden", "hid_to_hidfwd": "w_hidden_hidden_fwd",
               "hid_to_hid": "w_hidden_hidden", "hid_to_out": "w_hidden_output"}
POPULATIONS = ("input", "hidden", "output")


class EpochStats:
    """Per-epoch totals of one phase (training or evaluation)."""

    def __init__(self, n_layers, n_hidden):
        self.n_samples = 0
        self.n_correct = 0
        self.loss_sum = 0.0
        self.n_trials = 0
        self.hidden_spikes = np.zeros((n_layers, n_hidden), dtype=np.int64)  # summed over samples
        self.hidden_per_sample = []   # total hidden spikes of each sample
        self.n_unstored = 0
        self.predictions = []
        self.labels = []
        self.seconds = 0.0

    def add(self, result, labels):
        self.n_samples += len(labels)
        self.n_correct += int(result.correct.sum())
        self.loss_sum += float(result.loss.mean())
        self.n_trials += 1
        self.hidden_spikes += result.hidden_counts.sum(axis=0)
        self.hidden_per_sample.append(result.hidden_counts.sum(axis=(1, 2)))
        self.n_unstored += int(result.n_unstored.sum())
        self.predictions.append(result.predictions)
        self.labels.append(np.asarray(labels))

    @property
    def accuracy(self):
        return self.n_correct / max(self.n_samples, 1)

    @property
    def mean_loss(self):
        return self.loss_sum / max(self.n_trials, 1)

    def hidden_stats(self):
        """mean, std, min, max of hidden spikes per sample; of per-neuron counts; silent neurons."""
        per_sample = np.concatenate(self.hidden_per_sample) if self.hidden_per_sample else \
            np.zeros(1)
        per_neuron = self.hidden_spikes.ravel()
        return {"spikes_per_sample": [float(per_sample.mean()), float(per_sample.std()),
                                      float(per_sample.min()), float(per_sample.max())],
                "spikes_per_neuron": [float(per_neuron.mean()), float(per_neuron.std()),
                                      float(per_neuron.min()), float(per_neuron.max())],
                "silent_neurons": int((per_neuron == 0).sum())}


class Recorder:
    """Spike, state and weight recordings of selected trials (REC_SPIKES, REC_NEURONS,
    REC_SYNAPSES). Spike times of batch slot b of a recorded trial are offset so that the samples
    of all recorded trials follow one another on a common time axis."""

    def __init__(self, spikes, neurons, synapses, trial_filter, trial_ms):
        self.spikes = list(spikes)
        self.neurons = [tuple(x) for x in neurons]
        self.synapses = [tuple(x) for x in synapses]
        self.filter = {tuple(x) for x in trial_filter} if trial_filter else None
        self.trial_ms = trial_ms
        self.spike_t = {pop: [] for pop in self.spikes}
        self.spike_ID = {pop: [] for pop in self.spikes}
        self.vars_n = {f"{var}{pop}": [] for pop, var in self.neurons}
        self.vars_s = {f"{var}{proj}": [] for proj, var in self.synapses}
        self.slot = 0   # running sample count on the common time axis

    @property
    def active(self):
        return bool(self.spikes or self.neurons or self.synapses)

    def wants(self, epoch, trial):
        return self.active and (self.filter is None or (epoch, trial) in self.filter)

    def record(self, net, result, in_ptr, in_ch):
        L, N, dt = net.n_layers, net.n_hidden, net.dt
        B = in_ptr.shape[0]
        for pop in self.spikes:
            for b in range(B):
                t0 = (self.slot + b) * self.trial_ms
                if pop == "input":
                    steps = np.repeat(np.arange(net.n_steps), np.diff(in_ptr[b]))
                    ids = in_ch[in_ptr[b, 0]:in_ptr[b, -1]]
                else:
                    sp_ptr, sp_idx, _ = result.spikes
                    n = sp_ptr[b, -1]
                    steps = np.repeat(np.arange(net.n_steps), np.diff(sp_ptr[b]))
                    ids = sp_idx[b, :n]
                    sel = ids >= L * N if pop == "output" else ids < L * N
                    steps, ids = steps[sel], ids[sel] - (L * N if pop == "output" else 0)
                self.spike_t[pop].append(t0 + steps * dt)
                self.spike_ID[pop].append(ids)
        for pop, var in self.neurons:
            if pop == "output" and var == "V":
                self.vars_n[f"{var}{pop}"].append(result.V_out[:, :-1].copy())
            else:
                raise ValueError(f"REC_NEURONS: cannot record {var!r} of {pop!r} "
                                 "(available: ('output', 'V'))")
        for proj, var in self.synapses:
            if var != "w" or proj not in PROJECTIONS:
                raise ValueError(f"REC_SYNAPSES: cannot record {var!r} of {proj!r} "
                                 f"(available: (p, 'w') for p in {list(PROJECTIONS)})")
            self.vars_s[f"{var}{proj}"].append(net.params[PROJECTIONS[proj]].copy())
        self.slot += B

    def results(self):
        """(spike_t, spike_ID, rec_vars_n, rec_vars_s) as the reference returns them."""
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)
        spike_t = {pop: cat(v) for pop, v in self.spike_t.items()}
        spike_ID = {pop: cat(v).astype(np.int64) for pop, v in self.spike_ID.items()}
        vars_n = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.vars_n.items()}
        vars_s = {k: np.stack(v) if v else np.zeros(0) for k, v in self.vars_s.items()}
        return spike_t, spike_ID, vars_n, vars_s

    def save(self, out_dir, prefix):
        spike_t, spike_ID, vars_n, vars_s = self.results()
        for pop in spike_t:
            save_npy(f"{out_dir}/{prefix}{pop}_spike_t.npy", spike_t[pop])
            save_npy(f"{out_dir}/{prefix}{pop}_spike_ID.npy", spike_ID[pop])
        for k, v in {**vars_n, **vars_s}.items():
            save_npy(f"{out_dir}/{prefix}{k}.npy", v)


def build_network(p, n_input, n_output, loss_type, n_layers=1, recurrent=False,
                  hidden_type="LIF", output_type="LI", reg=None, init=None, dtype=np.float32):
    """An ``EventPropNetwork`` from the common keys of a parameter dictionary."""
    reg = reg or {}
    return EventPropNetwork(
        n_input, p["NUM_HIDDEN"], n_output, n_layers=n_layers, recurrent=recurrent,
        hidden_type=hidden_type, output_type=output_type, dt=p["DT_MS"], trial_ms=p["TRIAL_MS"],
        tau_mem=p["TAU_MEM"], tau_syn=p["TAU_SYN"], v_thresh=p["V_THRESH"], v_reset=p["V_RESET"],
        loss_type=loss_type, tau_0=p.get("TAU_0", 1.0), tau_1=p.get("TAU_1", 100.0),
        alpha=p.get("ALPHA", 5e-5), n_max_spike=p["N_MAX_SPIKE"], n_batch=p["N_BATCH"],
        init=init, seed=p.get("MODEL_SEED"), dtype=dtype, **reg)


def rewire_silent(params, hidden_spikes, lift, mean, std, rng, lift_only_silent=False):
    """Rewiring at the end of an epoch (spec §4.6), for every hidden layer l and the projection
    into it (input->hidden for l = 0, hidden(l-1)->hidden(l) otherwise), in place:

    * lift != 0: every weight of the projection += lift (as the original does, silent neuron or
      not); with lift_only_silent, only the incoming weights of silent neurons;
    * lift == 0: the incoming weights of every silent neuron are redrawn from N(mean, std).

    hidden_spikes (n_layers, n_hidden): spike counts of the epoch. Returns the number of silent
    neurons per layer."""
    silent = np.asarray(hidden_spikes) == 0
    for l in range(silent.shape[0]):
        W = params["w_input_hidden"] if l == 0 else params["w_hidden_hidden_fwd"][l - 1]
        cols = np.nonzero(silent[l])[0]
        if lift != 0.0 and lift_only_silent:
            W[:, cols] += W.dtype.type(lift)
        elif lift != 0.0:
            W += W.dtype.type(lift)
        elif len(cols):
            W[:, cols] = rng.normal(mean, std, (W.shape[0], len(cols))).astype(W.dtype)
    return silent.sum(axis=1)


class Trainer:
    """Network + optimiser; runs epochs over ``SpikeData``."""

    def __init__(self, net, beta1=0.9, beta2=0.999, eps=1e-8, trainable=None):
        self.net = net
        self.adam = Adam(beta1, beta2, eps)
        self.trainable = list(trainable if trainable is not None else
                              [k for k in ("w_input_hidden", "w_hidden_hidden_fwd",
                                           "w_hidden_hidden", "w_hidden_output")
                               if net.params[k].size])
        self.n_updates = 0

    def run_epoch(self, data, order, learn, eta, epoch=0, p_drop_input=0.0, p_drop_hidden=0.0,
                  noise=0.0, rng=None, recorder=None, seed=0, progress=True, desc="",
                  on_trial=None):
        """Present ``data`` in ``order`` (sample indices), one mini-batch of ``net.n_batch`` per
        trial; with ``learn``, one Adam step with rate ``eta`` (a number, or a function of the
        update count) after each trial. ``on_trial(trial, stats)`` is called after each trial.
        Returns ``EpochStats``."""
        net = self.net
        B = net.n_batch
        n_trials = -(-len(order) // B)
        stats = EpochStats(net.n_layers, net.n_hidden)
        timer = Timer()
        bar = tqdm(range(n_trials), desc=desc, disable=not progress, leave=False,
                   dynamic_ncols=True)
        for trial in bar:
            idx = order[trial * B:(trial + 1) * B]
            in_ptr, in_ch = data.batch(idx, p_drop=p_drop_input if learn else 0.0, rng=rng)
            labels = data.labels[idx]
            record = recorder is not None and recorder.wants(epoch, trial)
            result = net.run_batch(in_ptr, in_ch, labels, learn=learn,
                                   p_drop_hidden=p_drop_hidden if learn else 0.0,
                                   noise=noise if learn else 0.0,
                                   seed=hash((seed, epoch, trial)) & 0x7FFFFFFF,
                                   keep_spikes=record)
            if learn:
                rate = eta(self.n_updates) if callable(eta) else eta
                self.adam.step(net.params, result.grads, rate, self.trainable)
                if any(k.startswith("tau") for k in self.trainable):
                    net.clip_taus()
                self.n_updates += 1
            if record:
                recorder.record(net, result, in_ptr, in_ch)
            stats.add(result, labels)
            if on_trial is not None:
                on_trial(trial, stats)
            if progress:
                bar.set_postfix(acc=f"{stats.accuracy:.3f}", loss=f"{stats.mean_loss:.4f}")
        stats.seconds = timer()
        return stats
