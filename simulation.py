"""One part of an epoch (training or evaluation) and what it is made of: the network built from a
parameter dictionary, the trainable parameters, ``Trainer.run_epoch`` (one mini-batch per trial,
forward and backward pass, one Adam step), per-epoch statistics, recordings, and the rewiring of
silent neurons. ``experiment.Experiment`` strings these into whole runs.
"""
import numpy as np
from tqdm import tqdm

from network import EventPropNetwork
from utils import Adam, Timer, save_npy

# population and projection names used by REC_SPIKES, REC_NEURONS, REC_SYNAPSES and weight files
PROJECTIONS = {"in_to_hid": "w_input_hidden", "hid_to_hidfwd": "w_hidden_hidden_fwd",
               "hid_to_hid": "w_hidden_hidden", "hid_to_out": "w_hidden_output"}
POPULATIONS = ("input", "hidden", "output")
# samples whose inputs are packed and copied to the GPU together, in whole trials (64 trials of
# 32; the CPU packs one trial at a time)
INPUT_BLOCK_SAMPLES = 2048


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


class Recorder:
    """Recordings of selected trials.

    ``spikes``: populations "input", "hidden{l}" ("hidden" = "hidden0") and "output" (the stored
    spikes, as the backward pass sees them); ``neurons``: (population, variable) with variable "V"
    (membrane potential) or "I" (synaptic current) of "hidden{l}" or "output", at the start of
    every step; ``synapses``: (projection, "w") with a projection of ``PROJECTIONS``, after the
    trial. ``filters`` maps "spikes", "neurons", "synapses" to a list of [epoch, trial] pairs
    (empty or missing: every trial). Spike times of batch slot b are offset so that the samples of
    all recorded trials follow one another on one time axis; state recordings have shape
    (samples, steps, neurons)."""

    KINDS = ("spikes", "neurons", "synapses")

    def __init__(self, spikes, neurons, synapses, filters, trial_ms, n_layers=1):
        self.n_layers = n_layers
        self.spikes = [self._population(pop, "REC_SPIKES", input_ok=True) for pop in spikes]
        self.neurons = []
        for pop, var in (tuple(x) for x in neurons):
            self.neurons.append((self._population(pop, "REC_NEURONS"), var))
            if var not in ("V", "I"):
                raise ValueError(f"REC_NEURONS: cannot record {var!r} of {pop!r}; variables: "
                                 "'V', 'I'")
        self.synapses = [tuple(x) for x in synapses]
        for proj, var in self.synapses:
            if var != "w" or proj not in PROJECTIONS:
                raise ValueError(f"REC_SYNAPSES: cannot record {var!r} of {proj!r} "
                                 f"(available: (p, 'w') for p in {list(PROJECTIONS)})")
        self.filters = {k: (None if filters.get(k) is None else {tuple(x) for x in filters[k]})
                        for k in self.KINDS}
        self.trial_ms = trial_ms
        self.spike_t = {pop: [] for pop in self.spikes}
        self.spike_ID = {pop: [] for pop in self.spikes}
        self.vars_n = {f"{var}{pop}": [] for pop, var in self.neurons}
        self.vars_s = {f"{var}{proj}": [] for proj, var in self.synapses}
        self.labels, self.predictions = [], []
        self.slot = 0   # running sample count on the common time axis

    def _population(self, pop, key, input_ok=False):
        valid = (["input"] if input_ok else []) + \
            ["hidden"] + [f"hidden{l}" for l in range(self.n_layers)] + ["output"]
        if pop not in valid:
            raise ValueError(f"{key}: unknown population {pop!r}; valid: {valid}")
        return pop

    @staticmethod
    def _layer(pop):
        """Hidden layer of "hidden{l}" ("hidden": 0)."""
        return int(pop[6:] or 0)

    @property
    def active(self):
        return bool(self.spikes or self.neurons or self.synapses)

    def wants(self, epoch, trial):
        """The kinds of recording wanted in this trial."""
        wanted = (("spikes", self.spikes), ("neurons", self.neurons),
                  ("synapses", self.synapses))
        return {k for k, what in wanted if what and (self.filters[k] is None
                                                     or (epoch, trial) in self.filters[k])}

    def needs_hidden_traces(self, kinds):
        return "neurons" in kinds and any(pop != "output" for pop, _ in self.neurons)

    def record(self, net, result, in_ptr, in_ch, labels, kinds):
        L, N, dt = net.n_layers, net.n_hidden, net.dt
        B = in_ptr.shape[0]
        self.labels.append(np.asarray(labels))
        self.predictions.append(np.asarray(result.predictions))
        for pop in self.spikes if "spikes" in kinds else ():
            for b in range(B):
                t0 = (self.slot + b) * self.trial_ms
                if pop == "input":
                    steps = np.repeat(np.arange(net.n_steps), np.diff(in_ptr[b]))
                    ids = in_ch[in_ptr[b, 0]:in_ptr[b, -1]]
                else:
                    sp_ptr, sp_idx, _ = result.spikes
                    steps = np.repeat(np.arange(net.n_steps), np.diff(sp_ptr[b]))
                    ids = sp_idx[b, :sp_ptr[b, -1]]
                    first = L * N if pop == "output" else self._layer(pop) * N
                    size = net.n_output if pop == "output" else N
                    sel = (ids >= first) & (ids < first + size)
                    steps, ids = steps[sel], ids[sel] - first
                self.spike_t[pop].append(t0 + steps * dt)
                self.spike_ID[pop].append(ids)
        for pop, var in self.neurons if "neurons" in kinds else ():
            if pop == "output":
                trace = result.V_out[:, :-1] if var == "V" else result.I_out
            else:
                trace = (result.V_hidden if var == "V" else result.I_hidden)[:, :, self._layer(pop)]
            self.vars_n[f"{var}{pop}"].append(np.array(trace))
        for proj, var in self.synapses if "synapses" in kinds else ():
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
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)
        save_npy(f"{out_dir}/{prefix}rec_labels.npy", cat(self.labels))
        save_npy(f"{out_dir}/{prefix}rec_predictions.npy", cat(self.predictions))


def build_network(p, n_input, n_output, init, manual_gpu=None):
    """An ``EventPropNetwork`` from a simulator's parameter dictionary. ``init`` maps projection
    name ("input_hidden", "hidden_hidden", "hidden_hiddenfwd", "hidden_output") to (mean, std).
    Keys a simulator does not have take the value that switches their feature off."""
    g = p.get
    return EventPropNetwork(
        n_input, p["NUM_HIDDEN"], n_output, n_layers=g("N_HID_LAYER", 1),
        recurrent=g("RECURRENT", False), hidden_type=g("HIDDEN_NEURON_TYPE", "LIF"),
        output_type=g("OUTPUT_NEURON_TYPE", "LI"), dt=p["DT_MS"], trial_ms=p["TRIAL_MS"],
        tau_mem=p["TAU_MEM"], tau_syn=p["TAU_SYN"], v_thresh=p["V_THRESH"],
        v_reset=p["V_RESET"], tau_b=g("TAU_B", 100.0), b_incr=g("B_INCR", 0.1),
        min_tau_m=g("MIN_TAU_M", 3.0), min_tau_syn=g("MIN_TAU_SYN", 1.0),
        loss_type=p["LOSS_TYPE"], tau_0=g("TAU_0", 1.0), tau_1=g("TAU_1", 100.0),
        alpha=g("ALPHA", 5e-5), tau_accumulator=g("TAU_ACCUMULATOR", 20.0),
        reg_type=g("REG_TYPE", "none"), lbd_upper=g("LBD_UPPER", 0.0),
        lbd_lower=g("LBD_LOWER", 0.0), nu_upper=g("NU_UPPER", 0.0),
        avg_snsum=g("AVG_SNSUM", False), rho_upper=g("RHO_UPPER", 0.0),
        glb_upper=g("GLB_UPPER", 0.0), n_max_spike=p["N_MAX_SPIKE"],
        train_tau=g("TRAIN_TAU", False), train_tau_output=g("TRAIN_TAU_OUTPUT", False),
        n_batch=p["N_BATCH"], init=init, seed=p.get("MODEL_SEED"),
        dtype=np.dtype(g("DTYPE", "float32")), backend=g("BACKEND", "auto"),
        cuda_visible_devices=g("CUDA_VISIBLE_DEVICES", True), manual_gpu=manual_gpu)


def trainable_parameters(net, p):
    """Names of the parameters Adam updates: weights into and between hidden layers (TRAIN_W),
    hidden->output weights (TRAIN_W_OUTPUT), hidden and output time constants (TRAIN_TAU,
    TRAIN_TAU_OUTPUT)."""
    names = []
    if p.get("TRAIN_W", True):
        names += [k for k in ("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden")
                  if net.params[k].size]
    if p.get("TRAIN_W_OUTPUT", True):
        names.append("w_hidden_output")
    if p.get("TRAIN_TAU", False):
        names += ["tau_m_hidden", "tau_syn_hidden"]
    if p.get("TRAIN_TAU_OUTPUT", False):
        names += ["tau_m_output", "tau_syn_output"]
    return names


def rewire_silent(params, hidden_spikes, lift, mean, std, rng, lift_only_silent=False):
    """Rewiring at the end of an epoch, for every hidden layer l and the projection
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
    """Network + optimiser; runs the training or evaluation part of an epoch over ``SpikeData``."""

    def __init__(self, net, beta1=0.9, beta2=0.999, eps=1e-8, trainable=None):
        self.net = net
        net.track_param_changes = True     # params_changed() follows every change made here
        self.adam = Adam(beta1, beta2, eps)
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
        rate ``rate`` (a number, or a function returning the current rate). Dropout and noise act
        only when learning. ``on_trial(trial, stats)`` is called after each trial. Returns
        ``EpochStats``.

        On the GPU the inputs of INPUT_BLOCK_SAMPLES samples at a time (whole trials) are packed
        on the host and copied to the device at once (each spike once per epoch), the Adam steps run on the device, and
        the weights and moments come back at the end of the epoch."""
        net = self.net
        net.params_changed()     # whatever changed between epochs (rewiring, loading) goes up
        B = net.n_batch
        n_trials = -(-len(order) // B)
        stats = EpochStats(net.n_layers, net.n_hidden)
        timer = Timer()
        bar = tqdm(range(n_trials), desc=desc, disable=not progress, leave=False,
                   dynamic_ncols=True)
        block = max(1, INPUT_BLOCK_SAMPLES // B) if net.on_gpu else 1
        inputs = {}
        for k in bar:
            trial = first_trial + k
            if k not in inputs:          # pack (and on the GPU upload) the next block of trials
                ks = range(k, min(k + block, n_trials))
                batches = [data.batch(order[i * B:(i + 1) * B],
                                      p_drop=p_drop_input if learn else 0.0, rng=rng) for i in ks]
                inputs = dict(zip(ks, zip(batches, net.upload_inputs(batches))))
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
                                   device_inputs=device_inputs, fetch_grads=not net.on_gpu)
            if learn:
                net.adam_step(self.adam, rate() if callable(rate) else rate, self.trainable,
                              result.grads)
                self.n_updates += 1
            if kinds:
                recorder.record(net, result, in_ptr, in_ch, labels, kinds)
            stats.add(result, labels)
            if on_trial is not None:
                on_trial(trial, stats)
            if progress:
                bar.set_postfix(acc=f"{stats.accuracy:.3f}", loss=f"{stats.mean_loss:.4f}")
        if learn:
            net.download_optimiser(self.adam)
        stats.seconds = timer()
        return stats
